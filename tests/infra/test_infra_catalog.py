"""The model catalog's ops overlay in the template: the functions that read the catalog know
the SSM parameter's name and may ``ssm:GetParameter`` exactly that parameter — nothing else on
SSM, and no other function at all. The stack does not create the parameter (a deploy must not
overwrite what ops published)."""

from __future__ import annotations

import pytest

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
    ("stage", "parameter", "max_age"),
    [("dev", "/image-service-dev/catalog-overlay", "300"),
     ("prod", "/image-service-prod/catalog-overlay", "300"),
     ("jwks", "/shared/image-models/overlay", "60")],
)  # fmt: skip
def test_catalog_readers_know_the_overlay_parameter_and_may_get_only_it(
    request, stage, parameter, max_age
):
    synth = request.getfixturevalue(stage)
    functions = _functions(synth)
    for handler in READS_CATALOG:
        env = functions[handler]["Environment"]["Variables"]
        assert env["CATALOG_OVERLAY_PARAMETER"] == parameter, handler
        assert env["CATALOG_OVERLAY_MAX_AGE_SECONDS"] == max_age, handler
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
