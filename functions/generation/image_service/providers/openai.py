"""OpenAI Images API: gpt-image-* and the DALL·E paths (``response_format``, ``style``).

``POST /images/generations`` (JSON) for text-to-image, ``POST /images/edits`` (multipart, repeated
``image[]``, optional ``mask``) for image-to-image. gpt-image always answers ``b64_json`` and
rejects ``response_format``; DALL·E is asked for ``b64_json`` so no second download is needed,
and a ``url`` answer is still handled.
"""

from __future__ import annotations

import json
from typing import Any

from image_common.credentials import provider_endpoint
from image_common.errors import InvalidImage, ProviderError
from image_common.provider_identity import PROVIDERS
from image_service.http import ProviderWire, json_or_error, provider_exchange
from image_service.images import ImageBytes
from image_service.providers.base import (
    GeneratedImage,
    ProviderRequest,
    ProviderResult,
    download_provider_image,
    merge_provider_options,
    provider_base64_image,
)

NAME = "openai"
WIRE = ProviderWire(
    PROVIDERS[NAME],
    content_policy_codes=frozenset({"moderation_blocked", "content_policy_violation"}),
    model_not_found_codes=frozenset({"model_not_found"}),
)
MAX_MASK_BYTES = 4 * 1024 * 1024
_RESERVED = frozenset(
    {"model", "prompt", "n", "size", "quality", "complexity", "output_format", "response_format", "style",
     "image", "image[]", "mask"}
)  # fmt: skip


class OpenAIProvider:
    name = NAME

    def generate(self, request: ProviderRequest) -> ProviderResult:
        endpoint = provider_endpoint(NAME)
        body, warnings = self._body(request)
        if request.input_images:
            path = "/images/edits"
            content = {"data": {k: _form_value(v) for k, v in body.items()}}
            content["files"] = self._files(request)
        else:
            path, content = "/images/generations", {"json": body}
        with provider_exchange(
            WIRE,
            endpoint,
            "POST",
            f"{endpoint.base_url}{path}",
            timeout_seconds=request.timeout_seconds,
            model=request.model.id,
            **content,
        ) as response:
            answer = json_or_error(NAME, response)
        images = [_image(item) for item in answer.get("data") or []]  # DALL·E urls: downloaded
        if not images:
            raise ProviderError("The openai provider returned no image.")
        return ProviderResult(
            images=images,
            sent={k: v for k, v in body.items() if k != "prompt"},
            warnings=warnings,
            cost_usd=_usage_cost(answer.get("usage"), request),
            usage=answer["usage"] if isinstance(answer.get("usage"), dict) else None,
        )

    def _body(self, request: ProviderRequest) -> tuple[dict[str, Any], list]:
        settings, model = request.settings, request.model
        body: dict[str, Any] = {"model": model.id, "prompt": request.prompt, "n": settings.n}
        if settings.size:
            body["size"] = settings.size
        if settings.quality:
            body["quality"] = settings.quality
        if settings.complexity:
            body["complexity"] = settings.complexity
        if model.api == "dall-e":
            body["response_format"] = "b64_json"
            if settings.style_preset:
                body["style"] = settings.style_preset
        elif settings.output_format:
            body["output_format"] = settings.output_format
        warnings = merge_provider_options(body, request.provider_options, reserved=_RESERVED)
        return body, warnings

    def _files(self, request: ProviderRequest) -> list[tuple[str, tuple[str, bytes, str]]]:
        # gpt-image takes several images as repeated image[]; DALL·E 2 takes one "image".
        field = "image[]" if request.model.api == "gpt-image" else "image"
        files = [
            (field, (f"image-{i}.{img.extension}", img.data, img.mime_type))
            for i, img in enumerate(request.input_images)
        ]
        if request.mask is not None:
            files.append(("mask", ("mask.png", _checked_mask(request.mask), "image/png")))
        return files


def _checked_mask(mask: ImageBytes) -> bytes:
    if mask.mime_type != "image/png":
        raise InvalidImage("The mask must be a PNG with an alpha channel.")
    if len(mask.data) >= MAX_MASK_BYTES:
        raise InvalidImage("The mask must be smaller than 4 MB.")
    return mask.data


def _form_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _image(item: Any) -> GeneratedImage:
    if not isinstance(item, dict):
        raise ProviderError("The openai provider sent an unexpected answer.")
    if item.get("b64_json"):
        image = provider_base64_image(item["b64_json"], NAME)
    elif isinstance(item.get("url"), str) and item["url"]:
        image = download_provider_image(item["url"], NAME)  # DALL·E's url answers
    else:
        raise ProviderError("The openai provider returned an item without an image.")
    revised = item.get("revised_prompt")
    return GeneratedImage(image=image, revised_prompt=revised if isinstance(revised, str) else None)


def _usage_cost(usage: Any, request: ProviderRequest) -> float | None:
    """``usage`` priced by kind: text and image input tokens (``input_tokens_details``) and
    image output tokens. None when a count is missing or a counted kind has no price."""
    if not isinstance(usage, dict):
        return None
    output, total_input = usage.get("output_tokens"), usage.get("input_tokens", 0)
    details = usage.get("input_tokens_details")
    if isinstance(details, dict):
        text, image = details.get("text_tokens", 0), details.get("image_tokens", 0)
    elif not request.input_images:  # no breakdown, no input images: every input token is text
        text, image = total_input, 0
    else:
        return None
    if not all(_count(v) for v in (output, text, image)):
        return None
    return request.model.pricing.token_cost(text_input=text, image_input=image, image_output=output)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def create_provider() -> OpenAIProvider:
    return OpenAIProvider()
