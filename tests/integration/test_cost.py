"""``cost_usd`` in every answer: the provider's own usage/cost figure when it gives one, else the
registry's price for that size and quality, else ``null`` — never a made-up 0."""

from __future__ import annotations

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
    assert data["cost_usd"] == pytest.approx(2 * 0.039)


# --- the provider's own usage figures -------------------------------------------------------------


def test_xai_cost_comes_from_usage_ticks_even_where_the_registry_has_no_price(
    image_service, emulators
):
    assert MODELS["grok-imagine-image-quality"].pricing.per_image(quality=None, size=None) is None
    data = generate(image_service, model="grok-imagine-image-quality", n=2)
    assert data["cost_usd"] == pytest.approx(2 * 0.07)  # 700_000_000 ticks each


def test_gemini_cost_comes_from_image_output_tokens(image_service, emulators):
    data = generate(image_service, model="gemini")
    assert data["cost_usd"] == pytest.approx(1290 * 30 / 1_000_000)  # 0.0387, not the table's 0.039
    data = generate(image_service, model="gemini-3-pro-image-preview", width=2048, height=2048)
    assert data["cost_usd"] == pytest.approx(1120 * 120 / 1_000_000)


def test_openai_cost_comes_from_usage_tokens(image_service, emulators):
    data = generate(image_service, model="gpt-image-1", quality="low")
    assert data["cost_usd"] == pytest.approx(272 * 40 / 1_000_000)


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


@pytest.mark.parametrize(
    ("usage", "tokens"),
    [
        ({"candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}]}, 1290),
        (
            {
                "candidatesTokensDetails": [
                    {"modality": "TEXT", "tokenCount": 40},
                    {"modality": "IMAGE", "tokenCount": 1290},
                ]
            },
            1290,
        ),
        ({"candidatesTokenCount": 1330}, None),  # no per-modality split: text may be in it
        ({"candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": "many"}]}, None),
        (None, None),
    ],
)
def test_gemini_prices_only_image_output_tokens(usage, tokens):
    request = ProviderRequest("p", MODELS["gemini-2.5-flash-image"], GenerationSettings())
    expected = None if tokens is None else round(tokens * 30 / 1_000_000, 6)
    assert gemini._usage_cost(usage, request) == expected


# --- unknown --------------------------------------------------------------------------------------


def test_an_unknown_cost_is_null_not_zero(generation, lambda_context):
    status, raw = post(generation, lambda_context, model="gemini-3.1-flash-image-preview")
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
