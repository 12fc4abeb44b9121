"""The generation Lambda handler with real API Gateway v2 events and direct-invoke events."""

from __future__ import annotations

import base64
import io
import json
import logging

import httpx
import pytest
from botocore.exceptions import EndpointConnectionError

from image_common.errors import InternalError
from image_service import http as service_http
from image_service import pipeline
from tests.conftest import PROVIDER_KEYS, http_event, request_body


@pytest.fixture
def generation(s3, emulators):
    import generation as module

    module.image_service.cache_clear()
    yield module
    module.image_service.cache_clear()


def call(module, event, context):
    response = module.handler(event, context)
    return response["statusCode"], json.loads(response["body"]), response.get("headers", {})


def test_post_generate_answers_the_seed_contract(generation, lambda_context, s3):
    body = {
        "prompt": "A serene mountain landscape at sunset",
        "settings": {
            "image": {"model": "openai", "width": 1024, "height": 1024, "quality": "high"}
        },
        "customer_id": 123,
        "save_to_db": True,
    }
    status, answer, headers = call(generation, http_event(body=body), lambda_context)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert answer["success"] is True and answer["code"] == 200
    data = answer["data"]
    assert (data["provider"], data["model"]) == ("openai", "gpt-image-2.5-flare")
    assert data["settings"] == {"width": 1024, "height": 1024, "quality": "high", "n": 1}
    assert data["image_url"].startswith("https://") and "X-Amz-Signature" in data["image_url"]
    assert data["warnings"] == [] and data["cost_usd"] > 0
    stored = s3.get_object(Bucket="test-images", Key=data["image_key"])
    assert stored["ContentType"] == "image/png"


def test_base64_encoded_body_is_accepted(generation, lambda_context):
    event = http_event(body=request_body(save_to_db=False), base64_body=True)
    status, answer, _ = call(generation, event, lambda_context)
    assert status == 200 and answer["data"]["image_url"].startswith("data:image/png;base64,")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("{not json", "not valid JSON"),
        ('["a list"]', "JSON object"),
        (json.dumps({"prompt": "", "customer_id": 123}), "prompt"),
        (json.dumps({"prompt": "x", "customer_id": 0}), "customer_id"),
        (json.dumps(request_body(model="midjourney")), "Unknown model"),
        (json.dumps(request_body(width=9)), "settings.image.width"),
        (json.dumps(request_body(input_images=["data:image/png;base64,bm90IGFuIGltYWdl"])),
         "not a PNG, JPEG or WebP"),
        (json.dumps(request_body() | {"save_to_bd": False}), "save_to_bd: unknown field"),
        (json.dumps(request_body(size="1792x1024")), "settings.image.size: unknown field"),
        (json.dumps(request_body() | {"customer_id": True}), "customer_id"),
        ('{"prompt": "a cat", "customer_id": NaN}', "not valid JSON"),
        ('{"prompt": "\\ud800", "customer_id": 123}', "not valid Unicode"),
        ('{"settings": ' + "[" * 70 + "]" * 70 + "}", "nested deeper than 64 levels"),
        ('{"a":' * 1000 + "1" + "}" * 1000, "nested deeper than 64 levels"),
        ("[" * 100_000, "nested deeper than 64 levels"),
    ],
)  # fmt: skip
def test_bad_input_is_a_400_envelope(generation, lambda_context, raw, message):
    status, answer, _ = call(generation, http_event(raw_body=raw), lambda_context)
    assert status == 400
    assert answer["success"] is False and answer["code"] == 400
    assert answer["error"]["type"] in ("invalid_request", "unknown_model", "invalid_image")
    assert message in answer["error"]["message"]


def test_an_openai_shaped_body_is_refused_naming_every_foreign_field(generation, lambda_context):
    body = {"prompt": "a cat", "model": "dall-e-3", "size": "1792x1024", "n": 3,
            "customer_id": 123}  # fmt: skip
    status, answer, _ = call(generation, http_event(body=body), lambda_context)
    assert status == 400
    assert answer["error"]["details"]["fields"] == ["model", "size", "n"]


@pytest.mark.parametrize(
    "raw",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",  # a raw image upload
        '{"prompt": "caf\u00e9", "customer_id": 1}'.encode("latin-1"),
        b"\xff\xfe{\x00}\x00",  # UTF-16
    ],
)
def test_a_body_that_is_not_utf8_is_a_400(generation, lambda_context, s3, raw):
    event = http_event()
    event.update(body=base64.b64encode(raw).decode(), isBase64Encoded=True)
    status, answer, _ = call(generation, event, lambda_context)
    assert status == 400 and answer["error"]["type"] == "invalid_request"
    assert "not UTF-8" in answer["error"]["message"]
    assert s3.list_objects_v2(Bucket="test-images").get("KeyCount") == 0


def test_a_body_flagged_base64_that_is_not_is_a_400(generation, lambda_context):
    event = http_event(raw_body=json.dumps(request_body()))
    event["isBase64Encoded"] = True
    status, answer, _ = call(generation, event, lambda_context)
    assert status == 400 and "not valid base64" in answer["error"]["message"]


def test_foreign_customer_is_a_403(generation, lambda_context, emulators):
    event = http_event(body=request_body(customer_id=456), customer_id=123)
    status, answer, _ = call(generation, event, lambda_context)
    assert status == 403 and answer["error"]["type"] == "forbidden"
    assert emulators["openai"].requests == []  # refused before any provider was paid


def test_admin_scope_may_act_for_any_customer(generation, lambda_context, s3):
    event = http_event(body=request_body(customer_id=456), customer_id=123, scopes="images:admin")
    status, answer, _ = call(generation, event, lambda_context)
    assert status == 200
    assert answer["data"]["image_key"].startswith("customers/456/")


def test_missing_authorizer_context_is_a_401(generation, lambda_context):
    status, answer, _ = call(
        generation, http_event(body=request_body(), customer_id=None), lambda_context
    )
    assert status == 401 and answer["error"]["type"] == "unauthorized"


def test_oversized_body_is_a_413(generation, lambda_context):
    raw = json.dumps(request_body("x" * 100)) + " " * (10 * 1024 * 1024)
    status, answer, _ = call(generation, http_event(raw_body=raw), lambda_context)
    assert status == 413 and answer["error"]["type"] == "payload_too_large"


def test_oversized_input_image_is_a_413(generation, lambda_context, settings, monkeypatch):
    big = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 2048).decode()
    monkeypatch.setattr(
        generation.image_service(),
        "settings",
        settings.model_copy(update={"max_input_image_bytes": 1024}),
    )
    status, answer, _ = call(
        generation, http_event(body=request_body(input_images=[big])), lambda_context
    )
    assert status == 413
    assert answer["success"] is False and answer["code"] == 413
    assert answer["error"]["type"] == "payload_too_large"


def test_moderation_is_a_422(generation, lambda_context):
    status, answer, _ = call(
        generation, http_event(body=request_body("x [moderate]")), lambda_context
    )
    assert status == 422 and answer["error"]["type"] == "content_policy_violation"


def test_rate_limit_is_a_429_with_retry_after_header(generation, lambda_context):
    status, answer, headers = call(
        generation, http_event(body=request_body("x [rate-limit]")), lambda_context
    )
    assert status == 429 and answer["error"]["type"] == "rate_limited"
    assert headers["Retry-After"] == "7"


def test_provider_failure_is_a_502(generation, lambda_context):
    status, answer, _ = call(
        generation, http_event(body=request_body("x [server-error]")), lambda_context
    )
    assert status == 502 and answer["error"]["type"] == "provider_error"


def test_a_provider_that_does_not_answer_in_time_is_a_504(generation, lambda_context):
    def too_slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    service_http.set_http_client(service_http.new_http_client(httpx.MockTransport(too_slow)))
    status, answer, _ = call(generation, http_event(body=request_body()), lambda_context)
    assert status == 504
    assert answer["success"] is False and answer["code"] == 504
    assert answer["error"]["type"] == "provider_timeout"


def test_an_s3_upload_failure_is_a_502_envelope(generation, lambda_context, s3):
    s3.delete_bucket(Bucket="test-images")  # every upload of the job's image now fails
    status, answer, _ = call(generation, http_event(body=request_body()), lambda_context)
    assert status == 502
    assert answer["success"] is False and answer["code"] == 502
    assert answer["error"]["type"] == "storage_error"
    assert "test-images" not in answer["error"]["message"]
    assert answer["error"]["details"]["job_id"]  # the job failed, and says which


def bucket_keys(s3) -> list[str]:
    listed = s3.list_objects_v2(Bucket="test-images")
    return sorted(item["Key"] for item in listed.get("Contents", []))


def fail_on_put(s3, number: int) -> list[str]:
    """S3 refuses the ``number``-th PutObject (a botocore hook on the service's own client)."""
    puts: list[str] = []

    def hook(params, **_):
        puts.append(params["Key"])
        if len(puts) == number:
            raise EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.com")

    s3.meta.events.register("before-parameter-build.s3.PutObject", hook)
    return puts


def test_s3_failing_on_the_second_image_leaves_the_bucket_as_it_was(generation, lambda_context, s3):
    s3.put_object(Bucket="test-images", Key="customers/123/assets/image/mine.png", Body=b"x")
    before = bucket_keys(s3)
    puts = fail_on_put(s3, 2)
    status, answer, _ = call(generation, http_event(body=request_body(n=2)), lambda_context)
    assert status == 502 and answer["error"]["type"] == "storage_error"
    assert len(puts) == 2  # the first image was stored, then removed
    assert bucket_keys(s3) == before


def test_images_that_cannot_be_removed_are_logged_by_key(generation, lambda_context, s3, caplog):
    puts = fail_on_put(s3, 2)

    def refuse(**_):
        raise EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.com")

    s3.meta.events.register("before-parameter-build.s3.DeleteObjects", refuse)
    with caplog.at_level(logging.ERROR):
        status, _, _ = call(generation, http_event(body=request_body(n=2)), lambda_context)
    assert status == 502
    (record,) = [r for r in caplog.records if "were not removed" in r.getMessage()]
    assert puts[0] in record.keys and puts[1] in record.keys


@pytest.mark.parametrize("url", ["https://[::1/a.png", "https://images.example.com:99999/a.png"])
def test_a_malformed_input_image_url_is_a_400_envelope(generation, lambda_context, url):
    status, answer, _ = call(
        generation, http_event(body=request_body(input_images=[url])), lambda_context
    )
    assert status == 400
    assert answer["success"] is False and answer["code"] == 400
    assert answer["error"]["type"] == "invalid_image"


def test_unknown_route_is_a_404_envelope(generation, lambda_context):
    status, answer, _ = call(generation, http_event("GET", "/image/nothing"), lambda_context)
    assert status == 404 and answer["error"]["type"] == "not_found"


def test_health_is_not_a_generation_route(generation, lambda_context):
    # GET /health has its own tiny function (functions/health); here it is an unknown route.
    status, answer, _ = call(generation, http_event("GET", "/health"), lambda_context)
    assert status == 404 and answer["error"]["type"] == "not_found"


def test_health_function_answers_ok_in_the_envelope():
    import health

    response = health.handler(http_event("GET", "/health", customer_id=None), None)
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "application/json"
    assert json.loads(response["body"]) == {"success": True, "code": 200, "data": {"status": "ok"}}


def test_unexpected_error_is_a_500_with_no_internals_in_answer_or_logs(
    generation, lambda_context, monkeypatch, caplog
):
    stream = io.StringIO()  # the JSON log lines exactly as CloudWatch would receive them
    monkeypatch.setattr(generation.logger.registered_handler, "stream", stream)
    leaked = f"boom {PROVIDER_KEYS['openai']} at /var/task/image_service/service.py line 12"

    def explode(*args, **kwargs):
        raise RuntimeError(leaked)

    monkeypatch.setattr(pipeline, "call_provider", explode)
    with caplog.at_level(logging.DEBUG):
        response = generation.handler(http_event(body=request_body()), lambda_context)
    assert response["statusCode"] == 500
    assert json.loads(response["body"]) == {
        "success": False, "code": 500,
        "error": {
            "type": "internal_error", "message": InternalError().message,
            "details": {"job_id": json.loads(response["body"])["error"]["details"]["job_id"],
                        "status": "failed"},
        },
    }  # fmt: skip
    logs = caplog.text + stream.getvalue()
    assert "RuntimeError" in logs
    for secret in (PROVIDER_KEYS["openai"], "Traceback", "/var/task", "Bearer x.y.z"):
        assert secret not in logs and secret not in response["body"]


# --- direct invoke ---------------------------------------------------------------------------


def test_direct_invoke_returns_a_tool_shaped_result(generation, lambda_context, s3):
    result = generation.handler(request_body(customer_id=77, quality="low"), lambda_context)
    assert result["success"] is True
    assert result["text"].startswith("Generated 1 image with openai gpt-image-2.5-flare")
    assert result["image_url"].startswith("https://")
    assert (result["provider"], result["model"]) == ("openai", "gpt-image-2.5-flare")
    assert result["settings"]["quality"] == "low"
    assert result["image_key"].startswith("customers/77/")  # trusted: no token, any customer


def test_direct_invoke_failure_is_a_typed_error_not_an_exception(generation, lambda_context):
    result = generation.handler(request_body("x [moderate]"), lambda_context)
    assert result["success"] is False
    assert result["error"]["type"] == "content_policy_violation" and result["error"]["code"] == 422
    assert result["text"].startswith("Image generation failed:")


def test_tool_invocation_runs_for_the_envelopes_customer(generation, lambda_context, s3):
    tool_input = {"prompt": "a red fox", "settings": {"image": {"model": "grok", "n": None}}}
    result = generation.handler({"customer_id": 55, "input": tool_input}, lambda_context)
    assert result["success"] is True and result["provider"] == "xai"
    assert result["image_key"].startswith("customers/55/")


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"customer_id": 55, "input": {"prompt": "a fox", "customer_id": 9}}, "input.customer_id"),
        ({"input": {"prompt": "a fox"}}, "customer_id"),
        ({"customer_id": "55", "input": {"prompt": "a fox"}}, "customer_id"),
        ({"customer_id": 55, "input": "a fox"}, "input"),
        ({"customer_id": 55, "input": {"prompt": "a fox"}, "extra": 1}, "extra"),
    ],
)
def test_a_tool_input_cannot_choose_the_customer(generation, lambda_context, s3, event, field):
    result = generation.handler(event, lambda_context)
    assert result["success"] is False and result["error"]["code"] == 400
    assert field in result["error"]["details"]["fields"]
    assert s3.list_objects_v2(Bucket="test-images").get("KeyCount") == 0


def test_direct_invoke_validation_error(generation, lambda_context):
    result = generation.handler({"prompt": "", "customer_id": 1}, lambda_context)
    assert result["success"] is False and result["error"]["code"] == 400


def test_direct_invoke_unexpected_error_carries_no_trace(generation, lambda_context, monkeypatch):
    monkeypatch.setattr(pipeline, "call_provider", lambda *a, **k: 1 / 0)
    result = generation.handler(request_body(), lambda_context)
    assert result == {
        "success": False,
        "text": f"Image generation failed: {InternalError().message}",
        "error": {
            "code": 500,
            "type": "internal_error",
            "message": InternalError().message,
            "details": {"job_id": result["error"]["details"]["job_id"], "status": "failed"},
        },
    }
