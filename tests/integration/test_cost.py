"""``cost_usd`` in every answer: the provider's own usage/cost figure when it gives one, else the
registry's price for that size and quality, else ``null`` — never a made-up 0."""

from __future__ import annotations

import datetime
import json

import pytest

from image_service.images import image_from_bytes
from image_service.providers import gemini, xai
from image_service.providers.base import (
    GeneratedImage,
    GenerationSettings,
    ProviderRequest,
    ProviderResult,
)
from image_service.registry import MODELS
from tests.conftest import generate, http_event, image_bytes, inline_service, request_body


@pytest.fixture
def generation(s3, emulators):
    import generation as module

    module.image_service.cache_clear()
    yield module
    module.image_service.cache_clear()


def post(module, lambda_context, **image) -> tuple[int, str]:
    event = http_event(body=request_body("A tin robot", **image))
    response = module.handler(event, lambda_context)
    return response["statusCode"], response["body"]


@pytest.mark.parametrize(
    "model", ["openai", "stability", "core", "gemini", "grok", "gemini-3.1-flash-image-preview"]
)
def test_every_answer_carries_cost_usd(generation, lambda_context, model):
    status, raw = post(generation, lambda_context, model=model)
    assert status == 200
    assert "cost_usd" in json.loads(raw)["data"]


# --- a known price from the registry --------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "n", "expected"),
    [
        ("core", 1, 0.03),
        ("ultra", 2, 0.16),
        ("sd3.5-flash", 1, 0.025),
        ("sd3.5-large-turbo", 3, 0.12),
    ],
)
def test_stability_is_priced_from_the_registry_per_image(
    image_service, emulators, model, n, expected
):
    data = generate(image_service, model=model, n=n)
    assert data["cost_usd"] == pytest.approx(expected)


def test_the_registry_price_depends_on_quality_and_size(service_with, emulators):
    emulators["openai"].clock = lambda: datetime.date(2026, 5, 1)  # DALL·E still served
    service = service_with(enabled_retired_models="dall-e-3")
    data = generate(service, model="dall-e-3", quality="hd", width=1792, height=1024)
    assert data["cost_usd"] == pytest.approx(0.12)
    data = generate(service, model="dall-e-3", quality="standard")
    assert data["cost_usd"] == pytest.approx(0.04)


def test_a_missing_usage_figure_falls_back_to_the_registry(image_service, emulators, monkeypatch):
    emulator = emulators["google"]
    original = emulator.route

    def without_usage(request):
        answer = original(request)
        document = json.loads(answer.body)
        document.pop("usageMetadata", None)
        answer.body = json.dumps(document).encode()
        return answer

    monkeypatch.setattr(emulator, "route", without_usage)
    data = generate(image_service, model="gemini", n=2)
    assert data["cost_usd"] == pytest.approx(2 * 0.067)  # gemini-3.1-flash-image's list price


# --- the provider's own usage figures -------------------------------------------------------------


def test_xai_cost_comes_from_usage_ticks_even_where_the_registry_has_no_price(
    image_service, emulators
):
    model = MODELS["grok-imagine-image-2.0"]
    assert model.pricing.image_price(quality="medium", size=None) is None
    data = generate(image_service, model="grok-imagine-image-2.0", quality="medium", n=2)
    assert data["cost_usd"] == pytest.approx(2 * 0.04)  # 400_000_000 ticks each at medium 1k


def test_gemini_cost_comes_from_usage_metadata_input_tokens_included(image_service, emulators):
    data = generate(image_service, model="gemini")
    # 12 prompt text tokens at $0.50/M, 1120 image output tokens at $60/M: not the table's 0.067
    assert data["cost_usd"] == pytest.approx((12 * 0.5 + 1120 * 60) / 1_000_000)
    data = generate(image_service, model="gemini-3-pro-image", width=2048, height=2048)
    assert data["cost_usd"] == pytest.approx((12 * 2 + 1120 * 120) / 1_000_000)


def test_openai_cost_comes_from_usage_tokens_input_included(image_service, emulators):
    data = generate(image_service, model="gpt-image-2", quality="low")
    assert data["cost_usd"] == pytest.approx((50 * 5 + 196 * 30) / 1_000_000)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"cost_in_usd_ticks": 200_000_000}, 0.02),  # docs.x.ai's image example
        ({"cost_in_usd_ticks": 37_756_000}, 0.003776),  # docs.x.ai's chat example, $0.0038
        ({"cost_in_usd_ticks": 10_000_000_000}, 1.0),
        ({"cost_in_usd_ticks": 0}, 0.0),  # a real zero from the provider is a zero
        ({"cost_in_usd_ticks": -5}, None),
        ({"cost_in_usd_ticks": "200000000"}, None),
        ({"cost_in_usd_ticks": True}, None),
        ({}, None),
        (None, None),
    ],
)
def test_xai_ticks_convert_at_ten_billion_per_dollar(usage, expected):
    assert xai._ticks_cost(usage) == expected


_IMAGE_OUT = [{"modality": "IMAGE", "tokenCount": 1120}]


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"candidatesTokensDetails": _IMAGE_OUT}, 1120 * 120),
        ({"candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 40}, *_IMAGE_OUT]},
         1120 * 120),  # text output is not billed as image tokens
        ({"candidatesTokensDetails": _IMAGE_OUT, "promptTokenCount": 30}, 1120 * 120 + 30 * 2),
        ({"candidatesTokensDetails": _IMAGE_OUT, "promptTokenCount": 300,
          "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 42},
                                  {"modality": "IMAGE", "tokenCount": 258}]},
         1120 * 120 + 300 * 2),
        ({"candidatesTokenCount": 1330}, None),  # no per-modality split: text may be in it
        ({"candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": "many"}]}, None),
        (None, None),
    ],
)  # fmt: skip
def test_gemini_prices_image_output_and_prompt_tokens(usage, expected):
    request = ProviderRequest("p", MODELS["gemini-3-pro-image"], GenerationSettings())
    want = None if expected is None else round(expected / 1_000_000, 6)
    assert gemini._usage_cost(usage, request) == want


def test_gemini_tokens_of_a_kind_without_a_price_make_the_cost_unknown():
    request = ProviderRequest("p", MODELS["gemini-nano-banana-2.1"], GenerationSettings())
    usage = {"candidatesTokensDetails": _IMAGE_OUT, "promptTokenCount": 30}
    assert gemini._usage_cost(usage, request) is None  # no input price: not a partial sum


# --- unknown --------------------------------------------------------------------------------------


def test_an_unknown_cost_is_null_not_zero(generation, lambda_context):
    status, raw = post(generation, lambda_context, model="gemini-3.1-flash-lite-image")
    assert status == 200
    assert json.loads(raw)["data"]["cost_usd"] is None
    assert '"cost_usd":null' in raw


def test_batches_with_one_unknown_figure_fall_back_to_the_registry_price(s3, settings):
    """Three calls for n=3 and a cost for two only: a partial sum would under-report, so the
    registry's price for all three is used."""
    image = GeneratedImage(image=image_from_bytes(image_bytes()))
    figures = iter([0.5, None, 0.5])

    class Provider:
        name = "stability"

        def generate(self, request):
            return ProviderResult(images=[image], sent={}, cost_usd=next(figures))

    service = inline_service(settings, provider_for=lambda _: Provider())
    data = generate(service, model="core", n=3)
    assert data["cost_usd"] == pytest.approx(3 * 0.03)
