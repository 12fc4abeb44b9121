"""Cold starts of the SnapStart functions as metrics: a metric filter per function and duration
(restore, init) on exactly their log groups, the run step's and generation's p90 restore alarmed
against docs/performance.md's margin, a dashboard graph of both. And the stale provider key's
alarm.

The filter pattern is also run against sample report records: no Python library evaluates
CloudWatch filter patterns, and moto's logs backend matches only plain terms (a JSON pattern is
"unsupported" there), so ``matches`` below evaluates the one form these filters use."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from infra.service_code import metric_names

SNAP_STARTED = {"Generation", "JobRun", "JobStore"}
FIELDS = {
    metric_names.RESTORE_DURATION: "restoreDurationMs",
    metric_names.INIT_DURATION: "initDurationMs",
}
# docs/performance.md: "margin left for Lambda's restore" of the run step, against the openai SDK
PERFORMANCE_MD_RESTORE_MARGIN_MS = 340


def restored_report(restore_ms: float = 287.52) -> dict[str, Any]:
    """A restored invoke's report record, as the Telemetry API's platform.report schema has it."""
    return {
        "time": "2026-11-30T10:00:00.000Z",
        "type": "platform.report",
        "record": {
            "requestId": "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa",
            "metrics": {
                "durationMs": 212.4,
                "billedDurationMs": 500,
                "memorySizeMB": 1024,
                "maxMemoryUsedMB": 181,
                "restoreDurationMs": restore_ms,
            },
            "status": "success",
        },
    }


def init_report(init_ms: float = 956.1) -> dict[str, Any]:
    record = restored_report()
    del record["record"]["metrics"]["restoreDurationMs"]
    record["record"]["metrics"]["initDurationMs"] = init_ms
    return record


def warm_report() -> dict[str, Any]:
    record = restored_report()
    del record["record"]["metrics"]["restoreDurationMs"]
    return record


TERM = re.compile(r'^\((\$(?:\.\w+)+) (=|>=) ("[^"*]*"|-?\d+(?:\.\d+)?)\)$')


def matches(pattern: str, message: str) -> bool:
    """CloudWatch's JSON filter pattern, only the form these filters use: ``{ T && T ... }`` with
    each ``T`` a ``($.path = "string")`` (equal, no wildcard) or ``($.path >= number)`` (a
    number field). Anything else fails the test rather than guess."""
    assert pattern.startswith("{ ") and pattern.endswith(" }"), pattern
    try:
        event = json.loads(message)
    except ValueError:
        return False  # a JSON pattern never matches a plain-text line
    for term in pattern[2:-2].split(" && "):
        found = TERM.match(term)
        assert found, f"not a form this evaluator knows: {term}"
        path, operator, literal = found.groups()
        value: Any = event
        for key in path.split(".")[1:]:
            if not isinstance(value, dict) or key not in value:
                return False
            value = value[key]
        if operator == "=":
            if value != json.loads(literal):
                return False
        elif isinstance(value, bool) or not isinstance(value, int | float):
            return False
        elif value < float(literal):
            return False
    return True


def metric_value(expression: str, message: str) -> float:
    value: Any = json.loads(message)
    for key in expression.split(".")[1:]:
        value = value[key]
    return value


def _filters(synth) -> dict[tuple[str, str], dict]:
    """(function id, metric) → the metric filter's properties."""
    functions = synth.stack.node.find_child("Functions").named
    log_groups = {
        synth.stack.resolve(fn.log_group.node.default_child.logical_id): fid
        for fid, fn in functions.items()
    }
    filters = {}
    for resource in synth.resources("AWS::Logs::MetricFilter").values():
        props = resource["Properties"]
        (transformation,) = props["MetricTransformations"]
        function_id = log_groups[props["LogGroupName"]["Ref"]]
        base = transformation["MetricName"].split(".")[0]
        filters[(function_id, base)] = props
    return filters


def _alarm(synth, alarm_id: str) -> dict:
    monitoring = synth.stack.node.find_child("Monitoring")
    (alarm,) = [a for a in monitoring.alarms if a.node.id == alarm_id]
    return synth.resources("AWS::CloudWatch::Alarm")[synth.logical_id(alarm)]["Properties"]


def _dashboard_widgets(synth) -> list[dict]:
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard").values()
    body = synth.stack.resolve(dashboard["Properties"]["DashboardBody"])
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    text = "".join(p if isinstance(p, str) else "TOKEN" for p in parts)
    return json.loads(text)["widgets"]


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_restore_and_init_durations_are_filtered_from_exactly_the_snapstart_functions_logs(
    stage, request
):
    synth = request.getfixturevalue(stage)
    filters = _filters(synth)
    assert set(filters) == {(fid, name) for fid in SNAP_STARTED for name in FIELDS}
    prefix = synth.settings.resource_prefix
    for (function_id, name), props in filters.items():
        field = FIELDS[name]
        assert props["FilterPattern"] == (
            f'{{ ($.type = "platform.report") && ($.record.metrics.{field} >= 0) }}'
        )
        assert props["MetricTransformations"] == [
            {
                "MetricName": f"{name}.{prefix}.{function_id}",
                "MetricNamespace": metric_names.NAMESPACE,
                "MetricValue": f"$.record.metrics.{field}",
                "Unit": "Milliseconds",
            }
        ]


def test_a_stage_without_snapstart_has_no_cold_start_filter_alarm_or_graph(jwks):
    assert not jwks.settings.functions.snap_start
    jwks.template.resource_count_is("AWS::Logs::MetricFilter", 0)
    monitoring = jwks.stack.node.find_child("Monitoring")
    assert not [a for a in monitoring.alarms if a.node.id.startswith("RestoreDuration")]
    titles = [w["properties"].get("title", "") for w in _dashboard_widgets(jwks)]
    assert not [t for t in titles if metric_names.RESTORE_DURATION in t]


def test_the_restore_filter_takes_the_restore_duration_of_a_restored_invokes_report(dev):
    props = _filters(dev)[("JobRun", metric_names.RESTORE_DURATION)]
    pattern = props["FilterPattern"]
    value = props["MetricTransformations"][0]["MetricValue"]
    restored = json.dumps(restored_report(287.52))
    assert matches(pattern, restored)
    assert metric_value(value, restored) == 287.52
    for other in (
        json.dumps(init_report()),  # an on-demand init: no restore
        json.dumps(warm_report()),  # a warm invoke
        json.dumps({"time": "…", "type": "platform.restoreStart", "record": {}}),
        # the function's own JSON log line, even one that names the field
        json.dumps({"level": "INFO", "message": "restoreDurationMs", "service": "x"}),
        "REPORT RequestId: 6d68 Duration: 212.40 ms Restore Duration: 287.52 ms",  # text format
    ):
        assert not matches(pattern, other), other


def test_the_init_filter_takes_an_on_demand_inits_duration_and_not_a_restore(dev):
    props = _filters(dev)[("Generation", metric_names.INIT_DURATION)]
    pattern = props["FilterPattern"]
    initialised = json.dumps(init_report(956.1))
    assert matches(pattern, initialised)
    assert metric_value(props["MetricTransformations"][0]["MetricValue"], initialised) == 956.1
    assert not matches(pattern, json.dumps(restored_report()))
    assert not matches(pattern, json.dumps(warm_report()))


@pytest.mark.parametrize("function_id", ["JobRun", "Generation"])
def test_the_p90_restore_of_run_and_generation_notifies_above_the_measured_margin(dev, function_id):
    alarm = _alarm(dev, f"RestoreDurationP90{function_id}")
    monitoring = dev.settings.monitoring
    threshold = {
        "JobRun": monitoring.job_run_restore_p90_ms,
        "Generation": monitoring.generation_restore_p90_ms,
    }[function_id]
    assert threshold == PERFORMANCE_MD_RESTORE_MARGIN_MS  # the default: the documented margin
    assert alarm["MetricName"] == (
        f"{metric_names.RESTORE_DURATION}.{dev.settings.resource_prefix}.{function_id}"
    )
    assert alarm["Namespace"] == metric_names.NAMESPACE
    assert "Dimensions" not in alarm  # a filter's metric has none (see monitoring.py)
    assert (alarm["ExtendedStatistic"], alarm["Threshold"]) == ("p90", threshold)
    assert alarm["Period"] == monitoring.period_minutes * 60
    assert alarm["TreatMissingData"] == "notBreaching"  # a quiet stage rarely restores
    # it notifies; it does not roll a deploy back
    rollback = dev.stack.node.find_child("Monitoring").rollback_alarms
    assert f"RestoreDurationP90{function_id}" not in {a.node.id for a in rollback}


def test_the_store_tasks_restore_is_graphed_but_not_alarmed(dev):
    monitoring = dev.stack.node.find_child("Monitoring")
    assert "RestoreDurationP90JobStore" not in {a.node.id for a in monitoring.alarms}
    assert ("JobStore", metric_names.RESTORE_DURATION) in _filters(dev)


def test_the_dashboard_graphs_p50_p90_and_max_restore_and_init_per_snapstart_function(dev):
    prefix = dev.settings.resource_prefix
    for name in FIELDS:
        (graph,) = [
            w
            for w in _dashboard_widgets(dev)
            if w["properties"].get("title", "").startswith(f"{name} ")
        ]
        shown = {
            (metric[1], metric[-1]["stat"])
            for metric in graph["properties"]["metrics"]
            if metric[0] == metric_names.NAMESPACE
        }
        assert shown == {
            (f"{name}.{prefix}.{fid}", stat)
            for fid in SNAP_STARTED
            for stat in ("p50", "p90", "Maximum")
        }


def test_a_stale_provider_key_alarms_at_the_first_request_served_one(dev):
    alarm = _alarm(dev, "ProviderKeyStale")
    assert alarm["MetricName"] == metric_names.PROVIDER_KEY_STALE_SERVED
    assert alarm["Namespace"] == metric_names.NAMESPACE
    # the service dimension alone: the set the code emits it with
    assert alarm["Dimensions"] == [
        {"Name": metric_names.SERVICE_DIMENSION, "Value": dev.settings.resource_prefix}
    ]
    assert (alarm["Statistic"], alarm["Period"]) == ("Sum", 300)
    assert alarm["Threshold"] == dev.settings.monitoring.provider_key_stale_threshold == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
