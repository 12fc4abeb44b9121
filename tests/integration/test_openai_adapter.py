"""The OpenAI adapter on the wire: requests checked against OpenAI's official OpenAPI spec,
answers and every error mapping through the OpenAI emulator."""

from __future__ import annotations

import base64
import datetime
import io
import json
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml
from PIL import Image

from image_common.errors import (
    ContentPolicyViolation,
    InvalidImage,
    InvalidRequest,
    ProviderError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderTimeout,
)
from image_common.settings import ServiceSettings
from image_service import http as service_http
from image_service.models import parse_request
from image_service.service import ImageService
from tests.conftest import PROVIDER_KEYS, answer_of, inline_service, request_body

SPEC_PATH = Path(__file__).parents[1] / "specs" / "openai-openapi.yaml"  # vendored excerpt


@pytest.fixture(scope="module")
def openai_spec() -> dict:
    with SPEC_PATH.open() as handle:
        return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def assert_matches_spec(spec: dict, schema_name: str, body: dict) -> None:
    schema = spec["components"]["schemas"][schema_name]
    unknown = set(body) - set(schema["properties"])
    assert not unknown, f"fields not in OpenAI's {schema_name}: {unknown}"
    missing = set(schema.get("required", [])) - set(body)
    assert not missing, f"required by {schema_name}: {missing}"
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    )
    validator.validate(body)


def generate(service: ImageService, budget: float | None = None, **kwargs):
    """One generation; ``budget`` compresses the job's provider budget."""
    prompt = kwargs.pop("prompt", "A serene mountain landscape at sunset")
    request = parse_request(request_body(prompt, **kwargs))
    if budget is not None:
        service = inline_service(
            service.settings.model_copy(update={"job_max_budget_seconds": budget})
        )
    return answer_of(service, request)


def png(width: int = 64, height: int = 64, mode: str = "RGBA") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), (10, 20, 30, 0) if mode == "RGBA" else (10, 20, 30)).save(
        out, "PNG"
    )
    return out.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@pytest.fixture
def retired_enabled(settings, s3, emulators) -> ImageService:
    """A deployment whose OpenAI account still serves DALL·E (ENABLED_RETIRED_MODELS): the
    provider's calendar stands before DALL·E's shutdown."""
    emulators["openai"].clock = lambda: datetime.date(2026, 5, 1)
    custom = settings.model_copy(update={"enabled_retired_models": "dall-e-3,dall-e-2"})
    return inline_service(custom)


# --- text-to-image ---------------------------------------------------------------------------


def test_gpt_image_generation_is_json_matching_the_spec(image_service, emulators, openai_spec):
    data = generate(
        image_service,
        model="gpt-image-2.5-flare",
        width=1536,
        height=1024,
        quality="high",
        output_format="webp",
        provider_options={"background": "opaque", "moderation": "low"},
    )
    sent = emulators["openai"].requests[-1]
    assert sent.path == "/v1/images/generations"
    assert sent.headers["authorization"] == f"Bearer {PROVIDER_KEYS['openai']}"
    assert sent.headers["content-type"] == "application/json"
    body = sent.json()
    assert_matches_spec(openai_spec, "CreateImageRequest", body)
    assert body == {
        "model": "gpt-image-2.5-flare",
        "prompt": "A serene mountain landscape at sunset",
        "n": 1,
        "size": "1536x1024",
        "quality": "high",
        "output_format": "webp",
        "background": "opaque",
        "moderation": "low",
    }
    assert data["settings"] == {
        "width": 1536, "height": 1024, "quality": "high", "output_format": "webp", "n": 1,
    }  # fmt: skip
    assert data["content_type"] == "image/webp"
    assert data["warnings"] == []


def test_gpt_image_never_sends_response_format(image_service, emulators, openai_spec):
    generate(image_service, model="gpt-image-1-mini", provider_options={"response_format": "url"})
    body = emulators["openai"].requests[-1].json()
    assert "response_format" not in body
    assert_matches_spec(openai_spec, "CreateImageRequest", body)


def test_a_reserved_provider_option_is_reported_not_sent(image_service, emulators):
    data = generate(image_service, provider_options={"model": "dall-e-2", "size": "256x256"})
    body = emulators["openai"].requests[-1].json()
    assert (body["model"], body["size"]) == ("gpt-image-2.5-flare", "1024x1024")
    assert {w["setting"] for w in data["warnings"]} == {
        "provider_options.model",
        "provider_options.size",
    }


@pytest.mark.parametrize(
    ("width", "height", "sent"),
    [(1024, 1024, "1024x1024"), (1920, 1080, "1536x1024"), (800, 1200, "1024x1536"),
     (512, 512, "1024x1024")],
)  # fmt: skip
def test_width_and_height_map_to_the_nearest_legal_size(
    image_service, emulators, width, height, sent
):
    data = generate(image_service, model="gpt-image-1.5", width=width, height=height)
    assert emulators["openai"].requests[-1].json()["size"] == sent
    adjusted = [w for w in data["warnings"] if w["setting"] == "width/height"]
    assert bool(adjusted) == (f"{width}x{height}" != sent)
    if adjusted:
        assert sent in adjusted[0]["message"]


def test_gpt_image_2_takes_free_sizes_in_multiples_of_16(image_service, emulators, openai_spec):
    data = generate(image_service, model="gpt-image-2", width=1000, height=1000)
    body = emulators["openai"].requests[-1].json()
    assert_matches_spec(openai_spec, "CreateImageRequest", body)
    width, height = (int(x) for x in body["size"].split("x"))
    assert width % 16 == 0 and height % 16 == 0 and width * height >= 655_360
    assert data["settings"]["width"] == width


def test_unsupported_settings_are_warned_about_never_dropped_silently(image_service, emulators):
    data = generate(image_service, seed=7, negative_prompt="blurry", style_preset="anime")
    body = emulators["openai"].requests[-1].json()
    assert not {"seed", "negative_prompt", "style"} & set(body)
    warned = {w["setting"]: w["type"] for w in data["warnings"]}
    assert warned == {
        "seed": "unsupported-setting",
        "negative_prompt": "unsupported-setting",
        "style_preset": "unsupported-setting",
    }


def test_usage_gives_the_cost_counting_input_tokens(image_service):
    data = generate(image_service, model="gpt-image-2.5-flare", quality="high")
    # the emulator reports 50 text input tokens ($5/M) and 7024 image output tokens ($30/M)
    assert data["cost_usd"] == pytest.approx((50 * 5 + 7024 * 30) / 1_000_000)


def test_image_input_tokens_of_an_edit_are_priced_too(image_service):
    data = generate(image_service, model="gpt-image-2", quality="low",
                    input_images=[data_url(png(64, 64, "RGB"))] * 2)  # fmt: skip
    # 50 text tokens ($5/M), 2 × 323 image input tokens ($8/M), 196 output tokens ($30/M)
    assert data["cost_usd"] == pytest.approx((50 * 5 + 646 * 8 + 196 * 30) / 1_000_000)


def test_gpt_image_2_6_takes_xhigh_quality_and_complexity(image_service, emulators):
    data = generate(image_service, model="gpt-image-2.6-flare", quality="xhigh", complexity="high")
    body = emulators["openai"].requests[-1].json()
    assert (body["quality"], body["complexity"]) == ("xhigh", "high")
    assert data["settings"]["quality"] == "xhigh" and data["warnings"] == []


def test_complexity_on_a_model_without_it_is_warned_about_not_sent(image_service, emulators):
    data = generate(image_service, model="gpt-image-2", quality="max", complexity="low")
    body = emulators["openai"].requests[-1].json()
    assert "complexity" not in body and body["quality"] == "high"
    assert {w["setting"] for w in data["warnings"]} == {"quality", "complexity"}


def test_n_images_in_one_call_are_all_stored(image_service, emulators, s3):
    data = generate(image_service, n=3)
    assert len(emulators["openai"].requests) == 1
    assert emulators["openai"].requests[0].json()["n"] == 3
    assert len(data["images"]) == 3
    keys = {image["image_key"] for image in data["images"]}
    assert len(keys) == 3
    for key in keys:
        assert s3.head_object(Bucket="test-images", Key=key)["ContentType"] == "image/png"


# --- DALL·E paths (retired, still implemented) ---------------------------------------------------


def test_dall_e_3_asks_for_b64_json_and_sends_style(retired_enabled, emulators, openai_spec):
    data = generate(retired_enabled, model="dall-e-3", quality="high", style_preset="natural", n=2)
    requests = emulators["openai"].requests
    assert len(requests) == 2  # DALL·E 3 makes one image per call: two parallel calls
    for request in requests:
        body = request.json()
        assert_matches_spec(openai_spec, "CreateImageRequest", body)
        assert body["response_format"] == "b64_json"
        assert (body["model"], body["n"], body["quality"], body["style"]) == (
            "dall-e-3",
            1,
            "hd",
            "natural",
        )
        assert "output_format" not in body
    assert data["model"] == "dall-e-3"
    assert data["revised_prompt"].startswith("A detailed rendering of")
    assert len(data["images"]) == 2
    assert {"type": "adjusted-setting", "setting": "quality",
            "message": "quality 'high' sent to dall-e-3 as 'hd'."} in data["warnings"]  # fmt: skip
    assert data["cost_usd"] == pytest.approx(0.16)  # no usage from DALL·E: registry price × 2


def test_dall_e_url_answers_are_downloaded(retired_enabled, emulators):
    data = generate(retired_enabled, model="dall-e-2", provider_options={"response_format": "url"})
    # response_format is the service's to set: the option is refused, b64_json still asked for
    assert emulators["openai"].requests[-1].json()["response_format"] == "b64_json"
    assert any(w["setting"] == "provider_options.response_format" for w in data["warnings"])


def test_a_url_item_in_the_answer_is_fetched_without_credentials(
    retired_enabled, emulators, monkeypatch
):
    emulator = emulators["openai"]
    original = emulator._generate

    def url_answers(body, *, edit):
        body = dict(body, response_format="url")
        return original(body, edit=edit)

    monkeypatch.setattr(emulator, "_generate", url_answers)
    data = generate(retired_enabled, model="dall-e-3", save_to_db=False)
    fetch = emulator.requests[-1]
    assert fetch.method == "GET" and "/v1/files/" in fetch.path
    assert "authorization" not in fetch.headers
    assert base64.b64decode(data["image_url"].split(",", 1)[1]).startswith(b"\x89PNG")


def test_retired_model_is_served_by_its_successor_with_a_warning(image_service, emulators):
    data = generate(image_service, model="dall-e-3", quality="hd")
    body = emulators["openai"].requests[-1].json()
    assert body["model"] == "gpt-image-2" and body["quality"] == "high"
    assert data["model"] == "gpt-image-2"
    assert data["warnings"][0]["type"] == "model-retired"
    assert "2026-05-12" in data["warnings"][0]["message"]
    assert "dall-e-3" not in body.values()


# --- image-to-image: /images/edits ------------------------------------------------------------


def test_edits_are_multipart_with_repeated_image_fields_and_a_mask(
    image_service, emulators, openai_spec
):
    first, second, mask = png(64, 64, "RGB"), png(32, 32, "RGB"), png(64, 64)
    data = generate(
        image_service,
        prompt="Put the two together",
        input_images=[data_url(first), data_url(second)],
        mask=data_url(mask),
        quality="low",
    )
    sent = emulators["openai"].requests[-1]
    assert sent.path == "/v1/images/edits"
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    parts = sent.form()
    images = [p for p in parts if p.name == "image[]"]
    assert [p.data for p in images] == [first, second]
    assert all(p.content_type == "image/png" for p in images)
    assert [p.data for p in parts if p.name == "mask"] == [mask]
    fields = {p.name: p.text for p in parts if p.filename is None}
    assert fields == {"model": "gpt-image-2.5-flare", "prompt": "Put the two together", "n": "1",
                      "size": "1024x1024", "quality": "low"}  # fmt: skip
    as_json = {k: (int(v) if k == "n" else v) for k, v in fields.items()} | {"image": ["…", "…"]}
    assert_matches_spec(openai_spec, "CreateImageEditRequest", as_json)
    assert data["image_url"]


def test_dall_e_2_edit_sends_a_single_image_field(retired_enabled, emulators):
    generate(retired_enabled, model="dall-e-2", input_images=[data_url(png(64, 64))])
    parts = emulators["openai"].requests[-1].form()
    assert [p.name for p in parts if p.filename] == ["image"]


def test_a_jpeg_mask_is_a_400(image_service):
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8)).save(jpeg, "JPEG")
    with pytest.raises(InvalidImage, match="mask must be a PNG"):
        generate(
            image_service,
            input_images=[data_url(png())],
            mask=data_url(jpeg.getvalue(), "image/jpeg"),
        )


def test_input_images_on_a_model_without_edits_is_a_400(retired_enabled):
    with pytest.raises(InvalidRequest, match="does not accept input images"):
        generate(retired_enabled, model="dall-e-3", input_images=[data_url(png())])


# --- errors ----------------------------------------------------------------------------------


def test_moderation_is_a_422_content_policy_violation(image_service):
    with pytest.raises(ContentPolicyViolation) as caught:
        generate(image_service, prompt="something [moderate]")
    assert caught.value.status == 422 and caught.value.type == "content_policy_violation"


def test_dall_e_moderation_code_is_also_a_422(retired_enabled):
    with pytest.raises(ContentPolicyViolation):
        generate(retired_enabled, model="dall-e-3", prompt="something [moderate]")


def test_rate_limit_is_a_429_with_retry_after(image_service):
    with pytest.raises(ProviderRateLimited) as caught:
        generate(image_service, prompt="busy [rate-limit]")
    assert caught.value.status == 429 and caught.value.retry_after == 7


def test_server_error_is_a_502(image_service):
    with pytest.raises(ProviderError) as caught:
        generate(image_service, prompt="boom [server-error]")
    assert caught.value.status == 502


def test_garbage_answer_is_a_502(image_service):
    with pytest.raises(ProviderError, match="not JSON"):
        generate(image_service, prompt="proxy [garbage]")


def test_a_slow_provider_is_a_504(image_service, monkeypatch):
    # Over real HTTP: only a real socket can time out.
    from local.emulators.openai import OpenAIEmulator

    emulator = OpenAIEmulator()
    emulator.slow_seconds = 3.0
    server = emulator.serve()
    monkeypatch.setenv("OPENAI_BASE_URL", f"{emulator.base_url}/v1")
    service_http.set_http_client(service_http.new_http_client())
    try:
        with pytest.raises(ProviderTimeout) as caught:
            generate(image_service, prompt="take your time [slow]", budget=1.0)
        assert caught.value.status == 504
    finally:
        server.shutdown()
        server.server_close()


def test_unreachable_provider_is_a_502(image_service, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "https://nowhere.emulator.test/v1")
    with pytest.raises(ProviderError, match="Could not reach"):
        generate(image_service)


def test_a_provider_400_is_the_callers_400_with_the_providers_reason(
    image_service, emulators, monkeypatch
):
    monkeypatch.setattr(
        emulators["openai"], "route",
        lambda request: _json(400, {"error": {"message": "Invalid prompt: too long", "code": "invalid_value"}}),
    )  # fmt: skip
    with pytest.raises(InvalidRequest, match="Invalid prompt: too long"):
        generate(image_service)


def test_a_model_the_provider_no_longer_serves_is_a_502_not_the_callers_400(
    retired_enabled, emulators, monkeypatch
):
    # This deployment still enables dall-e-3; OpenAI answers model_not_found: our fault, not
    # the caller's, who asked for a name the service accepts.
    gone = {"error": {"message": "The model 'dall-e-3' does not exist.", "code": "model_not_found"}}
    monkeypatch.setattr(emulators["openai"], "route", lambda request: _json(404, gone))
    with pytest.raises(ProviderError) as caught:
        generate(retired_enabled, model="dall-e-3")
    assert caught.value.status == 502 and "HTTP 404" in caught.value.message


def test_an_error_body_with_a_plain_string_is_still_the_callers_400(
    image_service, emulators, monkeypatch
):
    # OpenAI-compatible gateways answer {"error": "…"}: read it, do not crash into a 500.
    monkeypatch.setattr(
        emulators["openai"], "route", lambda request: _json(400, {"error": "size is invalid"})
    )
    with pytest.raises(InvalidRequest, match="size is invalid"):
        generate(image_service)


def test_an_oversized_url_result_is_a_502_not_the_callers_413(
    retired_enabled, emulators, monkeypatch
):
    from image_service.providers import base

    emulator = emulators["openai"]
    original = emulator._generate
    monkeypatch.setattr(
        emulator, "_generate", lambda body, *, edit: original(dict(body, response_format="url"), edit=edit)
    )  # fmt: skip
    monkeypatch.setattr(base, "RESULT_DOWNLOAD_LIMIT", 100)
    with pytest.raises(ProviderError) as caught:
        generate(retired_enabled, model="dall-e-3")
    assert caught.value.status == 502 and "larger than 100 bytes" in caught.value.message


def test_provider_refusing_our_key_is_a_502_that_leaks_nothing(
    image_service, emulators, monkeypatch
):
    key = PROVIDER_KEYS["openai"]
    monkeypatch.setattr(
        emulators["openai"], "route",
        lambda request: _json(401, {"error": {"message": f"Incorrect API key provided: {key}"}}),
    )  # fmt: skip
    with pytest.raises(ProviderError) as caught:
        generate(image_service)
    assert key not in caught.value.message and "credentials" in caught.value.message


@pytest.mark.parametrize(
    "answer",
    [
        {"created": 1, "data": []},
        {"created": 1, "data": [{"b64_json": base64.b64encode(b"not an image").decode()}]},
        {"created": 1, "data": [{"b64_json": "%%%not-base64%%%"}]},
        {"created": 1, "data": ["weird"]},
        [1, 2, 3],
    ],
)
def test_malformed_success_answers_are_502(image_service, emulators, monkeypatch, answer):
    monkeypatch.setattr(emulators["openai"], "route", lambda request: _json(200, answer))
    with pytest.raises(ProviderError):
        generate(image_service)


def test_missing_key_is_a_clear_502(image_service, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ProviderNotConfigured) as caught:
        generate(image_service)
    assert caught.value.status == 502 and "not configured" in caught.value.message


def test_one_http_client_per_container():
    service_http.set_http_client(None)
    try:
        assert service_http.get_http_client() is service_http.get_http_client()
        assert isinstance(service_http.get_http_client(), httpx.Client)
    finally:
        service_http.set_http_client(None)


def _json(status: int, body) -> "object":
    from local.emulators.base import EmulatorResponse

    return EmulatorResponse(status, json.dumps(body).encode(), {"content-type": "application/json"})


def test_settings_type_is_the_service_settings(settings):
    assert isinstance(settings, ServiceSettings)
