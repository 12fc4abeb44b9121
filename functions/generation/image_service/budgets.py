"""How long a generation is expected to take, and how long its job may run: one place.

The figures are users' measurements (PROVIDERS.md § "Model lifecycle": gpt-image-2 at ``high``
60–120 s, grok-imagine-image-2.0 at 2K 60–80 s, Flux 5–15 s, Gemini 4K tens of seconds). The
expected time drives the progress estimate and ``Retry-After`` of a running job; the budget —
a multiple of it, capped by the deployment — is how long the job's worker may wait for the
provider before the job fails with a 504. A model the table does not know gets the provider's
figure, and a provider it does not know a conservative one.
"""

from __future__ import annotations

from image_service.providers.base import GenerationSettings
from image_service.registry import ModelSpec

# Seconds for one 1-megapixel image at the model's default quality, per provider and API.
_BASE_SECONDS = {
    "openai": 30.0,
    "stability": 10.0,
    "flux": 15.0,
    "google": 20.0,
    "xai": 20.0,
}
# gpt-image's quality is most of its latency (`high` on gpt-image-2: 60–120 s).
_QUALITY_FACTOR = {"low": 0.4, "medium": 1.0, "standard": 1.0, "hd": 2.0, "high": 2.5, "auto": 2.5}
# Size tiers sent beside a ratio (Gemini, xAI): 2K about three times 1K, 4K about six.
_RESOLUTION_FACTOR = {"1k": 1.0, "2k": 3.0, "4k": 6.0}
UNKNOWN_PROVIDER_SECONDS = 60.0
BUDGET_FACTOR = 3.0  # the budget is this many expected durations ...
MIN_BUDGET_SECONDS = 60.0  # ... never less than this (a slow minute is not a failure) ...


def expected_seconds(model: ModelSpec, settings: GenerationSettings) -> float:
    """The expected duration of one provider call for these settings."""
    seconds = _BASE_SECONDS.get(model.provider, UNKNOWN_PROVIDER_SECONDS)
    if model.capabilities.qualities and settings.quality:
        seconds *= _QUALITY_FACTOR.get(settings.quality, 1.0)
    if settings.width and settings.height:
        seconds *= max(1.0, settings.width * settings.height / (1024 * 1024))
    if settings.resolution:
        seconds *= _RESOLUTION_FACTOR.get(settings.resolution.lower(), 1.0)
    return round(seconds, 1)


def job_budget_seconds(
    model: ModelSpec, settings: GenerationSettings, *, max_seconds: float
) -> float:
    """How long the job may wait for the provider: ``BUDGET_FACTOR`` expected durations, at
    least ``MIN_BUDGET_SECONDS``, at most the deployment's ``max_seconds`` (the worker's
    timeout, and what the tests compress)."""
    budget = max(MIN_BUDGET_SECONDS, BUDGET_FACTOR * expected_seconds(model, settings))
    return float(min(budget, max_seconds))
