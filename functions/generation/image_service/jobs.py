"""Jobs: generations a provider answers asynchronously (Flux), run as a workflow.

- ``JobRecord`` — the job's state, kept in the bucket at ``jobs/{customer_id}/{job_id}.json``.
  Express executions cannot be described afterwards, so this record, not Step Functions, is
  what ``GET /image/jobs/{id}`` and a waiting direct invoke read.
- ``JobService`` — starts a job (the 202 path) and reads or waits for its record.
- ``JobWorkflow`` — the bodies of the workflow's tasks (submit, poll, store, record_failure);
  ``flux_tasks.py`` exposes them as Lambda entry points. Each takes the small job state and
  returns it extended; images go straight to S3, never into the state (256 KB limit).
- ``JobRunner`` — how a job is started: ``StepFunctionsJobRunner`` (deployed) or
  ``LocalJobRunner`` (the local stack: the same tasks, same order, interval and budget, in a
  background thread). ``JOB_RUNNER=local`` selects the latter.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, Protocol

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict

from image_common import errors as error_types
from image_common.errors import (
    ContentPolicyViolation,
    ImageServiceError,
    InternalError,
    NotFound,
    ProviderError,
    ProviderNotConfigured,
    ProviderTimeout,
    StorageError,
    sanitize_message,
)
from image_common.settings import ServiceSettings
from image_service.providers.base import (
    GeneratedImage,
    GenerationSettings,
    ProviderRequest,
    ProviderResult,
    SettingWarning,
)
from image_service.registry import MODELS
from image_service.storage import ImageStore

if TYPE_CHECKING:
    from image_service.service import ImageService, PreparedGeneration

logger = Logger(child=True)

JobStatus = Literal["pending", "running", "succeeded", "failed"]
FINAL_STATUSES = frozenset({"succeeded", "failed"})
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
# After its budget a job still needs a wait, a last poll and the store task (download + S3).
FINALIZE_GRACE_SECONDS = 30.0
SUBMIT_CLAIM_WAIT_SECONDS = 10.0  # how long a duplicate execution waits for the first's task id

# The workflow's vocabulary: must match infra/flux_definition.py (a test checks it does).
STATUS_READY, STATUS_PENDING = "Ready", "Pending"
STATUS_MODERATED, STATUS_ERROR, STATUS_TIMED_OUT = "Moderated", "Error", "TimedOut"
ERROR_MODERATED = "Flux.Moderated"
ERROR_PROVIDER = "Flux.ProviderError"
ERROR_TIMEOUT = "Flux.Timeout"
_FAILURE_ERRORS = {
    STATUS_MODERATED: ERROR_MODERATED,
    STATUS_ERROR: ERROR_PROVIDER,
    STATUS_TIMED_OUT: ERROR_TIMEOUT,
}


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- the record -------------------------------------------------------------------------------


class JobError(BaseModel):
    """A failed job's typed error: what the caller gets, as it would for a synchronous call."""

    status: int
    type: str
    message: str
    retry_after: int | None = None

    @classmethod
    def of(cls, error: ImageServiceError) -> JobError:
        return cls(
            status=error.status,
            type=error.type,
            message=error.message,
            retry_after=error.retry_after,
        )

    def to_exception(self, job_id: str) -> ImageServiceError:
        error = ImageServiceError(
            self.message,
            retry_after=self.retry_after,
            details={"job_id": job_id, "status": "failed"},
        )
        error.status, error.type = self.status, self.type  # the stored type, as raised
        return error


class JobRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    job_id: str
    customer_id: int
    status: JobStatus
    provider: str
    model: str
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    interval_seconds: float
    budget_seconds: float
    provider_task_id: str | None = None
    polling_url: str | None = None
    provider_status: str | None = None
    progress: float | None = None
    polls: int = 0
    cost_usd: float | None = None
    result: dict[str, Any] | None = None  # the ``data`` of the final 200 answer
    error: JobError | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def deadline(self) -> datetime:
        """When a job with no final record is over: budget plus time to store the image."""
        return self.created_at + timedelta(seconds=self.budget_seconds + FINALIZE_GRACE_SECONDS)

    @property
    def status_url(self) -> str:
        return status_url(self.job_id)

    def as_of(self, now: datetime) -> JobRecord:
        """The job as a reader sees it: past its deadline with no final record, it has failed."""
        if self.final or now <= self.deadline:
            return self
        timeout = ProviderTimeout(
            f"The job did not finish within its {self.budget_seconds:g} s budget."
        )
        return self.model_copy(
            update={"status": "failed", "error": JobError.of(timeout), "finished_at": self.deadline}
        )

    def failed(self, error: ImageServiceError, now: datetime) -> JobRecord:
        return self.model_copy(
            update={
                "status": "failed",
                "error": JobError.of(error),
                "updated_at": now,
                "finished_at": now,
            }
        )

    def accepted(self) -> dict[str, Any]:
        """The 202 answer's ``data``."""
        return {
            "job_id": self.job_id,
            "status": self.status,
            "status_url": self.status_url,
            "provider": self.provider,
            "model": self.model,
        }

    def progress_view(self) -> dict[str, Any]:
        """A job that is not finished, as ``GET /image/jobs/{id}`` shows it."""
        view = self.accepted() | {
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "polls": self.polls,
        }
        if self.submitted_at:
            view["submitted_at"] = self.submitted_at.isoformat()
        if self.progress is not None:
            view["progress"] = self.progress
        return view

    def document(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def status_url(job_id: str) -> str:
    # Relative to the API's own origin, which only the caller knows for sure.
    return f"/image/jobs/{job_id}"


def is_job_accepted(data: dict[str, Any]) -> bool:
    """Whether a generate answer's ``data`` is a started job (202) rather than an image (200)."""
    return "status_url" in data and data.get("status") == "pending"


def new_job_id() -> str:
    return uuid.uuid4().hex  # also the execution name: [0-9a-f]{32} fits its 80-char alphabet


# --- the store --------------------------------------------------------------------------------


def record_key(customer_id: int, job_id: str) -> str:
    return f"jobs/{customer_id}/{job_id}.json"


def input_key(customer_id: int, job_id: str) -> str:
    return f"jobs/{customer_id}/{job_id}.input.json"


def claim_key(customer_id: int, job_id: str) -> str:
    return f"jobs/{customer_id}/{job_id}.submitted"


class JobStore:
    """Job records and job inputs in the image bucket. The job's customer is part of every key,
    so a customer can only ever address its own jobs."""

    def __init__(self, images: ImageStore) -> None:
        self.images = images

    def create(self, record: JobRecord, job_input: dict[str, Any]) -> None:
        self.images.put_json(input_key(record.customer_id, record.job_id), job_input)
        self.save(record)

    def save(self, record: JobRecord) -> None:
        self.images.put_json(record_key(record.customer_id, record.job_id), record.document())

    def get(self, customer_id: int, job_id: str) -> JobRecord | None:
        if not JOB_ID.match(job_id):
            return None
        document = self.images.get_json(record_key(customer_id, job_id))
        return None if document is None else JobRecord.model_validate(document)

    def read_input(self, customer_id: int, job_id: str) -> dict[str, Any]:
        document = self.images.get_json(input_key(customer_id, job_id))
        if document is None:
            raise StorageError("The job's input could not be found.")
        return document

    def claim_submission(self, customer_id: int, job_id: str) -> bool:
        """Create the job's submission marker unless it exists (S3 conditional write): only the
        first of several executions of one job may call the provider, so a job is paid once."""
        client = self.images.client
        try:
            client.put_object(
                Bucket=self.images.bucket,
                Key=claim_key(customer_id, job_id),
                Body=json.dumps({"claimed_at": utcnow().isoformat()}).encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except client.exceptions.ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return False
            raise StorageError("The job's submission could not be recorded.") from None
        except Exception:
            raise StorageError("The job's submission could not be recorded.") from None
        return True


# --- starting, reading and waiting ------------------------------------------------------------


class JobRunner(Protocol):
    def start(self, execution_input: dict[str, Any]) -> None:
        """Start the workflow for one job; starting the same job twice runs it once."""
        ...


class JobService:
    def __init__(
        self,
        settings: ServiceSettings,
        jobs: JobStore,
        runner: JobRunner,
        provider_for: Callable[[str], Any],
        *,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.runner = runner
        self.provider_for = provider_for
        self.clock = clock
        self.sleep = sleep

    def start(self, prepared: PreparedGeneration) -> JobRecord:
        """Record the job and its input, then start the workflow. The request was validated and
        its input images loaded already, so a bad request is a 400 now, not a failed job later."""
        request, model = prepared.request, prepared.model
        provider_request, warnings = prepared.provider_request, list(prepared.warnings)
        if provider_request.settings.n > 1:
            warnings.append(
                SettingWarning(
                    "adjusted-setting",
                    "n",
                    f"{model.id} runs as a job that makes one image; "
                    f"n={provider_request.settings.n} was sent as 1.",
                )
            )
            provider_request = replace(
                provider_request, settings=replace(provider_request.settings, n=1)
            )
        body = self.provider_for(model.provider).build_body(provider_request)
        now = self.clock()
        record = JobRecord(
            job_id=new_job_id(),
            customer_id=request.customer_id,
            status="pending",
            provider=model.provider,
            model=model.id,
            created_at=now,
            updated_at=now,
            interval_seconds=self.settings.job_poll_interval_seconds,
            budget_seconds=self.settings.job_budget_seconds,
        )
        job_input = {
            "provider": model.provider,
            "model": model.id,
            "body": body.body,
            "sent": body.sent,
            # What ``deliver`` needs to shape the same ``data`` as a synchronous answer.
            "request": request.model_dump(
                mode="json", exclude={"settings": {"image": {"input_images", "mask"}}}
            ),
            "settings": asdict(provider_request.settings),
            "warnings": [w.to_dict() for w in warnings + body.warnings],
        }
        self.jobs.create(record, job_input)
        try:
            self.runner.start(execution_input(record))
        except ImageServiceError as error:
            self.jobs.save(record.failed(error, self.clock()))
            raise
        logger.info(
            "job started",
            extra={"job_id": record.job_id, "model": model.id, "customer_id": record.customer_id},
        )
        return record

    def get(self, customer_id: int, job_id: str) -> JobRecord:
        record = self.jobs.get(customer_id, job_id)
        if record is None:
            raise NotFound("No such job.")
        return record.as_of(self.clock())

    def wait(self, record: JobRecord, *, timeout_seconds: float) -> JobRecord:
        """Read the record every poll interval until it is final (a direct invoke waits)."""
        give_up = min(record.deadline, self.clock() + timedelta(seconds=timeout_seconds))
        while True:
            current = self.get(record.customer_id, record.job_id)
            if current.final:
                return current
            if self.clock() >= give_up:
                raise ProviderTimeout("The image was not ready in time.")
            self.sleep(self.settings.job_poll_interval_seconds)


def execution_input(record: JobRecord) -> dict[str, Any]:
    """The workflow's input: ids and small JSON only."""
    return {
        "job_id": record.job_id,
        "customer_id": record.customer_id,
        "request": {"provider": record.provider, "model": record.model},
        "interval_seconds": record.interval_seconds,
        "budget_seconds": record.budget_seconds,
    }


def final_answer(record: JobRecord) -> dict[str, Any]:
    """A finished job's ``data``, or its typed error raised."""
    if record.status == "succeeded" and record.result is not None:
        return record.result
    if record.error is not None:
        raise record.error.to_exception(record.job_id)
    raise InternalError()


# --- the workflow's tasks ---------------------------------------------------------------------


class JobWorkflow:
    """The task bodies the state machine (or the local runner) calls, in this order:
    submit → (wait → poll)* → store, or record_failure on any failure."""

    def __init__(
        self,
        service: ImageService,
        jobs: JobStore,
        *,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.service = service
        self.jobs = jobs
        self.clock = clock
        self.sleep = sleep

    def submit(self, state: dict[str, Any]) -> dict[str, Any]:
        """Submit once per job: a repeated execution finds the task id and does not pay again."""
        record = self._record(state)
        if record.provider_task_id or record.final:
            return _submitted(state, record)
        if not self.jobs.claim_submission(record.customer_id, record.job_id):
            return _submitted(state, self._await_submission(record))
        job_input = self.jobs.read_input(record.customer_id, record.job_id)
        provider = self.service.provider_for(record.provider)
        try:
            submission = provider.submit(record.model, job_input["body"])
        except ImageServiceError as error:
            self._fail(record, error)
            raise
        now = self.clock()
        record = record.model_copy(
            update={
                "status": "running",
                "provider_task_id": submission.task_id,
                "polling_url": submission.polling_url,
                "submitted_at": now,
                "updated_at": now,
                "cost_usd": submission.cost_usd,
            }
        )
        self.jobs.save(record)
        return _submitted(state, record)

    def poll(self, state: dict[str, Any]) -> dict[str, Any]:
        record = self._record(state)
        if record.final:
            return state | {"status": _status_of_final(record)}
        provider = self.service.provider_for(record.provider)
        try:
            result = provider.poll(record.provider_task_id or "", record.polling_url or "")
        except ImageServiceError as error:
            self._fail(record, error)
            return state | {"status": STATUS_ERROR}
        now = self.clock()
        record = record.model_copy(
            update={
                "status": "running",
                "polls": record.polls + 1,
                "provider_status": result.provider_status,
                "progress": result.progress,
                "updated_at": now,
            }
        )
        if result.status == STATUS_READY:
            self.jobs.save(record)
            ready = {"sample_url": result.sample_url, "seed": result.seed}
            return state | {"status": STATUS_READY} | ready
        error = result.error()
        if error is not None:
            self._fail(record, error)
            return state | {"status": result.status}
        budget = float(state.get("budget_seconds", record.budget_seconds))
        submitted = (
            _parse_time(state.get("submitted_at")) or record.submitted_at or record.created_at
        )
        if (now - submitted).total_seconds() >= budget:
            self._fail(
                record,
                ProviderTimeout(f"The {record.provider} provider did not finish the image "
                                f"within the job's {budget:g} s budget."),
            )  # fmt: skip
            return state | {"status": STATUS_TIMED_OUT}
        self.jobs.save(record)
        return state | {"status": STATUS_PENDING}

    def store(self, state: dict[str, Any]) -> dict[str, Any]:
        """Download the finished image straight into S3 and write the job's final answer."""
        record = self._record(state)
        if record.status == "succeeded":
            return _stored(state, record)
        if record.status == "failed" and record.error is not None:
            raise record.error.to_exception(record.job_id)
        provider = self.service.provider_for(record.provider)
        try:
            image = provider.fetch_sample(state.get("sample_url") or "")
            prepared = self._prepared(record)
            result = ProviderResult(
                images=[GeneratedImage(image=image, seed=state.get("seed"))],
                sent={},
                cost_usd=record.cost_usd,
            )
            data = self.service.deliver(prepared, result) | {"job_id": record.job_id}
        except ImageServiceError as error:
            self._fail(record, error)
            raise
        now = self.clock()
        record = record.model_copy(
            update={
                "status": "succeeded",
                "result": data,
                "updated_at": now,
                "finished_at": now,
                "progress": 1.0,
            }
        )
        self.jobs.save(record)
        logger.info("job succeeded", extra={"job_id": record.job_id, "model": record.model})
        return _stored(state, record)

    def record_failure(self, state: dict[str, Any]) -> dict[str, Any]:
        """Write the job's final failed state from the workflow's error, unless a task already
        wrote a (more precise) final state."""
        try:
            record = self._record(state)
        except NotFound:
            return state
        if not record.final:
            error = state.get("error") if isinstance(state.get("error"), dict) else {}
            self._fail(record, error_from_failure(error.get("Error"), error.get("Cause")))
        return state | {"status": "failed"}

    # --- helpers ----------------------------------------------------------------------------

    def _record(self, state: dict[str, Any]) -> JobRecord:
        record = self.jobs.get(int(state["customer_id"]), str(state["job_id"]))
        if record is None:
            raise NotFound("No such job.")
        return record

    def _fail(self, record: JobRecord, error: ImageServiceError) -> None:
        logger.info(
            "job failed",
            extra={"job_id": record.job_id, "error_type": error.type, "status": error.status},
        )
        self.jobs.save(record.failed(error, self.clock()))

    def _await_submission(self, record: JobRecord) -> JobRecord:
        waited = 0.0
        while waited < SUBMIT_CLAIM_WAIT_SECONDS:
            self.sleep(0.5)
            waited += 0.5
            current = self.jobs.get(record.customer_id, record.job_id) or record
            if current.provider_task_id or current.final:
                return current
        # Another execution claimed the submission and never recorded a task: paying for a
        # second task could double the bill, so the job fails instead.
        raise ProviderError("The job's submission is in an unknown state; it was not repeated.")

    def _prepared(self, record: JobRecord) -> PreparedGeneration:
        from image_service.models import ImageGenerationRequest
        from image_service.service import PreparedGeneration

        job_input = self.jobs.read_input(record.customer_id, record.job_id)
        model = MODELS[job_input["model"]]
        request = ImageGenerationRequest.model_validate(job_input["request"])
        settings = GenerationSettings(**job_input["settings"])
        warnings = [SettingWarning(**w) for w in job_input.get("warnings", [])]
        provider_request = ProviderRequest(prompt=request.prompt, model=model, settings=settings)
        return PreparedGeneration(request, model, provider_request, warnings)


def _submitted(state: dict[str, Any], record: JobRecord) -> dict[str, Any]:
    return state | {
        "provider_task_id": record.provider_task_id,
        "polling_url": record.polling_url,
        "submitted_at": (record.submitted_at or record.created_at).isoformat(),
    }


def _stored(state: dict[str, Any], record: JobRecord) -> dict[str, Any]:
    result = record.result or {}
    kept = {k: v for k, v in state.items() if k not in ("sample_url", "seed")}
    return kept | {"status": "Stored", "image_key": result.get("image_key")}


def _status_of_final(record: JobRecord) -> str:
    if record.status == "succeeded":
        return STATUS_READY  # store finds the record done and does nothing again
    error_type = record.error.type if record.error else ""
    if error_type == ContentPolicyViolation.type:
        return STATUS_MODERATED
    if error_type == ProviderTimeout.type:
        return STATUS_TIMED_OUT
    return STATUS_ERROR


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


@cache
def _service_errors() -> dict[str, type[ImageServiceError]]:
    found: dict[str, type[ImageServiceError]] = {}
    pending = [ImageServiceError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return {name: cls for name, cls in found.items() if cls.__module__ == error_types.__name__}


def error_from_failure(name: Any, cause: Any) -> ImageServiceError:
    """The typed error of a workflow failure (``{"Error", "Cause"}`` from a Catch or a Pass)."""
    message = None
    if isinstance(cause, str):
        try:  # a Lambda error's cause is its JSON payload: {"errorMessage", "errorType", ...}
            payload = json.loads(cause)
            message = payload.get("errorMessage") if isinstance(payload, dict) else None
        except ValueError:
            message = cause
    if name == ERROR_MODERATED:
        return ContentPolicyViolation(message or "The provider refused the request.")
    if name == ERROR_PROVIDER:
        return ProviderError(message or "The provider could not make the image.")
    if name in (ERROR_TIMEOUT, "States.Timeout", "Sandbox.Timedout"):
        return ProviderTimeout("The job ran out of time.")
    known = _service_errors().get(str(name))
    if known is not None and message and known is not InternalError:
        # Our own errors carry messages that are safe by construction (and sanitised again).
        return known(sanitize_message(message))
    return InternalError("The job failed unexpectedly.")


# --- runners ----------------------------------------------------------------------------------


@cache
def get_sfn_client():
    """One client per container; ``AWS_ENDPOINT_URL_SFN`` (boto3's own) points it elsewhere."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "stepfunctions",
        config=Config(
            connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"}
        ),
    )


class StepFunctionsJobRunner:
    """Starts the Flux state machine; the execution name is the job id."""

    def __init__(self, state_machine_arn: str | None, client=None) -> None:
        self.state_machine_arn = state_machine_arn
        self._client = client

    @property
    def client(self):
        return self._client or get_sfn_client()

    def start(self, execution_input: dict[str, Any]) -> None:
        if not self.state_machine_arn:
            raise ProviderNotConfigured("Asynchronous jobs are not configured on this service.")
        # A Wait state counts whole seconds.
        document = execution_input | {
            "interval_seconds": max(1, math.ceil(execution_input["interval_seconds"])),
            "budget_seconds": execution_input["budget_seconds"],
        }
        client = self.client
        try:
            client.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=execution_input["job_id"],
                input=json.dumps(document, separators=(",", ":")),
            )
        except client.exceptions.ExecutionAlreadyExists:
            return  # the same job started twice: one execution
        except Exception as error:  # botocore's errors: the caller sees a 502, never AWS detail
            logger.error("job start failed", extra={"error_class": type(error).__name__})
            raise ProviderError("The image job could not be started.") from None


class LocalJobRunner:
    """The local stack's runner: the workflow's own task handlers (``flux_tasks``), in the state
    machine's order, with its interval and budget, in a background thread."""

    def __init__(self, tasks: Any = None, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._tasks = tasks
        self._sleep = sleep
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def tasks(self) -> Any:
        return self._tasks or importlib.import_module("flux_tasks")

    def start(self, execution_input: dict[str, Any]) -> None:
        thread = threading.Thread(
            target=self.run, args=(dict(execution_input),), name="job-" + execution_input["job_id"],
            daemon=True,
        )  # fmt: skip
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def run(self, state: dict[str, Any]) -> dict[str, Any]:
        """Submit → (wait → poll)* → store, or record_failure, as the ASL does."""
        tasks = self.tasks
        try:
            state = tasks.submit(state, None)
            while True:
                self._sleep(float(state["interval_seconds"]))
                state = tasks.poll(state, None)
                status = state.get("status")
                if status == STATUS_PENDING:
                    continue
                if status == STATUS_READY:
                    return tasks.store(state, None)
                error = _FAILURE_ERRORS.get(status, ERROR_PROVIDER)
                return self._record_failure(state | {"error": {"Error": error, "Cause": ""}})
        except Exception as exc:  # what a Catch on States.ALL would route to RecordFailure
            cause = json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__})
            return self._record_failure(
                state | {"error": {"Error": type(exc).__name__, "Cause": cause}}
            )

    def _record_failure(self, state: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.tasks.record_failure(state, None)
        except Exception as exc:
            logger.error("record_failure failed", extra={"error_class": type(exc).__name__})
            return state

    def join(self, timeout: float = 10.0) -> bool:
        """Wait for running jobs (tests, shutdown); True when none is left running."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)


def job_runner_for(settings: ServiceSettings) -> JobRunner:
    """``JOB_RUNNER=local`` (the local stack) or the deployed state machine."""
    if settings.job_runner == "local":
        return LocalJobRunner()
    return StepFunctionsJobRunner(settings.flux_state_machine_arn)
