"""``GET /image/models``: every model and alias, with provider, status, successor and
capabilities, straight from the registry — through the real handler and an API Gateway event."""

from __future__ import annotations

import json

import pytest

from image_service.registry import ALIASES, MODELS
from tests.conftest import http_event


@pytest.fixture
def generation():
    import generation as module

    module.image_service.cache_clear()  # the service (and its settings) of this test
    yield module
    module.image_service.cache_clear()


def get_models(module, lambda_context, **event_kwargs) -> tuple[int, dict, dict]:
    response = module.handler(http_event("GET", "/image/models", **event_kwargs), lambda_context)
    return response["statusCode"], json.loads(response["body"]), response.get("headers") or {}


def test_every_model_and_alias_is_listed(generation, lambda_context):
    status, body, headers = get_models(generation, lambda_context)
    assert status == 200 and body["success"] is True
    data = body["data"]
    assert data["default_model"] == "gpt-image-2.5-flare"
    assert data["as_of"] == "2026-11-30"  # the service's clock (CATALOG_DATE in tests)
    assert [m["id"] for m in data["models"]] == list(MODELS)
    assert {a["alias"]: a["model"] for a in data["aliases"]} == dict(ALIASES)
    assert headers["Cache-Control"] == "private, max-age=300"
    for model in data["models"]:
        assert {"id", "provider", "status", "shutdown_date", "successor", "capabilities",
                "served_by"} <= set(model)  # fmt: skip
        assert model["status"] in ("active", "preview", "deprecated", "retired")
        assert model["provider"] in ("openai", "stability", "flux", "google", "xai")


def test_capabilities_are_the_registrys(generation, lambda_context):
    _, body, _ = get_models(generation, lambda_context)
    models = {m["id"]: m for m in body["data"]["models"]}
    sd3 = models["sd3.5-large"]["capabilities"]
    assert sd3["aspect_ratios"] == [
        "21:9",
        "16:9",
        "3:2",
        "5:4",
        "1:1",
        "4:5",
        "2:3",
        "9:16",
        "9:21",
    ]
    assert sd3["image_to_image"] is True and sd3["ratio_with_input_images"] is False
    assert sd3["negative_prompt"] is True and "anime" in sd3["style_presets"]
    assert models["core"]["capabilities"]["image_to_image"] is False
    assert models["sd3.5-large-turbo"]["capabilities"]["negative_prompt"] is False
    grok = models["grok-imagine-image"]["capabilities"]
    assert grok["resolutions"] == ["1k", "2k"] and grok["max_images_per_call"] == 10
    assert grok["sizes"] == [] and grok["size_rule"] is None
    assert models["gemini-3-pro-image"]["capabilities"]["resolutions"] == ["1K", "2K", "4K"]
    flash = models["gemini-3.1-flash-image"]["capabilities"]
    assert flash["resolutions"] == ["512", "1K", "2K", "4K"] and "1:8" in flash["aspect_ratios"]
    assert models["gpt-image-2.6-flare"]["capabilities"]["qualities"][-3:] == [
        "xhigh",
        "max",
        "auto",
    ]
    assert models["gpt-image-2.6-flare"]["capabilities"]["complexities"] == [
        "low",
        "medium",
        "high",
    ]
    assert models["flux-2-pro"]["price_usd_per_megapixel"] == {"first": 0.03, "additional": 0.015}
    assert models["gpt-image-2"]["price_usd_per_million_tokens"] == {
        "text_input": 5.0, "image_input": 8.0, "image_output": 30.0
    }  # fmt: skip
    assert models["gpt-image-2"]["capabilities"]["size_rule"]["multiple_of"] == 16
    assert models["gpt-image-1"]["capabilities"]["sizes"] == ["1024x1024", "1536x1024", "1024x1536"]
    assert models["core"]["price_usd_per_image"] == {"default": 0.03}
    assert models["grok-imagine-image-2.0"]["price_usd_per_image"] is None


def test_statuses_come_from_the_dates_with_successor_and_what_serves_them(
    generation, lambda_context
):
    _, body, _ = get_models(generation, lambda_context)
    models = {m["id"]: m for m in body["data"]["models"]}
    imagen = models["imagen-4.0-generate-001"]
    assert (imagen["status"], imagen["shutdown_date"]) == ("retired", "2026-08-17")
    assert imagen["successor"] == imagen["served_by"] == "gemini-3.1-flash-image"
    assert models["grok-2-image"]["served_by"] == "grok-imagine-image"
    assert models["gemini-3-pro-image-preview"]["status"] == "retired"
    deprecated = models["gpt-image-1.5"]
    assert (deprecated["status"], deprecated["shutdown_date"]) == ("deprecated", "2026-12-01")
    assert deprecated["successor"] == "gpt-image-2.6-flare"
    assert deprecated["served_by"] == "gpt-image-1.5"  # until its shutdown date
    assert models["gpt-image-2"]["status"] == "active"
    assert models["gpt-image-2"]["shutdown_date"] is None
    assert models["ultra"]["served_by"] == "ultra" and models["ultra"]["successor"] is None
    aliases = {a["alias"]: a for a in body["data"]["aliases"]}
    assert aliases["dall-e"] == {
        "alias": "dall-e",
        "model": "dall-e-3",
        "provider": "openai",
        "served_by": "gpt-image-2",
    }
    assert aliases["stability"]["served_by"] == "sd3.5-large"
    assert aliases["imagen"]["served_by"] == "gemini-3.1-flash-image"


def test_a_deployment_serving_a_retired_model_lists_it_as_served(
    generation, lambda_context, monkeypatch
):
    custom = generation.settings.model_copy(
        update={"enabled_retired_models": "imagen-4.0-generate-001"}
    )
    monkeypatch.setattr(generation, "settings", custom)
    _, body, _ = get_models(generation, lambda_context)
    models = {m["id"]: m for m in body["data"]["models"]}
    assert models["imagen-4.0-generate-001"]["served_by"] == "imagen-4.0-generate-001"
    assert models["imagen-3.0-generate-002"]["served_by"] == "gemini-3.1-flash-image"


def test_without_the_authorizers_context_the_listing_is_a_401(generation, lambda_context):
    status, body, _ = get_models(generation, lambda_context, customer_id=None)
    assert status == 401 and body["error"]["type"] == "unauthorized"


def test_the_listing_needs_no_provider_or_storage(generation, lambda_context, monkeypatch):
    for name in (
        "OPENAI_API_KEY",
        "STABILITY_API_KEY",
        "GEMINI_API_KEY",
        "XAI_API_KEY",
        "BFL_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    status, _, _ = get_models(generation, lambda_context)
    assert status == 200
