"""The registry of models: provider, wire API, capabilities, price, lifecycle — data, in one place.

Adapters read capabilities from here instead of branching on model names, so a model's sizes,
price or retirement change here without touching an adapter. Prices are per image in USD and are
estimates (see PROVIDERS.md; entries marked UNVERIFIED there are estimates of estimates).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from image_common.errors import UnknownModel

Provider = Literal["openai", "stability", "flux", "google", "xai"]
Status = Literal["active", "preview", "retired"]

PROVIDERS: tuple[Provider, ...] = ("openai", "stability", "flux", "google", "xai")
DEFAULT_MODEL = "gpt-image-1"


@dataclass(frozen=True)
class SizeRule:
    """Free width/height within bounds (gpt-image-2, Flux dev/pro)."""

    min_side: int
    max_side: int
    multiple: int
    max_ratio: float = 4.0
    min_pixels: int = 0
    max_pixels: int = 0  # 0: only max_side bounds the area
    default: tuple[int, int] = (1024, 1024)


@dataclass(frozen=True)
class Capabilities:
    sizes: tuple[tuple[int, int], ...] = ()  # fixed legal sizes, first is the default
    size_rule: SizeRule | None = None  # free sizes
    aspect_ratios: tuple[str, ...] = ()  # the API takes a ratio instead of pixels
    resolutions: tuple[str, ...] = ()  # size tiers sent beside the ratio (Gemini 1K/2K/4K)
    qualities: tuple[str, ...] = ()
    output_formats: tuple[str, ...] = ("png",)
    max_images_per_call: int = 1
    max_input_images: int = 0  # 0: no image-to-image
    mask: bool = False
    seed: bool = False
    negative_prompt: bool = False
    style_presets: tuple[str, ...] = ()
    max_prompt_chars: int = 4000
    asynchronous: bool = False  # submit/poll: runs as a job (Flux)
    # False: in image-to-image the output keeps the input's shape and no ratio may be sent (sd3)
    ratio_with_input_images: bool = True


@dataclass(frozen=True)
class Pricing:
    """Per-image USD. ``table`` keys: ``quality@WxH``, ``quality``, ``WxH``, then ``default``."""

    table: Mapping[str, float] = field(default_factory=dict)
    output_token_usd_per_million: float | None = None  # usage-based estimate wins when given

    def per_image(self, *, quality: str | None, size: str | None) -> float | None:
        for key in (f"{quality}@{size}", quality, size, "default"):
            if key and key in self.table:
                return self.table[key]
        return None


@dataclass(frozen=True)
class ModelSpec:
    id: str
    provider: Provider
    api: str  # the wire API variant the adapter speaks for this model
    capabilities: Capabilities
    pricing: Pricing = field(default_factory=Pricing)
    status: Status = "active"
    successor: str | None = None
    retired_note: str | None = None

    def describe(self) -> dict:
        caps = self.capabilities
        return {
            "id": self.id,
            "provider": self.provider,
            "status": self.status,
            "successor": self.successor,
            "retired_note": self.retired_note,
            "capabilities": {
                "sizes": [f"{w}x{h}" for w, h in caps.sizes],
                "size_rule": _describe_rule(caps.size_rule),
                "aspect_ratios": list(caps.aspect_ratios),
                "resolutions": list(caps.resolutions),
                "qualities": list(caps.qualities),
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
            "price_usd_per_image": dict(self.pricing.table) or None,
        }


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


# --- the data --------------------------------------------------------------------------------

_GPT_IMAGE_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))
_GPT_IMAGE_QUALITIES = ("low", "medium", "high", "auto")
_FORMATS_ALL = ("png", "jpeg", "webp")


def _gpt_image(model_id: str, prices: dict[str, float], token_price: float | None) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        provider="openai",
        api="gpt-image",
        capabilities=Capabilities(
            sizes=_GPT_IMAGE_SIZES,
            qualities=_GPT_IMAGE_QUALITIES,
            output_formats=_FORMATS_ALL,
            max_images_per_call=10,
            max_input_images=16,
            mask=True,
            max_prompt_chars=32000,
        ),
        pricing=Pricing(table=prices, output_token_usd_per_million=token_price),
    )


def _gpt_prices(low: float, medium: float, high: float, low_l: float, med_l: float, high_l: float):
    table = {"low": low, "medium": medium, "high": high, "auto": high}
    for size in ("1536x1024", "1024x1536"):
        table |= {f"low@{size}": low_l, f"medium@{size}": med_l, f"high@{size}": high_l}
        table[f"auto@{size}"] = high_l
    return table


STABILITY_ASPECT_RATIOS = ("21:9", "16:9", "3:2", "5:4", "1:1", "4:5", "2:3", "9:16", "9:21")
STABILITY_STYLE_PRESETS = (
    "enhance", "anime", "photographic", "digital-art", "comic-book", "fantasy-art", "line-art",
    "analog-film", "neon-punk", "isometric", "low-poly", "origami", "modeling-compound",
    "cinematic", "3d-model", "pixel-art", "tile-texture",
)  # fmt: skip


def _stability(model_id: str, api: str, usd: float, *, image_to_image: bool, negative: bool):
    # sd3.5-large-turbo ignores negative_prompt (Stability's docs); sd3's image-to-image mode
    # takes no aspect_ratio; core has no image-to-image at all.
    return ModelSpec(
        id=model_id,
        provider="stability",
        api=api,
        capabilities=Capabilities(
            aspect_ratios=STABILITY_ASPECT_RATIOS,
            output_formats=_FORMATS_ALL,
            max_input_images=1 if image_to_image else 0,
            seed=True,
            negative_prompt=negative,
            style_presets=STABILITY_STYLE_PRESETS,
            max_prompt_chars=10000,
            ratio_with_input_images=api != "sd3",
        ),
        pricing=Pricing(table={"default": usd}),
    )


FLUX_DIMENSIONS = SizeRule(min_side=256, max_side=1440, multiple=32, max_ratio=4.0)
FLUX_ASPECT_RATIOS = ("21:9", "16:9", "3:2", "4:3", "1:1", "3:4", "2:3", "9:16", "9:21")


def _flux(model_id: str, api: str, usd: float, **caps) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        provider="flux",
        api=api,
        capabilities=Capabilities(
            output_formats=("jpeg", "png"),
            seed=True,
            asynchronous=True,
            max_prompt_chars=10000,
            **caps,
        ),
        pricing=Pricing(table={"default": usd}),
    )


GEMINI_ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
IMAGEN_ASPECT_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9")


def _gemini(
    model_id: str,
    usd: float | None,
    *,
    image_token_usd_per_million: float | None = None,
    resolutions=(),
    inputs=3,
    status="active",
):
    return ModelSpec(
        id=model_id,
        provider="google",
        api="gemini",
        capabilities=Capabilities(
            aspect_ratios=GEMINI_ASPECT_RATIOS,
            resolutions=resolutions,
            output_formats=("png",),
            max_input_images=inputs,
            max_prompt_chars=32000,
        ),
        pricing=Pricing(
            table={"default": usd} if usd is not None else {},
            output_token_usd_per_million=image_token_usd_per_million,
        ),
        status=status,
    )


_IMAGEN_RETIRED = "Imagen on the Gemini API was shut down around 2026-08-17"


def _imagen(model_id: str, usd: float) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        provider="google",
        api="imagen",
        capabilities=Capabilities(
            aspect_ratios=IMAGEN_ASPECT_RATIOS,
            output_formats=("png", "jpeg"),
            max_images_per_call=4,
            max_prompt_chars=4000,
        ),
        pricing=Pricing(table={"default": usd}),
        status="retired",
        successor="gemini-2.5-flash-image",
        retired_note=_IMAGEN_RETIRED,
    )


XAI_ASPECT_RATIOS = (
    "1:1", "3:4", "4:3", "9:16", "16:9", "2:3", "3:2", "1:2", "2:1", "9:20", "20:9",
)  # fmt: skip
_GROK_IMAGINE = {
    "aspect_ratios": XAI_ASPECT_RATIOS,
    "resolutions": ("1k", "2k"),
    "qualities": ("low", "medium", "high"),
    "max_input_images": 3,
}
# grok-2-image took only model, prompt, n and response_format: no ratio, resolution or edits.
_GROK_2 = {"max_input_images": 0}


def _grok(model_id: str, usd: float | None, caps: dict, **overrides) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        provider="xai",
        api="grok",
        capabilities=Capabilities(
            output_formats=("jpeg",),
            max_images_per_call=10,
            max_prompt_chars=8000,
            **caps,
        ),
        pricing=Pricing(table={"default": usd} if usd is not None else {}),
        **overrides,
    )


_MODELS: tuple[ModelSpec, ...] = (
    # OpenAI
    _gpt_image("gpt-image-1", _gpt_prices(0.011, 0.042, 0.167, 0.016, 0.063, 0.25), 40.0),
    _gpt_image("gpt-image-1.5", {"low": 0.009, "medium": 0.034, "high": 0.133}, 32.0),
    _gpt_image("gpt-image-1-mini", {}, 8.0),
    ModelSpec(
        id="gpt-image-2",
        provider="openai",
        api="gpt-image",
        capabilities=Capabilities(
            # Any WxH, sides multiple of 16, ratio within 3:1, at most 3840x2160 pixels.
            size_rule=SizeRule(
                min_side=256, max_side=3840, multiple=16, max_ratio=3.0,
                min_pixels=655_360, max_pixels=3840 * 2160,
            ),
            qualities=_GPT_IMAGE_QUALITIES,
            output_formats=_FORMATS_ALL,
            max_images_per_call=10,
            max_input_images=16,
            mask=True,
            max_prompt_chars=32000,
        ),
    ),  # fmt: skip
    ModelSpec(
        id="dall-e-3",
        provider="openai",
        api="dall-e",
        capabilities=Capabilities(
            sizes=((1024, 1024), (1792, 1024), (1024, 1792)),
            qualities=("standard", "hd"),
            style_presets=("vivid", "natural"),
            max_prompt_chars=4000,
        ),
        pricing=Pricing(
            table={"standard": 0.04, "hd": 0.08, "standard@1792x1024": 0.08,
                   "standard@1024x1792": 0.08, "hd@1792x1024": 0.12, "hd@1024x1792": 0.12}
        ),
        status="retired",
        successor="gpt-image-1",
        retired_note="DALL·E 3 was retired by OpenAI on 2026-05-12",
    ),  # fmt: skip
    ModelSpec(
        id="dall-e-2",
        provider="openai",
        api="dall-e",
        capabilities=Capabilities(
            sizes=((1024, 1024), (512, 512), (256, 256)),
            qualities=("standard",),
            max_images_per_call=10,
            max_input_images=1,
            mask=True,
            max_prompt_chars=1000,
        ),
        pricing=Pricing(table={"1024x1024": 0.02, "512x512": 0.018, "256x256": 0.016}),
        status="retired",
        successor="gpt-image-1",
        retired_note="DALL·E 2 was retired by OpenAI on 2026-05-12",
    ),
    # Stability AI (1 credit ≈ $0.01)
    _stability("sd3.5-large", "sd3", 0.065, image_to_image=True, negative=True),
    _stability("sd3.5-large-turbo", "sd3", 0.04, image_to_image=True, negative=False),
    _stability("sd3.5-medium", "sd3", 0.035, image_to_image=True, negative=True),
    _stability("sd3.5-flash", "sd3", 0.025, image_to_image=True, negative=True),
    _stability("core", "core", 0.03, image_to_image=False, negative=True),
    _stability("ultra", "ultra", 0.08, image_to_image=True, negative=True),
    # Black Forest Labs (Flux): asynchronous, served through the Step Functions job workflow
    _flux("flux-dev", "flux-dimensions", 0.025, size_rule=FLUX_DIMENSIONS, max_input_images=1),
    _flux("flux-pro-1.1", "flux-dimensions", 0.04, size_rule=FLUX_DIMENSIONS, max_input_images=1),
    _flux("flux-pro-1.1-ultra", "flux-ultra", 0.06, aspect_ratios=FLUX_ASPECT_RATIOS,
          max_input_images=1),
    _flux("flux-kontext-pro", "flux-kontext", 0.04, aspect_ratios=FLUX_ASPECT_RATIOS,
          max_input_images=4),
    _flux("flux-kontext-max", "flux-kontext", 0.08, aspect_ratios=FLUX_ASPECT_RATIOS,
          max_input_images=4),
    # Google: Gemini image models (generateContent) and the retired Imagen API (:predict)
    # Image output tokens: 1290 per 2.5 Flash image ($30/M); 1120 (1K/2K) or 2000 (4K) per
    # 3 Pro image ($120/M). The answer's usageMetadata wins over the per-image default.
    _gemini("gemini-2.5-flash-image", 0.039, image_token_usd_per_million=30.0),
    _gemini("gemini-3-pro-image-preview", 0.134, image_token_usd_per_million=120.0,
            resolutions=("1K", "2K", "4K"), inputs=14, status="preview"),
    _gemini("gemini-3.1-flash-image-preview", None, resolutions=("1K", "2K", "4K"), inputs=14,
            status="preview"),
    ModelSpec(
        id="gemini-2.0-flash-preview-image-generation",
        provider="google",
        api="gemini",
        capabilities=Capabilities(aspect_ratios=GEMINI_ASPECT_RATIOS, max_input_images=3),
        status="retired",
        successor="gemini-2.5-flash-image",
        retired_note="gemini-2.0-flash-preview-image-generation is gone from Google's model list",
    ),
    _imagen("imagen-4.0-generate-001", 0.04),
    _imagen("imagen-4.0-ultra-generate-001", 0.06),
    _imagen("imagen-4.0-fast-generate-001", 0.02),
    _imagen("imagen-3.0-generate-002", 0.03),
    # xAI
    _grok("grok-imagine-image", 0.02, _GROK_IMAGINE),
    _grok("grok-imagine-image-quality", None, _GROK_IMAGINE),
    _grok("grok-2-image", 0.07, _GROK_2, status="retired", successor="grok-imagine-image",
          retired_note="grok-2-image was shut down by xAI in early 2026"),
    _grok("grok-2-image-1212", 0.07, _GROK_2, status="retired", successor="grok-imagine-image",
          retired_note="grok-2-image-1212 was shut down by xAI in early 2026"),
)  # fmt: skip

MODELS: Mapping[str, ModelSpec] = MappingProxyType({m.id: m for m in _MODELS})

# Names of the original design and short forms; each resolves to exactly one model.
ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "openai": "gpt-image-1",
        "gpt-image": "gpt-image-1",
        "dall-e": "dall-e-3",
        "stability": "sd3.5-large",
        "sd": "sd3.5-large",
        "sd3": "sd3.5-large",
        "sd3.5": "sd3.5-large",
        "sd3-large": "sd3.5-large",
        "sd3-large-turbo": "sd3.5-large-turbo",
        "sd3-medium": "sd3.5-medium",
        "flux": "flux-pro-1.1",
        "flux-pro": "flux-pro-1.1",
        "flux-ultra": "flux-pro-1.1-ultra",
        "flux-pro-ultra": "flux-pro-1.1-ultra",
        "flux-kontext": "flux-kontext-pro",
        "gemini": "gemini-2.5-flash-image",
        "gemini-flash-image": "gemini-2.5-flash-image",
        "gemini-pro-image": "gemini-3-pro-image-preview",
        "imagen": "imagen-4.0-generate-001",
        "imagen-4": "imagen-4.0-generate-001",
        "imagen-3": "imagen-3.0-generate-002",
        "grok": "grok-imagine-image",
        "grok-imagine": "grok-imagine-image",
    }
)

# Which provider a family of names belongs to (DESIGN.md § Model selection).
_FAMILIES: tuple[tuple[tuple[str, ...], Provider], ...] = (
    (("openai", "dall-e", "gpt-image"), "openai"),
    (("flux",), "flux"),
    (("sd", "stability", "core", "ultra"), "stability"),
    (("gemini", "imagen"), "google"),
    (("grok",), "xai"),
)


@dataclass(frozen=True)
class ResolvedModel:
    requested: str
    spec: ModelSpec
    retired: ModelSpec | None = None  # the retired model that was asked for, if any


def family_of(name: str) -> Provider | None:
    for prefixes, provider in _FAMILIES:
        if name.startswith(prefixes):
            return provider
    return None


def accepted_names(provider: Provider | None = None) -> list[str]:
    names = [m.id for m in _MODELS if provider in (None, m.provider)]
    names += [a for a, target in ALIASES.items() if provider in (None, MODELS[target].provider)]
    return sorted(names)


def resolve_model(
    requested: str | None, *, enabled_retired: frozenset[str] = frozenset()
) -> ResolvedModel:
    """Map a caller's model name to one concrete model, following retirements to a successor.

    ``enabled_retired`` names retired models a deployment still wants served directly (its
    provider account still has them); every other retired model goes to its successor.
    """
    name = (requested or DEFAULT_MODEL).strip().lower()
    model_id = ALIASES.get(name, name)
    spec = MODELS.get(model_id)
    if spec is None:
        provider = family_of(name)
        scope = f" for provider '{provider}'" if provider else ""
        accepted = accepted_names(provider)
        raise UnknownModel(
            f"Unknown model '{requested}'{scope}. Accepted: {', '.join(accepted)}.",
            details={"accepted_models": accepted},
        )
    retired: ModelSpec | None = None
    while spec.status == "retired" and spec.id not in enabled_retired and spec.successor:
        retired = retired or spec
        spec = MODELS[spec.successor]
    return ResolvedModel(requested=name, spec=spec, retired=retired)


def aspect_ratio_value(ratio: str) -> float:
    w, h = ratio.split(":")
    return int(w) / int(h)


def log_ratio_distance(a: float, b: float) -> float:
    return abs(math.log(a) - math.log(b))


def model_catalog(*, enabled_retired: frozenset[str] = frozenset()) -> dict:
    """Every model and alias with what serves it, as ``GET /image/models`` lists them."""

    def served_by(name: str) -> str:
        return resolve_model(name, enabled_retired=enabled_retired).spec.id

    models = [spec.describe() | {"served_by": served_by(spec.id)} for spec in _MODELS]
    aliases = [
        {
            "alias": alias,
            "model": target,
            "provider": MODELS[target].provider,
            "served_by": served_by(alias),
        }
        for alias, target in sorted(ALIASES.items())
    ]
    return {"default_model": DEFAULT_MODEL, "models": models, "aliases": aliases}
