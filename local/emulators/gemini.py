"""Google Gemini API emulator: ``/v1beta/models/{model}:generateContent`` (Gemini image models)
and ``/v1beta/models/{model}:predict`` (Imagen, kept for deployments that still have it).

Like the real API it rejects unknown fields ("Invalid JSON payload received. Unknown name"),
answers errors as ``{"error": {"code", "message", "status"}}``, and 404s models it does not
serve. Gemini 3 models send a thought image before the final one, as the real ones do.

Prompt triggers besides the common ones (``[moderate]`` → ``promptFeedback.blockReason``):
``[image-safety]`` → a candidate with ``finishReason IMAGE_SAFETY`` and no image,
``[text-only]`` → a text answer without an image, ``[not-image]`` → ``inlineData`` that is not
an image, ``[filter-one]`` → Imagen withholds one of the images.
"""

from __future__ import annotations

import base64
import re
from functools import cached_property

from local.emulators.base import (
    Emulator,
    EmulatorRequest,
    EmulatorResponse,
    ratio_size,
    render_image,
)
from local.emulators.model_lists import GEMINI_LISTED, ModelListing, gemini_models_answer

ASPECT_RATIOS = {"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"}
EXTREME_RATIOS = {"1:4", "4:1", "1:8", "8:1"}  # gemini-3.1-flash-image only
IMAGE_SIZES = {"512": 512, "1K": 1024, "2K": 2048, "4K": 4096}
_PRO_SIZES = {"1K", "2K", "4K"}
# model → (aspect ratios, imageSize values; empty: the field is refused)
GEMINI_MODELS: dict[str, tuple[set[str], set[str]]] = {
    "gemini-3.1-flash-image": (ASPECT_RATIOS | EXTREME_RATIOS, set(IMAGE_SIZES)),
    "gemini-3-pro-image": (ASPECT_RATIOS, _PRO_SIZES),
    "gemini-nano-banana-2.1": (ASPECT_RATIOS, _PRO_SIZES),
    "gemini-3.1-flash-lite-image": (ASPECT_RATIOS, set()),
    "gemini-2.5-flash-image": (ASPECT_RATIOS, set()),
    "gemini-3-pro-image-preview": (ASPECT_RATIOS, _PRO_SIZES),
    "gemini-3.1-flash-image-preview": (ASPECT_RATIOS, _PRO_SIZES),
    "gemini-2.0-flash-preview-image-generation": (ASPECT_RATIOS, set()),
}
SIZED_MODELS = {model for model, (_, sizes) in GEMINI_MODELS.items() if sizes}  # imageSize
THINKING_MODELS = SIZED_MODELS  # Gemini 3: a thought image before the final one
IMAGEN_MODELS = {
    "imagen-4.0-generate-001",
    "imagen-4.0-ultra-generate-001",
    "imagen-4.0-fast-generate-001",
    "imagen-3.0-generate-002",
}
IMAGEN_ASPECT_RATIOS = {"1:1", "3:4", "4:3", "9:16", "16:9"}
# Image output tokens per image (Google's published figures).
IMAGE_TOKENS = {"gemini-2.5-flash-image": 1290, "512": 560, "1K": 1120, "2K": 1120, "4K": 2000}
REQUEST_FIELDS = {
    "contents",
    "generationConfig",
    "safetySettings",
    "systemInstruction",
    "tools",
    "toolConfig",
    "cachedContent",
}
CONFIG_FIELDS = {
    "responseModalities",
    "imageConfig",
    "temperature",
    "topP",
    "topK",
    "seed",
    "candidateCount",
    "maxOutputTokens",
    "stopSequences",
}
TEXT_ONLY_ANSWER = "I can only describe that scene."
_UNKNOWN = 'Invalid JSON payload received. Unknown name "{}"'
_PATH = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):(?P<method>generateContent|predict)$")
_INPUT_MIME = {"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"}


def _error(code: int, status: str, message: str, headers=None) -> EmulatorResponse:
    return EmulatorResponse.json(
        code, {"error": {"code": code, "message": message, "status": status}}, headers
    )


def _invalid(message: str) -> EmulatorResponse:
    return _error(400, "INVALID_ARGUMENT", message)


class GeminiEmulator(Emulator):
    name = "gemini"
    provider = "google"
    base_path = "/v1beta"

    @cached_property
    def model_listing(self) -> ModelListing:
        """``GET /v1beta/models``: what a test may plant in or withdraw from."""
        # the emulator's own calendar, read on every list (a test may change the clock)
        return ModelListing(self.provider, GEMINI_LISTED, clock=lambda: self.clock())

    def route(self, request: EmulatorRequest) -> EmulatorResponse:
        if request.method == "GET" and request.path == "/v1beta/models":
            if not request.headers.get("x-goog-api-key"):
                return _error(
                    403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers."
                )
            return gemini_models_answer(self.model_listing, request.query)
        match = _PATH.match(request.path)
        if request.method != "POST" or match is None:
            return _error(404, "NOT_FOUND", f"{request.path} was not found on this server.")
        if not request.headers.get("x-goog-api-key"):
            return _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.")
        model, method = match["model"], match["method"]
        served = GEMINI_MODELS if method == "generateContent" else IMAGEN_MODELS
        if model not in served or self.shut_down(model):
            return _error(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version v1beta, "
                f"or is not supported for {method}.",
            )
        try:
            body = request.json()
        except ValueError:
            return _invalid("Invalid JSON payload received.")
        if not isinstance(body, dict):
            return _invalid("Invalid JSON payload received.")
        if method == "predict":
            return self._predict(model, body)
        return self._generate_content(model, body)

    # --- generateContent ----------------------------------------------------------------------

    def _generate_content(self, model: str, body: dict) -> EmulatorResponse:
        problem = _check_generate_content(model, body)
        if problem:
            return _invalid(problem)
        parts = body["contents"][-1]["parts"]
        prompt = " ".join(p["text"] for p in parts if "text" in p)
        inputs = sum(1 for p in parts if "inlineData" in p)
        failure = self._common_failure(prompt)
        if failure:
            return failure
        if "[moderate]" in prompt:
            blocked = {"blockReason": "PROHIBITED_CONTENT"}
            return EmulatorResponse.json(
                200, {"promptFeedback": blocked, "usageMetadata": {"promptTokenCount": 9}}
            )
        if "[image-safety]" in prompt:
            return EmulatorResponse.json(
                200, {"candidates": [{"finishReason": "IMAGE_SAFETY", "index": 0}]}
            )
        if "[text-only]" in prompt:
            return EmulatorResponse.json(
                200,
                {
                    "candidates": [
                        {
                            "content": {"role": "model", "parts": [{"text": TEXT_ONLY_ANSWER}]},
                            "finishReason": "STOP",
                            "index": 0,
                        }
                    ]
                },
            )

        config = body.get("generationConfig", {})
        image_config = config.get("imageConfig", {})
        size = image_config.get("imageSize", "1K")
        width, height = ratio_size(image_config.get("aspectRatio", "1:1"), IMAGE_SIZES[size])
        image = (
            b"plain text, not an image"
            if "[not-image]" in prompt
            else render_image(f"{prompt}#{inputs}", width, height, "png")
        )
        answer_parts = []
        if model in THINKING_MODELS:
            draft = render_image(f"draft {prompt}", 64, 64, "png")
            answer_parts.append(
                {"inlineData": {"mimeType": "image/png", "data": _b64(draft)}, "thought": True}
            )
        if "TEXT" in config.get("responseModalities", []):
            answer_parts.append({"text": "Here is your image."})
        answer_parts.append({"inlineData": {"mimeType": "image/png", "data": _b64(image)}})
        tokens = IMAGE_TOKENS.get(model, IMAGE_TOKENS[size])
        return EmulatorResponse.json(
            200,
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": answer_parts},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 12 + 258 * inputs,
                    "promptTokensDetails": [
                        {"modality": "TEXT", "tokenCount": 12},
                        *([{"modality": "IMAGE", "tokenCount": 258 * inputs}] if inputs else []),
                    ],
                    "candidatesTokenCount": tokens + 5,
                    "totalTokenCount": 12 + 258 * inputs + tokens + 5,
                    "candidatesTokensDetails": [
                        {"modality": "TEXT", "tokenCount": 5},
                        {"modality": "IMAGE", "tokenCount": tokens},
                    ],
                },
                "modelVersion": model,
            },
        )

    # --- predict (Imagen) ---------------------------------------------------------------------

    def _predict(self, model: str, body: dict) -> EmulatorResponse:
        problem = _check_predict(body)
        if problem:
            return _invalid(problem)
        prompt = body["instances"][0]["prompt"]
        failure = self._common_failure(prompt)
        if failure:
            return failure
        if "[moderate]" in prompt:
            return EmulatorResponse.json(200, {})  # filtered images are simply missing
        parameters = body.get("parameters", {})
        count = parameters.get("sampleCount", 4)
        mime = parameters.get("outputOptions", {}).get("mimeType", "image/png")
        width, height = ratio_size(parameters.get("aspectRatio", "1:1"))
        predictions = []
        for i in range(count):
            if "[filter-one]" in prompt and i == 0:
                continue
            data = (
                b"not an image at all"
                if "[not-image]" in prompt
                else render_image(prompt, width, height, mime.removeprefix("image/"), variant=i)
            )
            predictions.append({"bytesBase64Encoded": _b64(data), "mimeType": mime})
        return EmulatorResponse.json(200, {"predictions": predictions})

    def _common_failure(self, prompt: str) -> EmulatorResponse | None:
        trigger = self.trigger(prompt)
        self.maybe_slow(prompt)
        if trigger == "[rate-limit]":
            return _error(
                429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."
            )
        if trigger == "[server-error]":
            return _error(500, "INTERNAL", "An internal error has occurred.")
        if trigger == "[garbage]":
            return EmulatorResponse(
                200, b"<html>502 Bad Gateway</html>", {"content-type": "text/html"}
            )
        return None


def _check_generate_content(model: str, body: dict) -> str | None:
    unknown = set(body) - REQUEST_FIELDS
    if unknown:
        return _UNKNOWN.format(sorted(unknown)[0]) + ": Cannot find field."
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for content in contents:
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not parts:
            return "* GenerateContentRequest.contents.parts: contents.parts must not be empty."
        for part in parts:
            problem = _check_part(part)
            if problem:
                return problem
    if not any("text" in p for p in contents[-1]["parts"]):
        return "* GenerateContentRequest.contents: the prompt text is missing"
    config = body.get("generationConfig", {})
    unknown = set(config) - CONFIG_FIELDS
    if unknown:
        return _UNKNOWN.format(sorted(unknown)[0]) + " at 'generation_config'."
    modalities = config.get("responseModalities", ["TEXT"])
    if "IMAGE" not in modalities or not set(modalities) <= {"TEXT", "IMAGE"}:
        return "responseModalities must include IMAGE for an image model."
    if model == "gemini-2.0-flash-preview-image-generation" and set(modalities) != {
        "TEXT",
        "IMAGE",
    }:
        return "Model does not support the requested response modalities: IMAGE"
    image_config = config.get("imageConfig", {})
    if set(image_config) - {"aspectRatio", "imageSize"}:
        return "Unknown name in imageConfig (outputMimeType is not supported in the Gemini API)."
    ratios, sizes = GEMINI_MODELS[model]
    if "aspectRatio" in image_config and image_config["aspectRatio"] not in ratios:
        return f"imageConfig.aspectRatio: unsupported value {image_config['aspectRatio']!r}"
    if "imageSize" in image_config:
        if not sizes:
            return f"imageConfig.imageSize is not supported by {model}."
        if image_config["imageSize"] not in sizes:
            return (
                f"imageConfig.imageSize must be one of {', '.join(sorted(sizes))} (upper-case K)."
            )
    return None


def _check_part(part: object) -> str | None:
    if not isinstance(part, dict) or len(set(part) & {"text", "inlineData"}) != 1:
        return "Each part must set exactly one of text or inlineData."
    inline = part.get("inlineData")
    if inline is None:
        return None
    if not isinstance(inline, dict) or inline.get("mimeType") not in _INPUT_MIME:
        return "inlineData.mimeType: unsupported MIME type"
    try:
        data = base64.b64decode(inline.get("data") or "", validate=True)
    except ValueError:
        return (
            "Invalid value at 'contents.parts.inline_data.data' (TYPE_BYTES), "
            "Base64 decoding failed"
        )
    if not data:
        return "inlineData.data must not be empty"
    return None


def _check_predict(body: dict) -> str | None:
    unknown = set(body) - {"instances", "parameters"}
    if unknown:
        return _UNKNOWN.format(sorted(unknown)[0]) + ": Cannot find field."
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        return "instances: exactly one instance is supported"
    if set(instances[0]) != {"prompt"} or not instances[0]["prompt"]:
        return "instances[0]: a non-empty prompt is required (and nothing else)"
    parameters = body.get("parameters", {})
    allowed = {"sampleCount", "aspectRatio", "personGeneration", "outputOptions", "imageSize"}
    if set(parameters) - allowed:
        return f"parameters: unknown field {sorted(set(parameters) - allowed)[0]!r}"
    count = parameters.get("sampleCount", 4)
    if not isinstance(count, int) or not 1 <= count <= 4:
        return "parameters.sampleCount must be 1 to 4"
    if "aspectRatio" in parameters and parameters["aspectRatio"] not in IMAGEN_ASPECT_RATIOS:
        return "parameters.aspectRatio: unsupported value"
    mime = parameters.get("outputOptions", {}).get("mimeType", "image/png")
    if mime not in ("image/png", "image/jpeg"):
        return "parameters.outputOptions.mimeType must be image/png or image/jpeg"
    if parameters.get("personGeneration", "allow_adult") not in (
        "dont_allow",
        "allow_adult",
        "allow_all",
    ):
        return "parameters.personGeneration: unsupported value"
    return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
