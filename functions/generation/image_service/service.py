"""``ImageService``: validate, resolve the model, generate, store, answer.

The one place where a request becomes images. It knows the registry, the provider interface
and storage; it knows nothing of API Gateway, Lambda events or HTTP status codes.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from aws_lambda_powertools import Logger

from image_common.errors import Forbidden, NotFound, PayloadTooLarge, ProviderTimeout
from image_common.settings import MiB, ServiceSettings
from image_service import catalog as catalogs
from image_service.inputs import load_input_image
from image_service.job_runners import job_runner_for
from image_service.jobs import (
    JobRecord,
    JobRunner,
    JobService,
    JobStore,
    final_answer,
)
from image_service.models import MAX_SEED, ImageGenerationRequest
from image_service.normalize import normalize_settings
from image_service.providers import get_image_provider
from image_service.providers.base import (
    GeneratedImage,
    ImageProvider,
    ProviderRequest,
    ProviderResult,
    SettingWarning,
)
from image_service.registry import Catalog, ModelSpec, ResolvedModel
from image_service.storage import ImageStore, StoredImage, prompt_hash
from image_service.telemetry import record_provider_call
from image_service.usage import Charge, Limits, UsageLedger

logger = Logger(child=True)
MAX_PARALLEL_CALLS = 4
MIN_PROVIDER_SECONDS = 1.0  # less than this left for the provider: answer 504 now, not later
_DATA_URL_OVERHEAD = 64  # "data:image/webp;base64," and JSON quoting, per image


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


@dataclass(frozen=True)
class PreparedGeneration:
    """A request resolved and fitted to its model, ready for a provider (or a Flux job)."""

    request: ImageGenerationRequest
    model: ModelSpec
    provider_request: ProviderRequest
    warnings: list[SettingWarning]


class ImageService:
    def __init__(
        self,
        settings: ServiceSettings,
        store: ImageStore,
        provider_for: Callable[[str], ImageProvider] = get_image_provider,
        job_runner: JobRunner | None = None,
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
        self._job_runner = job_runner
        self._jobs: JobService | None = None
        self.usage = usage if usage is not None else usage_ledger_for(settings)

    @property
    def jobs(self) -> JobService:
        """Asynchronous generations (Flux): created on first use, with the configured runner."""
        if self._jobs is None:
            runner = self._job_runner or job_runner_for(self.settings)
            self._jobs = JobService(self.settings, JobStore(self.store), runner, self.provider_for)
        return self._jobs

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

    def generate(
        self,
        request: ImageGenerationRequest,
        *,
        caller: Caller,
        timeout_seconds: float,
        wait_for_job: bool = False,
    ) -> dict[str, Any]:
        """The answer's ``data``. A model that runs as a job (Flux) answers the started job
        (202) — or, with ``wait_for_job`` (a direct invoke, no 30 s limit), its final answer."""
        self.authorize(request, caller)
        prepared = self.prepare(request, timeout_seconds=timeout_seconds)
        charge = self.admit(prepared)  # the customer's limits: before any provider is paid
        if prepared.model.capabilities.asynchronous:
            try:
                job = self.jobs.start(prepared, charge=charge)
            except BaseException:
                self.settle(charge, None)
                raise
            if not wait_for_job:
                return job.accepted()
            return final_answer(self.jobs.wait(job, timeout_seconds=timeout_seconds))
        started = self.clock()
        try:
            result = self.run_provider(prepared.provider_request)
        except BaseException:
            self.settle(charge, None)  # nothing produced: release the reservation
            raise
        cost = _cost(result, prepared.model, prepared.provider_request.settings)
        self.settle(charge, cost if cost is not None else 0.0)  # unknown price: 0, not released
        logger.info(
            "images generated",
            extra={
                "provider": prepared.model.provider,
                "model": prepared.model.id,
                "images": len(result.images),
                "provider_ms": round((self.clock() - started) * 1000),
                "customer_id": request.customer_id,
            },
        )
        return self.deliver(prepared, result)

    # --- per-customer limits and budgets (image_service.usage) -------------------------------

    def admit(self, prepared: PreparedGeneration) -> Charge | None:
        """Count the request against the customer's rate limit and reserve its estimated cost
        against its budgets; ``CustomerRateLimited`` / ``BudgetExceeded`` when over."""
        if self.usage is None:
            return None
        settings = prepared.provider_request.settings
        estimate = prepared.model.pricing.image_price(
            quality=settings.quality or "auto", size=settings.size, resolution=settings.resolution
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
        owner = caller.customer_id
        if customer_id is not None and (
            caller.is_trusted or self.settings.admin_scope in caller.scopes
        ):
            owner = customer_id
        if owner is None:
            raise NotFound("No customer to show usage for.")
        if self.usage is None:
            raise NotFound("Usage limits are not enabled on this service.")
        return self.usage.usage(owner)

    def job(self, job_id: str, *, caller: Caller, customer_id: int | None = None) -> JobRecord:
        """A job of the caller's own customer (another customer's only with the admin scope)."""
        owner = caller.customer_id
        if customer_id is not None and (
            caller.is_trusted or self.settings.admin_scope in caller.scopes
        ):
            owner = customer_id
        if owner is None:
            raise NotFound("No such job.")
        return self.jobs.get(owner, job_id)

    def run_provider(self, provider_request: ProviderRequest) -> ProviderResult:
        """Call the provider, in parallel batches of at most the model's images per call."""
        provider = self.provider_for(provider_request.model.provider)

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
            warnings=_unique([w for r in results for w in r.warnings]),
            cost_usd=None if None in costs else round(sum(costs), 6),
            usage=_total_usage([r.usage for r in results]),
        )

    def deliver(self, prepared: PreparedGeneration, result: ProviderResult) -> dict[str, Any]:
        """Store the images (or inline them) and shape the answer's ``data``."""
        request, model = prepared.request, prepared.model
        warnings = _unique(prepared.warnings + result.warnings)
        store = request.save_to_db
        if not store and _inline_size(result.images) > self.settings.max_response_bytes:
            store = True
            warnings.append(
                SettingWarning(
                    "adjusted-setting",
                    "save_to_db",
                    "The image is too large to return inline (Lambda's 6 MB response limit); "
                    "it was stored and a URL returned instead.",
                )
            )
        metadata = {
            "provider": model.provider,
            "model": model.id,
            "prompt-sha256": prompt_hash(request.prompt),
            "customer-id": str(request.customer_id),
        }
        stored = (
            self.store.store_images(
                request.customer_id, [item.image for item in result.images], metadata=metadata
            )
            if store
            else [None] * len(result.images)
        )
        images = [
            _delivered(item, where) for item, where in zip(result.images, stored, strict=True)
        ]
        settings = prepared.provider_request.settings
        data: dict[str, Any] = {
            "image_url": images[0]["image_url"],
            "provider": model.provider,
            "model": model.id,
            "settings": settings.reported(),
            "warnings": [w.to_dict() for w in warnings],
            "cost_usd": _cost(result, model, settings, len(images)),
        }
        if "image_key" in images[0]:
            data["image_key"] = images[0]["image_key"]
        data["content_type"] = result.images[0].image.mime_type
        if result.images[0].revised_prompt:
            data["revised_prompt"] = result.images[0].revised_prompt
        if result.images[0].seed is not None:
            data["seed"] = result.images[0].seed
        if result.usage:
            data["usage"] = result.usage
        if len(images) > 1:
            data["images"] = images
        return data


# --- helpers -----------------------------------------------------------------------------


def usage_ledger_for(settings: ServiceSettings) -> UsageLedger | None:
    if not settings.usage_table:
        return None
    defaults = Limits(
        requests_per_minute=settings.rate_limit_per_minute,
        daily_budget_usd=settings.daily_budget_usd,
        monthly_budget_usd=settings.monthly_budget_usd,
    )
    return UsageLedger(settings.usage_table, defaults)


def _delivered(item: GeneratedImage, stored: StoredImage | None) -> dict[str, Any]:
    """One image of the answer: its stored URL and key, or its data URL — built from the
    provider's own base64 when it sent base64 (no decode and re-encode of the same text)."""
    answer: dict[str, Any]
    if stored is not None:
        answer = {"image_url": stored.url, "image_key": stored.key}
    else:
        answer = {"image_url": item.image.to_data_url()}
    answer["content_type"] = item.image.mime_type
    if item.revised_prompt:
        answer["revised_prompt"] = item.revised_prompt
    if item.seed is not None:
        answer["seed"] = item.seed
    return answer


def _retirement_warnings(resolved: ResolvedModel) -> list[SettingWarning]:
    return [SettingWarning(kind, "model", message) for kind, message in resolved.lifecycle_notes()]


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


def _unique(warnings: list[SettingWarning]) -> list[SettingWarning]:
    return list(dict.fromkeys(warnings))


def _inline_size(images: list[GeneratedImage]) -> int:
    """The answer's size with every image inline. With ``n > 1`` the first data URL is in it
    twice: as ``image_url`` and as ``images[0].image_url``."""
    sizes = [i.image.data_url_length + _DATA_URL_OVERHEAD for i in images]
    return sum(sizes) + (sizes[0] if len(sizes) > 1 else 0)


def _cost(
    result: ProviderResult, model: ModelSpec, settings, count: int | None = None
) -> float | None:
    """The provider's own figure when it gives one, else the registry's price, else None."""
    if result.cost_usd is not None:
        return result.cost_usd
    price = model.pricing.image_price(
        quality=settings.quality or "auto", size=settings.size, resolution=settings.resolution
    )
    count = len(result.images) if count is None else count
    return None if price is None else round(price * count, 6)
