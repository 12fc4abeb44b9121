"""The job record: a generation's durable state, and how readers see it.

Every generation is a job (docs/jobs.md). Its record lives in DynamoDB (``job_store.py``) and
holds keys, never URLs or bytes: a reader gets fresh URLs (``delivery.present``), so a record
that lives for days never hands out an expired presigned URL.

States: ``pending`` (recorded, no worker has claimed it) → ``running`` (claimed: the provider
call or its submit/poll loop is under way) → ``succeeded`` or ``failed`` (final, never changed
again). A record with no final state after its deadline reads as failed (504), so no job stays
pending forever even when every worker died.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from image_common.errors import ImageServiceError, InternalError, ProviderTimeout

JobStatus = Literal["pending", "running", "succeeded", "failed"]
FINAL_STATUSES = frozenset({"succeeded", "failed"})
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
# After its budget a job still needs to download, store and record the image.
FINALIZE_GRACE_SECONDS = 30.0
# A pending job no worker has claimed within this long never started (the workflow died).
START_GRACE_SECONDS = 60.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex  # also the execution name: [0-9a-f]{32} fits its alphabet


def status_url(job_id: str) -> str:
    # Relative to the API's own origin, which only the caller knows for sure.
    return f"/image/jobs/{job_id}"


class JobError(BaseModel):
    """A failed job's typed error: what the caller gets, as for any failed request."""

    status: int
    type: str
    message: str
    retry_after: int | None = None
    kind: str | None = None  # the error's class, so a reader raises what the worker raised

    @classmethod
    def of(cls, error: ImageServiceError) -> JobError:
        return cls(
            status=error.status,
            type=error.type,
            message=error.message,
            retry_after=error.retry_after,
            kind=type(error).__name__,
        )

    def to_exception(self, job_id: str) -> ImageServiceError:
        """The error as it was raised: its class (so callers can catch what they would have
        caught without a job), its message, and the job it belongs to."""
        classes = _error_classes()
        cls = classes.get(self.kind or "")
        if cls is None or (cls.type, cls.status) != (self.type, self.status):
            cls = classes.get((self.type, self.status), ImageServiceError)
        kwargs = {
            "retry_after": self.retry_after,
            "details": {"job_id": job_id, "status": "failed"},
        }
        error = cls(self.message, **kwargs)
        error.status, error.type = self.status, self.type  # the stored type, as raised
        return error


@cache
def _error_classes() -> dict[object, type[ImageServiceError]]:
    """The service's error classes by name, and by (type, status) — the first, most general
    class of each pair, for records written before ``kind`` existed."""
    found: dict[object, type[ImageServiceError]] = {}
    pending = [ImageServiceError]
    while pending:
        cls = pending.pop(0)
        found.setdefault(cls.__name__, cls)
        found.setdefault((cls.type, cls.status), cls)
        pending.extend(cls.__subclasses__())
    return found


class JobInput(BaseModel):
    """What the worker needs to make the call: the request fitted to its model. Input images
    are S3 keys (bytes never enter a record or the workflow's state)."""

    model_config = ConfigDict(extra="ignore")

    request: dict[str, Any]  # the request, without input images and mask
    settings: dict[str, Any]  # GenerationSettings, fitted to the model
    warnings: list[dict[str, Any]] = Field(default_factory=list)
    provider_options: dict[str, Any] = Field(default_factory=dict)
    input_keys: list[str] = Field(default_factory=list)
    mask_key: str | None = None


class WebhookState(BaseModel):
    """Delivery of the job's callback: what the job's reader (and ops) can see of it."""

    status: Literal["pending", "delivering", "delivered", "failed"] = "pending"
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    webhook_id: str | None = None


class JobRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    job_id: str
    customer_id: int
    status: JobStatus
    provider: str
    model: str
    asynchronous: bool = False  # submit/poll provider (Flux)
    created_at: datetime
    updated_at: datetime
    claimed_at: datetime | None = None
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    budget_seconds: float
    expected_seconds: float
    interval_seconds: float = 1.0
    provider_task_id: str | None = None
    polling_url: str | None = None
    provider_status: str | None = None
    progress: float | None = None
    polls: int = 0
    cost_usd: float | None = None
    # The usage reservation made at admission (image_service.usage.Charge), settled at the end.
    charge: dict[str, Any] | None = None
    input: JobInput | None = None
    result: dict[str, Any] | None = None  # the final 200's ``data``, with keys instead of URLs
    error: JobError | None = None
    callback_url: str | None = None
    webhook: WebhookState | None = None
    version: int = 0  # optimistic lock: every write is conditional on the version it read

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def status_url(self) -> str:
        return status_url(self.job_id)

    @property
    def deadline(self) -> datetime:
        """When a job with no final record is over, whatever happened to its worker."""
        if self.claimed_at is None:
            start = self.created_at + timedelta(seconds=START_GRACE_SECONDS)
        else:
            start = self.submitted_at or self.claimed_at
        return start + timedelta(seconds=self.budget_seconds + FINALIZE_GRACE_SECONDS)

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

    def changed(self, now: datetime, **fields: Any) -> JobRecord:
        return self.model_copy(update=fields | {"updated_at": now})

    def failed(self, error: ImageServiceError, now: datetime) -> JobRecord:
        return self.changed(now, status="failed", error=JobError.of(error), finished_at=now)

    def estimated_progress(self, now: datetime) -> float | None:
        """The provider's own progress when it reports one, else the elapsed share of the
        expected time (never 1.0 before the job is done)."""
        if self.progress is not None or self.final:
            return 1.0 if self.status == "succeeded" else self.progress
        if self.claimed_at is None:
            return 0.0
        elapsed = (now - self.claimed_at).total_seconds()
        return round(min(0.95, max(0.0, elapsed / max(self.expected_seconds, 1.0))), 2)

    def retry_after(self, now: datetime) -> int:
        """When to look again: about when the job is expected to be done, 1–10 s."""
        started = self.claimed_at or self.created_at
        left = self.expected_seconds - (now - started).total_seconds()
        return int(min(10, max(1, round(left / 2))))

    def accepted(self) -> dict[str, Any]:
        """The 202 answer's ``data``."""
        return {
            "job_id": self.job_id,
            "status": self.status,
            "status_url": self.status_url,
            "provider": self.provider,
            "model": self.model,
        }

    def progress_view(self, now: datetime) -> dict[str, Any]:
        """A job that is not finished, as ``GET /image/jobs/{id}`` shows it."""
        view = self.accepted() | {
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "expected_seconds": self.expected_seconds,
            "budget_seconds": self.budget_seconds,
            "progress": self.estimated_progress(now),
        }
        if self.asynchronous:
            view["polls"] = self.polls
        if self.submitted_at:
            view["submitted_at"] = self.submitted_at.isoformat()
        return view

    def summary(self) -> dict[str, Any]:
        """One line of ``GET /image/jobs``: what the job is, not its image."""
        item = self.accepted() | {
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
        if self.finished_at:
            item["finished_at"] = self.finished_at.isoformat()
        if self.error is not None:
            item["error"] = {"status": self.error.status, "type": self.error.type}
        if self.webhook is not None:
            item["webhook"] = {"status": self.webhook.status, "attempts": self.webhook.attempts}
        return item

    def raise_error(self) -> None:
        """A failed job's typed error, raised as the answer to whoever reads it."""
        if self.error is not None:
            raise self.error.to_exception(self.job_id)
        raise InternalError()
