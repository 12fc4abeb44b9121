"""The providers' own model lifecycle, as they publish it (PROVIDERS.md § Model lifecycle).

Deliberately independent of the service's catalog (``catalog.json``): the emulators refuse a
shut-down model from its shutdown date on, exactly as the provider does, so a mistake in the
catalog (a wrong date, a dead successor) fails the end-to-end tests instead of production.
Where a provider published no exact date ("early 2026", "gone") the date here is the latest
plausible one; the catalog must stop sending the model no later than that.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

Clock = Callable[[], datetime.date]
_D = datetime.date

SHUTDOWN_DATES: dict[str, dict[str, datetime.date]] = {
    "openai": {
        "dall-e-2": _D(2026, 5, 12),
        "dall-e-3": _D(2026, 5, 12),
        "gpt-image-1": _D(2026, 10, 23),
        "gpt-image-1.5": _D(2026, 12, 1),
        "gpt-image-1.5-2025-12-16": _D(2026, 12, 1),
        "gpt-image-1-mini": _D(2026, 12, 1),
        "chatgpt-image-latest": _D(2026, 12, 1),
    },
    "google": {
        "gemini-3-pro-image-preview": _D(2026, 6, 25),
        "gemini-3.1-flash-image-preview": _D(2026, 6, 25),
        "imagen-4.0-generate-001": _D(2026, 8, 17),
        "imagen-4.0-ultra-generate-001": _D(2026, 8, 17),
        "imagen-4.0-fast-generate-001": _D(2026, 8, 17),
        "imagen-3.0-generate-002": _D(2026, 8, 17),
        "gemini-2.5-flash-image": _D(2026, 10, 2),
        "gemini-2.0-flash-preview-image-generation": _D(2025, 12, 31),  # "gone"
    },
    "xai": {
        "grok-2-image": _D(2026, 3, 31),  # "early 2026"
        "grok-2-image-1212": _D(2026, 3, 31),
        "grok-imagine-image-quality": _D(2026, 11, 2),
        "grok-imagine-image-pro": _D(2026, 11, 2),
    },
    "flux": {},  # BFL and Stability have announced no shutdowns of these models
    "stability": {},
}


def utc_today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


def is_shut_down(provider: str, model: str, today: datetime.date) -> bool:
    shutdown = SHUTDOWN_DATES[provider].get(model)
    return shutdown is not None and today >= shutdown
