"""The Flux workflow's task handlers (``flux_tasks``), driven step by step as the state machine
drives them, against the BFL emulator and moto S3: the job record after each step, idempotent
submit, the sample download, and every failure path ending in a final record."""

from __future__ import annotations

import json
import traceback
from datetime import datetime, timedelta

import pytest

from image_common.errors import ProviderError, ProviderRateLimited
from image_service.job_workflow import JobWorkflow
from image_service.jobs import JobStore, input_key, record_key
from image_service.service import ImageService
from image_service.storage import ImageStore
from tests.conftest import (
    PROVIDER_KEYS,
    TEST_BUCKET,
    RecordingJobRunner,
    data_url,
    image_bytes,
    start_flux_job,
)

CUSTOMER = 123


@pytest.fixture
def runner() -> RecordingJobRunner:
    return RecordingJobRunner()


@pytest.fixture
def service(s3, emulators, settings, runner) -> ImageService:
    return ImageService(settings, ImageStore(settings), job_runner=runner)


@pytest.fixture
def bfl(emulators):
    return emulators["flux"]


def record(s3, job_id: str) -> dict:
    body = s3.get_object(Bucket=TEST_BUCKET, Key=record_key(CUSTOMER, job_id))["Body"].read()
    return json.loads(body)


def started(service, runner, prompt: str = "A fox in the snow [polls=2]", **image) -> dict:
    data = start_flux_job(service, prompt, **image)
    assert runner.started[-1]["job_id"] == data["job_id"]
    return runner.started[-1]


def ready(flux_tasks, state: dict) -> dict:
    """Submit, then the one poll after which a ``[polls=0]`` task is ready."""
    return flux_tasks.poll(flux_tasks.submit(state, None), None)


def failure(job: dict) -> tuple:
    return job["status"], job["error"]["status"], job["error"]["type"]


def state_size(state: dict) -> int:
    return len(json.dumps(state).encode())


# --- the happy path, step by step -------------------------------------------------------------


def test_the_job_record_after_each_step(service, runner, flux_tasks, s3, bfl):
    state = started(service, runner, seed=11)
    assert set(state) == {"job_id", "customer_id", "request", "interval_seconds", "budget_seconds"}
    assert state["request"] == {"provider": "flux", "model": "flux-pro-1.1"}
    job = record(s3, state["job_id"])
    assert (job["status"], job["provider_task_id"], job["polls"]) == ("pending", None, 0)
    assert job["budget_seconds"] == 60 and job["interval_seconds"] == 1
    assert bfl.submissions() == []  # nothing is paid for before the workflow runs

    state = flux_tasks.submit(state, None)
    job = record(s3, state["job_id"])
    assert job["status"] == "running" and job["provider_task_id"]
    assert job["cost_usd"] == pytest.approx(0.04) and job["submitted_at"]
    assert state["polling_url"] == job["polling_url"]
    submitted_at = datetime.fromisoformat(job["submitted_at"])
    assert datetime.fromisoformat(state["submitted_at"]) == submitted_at
    assert bfl.submissions()[-1].json()["seed"] == 11

    for expected_polls in (1, 2):
        state = flux_tasks.poll(state, None)
        assert state["status"] == "Pending"
        job = record(s3, state["job_id"])
        assert (job["status"], job["polls"], job["provider_status"]) == (
            "running", expected_polls, "Pending")  # fmt: skip

    state = flux_tasks.poll(state, None)
    assert state["status"] == "Ready" and state["sample_url"] and state["seed"] == 11

    state = flux_tasks.store(state, None)
    job = record(s3, state["job_id"])
    assert job["status"] == "succeeded" and job["finished_at"] and job["error"] is None
    data = job["result"]
    assert data["job_id"] == state["job_id"]
    assert (data["provider"], data["model"], data["seed"]) == ("flux", "flux-pro-1.1", 11)
    assert data["cost_usd"] == pytest.approx(0.04)
    assert data["image_key"].startswith(f"customers/{CUSTOMER}/assets/image/")
    assert data["image_url"].startswith("https://") and data["content_type"] == "image/jpeg"
    stored = s3.get_object(Bucket=TEST_BUCKET, Key=data["image_key"])
    assert stored["ContentType"] == "image/jpeg" and stored["Metadata"]["provider"] == "flux"
    assert state["image_key"] == data["image_key"] and "sample_url" not in state
    assert state_size(state) < 1024  # keys and small JSON only


def test_the_sample_is_fetched_without_the_x_key_header(service, runner, flux_tasks, bfl):
    flux_tasks.store(ready(flux_tasks, started(service, runner, "A fox [polls=0]")), None)
    deliveries = [r for r in bfl.requests if r.path.startswith("/delivery/")]
    assert len(deliveries) == 1 and "x-key" not in deliveries[0].headers
    assert all(r.headers.get("x-key") == PROVIDER_KEYS["flux"] for r in bfl.requests
               if not r.path.startswith("/delivery/"))  # fmt: skip
    assert bfl.key_leaks == []


def test_input_images_and_inline_results_stay_out_of_the_state(service, runner, flux_tasks, s3):
    big = data_url(image_bytes("png", 600, 600))
    state = started(
        service, runner, "Make it blue [polls=0]", model="flux-kontext-pro", input_images=[big],
        save_to_db=False,
    )  # fmt: skip
    job_input = json.loads(
        s3.get_object(Bucket=TEST_BUCKET, Key=input_key(CUSTOMER, state["job_id"]))["Body"].read()
    )
    assert job_input["body"]["input_image"]  # the image waits in S3, not in the state
    for step in (flux_tasks.submit, flux_tasks.poll, flux_tasks.store):
        state = step(state, None)
        assert state_size(state) < 2048
    result = record(s3, state["job_id"])["result"]
    assert result["image_url"].startswith("data:image/png;base64,")  # kontext's default format
    assert state["image_key"] is None


# --- idempotency ------------------------------------------------------------------------------


def test_a_repeated_submit_does_not_pay_twice(service, runner, flux_tasks, bfl):
    state = started(service, runner)
    first = flux_tasks.submit(state, None)
    second = flux_tasks.submit(state, None)  # e.g. Express ran the execution again
    assert len(bfl.submissions()) == 1
    assert second["polling_url"] == first["polling_url"]
    assert second["submitted_at"] == first["submitted_at"]


def test_a_concurrent_duplicate_waits_for_the_first_submission(service, runner, settings, bfl):
    state = started(service, runner)
    jobs = JobStore(ImageStore(settings))
    assert jobs.claim_submission(CUSTOMER, state["job_id"])  # the first execution is submitting
    first_done = {}

    def sleep(_seconds):  # while the duplicate waits, the first execution records its task
        if not first_done:
            current = jobs.get(CUSTOMER, state["job_id"])
            first_done["record"] = current.model_copy(
                update={"status": "running", "provider_task_id": "t-1",
                        "polling_url": "https://flux.emulator.test/v1/get_result?id=t-1"}
            )  # fmt: skip
            jobs.save(first_done["record"])

    duplicate = JobWorkflow(service, jobs, sleep=sleep).submit(state)
    assert duplicate["provider_task_id"] == "t-1"
    assert duplicate["polling_url"].endswith("?id=t-1")
    assert bfl.submissions() == []  # the duplicate paid for nothing


def test_a_claim_with_no_task_fails_rather_than_paying_again(service, runner, settings, bfl):
    state = started(service, runner)
    jobs = JobStore(ImageStore(settings))
    jobs.claim_submission(CUSTOMER, state["job_id"])  # a crashed first execution
    with pytest.raises(ProviderError, match="not repeated"):
        JobWorkflow(service, jobs, sleep=lambda _: None).submit(state)
    assert bfl.submissions() == []


def test_store_twice_keeps_one_image(service, runner, flux_tasks, s3, bfl):
    state = ready(flux_tasks, started(service, runner, "A fox [polls=0]"))
    first = flux_tasks.store(state, None)
    second = flux_tasks.store(state, None)
    assert first["image_key"] == second["image_key"]
    assert len([r for r in bfl.requests if r.path.startswith("/delivery/")]) == 1


# --- failures: each ends in a final record ----------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "status", "code", "error_type"),
    [("A fox [moderate]", "Moderated", 422, "content_policy_violation"),
     ("A fox [moderate-output] [polls=1]", "Moderated", 422, "content_policy_violation"),
     ("A fox [error] [polls=1]", "Error", 502, "provider_error"),
     ("A fox [lost]", "Error", 502, "provider_error")],
)  # fmt: skip
def test_a_failed_poll_writes_the_final_record(
    service, runner, flux_tasks, s3, prompt, status, code, error_type
):
    state = flux_tasks.submit(started(service, runner, prompt), None)
    for _ in range(3):
        state = flux_tasks.poll(state, None)
        if state["status"] != "Pending":
            break
    assert state["status"] == status
    job = record(s3, state["job_id"])
    assert job["status"] == "failed" and job["finished_at"]
    assert (job["error"]["status"], job["error"]["type"]) == (code, error_type)
    # The state machine then routes to RecordFailure, which keeps the precise error.
    caught = {"Error": "Flux.ProviderError", "Cause": "x"}
    flux_tasks.record_failure(state | {"error": caught}, None)
    assert record(s3, state["job_id"])["error"]["type"] == error_type


def test_a_job_past_its_budget_times_out(service, runner, flux_tasks, s3):
    state = flux_tasks.submit(started(service, runner, "A fox [pending]"), None)
    assert flux_tasks.poll(state, None)["status"] == "Pending"
    long_ago = (datetime.fromisoformat(state["submitted_at"]) - timedelta(seconds=61)).isoformat()
    state = flux_tasks.poll(state | {"submitted_at": long_ago}, None)
    assert state["status"] == "TimedOut"
    job = record(s3, state["job_id"])
    assert failure(job) == ("failed", 504, "provider_timeout")
    assert "60 s" in job["error"]["message"]


def test_the_budget_is_elapsed_time_from_the_input_not_a_count_of_polls(
    service, runner, flux_tasks, monkeypatch
):
    state = flux_tasks.submit(started(service, runner, "A fox [pending]"), None)
    state = state | {"budget_seconds": 2}
    submitted = datetime.fromisoformat(state["submitted_at"])
    workflow = flux_tasks.workflow()
    monkeypatch.setattr(workflow, "clock", lambda: submitted + timedelta(seconds=1.9))
    statuses = [flux_tasks.poll(state, None)["status"] for _ in range(5)]
    assert statuses == ["Pending"] * 5  # many polls, but within the budget
    monkeypatch.setattr(workflow, "clock", lambda: submitted + timedelta(seconds=2))
    assert flux_tasks.poll(state, None)["status"] == "TimedOut"


def test_a_failed_submit_writes_the_typed_error_and_raises_it(service, runner, flux_tasks, s3):
    state = started(service, runner, "A fox [rate-limit]")
    with pytest.raises(ProviderRateLimited) as raised:
        flux_tasks.submit(state, None)
    job = record(s3, state["job_id"])
    assert failure(job) == ("failed", 429, "rate_limited") and job["error"]["retry_after"] == 3
    # No trace of the service's code rides out of the Lambda with the error.
    frames = {frame.filename.rsplit("/", 1)[-1] for frame in traceback.extract_tb(raised.tb)}
    assert frames <= {"flux_tasks.py", "test_flux_tasks.py"}


def test_an_expired_sample_url_fails_the_job_with_502(service, runner, flux_tasks, s3, bfl):
    bfl.sample_ttl_seconds = -1
    state = ready(flux_tasks, started(service, runner, "A fox [polls=0]"))
    with pytest.raises(ProviderError):
        flux_tasks.store(state, None)
    job = record(s3, state["job_id"])
    assert (job["status"], job["error"]["type"]) == ("failed", "provider_error")
    assert "HTTP 403" in job["error"]["message"]
    images = s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=f"customers/{CUSTOMER}/")
    assert not images.get("Contents")


@pytest.mark.parametrize(
    ("error", "cause", "status", "error_type", "message"),
    [("States.Timeout", "", 504, "provider_timeout", "ran out of time"),
     ("StorageError", json.dumps({"errorMessage": "The image could not be stored.",
                                  "errorType": "StorageError", "stackTrace": ["  File x"]}),
      502, "storage_error", "could not be stored"),
     ("KeyError", json.dumps({"errorMessage": "'sample_url' at /var/task/x.py",
                              "errorType": "KeyError"}), 500, "internal_error", "unexpectedly")],
)  # fmt: skip
def test_record_failure_writes_the_final_state_when_a_task_died(
    service, runner, flux_tasks, s3, error, cause, status, error_type, message
):
    state = flux_tasks.submit(started(service, runner), None)
    out = flux_tasks.record_failure(state | {"error": {"Error": error, "Cause": cause}}, None)
    assert out["status"] == "failed"
    job = record(s3, state["job_id"])
    assert failure(job) == ("failed", status, error_type)
    assert message in job["error"]["message"]
    assert "/var/task" not in job["error"]["message"] and "File" not in job["error"]["message"]


def test_record_failure_never_overwrites_a_finished_job(service, runner, flux_tasks, s3):
    state = ready(flux_tasks, started(service, runner, "A fox [polls=0]"))
    flux_tasks.store(state, None)
    flux_tasks.record_failure(state | {"error": {"Error": "States.Timeout", "Cause": ""}}, None)
    assert record(s3, state["job_id"])["status"] == "succeeded"


def test_poll_of_a_finished_job_does_not_call_the_provider_again(service, runner, flux_tasks, bfl):
    state = flux_tasks.submit(started(service, runner, "A fox [moderate]"), None)
    assert flux_tasks.poll(state, None)["status"] == "Moderated"
    polls = len(bfl.polls())
    assert flux_tasks.poll(state, None)["status"] == "Moderated"  # a replayed execution
    assert len(bfl.polls()) == polls
