"""The Google adapter on the wire, both APIs: Gemini ``generateContent`` and the retired Imagen
``:predict`` (served directly only where ENABLED_RETIRED_MODELS says so), through the emulator."""

from __future__ import annotations

import base64
import datetime
import io

import pytest
from PIL import Image

from image_common.errors import (
    ContentPolicyViolation,
    InvalidRequest,
    ProviderError,
    ProviderRateLimited,
)
from local.emulators import gemini as gemini_emulator
from tests.conftest import (
    PROVIDER_KEYS,
    TEST_BUCKET,
    data_url,
    generate,
    image_bytes,
    inline_service,
)

KEY = PROVIDER_KEYS["google"]
BASE = "https://google.emulator.test/v1beta/models"


def last(emulators):
    return emulators["google"].requests[-1]


def stored_image(s3, key: str) -> Image.Image:
    return Image.open(io.BytesIO(s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read()))


@pytest.fixture
def imagen_enabled(service_with, emulators):
    """A deployment whose Google account still serves Imagen on the Gemini API (the provider's
    calendar stands before Imagen's shutdown)."""
    emulators["google"].clock = lambda: datetime.date(2026, 8, 1)
    return service_with(enabled_retired_models="imagen-4.0-generate-001,imagen-3.0-generate-002")


# --- generateContent: text-to-image ---------------------------------------------------------------


def test_text_to_image_is_a_generate_content_call_with_image_config(image_service, emulators, s3):
    data = generate(image_service, "A paper crane", model="gemini", width=1920, height=1080)
    request = last(emulators)
    assert request.url == f"{BASE}/gemini-3.1-flash-image:generateContent"
    assert request.headers["x-goog-api-key"] == KEY
    assert "authorization" not in request.headers
    assert request.json() == {
        "contents": [{"role": "user", "parts": [{"text": "A paper crane"}]}],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"},
        },
    }
    assert (data["provider"], data["model"]) == ("google", "gemini-3.1-flash-image")
    assert data["settings"] == {"aspect_ratio": "16:9", "resolution": "2K", "n": 1}
    assert data["content_type"] == "image/png"
    assert stored_image(s3, data["image_key"]).size == (2048, 1152)


def test_gemini_3_gets_an_image_size_tier_and_its_thought_image_is_skipped(
    image_service, emulators, s3
):
    data = generate(image_service, model="gemini-3-pro-image-preview", width=2048, height=1152)
    body = last(emulators).json()
    assert body["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}
    assert data["settings"] == {"aspect_ratio": "16:9", "resolution": "2K", "n": 1}
    # The emulator sends a 64x64 thought image first, as thinking models do; the answer is the
    # final 2K image.
    assert stored_image(s3, data["image_key"]).size == (2048, 1152)


def test_no_size_asked_sends_the_square_default(image_service, emulators):
    generate(image_service, model="gemini")
    assert last(emulators).json()["generationConfig"]["imageConfig"] == {"aspectRatio": "1:1"}


def test_unsupported_settings_are_reported_not_sent(image_service, emulators):
    data = generate(
        image_service,
        model="gemini",
        seed=3,
        negative_prompt="fog",
        quality="high",
        output_format="jpeg",
        style_preset="anime",
    )
    assert last(emulators).json()["generationConfig"] == {
        "responseModalities": ["TEXT", "IMAGE"],
        "imageConfig": {"aspectRatio": "1:1"},
    }
    assert sorted(w["setting"] for w in data["warnings"]) == [
        "negative_prompt",
        "output_format",
        "quality",
        "seed",
        "style_preset",
    ]
    assert data["content_type"] == "image/png"


def test_provider_options_go_top_level_except_the_request_itself(image_service, emulators):
    safety = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}]
    data = generate(
        image_service,
        model="gemini",
        provider_options={"safetySettings": safety, "contents": []},
    )
    body = last(emulators).json()
    assert body["safetySettings"] == safety
    assert body["contents"][0]["parts"][0]["text"] == "A lighthouse on a cliff"
    assert [w["setting"] for w in data["warnings"]] == ["provider_options.contents"]


# --- generateContent: image-to-image --------------------------------------------------------------


def test_input_images_are_inline_data_parts_after_the_prompt(image_service, emulators, s3):
    png, jpeg = image_bytes("png"), image_bytes("jpeg", 100, 80)
    key = "customers/123/assets/image/earlier.jpg"
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=jpeg, ContentType="image/jpeg")
    data = generate(
        image_service, "Put the cat in the hat", model="gemini", input_images=[data_url(png), key]
    )
    body = last(emulators).json()
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Put the cat in the hat"},
                {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()}},
                {"inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(jpeg).decode()}},
            ],
        }
    ]
    # Nothing asked about size: no imageConfig, so the output follows the input's shape.
    assert body["generationConfig"] == {"responseModalities": ["TEXT", "IMAGE"]}
    assert "aspect_ratio" not in data["settings"] and data["warnings"] == []


def test_too_many_input_images_is_a_400_before_any_call(image_service, emulators):
    with pytest.raises(InvalidRequest, match="at most 14 input image"):
        generate(image_service, model="gemini", input_images=[data_url(image_bytes())] * 15)
    assert emulators["google"].requests == []


# --- generateContent: blocks, errors, garbage -----------------------------------------------------


def test_a_blocked_prompt_is_a_422(image_service, emulators):
    with pytest.raises(ContentPolicyViolation) as caught:
        generate(image_service, "A scene [moderate]", model="gemini")
    assert caught.value.status == 422 and "PROHIBITED_CONTENT" in caught.value.message


def test_a_blocked_image_finish_reason_is_a_422(image_service, emulators):
    with pytest.raises(ContentPolicyViolation, match="IMAGE_SAFETY"):
        generate(image_service, "A scene [image-safety]", model="gemini")


def test_an_answer_without_an_image_is_a_502_that_quotes_the_model(image_service, emulators):
    with pytest.raises(ProviderError) as caught:
        generate(image_service, "A scene [text-only]", model="gemini")
    assert caught.value.status == 502
    assert "without an image" in caught.value.message
    assert "I can only describe that scene." in caught.value.message


def test_rate_limit_is_a_429(image_service, emulators):
    with pytest.raises(ProviderRateLimited):
        generate(image_service, "A scene [rate-limit]", model="gemini")


def test_server_error_is_a_502(image_service, emulators):
    with pytest.raises(ProviderError, match="HTTP 500"):
        generate(image_service, "A scene [server-error]", model="gemini-3-pro-image-preview")


def test_malformed_answer_is_a_502(image_service, emulators):
    with pytest.raises(ProviderError, match="not JSON"):
        generate(image_service, "A scene [garbage]", model="gemini")


def test_inline_data_that_is_not_an_image_is_a_502(image_service, emulators, s3):
    with pytest.raises(ProviderError, match="not an image"):
        generate(image_service, "A scene [not-image]", model="gemini")
    assert s3.list_objects_v2(Bucket=TEST_BUCKET).get("KeyCount", 0) == 0


def test_an_invalid_argument_400_is_a_400_with_the_providers_reason(image_service, emulators):
    with pytest.raises(InvalidRequest) as caught:
        generate(image_service, model="gemini", provider_options={"temperatura": 1})
    assert 'Unknown name "temperatura"' in caught.value.message


def test_a_model_the_provider_no_longer_serves_is_a_502(image_service, emulators, monkeypatch):
    served = dict(gemini_emulator.GEMINI_MODELS)
    served.pop("gemini-3.1-flash-image")  # Google drops it before our catalog knows
    monkeypatch.setattr(gemini_emulator, "GEMINI_MODELS", served)
    with pytest.raises(ProviderError) as caught:
        generate(image_service, model="gemini-3.1-flash-image")
    assert (
        caught.value.status == 502
        and "does not serve gemini-3.1-flash-image" in caught.value.message
    )


# --- n > 1 ----------------------------------------------------------------------------------------


def test_n_images_are_n_parallel_calls_all_stored(image_service, emulators, s3):
    data = generate(image_service, model="gemini", n=3, aspect_ratio="3:4")
    assert len(emulators["google"].requests) == 3
    assert all(
        r.json()["generationConfig"]["imageConfig"] == {"aspectRatio": "3:4"}
        for r in emulators["google"].requests
    )
    assert len(data["images"]) == 3
    assert len({image["image_key"] for image in data["images"]}) == 3
    for image in data["images"]:
        assert stored_image(s3, image["image_key"]).size == (768, 1024)
    assert data["cost_usd"] == pytest.approx(3 * (12 * 0.5 + 1120 * 60) / 1_000_000)


# --- retired: Imagen and gemini-2.0 ---------------------------------------------------------------


def test_imagen_goes_to_its_successor_with_a_warning(image_service, emulators):
    data = generate(image_service, model="imagen", aspect_ratio="16:9")
    assert last(emulators).url == f"{BASE}/gemini-3.1-flash-image:generateContent"
    assert data["model"] == "gemini-3.1-flash-image"
    retired = [w for w in data["warnings"] if w["type"] == "model-retired"]
    assert len(retired) == 1
    message = retired[0]["message"]
    assert "imagen-4.0-generate-001" in message and "2026-08-17" in message
    assert "gemini-3.1-flash-image" in message


def test_enabled_imagen_is_a_predict_call(imagen_enabled, emulators, s3):
    data = generate(
        imagen_enabled,
        "A red bicycle",
        model="imagen",
        n=2,
        aspect_ratio="4:3",
        output_format="jpeg",
    )
    request = last(emulators)
    assert request.url == f"{BASE}/imagen-4.0-generate-001:predict"
    assert request.headers["x-goog-api-key"] == KEY
    assert request.json() == {
        "instances": [{"prompt": "A red bicycle"}],
        "parameters": {
            "sampleCount": 2,
            "aspectRatio": "4:3",
            "outputOptions": {"mimeType": "image/jpeg"},
        },
    }
    assert data["model"] == "imagen-4.0-generate-001"
    assert not [w for w in data["warnings"] if w["type"] == "model-retired"]
    assert [image["content_type"] for image in data["images"]] == ["image/jpeg", "image/jpeg"]
    assert stored_image(s3, data["image_key"]).size == (1024, 768)
    assert data["cost_usd"] == pytest.approx(2 * 0.04)


def test_imagen_batches_n_by_four_per_call(imagen_enabled, emulators):
    data = generate(imagen_enabled, model="imagen-3", n=6)
    counts = sorted(r.json()["parameters"]["sampleCount"] for r in emulators["google"].requests)
    assert counts == [2, 4]
    assert len(data["images"]) == 6


def test_imagen_person_generation_passes_through_provider_options(imagen_enabled, emulators):
    generate(imagen_enabled, model="imagen", provider_options={"personGeneration": "dont_allow"})
    assert last(emulators).json()["parameters"]["personGeneration"] == "dont_allow"


def test_imagen_filtering_every_image_is_a_422(imagen_enabled, emulators):
    with pytest.raises(ContentPolicyViolation, match="withheld every image"):
        generate(imagen_enabled, "A scene [moderate]", model="imagen", n=2)


def test_imagen_filtering_some_images_is_reported(imagen_enabled, emulators):
    data = generate(imagen_enabled, "A scene [filter-one]", model="imagen", n=3)
    assert len(data["images"]) == 2
    (warning,) = [w for w in data["warnings"] if w["setting"] == "n"]
    assert warning["message"] == "The provider's safety filter withheld 1 of 3 images."
    assert data["cost_usd"] == pytest.approx(2 * 0.04)  # only delivered images are priced


def test_imagen_non_image_bytes_are_a_502(imagen_enabled, emulators):
    with pytest.raises(ProviderError, match="not an image"):
        generate(imagen_enabled, "A scene [not-image]", model="imagen")


def test_imagen_refuses_input_images(imagen_enabled, emulators):
    with pytest.raises(InvalidRequest, match="does not accept input images"):
        generate(imagen_enabled, model="imagen", input_images=[data_url(image_bytes())])


def test_enabled_gemini_2_0_preview_is_served_with_text_and_image_modalities(
    service_with, emulators
):
    emulators["google"].clock = lambda: datetime.date(2025, 6, 1)  # before Google dropped it
    service = service_with(enabled_retired_models="gemini-2.0-flash-preview-image-generation")
    data = generate(service, model="gemini-2.0-flash-preview-image-generation")
    assert last(emulators).url.endswith(
        "/gemini-2.0-flash-preview-image-generation:generateContent"
    )
    assert data["model"] == "gemini-2.0-flash-preview-image-generation"


# --- the local stack's way: the emulator over real HTTP on loopback -------------------------------


def test_the_emulator_serves_the_adapter_over_real_http(s3, settings, emulator_over_http):

    emulator = emulator_over_http("google")
    service = inline_service(settings)
    data = generate(service, model="gemini-3-pro-image-preview", aspect_ratio="21:9")
    assert emulator.requests[-1].url.startswith("http://127.0.0.1:")
    assert emulator.requests[-1].json()["generationConfig"]["imageConfig"] == {
        "aspectRatio": "21:9"
    }
    assert stored_image(s3, data["image_key"]).size == (1024, 438)
