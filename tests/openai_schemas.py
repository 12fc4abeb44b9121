"""Answers of the OpenAI-compatible surface checked against OpenAI's official OpenAPI schemas
(the vendored excerpt in ``tests/specs/``): every field valid, every required field present, and
no field beyond the schema's own except the extensions ``docs/openai-compatible.md`` lists."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SPEC_PATH = Path(__file__).parent / "specs" / "openai-openapi.yaml"
# The extension fields each schema may carry on this surface (the SDK keeps them as extras).
EXTENSIONS = {
    "ImagesResponse": {"provider", "model", "warnings", "cost_usd", "job_id"},
    "Model": {"served_by"},
    "ListModelsResponse": set(),
    "ErrorResponse": set(),
    "Error": {"job_id"},
}


@cache
def openai_spec() -> dict[str, Any]:
    with SPEC_PATH.open() as handle:
        return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def assert_openai_schema(schema_name: str, body: Any) -> None:
    components = openai_spec()["components"]
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema_name}", "components": components}
    )
    validator.validate(body)
    _no_unknown_fields(schema_name, body, components["schemas"])


def _no_unknown_fields(schema_name: str, body: dict, schemas: dict) -> None:
    allowed = set(schemas[schema_name]["properties"]) | EXTENSIONS[schema_name]
    unknown = set(body) - allowed
    assert not unknown, f"fields neither in OpenAI's {schema_name} nor extensions: {unknown}"
    if schema_name == "ListModelsResponse":
        for model in body["data"]:
            _no_unknown_fields("Model", model, schemas)
    if schema_name == "ErrorResponse":
        _no_unknown_fields("Error", body["error"], schemas)
