"""The ``generate_image`` tool: exported in three vendors' shapes from the request model, valid
JSON Schema, no ``customer_id`` anywhere, and the docs file in sync."""

import json
from pathlib import Path

import jsonschema
import pytest

from image_common.errors import ContentPolicyViolation
from image_service.models import parse_invoke_event
from image_service.registry import accepted_names
from image_service.tool import TOOL_NAME, tool_definitions, tool_failure, tool_success

EXPORTED = Path(__file__).parents[2] / "docs" / "generate_image.tool.json"
TOOLS = tool_definitions()
SCHEMAS = {
    "anthropic": TOOLS["anthropic"]["input_schema"],
    "openai": TOOLS["openai"]["function"]["parameters"],
    "mcp": TOOLS["mcp"]["inputSchema"],
}


def test_each_shape_names_and_describes_the_tool():
    assert TOOLS["anthropic"]["name"] == TOOLS["mcp"]["name"] == TOOL_NAME == "generate_image"
    assert TOOLS["openai"]["type"] == "function"
    assert TOOLS["openai"]["function"]["name"] == TOOL_NAME
    assert TOOLS["openai"]["function"]["strict"] is True
    for description in (
        TOOLS["anthropic"]["description"],
        TOOLS["mcp"]["description"],
        TOOLS["openai"]["function"]["description"],
    ):
        assert "image" in description.lower()


@pytest.mark.parametrize("shape", sorted(SCHEMAS))
def test_schema_is_valid_draft_2020_12_and_has_no_customer_id(shape):
    schema = SCHEMAS[shape]
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert "customer_id" not in json.dumps(schema)
    assert "prompt" in schema["required"]


@pytest.mark.parametrize("shape", sorted(SCHEMAS))
def test_model_names_are_the_catalogs_accepted_names(shape):
    model = SCHEMAS[shape]["$defs"]["ImageSettings"]["properties"]["model"]
    (names,) = [option["enum"] for option in model["anyOf"] if "enum" in option]
    assert names == accepted_names()
    assert {"openai", "gpt-image-1", "flux-dev", "sd3.5-large", "grok"} <= set(names)


def _objects(node):
    if isinstance(node, dict):
        if "properties" in node:
            yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for item in node:
            yield from _objects(item)


def test_openai_shape_is_strict_mode_compatible():
    schema = SCHEMAS["openai"]
    objects = list(_objects(schema))
    assert len(objects) == 3  # the input, settings, settings.image
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert sorted(obj["required"]) == sorted(obj["properties"])
    dropped = {"default", "minLength", "maxLength", "title"}
    assert not dropped & set(_keywords(schema))
    image = schema["$defs"]["ImageSettings"]["properties"]
    assert "provider_options" not in image  # a free-form object cannot be strict
    assert {"type": "null"} in image["n"]["anyOf"]  # optional: nullable, default said in words
    assert "Default: 1." in image["n"]["description"]


def _keywords(node):
    """Every schema keyword used, not counting property and definition names."""
    if isinstance(node, list):
        for item in node:
            yield from _keywords(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for subschema in value.values():
                    yield from _keywords(subschema)
            else:
                yield key
                yield from _keywords(value)


@pytest.mark.parametrize(
    ("payload", "valid"),
    [
        ({"prompt": "a cat"}, True),
        ({"prompt": "a cat", "settings": {"image": {"n": 2, "model": "flux"}}}, True),
        ({"prompt": "a cat", "customer_id": 1}, False),
        ({}, False),
        ({"prompt": "a cat", "settings": {"image": {"n": 50}}}, False),
        ({"prompt": "a cat", "settings": {"image": {"model": "midjourney"}}}, False),
        ({"prompt": "a cat", "settings": {"image": {"steps": 30}}}, False),
    ],
)
@pytest.mark.parametrize("shape", ["anthropic", "mcp"])
def test_an_agent_can_validate_arguments_with_the_schema(shape, payload, valid):
    validator = jsonschema.Draft202012Validator(SCHEMAS[shape])
    assert validator.is_valid(payload) is valid


def test_a_strict_openai_call_with_nulls_validates_and_the_service_accepts_it():
    arguments = {
        "prompt": "a cat",
        "save_to_db": None,
        "settings": {"image": {name: None for name in
                               SCHEMAS["openai"]["$defs"]["ImageSettings"]["properties"]}},
    }  # fmt: skip
    arguments["settings"]["image"]["model"] = "grok"
    jsonschema.Draft202012Validator(SCHEMAS["openai"]).validate(arguments)
    request = parse_invoke_event({"customer_id": 7, "input": arguments})
    assert (request.customer_id, request.image.model, request.image.n) == (7, "grok", 1)
    assert request.save_to_db is True  # null means "not given"


def test_exported_schema_file_is_in_sync_with_the_code():
    assert json.loads(EXPORTED.read_text()) == json.loads(json.dumps(TOOLS)), (
        "docs/generate_image.tool.json is stale: run `make tool-schema`"
    )


def test_tool_results_are_shaped_for_a_model():
    ok = tool_success({"provider": "xai", "model": "grok-imagine-image", "image_url": "u",
                       "images": [{}, {}], "warnings": [{"setting": "seed"}]})  # fmt: skip
    assert ok["success"] is True
    assert (
        ok["text"]
        == "Generated 2 images with xai grok-imagine-image; 1 setting(s) adjusted, see warnings."
    )
    failed = tool_failure(ContentPolicyViolation("refused"))
    assert failed == {
        "success": False,
        "text": "Image generation failed: refused",
        "error": {"code": 422, "type": "content_policy_violation", "message": "refused"},
    }
