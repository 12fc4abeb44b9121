"""``ImageService``: validate, resolve the model, fit the settings, and run the generation as a
job — start it (or attach to the one an idempotency key already started), wait for it, answer.

The one place where a request becomes a job. It knows the registry, normalisation, input
images and the job service; it knows nothing of API Gateway, Lambda events or HTTP status codes.
The job itself runs in the pipeline (``pipeline.py``); delivery is ``delivery.py``.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from image_common.errors import (
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ProviderNotConfigured,
    ProviderTimeout,
)
from image_common.settings import MiB, ServiceSettings
from image_service import catalog as catalogs
from image_service.delivery import PreparedGeneration
from image_service.inputs import load_input_image
from image_service.job_records import JobRecord
from image_service.job_store import JobStore
from image_service.jobs import (
    JobRunner,
    JobService,
    StartedJob,
    check_idempotency_key,
    request_fingerprint,
)
from image_service.models import ImageGenerationRequest
from image_service.normalize import normalize_settings
from image_service.providers import get_image_provider
from image_service.providers.base import ImageProvider, ProviderRequest, SettingWarning
from image_service.registry import Catalog, ResolvedModel
from image_service.storage import ImageStore
from image_service.usage import Charge, UsageLedger, usage_ledger_for
from image_service.webhooks import check_callback_url

logger = Logger(child=True)
MIN_PROVIDER_SECONDS = 1.0  # less than this left for the provider: answer 504 now, not later


@dataclass(frozen=True)
class Caller:
    """Who is asking. ``None`` customer means a trusted direct invoke (IAM guards it)."""

    customer_id: int | None = None
    subject: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def trusted(cls) -> Caller:
        return cls()

    @property
    def is_trusted(self) -> bool:
        return self.customer_id is None


class _NoRunner:
    def start(self, execution_input: dict[str, Any]) -> None:
        raise ProviderNotConfigured("Image jobs are not configured on this service.")


class ImageService:
    def __init__(
        self,
        settings: ServiceSettings,
        store: ImageStore,
        provider_for: Callable[[str], ImageProvider] = get_image_provider,
        job_runner: JobRunner | None = None,
        job_store: JobStore | None = None,
        usage: UsageLedger | None = None,
        clock: Callable[[], float] = time.monotonic,
        catalog: Callable[[], Catalog] = catalogs.current_catalog,
        today: Callable[[], datetime.date] = catalogs.today,
    ) -> None:
        self.settings = settings
        self.catalog = catalog  # the catalog in force (shipped file + ops overlay)
        self.today = today  # the clock that decides which models are shut down
        self.store = store
        self.provider_for = provider_for
        self.clock = clock  # seconds, for a request's deadline; tests move it by hand
        self.usage = usage if usage is not None else usage_ledger_for(settings)
        self.jobs = JobService(
            settings,
            store,
            job_store or JobStore(settings.jobs_table),
            job_runner or _NoRunner(),
        )

    # --- the steps -----------------------------------------------------------------------

    def authorize(self, request: ImageGenerationRequest, caller: Caller) -> None:
        if caller.is_trusted or caller.customer_id == request.customer_id:
            return
        if self.settings.admin_scope in caller.scopes:
            return
        raise Forbidden("The token does not allow acting for this customer_id.")

    def prepare(
        self, request: ImageGenerationRequest, *, timeout_seconds: float
    ) -> PreparedGeneration:
        """Resolve, fit and load the inputs. ``timeout_seconds`` is the whole request's time:
        what fetching input images uses, the provider call does not get again."""
        deadline = self.clock() + timeout_seconds
        resolved = self.resolve_model(request.image.model)
        settings, warnings = normalize_settings(request.prompt, request.image, resolved.spec)
        warnings = _retirement_warnings(resolved) + warnings
        image = request.image
        references = [(ref, f"input image {i + 1}") for i, ref in enumerate(image.input_images)]
        if image.mask:
            references.append((image.mask, "mask"))
        loaded = self._load_inputs(request.customer_id, references, deadline)
        inputs, mask = (loaded[:-1], loaded[-1]) if image.mask else (loaded, None)
        remaining = deadline - self.clock()
        if references and remaining < MIN_PROVIDER_SECONDS:
            raise ProviderTimeout("Fetching the input images used up the time for this request.")
        provider_request = ProviderRequest(
            prompt=request.prompt,
            model=resolved.spec,
            settings=settings,
            input_images=inputs,
            mask=mask,
            provider_options=image.provider_options,
            timeout_seconds=remaining,
        )
        return PreparedGeneration(request, resolved.spec, provider_request, warnings)

    def resolve_model(self, requested: str | None) -> ResolvedModel:
        return self.catalog().resolve(
            requested, today=self.today(), enabled_retired=self.settings.retired_models_enabled
        )

    def model_catalog(self) -> dict[str, Any]:
        """``GET /image/models``: every model and alias, with its status today."""
        return self.catalog().describe(
            self.today(), enabled_retired=self.settings.retired_models_enabled
        )

    def _load_inputs(self, customer_id: int, references: list[tuple[str, str]], deadline: float):
        """Each input image within the request's time, checked against its total size budget."""
        loaded, total = [], 0
        for reference, what in references:
            image = load_input_image(
                reference,
                customer_id=customer_id,
                store=self.store,
                settings=self.settings,
                what=what,
                timeout_seconds=max(0.0, deadline - self.clock()),
            )
            total += len(image.data)
            if total > self.settings.max_input_images_total_bytes:
                limit = self.settings.max_input_images_total_bytes // MiB
                raise PayloadTooLarge(f"The input images add up to more than {limit} MiB.")
            loaded.append(image)
        return tuple(loaded)

    # --- the domain API: start or attach, wait, answer ----------------------------------------

    def start_job(
        self,
        request: ImageGenerationRequest,
        *,
        caller: Caller,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
        prepare_seconds: float | None = None,
    ) -> StartedJob:
        """Start the request's job — or, when ``idempotency_key`` was already used by this
        customer within the window, attach to that job (the provider is never called again;
        another body with the same key is a 422). ``fingerprint`` identifies the body (default:
        the canonical request); ``prepare_seconds`` bounds fetching the input images."""
        self.authorize(request, caller)
        claim = None
        if idempotency_key is not None:
            fingerprint = fingerprint or request_fingerprint(request.model_dump(mode="json"))
            claim = self.jobs.claim_for(
                request.customer_id, check_idempotency_key(idempotency_key), fingerprint
            )
            attached = self.jobs.attach(claim)
            if attached is not None:
                return StartedJob(attached, attached=True)
        if request.callback_url:
            check_callback_url(request.callback_url, self.settings)
        prepared = self.prepare(
            request, timeout_seconds=prepare_seconds or self.settings.provider_timeout_seconds
        )
        charge = self.admit(prepared)  # the customer's limits: before any provider is paid
        try:
            started = self.jobs.start(
                prepared, claim=claim, callback_url=request.callback_url, charge=charge
            )
        except BaseException:
            self.settle(charge, None)  # no job runs: release the reservation
            raise
        if started.attached:  # lost an idempotency race: the other request's job is the one
            self.settle(charge, None)
        return started

    def wait_for_job(self, record: JobRecord, *, seconds: float) -> JobRecord:
        """The job once final, or as it is after ``seconds``."""
        return self.jobs.wait(record, seconds=seconds)

    def job_answer(self, record: JobRecord) -> dict[str, Any]:
        """A finished job's ``data`` (fresh URLs), or its typed error raised."""
        return self.jobs.answer(record)

    def generate(
        self,
        request: ImageGenerationRequest,
        *,
        caller: Caller,
        wait_seconds: float,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
        prepare_seconds: float | None = None,
    ) -> StartedJob:
        """Start (or attach to) the request's job and wait for it up to ``wait_seconds``; the
        record as it then is — final or still running. What is left of the wait after
        preparing the request is what the job gets."""
        began = time.monotonic()
        started = self.start_job(
            request,
            caller=caller,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            prepare_seconds=prepare_seconds,
        )
        left = wait_seconds - (time.monotonic() - began)
        return StartedJob(self.wait_for_job(started.record, seconds=left), started.attached)

    # --- per-customer limits and budgets (image_service.usage) -------------------------------

    def admit(self, prepared: PreparedGeneration) -> Charge | None:
        """Count the request against the customer's rate limit and reserve its estimated cost
        against its budgets; ``CustomerRateLimited`` / ``BudgetExceeded`` when over. The job's
        last step settles it (``pipeline.JobPipeline``)."""
        if self.usage is None:
            return None
        settings = prepared.provider_request.settings
        estimate = prepared.model.admission_estimate(
            quality=settings.quality, size=settings.size, resolution=settings.resolution
        )
        return self.usage.admit(
            prepared.request.customer_id,
            estimate_usd=(estimate or 0.0) * settings.n,
            provider=prepared.model.provider,
            model=prepared.model.id,
        )

    def settle(
        self, charge: Charge | None, cost_usd: float | None, *, job_id: str | None = None
    ) -> None:
        """The actual cost replaces the reservation (``None``: nothing produced, released)."""
        if charge is not None and self.usage is not None:
            self.usage.settle(charge, cost_usd, job_id=job_id)

    def usage_of(self, *, caller: Caller, customer_id: int | None = None) -> dict[str, Any]:
        """The caller's own usage and limits (another customer's only with the admin scope)."""
        owner = self._owner(caller, customer_id)
        if self.usage is None:
            raise NotFound("Usage limits are not enabled on this service.")
        return self.usage.usage(owner)

    def job(self, job_id: str, *, caller: Caller, customer_id: int | None = None) -> JobRecord:
        """A job of the caller's own customer (another customer's only with the admin scope)."""
        return self.jobs.get(self._owner(caller, customer_id), job_id)

    def list_jobs(
        self, *, caller: Caller, limit: int, cursor: str | None, customer_id: int | None = None
    ) -> tuple[list[JobRecord], str | None]:
        """The caller's jobs, newest first."""
        return self.jobs.list(self._owner(caller, customer_id), limit=limit, cursor=cursor)

    def _owner(self, caller: Caller, customer_id: int | None) -> int:
        owner = caller.customer_id
        if customer_id is not None and (
            caller.is_trusted or self.settings.admin_scope in caller.scopes
        ):
            owner = customer_id
        if owner is None:
            raise NotFound("No such job.")
        return owner


# --- helpers -----------------------------------------------------------------------------


def _retirement_warnings(resolved: ResolvedModel) -> list[SettingWarning]:
    return [SettingWarning(kind, "model", message) for kind, message in resolved.lifecycle_notes()]
