"""The jobs API through the generation handler with API Gateway v2 events: ``POST
/image/generate`` for a Flux model answers 202; ``GET /image/jobs/{id}`` answers pending, the
final 200, the typed error, 404 for unknown or foreign jobs, and a timeout past the budget. A
direct invoke of a Flux model waits for the finished image. Jobs run on the ``LocalJobRunner``
(the real task handlers in a thread) with a short interval."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta

import pytest

from image_service.job_runners import LocalJobRunner
from image_service.jobs import JobRecord, JobStore, new_job_id, utcnow
from image_service.service import ImageService
from image_service.storage import ImageStore
from tests.conftest import (
    PROVIDER_KEYS,
    RecordingJobRunner,
    data_url,
    http_event,
    image_bytes,
    request_body,
)


@pytest.fixture
def fast_settings(settings):
    return settings.model_copy(update={"job_poll_interval_seconds": 0.01})


@pytest.fixture
def local_runner(flux_tasks) -> LocalJobRunner:
    runner = LocalJobRunner(flux_tasks)
    yield runner
    assert runner.join(10), "a job thread outlived its test"


@pytest.fixture
def generation(s3, emulators, monkeypatch):
    """The handler module, with ``image_service()`` swapped per test by ``use``."""
    import generation as module

    def use(service: ImageService) -> ImageService:
        monkeypatch.setattr(module, "image_service", lambda: service)
        return service

    module.use = use
    yield module
    del module.use


@pytest.fixture
def running(generation, fast_settings, local_runner) -> ImageService:
    """Jobs really run: submit, poll every 10 ms, store, through the emulator."""
    service = ImageService(fast_settings, ImageStore(fast_settings), job_runner=local_runner)
    return generation.use(service)


@pytest.fixture
def parked(generation, settings) -> ImageService:
    """Jobs are recorded but never run: they stay pending."""
    service = ImageService(settings, ImageStore(settings), job_runner=RecordingJobRunner())
    return generation.use(service)


def call(module, event, context):
    response = module.handler(event, context)
    return response["statusCode"], json.loads(response["body"]), response.get("headers", {})


def post_flux(generation, context, prompt: str = "A fox in the snow", customer_id=123, **image):
    image.setdefault("model", "flux-pro-1.1")
    body = request_body(prompt, customer_id=customer_id, **image)
    return call(generation, http_event(body=body, customer_id=customer_id), context)


def get_job(generation, context, job_id: str, customer_id: int = 123, **event):
    event = http_event("GET", f"/image/jobs/{job_id}", customer_id=customer_id, **event)
    return call(generation, event, context)


# --- 202 ----------------------------------------------------------------------------------------


def test_a_flux_request_answers_202_with_where_to_look(
    generation, parked, lambda_context, emulators
):
    status, answer, headers = post_flux(generation, lambda_context)
    assert status == 202
    assert answer["success"] is True and answer["code"] == 202
    data = answer["data"]
    assert set(data) == {"job_id", "status", "status_url", "provider", "model"}
    assert data["status"] == "pending" and data["model"] == "flux-pro-1.1"
    assert data["status_url"] == f"/image/jobs/{data['job_id']}" == headers["Location"]
    assert emulators["flux"].submissions() == []  # the workflow submits, not the API call


def test_a_bad_flux_request_is_a_400_before_any_job(generation, parked, lambda_context, s3):
    images = [data_url(image_bytes())] * 5
    status, answer, _ = post_flux(
        generation, lambda_context, model="flux-kontext-pro", input_images=images
    )
    assert status == 400 and "at most 4" in answer["error"]["message"]
    assert not s3.list_objects_v2(Bucket="test-images", Prefix="jobs/").get("Contents")


def test_a_job_that_cannot_start_is_a_502_and_recorded_failed(
    generation, settings, lambda_context, s3
):
    generation.use(ImageService(settings, ImageStore(settings)))  # no state machine configured
    status, answer, _ = post_flux(generation, lambda_context)
    assert status == 502 and answer["error"]["type"] == "provider_not_configured"
    listed = s3.list_objects_v2(Bucket="test-images", Prefix="jobs/123/")["Contents"]
    keys = [o["Key"] for o in listed]
    (record_key,) = [k for k in keys if not k.endswith(".input.json")]
    record = json.loads(s3.get_object(Bucket="test-images", Key=record_key)["Body"].read())
    assert record["status"] == "failed" and record["error"]["status"] == 502


# --- GET /image/jobs/{id} ----------------------------------------------------------------------


def test_a_job_in_progress_reads_pending(generation, parked, lambda_context):
    job_id = post_flux(generation, lambda_context)[1]["data"]["job_id"]
    status, answer, headers = get_job(generation, lambda_context, job_id)
    assert status == 202 and answer["code"] == 202
    assert answer["data"]["status"] == "pending" and answer["data"]["job_id"] == job_id
    assert answer["data"]["polls"] == 0 and "created_at" in answer["data"]
    assert headers["Retry-After"] == "1" and headers["Cache-Control"] == "no-store"


def test_a_finished_job_answers_the_synchronous_200(
    generation, running, local_runner, lambda_context, s3
):
    image = {"seed": 3, "width": 1024, "height": 768}
    accepted = post_flux(generation, lambda_context, "A fox [polls=2]", **image)
    job_id = accepted[1]["data"]["job_id"]
    assert local_runner.join(10)
    status, answer, _ = get_job(generation, lambda_context, job_id)
    assert status == 200 and answer == {"success": True, "code": 200, "data": answer["data"]}
    data = answer["data"]
    assert set(data) == {
        "image_url", "image_key", "content_type", "provider", "model", "settings", "warnings",
        "cost_usd", "seed", "job_id",
    }  # fmt: skip
    assert (data["provider"], data["model"], data["job_id"], data["seed"]) == (
        "flux", "flux-pro-1.1", job_id, 3)  # fmt: skip
    assert data["settings"] == {"width": 1024, "height": 768, "seed": 3, "n": 1}
    assert data["cost_usd"] == pytest.approx(0.04)
    stored = s3.head_object(Bucket="test-images", Key=data["image_key"])
    assert stored["ContentType"] == "image/jpeg"


def test_a_moderated_job_answers_422_with_the_typed_error(
    generation, running, local_runner, lambda_context
):
    job_id = post_flux(generation, lambda_context, "A fox [moderate]")[1]["data"]["job_id"]
    assert local_runner.join(10)
    status, answer, _ = get_job(generation, lambda_context, job_id)
    assert status == 422 and answer["success"] is False and answer["code"] == 422
    assert answer["error"]["type"] == "content_policy_violation"
    assert "Request Moderated" in answer["error"]["message"]
    assert answer["error"]["details"] == {"job_id": job_id, "status": "failed"}


def test_a_failed_provider_job_answers_502(generation, running, local_runner, lambda_context):
    job_id = post_flux(generation, lambda_context, "A fox [error] [polls=1]")[1]["data"]["job_id"]
    assert local_runner.join(10)
    status, answer, _ = get_job(generation, lambda_context, job_id)
    assert status == 502 and answer["error"]["type"] == "provider_error"


# A well-formed id that no job has (a fixed value: xdist workers must collect the same ids).
@pytest.mark.parametrize(
    "job_id", ["0f1e2d3c4b5a49788796a5b4c3d2e1f0", "not-a-job", "..%2F..%2Fcustomers"]
)
def test_an_unknown_job_is_a_404(generation, parked, lambda_context, job_id):
    status, answer, _ = get_job(generation, lambda_context, job_id)
    assert status == 404 and answer["error"]["type"] == "not_found"


def test_another_customers_job_is_a_404(generation, parked, lambda_context):
    job_id = post_flux(generation, lambda_context, customer_id=123)[1]["data"]["job_id"]
    status, answer, _ = get_job(generation, lambda_context, job_id, customer_id=456)
    assert status == 404 and answer["error"]["type"] == "not_found"
    # Not even by naming the owner, without the admin scope.
    event = http_event("GET", f"/image/jobs/{job_id}", customer_id=456)
    event["rawQueryString"] = "customer_id=123"
    event["queryStringParameters"] = {"customer_id": "123"}
    assert call(generation, event, lambda_context)[0] == 404
    event["requestContext"]["authorizer"]["lambda"]["scopes"] = "images:admin"
    assert call(generation, event, lambda_context)[0] == 202


def test_a_job_past_its_budget_with_no_final_record_reads_as_timed_out(
    generation, parked, settings, lambda_context
):
    created = utcnow() - timedelta(seconds=settings.job_budget_seconds + 60)
    job = JobRecord(
        job_id=new_job_id(), customer_id=123, status="running", provider="flux", model="flux-dev",
        created_at=created, updated_at=created, interval_seconds=1, budget_seconds=60,
    )  # fmt: skip
    JobStore(ImageStore(settings)).save(job)  # its workflow died without a final record
    status, answer, _ = get_job(generation, lambda_context, job.job_id)
    assert status == 504 and answer["error"]["type"] == "provider_timeout"
    assert "60 s budget" in answer["error"]["message"]


def test_the_jobs_route_needs_the_authorizer(generation, parked, lambda_context):
    status, answer, _ = get_job(generation, lambda_context, new_job_id(), customer_id=None)
    assert status == 401


# --- direct invoke waits ---------------------------------------------------------------------


def test_a_direct_invoke_of_flux_returns_the_finished_image(
    generation, running, lambda_context, s3
):
    result = generation.handler(request_body("A fox [polls=1]", model="flux-dev"), lambda_context)
    assert result["success"] is True and "flux flux-dev" in result["text"]
    assert result["image_url"].startswith("https://") and result["job_id"]
    assert s3.head_object(Bucket="test-images", Key=result["image_key"])


def test_a_direct_invoke_of_a_moderated_flux_prompt_is_a_typed_failure(
    generation, running, lambda_context
):
    result = generation.handler(request_body("A fox [moderate]", model="flux-dev"), lambda_context)
    assert result["success"] is False
    assert (result["error"]["code"], result["error"]["type"]) == (422, "content_policy_violation")


def test_no_provider_key_or_trace_in_job_answers_or_logs(
    generation, running, local_runner, lambda_context, emulators, monkeypatch, caplog
):
    stream = io.StringIO()  # the JSON log lines exactly as CloudWatch would receive them
    monkeypatch.setattr(generation.logger.registered_handler, "stream", stream)
    caplog.set_level(logging.DEBUG)
    emulators["flux"].sample_ttl_seconds = -1  # the store task fails: an error crosses the tasks
    job_id = post_flux(generation, lambda_context, "A fox [polls=0]")[1]["data"]["job_id"]
    assert local_runner.join(10)
    status, answer, _ = get_job(generation, lambda_context, job_id)
    assert status == 502
    logs = stream.getvalue()
    assert "task failed" in logs and "job failed" in logs
    text = json.dumps(answer) + logs + caplog.text  # caplog: every library, at DEBUG
    assert PROVIDER_KEYS["flux"] not in text and "Traceback" not in text
    assert "sig=" not in json.dumps(answer) + logs  # nor, in ours, the signed sample URL
