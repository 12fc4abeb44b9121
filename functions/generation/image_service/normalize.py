"""One settings vocabulary for every provider, fitted to one model's capabilities.

Everything the caller asked for either reaches the provider as asked, or is adjusted, mapped or
dropped with a ``SettingWarning`` saying why. What cannot be honoured at all without changing the
meaning of the request (an input image for a text-only model, an unknown style) is a 400.
"""

from __future__ import annotations

import math

from image_common.errors import InvalidRequest
from image_service.models import ImageSettings
from image_service.providers.base import GenerationSettings, SettingWarning
from image_service.registry import (
    Capabilities,
    ModelSpec,
    SizeRule,
    aspect_ratio_value,
    log_ratio_distance,
)

# How one quality word maps onto a model that speaks another scale, most faithful first.
_QUALITY_EQUIVALENTS = {
    "low": ("low", "standard", "medium"),
    "medium": ("medium", "standard", "low"),
    "high": ("high", "hd", "medium"),
    "xhigh": ("xhigh", "high", "hd", "medium"),
    "max": ("max", "xhigh", "high", "hd", "medium"),
    "auto": ("auto", "medium", "standard"),
    "standard": ("standard", "medium", "low"),
    "hd": ("hd", "high", "medium"),
}
_DEFAULT_AREA = 1024 * 1024


def normalize_settings(
    prompt: str, image: ImageSettings, spec: ModelSpec
) -> tuple[GenerationSettings, list[SettingWarning]]:
    caps = spec.capabilities
    warnings: list[SettingWarning] = []
    _check_request_fits(prompt, image, spec)

    width, height, aspect_ratio, resolution = _fit_size(image, caps, warnings, spec.id)
    settings = GenerationSettings(
        n=image.n,
        width=width,
        height=height,
        aspect_ratio=aspect_ratio,
        resolution=resolution,
        quality=_fit_quality(image.quality, caps, warnings, spec.id),
        complexity=_fit_complexity(image.complexity, caps, warnings, spec.id),
        output_format=_fit_format(image.output_format, caps, warnings, spec.id),
        seed=_if_supported("seed", image.seed, caps.seed, warnings, spec.id),
        negative_prompt=_if_supported(
            "negative_prompt", image.negative_prompt, caps.negative_prompt, warnings, spec.id
        ),
        style_preset=_fit_style(image.style_preset, caps, warnings, spec.id),
    )
    return settings, warnings


def _check_request_fits(prompt: str, image: ImageSettings, spec: ModelSpec) -> None:
    caps = spec.capabilities
    if len(prompt) > caps.max_prompt_chars:
        raise InvalidRequest(
            f"The prompt is {len(prompt)} characters; {spec.id} accepts at most "
            f"{caps.max_prompt_chars}."
        )
    if image.input_images and caps.max_input_images == 0:
        raise InvalidRequest(
            f"{spec.id} does not accept input images (image-to-image); choose a model that does "
            "(see GET /image/models)."
        )
    if len(image.input_images) > caps.max_input_images > 0:
        raise InvalidRequest(
            f"{spec.id} accepts at most {caps.max_input_images} input image(s); "
            f"got {len(image.input_images)}."
        )
    if image.mask and not caps.mask:
        raise InvalidRequest(f"{spec.id} does not support masks.")


def _if_supported(name, value, supported: bool, warnings, model_id):
    if value is None or supported:
        return value
    warnings.append(
        SettingWarning("unsupported-setting", name, f"{model_id} does not support {name}; ignored.")
    )
    return None


def _fit_quality(quality: str | None, caps: Capabilities, warnings, model_id) -> str | None:
    if quality is None:
        return None
    if not caps.qualities:
        warnings.append(
            SettingWarning(
                "unsupported-setting", "quality", f"{model_id} has no quality setting; ignored."
            )
        )
        return None
    for candidate in _QUALITY_EQUIVALENTS[quality]:
        if candidate in caps.qualities:
            if candidate != quality:
                warnings.append(
                    SettingWarning(
                        "adjusted-setting",
                        "quality",
                        f"quality '{quality}' sent to {model_id} as '{candidate}'.",
                    )
                )
            return candidate
    warnings.append(  # e.g. "high" for dall-e-2, which only has "standard"
        SettingWarning(
            "unsupported-setting",
            "quality",
            f"{model_id} has no equivalent of quality '{quality}' "
            f"(it offers {', '.join(caps.qualities)}); its default was used.",
        )
    )
    return None


def _fit_complexity(complexity: str | None, caps: Capabilities, warnings, model_id):
    if complexity is None or complexity in caps.complexities:
        return complexity
    warnings.append(
        SettingWarning(
            "unsupported-setting",
            "complexity",
            f"{model_id} has no complexity setting"
            + (f" '{complexity}'" if caps.complexities else "")
            + "; ignored.",
        )
    )
    return None


def _fit_format(fmt: str | None, caps: Capabilities, warnings, model_id) -> str | None:
    if fmt is None or fmt in caps.output_formats:
        return fmt
    fallback = caps.output_formats[0]
    warnings.append(
        SettingWarning(
            "adjusted-setting",
            "output_format",
            f"{model_id} cannot produce {fmt}; it returns {', '.join(caps.output_formats)}, "
            f"so the image is {fallback}.",
        )
    )
    return fallback if len(caps.output_formats) > 1 else None


def _fit_style(style: str | None, caps: Capabilities, warnings, model_id) -> str | None:
    if style is None:
        return None
    if not caps.style_presets:
        return _if_supported("style_preset", style, False, warnings, model_id)
    if style not in caps.style_presets:
        raise InvalidRequest(
            f"style_preset '{style}' is not offered by {model_id}. "
            f"Accepted: {', '.join(caps.style_presets)}.",
            details={"accepted_style_presets": list(caps.style_presets)},
        )
    return style


# --- sizes -----------------------------------------------------------------------------------


def _fit_size(image: ImageSettings, caps: Capabilities, warnings, model_id):
    """→ (width, height, aspect_ratio, resolution), each None when the model does not take it."""
    asked_w, asked_h, asked_ratio = image.width, image.height, image.aspect_ratio
    if (asked_w is None) != (asked_h is None):  # one side only: keep the shape square
        asked_w = asked_h = asked_w or asked_h
        warnings.append(
            SettingWarning(
                "adjusted-setting", "width/height", "Only one side was given; treated as square."
            )
        )
    if asked_w and asked_ratio:
        warnings.append(
            SettingWarning(
                "unsupported-setting",
                "aspect_ratio",
                "width and height were given; aspect_ratio was ignored.",
            )
        )
        asked_ratio = None

    if caps.sizes:
        w, h = _nearest_fixed_size(asked_w, asked_h, asked_ratio, caps.sizes)
        _warn_size_change(asked_w, asked_h, asked_ratio, w, h, warnings, model_id)
        return w, h, None, None
    if caps.size_rule:
        w, h = _fit_rule(asked_w, asked_h, asked_ratio, caps.size_rule)
        _warn_size_change(asked_w, asked_h, asked_ratio, w, h, warnings, model_id)
        return w, h, None, None
    if caps.aspect_ratios and image.input_images:
        if not (asked_w or asked_ratio):  # nothing asked: the output keeps the input's shape
            return None, None, None, None
        if not caps.ratio_with_input_images:
            warnings.append(
                SettingWarning(
                    "unsupported-setting",
                    "width/height" if asked_w else "aspect_ratio",
                    f"{model_id} keeps the input image's shape in image-to-image; "
                    "the requested size was not sent.",
                )
            )
            return None, None, None, None
    if caps.aspect_ratios:
        ratio = _nearest_ratio(asked_w, asked_h, asked_ratio, caps.aspect_ratios)
        if asked_w:
            warnings.append(
                SettingWarning(
                    "adjusted-setting",
                    "width/height",
                    f"{model_id} takes an aspect ratio, not pixels: {asked_w}x{asked_h} "
                    f"sent as aspect_ratio {ratio}.",
                )
            )
        elif asked_ratio and asked_ratio != ratio:
            warnings.append(
                SettingWarning(
                    "adjusted-setting",
                    "aspect_ratio",
                    f"{model_id} does not offer {asked_ratio}; sent the nearest, {ratio}.",
                )
            )
        return None, None, ratio, _resolution_tier(asked_w, asked_h, caps.resolutions)
    if asked_w or asked_ratio:
        warnings.append(
            SettingWarning("unsupported-setting", "size", f"{model_id} has no size setting.")
        )
    return None, None, None, None


def _target_ratio(w: int | None, h: int | None, ratio: str | None) -> float:
    if w and h:
        return w / h
    return aspect_ratio_value(ratio) if ratio else 1.0


def _nearest_fixed_size(w, h, ratio, sizes):
    if not (w or ratio):
        return sizes[0]
    target = _target_ratio(w, h, ratio)
    area = w * h if w and h else _DEFAULT_AREA
    return min(
        sizes,
        key=lambda s: (round(log_ratio_distance(s[0] / s[1], target), 3), abs(s[0] * s[1] - area)),
    )


def _fit_rule(w, h, ratio, rule: SizeRule) -> tuple[int, int]:
    if not (w or ratio):
        return rule.default
    target = _target_ratio(w, h, ratio)
    target = min(max(target, 1 / rule.max_ratio), rule.max_ratio)
    area = w * h if w and h else _DEFAULT_AREA
    if rule.max_pixels:
        area = min(area, rule.max_pixels)
    area = max(area, rule.min_pixels)
    width = math.sqrt(area * target)
    height = width / target
    scale = min(1.0, rule.max_side / max(width, height))  # the longest side within bounds
    width, height = width * scale, height * scale
    w, h = _snap(width, rule), _snap(height, rule)
    # Rounding to the multiple can push a clamped shape just past a limit (4000x1000 on
    # gpt-image-2 snapped to 3472x1152, over 3:1): step the long side down or the short side up.
    for _ in range(64):
        if max(w / h, h / w) > rule.max_ratio or (rule.max_pixels and w * h > rule.max_pixels):
            w, h = (w - rule.multiple, h) if w >= h else (w, h - rule.multiple)
        elif w * h < rule.min_pixels:
            w, h = (w, h + rule.multiple) if w >= h else (w + rule.multiple, h)
        else:
            break
    return w, h


def _snap(side: float, rule: SizeRule) -> int:
    snapped = int(round(side / rule.multiple)) * rule.multiple
    low = math.ceil(rule.min_side / rule.multiple) * rule.multiple
    high = rule.max_side // rule.multiple * rule.multiple
    return min(max(snapped, low), high)


def _nearest_ratio(w, h, ratio, ratios) -> str:
    if not (w or ratio):
        return "1:1" if "1:1" in ratios else ratios[0]
    if ratio in ratios:
        return ratio
    target = _target_ratio(w, h, ratio)
    return min(ratios, key=lambda r: log_ratio_distance(aspect_ratio_value(r), target))


def _resolution_tier(w, h, tiers: tuple[str, ...]) -> str | None:
    """Smallest tier whose long side (1K ≈ 1024 px, "512" = 512 px) covers the asked one."""
    if not (tiers and w and h):
        return None
    longest = max(w, h)
    for tier in tiers:
        if _tier_pixels(tier) >= longest:
            return tier
    return tiers[-1]


def _tier_pixels(tier: str) -> int:
    if tier[-1:].lower() == "k":
        return int(tier[:-1]) * 1024
    return int(tier)


def _warn_size_change(asked_w, asked_h, asked_ratio, w, h, warnings, model_id) -> None:
    if asked_w and (asked_w, asked_h) != (w, h):
        warnings.append(
            SettingWarning(
                "adjusted-setting",
                "width/height",
                f"{model_id} cannot make {asked_w}x{asked_h}; sent the nearest legal size, "
                f"{w}x{h}.",
            )
        )
    elif asked_ratio:
        warnings.append(
            SettingWarning(
                "adjusted-setting",
                "aspect_ratio",
                f"{model_id} takes pixel sizes: aspect_ratio {asked_ratio} sent as {w}x{h}.",
            )
        )
