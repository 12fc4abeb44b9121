"""The Flux workflow's tasks: submit, poll, store, record_failure.

``flux_tasks.py`` exposes them as Lambda entry points; the state machine (infra/flux_definition.py)
or the local runner calls them in order: submit → (wait → poll)* → store, or record_failure.
Each takes the small job state and returns it extended; images go straight to S3, never into
the state (256 KB limit). The job's truth is its record in the bucket (``jobs.py``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from image_common import errors as error_types
from image_common.errors import (
    ContentPolicyViolation,
    ImageServiceError,
    InternalError,
    NotFound,
    ProviderError,
    ProviderTimeout,
    sanitize_message,
)
from image_service.catalog import current_catalog
from image_service.providers.base import (
    GeneratedImage,
    GenerationSettings,
    ProviderRequest,
    ProviderResult,
    SettingWarning,
)
from image_service.telemetry import record_provider_call
from image_service.usage import Charge

if TYPE_CHECKING:
    from image_service.service import ImageService, PreparedGeneration

from image_service.jobs import JobRecord, JobStore, utcnow

logger = Logger(child=True)

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
            record_provider_call(record.provider, failed=True)
            self._fail(record, error)
            raise
        record_provider_call(record.provider, failed=False)
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
        self._settle(record, data.get("cost_usd") or 0.0)
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
        self._settle(record, None)  # nothing produced: the reservation is released

    def _settle(self, record: JobRecord, cost_usd: float | None) -> None:
        if record.charge is not None:
            self.service.settle(Charge.from_dict(record.charge), cost_usd, job_id=record.job_id)

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
        model = current_catalog().model(job_input["model"])
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
