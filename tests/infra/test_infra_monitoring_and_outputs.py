"""Alarms that see real failures (and the metrics behind them), the dashboard, safe deploys,
edge protection, and the outputs other services and ops read."""

from __future__ import annotations

import json

from infra.service_code import PROVIDERS, metric_names, server_error_types

FUNCTION_IDS = (
    "Authorizer",
    "Generation",
    "Health",
    "JobRun",
    "JobPoll",
    "JobStore",
    "JobRecordFailure",
    "JobNotify",
    "ModelsCheck",
)
RESERVING_IDS = tuple(f for f in FUNCTION_IDS if f != "ModelsCheck")  # the daily check: none
ALARMS = {
    "Api5xxRate",
    "Api4xxRate",
    "ApiLatencyP99",
    "AuthorizerErrors",
    "AuthorizerDenialRate",
    "GenerationErrors",
    "InvokeFailures",
    "LambdaThrottles",
    "JobFailures",
    "JobExecutionThrottles",
    "WebhookDeliveryFailures",
    "CostPerHour",
    "ModelCatalogDrift",
    "ModelsCheckFailed",
    "CatalogOverlayRejected",
    "CatalogOverlayUnreachable",
    "ProviderKeyStale",
    *(f"DurationNearTimeout{f}" for f in FUNCTION_IDS),
    *(f"ProviderErrorRate{p.title()}" for p in PROVIDERS),
}
RESERVED_ALARMS = {f"ConcurrencyNearReservation{f}" for f in RESERVING_IDS}
RESTORE_ALARMS = {"RestoreDurationP90JobRun", "RestoreDurationP90Generation"}  # SnapStart on
OUTPUTS = {
    "ApiUrl",
    "ImageBucketName",
    "UsageTableName",
    "JobsTableName",
    "JobStateMachineArn",
    "WebhookSecretArn",
    "GenerationFunctionName",
    "GenerationFunctionArn",
    "GenerationAliasArn",
    "HealthFunctionName",
    "DashboardName",
    "InvokeGenerationPolicyArn",
    "AuthorizerFunctionName",
    "AlarmTopicArn",
    "JobRunFunctionName",
    "JobPollFunctionName",
    "JobStoreFunctionName",
    "JobRecordFailureFunctionName",
    "JobNotifyFunctionName",
    "ModelsCheckFunctionName",
    *(f"{p.env_prefix.title()}ApiKeySecretArn" for p in PROVIDERS.values()),
}


def _alarms(synth) -> dict[str, dict]:
    """Alarm construct id → properties."""
    monitoring = synth.stack.node.find_child("Monitoring")
    return {
        alarm.node.id: synth.resources("AWS::CloudWatch::Alarm")[synth.logical_id(alarm)][
            "Properties"
        ]
        for alarm in monitoring.alarms
    }


def _metric_stats(alarm: dict) -> list[dict]:
    """Every metric an alarm reads (a single metric, or those of its math expression)."""
    if "MetricName" in alarm:
        return [
            {
                "MetricName": alarm["MetricName"],
                "Namespace": alarm["Namespace"],
                "Dimensions": alarm.get("Dimensions", []),
            }
        ]
    return [m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m]


def _own_metric(synth, metric: dict) -> dict[str, str] | None:
    """The dimensions of one of the service's own metrics (None for an AWS metric)."""
    if metric["Namespace"] != metric_names.NAMESPACE:
        return None
    dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
    assert dimensions.pop("service") == synth.settings.resource_prefix  # as the code emits it
    return dimensions


def test_every_failure_signal_has_its_alarm(dev, prod, jwks):
    assert set(_alarms(dev)) == ALARMS | RESERVED_ALARMS | RESTORE_ALARMS
    assert set(_alarms(prod)) == ALARMS | RESERVED_ALARMS | RESTORE_ALARMS
    assert set(_alarms(jwks)) == ALARMS  # no reservation, nothing to be near; no SnapStart
    dev.template.resource_count_is(
        "AWS::CloudWatch::Alarm", len(ALARMS | RESERVED_ALARMS | RESTORE_ALARMS)
    )


def test_every_alarm_notifies_the_topic_on_alarm_and_recovery(synthesized):
    topic = synthesized.stack.resolve(
        synthesized.stack.node.find_child("Monitoring").topic.topic_arn
    )
    for name, alarm in _alarms(synthesized).items():
        assert alarm["AlarmActions"] == [topic], name
        assert alarm["OKActions"] == [topic], name
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_api_rates_are_shares_of_the_apis_requests_above_a_minimum_volume(prod):
    monitoring = prod.settings.monitoring
    for name, metric, threshold in (
        ("Api5xxRate", "5xx", monitoring.api_5xx_rate_percent),
        ("Api4xxRate", "4xx", monitoring.api_4xx_rate_percent),
    ):
        alarm = _alarms(prod)[name]
        assert alarm["Threshold"] == threshold
        (expression,) = [m for m in alarm["Metrics"] if "Expression" in m]
        assert expression["Expression"] == (
            f"IF(whole >= {monitoring.api_5xx_min_requests}, 100 * FILL(part, 0) / whole, 0)"
        )
        assert {m["MetricName"] for m in _metric_stats(alarm)} == {metric, "Count"}


def test_latency_alarm_is_the_apis_p99(prod):
    alarm = _alarms(prod)["ApiLatencyP99"]
    assert (alarm["MetricName"], alarm["ExtendedStatistic"]) == ("Latency", "p99")
    assert alarm["Threshold"] == prod.settings.monitoring.api_latency_p99_ms < 30_000


def test_authorizer_alarms_read_the_metrics_the_authorizer_emits(dev):
    errors = _alarms(dev)["AuthorizerErrors"]
    stats = _metric_stats(errors)
    own = [(m["MetricName"], _own_metric(dev, m)) for m in stats if _own_metric(dev, m) is not None]
    assert own == [(metric_names.AUTHORIZER_ERRORS, {})]  # the total, as emitted
    assert {m["MetricName"] for m in stats} == {metric_names.AUTHORIZER_ERRORS, "Errors"}
    denials = _metric_stats(_alarms(dev)["AuthorizerDenialRate"])
    assert {m["MetricName"] for m in denials} == {metric_names.AUTHORIZER_DENIALS, "Invocations"}


def test_invoke_failure_alarm_sums_every_server_side_error_type(dev):
    stats = _metric_stats(_alarms(dev)["InvokeFailures"])
    assert {m["MetricName"] for m in stats} == {metric_names.INVOKE_FAILURES}
    types = {_own_metric(dev, m)[metric_names.ERROR_TYPE_DIMENSION] for m in stats}
    assert types == set(server_error_types())
    assert {"provider_error", "storage_error", "provider_timeout", "internal_error"} <= types
    assert "content_policy_violation" not in types  # the caller's prompt, not our failure


def test_duration_alarms_fire_near_each_functions_timeout(dev):
    percent = dev.settings.monitoring.duration_near_timeout_percent
    functions = {fid: dev.stack.node.find_child("Functions").named[fid] for fid in FUNCTION_IDS}
    for fid, function in functions.items():
        alarm = _alarms(dev)[f"DurationNearTimeout{fid}"]
        assert (alarm["MetricName"], alarm["Statistic"]) == ("Duration", "Maximum")
        timeout_ms = function.timeout.to_milliseconds()
        assert alarm["Threshold"] == round(timeout_ms * percent / 100) < timeout_ms


def test_concurrency_alarms_fire_near_each_reservation(prod):
    reserved = prod.settings.functions.reserved_concurrency
    percent = prod.settings.monitoring.concurrency_near_reservation_percent
    alarm = _alarms(prod)["ConcurrencyNearReservationGeneration"]
    assert (alarm["MetricName"], alarm["Statistic"]) == ("ConcurrentExecutions", "Maximum")
    assert alarm["Threshold"] == round(reserved.generation * percent / 100) < reserved.generation


def test_throttle_alarm_covers_every_function(dev):
    stats = _metric_stats(_alarms(dev)["LambdaThrottles"])
    watched = {json.dumps(m["Dimensions"][0]["Value"]) for m in stats}
    assert len(watched) == len(dev.resources("AWS::Lambda::Function"))


def test_step_functions_failures_and_throttles_are_alarmed(dev):
    failures = {m["MetricName"] for m in _metric_stats(_alarms(dev)["JobFailures"])}
    assert failures == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    assert _alarms(dev)["JobFailures"]["Threshold"] == (
        dev.settings.monitoring.job_failures_threshold
    )
    assert _alarms(dev)["JobExecutionThrottles"]["MetricName"] == "ExecutionThrottled"


def test_webhook_failures_and_cost_per_hour_read_the_services_own_metrics(dev):
    webhook = _alarms(dev)["WebhookDeliveryFailures"]
    assert webhook["MetricName"] == metric_names.WEBHOOK_DELIVERY_FAILURES
    assert _own_metric(dev, _metric_stats(webhook)[0]) == {}
    cost = _alarms(dev)["CostPerHour"]
    assert (cost["MetricName"], cost["Period"], cost["Statistic"]) == (
        metric_names.COST_USD,
        3600,
        "Sum",
    )
    assert cost["Threshold"] == dev.settings.monitoring.cost_per_hour_usd


def test_each_provider_has_an_error_rate_alarm_on_its_own_calls(dev):
    for provider in PROVIDERS:
        stats = _metric_stats(_alarms(dev)[f"ProviderErrorRate{provider.title()}"])
        assert {m["MetricName"] for m in stats} == {
            metric_names.PROVIDER_ERRORS,
            metric_names.PROVIDER_CALLS,
        }
        assert all(_own_metric(dev, m) == {"provider": provider} for m in stats)


def test_the_dashboard_shows_every_alarm(dev):
    (dashboard,) = dev.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dev.stack.resolve(dashboard["Properties"]["DashboardBody"]))
    for alarm in dev.stack.node.find_child("Monitoring").alarms:
        assert dev.logical_id(alarm) in body, alarm.node.id
    assert metric_names.COST_USD in body and metric_names.LIMIT_REJECTIONS in body


def test_created_alarm_topic_accepts_tls_only(dev):
    dev.template.resource_count_is("AWS::SNS::Topic", 1)
    (policy,) = dev.resources("AWS::SNS::TopicPolicy").values()
    (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_prod_alarms_reach_the_stage_subscribers(prod):
    assert prod.settings.monitoring.require_subscriber
    subscriptions = prod.resources("AWS::SNS::Subscription").values()
    assert {(s["Properties"]["Protocol"], s["Properties"]["Endpoint"]) for s in subscriptions} == {
        ("email", email) for email in prod.settings.monitoring.alarm_emails
    }


def test_a_stage_may_use_an_existing_alarm_topic(jwks):
    jwks.template.resource_count_is("AWS::SNS::Topic", 0)
    for alarm in _alarms(jwks).values():
        assert alarm["AlarmActions"] == [jwks.settings.monitoring.alarm_topic_arn]


# --- safe deploys ------------------------------------------------------------------------------


def test_generation_alias_shifts_through_codedeploy_with_rollback_on_the_alarms(dev, prod):
    for synth, config in (
        (dev, "CodeDeployDefault.LambdaAllAtOnce"),
        (prod, "CodeDeployDefault.LambdaCanary10Percent5Minutes"),
    ):
        (group,) = synth.resources("AWS::CodeDeploy::DeploymentGroup").values()
        props = group["Properties"]
        assert config in json.dumps(props["DeploymentConfigName"])
        assert props["AutoRollbackConfiguration"]["Enabled"] is True
        assert "DEPLOYMENT_STOP_ON_ALARM" in props["AutoRollbackConfiguration"]["Events"]
        monitoring = synth.stack.node.find_child("Monitoring")
        watched = {a["Name"]["Ref"] for a in props["AlarmConfiguration"]["Alarms"]}
        assert watched == {synth.logical_id(a) for a in monitoring.rollback_alarms}
        assert {a.node.id for a in monitoring.rollback_alarms} >= {
            "Api5xxRate",
            "GenerationErrors",
            "InvokeFailures",
        }
        alias_id = synth.live_alias_ids()["generation.handler"]
        alias = synth.resources("AWS::Lambda::Alias")[alias_id]
        assert "CodeDeployLambdaAliasUpdate" in alias["UpdatePolicy"]


def test_prod_stacks_are_termination_protected_dev_is_not(dev, prod):
    assert prod.stack.termination_protection is True
    assert dev.stack.termination_protection is False


# --- edge protection ---------------------------------------------------------------------------


def test_prod_cdn_is_behind_a_us_east_1_web_acl_with_a_rate_based_rule(prod):
    edge = json.loads((prod.assembly_dir / "ImageService-prod-edge.template.json").read_text())
    (acl,) = [r for r in edge["Resources"].values() if r["Type"] == "AWS::WAFv2::WebACL"]
    props = acl["Properties"]
    assert props["Scope"] == "CLOUDFRONT"
    (rate,) = [r for r in props["Rules"] if "RateBasedStatement" in r["Statement"]]
    assert rate["Statement"]["RateBasedStatement"]["Limit"] == (
        prod.settings.edge.rate_limit_per_5_minutes
    )
    assert rate["Action"] == {"Block": {}}
    manifest = json.loads((prod.assembly_dir / "manifest.json").read_text())
    edge_artifact = manifest["artifacts"]["ImageService-prod-edge"]
    assert edge_artifact["environment"].endswith("/us-east-1")
    (distribution,) = prod.resources("AWS::CloudFront::Distribution").values()
    web_acl = distribution["Properties"]["DistributionConfig"]["WebACLId"]
    assert web_acl["Fn::GetStackOutput"]["StackName"] == "ImageService-prod-edge"
    assert web_acl["Fn::GetStackOutput"]["Region"] == "us-east-1"
    assert "ImageService-prod-edge" in manifest["artifacts"]["ImageService-prod"]["dependencies"]


def test_without_edge_settings_no_web_acl_is_created(dev):
    manifest = json.loads((dev.assembly_dir / "manifest.json").read_text())
    assert "ImageService-dev-edge" not in manifest["artifacts"]


def test_outputs_name_what_other_services_and_ops_need(dev, prod):
    assert set(dev.template_json["Outputs"]) == OUTPUTS | {"JwtSecretArn"}
    assert set(prod.template_json["Outputs"]) == OUTPUTS | {"JwtSecretArn", "ImageCdnDomain"}
    generation = dev.stack.node.find_child("Functions").generation
    assert dev.template_json["Outputs"]["GenerationFunctionName"]["Value"] == dev.stack.resolve(
        generation.function_name
    )
