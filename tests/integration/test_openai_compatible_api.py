"""The OpenAI-compatible routes through the generation handler, with API Gateway v2 events,
moto S3 and the provider emulators: every answer is checked against OpenAI's official schemas."""

from __future__ import annotations

import base64
import io
import json
import logging

import pytest
from PIL import Image

from image_service.catalog import model_catalog, resolve_model
from image_service.service import ImageService
from image_service.storage import ImageStore
from local.job_runner import LocalJobRunner
from tests.conftest import (
    PROVIDER_KEYS,
    RecordingJobRunner,
    http_event,
    image_bytes,
    pipeline_for,
)
from tests.openai_schemas import assert_openai_schema
from tests.unit.test_openai_compat import form


@pytest.fixture
def generation(s3, emulators, monkeypatch):
    """The handler module, with ``image_service()`` swappable per test by ``use``."""
    import generation as module

    module.image_service.cache_clear()

    def use(service: ImageService) -> ImageService:
        monkeypatch.setattr(module, "image_service", lambda: service)
        return service

    module.use = use
    yield module
    del module.use
    monkeypatch.undo()
    module.image_service.cache_clear()


def call(module, event, context):
    response = module.handler(event, context)
    return response["statusCode"], json.loads(response["body"]), response.get("headers", {})


def post(generation, context, path: str = "/v1/images/generations", token_customer=123, **body):
    body.setdefault("prompt", "A lighthouse on a cliff")
    return call(generation, http_event(path=path, body=body, customer_id=token_customer), context)


def ok(status, answer, schema="ImagesResponse") -> dict:
    assert status == 200, answer
    assert_openai_schema(schema, answer)
    return answer


def stored_keys(s3) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket="test-images").get("Contents", [])]


# --- generations -----------------------------------------------------------------------------


def test_generate_answers_base64_by_default_and_stores_no_asset(generation, lambda_context, s3):
    answer = ok(*post(generation, lambda_context, model="openai", size="1024x1536")[:2])

    image = Image.open(io.BytesIO(base64.b64decode(answer["data"][0]["b64_json"])))
    assert image.format == "PNG" and image.size == (1024, 1536)
    assert (answer["provider"], answer["model"]) == ("openai", resolve_model("openai").spec.id)
    assert answer["size"] == "1024x1536" and answer["output_format"] == "png"
    assert answer["usage"]["output_tokens"] > 0 and answer["cost_usd"] > 0
    # Nothing among the customer's assets; only the job's transient copy (docs/jobs.md).
    assert [k for k in stored_keys(s3) if not k.startswith("jobs/")] == []


def test_url_on_another_provider_stores_the_image_under_the_tokens_customer(
    generation, lambda_context, s3, emulators
):
    status, answer, _ = post(
        generation,
        lambda_context,
        token_customer=42,
        model="stability",
        response_format="url",
        size="1536x1024",
    )

    answer = ok(status, answer)
    (key,) = stored_keys(s3)
    assert key.startswith("customers/42/assets/image/")
    assert key in answer["data"][0]["url"] and "X-Amz-Signature" in answer["data"][0]["url"]
    assert answer["provider"] == "stability"
    sent = emulators["stability"].requests[-1]
    assert b'name="aspect_ratio"' in sent.body and b"3:2" in sent.body  # size → ratio


def test_a_customer_id_in_the_body_is_a_400_and_nothing_is_generated(
    generation, lambda_context, emulators
):
    status, answer, _ = post(generation, lambda_context, token_customer=42, customer_id=999)

    assert status == 400 and answer["error"]["param"] == "customer_id"
    assert "token" in answer["error"]["message"]
    assert emulators["openai"].requests == []


def test_openai_only_parameters_reach_the_openai_provider(generation, lambda_context, emulators):
    answer = ok(
        *post(
            generation,
            lambda_context,
            model="openai",
            background="transparent",
            moderation="low",
            output_format="webp",
            output_compression=80,
            user="end-user-9",
        )[:2]
    )

    sent = emulators["openai"].requests[-1].json()
    assert {k: sent[k] for k in ("background", "moderation", "output_compression", "user")} == {
        "background": "transparent",
        "moderation": "low",
        "output_compression": 80,
        "user": "end-user-9",
    }
    assert answer["background"] == "transparent" and answer["output_format"] == "webp"
    assert answer["warnings"] == []


def test_n_images_come_back_as_n_data_items(generation, lambda_context):
    answer = ok(*post(generation, lambda_context, model="openai", n=3, quality="low")[:2])
    payloads = {item["b64_json"] for item in answer["data"]}
    assert len(answer["data"]) == 3 and len(payloads) == 3


# --- edits -----------------------------------------------------------------------------------


def edit_event(body: bytes, content_type: str, customer_id: int = 123) -> dict:
    event = http_event(path="/v1/images/edits", raw_body="", customer_id=customer_id)
    event["headers"]["content-type"] = content_type
    event["body"] = base64.b64encode(body).decode()  # API Gateway sends binary bodies base64
    event["isBase64Encoded"] = True
    return event


def test_an_edit_with_two_images_and_a_mask_reaches_the_provider_as_multipart(
    generation, lambda_context, emulators
):
    first, second = image_bytes("png", 64, 64), image_bytes("jpeg", 64, 64)
    mask = image_bytes("png", 64, 64)
    body, content_type = form(
        ("prompt", b"Put both in one scene", None),
        ("model", b"openai", None),
        ("quality", b"low", None),
        ("image[]", first, "first.png"),
        ("image[]", second, "second.jpg"),
        ("mask", mask, "mask.png"),
    )

    answer = ok(*call(generation, edit_event(body, content_type), lambda_context)[:2])

    assert len(answer["data"]) == 1 and answer["provider"] == "openai"
    parts = emulators["openai"].requests[-1].form()
    images = [p for p in parts if p.name == "image[]"]
    assert [p.data for p in images] == [first, second]
    assert [p.data for p in parts if p.name == "mask"] == [mask]
    assert {p.name: p.text for p in parts if p.filename is None}["prompt"] == (
        "Put both in one scene"
    )


def test_an_edit_for_a_model_without_masks_is_a_400_naming_the_mask(generation, lambda_context):
    body, content_type = form(
        ("prompt", b"p", None),
        ("model", b"stability", None),
        ("image", image_bytes(), "a.png"),
        ("mask", image_bytes(), "m.png"),
    )
    status, answer, _ = call(generation, edit_event(body, content_type), lambda_context)

    assert status == 400
    assert_openai_schema("ErrorResponse", answer)
    assert "mask" in answer["error"]["message"]


def test_an_edit_image_that_is_not_an_image_is_a_400(generation, lambda_context):
    body, content_type = form(("prompt", b"p", None), ("image", b"not an image", "a.png"))
    status, answer, _ = call(generation, edit_event(body, content_type), lambda_context)
    assert status == 400 and answer["error"]["code"] == "invalid_image"


# --- models ----------------------------------------------------------------------------------


def test_models_list_and_retrieve_answer_openais_model_objects(generation, lambda_context):
    status, listing, headers = call(
        generation, http_event("GET", "/v1/models", customer_id=123), lambda_context
    )
    ok(status, listing, "ListModelsResponse")
    assert len(listing["data"]) == sum(
        1 for m in model_catalog()["models"] if m["served_by"] == m["id"]
    )
    assert headers["Cache-Control"].startswith("private")

    status, model, _ = call(
        generation, http_event("GET", "/v1/models/gemini", customer_id=123), lambda_context
    )
    assert ok(status, model, "Model")["owned_by"] == "google"


def test_an_unknown_model_is_a_404_on_retrieve_and_on_generate(generation, lambda_context):
    status, answer, _ = call(
        generation, http_event("GET", "/v1/models/gpt-9000", customer_id=123), lambda_context
    )
    assert status == 404 and answer["error"]["code"] == "model_not_found"
    assert_openai_schema("ErrorResponse", answer)

    status, answer, _ = post(generation, lambda_context, model="gpt-9000")
    assert status == 404 and answer["error"]["param"] == "model"


# --- errors ----------------------------------------------------------------------------------


def error(status_answer_headers, status: int, code: str | None) -> tuple[dict, dict]:
    got, answer, headers = status_answer_headers
    assert got == status, answer
    assert_openai_schema("ErrorResponse", answer)
    assert answer["error"]["code"] == code
    return answer["error"], headers


def test_a_moderated_prompt_is_openais_400_moderation_blocked(generation, lambda_context):
    body, _ = error(
        post(generation, lambda_context, prompt="a thing [moderate]"), 400, "moderation_blocked"
    )
    assert body["type"] == "image_generation_user_error"


def test_a_provider_rate_limit_is_a_429_with_retry_after(generation, lambda_context):
    body, headers = error(
        post(generation, lambda_context, model="openai", prompt="[rate-limit]"),
        429,
        "rate_limit_exceeded",
    )
    assert headers["Retry-After"] == "7" and body["type"] == "requests"


def test_a_provider_failure_is_a_502_server_error(generation, lambda_context):
    body, _ = error(
        post(generation, lambda_context, model="openai", prompt="[server-error]"),
        502,
        "provider_error",
    )
    assert body["type"] == "server_error"


@pytest.mark.parametrize(
    ("raw", "message"),
    [("{not json", "not valid JSON"), ("", "empty"), ('["a"]', "JSON object")],
)
def test_a_body_that_is_not_a_json_object_is_a_400(generation, lambda_context, raw, message):
    event = http_event(path="/v1/images/generations", raw_body=raw)
    body, _ = error(call(generation, event, lambda_context), 400, "invalid_request")
    assert message in body["message"]


def test_a_body_over_the_limit_is_a_413(generation, lambda_context):
    event = http_event(path="/v1/images/generations", raw_body="x" * (10 * 1024 * 1024 + 1))
    error(call(generation, event, lambda_context), 413, "payload_too_large")
    edit = edit_event(b"x" * (10 * 1024 * 1024 + 1), "multipart/form-data; boundary=b")
    error(call(generation, edit, lambda_context), 413, "payload_too_large")


def test_an_edit_body_that_is_not_base64_or_is_empty_is_a_400(generation, lambda_context):
    event = edit_event(b"", "multipart/form-data; boundary=b")
    error(call(generation, event, lambda_context), 400, "invalid_request")
    event["body"] = "not base64!"
    body, _ = error(call(generation, event, lambda_context), 400, "invalid_request")
    assert "base64" in body["message"]


def test_an_unknown_v1_route_is_an_openai_shaped_404(generation, lambda_context):
    event = http_event("GET", "/v1/embeddings", customer_id=123)
    error(call(generation, event, lambda_context), 404, "not_found")


def test_without_the_authorizers_customer_the_answer_is_an_openai_shaped_401(
    generation, lambda_context
):
    for event in (
        http_event(path="/v1/images/generations", body={"prompt": "p"}, customer_id=None),
        http_event("GET", "/v1/models", customer_id=None),
    ):
        error(call(generation, event, lambda_context), 401, "unauthorized")


def test_the_service_routes_keep_their_envelope(generation, lambda_context):
    status, answer, _ = call(
        generation, http_event("GET", "/image/nothing", customer_id=123), lambda_context
    )
    assert status == 404 and answer["success"] is False and "error" in answer


def test_no_token_key_or_trace_in_answers_or_logs(generation, lambda_context, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    for prompt in ("[server-error]", "[garbage]", "[rate-limit]"):
        post(generation, lambda_context, model="openai", prompt=prompt)
    text = caplog.text + capsys.readouterr().out
    for secret in (*PROVIDER_KEYS.values(), "Bearer x.y.z", "Traceback"):
        assert secret not in text


# --- models that run as jobs -------------------------------------------------------------------


@pytest.fixture
def fast_settings(settings):
    return settings.model_copy(update={"job_poll_interval_seconds": 0.01})


def test_a_job_that_finishes_within_the_request_answers_its_image(
    generation, lambda_context, fast_settings
):
    runner = LocalJobRunner(pipeline_for(fast_settings), background=False)
    generation.use(ImageService(fast_settings, ImageStore(fast_settings), job_runner=runner))

    answer = ok(*post(generation, lambda_context, model="flux", prompt="A fox [polls=1]")[:2])

    assert answer["provider"] == "flux" and len(answer["job_id"]) == 32
    image = Image.open(io.BytesIO(base64.b64decode(answer["data"][0]["b64_json"])))
    assert image.format == "JPEG"


def test_a_job_still_running_at_the_end_of_the_request_is_a_retryable_503(
    generation, lambda_context, fast_settings
):
    short = fast_settings.model_copy(update={"job_wait_seconds": 0.05})
    runner = RecordingJobRunner()  # the job is recorded but never runs: it stays pending
    generation.use(ImageService(short, ImageStore(short), job_runner=runner))

    body, headers = error(post(generation, lambda_context, model="flux"), 503, "job_pending")

    assert headers["Retry-After"] == "1"
    assert headers["x-should-retry"] == "true"  # a retry attaches to this job: no second charge
    assert body["job_id"] == runner.started[0]["job_id"]
    assert body["type"] == "server_error"


class DeferredJobRunner(RecordingJobRunner):
    """Records the jobs it is asked to start; ``run_all`` then runs them to the end."""

    def __init__(self, pipeline) -> None:
        super().__init__()
        self.local = LocalJobRunner(pipeline, background=False)

    def run_all(self) -> None:
        for execution_input in self.started:
            self.local.start(execution_input)


def test_an_identical_retry_attaches_to_the_running_job_until_its_answer_is_delivered(
    generation, lambda_context, fast_settings
):
    short = fast_settings.model_copy(update={"job_wait_seconds": 0.05})
    runner = DeferredJobRunner(pipeline_for(short))
    generation.use(ImageService(short, ImageStore(short), job_runner=runner))
    body = {"model": "gpt-image-2", "prompt": "A heron in the reeds", "quality": "high"}

    first, _ = error(post(generation, lambda_context, **body), 503, "job_pending")
    again, _ = error(post(generation, lambda_context, **body), 503, "job_pending")
    assert again["job_id"] == first["job_id"] and len(runner.started) == 1  # attached

    runner.run_all()  # the job ends; the SDK's next retry fetches its image
    delivered = ok(*post(generation, lambda_context, **body)[:2])
    assert delivered["job_id"] == first["job_id"] and len(runner.started) == 1

    # Delivered: the same request once more is a new image, not a replay of the old one.
    error(post(generation, lambda_context, **body), 503, "job_pending")
    assert len(runner.started) == 2 and runner.started[1]["job_id"] != first["job_id"]


def test_an_idempotency_key_reused_with_another_body_is_a_422(
    generation, lambda_context, fast_settings
):
    short = fast_settings.model_copy(update={"job_wait_seconds": 0.05})
    generation.use(ImageService(short, ImageStore(short), job_runner=RecordingJobRunner()))

    def keyed(prompt: str) -> dict:
        event = http_event(path="/v1/images/generations", body={"prompt": prompt})
        event["headers"]["idempotency-key"] = "k-1"
        return event

    error(call(generation, keyed("One"), lambda_context), 503, "job_pending")
    body, _ = error(call(generation, keyed("Two"), lambda_context), 422, "idempotency_key_reused")
    assert "different request body" in body["message"]
