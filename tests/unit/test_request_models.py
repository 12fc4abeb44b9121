"""The request contract: the seed shape is accepted as is, every bad input is one clear 400."""

import pytest

from image_common.errors import InvalidRequest
from image_service.models import parse_request
from tests.conftest import request_body

SEED_REQUEST = {
    "prompt": "A serene mountain landscape at sunset",
    "settings": {"image": {"model": "openai", "width": 1024, "height": 1024, "quality": "high"}},
    "customer_id": 123,
    "save_to_db": True,
}


def test_seed_contract_is_accepted_unchanged():
    request = parse_request(SEED_REQUEST)
    assert request.prompt == SEED_REQUEST["prompt"]
    assert (request.image.model, request.image.width, request.image.height) == (
        "openai",
        1024,
        1024,
    )
    assert request.image.quality == "high"
    assert request.customer_id == 123 and request.save_to_db is True
    assert request.image.n == 1 and request.image.input_images == []


def test_defaults_when_settings_are_missing():
    request = parse_request({"prompt": "a cat", "customer_id": 5})
    assert request.image.model is None
    assert request.save_to_db is True


def test_optional_additions_are_parsed():
    request = parse_request(
        request_body(
            negative_prompt="blurry",
            seed=42,
            style_preset="Anime",
            output_format="JPG",
            n=3,
            aspect_ratio="16:9",
            input_images=["data:image/png;base64,AAAA"],
            mask="data:image/png;base64,AAAA",
            provider_options={"background": "transparent"},
        )
    )
    image = request.image
    assert image.output_format == "jpeg"  # "jpg" is the same format
    assert image.style_preset == "anime"
    assert (image.seed, image.n, image.aspect_ratio) == (42, 3, "16:9")
    assert image.provider_options == {"background": "transparent"}


def test_null_is_the_same_as_leaving_a_field_out():
    request = parse_request(
        {
            "prompt": "a cat",
            "customer_id": 5,
            "save_to_db": None,
            "settings": {"image": {"n": None}},
        }
    )
    assert request.save_to_db is True and request.image.n == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "", "customer_id": 1}, "prompt"),
        ({"prompt": "   \n", "customer_id": 1}, "prompt"),
        ({"customer_id": 1}, "prompt"),
        ({"prompt": "x" * 32001, "customer_id": 1}, "prompt"),
        ({"prompt": "a cat", "customer_id": 0}, "customer_id"),
        ({"prompt": "a cat", "customer_id": -4}, "customer_id"),
        ({"prompt": "a cat", "customer_id": "abc"}, "customer_id"),
        ({"prompt": "a cat"}, "customer_id"),
        (request_body(width=10, height=1024), "settings.image.width"),
        (request_body(width=1024, height=100000), "settings.image.height"),
        (request_body(n=0), "settings.image.n"),
        (request_body(n=11), "settings.image.n"),
        (request_body(seed=-1), "settings.image.seed"),
        (request_body(seed=2**32), "settings.image.seed"),
        (request_body(quality="ultra"), "settings.image.quality"),
        (request_body(output_format="gif"), "settings.image.output_format"),
        (request_body(aspect_ratio="wide"), "settings.image.aspect_ratio"),
        (request_body(aspect_ratio="0:1"), "settings.image.aspect_ratio"),
        (request_body(input_images=["x"] * 17), "settings.image.input_images"),
        (request_body(mask="data:image/png;base64,AAAA"), "settings.image"),
        (request_body(provider_options="nope"), "settings.image.provider_options"),
        # unknown fields, at every level, are named (a typo must not be served as defaults)
        ({"prompt": "a cat", "customer_id": 1, "save_to_bd": False}, "save_to_bd"),
        (request_body(steps=30), "settings.image.steps"),
        (request_body(size="1792x1024"), "settings.image.size"),
        ({"prompt": "a cat", "customer_id": 1, "settings": {"imgae": {}}}, "settings.imgae"),
        ({"prompt": "a cat", "customer_id": 1, "settings": {"text": {}}}, "settings.text"),
        # JSON types are exact: no bool, string or float for an integer, no string for a bool
        ({"prompt": "a cat", "customer_id": True}, "customer_id"),
        ({"prompt": "a cat", "customer_id": "7"}, "customer_id"),
        ({"prompt": "a cat", "customer_id": 7.0}, "customer_id"),
        ({"prompt": "a cat", "customer_id": 2**63}, "customer_id"),
        ({"prompt": "a cat", "customer_id": 1, "save_to_db": "false"}, "save_to_db"),
        ({"prompt": "a cat", "customer_id": 1, "save_to_db": 0}, "save_to_db"),
        (request_body(width="1024", height=1024), "settings.image.width"),
        (request_body(n=2.0), "settings.image.n"),
        (request_body(seed=True), "settings.image.seed"),
        ({"prompt": 42, "customer_id": 1}, "prompt"),
    ],
)
def test_each_invalid_field_is_a_400_naming_the_field(body, field):
    with pytest.raises(InvalidRequest) as caught:
        parse_request(body)
    assert caught.value.status == 400
    assert field in caught.value.details["fields"]
    assert field in caught.value.message


def test_an_unknown_field_points_to_provider_options():
    with pytest.raises(InvalidRequest) as caught:
        parse_request(request_body(steps=30))
    assert "settings.image.steps: unknown field" in caught.value.message
    assert "provider_options" in caught.value.message


def test_nesting_past_64_levels_is_a_400_that_says_so():
    deep: dict = {}
    node = deep
    for _ in range(70):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(InvalidRequest, match="nested deeper than 64 levels"):
        parse_request(request_body(provider_options=deep))
    parse_request(request_body(provider_options={"a": {"b": {"c": [1, 2, {"d": None}]}}}))


def test_a_lone_surrogate_is_a_400_not_an_encoding_crash_later():
    with pytest.raises(InvalidRequest, match="not valid Unicode"):
        parse_request({"prompt": "a \ud800 cat", "customer_id": 1})


def test_non_object_body_is_a_400():
    with pytest.raises(InvalidRequest, match="JSON object"):
        parse_request(["prompt"])


def test_error_message_never_echoes_the_input():
    secret_prompt = "x" * 32001
    with pytest.raises(InvalidRequest) as caught:
        parse_request({"prompt": secret_prompt, "customer_id": 1})
    assert secret_prompt[:100] not in caught.value.message
