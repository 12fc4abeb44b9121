"""The model catalog's ops overlay in the template: the functions that read the catalog know
the SSM parameter's name and may ``ssm:GetParameter`` exactly that parameter — nothing else on
SSM, and no other function at all. The stack does not create the parameter (a deploy must not
overwrite what ops published). A rejected or unreachable overlay raises an alarm on exactly the
metric, namespace and dimensions the catalog code emits in those functions."""

from __future__ import annotations

import json

import pytest

from image_service.catalog import CatalogSource, OverlayUnreachable
from infra.service_code import metric_names
from tests.infra.test_infra_functions import _actions, _functions, _resources, _statements

# Generation resolves models, the job's run and store tasks rebuild its model spec, the models
# check compares the catalog in force; poll, record_failure and notify never read it.
READS_CATALOG = {
    "generation.handler",
    "job_tasks.run",
    "job_tasks.store",
    "models_check.handler",
}


def _ssm_statements(synth, handler: str) -> list[dict]:
    return [
        s for s in _statements(synth, handler) if any(a.startswith("ssm:") for a in _actions(s))
    ]


def _parameter_arn(synth, name: str) -> str:
    stack = synth.stack
    arn = stack.format_arn(service="ssm", resource="parameter", resource_name=name.lstrip("/"))
    return stack.resolve(arn)


@pytest.mark.parametrize(
    ("stage", "parameter", "max_age", "retry"),
    [("dev", "/image-service-dev/catalog-overlay", "300", "30"),
     ("prod", "/image-service-prod/catalog-overlay", "300", "30"),
     ("jwks", "/shared/image-models/overlay", "60", "45")],
)  # fmt: skip
def test_catalog_readers_know_the_overlay_parameter_and_may_get_only_it(
    request, stage, parameter, max_age, retry
):
    synth = request.getfixturevalue(stage)
    functions = _functions(synth)
    for handler in READS_CATALOG:
        env = functions[handler]["Environment"]["Variables"]
        assert env["CATALOG_OVERLAY_PARAMETER"] == parameter, handler
        assert env["CATALOG_OVERLAY_MAX_AGE_SECONDS"] == max_age, handler
        assert env["CATALOG_OVERLAY_RETRY_SECONDS"] == retry, handler
        [statement] = _ssm_statements(synth, handler)
        assert _actions(statement) == {"ssm:GetParameter"}
        assert _resources(statement) == [_parameter_arn(synth, parameter)]


def test_no_other_function_reads_the_catalog_or_ssm(synthesized):
    functions = _functions(synthesized)
    for handler in set(functions) - READS_CATALOG:
        assert "CATALOG_OVERLAY_PARAMETER" not in (
            functions[handler].get("Environment", {}).get("Variables", {})
        ), handler
        assert _ssm_statements(synthesized, handler) == [], handler


def test_the_stack_does_not_own_the_overlay_parameter(synthesized):
    assert synthesized.resources("AWS::SSM::Parameter") == {}


def test_no_function_pins_the_service_date(synthesized):
    for handler, props in _functions(synthesized).items():
        assert "CATALOG_DATE" not in props.get("Environment", {}).get("Variables", {}), handler


# --- the overlay's alarms ----------------------------------------------------------------------

OVERLAY_ALARMS = [
    # alarm id, the metric the catalog counts, the stage setting for its threshold, what meets it
    ("CatalogOverlayRejected", metric_names.CATALOG_OVERLAY_REJECTED,
     "catalog_overlay_rejected_threshold", lambda: '{"modles": {}}'),
    ("CatalogOverlayUnreachable", metric_names.CATALOG_OVERLAY_UNREACHABLE,
     "catalog_overlay_unreachable_threshold", "unreachable"),
]  # fmt: skip


def _overlay_alarm(synth, alarm_id: str) -> dict:
    monitoring = synth.stack.node.find_child("Monitoring")
    (alarm,) = [a for a in monitoring.alarms if a.node.id == alarm_id]
    return synth.resources("AWS::CloudWatch::Alarm")[synth.logical_id(alarm)]["Properties"]


@pytest.mark.parametrize(("alarm_id", "metric", "threshold", "_meet"), OVERLAY_ALARMS)
def test_a_bad_or_unreachable_overlay_alarms_on_the_metric_every_reader_emits(
    synthesized, alarm_id, metric, threshold, _meet
):
    alarm = _overlay_alarm(synthesized, alarm_id)
    monitoring = synthesized.settings.monitoring
    assert (alarm["MetricName"], alarm["Statistic"]) == (metric, "Sum")
    assert alarm["Period"] == monitoring.period_minutes * 60
    assert alarm["Threshold"] == getattr(monitoring, threshold)
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"  # no read met a problem: nothing wrong
    topic = synthesized.stack.resolve(
        synthesized.stack.node.find_child("Monitoring").topic.topic_arn
    )
    assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic]
    functions = _functions(synthesized)
    for handler in READS_CATALOG:  # one alarm hears them all: the same namespace and service
        env = functions[handler]["Environment"]["Variables"]
        assert alarm["Namespace"] == env["POWERTOOLS_METRICS_NAMESPACE"], handler
        assert alarm["Dimensions"] == [
            {"Name": metric_names.SERVICE_DIMENSION, "Value": env["POWERTOOLS_SERVICE_NAME"]}
        ], handler


def test_the_overlay_thresholds_are_the_stages(jwks):
    alarms = {a: _overlay_alarm(jwks, a)["Threshold"] for a, *_ in OVERLAY_ALARMS}
    assert alarms == {"CatalogOverlayRejected": 2, "CatalogOverlayUnreachable": 9}


@pytest.mark.parametrize(("alarm_id", "metric", "_threshold", "meet"), OVERLAY_ALARMS)
def test_what_the_catalog_emits_in_a_readers_environment_is_what_its_alarm_reads(
    dev, monkeypatch, capsys, alarm_id, metric, _threshold, meet
):
    """The code, run with the environment the template gives the generation function, writes
    the EMF line the alarm matches: same namespace, metric name, and exactly its dimensions."""
    alarm = _overlay_alarm(dev, alarm_id)
    env = _functions(dev)["generation.handler"]["Environment"]["Variables"]
    for name in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"):
        monkeypatch.setenv(name, env[name])

    def unreachable() -> str:
        raise OverlayUnreachable("AccessDeniedException")

    CatalogSource(unreachable if meet == "unreachable" else meet).current()  # the real recorder

    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"_aws"')]
    [document] = [d for d in lines if metric in d]
    [directive] = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == alarm["Namespace"]
    assert [m["Name"] for m in directive["Metrics"]] == [alarm["MetricName"]]
    [dimension_names] = directive["Dimensions"]
    assert {name: document[name] for name in dimension_names} == {
        d["Name"]: d["Value"] for d in alarm["Dimensions"]
    }
