"""The xAI adapter on the wire: JSON generations and edits (never ``size``), ``b64_json`` and
URL answers (downloaded with the SSRF guard), moderation, usage ticks, every error mapping."""

from __future__ import annotations

import datetime
import io
import socket

import pytest
from PIL import Image

from image_common import settings as common_settings
from image_common.errors import (
    ContentPolicyViolation,
    InvalidRequest,
    ProviderError,
    ProviderRateLimited,
)
from image_service.providers import xai
from tests.conftest import (
    PROVIDER_KEYS,
    TEST_BUCKET,
    data_url,
    generate,
    image_bytes,
    inline_service,
)

KEY = PROVIDER_KEYS["xai"]
BASE = "https://xai.emulator.test/v1"


def posts(emulators):
    return [r for r in emulators["xai"].requests if r.method == "POST"]


def last_post(emulators):
    return posts(emulators)[-1]


def stored(s3, key: str) -> bytes:
    return s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read()


# --- generations ----------------------------------------------------------------------------------


def test_generation_sends_ratio_and_resolution_never_size(image_service, emulators, s3):
    data = generate(
        image_service, "A neon fox", model="grok", width=1920, height=1080, quality="high", n=2
    )
    request = last_post(emulators)
    assert request.url == f"{BASE}/images/generations"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "model": "grok-imagine-image",
        "prompt": "A neon fox",
        "n": 2,
        "response_format": "b64_json",
        "aspect_ratio": "16:9",
        "resolution": "2k",
    }
    assert len(posts(emulators)) == 1  # up to 10 images per call: one call
    assert data["settings"] == {"aspect_ratio": "16:9", "resolution": "2k", "n": 2}
    # grok-imagine-image takes no quality (only 2.0 does): reported, not sent
    assert {"setting": "quality", "type": "unsupported-setting"}.items() <= next(
        w for w in data["warnings"] if w["setting"] == "quality"
    ).items()
    assert [i["content_type"] for i in data["images"]] == ["image/jpeg", "image/jpeg"]
    image = Image.open(io.BytesIO(stored(s3, data["images"][1]["image_key"])))
    assert (image.format, image.size) == ("JPEG", (2048, 1152))
    assert data["revised_prompt"] == "A neon fox, detailed, vivid lighting"
    assert data["cost_usd"] == pytest.approx(0.04)  # from usage.cost_in_usd_ticks


def test_the_2_0_model_is_named_as_asked(image_service, emulators):
    data = generate(image_service, model="grok-imagine-image-2.0", aspect_ratio="2:3")
    body = last_post(emulators).json()
    assert body["model"] == "grok-imagine-image-2.0" and body["aspect_ratio"] == "2:3"
    assert "resolution" not in body  # no pixels asked: xAI's default
    assert data["model"] == "grok-imagine-image-2.0"


def test_the_shut_down_quality_model_goes_to_2_0_never_reaching_xai(image_service, emulators):
    data = generate(image_service, model="grok-imagine-image-pro")
    assert last_post(emulators).json()["model"] == "grok-imagine-image-2.0"
    assert data["warnings"][0]["type"] == "model-retired"
    assert "2026-11-02" in data["warnings"][0]["message"]


def test_size_and_style_in_provider_options_are_refused_with_warnings(image_service, emulators):
    options = {"size": "1024x1024", "style": "vivid", "user": "u-7"}
    data = generate(image_service, model="grok", provider_options=options)
    body = last_post(emulators).json()
    assert "size" not in body and "style" not in body
    assert body["user"] == "u-7"
    assert sorted(w["setting"] for w in data["warnings"]) == [
        "provider_options.size",
        "provider_options.style",
    ]


def test_settings_xai_lacks_are_reported_and_not_sent(image_service, emulators):
    data = generate(
        image_service,
        model="grok",
        seed=5,
        negative_prompt="rain",
        output_format="png",
        style_preset="anime",
    )
    body = last_post(emulators).json()
    assert set(body) == {"model", "prompt", "n", "response_format", "aspect_ratio"}
    assert sorted(w["setting"] for w in data["warnings"]) == [
        "negative_prompt",
        "output_format",
        "seed",
        "style_preset",
    ]
    assert data["content_type"] == "image/jpeg"


# --- edits ----------------------------------------------------------------------------------------


def test_one_input_image_is_a_json_edit_with_an_image_data_url(image_service, emulators):
    png = image_bytes("png", 80, 60)
    data = generate(image_service, "Add a moon", model="grok", input_images=[data_url(png)])
    request = last_post(emulators)
    assert request.url == f"{BASE}/images/edits"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "model": "grok-imagine-image",
        "prompt": "Add a moon",
        "n": 1,
        "response_format": "b64_json",
        "image": {"url": data_url(png), "type": "image_url"},
    }
    assert data["warnings"] == [] and "aspect_ratio" not in data["settings"]


def test_several_input_images_are_sent_as_images(image_service, emulators, s3):
    jpeg, webp = image_bytes("jpeg"), image_bytes("webp")
    key = "customers/123/assets/image/mine.webp"
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=webp, ContentType="image/webp")
    generate(
        image_service,
        "Blend them",
        model="grok",
        aspect_ratio="1:1",
        input_images=[data_url(jpeg, "image/jpeg"), key],
    )
    body = last_post(emulators).json()
    assert "image" not in body
    assert body["images"] == [
        {"url": data_url(jpeg, "image/jpeg"), "type": "image_url"},
        {"url": data_url(webp, "image/webp"), "type": "image_url"},
    ]
    assert body["aspect_ratio"] == "1:1"


def test_a_mislabelled_data_url_is_sent_with_its_real_type(image_service, emulators):
    png = image_bytes("png")
    generate(image_service, model="grok", input_images=[data_url(png, "image/jpeg")])
    assert last_post(emulators).json()["image"]["url"].startswith("data:image/png;base64,")


# --- URL answers ----------------------------------------------------------------------------------


def test_a_url_answer_is_downloaded_without_the_key(image_service, emulators, s3, monkeypatch):
    monkeypatch.setattr(xai, "RESPONSE_FORMAT", "url")
    data = generate(image_service, model="grok", n=2)
    assert last_post(emulators).json()["response_format"] == "url"
    downloads = [r for r in emulators["xai"].requests if r.method == "GET"]
    assert len(downloads) == 2
    assert all("authorization" not in r.headers for r in downloads)
    for image, download in zip(data["images"], downloads, strict=True):
        served = emulators["xai"].files[download.path.rsplit("/", 1)[-1].split(".")[0]]
        assert stored(s3, image["image_key"]) == served


def _guarded_settings(monkeypatch, address: str):
    """Production settings (no trusted origins) and a DNS answer for the emulator's host."""
    custom = common_settings.get_settings().model_copy(update={"trusted_url_origins": ""})
    monkeypatch.setattr(common_settings, "get_settings", lambda: custom)
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host == "xai.emulator.test":
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def test_a_result_url_pointing_inward_is_refused_as_a_provider_failure(
    image_service, emulators, monkeypatch
):
    monkeypatch.setattr(xai, "RESPONSE_FORMAT", "url")
    _guarded_settings(monkeypatch, "169.254.169.254")
    with pytest.raises(ProviderError) as caught:
        generate(image_service, model="grok")
    assert caught.value.status == 502 and "private or reserved" in caught.value.message
    assert [r.method for r in emulators["xai"].requests] == ["POST"]  # never fetched


def test_a_public_result_url_is_fetched_under_the_guard(image_service, emulators, s3, monkeypatch):
    monkeypatch.setattr(xai, "RESPONSE_FORMAT", "url")
    _guarded_settings(monkeypatch, "93.184.216.34")
    data = generate(image_service, model="grok")
    assert stored(s3, data["image_key"]).startswith(b"\xff\xd8\xff")


def test_an_expired_result_url_is_a_502(image_service, emulators, monkeypatch):
    monkeypatch.setattr(xai, "RESPONSE_FORMAT", "url")
    emulator = emulators["xai"]
    original = emulator.route

    def forget_files(request):
        answer = original(request)
        emulator.files.clear()  # the temporary URL is gone before we fetch it
        return answer

    monkeypatch.setattr(emulator, "route", forget_files)
    with pytest.raises(ProviderError, match="HTTP 404"):
        generate(image_service, model="grok")


# --- moderation and errors ------------------------------------------------------------------------


def test_respect_moderation_false_is_a_422(image_service, emulators):
    with pytest.raises(ContentPolicyViolation) as caught:
        generate(image_service, "A scene [moderate]", model="grok", n=2)
    assert caught.value.status == 422


def test_empty_data_is_a_422(image_service, emulators):
    with pytest.raises(ContentPolicyViolation):
        generate(image_service, "A scene [empty]", model="grok")


def test_one_moderated_item_of_several_is_reported_and_the_rest_delivered(image_service, emulators):
    data = generate(image_service, "A scene [moderate-one]", model="grok", n=3)
    assert len(data["images"]) == 2
    (warning,) = data["warnings"]
    assert warning["message"] == "xAI's moderation withheld 1 of 3 images."
    assert data["cost_usd"] == pytest.approx(0.04)  # xAI bills what it delivered


def test_rate_limit_is_a_429_with_retry_after(image_service, emulators):
    with pytest.raises(ProviderRateLimited) as caught:
        generate(image_service, "A scene [rate-limit]", model="grok")
    assert caught.value.retry_after == 3


def test_server_error_is_a_502(image_service, emulators):
    with pytest.raises(ProviderError, match="HTTP 500"):
        generate(image_service, "A scene [server-error]", model="grok")


def test_malformed_answer_is_a_502(image_service, emulators):
    with pytest.raises(ProviderError, match="not JSON"):
        generate(image_service, "A scene [garbage]", model="grok")


def test_non_image_bytes_are_a_502(image_service, emulators, s3):
    with pytest.raises(ProviderError, match="not an image"):
        generate(image_service, "A scene [not-image]", model="grok")
    assert s3.list_objects_v2(Bucket=TEST_BUCKET).get("KeyCount", 0) == 0


def test_an_argument_xai_rejects_is_a_400_with_its_message(image_service, emulators):
    with pytest.raises(InvalidRequest) as caught:
        generate(image_service, model="grok", provider_options={"seed": 4})
    assert "Unknown argument: seed" in caught.value.message


# --- retired grok-2-image -------------------------------------------------------------------------


def test_grok_2_image_goes_to_its_successor_with_a_warning(image_service, emulators):
    data = generate(image_service, model="grok-2-image", aspect_ratio="16:9")
    assert last_post(emulators).json()["model"] == "grok-imagine-image"
    assert data["model"] == "grok-imagine-image"
    (retired,) = [w for w in data["warnings"] if w["type"] == "model-retired"]
    assert "grok-2-image" in retired["message"] and "grok-imagine-image" in retired["message"]


def test_enabled_grok_2_image_gets_only_the_fields_it_took(service_with, emulators):
    emulators["xai"].clock = lambda: datetime.date(2026, 1, 15)  # before xAI shut it down
    service = service_with(enabled_retired_models="grok-2-image")
    data = generate(service, model="grok-2-image", aspect_ratio="16:9", quality="high")
    assert last_post(emulators).json() == {
        "model": "grok-2-image",
        "prompt": "A lighthouse on a cliff",
        "n": 1,
        "response_format": "b64_json",
    }
    assert sorted(w["setting"] for w in data["warnings"]) == ["quality", "size"]
    assert data["cost_usd"] == pytest.approx(0.07)


# --- grok-imagine-image-2.0 -----------------------------------------------------------------------


def test_grok_2_0_takes_low_quality_and_its_new_ratios(image_service, emulators):
    data = generate(image_service, model="grok-imagine-image-2.0", quality="low",
                    aspect_ratio="9:19.5")  # fmt: skip
    body = last_post(emulators).json()
    assert (body["quality"], body["aspect_ratio"]) == ("low", "9:19.5")
    assert data["warnings"] == [] and data["cost_usd"] == pytest.approx(0.02)


def test_grok_2_0_has_no_high_quality_so_high_is_sent_as_medium(image_service, emulators):
    data = generate(image_service, model="grok-imagine-image-2.0", quality="high")
    assert last_post(emulators).json()["quality"] == "medium"
    assert [w["type"] for w in data["warnings"]] == ["adjusted-setting"]


def test_a_block_reason_is_a_422_naming_it(image_service, emulators):
    with pytest.raises(ContentPolicyViolation, match="SAFETY_CHECK_FAILED"):
        generate(image_service, "a fox [moderate]", model="grok-imagine-image-2.0")


# --- the local stack's way: the emulator over real HTTP on loopback -------------------------------


def test_the_emulator_serves_the_adapter_over_real_http_url_answers_too(
    s3, settings, emulator_over_http, monkeypatch
):

    monkeypatch.setattr(xai, "RESPONSE_FORMAT", "url")  # the download path over loopback HTTP
    emulator = emulator_over_http("xai")
    service = inline_service(settings)
    data = generate(service, model="grok", input_images=[data_url(image_bytes())])
    assert [r.method for r in emulator.requests] == ["POST", "GET"]
    assert emulator.requests[1].url.startswith("http://127.0.0.1:")
    assert stored(s3, data["image_key"]).startswith(b"\xff\xd8\xff")


def test_an_oversized_result_url_is_a_502_not_the_callers_413(
    image_service, emulators, monkeypatch
):
    from image_service.providers import base

    monkeypatch.setattr(xai, "RESPONSE_FORMAT", "url")
    monkeypatch.setattr(base, "RESULT_DOWNLOAD_LIMIT", 100)
    with pytest.raises(ProviderError) as caught:
        generate(image_service, model="grok")
    assert caught.value.status == 502 and "larger than 100 bytes" in caught.value.message
