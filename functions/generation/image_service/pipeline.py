"""The job pipeline: the steps every job runs, whichever its provider.

The job state machine (``infra/job_definition.py``) calls them through the Lambda entry points
of ``job_tasks.py``; the local stack's runner calls the same entry points in the same order::

    run ─┬─ Succeeded / Failed ─────────────────────────────────────────┐
         └─ Submitted ─> (wait ─> poll)* ─┬─ Ready ─> store ───────────┤
                                           └─ Failed ───────────────────┤
    any step raising ─> record_failure ─────────────────────────────────┤
                                                   notify (─> wait ─> notify)* ─> end

- ``run`` claims the job (a conditional write: the provider is called at most once per job),
  then either makes the whole call (a synchronous provider, within the job's budget) and
  delivers the images, or submits the task (an ``AsynchronousImageProvider``).
- ``poll`` looks at a submitted task; ``store`` downloads its result and delivers it.
- ``record_failure`` turns whatever the workflow caught into the job's final failed state.
- ``notify`` delivers the job's webhook, one attempt per call, and says when to try again.

Each step takes the workflow's small state (ids, a status, a URL — never an image) and returns
it extended. A step that meets one of the service's typed errors writes the job's final failed
state itself and returns ``Failed``; anything else propagates, and the workflow's catch
records it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger

from image_common import errors as error_types
from image_common.envelope import error_envelope, success_envelope
from image_common.errors import (
    ImageServiceError,
    InternalError,
    NotFound,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    sanitize_message,
)
from image_common.settings import ServiceSettings
from image_service.catalog import current_catalog
from image_service.delivery import PreparedGeneration, deliver, present, unique
from image_service.job_records import JobError, JobRecord, WebhookState, utcnow
from image_service.job_store import JobStore, StaleRecord
from image_service.models import MAX_SEED, ImageGenerationRequest
from image_service.providers.base import (
    AsynchronousImageProvider,
    GeneratedImage,
    GenerationSettings,
    ImageProvider,
    ProviderRequest,
    ProviderResult,
    SettingWarning,
)
from image_service.storage import ImageStore
from image_service.telemetry import record_provider_call, record_webhook_failure
from image_service.usage import Charge, UsageLedger
from image_service.webhooks import EVENT_FAILED, EVENT_SUCCEEDED, WebhookSender

logger = Logger(child=True)

MAX_PARALLEL_CALLS = 4
MIN_PROVIDER_SECONDS = 0.5  # less than this left of the budget: a 504 now, not a paid call

# The workflow's vocabulary: must match infra/job_definition.py (a test checks it does).
STATUS_SUCCEEDED, STATUS_FAILED = "Succeeded", "Failed"
STATUS_SUBMITTED, STATUS_PENDING, STATUS_READY = "Submitted", "Pending", "Ready"
WEBHOOK_RETRY, WEBHOOK_DONE = "Retry", "Done"


class JobPipeline:
    def __init__(
        self,
        settings: ServiceSettings,
        images: ImageStore,
        jobs: JobStore,
        provider_for: Callable[[str], Any],
        *,
        webhooks: WebhookSender | None = None,
        usage: UsageLedger | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.images = images
        self.jobs = jobs
        self.provider_for = provider_for
        self.webhooks = webhooks or WebhookSender(settings)
        self.usage = usage
        self.clock = clock
        self.sleep = sleep

    # --- the steps -------------------------------------------------------------------------

    def run(self, state: dict[str, Any]) -> dict[str, Any]:
        record = self._record(state)
        if record.final:
            return _outcome(state, record)
        if record.status != "pending":
            return self._follow(state, record)
        now = self.clock()
        try:
            record = self.jobs.save(record.changed(now, status="running", claimed_at=now))
        except StaleRecord:  # another execution claimed it first: it makes the call, not us
            return self._follow(state, self._record(state))
        try:
            if record.asynchronous:
                return self._submit(state, record)
            return self._generate(state, record)
        except ImageServiceError as error:
            return self._fail(state, record, error)

    def poll(self, state: dict[str, Any]) -> dict[str, Any]:
        record = self._record(state)
        if record.final:
            return _outcome(state, record)
        provider = self._asynchronous(record.provider)
        try:
            result = provider.poll(record.provider_task_id or "", record.polling_url or "")
        except ImageServiceError as error:
            return self._fail(state, record, error)
        now = self.clock()
        record = self._update(
            record,
            polls=record.polls + 1,
            provider_status=result.provider_status,
            progress=result.progress,
        )
        if record.final:
            return _outcome(state, record)
        if result.status == STATUS_READY:
            return state | {
                "status": STATUS_READY,
                "result_url": result.result_url,
                "seed": result.seed,
            }
        error = result.error()
        if error is not None:
            return self._fail(state, record, error)
        submitted = record.submitted_at or record.claimed_at or record.created_at
        if (now - submitted).total_seconds() >= record.budget_seconds:
            timeout = ProviderTimeout(
                f"The {record.provider} provider did not finish the image within the job's "
                f"{record.budget_seconds:g} s budget."
            )
            return self._fail(state, record, timeout)
        return state | {"status": STATUS_PENDING}

    def store(self, state: dict[str, Any]) -> dict[str, Any]:
        """Download a submitted task's image, deliver it, write the job's final answer."""
        record = self._record(state)
        if record.final:
            return _outcome(state, record)
        provider = self._asynchronous(record.provider)
        try:
            image = provider.fetch_result(state.get("result_url") or "")
            result = ProviderResult(
                images=[GeneratedImage(image=image, seed=state.get("seed"))],
                sent={},
                cost_usd=record.cost_usd,
            )
            prepared = self._prepared(record, load_inputs=False)
            data = deliver(
                prepared, result, store=self.images, settings=self.settings, job_id=record.job_id
            )
        except ImageServiceError as error:
            return self._fail(state, record, error)
        return self._succeed(state, record, data)

    def record_failure(self, state: dict[str, Any]) -> dict[str, Any]:
        """The job's final failed state from the workflow's error ``{"Error", "Cause"}`` —
        unless a step already wrote a final state (it is never overwritten)."""
        try:
            record = self._record(state)
        except NotFound:
            return state | {"status": STATUS_FAILED}
        if record.final:
            return _outcome(state, record)
        error = state.get("error") if isinstance(state.get("error"), dict) else {}
        return self._fail(state, record, error_from_failure(error.get("Error"), error.get("Cause")))

    def notify(self, state: dict[str, Any]) -> dict[str, Any]:
        """One delivery attempt of the job's webhook; ``webhook.next`` says whether to retry,
        and ``webhook.retry_in_seconds`` when."""
        done = state | {"webhook": {"next": WEBHOOK_DONE}}
        record = self._record(state)
        webhook = record.webhook or WebhookState()
        if not record.final or not record.callback_url or webhook.status in ("delivered", "failed"):
            return done
        now = self.clock()
        message_id = f"msg_{record.job_id}"  # the same on every retry: receivers de-duplicate
        attempt = self.webhooks.send(record.callback_url, message_id, self.event(record), now)
        delays = self.settings.webhook_retry_delays
        attempts = webhook.attempts + 1
        retry = not attempt.delivered and attempts <= len(delays)
        webhook = webhook.model_copy(
            update={
                "status": "delivered" if attempt.delivered else "delivering" if retry else "failed",
                "attempts": attempts,
                "last_status_code": attempt.status_code,
                "last_error": attempt.error,
                "last_attempt_at": now,
                "delivered_at": now if attempt.delivered else None,
                "webhook_id": message_id,
            }
        )
        self._update(record, webhook=webhook)
        if webhook.status == "failed":
            record_webhook_failure()
        logger.info(
            "webhook attempt",
            extra={
                "job_id": record.job_id,
                "attempt": attempts,
                "delivered": attempt.delivered,
                "status_code": attempt.status_code,
            },
        )
        if retry:
            # Whole seconds: a Wait state's SecondsPath takes an integer.
            wait = math.ceil(delays[attempts - 1])
            return state | {"webhook": {"next": WEBHOOK_RETRY, "retry_in_seconds": wait}}
        return done

    def event(self, record: JobRecord) -> dict[str, Any]:
        """The webhook's payload: the event type and what ``GET /image/jobs/{id}`` answers."""
        if record.status == "succeeded" and record.result is not None:
            kind, data = EVENT_SUCCEEDED, success_envelope(present(record.result, self.images))
        else:
            try:
                record.raise_error()
            except ImageServiceError as error:
                kind, data = EVENT_FAILED, error_envelope(error)
        return {"type": kind, "timestamp": self.clock().isoformat(), "data": data}

    # --- a synchronous provider: the whole call, within the job's budget ---------------------

    def _generate(self, state: dict[str, Any], record: JobRecord) -> dict[str, Any]:
        prepared = self._prepared(record, load_inputs=True)
        started = time.monotonic()
        result = call_provider(self.provider_for(record.provider), prepared.provider_request)
        logger.info(
            "images generated",
            extra={
                "job_id": record.job_id,
                "provider": record.provider,
                "model": record.model,
                "images": len(result.images),
                "provider_ms": round((time.monotonic() - started) * 1000),
                "customer_id": record.customer_id,
            },
        )
        data = deliver(
            prepared, result, store=self.images, settings=self.settings, job_id=record.job_id
        )
        return self._succeed(state, record, data)

    # --- an asynchronous provider: submit once ------------------------------------------------

    def _submit(self, state: dict[str, Any], record: JobRecord) -> dict[str, Any]:
        prepared = self._prepared(record, load_inputs=True)
        provider = self._asynchronous(record.provider)
        body = provider.build_body(prepared.provider_request)
        try:
            submission = provider.submit(record.model, body.body)
        except ImageServiceError:
            record_provider_call(record.provider, failed=True)
            raise
        record_provider_call(record.provider, failed=False)
        # The body's own warnings (options it dropped) belong in the final answer too.
        warnings = unique(prepared.warnings + body.warnings)
        job_input = prepared_input(record, warnings)
        record = self._update(
            record,
            provider_task_id=submission.task_id,
            polling_url=submission.polling_url,
            submitted_at=self.clock(),
            cost_usd=submission.cost_usd,
            input=job_input,
        )
        return state | {"status": STATUS_SUBMITTED}

    # --- helpers -----------------------------------------------------------------------------

    def _record(self, state: dict[str, Any]) -> JobRecord:
        record = self.jobs.get(str(state["job_id"]))
        if record is None or record.customer_id != int(state["customer_id"]):
            raise NotFound("No such job.")
        return record

    def _update(self, record: JobRecord, **fields: Any) -> JobRecord:
        """Write ``fields`` over the record; if it moved on meanwhile, over its newer version —
        unless that one is final (then it wins, unchanged)."""
        for _ in range(3):
            try:
                return self.jobs.save(record.changed(self.clock(), **fields))
            except StaleRecord:
                current = self.jobs.get(record.job_id)
                if current is None:
                    raise NotFound("No such job.") from None
                if current.final and not set(fields) <= {"webhook"}:
                    return current
                record = current
        raise StaleRecord()

    def _succeed(self, state: dict[str, Any], record: JobRecord, data: dict[str, Any]):
        now = self.clock()
        record = self._update(
            record, status="succeeded", result=data, finished_at=now, progress=1.0, error=None
        )
        logger.info("job succeeded", extra={"job_id": record.job_id, "model": record.model})
        if record.status == "succeeded":
            self._settle(record, (record.result or {}).get("cost_usd") or 0.0)
        return _outcome(state, record)

    def _fail(self, state: dict[str, Any], record: JobRecord, error: ImageServiceError):
        logger.info(
            "job failed",
            extra={"job_id": record.job_id, "error_type": error.type, "status": error.status},
        )
        record = self._update(record, **_failed_fields(error, self.clock()))
        if record.status == "failed":
            self._settle(record, None)  # nothing produced: the reservation is released
        return _outcome(state, record)

    def _settle(self, record: JobRecord, cost_usd: float | None) -> None:
        """The job's usage charge: its actual cost, or released (the ledger settles once)."""
        if record.charge is not None and self.usage is not None:
            self.usage.settle(Charge.from_dict(record.charge), cost_usd, job_id=record.job_id)

    def _follow(self, state: dict[str, Any], record: JobRecord) -> dict[str, Any]:
        """Another execution holds the claim: never call the provider a second time. Follow
        its submitted task, or wait for its final state until the job's deadline."""
        while True:
            if record.final:
                return _outcome(state, record)
            if record.asynchronous and record.provider_task_id:
                return state | {"status": STATUS_SUBMITTED}
            if self.clock() >= record.deadline:
                error = ProviderError(
                    "The job's provider call is in an unknown state; it was not repeated."
                )
                return self._fail(state, record, error)
            self.sleep(max(0.1, float(state.get("interval_seconds", 1.0))))
            record = self._record(state)

    def _asynchronous(self, provider_name: str) -> AsynchronousImageProvider:
        provider = self.provider_for(provider_name)
        if not isinstance(provider, AsynchronousImageProvider):
            raise InternalError("The job's provider cannot be polled.")
        return provider

    def _prepared(self, record: JobRecord, *, load_inputs: bool) -> PreparedGeneration:
        """The request as ``ImageService.prepare`` fitted it, rebuilt from the record, with the
        input images read back from S3 and the rest of the job's budget to spend."""
        job_input = record.input
        if job_input is None:
            raise InternalError("The job has no input.")
        model = current_catalog().model(record.model)
        request = ImageGenerationRequest.model_validate(job_input.request)
        settings = GenerationSettings(**job_input.settings)
        warnings = [SettingWarning(**w) for w in job_input.warnings]
        inputs, mask = (), None
        if load_inputs:
            inputs = tuple(self.images.read_job_bytes(key) for key in job_input.input_keys)
            mask = self.images.read_job_bytes(job_input.mask_key) if job_input.mask_key else None
        started = record.claimed_at or record.created_at
        remaining = record.budget_seconds - (self.clock() - started).total_seconds()
        if load_inputs and remaining < MIN_PROVIDER_SECONDS:
            raise ProviderTimeout("The job's time ran out before the provider was called.")
        provider_request = ProviderRequest(
            prompt=request.prompt,
            model=model,
            settings=settings,
            input_images=inputs,
            mask=mask,
            provider_options=job_input.provider_options,
            timeout_seconds=max(MIN_PROVIDER_SECONDS, remaining),
        )
        return PreparedGeneration(request, model, provider_request, warnings)


# --- the provider call ------------------------------------------------------------------------


def call_provider(provider: ImageProvider, provider_request: ProviderRequest) -> ProviderResult:
    """Call a synchronous provider, in parallel batches of at most the model's images per call."""

    def call(batch: ProviderRequest) -> ProviderResult:
        try:
            result = provider.generate(batch)
        except Exception:
            record_provider_call(batch.model.provider, failed=True)
            raise
        record_provider_call(batch.model.provider, failed=False)
        return result

    batches = _batches(provider_request)
    if len(batches) == 1:
        return call(batches[0])
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_CALLS, len(batches))) as pool:
        results = list(pool.map(call, batches))
    costs = [r.cost_usd for r in results]
    return ProviderResult(
        images=[image for r in results for image in r.images],
        sent=results[0].sent | {"calls": len(results)},
        warnings=unique([w for r in results for w in r.warnings]),
        cost_usd=None if None in costs else round(sum(costs), 6),
        usage=_total_usage([r.usage for r in results]),
    )


def _total_usage(usages: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Token counts of several calls added up (nested counts too); unknown if any is unknown."""
    if not usages or any(u is None for u in usages):
        return None

    def add(a: Any, b: Any) -> Any:
        if isinstance(a, dict) and isinstance(b, dict):
            return {k: add(a[k], b[k]) for k in a if k in b}
        return a + b if isinstance(a, int) and isinstance(b, int) else a

    total = usages[0]
    for usage in usages[1:]:
        total = add(total, usage)
    return total


def _batches(request: ProviderRequest) -> list[ProviderRequest]:
    n = request.settings.n
    per_call = request.model.capabilities.max_images_per_call
    if n <= per_call:
        return [request]
    batches = []
    for index, start in enumerate(range(0, n, per_call)):
        size = min(per_call, n - start)
        seed = request.settings.seed
        # The same seed on every call would return the same image n times; wrap, never past
        # the largest seed the request model (and the providers) accept.
        if seed is not None:
            seed = (seed + index) % (MAX_SEED + 1)
        settings = replace(request.settings, n=size, seed=seed)
        batches.append(replace(request, settings=settings))
    return batches


# --- outcomes and errors ----------------------------------------------------------------------


def _outcome(state: dict[str, Any], record: JobRecord) -> dict[str, Any]:
    kept = {k: v for k, v in state.items() if k not in ("result_url", "seed", "error")}
    return kept | {"status": STATUS_SUCCEEDED if record.status == "succeeded" else STATUS_FAILED}


def prepared_input(record: JobRecord, warnings: list[SettingWarning]):
    assert record.input is not None
    return record.input.model_copy(update={"warnings": [w.to_dict() for w in warnings]})


def _failed_fields(error: ImageServiceError, now: datetime) -> dict[str, Any]:
    return {"status": "failed", "error": JobError.of(error), "finished_at": now}


@cache
def _service_errors() -> dict[str, type[ImageServiceError]]:
    found: dict[str, type[ImageServiceError]] = {}
    pending = [ImageServiceError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return {name: cls for name, cls in found.items() if cls.__module__ == error_types.__name__}


# Lambda refused to run the worker: throttled, or its SnapStart version is Inactive and its
# snapshot not yet re-created (the workflow retried both a while: infra/job_definition.py).
WORKER_NEVER_RAN = frozenset(
    {"Lambda.TooManyRequestsException", "Lambda.SnapStartNotReadyException"}
)


def error_from_failure(name: Any, cause: Any) -> ImageServiceError:
    """The typed error of a workflow failure (``{"Error", "Cause"}`` from a Catch)."""
    message = None
    if isinstance(cause, str):
        try:  # a Lambda error's cause is its JSON payload: {"errorMessage", "errorType", ...}
            payload = json.loads(cause)
            message = payload.get("errorMessage") if isinstance(payload, dict) else None
        except ValueError:
            message = None
    if name in ("States.Timeout", "Sandbox.Timedout"):
        return ProviderTimeout("The job's worker ran out of time.")
    if str(name) in WORKER_NEVER_RAN:  # nothing was paid: the caller may simply try again
        return ProviderRateLimited("The service is at capacity; try again shortly.", retry_after=30)
    known = _service_errors().get(str(name))
    if known is not None and message and known is not InternalError:
        # Our own errors carry messages that are safe by construction (and sanitised again).
        return known(sanitize_message(message))
    return InternalError()
