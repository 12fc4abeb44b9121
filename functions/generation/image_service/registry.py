"""The model catalog: what each model is, what it takes, what it costs, and when it dies.

The facts are data, in ``catalog.json`` beside this file (readable without reading Python);
this module gives them types and rules, validated when the function starts: a catalog whose
successor chains do not end at a model that never shuts down, whose aliases point nowhere or
whose models name a wire API no adapter speaks is refused. ``catalog.py`` lays an ops overlay
over it; adapters read capabilities from here instead of branching on model names.

Lifecycle is computed from dates, never flipped by hand: a model is ``retired`` from its
``shutdown_date`` on (the provider answers not-found from that day), ``deprecated`` once a
shutdown is announced or ``deprecated_since`` has passed, else ``preview`` or ``active``.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from image_common.errors import UnknownModel

Provider = Literal["openai", "stability", "flux", "google", "xai"]
Status = Literal["active", "preview", "deprecated", "retired"]

PROVIDERS: tuple[Provider, ...] = ("openai", "stability", "flux", "google", "xai")
# The wire API variants each provider's adapter speaks; a model naming another is refused.
PROVIDER_APIS: dict[str, frozenset[str]] = {
    "openai": frozenset({"gpt-image", "dall-e"}),
    "stability": frozenset({"sd3", "core", "ultra"}),
    "flux": frozenset({"flux-dimensions", "flux-ultra", "flux-kontext", "flux-2"}),
    "google": frozenset({"gemini", "imagen"}),
    "xai": frozenset({"grok"}),
}
CATALOG_FILE = Path(__file__).with_name("catalog.json")
MEGAPIXEL = 1_000_000


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SizeRule(_Frozen):
    """Free width/height within bounds (gpt-image-2.x, Flux dev/pro, FLUX.2)."""

    min_side: int = Field(gt=0)
    max_side: int = Field(gt=0)
    multiple: int = Field(gt=0)
    max_ratio: float = Field(default=4.0, ge=1)
    min_pixels: int = Field(default=0, ge=0)
    max_pixels: int = Field(default=0, ge=0)  # 0: only max_side bounds the area
    default: tuple[int, int] = (1024, 1024)


class Capabilities(_Frozen):
    sizes: tuple[tuple[int, int], ...] = ()  # fixed legal sizes, first is the default
    size_rule: SizeRule | None = None  # free sizes
    aspect_ratios: tuple[str, ...] = ()  # the API takes a ratio instead of pixels
    resolutions: tuple[str, ...] = ()  # size tiers sent beside the ratio (Gemini 512/1K, xAI 1k)
    qualities: tuple[str, ...] = ()
    complexities: tuple[str, ...] = ()  # gpt-image-2.6's ``complexity``
    output_formats: tuple[str, ...] = ("png",)
    max_images_per_call: int = Field(default=1, ge=1)
    max_input_images: int = Field(default=0, ge=0)  # 0: no image-to-image
    mask: bool = False
    seed: bool = False
    negative_prompt: bool = False
    style_presets: tuple[str, ...] = ()
    max_prompt_chars: int = Field(default=4000, gt=0)
    asynchronous: bool = False  # submit/poll: runs as a job (Flux)
    # False: in image-to-image the output keeps the input's shape and no ratio may be sent (sd3)
    ratio_with_input_images: bool = True
    safety_tolerance_max: int | None = None  # Flux: 6 on FLUX.1, 5 on FLUX.2

    @property
    def default_size(self) -> str | None:
        """The ``WxH`` the normalizer sends when the request asks for no size (None: ratio APIs)."""
        if self.size_rule:
            return "{}x{}".format(*self.size_rule.default)
        return "{}x{}".format(*self.sizes[0]) if self.sizes else None

    @field_validator("sizes", mode="before")
    @classmethod
    def _sizes_as_text(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(
                tuple(int(side) for side in item.split("x")) if isinstance(item, str) else item
                for item in value
            )
        return value

    @field_validator("aspect_ratios")
    @classmethod
    def _ratios_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for ratio in value:
            aspect_ratio_value(ratio)  # raises ValueError on "16-9"
        return value

    @model_validator(mode="after")
    def _one_size_vocabulary(self) -> Capabilities:
        if bool(self.sizes) + bool(self.size_rule) + bool(self.aspect_ratios) > 1:
            raise ValueError("a model takes fixed sizes, a size rule or aspect ratios: one")
        return self


class TokenPrices(_Frozen):
    """USD per million tokens, by kind, as the providers' usage reports count them."""

    text_input: float | None = Field(default=None, ge=0)
    image_input: float | None = Field(default=None, ge=0)
    image_output: float | None = Field(default=None, ge=0)


class MegapixelPrice(_Frozen):
    """FLUX.2: the first megapixel, then each further one (input megapixels count too)."""

    first: float = Field(ge=0)
    additional: float = Field(ge=0)


class Pricing(_Frozen):
    """The fallback estimates; a provider's own figure (usage, cost, ticks) wins over these."""

    per_image: dict[str, float] = Field(default_factory=dict)  # quality@WxH, quality, WxH, default
    tokens_usd_per_million: TokenPrices | None = None
    per_megapixel: MegapixelPrice | None = None
    # USD per image reserved at admission when no list price applies (token-, tick-priced or
    # unpublished); the settled cost replaces it. Never reported as a cost.
    reserve_usd: float | None = Field(default=None, gt=0)

    def image_price(
        self, *, quality: str | None, size: str | None, resolution: str | None = None
    ) -> float | None:
        """One image's list price: the most specific ``per_image`` entry, else per megapixel."""
        for key in (f"{quality}@{size}", quality, size, resolution, "default"):
            if key and key in self.per_image:
                return self.per_image[key]
        if self.per_megapixel and size:
            width, height = (int(side) for side in size.split("x"))
            return self.megapixel_price(output_pixels=width * height)
        return None

    def token_cost(self, *, text_input: int = 0, image_input: int = 0, image_output: int = 0):
        """USD for the tokens a provider reported; None when any counted kind has no price
        (an estimate that leaves out the input tokens is wrong, not approximate)."""
        rates = self.tokens_usd_per_million
        if rates is None:
            return None
        total = 0.0
        for count, rate in (
            (text_input, rates.text_input),
            (image_input, rates.image_input),
            (image_output, rates.image_output),
        ):
            if count and rate is None:
                return None
            total += count * (rate or 0.0)
        return round(total / 1_000_000, 6)

    def megapixel_price(self, *, output_pixels: int, input_pixels: int = 0) -> float | None:
        if self.per_megapixel is None:
            return None
        megapixels = max(1, math.ceil((output_pixels + input_pixels) / MEGAPIXEL))
        price = self.per_megapixel.first + (megapixels - 1) * self.per_megapixel.additional
        return round(price, 6)


class ModelSpec(_Frozen):
    id: str = Field(min_length=1, max_length=100)
    provider: Provider
    api: str  # the wire API variant the adapter speaks for this model
    capabilities: Capabilities = Field(default_factory=Capabilities)
    pricing: Pricing = Field(default_factory=Pricing)
    released: datetime.date | None = None
    preview: bool = False
    deprecated_since: datetime.date | None = None
    shutdown_date: datetime.date | None = None  # the provider answers not-found from this day
    successor: str | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _api_is_spoken(self) -> ModelSpec:
        if self.api not in PROVIDER_APIS[self.provider]:
            raise ValueError(
                f"{self.id}: api '{self.api}' is not one the {self.provider} adapter speaks "
                f"({', '.join(sorted(PROVIDER_APIS[self.provider]))})"
            )
        if self.shutdown_date and not self.successor:
            raise ValueError(f"{self.id}: a model with a shutdown_date needs a successor")
        return self

    def admission_estimate(
        self, *, quality: str | None, size: str | None, resolution: str | None = None
    ) -> float | None:
        """USD to reserve for one image before the provider is paid: the list price at the size
        the request is sent at (the model's default size when it asks for none), else the
        catalog's ``reserve_usd``. None only for a model the catalog prices not at all. No
        quality asked is the provider's default, priced as ``auto``."""
        price = self.pricing.image_price(
            quality=quality or "auto",
            size=size or self.capabilities.default_size,
            resolution=resolution,
        )
        return price if price is not None else self.pricing.reserve_usd

    def status_on(self, today: datetime.date) -> Status:
        if self.shutdown_date and today >= self.shutdown_date:
            return "retired"
        if self.shutdown_date or (self.deprecated_since and today >= self.deprecated_since):
            return "deprecated"
        return "preview" if self.preview else "active"

    def describe(self, today: datetime.date) -> dict:
        caps = self.capabilities
        return {
            "id": self.id,
            "provider": self.provider,
            "status": self.status_on(today),
            "shutdown_date": _iso(self.shutdown_date),
            "deprecated_since": _iso(self.deprecated_since),
            "successor": self.successor,
            "note": self.note,
            "capabilities": {
                "sizes": [f"{w}x{h}" for w, h in caps.sizes],
                "size_rule": _describe_rule(caps.size_rule),
                "aspect_ratios": list(caps.aspect_ratios),
                "resolutions": list(caps.resolutions),
                "qualities": list(caps.qualities),
                "complexities": list(caps.complexities),
                "output_formats": list(caps.output_formats),
                "max_images_per_call": caps.max_images_per_call,
                "image_to_image": caps.max_input_images > 0,
                "max_input_images": caps.max_input_images,
                "mask": caps.mask,
                "seed": caps.seed,
                "negative_prompt": caps.negative_prompt,
                "style_presets": list(caps.style_presets),
                "max_prompt_chars": caps.max_prompt_chars,
                "asynchronous": caps.asynchronous,
                "ratio_with_input_images": caps.ratio_with_input_images,
            },
            "price_usd_per_image": dict(self.pricing.per_image) or None,
            "price_usd_per_million_tokens": (
                self.pricing.tokens_usd_per_million.model_dump(exclude_none=True)
                if self.pricing.tokens_usd_per_million
                else None
            ),
            "price_usd_per_megapixel": (
                self.pricing.per_megapixel.model_dump() if self.pricing.per_megapixel else None
            ),
        }


def _iso(day: datetime.date | None) -> str | None:
    return day.isoformat() if day else None


def _describe_rule(rule: SizeRule | None) -> dict | None:
    if rule is None:
        return None
    return {
        "min_side": rule.min_side,
        "max_side": rule.max_side,
        "multiple_of": rule.multiple,
        "max_ratio": rule.max_ratio,
        "min_pixels": rule.min_pixels or None,
        "max_pixels": rule.max_pixels or None,
    }


# Which provider a family of names belongs to (DESIGN.md § Model selection).
_FAMILIES: tuple[tuple[tuple[str, ...], Provider], ...] = (
    (("openai", "dall-e", "gpt-image", "chatgpt-image"), "openai"),
    (("flux",), "flux"),
    (("sd", "stability", "core", "ultra"), "stability"),
    (("gemini", "imagen"), "google"),
    (("grok",), "xai"),
)


def family_of(name: str) -> Provider | None:
    for prefixes, provider in _FAMILIES:
        if name.startswith(prefixes):
            return provider
    return None


class ResolvedModel(BaseModel):
    """What serves a request: the model, and why it is not the one asked for, if it is not."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    requested: str
    spec: ModelSpec
    retired: ModelSpec | None = None  # the shut-down model that was asked for, if any
    deprecated: bool = False  # ``spec`` is served but has an announced end

    def lifecycle_notes(self) -> list[tuple[str, str]]:
        """(warning type, message) pairs for the answer's ``warnings``."""
        notes = []
        if self.retired is not None:
            gone = self.retired
            notes.append(
                (
                    "model-retired",
                    f"{gone.id} was shut down by its provider on {_iso(gone.shutdown_date)}; "
                    f"the request was served by its successor, {self.spec.id}.",
                )
            )
        if self.deprecated:
            spec = self.spec
            when = (
                f"shuts down on {_iso(spec.shutdown_date)}"
                if spec.shutdown_date
                else "is deprecated"
            )
            successor = f"; move to {spec.successor}" if spec.successor else ""
            notes.append(("model-deprecated", f"{spec.id} {when}{successor}."))
        return notes


class Catalog(_Frozen):
    """Every model and alias, validated as a whole (``catalog.json`` plus any overlay)."""

    default_model: str
    aliases: dict[str, str] = Field(default_factory=dict)
    models: tuple[ModelSpec, ...]

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        by_id: dict[str, ModelSpec] = {}
        for spec in self.models:
            if spec.id in by_id:
                raise ValueError(f"model '{spec.id}' is listed twice")
            by_id[spec.id] = spec
        for alias, target in self.aliases.items():
            if alias in by_id:
                raise ValueError(f"alias '{alias}' hides the model of the same name")
            if target not in by_id:
                raise ValueError(f"alias '{alias}' points at unknown model '{target}'")
        if self.default_model not in by_id:
            raise ValueError(f"default_model '{self.default_model}' is not in the catalog")
        for spec in self.models:
            _chain_end(spec, by_id)
        return self

    @cached_property
    def by_id(self) -> dict[str, ModelSpec]:
        return {spec.id: spec for spec in self.models}

    def model(self, model_id: str) -> ModelSpec:
        return self.by_id[model_id]

    def accepted_names(self, provider: Provider | None = None) -> list[str]:
        names = [m.id for m in self.models if provider in (None, m.provider)]
        names += [
            alias
            for alias, target in self.aliases.items()
            if provider in (None, self.by_id[target].provider)
        ]
        return sorted(names)

    def resolve(
        self,
        requested: str | None,
        *,
        today: datetime.date,
        enabled_retired: frozenset[str] = frozenset(),
    ) -> ResolvedModel:
        """Map a caller's model name to the model that serves it on ``today``.

        A model past its shutdown date goes to its successor, and on down the chain to a live
        one. ``enabled_retired`` names shut-down models a deployment still wants served directly
        (its provider account still has them: the DALL·E and Imagen code paths).
        """
        name = (requested or self.default_model).strip().lower()
        spec = self.by_id.get(self.aliases.get(name, name))
        if spec is None:
            provider = family_of(name)
            scope = f" for provider '{provider}'" if provider else ""
            accepted = self.accepted_names(provider)
            raise UnknownModel(
                f"Unknown model '{requested}'{scope}. Accepted: {', '.join(accepted)}.",
                details={"accepted_models": accepted},
            )
        retired: ModelSpec | None = None
        while spec.status_on(today) == "retired" and spec.id not in enabled_retired:
            retired = retired or spec
            spec = self.by_id[spec.successor or ""]  # validated: every chain ends alive
        deprecated = spec.status_on(today) == "deprecated"
        return ResolvedModel(requested=name, spec=spec, retired=retired, deprecated=deprecated)

    def describe(
        self, today: datetime.date, *, enabled_retired: frozenset[str] = frozenset()
    ) -> dict:
        """Every model and alias with its status on ``today`` and what serves it."""

        def served_by(name: str) -> str:
            return self.resolve(name, today=today, enabled_retired=enabled_retired).spec.id

        models = [spec.describe(today) | {"served_by": served_by(spec.id)} for spec in self.models]
        aliases = [
            {
                "alias": alias,
                "model": target,
                "provider": self.by_id[target].provider,
                "served_by": served_by(alias),
            }
            for alias, target in sorted(self.aliases.items())
        ]
        return {
            "as_of": today.isoformat(),
            "default_model": self.default_model,
            "models": models,
            "aliases": aliases,
        }


def _chain_end(spec: ModelSpec, by_id: dict[str, ModelSpec]) -> ModelSpec:
    """Where ``spec``'s successor chain ends: a model with no shutdown date, or an error."""
    seen = [spec.id]
    while spec.shutdown_date is not None:
        successor = by_id.get(spec.successor or "")
        if successor is None:
            raise ValueError(f"{spec.id}: successor '{spec.successor}' is not in the catalog")
        if successor.id in seen:
            raise ValueError(f"successor chain loops: {' -> '.join([*seen, successor.id])}")
        if successor.provider != spec.provider:
            raise ValueError(f"{spec.id}: successor '{successor.id}' is another provider's model")
        seen.append(successor.id)
        spec = successor
    return spec


# --- the document ----------------------------------------------------------------------------


def parse_catalog(document: dict[str, Any]) -> Catalog:
    """``catalog.json``'s shape (capability sets expanded) → a validated ``Catalog``.

    Raises ``pydantic.ValidationError`` or ``ValueError`` naming what is wrong.
    """
    if not isinstance(document, dict):
        raise ValueError("the catalog must be a JSON object")
    sets = document.get("capability_sets") or {}
    models = []
    for entry in document.get("models") or []:
        entry = dict(entry)
        base = entry.pop("capability_set", None)
        if base is not None and base not in sets:
            raise ValueError(f"{entry.get('id')}: unknown capability_set '{base}'")
        entry["capabilities"] = {**(sets.get(base) or {}), **(entry.get("capabilities") or {})}
        models.append(entry)
    return Catalog.model_validate(
        {
            "default_model": document.get("default_model"),
            "aliases": document.get("aliases") or {},
            "models": models,
        }
    )


def shipped_document() -> dict[str, Any]:
    return json.loads(CATALOG_FILE.read_text(encoding="utf-8"))


def aspect_ratio_value(ratio: str) -> float:
    """ "16:9" → 1.777…; "9:19.5" (xAI) works too. Raises ValueError on anything else."""
    width, _, height = ratio.partition(":")
    try:
        value = float(width) / float(height)
    except ZeroDivisionError:
        value = math.inf
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"not an aspect ratio: {ratio!r}")
    return value


def log_ratio_distance(a: float, b: float) -> float:
    return abs(math.log(a) - math.log(b))


# Validated at import: a broken catalog fails the function's cold start, not a request.
SHIPPED_CATALOG: Catalog = parse_catalog(shipped_document())
# Views of the shipped catalog (no overlay): the one in force is ``catalog.current_catalog()``.
MODELS: Mapping[str, ModelSpec] = MappingProxyType(SHIPPED_CATALOG.by_id)
ALIASES: Mapping[str, str] = MappingProxyType(SHIPPED_CATALOG.aliases)
DEFAULT_MODEL: str = SHIPPED_CATALOG.default_model


def accepted_names(provider: Provider | None = None) -> list[str]:
    """Every model id and alias of the shipped catalog (the tool schema's enum)."""
    return SHIPPED_CATALOG.accepted_names(provider)
