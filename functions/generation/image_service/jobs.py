"""Jobs: generations a provider answers asynchronously (Flux), run as a workflow.

- ``JobRecord`` — the job's state, kept in the bucket at ``jobs/{customer_id}/{job_id}.json``.
  Express executions cannot be described afterwards, so this record, not Step Functions, is
  what ``GET /image/jobs/{id}`` and a waiting direct invoke read.
- ``JobService`` — starts a job (the 202 path) and reads or waits for its record.
- ``JobRunner`` — how a job is started (the implementations are in ``job_runners.py``).

The workflow's task bodies are in ``job_workflow.py``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict

from image_common.errors import (
    ImageServiceError,
    InternalError,
    NotFound,
    ProviderTimeout,
    StorageError,
)
from image_common.settings import ServiceSettings
from image_service.providers.base import (
    SettingWarning,
)
from image_service.storage import ImageStore

if TYPE_CHECKING:
    from image_service.service import PreparedGeneration

logger = Logger(child=True)

JobStatus = Literal["pending", "running", "succeeded", "failed"]
FINAL_STATUSES = frozenset({"succeeded", "failed"})
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
# After its budget a job still needs a wait, a last poll and the store task (download + S3).
FINALIZE_GRACE_SECONDS = 30.0


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
    # The usage reservation made at admission (image_service.usage.Charge), settled at the end.
    charge: dict[str, Any] | None = None
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

    def start(self, prepared: PreparedGeneration, *, charge: Any = None) -> JobRecord:
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
            charge=charge.to_dict() if charge is not None else None,
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
