"""The job pipeline's task handlers (``job_tasks``), driven step by step as the job state
machine drives them, against the emulators, moto S3 and moto DynamoDB: the record after each
step, the claim (the provider is called at most once per job), the submit/poll/store loop of an
asynchronous provider, and every failure — a typed error, a crash mid-call, a timeout — ending
in a final failed record."""

from __future__ import annotations

import base64
import json
import traceback
from datetime import timedelta

import pytest

from image_common.errors import ProviderError
from image_service.job_records import JobRecord
from image_service.job_store import JobStore
from image_service.pipeline import JobPipeline
from image_service.providers import get_image_provider
from image_service.service import ImageService
from image_service.storage import ImageStore
from local.job_runner import LambdaTasks, LocalJobRunner
from tests.conftest import (
    PROVIDER_KEYS,
    TEST_BUCKET,
    RecordingJobRunner,
    data_url,
    image_bytes,
    start_job,
)

CUSTOMER = 123


@pytest.fixture
def runner() -> RecordingJobRunner:
    return RecordingJobRunner()


@pytest.fixture
def service(s3, emulators, settings, runner) -> ImageService:
    return ImageService(settings, ImageStore(settings), job_runner=runner)


@pytest.fixture
def jobs(settings) -> JobStore:
    return JobStore(settings.jobs_table)


def record(jobs: JobStore, job_id: str) -> JobRecord:
    found = jobs.get(job_id)
    assert found is not None
    return found


def started(service, runner, prompt: str = "A fox in the snow", **image) -> dict:
    data = start_job(service, prompt, **image)
    assert runner.started[-1]["job_id"] == data["job_id"]
    return runner.started[-1]


def failure(job: JobRecord) -> tuple:
    assert job.error is not None
    return job.status, job.error.status, job.error.type


def size(state: dict) -> int:
    return len(json.dumps(state).encode())


# --- a synchronous provider: one step makes the whole call ---------------------------------------


def test_run_makes_the_call_stores_the_image_and_finishes_the_record(
    service, runner, job_tasks, jobs, s3, emulators
):
    state = started(service, runner, "A lighthouse", model="gpt-image-1", quality="low")
    assert set(state) == {"job_id", "customer_id", "interval_seconds"}
    job = record(jobs, state["job_id"])
    assert (job.status, job.claimed_at, job.provider) == ("pending", None, "openai")
    assert emulators["openai"].requests == []  # nothing is paid for before the worker runs

    state = job_tasks.run(state, None)

    assert state["status"] == "Succeeded" and size(state) < 512
    job = record(jobs, state["job_id"])
    assert job.status == "succeeded" and job.claimed_at and job.finished_at
    assert job.result["job_id"] == job.job_id and "image_url" not in job.result  # keys only
    head = s3.head_object(Bucket=TEST_BUCKET, Key=job.result["image_key"])
    assert head["ContentType"] == "image/png"
    assert len(emulators["openai"].requests) == 1


def test_a_second_run_of_a_claimed_job_never_calls_the_provider(
    service, runner, job_tasks, jobs, emulators
):
    state = started(service, runner, "A lighthouse", model="gpt-image-1")
    job_tasks.run(state, None)
    again = job_tasks.run(state, None)  # a retried task, a duplicate execution
    assert again["status"] == "Succeeded"
    assert len(emulators["openai"].requests) == 1


def test_a_duplicate_waits_for_the_claim_holder_instead_of_calling_again(
    service, runner, settings, jobs, emulators
):
    state = started(service, runner, "A lighthouse", model="gpt-image-1")
    job = record(jobs, state["job_id"])
    claimed = jobs.save(job.changed(job.created_at, status="running", claimed_at=job.created_at))
    finished = {}

    def sleep(_seconds):  # while the duplicate waits, the claim holder finishes the job
        if not finished:
            finished["record"] = jobs.save(
                claimed.failed(ProviderError("The provider failed."), claimed.created_at)
            )

    pipeline = JobPipeline(settings, ImageStore(settings), jobs, get_image_provider, sleep=sleep)
    assert pipeline.run(state)["status"] == "Failed"
    assert emulators["openai"].requests == []


def test_a_claim_held_by_a_dead_worker_fails_at_the_deadline_without_paying_again(
    service, runner, settings, jobs, emulators
):
    state = started(service, runner, "A lighthouse", model="gpt-image-1")
    job = record(jobs, state["job_id"])
    long_ago = job.created_at - timedelta(seconds=job.budget_seconds + 60)
    jobs.save(job.changed(long_ago, status="running", claimed_at=long_ago))
    pipeline = JobPipeline(settings, ImageStore(settings), jobs, get_image_provider)
    assert pipeline.run(state)["status"] == "Failed"
    assert failure(record(jobs, state["job_id"])) == ("failed", 502, "provider_error")
    assert "not repeated" in record(jobs, state["job_id"]).error.message
    assert emulators["openai"].requests == []


def test_inline_answers_keep_their_bytes_in_s3_not_in_the_record_or_the_state(
    service, runner, job_tasks, jobs, s3
):
    state = job_tasks.run(started(service, runner, "A lighthouse", model="gpt-image-1",
                                  save_to_db=False), None)  # fmt: skip
    job = record(jobs, state["job_id"])
    key = job.result["inline_key"]
    assert key == f"jobs/{CUSTOMER}/{job.job_id}/output-0.png.b64"  # its base64 text
    assert len(job.model_dump_json()) < 4096 and size(state) < 512
    stored = s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read()
    assert base64.b64decode(stored, validate=True).startswith(b"\x89PNG")


def test_input_images_travel_by_key(service, runner, job_tasks, jobs, s3, emulators):
    big = data_url(image_bytes("png", 600, 600))
    state = started(service, runner, "Make it blue", model="gpt-image-1", input_images=[big])
    job = record(jobs, state["job_id"])
    (key,) = job.input.input_keys
    assert key == f"jobs/{CUSTOMER}/{job.job_id}/input-0.png"
    assert s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read() == image_bytes("png", 600, 600)
    assert job_tasks.run(state, None)["status"] == "Succeeded"
    (edit,) = emulators["openai"].requests
    assert edit.path.endswith("/images/edits")


# --- failures of a synchronous call ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "code", "error_type"),
    [("x [moderate]", 422, "content_policy_violation"),
     ("x [rate-limit]", 429, "rate_limited"),
     ("x [server-error]", 502, "provider_error"),
     ("x [garbage]", 502, "provider_error")],
)  # fmt: skip
def test_a_typed_provider_error_is_the_jobs_final_error(
    service, runner, job_tasks, jobs, prompt, code, error_type
):
    state = job_tasks.run(started(service, runner, prompt, model="gpt-image-1"), None)
    assert state["status"] == "Failed"
    assert failure(record(jobs, state["job_id"])) == ("failed", code, error_type)


def test_the_budget_is_the_provider_calls_timeout(
    service, runner, settings, jobs, emulator_over_http
):
    """Compressed time: a 1 s budget against a provider that answers after 3 s."""
    emulator = emulator_over_http("openai")
    tight = settings.model_copy(update={"job_max_budget_seconds": 1.0})
    service = ImageService(tight, ImageStore(tight), job_runner=runner)
    state = started(service, runner, "A slow one [delay=3]", model="gpt-image-1")
    assert record(jobs, state["job_id"]).budget_seconds == 1.0
    pipeline = JobPipeline(tight, ImageStore(tight), jobs, get_image_provider)
    assert pipeline.run(state)["status"] == "Failed"
    job = record(jobs, state["job_id"])
    assert failure(job) == ("failed", 504, "provider_timeout")
    assert len(emulator.requests) == 1


def test_a_worker_killed_mid_call_ends_in_a_final_failed_record(
    service, runner, settings, jobs, emulators, monkeypatch
):
    """The worker dies after the provider received the call (as Lambda ends a crashed or
    timed-out invocation): the workflow's catch records the failure, and the job never stays
    running — nor is the provider called again."""
    state = started(service, runner, "A lighthouse", model="gpt-image-1")
    provider = get_image_provider("openai")

    def killed(request):
        provider.generate(request)  # the provider got (and billed) the call ...
        raise SystemExit("the runtime exited")  # ... and the worker died before recording it

    pipeline = JobPipeline(settings, ImageStore(settings), jobs, lambda _: _Killed(killed))
    local = LocalJobRunner(pipeline, background=False)
    with pytest.raises(SystemExit):
        pipeline.run(state)
    assert record(jobs, state["job_id"]).status == "running"  # what the crash left behind
    # What the state machine does next: Catch States.ALL → RecordFailure, then Notify.
    out = local._record_failure(
        state, "Runtime.ExitError", json.dumps({"errorType": "Runtime.ExitError"})
    )
    assert out["status"] == "Failed"
    assert failure(record(jobs, state["job_id"])) == ("failed", 500, "internal_error")
    assert pipeline.run(state)["status"] == "Failed"  # a replay: final, no second call
    assert len(emulators["openai"].requests) == 1


class _Killed:
    name = "openai"

    def __init__(self, generate) -> None:
        self.generate = generate


def test_a_worker_timeout_is_recorded_as_a_504(service, runner, job_tasks, jobs):
    state = started(service, runner, "A lighthouse", model="gpt-image-1")
    failed = job_tasks.record_failure(
        state | {"error": {"Error": "Sandbox.Timedout", "Cause": ""}}, None
    )
    assert failed["status"] == "Failed"
    assert failure(record(jobs, state["job_id"])) == ("failed", 504, "provider_timeout")


@pytest.mark.parametrize(
    "error", ["Lambda.TooManyRequestsException", "Lambda.SnapStartNotReadyException"]
)
def test_a_worker_lambda_never_ran_fails_the_job_as_a_429_to_try_again(
    service, runner, job_tasks, jobs, emulators, error
):
    """Throttled, or its SnapStart version still Inactive after the workflow's retries: the
    provider was never called, so the caller is told to try again — not a 500."""
    state = started(service, runner, "A lighthouse", model="gpt-image-1")
    cause = json.dumps({"errorMessage": "Lambda is initializing your function.", "errorType": ""})
    job_tasks.record_failure(state | {"error": {"Error": error, "Cause": cause}}, None)
    job = record(jobs, state["job_id"])
    assert failure(job) == ("failed", 429, "rate_limited")
    assert job.error.retry_after == 30 and "initializing" not in job.error.message
    assert emulators["openai"].requests == []


def test_record_failure_never_overwrites_a_finished_job(service, runner, job_tasks, jobs):
    state = job_tasks.run(started(service, runner, "A lighthouse", model="gpt-image-1"), None)
    job_tasks.record_failure(state | {"error": {"Error": "States.Timeout", "Cause": ""}}, None)
    assert record(jobs, state["job_id"]).status == "succeeded"


@pytest.mark.parametrize(
    ("error", "cause", "status", "error_type", "message"),
    [("StorageError", json.dumps({"errorMessage": "The image could not be stored.",
                                  "errorType": "StorageError", "stackTrace": ["  File x"]}),
      502, "storage_error", "could not be stored"),
     ("KeyError", json.dumps({"errorMessage": "'x' at /var/task/x.py", "errorType": "KeyError"}),
      500, "internal_error", "unexpected")],
)  # fmt: skip
def test_record_failure_keeps_safe_messages_only(
    service, runner, job_tasks, jobs, error, cause, status, error_type, message
):
    state = started(service, runner, "A lighthouse", model="gpt-image-1")
    job_tasks.record_failure(state | {"error": {"Error": error, "Cause": cause}}, None)
    job = record(jobs, state["job_id"])
    assert failure(job) == ("failed", status, error_type)
    assert message in job.error.message and "/var/task" not in job.error.message


def test_a_task_error_leaves_the_lambda_with_no_trace_of_the_code(
    service, runner, job_tasks, jobs, monkeypatch
):
    state = started(service, runner, "A lighthouse", model="gpt-image-1")
    monkeypatch.setattr(JobPipeline, "run", lambda self, s: {}["boom"])
    with pytest.raises(Exception) as raised:
        job_tasks.run(state, None)
    assert type(raised.value).__name__ == "InternalError"
    frames = {frame.filename.rsplit("/", 1)[-1] for frame in traceback.extract_tb(raised.tb)}
    assert frames <= {"job_tasks.py", "test_job_pipeline.py"}


# --- an asynchronous provider: submit, poll, store ------------------------------------------------


def test_flux_submits_once_polls_and_stores(service, runner, job_tasks, jobs, s3, emulators):
    bfl = emulators["flux"]
    state = started(service, runner, "A fox [polls=2]", seed=11)
    state = job_tasks.run(state, None)
    assert state["status"] == "Submitted"
    job = record(jobs, state["job_id"])
    assert job.status == "running" and job.provider_task_id and job.submitted_at
    assert job.cost_usd == pytest.approx(0.04)
    assert len(bfl.submissions()) == 1 and bfl.submissions()[-1].json()["seed"] == 11
    for polls in (1, 2):
        state = job_tasks.poll(state, None)
        assert state["status"] == "Pending" and record(jobs, state["job_id"]).polls == polls
    state = job_tasks.poll(state, None)
    assert state["status"] == "Ready" and state["result_url"] and state["seed"] == 11
    state = job_tasks.store(state, None)
    assert state["status"] == "Succeeded" and "result_url" not in state and size(state) < 512
    job = record(jobs, state["job_id"])
    assert job.status == "succeeded" and job.result["seed"] == 11
    assert (
        s3.head_object(Bucket=TEST_BUCKET, Key=job.result["image_key"])["ContentType"]
        == "image/jpeg"
    )
    assert job_tasks.run(state, None)["status"] == "Succeeded"  # replayed: no second submit
    assert len(bfl.submissions()) == 1
    deliveries = [r for r in bfl.requests if r.path.startswith("/delivery/")]
    assert len(deliveries) == 1 and "x-key" not in deliveries[0].headers
    assert all(r.headers.get("x-key") == PROVIDER_KEYS["flux"] for r in bfl.requests
               if not r.path.startswith("/delivery/"))  # fmt: skip


@pytest.mark.parametrize(
    ("prompt", "code", "error_type"),
    [("A fox [moderate]", 422, "content_policy_violation"),
     ("A fox [error] [polls=1]", 502, "provider_error"),
     ("A fox [lost]", 502, "provider_error")],
)  # fmt: skip
def test_a_failed_poll_writes_the_final_record(
    service, runner, job_tasks, jobs, prompt, code, error_type
):
    state = job_tasks.run(started(service, runner, prompt), None)
    for _ in range(3):
        state = job_tasks.poll(state, None)
        if state["status"] != "Pending":
            break
    assert state["status"] == "Failed"
    assert failure(record(jobs, state["job_id"])) == ("failed", code, error_type)


def test_a_flux_task_past_its_budget_times_out(service, runner, job_tasks, jobs):
    state = job_tasks.run(started(service, runner, "A fox [pending]"), None)
    job = record(jobs, state["job_id"])
    long_ago = job.submitted_at - timedelta(seconds=job.budget_seconds + 1)
    jobs.save(job.changed(job.updated_at, submitted_at=long_ago))
    assert job_tasks.poll(state, None)["status"] == "Failed"
    job = record(jobs, state["job_id"])
    assert failure(job) == ("failed", 504, "provider_timeout")


def test_a_rate_limited_submit_fails_the_job_with_429(service, runner, job_tasks, jobs):
    state = job_tasks.run(started(service, runner, "A fox [rate-limit]"), None)
    assert state["status"] == "Failed"
    job = record(jobs, state["job_id"])
    assert failure(job) == ("failed", 429, "rate_limited") and job.error.retry_after == 3


def test_an_expired_result_url_fails_the_job_and_stores_nothing(
    service, runner, job_tasks, jobs, s3, emulators
):
    emulators["flux"].sample_ttl_seconds = -1
    state = job_tasks.poll(job_tasks.run(started(service, runner, "A fox [polls=0]"), None), None)
    assert job_tasks.store(state, None)["status"] == "Failed"
    job = record(jobs, state["job_id"])
    assert failure(job) == ("failed", 502, "provider_error") and "HTTP 403" in job.error.message
    assert not s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=f"customers/{CUSTOMER}/").get(
        "Contents"
    )


# --- the local runner: the state machine's order, in-process -------------------------------------


def test_the_local_runner_runs_a_flux_job_to_the_end(service, runner, job_tasks, jobs, settings):
    state = started(service, runner, "A fox [polls=2]")
    local = LocalJobRunner(LambdaTasks(job_tasks), sleep=lambda _: None)
    out = local.run(dict(state))
    assert out["status"] == "Succeeded" and out["webhook"] == {"next": "Done"}
    assert record(jobs, state["job_id"]).polls == 3


def test_the_local_runner_records_a_crashed_step(service, runner, job_tasks, jobs, monkeypatch):
    state = started(service, runner, "A lighthouse", model="gpt-image-1")
    monkeypatch.setattr(JobPipeline, "run", lambda self, s: 1 / 0)
    out = LocalJobRunner(LambdaTasks(job_tasks)).run(dict(state))
    assert out["status"] == "Failed"
    assert failure(record(jobs, state["job_id"])) == ("failed", 500, "internal_error")
