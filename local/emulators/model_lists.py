"""The model lists the emulated providers publish, as of the emulator's date — and what a test
plants in them.

What each provider lists is the emulator's own knowledge of that provider (PROVIDERS.md,
2026-11-30): the models below, with their shutdown dates from the same table the emulators
refuse shut-down models by (``lifecycle.SHUTDOWN_DATES``) — never the service's catalog,
otherwise the drift check could never find a difference. A model past its shutdown date is no
longer listed (as the real lists do); OpenAI publishes the ``shutdown_date`` of a deprecated
model, Gemini and xAI publish none.

Planting (tests, ``make models-check``): ``emulator.model_listing.plant("gpt-image-2",
shutdown_date=date(2026, 12, 10))`` announces a shutdown, ``plant("gpt-image-9")`` adds a model
the catalog does not know, ``withdraw(id)`` removes one. ``EMULATOR_PLANTED_MODELS`` does the
same from the environment: ``openai:gpt-image-2@2026-12-10,xai:grok-imagine-image-3``.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from local.emulators.base import EmulatorResponse
from local.emulators.lifecycle import SHUTDOWN_DATES, Clock, utc_today

PLANT_VARIABLE = "EMULATOR_PLANTED_MODELS"
CREATED = 1767225600  # a fixed "created" timestamp: the lists are deterministic


@dataclass(frozen=True)
class ListedModel:
    id: str
    shutdown_date: datetime.date | None = None  # the provider's date: lifecycle's, or planted
    aliases: tuple[str, ...] = ()  # xAI
    methods: tuple[str, ...] = ("generateContent", "countTokens")  # Gemini
    image: bool = True  # xAI's image list holds image models only


def _d(text: str) -> datetime.date:
    return datetime.date.fromisoformat(text)


# --- what each provider lists (PROVIDERS.md § Model lifecycle) -------------------------------

OPENAI_LISTED = (
    ListedModel("dall-e-2"),
    ListedModel("dall-e-3"),
    ListedModel("gpt-image-1"),
    ListedModel("gpt-image-1.5"),
    ListedModel("gpt-image-1.5-2025-12-16"),
    ListedModel("gpt-image-1-mini"),
    ListedModel("chatgpt-image-latest"),
    ListedModel("gpt-image-2"),
    ListedModel("gpt-image-2-2026-04-21"),
    ListedModel("gpt-image-2.5-flare"),
    ListedModel("gpt-image-2.5-sunburst"),
    ListedModel("gpt-image-2.6-flare"),
    ListedModel("gpt-image-2.6-sunburst"),
    # The real list mixes every kind of model: the check must filter.
    ListedModel("gpt-5", image=False),
    ListedModel("gpt-5-mini", image=False),
    ListedModel("text-embedding-3-small", image=False),
    ListedModel("whisper-1", image=False),
)
_PREDICT = ("predict",)
GEMINI_LISTED = (
    ListedModel("gemini-2.0-flash-preview-image-generation"),
    ListedModel("gemini-3-pro-image-preview"),
    ListedModel("gemini-3.1-flash-image-preview"),
    ListedModel("imagen-4.0-generate-001", methods=_PREDICT),
    ListedModel("imagen-4.0-ultra-generate-001", methods=_PREDICT),
    ListedModel("imagen-4.0-fast-generate-001", methods=_PREDICT),
    ListedModel("imagen-3.0-generate-002", methods=_PREDICT),
    ListedModel("gemini-2.5-flash-image"),
    ListedModel("gemini-3.1-flash-image"),
    ListedModel("gemini-3-pro-image"),
    ListedModel("gemini-nano-banana-2.1"),
    ListedModel("gemini-3.1-flash-lite-image"),
    ListedModel("gemini-2.5-pro", image=False),
    ListedModel("gemini-2.5-flash", image=False),
    ListedModel("gemini-3-pro", image=False),
    ListedModel("gemini-embedding-001", image=False, methods=("embedContent",)),
)
XAI_LISTED = (
    ListedModel("grok-2-image-1212", aliases=("grok-2-image",)),
    ListedModel("grok-imagine-image-quality", aliases=("grok-imagine-image-pro",)),
    ListedModel("grok-imagine-image"),
    ListedModel("grok-imagine-image-2.0"),
)


class ModelListing:
    """One provider's list as of ``clock()``, with what a test planted or withdrew."""

    def __init__(
        self,
        provider: str,
        models: Iterable[ListedModel],
        *,
        clock: Clock = utc_today,
        publishes_shutdown_dates: bool = False,
    ) -> None:
        dates = SHUTDOWN_DATES.get(provider, {})
        self._models = {
            m.id: replace(m, shutdown_date=m.shutdown_date or dates.get(m.id)) for m in models
        }
        self.clock = clock
        self.publishes_shutdown_dates = publishes_shutdown_dates
        self.fail_status: int | None = None  # a test sets it: the list answers this error
        self.page_size_limit = 1000  # Gemini's maximum; a test lowers it to see pagination

    def plant(
        self,
        model_id: str,
        *,
        shutdown_date: datetime.date | None = None,
        aliases: tuple[str, ...] = (),
    ) -> None:
        """Add a model, or announce a shutdown date for a listed one."""
        if shutdown_date is not None and not self.publishes_shutdown_dates:
            raise ValueError("this provider's model list carries no shutdown dates")
        current = self._models.get(model_id, ListedModel(model_id))
        self._models[model_id] = replace(
            current,
            shutdown_date=shutdown_date or current.shutdown_date,
            aliases=aliases or current.aliases,
        )

    def withdraw(self, model_id: str) -> None:
        self._models.pop(model_id)

    def current(self) -> list[ListedModel]:
        today = self.clock()
        return [
            m for m in self._models.values() if m.shutdown_date is None or m.shutdown_date > today
        ]


# --- the providers' answers ------------------------------------------------------------------


def openai_models_answer(listing: ModelListing, api_key: str) -> EmulatorResponse:
    if listing.fail_status:
        # As OpenAI does, the message quotes the (masked) key: a client must never show it.
        message = f"Incorrect API key provided: {api_key[:3]}***{api_key[-4:]}."
        code = "invalid_api_key" if listing.fail_status == 401 else "server_error"
        return EmulatorResponse.json(
            listing.fail_status,
            {"error": {"message": message, "type": "invalid_request_error", "param": None,
                       "code": code}},
        )  # fmt: skip
    data = []
    for model in listing.current():
        item: dict[str, Any] = {
            "id": model.id,
            "object": "model",
            "created": CREATED,
            "owned_by": "system" if model.image else "openai",
        }
        if model.shutdown_date:
            item["shutdown_date"] = model.shutdown_date.isoformat()
        data.append(item)
    return EmulatorResponse.json(200, {"object": "list", "data": data})


def gemini_models_answer(listing: ModelListing, query: Mapping[str, str]) -> EmulatorResponse:
    """``pageSize`` (default 50, at most ``page_size_limit``) and an opaque ``pageToken``."""
    if listing.fail_status:
        status = {503: "UNAVAILABLE", 403: "PERMISSION_DENIED"}.get(listing.fail_status, "INTERNAL")
        return EmulatorResponse.json(
            listing.fail_status,
            {"error": {"code": listing.fail_status, "message": "The service is currently "
                       "unavailable.", "status": status}},
        )  # fmt: skip
    try:
        size = min(int(query.get("pageSize", "50")), listing.page_size_limit)
        start = _offset(query["pageToken"]) if "pageToken" in query else 0
    except ValueError:
        return EmulatorResponse.json(
            400,
            {
                "error": {
                    "code": 400,
                    "message": "Invalid page token.",
                    "status": "INVALID_ARGUMENT",
                }
            },
        )
    models = listing.current()
    page = models[start : start + max(size, 1)]
    body: dict[str, Any] = {
        "models": [
            {
                "name": f"models/{m.id}",
                "version": "001",
                "displayName": m.id.replace("-", " ").title(),
                "description": f"{m.id} (emulated)",
                "inputTokenLimit": 65536 if m.image else 1048576,
                "outputTokenLimit": 32768 if m.image else 65536,
                "supportedGenerationMethods": list(m.methods),
            }
            for m in page
        ]
    }
    if start + len(page) < len(models):
        body["nextPageToken"] = base64.urlsafe_b64encode(f"o:{start + len(page)}".encode()).decode()
    return EmulatorResponse.json(200, body)


def xai_models_answer(listing: ModelListing) -> EmulatorResponse:
    if listing.fail_status:
        return EmulatorResponse.json(
            listing.fail_status, {"code": "Internal Server Error", "error": "Internal error."}
        )
    return EmulatorResponse.json(
        200,
        {
            "models": [
                {
                    "id": m.id,
                    "fingerprint": "fp_emulated0",
                    "max_prompt_length": 8000,
                    "created": CREATED,
                    "object": "model",
                    "owned_by": "xai",
                    "version": "1.0.0",
                    "input_modalities": ["text", "image"],
                    "output_modalities": ["image"],
                    "image_price": 200,
                    "aliases": list(m.aliases),
                }
                for m in listing.current()
                if m.image
            ]
        },
    )


def _offset(token: str) -> int:
    text = base64.urlsafe_b64decode(token.encode()).decode()
    if not text.startswith("o:"):
        raise ValueError(token)
    return int(text[2:])


# --- planting from the environment ------------------------------------------------------------


def plant_models(listings: Mapping[str, ModelListing], spec: str) -> None:
    """Apply ``EMULATOR_PLANTED_MODELS``: ``provider:model[@YYYY-MM-DD]``, comma-separated."""
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        provider, _, rest = entry.partition(":")
        model_id, _, day = rest.partition("@")
        if provider not in listings or not model_id:
            raise ValueError(
                f"{PLANT_VARIABLE}: {entry!r} is not provider:model[@YYYY-MM-DD] with a "
                f"provider among {', '.join(sorted(listings))}"
            )
        listings[provider].plant(model_id, shutdown_date=_d(day) if day else None)
