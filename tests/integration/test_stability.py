"""The Stability adapter on the wire: the exact multipart requests for sd3, core and ultra,
both answer shapes (raw bytes, JSON base64), and every error mapping, through the emulator."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from image_common.errors import (
    ContentPolicyViolation,
    InvalidRequest,
    ProviderError,
    ProviderNotConfigured,
    ProviderRateLimited,
)
from image_service.providers import stability
from local.emulators.base import EmulatorRequest
from tests.conftest import (
    PROVIDER_KEYS,
    TEST_BUCKET,
    data_url,
    generate,
    http_event,
    image_bytes,
    inline_service,
    request_body,
)

KEY = PROVIDER_KEYS["stability"]


def sent(emulators, index: int = -1) -> tuple[EmulatorRequest, dict[str, str], dict]:
    """The request the emulator received: (request, text fields, file parts by name)."""
    request = emulators["stability"].requests[index]
    parts = request.form()
    fields = {p.name: p.text for p in parts if p.filename is None}
    files = {p.name: p for p in parts if p.filename is not None}
    return request, fields, files


def stored(s3, key: str) -> tuple[bytes, str]:
    obj = s3.get_object(Bucket=TEST_BUCKET, Key=key)
    return obj["Body"].read(), obj["ContentType"]


# --- text-to-image --------------------------------------------------------------------------------


def test_sd3_text_to_image_sends_exactly_the_fields_stability_documents(
    image_service, emulators, s3
):
    data = generate(
        image_service,
        "A koi pond in autumn",
        model="stability",
        width=1920,
        height=1080,
        seed=42,
        output_format="webp",
        negative_prompt="people",
        style_preset="Anime",
    )
    request, fields, files = sent(emulators)
    assert request.method == "POST"
    assert request.url == "https://stability.emulator.test/v2beta/stable-image/generate/sd3"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["accept"] == "image/*"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert fields == {
        "prompt": "A koi pond in autumn",
        "model": "sd3.5-large",
        "aspect_ratio": "16:9",
        "seed": "42",
        "output_format": "webp",
        "negative_prompt": "people",
        "style_preset": "anime",
    }
    assert files == {}

    assert (data["provider"], data["model"]) == ("stability", "sd3.5-large")
    assert data["settings"] == {
        "aspect_ratio": "16:9",
        "seed": 42,
        "output_format": "webp",
        "negative_prompt": "people",
        "style_preset": "anime",
        "n": 1,
    }
    assert data["seed"] == 42
    body, content_type = stored(s3, data["image_key"])
    assert content_type == data["content_type"] == "image/webp"
    assert Image.open(io.BytesIO(body)).size == (1024, 576)  # the emulator honours 16:9
    assert [w["setting"] for w in data["warnings"]] == ["width/height"]


def test_the_multipart_body_is_sent_even_without_a_file(image_service, emulators):
    generate(image_service, model="core")
    request, fields, files = sent(emulators)
    assert request.url.endswith("/v2beta/stable-image/generate/core")
    assert fields == {"prompt": "A lighthouse on a cliff", "aspect_ratio": "1:1"}  # no "model"
    assert not files


def test_ultra_text_to_image_goes_to_the_ultra_endpoint(image_service, emulators):
    data = generate(image_service, model="ultra", aspect_ratio="9:21", output_format="jpeg")
    request, fields, _ = sent(emulators)
    assert request.url.endswith("/v2beta/stable-image/generate/ultra")
    assert fields == {
        "prompt": "A lighthouse on a cliff",
        "aspect_ratio": "9:21",
        "output_format": "jpeg",
    }
    assert data["content_type"] == "image/jpeg"


@pytest.mark.parametrize("model", ["sd3.5-large-turbo", "sd3.5-medium", "sd3.5-flash"])
def test_each_sd3_model_is_named_in_the_model_field(image_service, emulators, model):
    data = generate(image_service, model=model)
    assert sent(emulators)[1]["model"] == model
    assert data["model"] == model


def test_turbo_does_not_get_a_negative_prompt_and_the_answer_says_so(image_service, emulators):
    data = generate(image_service, model="sd3.5-large-turbo", negative_prompt="people")
    assert "negative_prompt" not in sent(emulators)[1]
    assert "negative_prompt" not in data["settings"]
    (warning,) = data["warnings"]
    assert warning["setting"] == "negative_prompt" and warning["type"] == "unsupported-setting"


def test_an_unknown_style_preset_is_a_400_before_any_call(image_service, emulators):
    with pytest.raises(InvalidRequest) as caught:
        generate(image_service, model="core", style_preset="watercolour")
    assert "Accepted:" in caught.value.message and "pixel-art" in caught.value.message
    assert emulators["stability"].requests == []


# --- image-to-image -------------------------------------------------------------------------------


def test_sd3_image_to_image_sends_mode_image_and_strength_but_no_ratio(image_service, emulators):
    source = image_bytes("jpeg", 320, 200)
    data = generate(
        image_service,
        "Make it winter",
        model="sd3.5-large",
        input_images=[data_url(source, "image/jpeg")],
        aspect_ratio="16:9",
        provider_options={"strength": 0.35},
    )
    _, fields, files = sent(emulators)
    assert fields == {
        "prompt": "Make it winter",
        "model": "sd3.5-large",
        "mode": "image-to-image",
        "strength": "0.35",
    }
    assert list(files) == ["image"]
    assert files["image"].data == source
    assert files["image"].content_type == "image/jpeg"
    assert files["image"].filename == "image.jpg"
    assert "aspect_ratio" not in data["settings"]
    (warning,) = data["warnings"]
    assert warning["setting"] == "aspect_ratio" and "input image's shape" in warning["message"]


def test_image_to_image_without_a_strength_sends_the_default_and_says_so(image_service, emulators):
    data = generate(image_service, model="sd3.5-medium", input_images=[data_url(image_bytes())])
    assert sent(emulators)[1]["strength"] == str(stability.DEFAULT_STRENGTH)
    (warning,) = data["warnings"]
    assert warning["setting"] == "provider_options.strength"
    assert str(stability.DEFAULT_STRENGTH) in warning["message"]


def test_ultra_image_to_image_sends_image_and_strength_without_mode(image_service, emulators, s3):
    source = image_bytes("webp", 128, 128)
    key = "customers/123/assets/image/source.webp"
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=source, ContentType="image/webp")
    data = generate(
        image_service,
        model="ultra",
        input_images=[key],
        aspect_ratio="3:2",
        provider_options={"strength": 1},
    )
    _, fields, files = sent(emulators)
    assert fields == {"prompt": "A lighthouse on a cliff", "aspect_ratio": "3:2", "strength": "1.0"}
    assert files["image"].data == source and files["image"].content_type == "image/webp"
    assert data["warnings"] == []


def test_core_refuses_input_images_with_a_clear_400(image_service, emulators):
    with pytest.raises(InvalidRequest) as caught:
        generate(image_service, model="core", input_images=[data_url(image_bytes())])
    assert caught.value.message.startswith("core does not accept input images")
    assert emulators["stability"].requests == []


@pytest.mark.parametrize("strength", [1.5, -0.1, "strong", True])
def test_an_out_of_range_strength_is_a_400(image_service, emulators, strength):
    with pytest.raises(InvalidRequest, match="strength must be a number from 0 to 1"):
        generate(
            image_service,
            model="ultra",
            input_images=[data_url(image_bytes())],
            provider_options={"strength": strength},
        )
    assert emulators["stability"].requests == []


def test_strength_without_an_input_image_is_not_sent_and_is_reported(image_service, emulators):
    data = generate(image_service, model="ultra", provider_options={"strength": 0.5})
    assert "strength" not in sent(emulators)[1]
    assert [w["setting"] for w in data["warnings"]] == ["provider_options.strength"]


def test_provider_options_pass_through_but_cannot_override_what_the_service_sets(
    image_service, emulators
):
    data = generate(
        image_service, model="sd3.5-large", seed=9, provider_options={"cfg_scale": 7, "seed": 1}
    )
    fields = sent(emulators)[1]
    assert fields["cfg_scale"] == "7" and fields["seed"] == "9"
    assert [w["setting"] for w in data["warnings"]] == ["provider_options.seed"]


# --- answer shapes --------------------------------------------------------------------------------


def test_raw_bytes_answer_carries_seed_in_headers(image_service, emulators, s3):
    data = generate(image_service, model="core", seed=777, output_format="png")
    body, content_type = stored(s3, data["image_key"])
    assert body.startswith(b"\x89PNG") and content_type == "image/png"
    assert data["seed"] == 777


def test_json_answer_is_read_too(image_service, emulators, s3, monkeypatch):
    monkeypatch.setattr(stability, "ACCEPT", "application/json")
    data = generate(image_service, model="ultra", seed=31337, output_format="jpeg")
    assert sent(emulators)[0].headers["accept"] == "application/json"
    body, content_type = stored(s3, data["image_key"])
    assert body.startswith(b"\xff\xd8\xff") and content_type == "image/jpeg"
    assert data["seed"] == 31337


def test_a_random_seed_chosen_by_the_provider_is_reported(image_service, emulators):
    data = generate(image_service, model="core")
    assert "seed" not in sent(emulators)[1]
    assert isinstance(data["seed"], int) and data["seed"] > 0


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("accept", ["image/*", "application/json"])
def test_content_filtered_with_http_200_is_a_422(image_service, emulators, monkeypatch, accept):
    monkeypatch.setattr(stability, "ACCEPT", accept)
    with pytest.raises(ContentPolicyViolation) as caught:
        generate(image_service, "A scene [filtered]", model="core")
    assert caught.value.status == 422 and "CONTENT_FILTERED" in caught.value.message


def test_content_moderation_403_is_a_422(image_service, emulators):
    with pytest.raises(ContentPolicyViolation) as caught:
        generate(image_service, "A scene [moderate]", model="ultra")
    assert caught.value.type == "content_policy_violation"
    assert "flagged by our content moderation" in caught.value.message


def test_rate_limit_is_a_429_with_retry_after(image_service, emulators):
    with pytest.raises(ProviderRateLimited) as caught:
        generate(image_service, "A scene [rate-limit]", model="sd3.5-large")
    assert caught.value.status == 429 and caught.value.retry_after == 60


def test_server_error_is_a_502(image_service, emulators):
    with pytest.raises(ProviderError) as caught:
        generate(image_service, "A scene [server-error]", model="sd3.5-large")
    assert caught.value.status == 502 and "HTTP 500" in caught.value.message


def test_malformed_answer_is_a_502(image_service, emulators):
    with pytest.raises(ProviderError, match="not JSON"):
        generate(image_service, "A scene [garbage]", model="core")


@pytest.mark.parametrize("accept", ["image/*", "application/json"])
def test_non_image_bytes_are_a_502(image_service, emulators, s3, monkeypatch, accept):
    monkeypatch.setattr(stability, "ACCEPT", accept)
    with pytest.raises(ProviderError, match="not an image"):
        generate(image_service, "A scene [not-image]", model="core")
    assert s3.list_objects_v2(Bucket=TEST_BUCKET).get("KeyCount", 0) == 0


def test_a_field_the_provider_rejects_is_a_400_naming_it(image_service, emulators):
    with pytest.raises(InvalidRequest) as caught:
        generate(image_service, model="sd3.5-large", provider_options={"cfg_scale": 50})
    assert "cfg_scale" in caught.value.message


def test_no_key_configured_is_a_502_that_names_no_key(image_service, emulators, monkeypatch):
    monkeypatch.delenv("STABILITY_API_KEY")
    with pytest.raises(ProviderNotConfigured) as caught:
        generate(image_service, model="core")
    assert caught.value.status == 502 and "STABILITY_API_KEY" not in caught.value.message


def test_handler_moderation_answer_is_a_422_envelope_without_the_key(s3, emulators, lambda_context):
    import generation

    generation.image_service.cache_clear()
    event = http_event(body=request_body("A scene [moderate]", model="core"))
    response = generation.handler(event, lambda_context)
    generation.image_service.cache_clear()
    body = json.loads(response["body"])
    assert response["statusCode"] == 422
    assert body["error"]["type"] == "content_policy_violation"
    assert KEY not in response["body"]


# --- n > 1 ----------------------------------------------------------------------------------------


def test_n_images_are_n_parallel_calls_with_distinct_seeds_all_stored(image_service, emulators, s3):
    data = generate(image_service, model="sd3.5-large", n=3, seed=100)
    seeds = sorted(int(sent(emulators, i)[1]["seed"]) for i in range(3))
    assert seeds == [100, 101, 102]  # one image per call; the same seed thrice = one image
    assert len(emulators["stability"].requests) == 3
    assert len(data["images"]) == 3
    keys = [image["image_key"] for image in data["images"]]
    assert len(set(keys)) == 3 and data["image_key"] == keys[0]
    assert sorted(image["seed"] for image in data["images"]) == [100, 101, 102]
    for key in keys:
        body, content_type = stored(s3, key)
        assert content_type == "image/png" and body.startswith(b"\x89PNG")
    assert data["settings"]["n"] == 3
    assert data["cost_usd"] == pytest.approx(3 * 0.065)


def test_n_images_without_a_seed_are_n_different_images_with_their_own_seeds(
    image_service, emulators, s3
):
    data = generate(image_service, model="sd3.5-large", n=3)
    assert all("seed" not in sent(emulators, i)[1] for i in range(3))  # the provider picks
    seeds = [image["seed"] for image in data["images"]]
    assert len(set(seeds)) == 3
    bodies = {stored(s3, image["image_key"])[0] for image in data["images"]}
    assert len(bodies) == 3


# --- the local stack's way: the emulator over real HTTP on loopback -------------------------------


def test_the_emulator_serves_the_adapter_over_real_http(s3, settings, emulator_over_http):

    emulator = emulator_over_http("stability")
    service = inline_service(settings)
    data = generate(
        service,
        model="sd3.5-medium",
        input_images=[data_url(image_bytes())],
        output_format="jpeg",
        provider_options={"strength": 0.4},
    )
    assert emulator.base_url.startswith("http://127.0.0.1:")
    request = emulator.requests[-1]
    fields = {p.name: p.text for p in request.form() if p.filename is None}
    assert fields["mode"] == "image-to-image" and fields["strength"] == "0.4"
    assert data["content_type"] == "image/jpeg"


def test_batched_seeds_stay_within_the_providers_range(image_service, emulators, s3):
    """n=2 on a one-image-per-call model varies the seed per call; at the largest seed the
    second call wraps instead of sending a seed Stability rejects."""
    from image_service.models import MAX_SEED

    data = generate(image_service, model="core", seed=MAX_SEED, n=2)
    assert len(data["images"]) == 2
    seeds = [int(sent(emulators, i)[1]["seed"]) for i in (-2, -1)]
    assert sorted(seeds) == [0, MAX_SEED]
