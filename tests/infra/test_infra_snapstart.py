"""Lambda SnapStart: on the generation function and the job's run and store tasks where the stage
turns it on, nothing SnapStart refuses beside it, and the workflow waiting out an Inactive
version's snapshot without ever invoking a worker twice."""

from __future__ import annotations

import json

import pytest

from image_common.errors import ProviderRateLimited
from image_service.budgets import MIN_BUDGET_SECONDS
from image_service.job_records import FINALIZE_GRACE_SECONDS, START_GRACE_SECONDS
from image_service.pipeline import error_from_failure
from infra.job_definition import TASKS, build_job_definition
from infra.service_code import PROVIDERS

SNAP_STARTED = {"generation.handler", "job_tasks.run", "job_tasks.store"}
NOT_READY = "Lambda.SnapStartNotReadyException"
# AWS's ceiling for ephemeral storage beside SnapStart.
SNAPSTART_MAX_EPHEMERAL_MB = 512


def _functions(synth) -> dict[str, tuple[str, dict]]:
    """Handler → (logical id, properties)."""
    return {
        r["Properties"]["Handler"]: (logical_id, r["Properties"])
        for logical_id, r in synth.resources("AWS::Lambda::Function").items()
    }


def _snap_started(synth) -> dict[str, dict]:
    return {
        handler: props["SnapStart"]
        for handler, (_, props) in _functions(synth).items()
        if "SnapStart" in props
    }


def _states(synth) -> dict:
    (machine,) = synth.resources("AWS::StepFunctions::StateMachine").values()
    return json.loads(machine["Properties"]["DefinitionString"])["States"]


def _retried_errors(state: dict) -> set[str]:
    return {error for retrier in state["Retry"] for error in retrier["ErrorEquals"]}


def _longest_wait_seconds(retriers: list[dict]) -> float:
    """Every retrier run to its last attempt (each counts its own): the most time a task's
    first real invocation can be held back."""
    total = 0.0
    for retrier in retriers:
        for attempt in range(retrier["MaxAttempts"]):
            wait = retrier["IntervalSeconds"] * retrier["BackoffRate"] ** attempt
            total += min(wait, retrier.get("MaxDelaySeconds", wait))
    return total


# --- which functions ---------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_shipped_stages_restore_generation_run_and_store_from_published_versions(stage, request):
    synth = request.getfixturevalue(stage)
    assert synth.settings.functions.snap_start
    snap_started = _snap_started(synth)
    assert set(snap_started) == SNAP_STARTED
    assert all(conf == {"ApplyOn": "PublishedVersions"} for conf in snap_started.values())


def test_a_stage_with_snapstart_off_has_no_snapstart_function_and_no_such_retrier(jwks):
    assert not jwks.settings.functions.snap_start
    assert _snap_started(jwks) == {}
    assert all(NOT_READY not in json.dumps(state) for state in _states(jwks).values())


def test_the_live_alias_of_each_snapstart_function_points_at_its_published_version(dev, prod):
    for synth in (dev, prod):
        functions = _functions(synth)
        versions = synth.resources("AWS::Lambda::Version")
        aliases = synth.resources("AWS::Lambda::Alias")
        alias_ids = synth.live_alias_ids()
        for handler in SNAP_STARTED:
            function_id, _ = functions[handler]
            alias = aliases[alias_ids[handler]]["Properties"]
            assert alias["Name"] == "live"
            assert alias["FunctionName"] == {"Ref": function_id}
            # a numbered version (Fn::GetAtt …Version), never $LATEST: SnapStart restores only those
            version_id, attribute = alias["FunctionVersion"]["Fn::GetAtt"]
            assert attribute == "Version"
            assert versions[version_id]["Properties"]["FunctionName"] == {"Ref": function_id}


def test_nothing_snapstart_refuses_is_set_on_a_snapstart_function(synthesized):
    """No provisioned concurrency (on the function's versions or aliases), no EFS, and no
    ephemeral storage over 512 MB: AWS refuses each beside SnapStart."""
    functions = _functions(synthesized)
    snap_started = {functions[h][0] for h in _snap_started(synthesized)}
    if synthesized.settings.functions.snap_start:
        assert len(snap_started) == len(SNAP_STARTED)
    for handler in _snap_started(synthesized):
        _, props = functions[handler]
        assert "FileSystemConfigs" not in props, handler
        size = props.get("EphemeralStorage", {}).get("Size", SNAPSTART_MAX_EPHEMERAL_MB)
        assert size <= SNAPSTART_MAX_EPHEMERAL_MB, handler
    for kind in ("AWS::Lambda::Version", "AWS::Lambda::Alias"):
        for logical_id, resource in synthesized.resources(kind).items():
            props = resource["Properties"]
            if props["FunctionName"].get("Ref") in snap_started:
                assert "ProvisionedConcurrencyConfig" not in props, logical_id


# --- the run task's provider keys, read by botocore under SnapStart ----------------------------


def test_the_run_task_may_get_exactly_its_provider_keys_and_keeps_the_extension(synthesized):
    """Under SnapStart the run task reads each provider key with GetSecretValue itself; an
    invoke of $LATEST reads it through the extension, which stays."""
    secrets = synthesized.stack.node.find_child("Secrets").provider_keys
    provider_arns = sorted(
        (json.dumps(synthesized.stack.resolve(secrets[p].secret_arn)) for p in PROVIDERS)
    )
    _, run = _functions(synthesized)["job_tasks.run"]
    role_id = run["Role"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    secret_statements = [s for s in statements if "secretsmanager" in json.dumps(s["Action"])]
    assert all(s["Action"] == "secretsmanager:GetSecretValue" for s in secret_statements)
    readable = sorted(
        json.dumps(resource)
        for s in secret_statements
        for resource in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    )
    assert readable == provider_arns  # all five, nothing else, no wildcard
    assert any(
        "Fn::FindInMap" in layer if isinstance(layer, dict) else "Parameters-and-Secrets" in layer
        for layer in run.get("Layers", [])
    )


def test_created_provider_secrets_use_the_aws_managed_key_so_no_kms_grant_is_needed(synthesized):
    created = [
        r["Properties"]
        for r in synthesized.resources("AWS::SecretsManager::Secret").values()
        if "/providers/" in r["Properties"]["Name"]
    ]
    assert created
    assert all("KmsKeyId" not in props for props in created)


# --- the workflow while a snapshot is re-created -----------------------------------------------


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_run_and_store_retry_while_their_version_is_inactive_and_no_other_task_does(stage, request):
    states = _states(request.getfixturevalue(stage))
    for name in ("Run", "Store"):
        assert NOT_READY in _retried_errors(states[name]), name
    for name in ("Poll", "RecordFailure", "Notify"):
        assert NOT_READY not in _retried_errors(states[name]), name


def _definition(snap_started=frozenset(TASKS)) -> dict:
    arns = {task: f"arn:aws:lambda:eu-west-1:123456789012:function:{task}" for task in TASKS}
    return build_job_definition(arns, worker_timeout_seconds=300, snap_started=snap_started)


def test_run_retries_only_errors_where_its_worker_never_ran_and_fails_them_as_retryable():
    """Run pays the provider: it may be retried only when Lambda never ran it — and a job that
    still could not run ends as 429 "try again" (nothing was paid), not as a 500."""
    run = _definition()["States"]["Run"]
    assert _retried_errors(run) == {"Lambda.TooManyRequestsException", NOT_READY}
    for error in _retried_errors(run):
        failure = error_from_failure(error, "")
        assert isinstance(failure, ProviderRateLimited) and failure.retry_after, error


def test_the_inactive_version_retrier_has_its_own_count_and_backs_off_for_a_minute_or_more():
    for name in TASKS:
        state = _definition()["States"][name.title().replace("_", "")]
        (retrier,) = [r for r in state["Retry"] if NOT_READY in r["ErrorEquals"]]
        assert retrier["ErrorEquals"] == [NOT_READY]  # not sharing another error's attempts
        assert retrier["BackoffRate"] > 1
        assert _longest_wait_seconds([retrier]) >= 60, name  # a snapshot is not re-made at once


def test_runs_retries_end_before_the_deadline_of_a_job_nobody_claimed():
    """While run is retried the job is unclaimed; readers (and a direct invoke) give it up at
    created + start grace + its budget + the finalize grace. Every retry must fall before the
    shortest such deadline, or a job already reported failed could still call the provider."""
    run = _definition()["States"]["Run"]
    shortest_deadline = START_GRACE_SECONDS + MIN_BUDGET_SECONDS + FINALIZE_GRACE_SECONDS
    assert _longest_wait_seconds(run["Retry"]) < shortest_deadline


def test_only_the_named_tasks_get_the_retrier_and_an_unknown_task_is_refused():
    states = _definition(frozenset({"store"}))["States"]
    assert NOT_READY in _retried_errors(states["Store"])
    assert NOT_READY not in _retried_errors(states["Run"])
    with pytest.raises(ValueError, match="not a job task: generation"):
        _definition(frozenset({"generation"}))
