"""The Flux state machine as deployed, and secrets that the template references but never holds."""

from __future__ import annotations

import json

import pytest

from infra.constructs.flux_workflow import execution_timeout_seconds
from infra.flux_definition import (
    ERROR_MODERATED,
    ERROR_PROVIDER,
    ERROR_TASK_FAILED,
    ERROR_TIMEOUT,
    build_flux_definition,
    flux_definition_template,
)
from infra.service_code import PROVIDERS
from tests.infra.conftest import EXISTING_OPENAI_SECRET

TASK_HANDLERS = {
    "SubmitFunctionArn": "flux_tasks.submit",
    "PollFunctionArn": "flux_tasks.poll",
    "StoreFunctionArn": "flux_tasks.store",
    "RecordFailureFunctionArn": "flux_tasks.record_failure",
}


def _state_machine(synth) -> dict:
    (machine,) = synth.resources("AWS::StepFunctions::StateMachine").values()
    return machine["Properties"]


def test_the_deployed_definition_is_the_one_tests_execute(synthesized):
    machine = _state_machine(synthesized)
    deployed = json.loads(machine["DefinitionString"])
    timeout = execution_timeout_seconds(synthesized.settings)
    assert deployed == flux_definition_template(timeout_seconds=timeout)
    # Substituting the ARNs gives exactly what build_flux_definition makes for them.
    arns = {
        name: f"arn:aws:lambda:us-east-1:123456789012:function:{name}" for name in TASK_HANDLERS
    }
    substituted = machine["DefinitionString"]
    for name, arn in arns.items():
        substituted = substituted.replace("${" + name + "}", arn)
    assert json.loads(substituted) == build_flux_definition(
        arns["SubmitFunctionArn"],
        arns["PollFunctionArn"],
        arns["StoreFunctionArn"],
        arns["RecordFailureFunctionArn"],
        timeout_seconds=timeout,
    )


def test_each_placeholder_is_the_live_alias_of_the_matching_task_function(synthesized):
    aliases = synthesized.live_alias_ids()
    substitutions = _state_machine(synthesized)["DefinitionSubstitutions"]
    assert substitutions == {
        name: {"Ref": aliases[handler]} for name, handler in TASK_HANDLERS.items()
    }


def test_state_machine_is_express_with_full_logging_and_tracing(synthesized):
    machine = _state_machine(synthesized)
    assert machine["StateMachineType"] == "EXPRESS"
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["LoggingConfiguration"]["IncludeExecutionData"] == (
        synthesized.settings.flux.log_execution_data
    )
    assert machine["TracingConfiguration"] == {"Enabled": True}
    synthesized.template.has_resource_properties(
        "AWS::Logs::LogGroup",
        {"LogGroupName": f"/aws/vendedlogs/states/{synthesized.settings.resource_prefix}-flux"},
    )


def test_execution_timeout_covers_the_budget_within_express_limits(synthesized):
    timeout = json.loads(_state_machine(synthesized)["DefinitionString"])["TimeoutSeconds"]
    assert synthesized.settings.flux.budget_seconds < timeout <= 300


def test_state_machine_role_invokes_only_the_four_tasks_live_aliases(synthesized):
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


def test_every_failure_ends_in_a_typed_error_after_recording_it():
    states = build_flux_definition("s", "p", "st", "rf")["States"]
    fails = {name: s["Error"] for name, s in states.items() if s["Type"] == "Fail"}
    assert set(fails.values()) == {
        ERROR_MODERATED,
        ERROR_PROVIDER,
        ERROR_TIMEOUT,
        ERROR_TASK_FAILED,
    }
    for name in ("Submit", "Poll", "Store"):
        assert states[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}
        ]
    assert states["RecordFailure"]["ResultPath"] is None
    assert states["RecordFailure"]["Next"] == "FailureKind"


def test_every_transition_names_an_existing_state():
    definition = build_flux_definition("s", "p", "st", "rf")
    states = definition["States"]
    targets = {definition["StartAt"]}
    for state in states.values():
        targets |= {state.get("Next"), state.get("Default")} - {None}
        targets |= {choice["Next"] for choice in state.get("Choices", [])}
        targets |= {catch["Next"] for catch in state.get("Catch", [])}
    assert targets <= set(states)
    assert set(states) - targets == set()  # nothing unreachable


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
    # four providers' secrets created, OpenAI's referenced; no JWT secret in jwks mode
    jwks.template.resource_count_is("AWS::SecretsManager::Secret", len(PROVIDERS) - 1)
    generation = _function_env(jwks, "generation.handler")
    assert generation["OPENAI_API_KEY_SECRET_ARN"] == EXISTING_OPENAI_SECRET


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
        ("generation.handler", set(PROVIDERS) - {"flux"}),  # Flux runs in the workflow
        ("flux_tasks.submit", {"flux"}),
        ("flux_tasks.poll", {"flux"}),
        ("flux_tasks.store", set()),
        ("flux_tasks.record_failure", set()),
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
