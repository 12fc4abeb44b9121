"""Jobs: start (or attach to) a generation's job, read it, list them, wait for one.

Every generation is a job (docs/jobs.md). ``JobService`` is the domain's API for them — the
HTTP routes, direct invoke and the OpenAI-compatible surface all go through it:

- ``start`` records the job (and takes its idempotency key, in one conditional transaction),
  puts its input images in S3 and starts its workflow through a ``JobRunner``; with an
  idempotency key already taken for the same body it returns that job instead (``attached``),
  and with a different body it is a 422;
- ``wait`` reads the record until it is final or the wait is over;
- ``answer`` is a finished job's ``data`` with fresh URLs, or its typed error raised.

The runner is the entry point's choice: the job state machine when deployed, the local
stack's in-process runner under ``make dev`` and in tests.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from image_common.errors import ImageServiceError, InvalidRequest, NotFound
from image_common.settings import ServiceSettings
from image_service.budgets import expected_seconds, job_budget_seconds
from image_service.delivery import PreparedGeneration, present
from image_service.job_records import JobInput, JobRecord, new_job_id, utcnow
from image_service.job_store import IdempotencyClaim, IdempotencyKeyTaken, JobStore
from image_service.storage import ImageStore

logger = Logger(child=True)

MAX_IDEMPOTENCY_KEY_CHARS = 255
DEFAULT_LIST_LIMIT = 20
# How often a waiting request reads the record: quickly at first (a fast job answers fast),
# then at most once a second.
WAIT_INTERVALS_SECONDS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


class JobRunner(Protocol):
    def start(self, execution_input: dict[str, Any]) -> None:
        """Start the workflow of one job; starting the same job twice runs it once."""
        ...


class IdempotencyConflict(InvalidRequest):
    """The key was used with another request body: 422, so a client bug is not a new charge."""

    status, type = 422, "idempotency_key_reused"


@dataclass(frozen=True)
class StartedJob:
    record: JobRecord
    attached: bool  # True: an earlier request's job (same idempotency key and body)


def check_idempotency_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_CHARS or not key.isprintable():
        raise InvalidRequest(
            f"The idempotency key must be 1–{MAX_IDEMPOTENCY_KEY_CHARS} printable characters."
        )
    return key


def request_fingerprint(body: Any) -> str:
    """The SHA-256 of a request body in canonical JSON (sorted keys, no spaces): the same
    request, however its keys were ordered or spaced, has the same fingerprint."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def derived_idempotency_key(customer_id: int, fingerprint: str) -> str:
    """A key for callers that send none but must not pay twice for a retry (the OpenAI SDK's
    automatic retries): the same customer and body within the idempotency window → one job."""
    return f"derived:{customer_id}:{fingerprint}"


def execution_input(record: JobRecord) -> dict[str, Any]:
    """The workflow's input: ids and small JSON only."""
    return {
        "job_id": record.job_id,
        "customer_id": record.customer_id,
        "interval_seconds": record.interval_seconds,
    }


class JobService:
    def __init__(
        self,
        settings: ServiceSettings,
        images: ImageStore,
        jobs: JobStore,
        runner: JobRunner,
        *,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.images = images
        self.jobs = jobs
        self.runner = runner
        self.clock = clock
        self.sleep = sleep

    # --- idempotency -----------------------------------------------------------------------

    def claim_for(self, customer_id: int, key: str, fingerprint: str) -> IdempotencyClaim:
        expires = int(self.clock().timestamp()) + self.settings.idempotency_ttl_seconds
        return IdempotencyClaim.of(customer_id, key, fingerprint, expires_at=expires)

    def release(self, claim: IdempotencyClaim, job_id: str) -> None:
        """The key's job was answered: an identical request from now on starts a new job."""
        self.jobs.release(claim, job_id)

    def attach(self, claim: IdempotencyClaim) -> JobRecord | None:
        """The job an idempotency key already started, if any; a 422 for another body."""
        found = self.jobs.find_idempotent(claim, self.clock())
        if found is None:
            return None
        if found.fingerprint != claim.fingerprint:
            raise IdempotencyConflict(
                "This Idempotency-Key was already used with a different request body."
            )
        record = self.jobs.get(found.job_id)
        return None if record is None else record.as_of(self.clock())

    # --- starting ----------------------------------------------------------------------------

    def start(
        self,
        prepared: PreparedGeneration,
        *,
        claim: IdempotencyClaim | None = None,
        callback_url: str | None = None,
        charge: Any = None,
    ) -> StartedJob:
        """Record the job and start its workflow. The request was validated and its input
        images loaded already, so a bad request was a 400 before any job existed."""
        request, model = prepared.request, prepared.model
        provider_request = prepared.provider_request
        now = self.clock()
        job_id = new_job_id()
        customer = request.customer_id
        input_keys = [
            self.images.put_job_bytes(customer, job_id, f"input-{i}", image)
            for i, image in enumerate(provider_request.input_images)
        ]
        mask_key = (
            self.images.put_job_bytes(customer, job_id, "mask", provider_request.mask)
            if provider_request.mask is not None
            else None
        )
        record = JobRecord(
            job_id=job_id,
            customer_id=customer,
            status="pending",
            provider=model.provider,
            model=model.id,
            asynchronous=model.capabilities.asynchronous,
            created_at=now,
            updated_at=now,
            expected_seconds=expected_seconds(model, provider_request.settings),
            budget_seconds=job_budget_seconds(
                model, provider_request.settings, max_seconds=self.settings.job_max_budget_seconds
            ),
            interval_seconds=self.settings.job_poll_interval_seconds,
            callback_url=callback_url,
            charge=charge.to_dict() if charge is not None else None,
            input=JobInput(
                request=request.model_dump(
                    mode="json", exclude={"settings": {"image": {"input_images", "mask"}}}
                ),
                settings=asdict(provider_request.settings),
                warnings=[w.to_dict() for w in prepared.warnings],
                provider_options=dict(provider_request.provider_options),
                input_keys=input_keys,
                mask_key=mask_key,
            ),
        )
        ttl_at = int(now.timestamp()) + self.settings.job_record_ttl_days * 86400
        try:
            self.jobs.create(record, ttl_at=ttl_at, claim=claim)
        except IdempotencyKeyTaken:
            # Another request with the same key won the race: attach to its job (or 422).
            assert claim is not None
            attached = self.attach(claim)
            if attached is None:
                raise
            return StartedJob(attached, attached=True)
        try:
            self.runner.start(execution_input(record))
        except ImageServiceError as error:
            record = self.jobs.save(record.failed(error, self.clock()))
            raise
        logger.info(
            "job started",
            extra={"job_id": job_id, "model": model.id, "customer_id": customer},
        )
        return StartedJob(record, attached=False)

    # --- reading -----------------------------------------------------------------------------

    def get(self, customer_id: int, job_id: str) -> JobRecord:
        """A job of this customer — an unknown id and another customer's job read the same."""
        record = self.jobs.get(job_id)
        if record is None or record.customer_id != customer_id:
            raise NotFound("No such job.")
        return record.as_of(self.clock())

    def list(
        self, customer_id: int, *, limit: int = DEFAULT_LIST_LIMIT, cursor: str | None = None
    ) -> tuple[list[JobRecord], str | None]:
        records, next_cursor = self.jobs.list_for_customer(customer_id, limit=limit, cursor=cursor)
        now = self.clock()
        return [r.as_of(now) for r in records], next_cursor

    def wait(self, record: JobRecord, *, seconds: float) -> JobRecord:
        """The record once it is final, or as it is when ``seconds`` have passed."""
        if seconds <= 0 and not record.final:
            return record  # no wait at all (Prefer: respond-async): the job as started
        give_up = time.monotonic() + seconds
        record = self.get(record.customer_id, record.job_id)
        attempt = 0
        while not record.final:
            left = give_up - time.monotonic()
            if left <= 0:
                break
            interval = WAIT_INTERVALS_SECONDS[min(attempt, len(WAIT_INTERVALS_SECONDS) - 1)]
            self.sleep(min(interval, left))
            attempt += 1
            record = self.get(record.customer_id, record.job_id)
        return record

    def answer(self, record: JobRecord) -> dict[str, Any]:
        """A finished job's ``data`` with fresh URLs, or its typed error raised."""
        if record.status == "succeeded" and record.result is not None:
            return present(record.result, self.images)
        record.raise_error()
        raise AssertionError("unreachable")
