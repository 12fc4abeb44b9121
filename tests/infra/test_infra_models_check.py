"""The daily model catalog check: its schedule, its least-privilege function, and its alarms."""

from __future__ import annotations

import json

import pytest

from infra.settings import SettingsError, load_stage_settings
from tests.infra.test_infra_functions import _actions, _functions, _resources, _statements

HANDLER = "models_check.handler"


def _rule(synth) -> dict:
    (rule,) = synth.resources("AWS::Events::Rule").values()
    return rule["Properties"]


def _function_logical_id(synth) -> str:
    return synth.logical_id(synth.stack.node.find_child("Functions").models_check)


def _live_alias(synth) -> dict:
    return {"Ref": synth.live_alias_ids()[HANDLER]}


def _alarm(synth, name: str) -> dict:
    monitoring = synth.stack.node.find_child("Monitoring")
    (alarm,) = [a for a in monitoring.alarms if a.node.id == name]
    return synth.resources("AWS::CloudWatch::Alarm")[synth.logical_id(alarm)]["Properties"]


def test_a_daily_schedule_invokes_the_check_function_s_live_alias(dev):
    rule = _rule(dev)
    assert rule["ScheduleExpression"] == "cron(0 6 * * ? *)" == dev.settings.models_check.schedule
    assert rule["State"] == "ENABLED"
    (target,) = rule["Targets"]
    assert target["Arn"] == _live_alias(dev)
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 7200}


def test_only_eventbridge_from_that_rule_may_invoke_the_check(dev):
    alias = _live_alias(dev)
    function = {"Fn::GetAtt": [_function_logical_id(dev), "Arn"]}
    permissions = [
        p["Properties"]
        for p in dev.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] in (alias, function)
    ]
    (rule_id,) = dev.resources("AWS::Events::Rule")
    assert permissions == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": alias,
            "Principal": "events.amazonaws.com",
            "SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]},
        }
    ]


def test_a_stage_can_turn_the_schedule_off(jwks):
    assert _rule(jwks)["State"] == "DISABLED"


def test_the_check_reads_only_the_listing_providers_keys_and_its_own_logs(synthesized):
    stack = synthesized.stack
    secrets = stack.node.find_child("Secrets").provider_keys
    group = _functions(synthesized)[HANDLER]["LoggingConfig"]["LogGroup"]["Ref"]
    granted = sorted(
        (action, json.dumps(resource))
        for s in _statements(synthesized, HANDLER)
        if not _actions(s) <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
        for action in _actions(s)
        for resource in _resources(s)
    )
    log_group = json.dumps({"Fn::GetAtt": [group, "Arn"]})
    overlay = stack.format_arn(
        service="ssm",
        resource="parameter",
        resource_name=synthesized.settings.catalog_overlay_parameter.lstrip("/"),
    )
    expected = [("logs:CreateLogStream", log_group), ("logs:PutLogEvents", log_group)] + [
        ("secretsmanager:GetSecretValue", json.dumps(stack.resolve(secrets[p].secret_arn)))
        for p in ("openai", "google", "xai")  # Stability and BFL: no list, no key
    ]
    # the catalog in force (ops overlay included) is what it compares
    expected.append(("ssm:GetParameter", json.dumps(stack.resolve(overlay))))
    assert granted == sorted(expected)


EXTENSION_PREFIXES = ("PARAMETERS_SECRETS_EXTENSION_", "SECRETS_MANAGER_", "SSM_PARAMETER_STORE_")


def test_the_check_code_accepts_the_environment_the_stack_gives_it(dev, jwks):
    from image_service.model_drift import CheckSettings

    for synth in (dev, jwks):
        env = _functions(synth)[HANDLER]["Environment"]["Variables"]
        # the secrets extension's own configuration (it serves the keys over localhost)
        extension = {name for name in env if name.startswith(EXTENSION_PREFIXES)}
        assert "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT" in extension
        assert set(env) - extension == {
            "OPENAI_API_KEY_SECRET_ARN",
            "GEMINI_API_KEY_SECRET_ARN",
            "XAI_API_KEY_SECRET_ARN",
            "MODELS_CHECK_WARNING_DAYS",
            "MODELS_CHECK_ACKNOWLEDGED",
            "CATALOG_OVERLAY_PARAMETER",
            "CATALOG_OVERLAY_MAX_AGE_SECONDS",
            "CATALOG_OVERLAY_RETRY_SECONDS",
            "POWERTOOLS_SERVICE_NAME",
            "POWERTOOLS_METRICS_NAMESPACE",
            "POWERTOOLS_LOG_LEVEL",
        }
        settings = CheckSettings.from_environ({k: v for k, v in env.items() if isinstance(v, str)})
        assert settings.warning_days == synth.settings.models_check.warning_days
        assert settings.acknowledged == set(synth.settings.models_check.acknowledged_models)
    openai_secret = dev.stack.node.find_child("Secrets").provider_keys["openai"]
    env = _functions(dev)[HANDLER]["Environment"]["Variables"]
    assert env["OPENAI_API_KEY_SECRET_ARN"] == dev.stack.resolve(openai_secret.secret_arn)


def test_the_drift_alarm_watches_the_metric_the_function_publishes(synthesized):
    alarm = _alarm(synthesized, "ModelCatalogDrift")
    env = _functions(synthesized)[HANDLER]["Environment"]["Variables"]
    assert alarm["MetricName"] == "ModelDriftFindings"
    assert alarm["Namespace"] == env["POWERTOOLS_METRICS_NAMESPACE"]
    assert alarm["Dimensions"] == [{"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]}]
    assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["Statistic"]) == (
        86400,
        1,
        "Maximum",
    )
    assert alarm["Threshold"] == synthesized.settings.monitoring.model_drift_threshold


def test_the_check_failure_alarm_counts_unreadable_lists_and_function_errors(dev):
    alarm = _alarm(dev, "ModelsCheckFailed")
    stats = {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert stats["failures"]["Metric"]["MetricName"] == "ModelListFailures"
    assert stats["errors"]["Metric"]["MetricName"] == "Errors"
    assert stats["errors"]["Metric"]["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": _function_logical_id(dev)}}
    ]
    assert all(s["Period"] == 86400 for s in stats.values())
    (expression,) = [m["Expression"] for m in alarm["Metrics"] if "Expression" in m]
    assert expression == "FILL(failures, 0) + FILL(errors, 0)"
    assert alarm["Threshold"] == 1 and alarm["EvaluationPeriods"] == 1


@pytest.mark.parametrize(
    ("models_check", "problem"),
    [
        ({"schedule": "every day"}, "models_check.schedule"),
        ({"warning_days": 0}, "models_check.warning_days"),
        ({"schedul": "rate(1 day)"}, "models_check.schedul"),
    ],
)
def test_a_bad_models_check_setting_names_its_path(models_check, problem):
    with pytest.raises(SettingsError, match=problem):
        load_stage_settings({"stage": "t", "stages": {"t": {"models_check": models_check}}})


def test_a_rate_schedule_is_accepted():
    settings = load_stage_settings(
        {"stage": "t", "stages": {"t": {"models_check": {"schedule": "rate(12 hours)"}}}}
    )
    assert settings.models_check.schedule == "rate(12 hours)"
