"""OpenAI Images API emulator: ``/v1/images/generations`` (JSON) and ``/v1/images/edits``
(multipart), gpt-image-* and DALL·E, with OpenAI's error shapes and ``usage``."""

from __future__ import annotations

import base64
import uuid
from functools import cached_property

from local.emulators.base import Emulator, EmulatorRequest, EmulatorResponse, render_image
from local.emulators.lifecycle import Clock
from local.emulators.model_lists import OPENAI_LISTED, ModelListing, openai_models_answer

GPT_IMAGE_1 = {
    "gpt-image-1", "gpt-image-1.5", "gpt-image-1.5-2025-12-16", "gpt-image-1-mini",
    "chatgpt-image-latest",
}  # fmt: skip
# The gpt-image-2 generation: free sizes; 2.5/2.6 add xhigh and max, 2.6 adds complexity.
GPT_IMAGE_2 = {
    "gpt-image-2": {"low", "medium", "high", "auto"},
    "gpt-image-2-2026-04-21": {"low", "medium", "high", "auto"},
    "gpt-image-2.5-flare": {"low", "medium", "high", "xhigh", "max", "auto"},
    "gpt-image-2.5-sunburst": {"low", "medium", "high", "xhigh", "max", "auto"},
    "gpt-image-2.6-flare": {"low", "medium", "high", "xhigh", "max", "auto"},
    "gpt-image-2.6-sunburst": {"low", "medium", "high", "xhigh", "max", "auto"},
}
WITH_COMPLEXITY = {"gpt-image-2.6-flare", "gpt-image-2.6-sunburst"}
GPT_IMAGE = GPT_IMAGE_1 | set(GPT_IMAGE_2)
SIZES = {
    "gpt-image": {"1024x1024", "1536x1024", "1024x1536", "auto"},
    "dall-e-3": {"1024x1024", "1792x1024", "1024x1792"},
    "dall-e-2": {"256x256", "512x512", "1024x1024"},
}
QUALITIES = {
    "gpt-image": {"low", "medium", "high", "auto"},
    "dall-e-3": {"standard", "hd"},
    "dall-e-2": {"standard"},
}
# Image output tokens for a square image, by quality (gpt-image-1's published figures; the
# gpt-image-2 generation's from its per-image prices at $30/M).
OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160, "auto": 4160}
OUTPUT_TOKENS_2 = {"low": 196, "medium": 1756, "high": 7024, "auto": 7024, "xhigh": 9000,
                   "max": 12000}  # fmt: skip
IMAGE_INPUT_TOKENS = 323  # per input image


def _error(
    status: int,
    message: str,
    *,
    type_: str,
    code: str | None,
    param: str | None = None,
    headers=None,
):
    return EmulatorResponse.json(
        status,
        {"error": {"message": message, "type": type_, "param": param, "code": code}},
        headers,
    )


class OpenAIEmulator(Emulator):
    name = "openai"
    provider = "openai"
    base_path = "/v1"

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.files: dict[str, bytes] = {}  # DALL·E "url" answers, served from here

    def route(self, request: EmulatorRequest) -> EmulatorResponse:
        if request.method == "GET" and "/files/" in request.path:
            data = self.files.get(request.path.rsplit("/", 1)[-1])
            return (
                EmulatorResponse(200, data, {"content-type": "image/png"})
                if data
                else EmulatorResponse(404)
            )
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return _error(
                401, "You didn't provide an API key.", type_="invalid_request_error", code=None
            )
        if request.method == "GET" and request.path == "/v1/models":
            key = request.headers["authorization"].removeprefix("Bearer ")
            return openai_models_answer(self.model_listing, key)
        if request.method == "POST" and request.path.endswith("/images/generations"):
            if not request.headers.get("content-type", "").startswith("application/json"):
                return _error(400, "Expected JSON.", type_="invalid_request_error", code=None)
            return self._generate(request.json(), edit=False)
        if request.method == "POST" and request.path.endswith("/images/edits"):
            return self._edit(request)
        return _error(404, "Unknown route.", type_="invalid_request_error", code="unknown_url")

    @cached_property
    def model_listing(self) -> ModelListing:
        """``GET /v1/models``: what a test may plant in or withdraw from."""
        # the emulator's own calendar, read on every list (a test may change the clock)
        return ModelListing(
            self.provider, OPENAI_LISTED, clock=lambda: self.clock(), publishes_shutdown_dates=True
        )

    def _edit(self, request: EmulatorRequest) -> EmulatorResponse:
        fields, images, mask = {}, [], None
        for part in request.form():
            if part.name in ("image[]", "image") and part.filename:
                images.append(part)
            elif part.name == "mask":
                mask = part
            else:
                fields[part.name] = part.text
        model = fields.get("model", "dall-e-2")
        if not images:
            return _error(
                400,
                "image is required",
                type_="invalid_request_error",
                code="missing_required_parameter",
                param="image",
            )
        if model in GPT_IMAGE and len(images) > 16:
            return _error(
                400, "Too many images.", type_="invalid_request_error", code=None, param="image"
            )
        if model == "dall-e-2" and (len(images) > 1 or images[0].name != "image"):
            return _error(
                400,
                "dall-e-2 takes one 'image'.",
                type_="invalid_request_error",
                code=None,
                param="image",
            )
        if model == "dall-e-3":
            return _error(
                400,
                "dall-e-3 does not support edits.",
                type_="invalid_request_error",
                code=None,
                param="model",
            )
        if mask is not None and not mask.data.startswith(b"\x89PNG"):
            return _error(
                400, "mask must be a PNG.", type_="invalid_request_error", code=None, param="mask"
            )
        if "n" in fields:
            fields["n"] = int(fields["n"])
        return self._generate(fields, edit=True, input_images=len(images))

    def _generate(self, body: dict, *, edit: bool, input_images: int = 0) -> EmulatorResponse:
        model = body.get("model", "dall-e-2")
        prompt = body.get("prompt") or ""
        family = "gpt-image" if model in GPT_IMAGE else model
        if family not in SIZES or self.shut_down(model):
            return _error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                type_="invalid_request_error",
                code="model_not_found",
            )
        if not prompt:
            return _error(
                400,
                "prompt is required",
                type_="invalid_request_error",
                code="missing_required_parameter",
                param="prompt",
            )
        if family == "gpt-image" and "response_format" in body:
            return _error(
                400,
                "Unknown parameter: 'response_format'.",
                type_="invalid_request_error",
                code="unknown_parameter",
                param="response_format",
            )
        size = body.get("size", "1024x1024")
        if model in GPT_IMAGE_2:
            w, h = (int(x) for x in size.split("x")) if size != "auto" else (1024, 1024)
            if (
                w % 16
                or h % 16
                or max(w, h) > 3840
                or max(w / h, h / w) > 3
                or not 655_360 <= w * h <= 8_294_400
            ):
                return _error(
                    400,
                    f"Invalid size '{size}'.",
                    type_="invalid_request_error",
                    code="invalid_value",
                    param="size",
                )
        elif size not in SIZES[family]:
            return _error(
                400,
                f"Invalid size '{size}'.",
                type_="invalid_request_error",
                code="invalid_value",
                param="size",
            )
        quality = body.get("quality")
        qualities = GPT_IMAGE_2.get(model) or QUALITIES[family]
        for name in ("complexity", "input_fidelity"):
            if name in body and (
                (name == "complexity" and model not in WITH_COMPLEXITY)
                or (name == "input_fidelity" and model in GPT_IMAGE_2)
            ):
                return _error(
                    400,
                    f"Unknown parameter: '{name}'.",
                    type_="invalid_request_error",
                    code="unknown_parameter",
                    param=name,
                )
        if body.get("complexity", "low") not in ("low", "medium", "high"):
            return _error(
                400,
                "Invalid complexity.",
                type_="invalid_request_error",
                code="invalid_value",
                param="complexity",
            )
        if quality is not None and quality not in qualities:
            return _error(
                400,
                f"Invalid quality '{quality}'.",
                type_="invalid_request_error",
                code="invalid_value",
                param="quality",
            )
        n = int(body.get("n", 1))
        if not 1 <= n <= (1 if model == "dall-e-3" else 10):
            return _error(
                400,
                f"Invalid n {n}.",
                type_="invalid_request_error",
                code="invalid_value",
                param="n",
            )
        fmt = body.get("output_format", "png")
        if family != "gpt-image" and "output_format" in body:
            return _error(
                400,
                "Unknown parameter: 'output_format'.",
                type_="invalid_request_error",
                code="unknown_parameter",
                param="output_format",
            )

        trigger = self.trigger(prompt)
        self.maybe_slow(prompt)
        if trigger == "[moderate]":
            code = "moderation_blocked" if family == "gpt-image" else "content_policy_violation"
            return _error(
                400,
                "Your request was rejected by the safety system.",
                type_="image_generation_user_error",
                code=code,
            )
        if trigger == "[rate-limit]":
            return _error(
                429,
                "Rate limit reached for images per minute.",
                type_="requests",
                code="rate_limit_exceeded",
                headers={"retry-after": "7"},
            )
        if trigger == "[server-error]":
            return _error(
                500,
                "The server had an error while processing your request.",
                type_="server_error",
                code=None,
            )
        if trigger == "[garbage]":
            return EmulatorResponse(
                200, b"<html>upstream proxy error</html>", {"content-type": "text/html"}
            )

        w, h = (1024, 1024) if size == "auto" else (int(x) for x in size.split("x"))
        data = []
        for i in range(n):
            image = render_image(prompt, w, h, fmt, variant=i)
            item: dict = {}
            if family != "gpt-image" and body.get("response_format", "url") == "url":
                file_id = uuid.uuid4().hex
                self.files[file_id] = image
                item["url"] = f"{self.base_url or 'https://emulator.invalid'}/v1/files/{file_id}"
            else:
                item["b64_json"] = base64.b64encode(image).decode()
            if model == "dall-e-3":
                item["revised_prompt"] = f"A detailed rendering of: {prompt}"
            data.append(item)
        answer: dict = {"created": 1767225600, "data": data}
        if family == "gpt-image":
            scale = (w * h) / (1024 * 1024)
            per_quality = OUTPUT_TOKENS_2 if model in GPT_IMAGE_2 else OUTPUT_TOKENS
            tokens = int(per_quality[quality or "auto"] * scale) * n
            image_tokens = IMAGE_INPUT_TOKENS * input_images
            answer |= {
                "output_format": fmt,
                "size": size,
                "quality": quality or "high",
                "usage": {
                    "input_tokens": 50 + image_tokens,
                    "output_tokens": tokens,
                    "total_tokens": tokens + 50 + image_tokens,
                    "input_tokens_details": {"text_tokens": 50, "image_tokens": image_tokens},
                },
            }
        return EmulatorResponse.json(200, answer)
