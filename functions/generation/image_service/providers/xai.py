"""xAI Images API: ``POST /images/generations`` and ``POST /images/edits``, both JSON.

The shape is OpenAI-like with xAI's own size vocabulary: ``aspect_ratio`` and ``resolution``,
never ``size`` or ``style`` (xAI answers "Argument not supported"). Input images travel as data
URLs in ``image`` (one) or ``images`` (several). We ask for ``b64_json``; a ``url`` answer is
downloaded with the SSRF guard. ``respect_moderation: false`` on an item, or no item at all,
means the image was refused, and grok-imagine-image-2.0 may say why in ``block_reason``.
``usage.cost_in_usd_ticks`` is the billed cost
(1 USD = 10_000_000_000 ticks, docs.x.ai "Cost Tracking").
"""

from __future__ import annotations

from typing import Any

from image_common.credentials import provider_endpoint
from image_common.errors import ContentPolicyViolation, ProviderError
from image_common.provider_identity import PROVIDERS
from image_service.http import ProviderWire, json_or_error, provider_exchange
from image_service.providers.base import (
    GeneratedImage,
    ProviderRequest,
    ProviderResult,
    SettingWarning,
    download_provider_image,
    merge_provider_options,
    provider_base64_image,
)

NAME = "xai"
# Errors come as {"error": {"message": …}} or {"code": …, "error": "…"}: the shared reader's two.
WIRE = ProviderWire(PROVIDERS[NAME])
RESPONSE_FORMAT = "b64_json"  # no second download, no temporary URL to race
TICKS_PER_USD = 10_000_000_000
_RESERVED = frozenset(
    {"model", "prompt", "n", "response_format", "aspect_ratio", "resolution", "quality",
     "image", "images"}
)  # fmt: skip
_NOT_ACCEPTED = frozenset({"size", "style"})  # xAI rejects them: "Argument not supported"


class XAIProvider:
    name = NAME

    def generate(self, request: ProviderRequest) -> ProviderResult:
        endpoint = provider_endpoint(NAME)
        body, warnings = _body(request)
        path = "/images/edits" if request.input_images else "/images/generations"
        with provider_exchange(
            WIRE,
            endpoint,
            "POST",
            f"{endpoint.base_url}{path}",
            json=body,
            timeout_seconds=request.timeout_seconds,
            model=request.model.id,
        ) as response:
            answer = json_or_error(NAME, response)
        images, refused = _images(answer)  # url answers are downloaded here
        if refused:
            warnings.append(
                SettingWarning(
                    "other",
                    "n",
                    f"xAI's moderation withheld {refused} of {refused + len(images)} images.",
                )
            )
        sent = {k: v for k, v in body.items() if k not in ("prompt", "image", "images")}
        return ProviderResult(
            images=images,
            sent=sent
            | ({"input_images": len(request.input_images)} if request.input_images else {}),
            warnings=warnings,
            cost_usd=_ticks_cost(answer.get("usage")),
        )


def _body(request: ProviderRequest) -> tuple[dict[str, Any], list[SettingWarning]]:
    settings = request.settings
    body: dict[str, Any] = {
        "model": request.model.id,
        "prompt": request.prompt,
        "n": settings.n,
        "response_format": RESPONSE_FORMAT,
    }
    optional = {
        "aspect_ratio": settings.aspect_ratio,
        "resolution": settings.resolution,
        "quality": settings.quality,
    }
    body |= {k: v for k, v in optional.items() if v is not None}
    images = [{"url": image.to_data_url(), "type": "image_url"} for image in request.input_images]
    if len(images) == 1:
        body["image"] = images[0]
    elif images:
        body["images"] = images
    options = dict(request.provider_options)
    warnings = [
        SettingWarning(
            "unsupported-setting",
            f"provider_options.{key}",
            f"xAI does not accept '{key}'; use width/height or aspect_ratio. Ignored.",
        )
        for key in sorted(_NOT_ACCEPTED & set(options))
    ]
    for key in _NOT_ACCEPTED:
        options.pop(key, None)
    warnings += merge_provider_options(body, options, reserved=_RESERVED)
    return body, warnings


def _images(answer: dict[str, Any]) -> tuple[list[GeneratedImage], int]:
    block = answer.get("block_reason")  # grok-imagine-image-2.0 says why it refused
    if block:
        raise ContentPolicyViolation(
            f"The xai provider's moderation refused the request ({str(block)[:80]})."
        )
    data = answer.get("data")
    if data is None:
        raise ProviderError("The xai provider sent an answer without data.")
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ProviderError("The xai provider sent an unexpected answer.")
    allowed = [item for item in data if item.get("respect_moderation") is not False]
    if not allowed:
        raise ContentPolicyViolation("The xai provider's moderation refused the request.")
    return [_image(item) for item in allowed], len(data) - len(allowed)


def _image(item: dict[str, Any]) -> GeneratedImage:
    if item.get("b64_json"):
        image = provider_base64_image(item["b64_json"], NAME)
    elif isinstance(item.get("url"), str) and item["url"]:
        image = download_provider_image(item["url"], NAME)
    else:
        raise ProviderError("The xai provider returned an item without an image.")
    revised = item.get("revised_prompt")
    return GeneratedImage(image=image, revised_prompt=revised if isinstance(revised, str) else None)


def _ticks_cost(usage: Any) -> float | None:
    ticks = usage.get("cost_in_usd_ticks") if isinstance(usage, dict) else None
    if isinstance(ticks, bool) or not isinstance(ticks, int) or ticks < 0:
        return None
    return round(ticks / TICKS_PER_USD, 6)


def create_provider() -> XAIProvider:
    return XAIProvider()
