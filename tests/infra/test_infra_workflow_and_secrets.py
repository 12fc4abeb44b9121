"""The job state machine and table as deployed, and secrets that the template references but
never holds."""

from __future__ import annotations

import json

import pytest

from image_service import job_store
from infra.constructs import job_table
from infra.job_definition import (
    ERROR_JOB_FAILED,
    PLACEHOLDERS,
    TASKS,
    build_job_definition,
    job_definition_template,
)
from infra.service_code import PROVIDERS
from tests.infra.conftest import EXISTING_OPENAI_SECRET

TASK_HANDLERS = {
    PLACEHOLDERS[task].removeprefix("${").removesuffix("}"): f"job_tasks.{task}" for task in TASKS
}


def _state_machine(synth) -> dict:
    (machine,) = synth.resources("AWS::StepFunctions::StateMachine").values()
    return machine["Properties"]


def _definition(**arns) -> dict:
    return build_job_definition({t: arns.get(t, t) for t in TASKS}, worker_timeout_seconds=300)


def test_the_deployed_definition_is_the_one_tests_execute(synthesized):
    machine = _state_machine(synthesized)
    worker_timeout = synthesized.settings.functions.job_run.timeout_seconds
    snap_started = synthesized.stack.node.find_child("Functions").snap_started_job_tasks
    assert json.loads(machine["DefinitionString"]) == job_definition_template(
        worker_timeout_seconds=worker_timeout, snap_started=snap_started
    )
    arns = {
        name: f"arn:aws:lambda:us-east-1:123456789012:function:{name}" for name in TASK_HANDLERS
    }
    substituted = machine["DefinitionString"]
    for name, arn in arns.items():
        substituted = substituted.replace("${" + name + "}", arn)
    by_task = {task: arns[PLACEHOLDERS[task][2:-1]] for task in TASKS}
    assert json.loads(substituted) == build_job_definition(
        by_task, worker_timeout_seconds=worker_timeout, snap_started=snap_started
    )


def test_each_placeholder_is_the_live_alias_of_the_matching_task_function(synthesized):
    aliases = synthesized.live_alias_ids()
    substitutions = _state_machine(synthesized)["DefinitionSubstitutions"]
    assert substitutions == {
        name: {"Ref": aliases[handler]} for name, handler in TASK_HANDLERS.items()
    }


def test_state_machine_is_standard_with_full_logging_and_tracing(synthesized):
    machine = _state_machine(synthesized)
    assert machine["StateMachineType"] == "STANDARD"
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["LoggingConfiguration"]["IncludeExecutionData"] == (
        synthesized.settings.jobs.log_execution_data
    )
    assert machine["TracingConfiguration"] == {"Enabled": True}
    synthesized.template.has_resource_properties(
        "AWS::Logs::LogGroup",
        {"LogGroupName": f"/aws/vendedlogs/states/{synthesized.settings.resource_prefix}-jobs"},
    )


def test_the_run_task_outlives_the_job_budget(synthesized):
    run = json.loads(_state_machine(synthesized)["DefinitionString"])["States"]["Run"]
    settings = synthesized.settings
    assert settings.jobs.max_budget_seconds < settings.functions.job_run.timeout_seconds
    assert run["TimeoutSeconds"] > settings.functions.job_run.timeout_seconds


def test_state_machine_role_invokes_only_the_five_tasks_live_aliases(synthesized):
    aliases = synthesized.live_alias_ids()
    role_id = _state_machine(synthesized)["RoleArn"]["Fn::GetAtt"][0]
    statements = [
        s
        for p in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    invokes = [s for s in statements if "lambda:InvokeFunction" in s["Action"]]
    assert len(invokes) == 1 and invokes[0]["Action"] == "lambda:InvokeFunction"
    assert sorted(invokes[0]["Resource"], key=json.dumps) == sorted(
        ({"Ref": aliases[h]} for h in TASK_HANDLERS.values()), key=json.dumps
    )


def test_every_step_that_can_fail_is_caught_and_recorded():
    states = _definition()["States"]
    for name in ("Run", "Poll", "Store"):
        assert states[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}
        ]
    assert states["RecordFailure"]["Next"] == "Notify"
    assert states["Notify"]["Catch"][0]["Next"] == "Outcome"  # a webhook never fails a job
    fails = {s["Error"] for s in states.values() if s["Type"] == "Fail"}
    assert fails == {ERROR_JOB_FAILED}


def test_every_transition_names_an_existing_state():
    definition = _definition()
    states = definition["States"]
    targets = {definition["StartAt"]}
    for state in states.values():
        targets |= {state.get("Next"), state.get("Default")} - {None}
        targets |= {choice["Next"] for choice in state.get("Choices", [])}
        targets |= {catch["Next"] for catch in state.get("Catch", [])}
    assert targets <= set(states)
    assert set(states) - targets == set()  # nothing unreachable


# --- the jobs table -------------------------------------------------------------------------------


def test_the_table_is_the_one_the_code_expects(synthesized):
    (table,) = synthesized.resources("AWS::DynamoDB::GlobalTable").values()
    props = table["Properties"]
    assert props["KeySchema"] == job_store.TABLE["KeySchema"]
    assert sorted(props["AttributeDefinitions"], key=json.dumps) == sorted(
        job_store.TABLE["AttributeDefinitions"], key=json.dumps
    )
    (index,) = props["GlobalSecondaryIndexes"]
    (expected,) = job_store.TABLE["GlobalSecondaryIndexes"]
    assert index["IndexName"] == expected["IndexName"] == job_store.INDEX_NAME
    assert index["KeySchema"] == expected["KeySchema"]
    assert index["Projection"] == expected["Projection"]
    assert props["TimeToLiveSpecification"] == {
        "AttributeName": job_store.TTL_ATTRIBUTE, "Enabled": True,
    }  # fmt: skip
    for name in (
        "PARTITION_KEY",
        "INDEX_NAME",
        "INDEX_PARTITION_KEY",
        "INDEX_SORT_KEY",
        "TTL_ATTRIBUTE",
        "IDEMPOTENCY_KEY_PREFIX",
    ):
        assert getattr(job_table, name) == getattr(job_store, name), name


def test_the_table_is_on_demand_encrypted_and_recoverable(synthesized):
    (table,) = synthesized.resources("AWS::DynamoDB::GlobalTable").values()
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"]["SSEEnabled"] is True
    (replica,) = props["Replicas"]
    assert replica["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    retain = synthesized.settings.storage.retain_data
    assert replica.get("DeletionProtectionEnabled", False) is retain
    assert table["DeletionPolicy"] == ("Retain" if retain else "Delete")


def test_secrets_are_generated_never_written_into_the_template(synthesized):
    for secret in synthesized.resources("AWS::SecretsManager::Secret").values():
        props = secret["Properties"]
        assert "SecretString" not in props
        assert "GenerateSecretString" in props
    text = json.dumps(synthesized.template_json)
    assert 'SecretString"' not in text.replace('GenerateSecretString"', "")


def test_functions_get_secret_arns_not_values(synthesized):
    secret_ids = set(synthesized.resources("AWS::SecretsManager::Secret"))
    for function in synthesized.resources("AWS::Lambda::Function").values():
        for name, value in function["Properties"]["Environment"]["Variables"].items():
            if "SECRET" in name and name.endswith("_ARN"):
                # A secret this stack owns (Ref), or an existing one by its complete ARN.
                assert (
                    value["Ref"] in secret_ids
                    if isinstance(value, dict)
                    else value.startswith("arn:aws:secretsmanager:")
                ), name
            assert "KEY" not in name or name.endswith("_ARN"), name


def test_an_existing_provider_secret_is_referenced_by_its_arn_and_the_others_created(jwks):
    # four providers' secrets created, OpenAI's referenced, the webhook secret; no JWT secret
    jwks.template.resource_count_is("AWS::SecretsManager::Secret", len(PROVIDERS) - 1 + 1)
    run = _function_env(jwks, "job_tasks.run")
    assert run["OPENAI_API_KEY_SECRET_ARN"] == EXISTING_OPENAI_SECRET


def test_one_secret_per_provider_each_holding_an_api_key_field(dev):
    secrets = dev.stack.node.find_child("Secrets").provider_keys
    assert set(secrets) == set(PROVIDERS)
    names = {
        r["Properties"]["Name"]
        for r in dev.resources("AWS::SecretsManager::Secret").values()
        if "providers/" in r["Properties"]["Name"]
    }
    assert names == {f"image-service-dev/providers/{p}" for p in PROVIDERS}


@pytest.mark.parametrize(
    ("handler", "providers"),
    [
        ("generation.handler", set()),  # the job's run task calls the provider, not the request
        ("job_tasks.run", set(PROVIDERS)),
        ("job_tasks.poll", {"flux"}),
        ("job_tasks.store", set()),
        ("job_tasks.record_failure", set()),
        ("job_tasks.notify", set()),
        ("authorizer.handler", set()),
        ("health.handler", set()),
    ],
)
def test_each_function_is_told_and_may_read_only_the_provider_keys_it_uses(dev, handler, providers):
    stack = dev.stack
    secrets = stack.node.find_child("Secrets").provider_keys
    env = _function_env(dev, handler)
    told = {p for p, identity in PROVIDERS.items() if identity.secret_arn_variable in env}
    assert told == providers
    readable = [
        resource
        for statement in _role_statements(dev, handler)
        if "secretsmanager:GetSecretValue" in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
    ]
    provider_arns = {json.dumps(stack.resolve(secrets[p].secret_arn)): p for p in secrets}
    assert {provider_arns[json.dumps(r)] for r in readable if json.dumps(r) in provider_arns} == (
        providers
    )


def _function_env(synth, handler: str) -> dict:
    (props,) = [
        r["Properties"]
        for r in synth.resources("AWS::Lambda::Function").values()
        if r["Properties"]["Handler"] == handler
    ]
    return props["Environment"]["Variables"]


def _role_statements(synth, handler: str) -> list[dict]:
    (props,) = [
        r["Properties"]
        for r in synth.resources("AWS::Lambda::Function").values()
        if r["Properties"]["Handler"] == handler
    ]
    role_id = props["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in synth.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]
