"""Google Gemini API, the seed's dual API: Gemini image models and (retired) Imagen.

- ``api == "gemini"``: ``POST /models/{model}:generateContent`` with the prompt and any input
  images as ``inlineData`` parts, ``responseModalities`` and ``imageConfig`` (``aspectRatio``,
  ``imageSize``). One image per call (the service runs calls in parallel for ``n``). The image is
  the last non-thought ``inlineData`` part; a blocked prompt (``promptFeedback.blockReason``) or
  image (a safety ``finishReason``) is a refusal; an answer with no image is a provider failure.
- ``api == "imagen"``: ``POST /models/{model}:predict`` with ``sampleCount``, ``aspectRatio`` and
  ``outputOptions.mimeType``; filtered images are simply missing from ``predictions``.
"""

from __future__ import annotations

import base64
from typing import Any

from image_common.credentials import provider_endpoint
from image_common.errors import ContentPolicyViolation, ProviderError
from image_common.provider_identity import PROVIDERS
from image_service.http import ProviderWire, json_or_error, provider_exchange
from image_service.images import MIME_BY_FORMAT
from image_service.providers.base import (
    GeneratedImage,
    ProviderRequest,
    ProviderResult,
    SettingWarning,
    merge_provider_options,
    provider_base64_image,
)

NAME = "google"
# Errors {"error": {"code", "message", "status"}}; a retired model is a 404 (the shared mapping).
WIRE = ProviderWire(PROVIDERS[NAME])
RESPONSE_MODALITIES = ["TEXT", "IMAGE"]  # every Gemini image model accepts both
# finishReason values that mean the prompt or the image was refused for its content.
BLOCK_REASONS = frozenset(
    {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY",
     "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"}
)  # fmt: skip
_MAX_TEXT_IN_ERROR = 200


class GeminiProvider:
    name = NAME

    def generate(self, request: ProviderRequest) -> ProviderResult:
        endpoint = provider_endpoint(NAME)
        if request.model.api == "imagen":
            method, (body, warnings) = "predict", _predict_body(request)
        else:
            method, (body, warnings) = "generateContent", _generate_content_body(request)
        url = f"{endpoint.base_url}/models/{request.model.id}:{method}"
        with provider_exchange(
            WIRE,
            endpoint,
            "POST",
            url,
            json=body,
            timeout_seconds=request.timeout_seconds,
            model=request.model.id,
        ) as response:
            answer = json_or_error(NAME, response)
        if method == "predict":
            images, more_warnings, cost = _predictions(answer, request.settings.n), [], None
            if len(images) < request.settings.n:
                more_warnings.append(_filtered_warning(len(images), request.settings.n))
        else:
            images, more_warnings = [_content_image(answer)], []
            cost = _usage_cost(answer.get("usageMetadata"), request)
        sent = {k: v for k, v in body.items() if k not in ("contents", "instances")}
        return ProviderResult(
            images=images,
            sent={"model": request.model.id} | sent,
            warnings=warnings + more_warnings,
            cost_usd=cost,
        )


# --- generateContent (Gemini image models) ---------------------------------------------------


def _generate_content_body(request: ProviderRequest) -> tuple[dict[str, Any], list]:
    settings = request.settings
    parts: list[dict[str, Any]] = [{"text": request.prompt}]
    parts += [
        {"inlineData": {"mimeType": image.mime_type, "data": _b64(image.data)}}
        for image in request.input_images
    ]
    image_config = {
        key: value
        for key, value in (
            ("aspectRatio", settings.aspect_ratio),
            ("imageSize", settings.resolution),
        )
        if value is not None
    }
    config: dict[str, Any] = {"responseModalities": RESPONSE_MODALITIES}
    if image_config:
        config["imageConfig"] = image_config
    body = {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}
    warnings = merge_provider_options(body, request.provider_options, reserved=frozenset(body))
    return body, warnings


def _content_image(answer: dict[str, Any]) -> GeneratedImage:
    block = (answer.get("promptFeedback") or {}).get("blockReason")
    if block:
        raise ContentPolicyViolation(f"The google provider blocked the prompt ({block}).")
    candidates = answer.get("candidates")
    if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
        raise ProviderError("The google provider sent an answer without candidates.")
    candidate = candidates[0]
    parts = (candidate.get("content") or {}).get("parts") or []
    answered = [p for p in parts if isinstance(p, dict) and not p.get("thought")]
    images = [p.get("inlineData") or p.get("inline_data") for p in answered]
    images = [i for i in images if isinstance(i, dict)]
    reason = candidate.get("finishReason")
    if not images:
        if reason in BLOCK_REASONS:
            raise ContentPolicyViolation(f"The google provider blocked the image ({reason}).")
        text = " ".join(str(p["text"]) for p in answered if p.get("text"))[:_MAX_TEXT_IN_ERROR]
        said = f' It said: "{text}"' if text else ""
        raise ProviderError(
            f"The google provider answered without an image (finishReason {reason}).{said}"
        )
    # Thinking models may send interim images as thought parts; the last answer part is final.
    return GeneratedImage(image=provider_base64_image(images[-1].get("data"), NAME))


def _usage_cost(usage: Any, request: ProviderRequest) -> float | None:
    """``usageMetadata`` priced by kind: prompt text and image tokens, image output tokens.
    None when the image output count is missing or a counted kind has no price."""
    if not isinstance(usage, dict):
        return None
    output = _by_modality(usage.get("candidatesTokensDetails"))
    if not output.get("IMAGE"):
        return None
    prompt = _by_modality(usage.get("promptTokensDetails"))
    if not prompt and isinstance(usage.get("promptTokenCount"), int):
        prompt = {"TEXT": usage["promptTokenCount"]}  # no breakdown: count it all as text
    return request.model.pricing.token_cost(
        text_input=prompt.get("TEXT", 0),
        image_input=prompt.get("IMAGE", 0),
        image_output=output["IMAGE"],
    )


def _by_modality(details: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in details if isinstance(details, list) else []:
        tokens = item.get("tokenCount") if isinstance(item, dict) else None
        if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0:
            counts[item.get("modality")] = counts.get(item.get("modality"), 0) + tokens
    return counts


# --- predict (Imagen, retired on the Gemini API) ---------------------------------------------


def _predict_body(request: ProviderRequest) -> tuple[dict[str, Any], list]:
    settings = request.settings
    parameters: dict[str, Any] = {"sampleCount": settings.n}
    if settings.aspect_ratio:
        parameters["aspectRatio"] = settings.aspect_ratio
    if settings.output_format:
        parameters["outputOptions"] = {"mimeType": MIME_BY_FORMAT[settings.output_format]}
    warnings = merge_provider_options(
        parameters, request.provider_options, reserved=frozenset(parameters) | {"outputOptions"}
    )
    return {"instances": [{"prompt": request.prompt}], "parameters": parameters}, warnings


def _predictions(answer: dict[str, Any], asked: int) -> list[GeneratedImage]:
    predictions = answer.get("predictions", [])
    if not isinstance(predictions, list):
        raise ProviderError("The google provider sent an unexpected answer.")
    images = [
        GeneratedImage(image=provider_base64_image(p["bytesBase64Encoded"], NAME))
        for p in predictions
        if isinstance(p, dict) and p.get("bytesBase64Encoded")
    ]
    if not images:
        raise ContentPolicyViolation(
            f"The google provider's safety filter withheld every image (asked for {asked})."
        )
    return images


def _filtered_warning(got: int, asked: int) -> SettingWarning:
    return SettingWarning(
        "other", "n", f"The provider's safety filter withheld {asked - got} of {asked} images."
    )


# --- shared ------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def create_provider() -> GeminiProvider:
    return GeminiProvider()
