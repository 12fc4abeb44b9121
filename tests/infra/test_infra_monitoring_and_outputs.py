"""Alarms that reach ops, and the outputs other services and ops read."""

from __future__ import annotations

import json

ALARMS = {
    "Api5xxRate",
    "AuthorizerErrors",
    "GenerationErrors",
    "LambdaThrottles",
    "FluxJobFailures",
}
OUTPUTS = {
    "ApiUrl",
    "ImageBucketName",
    "FluxStateMachineArn",
    "GenerationFunctionName",
    "GenerationFunctionArn",
    "InvokeGenerationPolicyArn",
    "AuthorizerFunctionName",
    "ProviderSecretArn",
    "AlarmTopicArn",
    "FluxSubmitFunctionName",
    "FluxPollFunctionName",
    "FluxStoreFunctionName",
    "FluxRecordFailureFunctionName",
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


def test_the_five_alarms_exist(synthesized):
    assert set(_alarms(synthesized)) == ALARMS
    synthesized.template.resource_count_is("AWS::CloudWatch::Alarm", len(ALARMS))


def test_every_alarm_notifies_the_topic_on_alarm_and_recovery(synthesized):
    topic = synthesized.stack.resolve(
        synthesized.stack.node.find_child("Monitoring").topic.topic_arn
    )
    for name, alarm in _alarms(synthesized).items():
        assert alarm["AlarmActions"] == [topic], name
        assert alarm["OKActions"] == [topic], name
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_5xx_alarm_is_a_rate_of_the_apis_requests(prod):
    alarm = _alarms(prod)["Api5xxRate"]
    assert alarm["Threshold"] == prod.settings.monitoring.api_5xx_rate_percent
    (expression,) = [m for m in alarm["Metrics"] if "Expression" in m]
    assert "100 * errors / requests" in expression["Expression"]
    names = {m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert names == {"5xx", "Count"}


def test_function_error_alarms_watch_the_authorizer_and_generation(dev):
    functions = dev.stack.node.find_child("Functions")
    for alarm_name, function in (
        ("AuthorizerErrors", functions.authorizer),
        ("GenerationErrors", functions.generation),
    ):
        alarm = _alarms(dev)[alarm_name]
        assert alarm["MetricName"] == "Errors" and alarm["Namespace"] == "AWS/Lambda"
        assert alarm["Dimensions"] == [
            {"Name": "FunctionName", "Value": dev.stack.resolve(function.function_name)}
        ]


def test_throttle_alarm_covers_every_function(dev):
    alarm = _alarms(dev)["LambdaThrottles"]
    watched = {
        json.dumps(m["MetricStat"]["Metric"]["Dimensions"][0]["Value"])
        for m in alarm["Metrics"]
        if "MetricStat" in m
    }
    assert len(watched) == len(dev.resources("AWS::Lambda::Function"))


def test_flux_alarm_counts_failed_timed_out_and_aborted_jobs(dev):
    alarm = _alarms(dev)["FluxJobFailures"]
    names = {m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert names == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    assert alarm["Threshold"] == dev.settings.monitoring.flux_failures_threshold


def test_created_alarm_topic_accepts_tls_only(dev):
    dev.template.resource_count_is("AWS::SNS::Topic", 1)
    (policy,) = dev.resources("AWS::SNS::TopicPolicy").values()
    (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_a_stage_may_use_an_existing_alarm_topic(jwks):
    jwks.template.resource_count_is("AWS::SNS::Topic", 0)
    for alarm in _alarms(jwks).values():
        assert alarm["AlarmActions"] == [jwks.settings.monitoring.alarm_topic_arn]


def test_outputs_name_what_other_services_and_ops_need(dev, prod):
    assert set(dev.template_json["Outputs"]) == OUTPUTS | {"JwtSecretArn"}
    assert set(prod.template_json["Outputs"]) == OUTPUTS | {"JwtSecretArn", "ImageCdnDomain"}
    generation = dev.stack.node.find_child("Functions").generation
    assert dev.template_json["Outputs"]["GenerationFunctionName"]["Value"] == dev.stack.resolve(
        generation.function_name
    )
