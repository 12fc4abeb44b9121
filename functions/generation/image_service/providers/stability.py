"""Stability AI v2beta Stable Image: ``/v2beta/stable-image/generate/{sd3|core|ultra}``.

Always multipart/form-data, even with no file. The registry's ``api`` names the endpoint; sd3
also takes ``model``. Image-to-image: sd3 with ``mode=image-to-image`` + ``image`` + ``strength``
(no ``aspect_ratio``), ultra with ``image`` + ``strength``; core has none (the registry says so,
and normalisation refuses input images for it with a 400).

We ask for raw bytes (``accept: image/*``, metadata in the ``finish-reason`` and ``seed``
headers); a JSON answer (``{"image", "seed", "finish_reason"}``) is read as well. A 200 with
``finish_reason: CONTENT_FILTERED`` carries a blurred image: it is a refusal, not a result.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from image_common.credentials import provider_endpoint
from image_common.errors import ContentPolicyViolation, InvalidRequest
from image_common.provider_identity import PROVIDERS
from image_service.http import ErrorAnswer, ProviderWire, json_or_error, provider_exchange
from image_service.providers.base import (
    GeneratedImage,
    ProviderRequest,
    ProviderResult,
    SettingWarning,
    merge_provider_options,
    provider_base64_image,
    provider_image,
)

NAME = "stability"
ACCEPT = "image/*"  # raw bytes: a third smaller than base64 JSON
DEFAULT_STRENGTH = 0.6  # how far image-to-image may move from the input (0 = keep it)
_RESERVED = frozenset(
    {"prompt", "negative_prompt", "aspect_ratio", "seed", "output_format", "style_preset",
     "model", "mode", "image"}
)  # fmt: skip


def _error_answer(body: Any) -> ErrorAnswer:
    """``{"id", "name", "errors": [...]}``: the name says which kind of refusal it is."""
    if not isinstance(body, dict):
        return ErrorAnswer()
    errors = body.get("errors")
    message = "; ".join(str(e) for e in errors) if isinstance(errors, list) else ""
    return ErrorAnswer(message, str(body.get("name") or ""))


WIRE = ProviderWire(
    PROVIDERS[NAME],
    read_error=_error_answer,
    # Error names that mean the provider refused the content (422 for our caller).
    content_policy_codes=frozenset({"content_moderation", "public_figure"}),
)


class StabilityProvider:
    name = NAME

    def generate(self, request: ProviderRequest) -> ProviderResult:
        endpoint = provider_endpoint(NAME)
        fields, warnings = self._fields(request)
        files: list[tuple[str, tuple[str | None, Any] | tuple[str, bytes, str]]] = [
            (name, (None, _form_value(value))) for name, value in fields.items()
        ]
        if request.input_images:
            image = request.input_images[0]
            files.append(("image", (f"image.{image.extension}", image.data, image.mime_type)))
        url = f"{endpoint.base_url}/v2beta/stable-image/generate/{request.model.api}"
        # files= with (None, value) tuples: multipart even when no file is attached.
        with provider_exchange(
            WIRE,
            endpoint,
            "POST",
            url,
            files=files,
            headers={"accept": ACCEPT},
            timeout_seconds=request.timeout_seconds,
            model=request.model.id,
        ) as response:
            image = _read_image(response)
        return ProviderResult(
            images=[image],
            sent={k: v for k, v in fields.items() if k != "prompt"},
            warnings=warnings,
        )

    def _fields(self, request: ProviderRequest) -> tuple[dict[str, Any], list[SettingWarning]]:
        settings, model = request.settings, request.model
        fields: dict[str, Any] = {"prompt": request.prompt}
        if model.api == "sd3":
            fields["model"] = model.id
        optional = {
            "negative_prompt": settings.negative_prompt,
            "aspect_ratio": settings.aspect_ratio,
            "seed": settings.seed,
            "output_format": settings.output_format,
            "style_preset": settings.style_preset,
        }
        fields |= {k: v for k, v in optional.items() if v is not None}
        options = dict(request.provider_options)
        strength = options.pop("strength", None)
        warnings = merge_provider_options(fields, options, reserved=_RESERVED)
        if request.input_images:
            if model.api == "sd3":
                fields["mode"] = "image-to-image"
            fields["strength"] = _strength(strength, warnings)
        elif strength is not None:
            warnings.append(
                SettingWarning(
                    "unsupported-setting",
                    "provider_options.strength",
                    "strength applies to image-to-image only; ignored without an input image.",
                )
            )
        return fields, warnings


def _form_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _strength(value: Any, warnings: list[SettingWarning]) -> float:
    if value is None:
        warnings.append(
            SettingWarning(
                "adjusted-setting",
                "provider_options.strength",
                f"Stability needs a strength with an input image; sent {DEFAULT_STRENGTH} "
                "(0 keeps the input, 1 ignores it).",
            )
        )
        return DEFAULT_STRENGTH
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidRequest("provider_options.strength must be a number from 0 to 1.")
    return float(value)


def _read_image(response: httpx.Response) -> GeneratedImage:
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        answer = json_or_error(NAME, response)
        finish_reason, seed = answer.get("finish_reason"), answer.get("seed")
        _refuse_if_filtered(finish_reason)
        image = provider_base64_image(answer.get("image"), NAME)
    else:
        finish_reason, seed = response.headers.get("finish-reason"), response.headers.get("seed")
        _refuse_if_filtered(finish_reason)
        image = provider_image(response.read(), NAME)
    return GeneratedImage(image=image, seed=_int_or_none(seed))


def _refuse_if_filtered(finish_reason: Any) -> None:
    if finish_reason == "CONTENT_FILTERED":
        raise ContentPolicyViolation(
            "The stability provider's content filter blocked the image (finish_reason "
            "CONTENT_FILTERED); no image was returned."
        )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def create_provider() -> StabilityProvider:
    return StabilityProvider()
