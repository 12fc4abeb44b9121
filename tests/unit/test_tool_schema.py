"""The ``generate_image`` tool: its exported schema is the request model's, and in sync."""

import json
from pathlib import Path

import jsonschema
import pytest

from image_common.errors import ContentPolicyViolation
from image_service.tool import TOOL_NAME, generate_image_tool, tool_failure, tool_success

EXPORTED = Path(__file__).parents[2] / "docs" / "generate_image.tool.json"


def test_tool_definition_names_and_describes_the_tool():
    tool = generate_image_tool()
    assert tool["name"] == TOOL_NAME == "generate_image"
    assert "image" in tool["description"].lower()
    schema = tool["input_schema"]
    assert set(schema["required"]) == {"prompt", "customer_id"}
    image = schema["$defs"]["ImageSettings"]["properties"]
    assert {"model", "width", "height", "quality", "n", "seed", "input_images"} <= set(image)


def test_exported_schema_file_is_in_sync_with_the_code():
    assert json.loads(EXPORTED.read_text()) == json.loads(json.dumps(generate_image_tool())), (
        "docs/generate_image.tool.json is stale: run `make tool-schema`"
    )


@pytest.mark.parametrize(
    ("payload", "valid"),
    [
        ({"prompt": "a cat", "customer_id": 1}, True),
        (
            {"prompt": "a cat", "customer_id": 1, "settings": {"image": {"n": 2, "model": "flux"}}},
            True,
        ),
        ({"prompt": "a cat"}, False),
        ({"prompt": "a cat", "customer_id": 0}, False),
        ({"prompt": "a cat", "customer_id": 1, "settings": {"image": {"n": 50}}}, False),
    ],
)
def test_an_agent_can_validate_arguments_with_the_schema(payload, valid):
    validator = jsonschema.Draft202012Validator(generate_image_tool()["input_schema"])
    assert validator.is_valid(payload) is valid


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
