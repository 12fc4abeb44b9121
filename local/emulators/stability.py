"""Stability AI v2beta emulator: ``POST /v2beta/stable-image/generate/{ultra|core|sd3}``.

Multipart only (like the real API, even without a file); each endpoint's fields are checked
against Stability's schema (an unknown or invalid field is a 400 ``bad_request``); the answer is
raw image bytes with ``finish-reason``/``seed`` headers for ``accept: image/*``, or
``{"image", "seed", "finish_reason"}`` for ``accept: application/json``.

Prompt triggers besides the common ones: ``[filtered]`` → HTTP 200 with ``finish_reason
CONTENT_FILTERED`` (a blurred image), ``[not-image]`` → a 200 whose bytes are not an image.
"""

from __future__ import annotations

import base64
import secrets
import uuid

from local.emulators.base import (
    Emulator,
    EmulatorRequest,
    EmulatorResponse,
    FormPart,
    ratio_size,
    render_image,
)

ASPECT_RATIOS = {"21:9", "16:9", "3:2", "5:4", "1:1", "4:5", "2:3", "9:16", "9:21"}
STYLE_PRESETS = {
    "enhance",
    "anime",
    "photographic",
    "digital-art",
    "comic-book",
    "fantasy-art",
    "line-art",
    "analog-film",
    "neon-punk",
    "isometric",
    "low-poly",
    "origami",
    "modeling-compound",
    "cinematic",
    "3d-model",
    "pixel-art",
    "tile-texture",
}
SD3_MODELS = {"sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3.5-flash"}
COMMON = {"prompt", "negative_prompt", "aspect_ratio", "seed", "output_format", "style_preset"}
FIELDS = {
    "ultra": COMMON | {"image", "strength"},
    "core": COMMON,
    "sd3": COMMON | {"mode", "image", "strength", "model", "cfg_scale"},
}
MAX_SEED = 4_294_967_294
MAX_BODY = 10 * 1024 * 1024
MODERATION_MESSAGE = (
    "Your request was flagged by our content moderation system, as a result your request was "
    "denied and you were not charged."
)


def _error(status: int, name: str, *errors: str, headers=None) -> EmulatorResponse:
    return EmulatorResponse.json(
        status, {"id": uuid.uuid4().hex, "name": name, "errors": list(errors)}, headers
    )


class StabilityEmulator(Emulator):
    name = "stability"
    provider = "stability"

    def route(self, request: EmulatorRequest) -> EmulatorResponse:
        prefix = "/v2beta/stable-image/generate/"
        if request.method != "POST" or not request.path.startswith(prefix):
            return _error(404, "not_found", f"{request.method} {request.path} does not exist")
        endpoint = request.path.removeprefix(prefix)
        if endpoint not in FIELDS:
            return _error(404, "not_found", f"unknown endpoint {endpoint}")
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return _error(401, "unauthorized", "authorization: missing or invalid API key")
        if len(request.body) > MAX_BODY:
            return _error(413, "payload_too_large", "The request body is larger than 10MiB.")
        try:
            parts = request.form()
        except ValueError:
            return _error(400, "bad_request", "content-type: must be multipart/form-data")
        return self._generate(endpoint, parts, request.headers.get("accept", "image/*"))

    def _generate(self, endpoint: str, parts: list[FormPart], accept: str) -> EmulatorResponse:
        fields = {p.name: p.text for p in parts if p.filename is None}
        files = {p.name: p for p in parts if p.filename is not None}
        problems = self._validate(endpoint, fields, files)
        if problems:
            return _error(400, "bad_request", *problems)

        prompt = fields["prompt"]
        trigger = self.trigger(prompt)
        self.maybe_slow(prompt)
        if trigger == "[moderate]":
            return _error(403, "content_moderation", MODERATION_MESSAGE)
        if trigger == "[rate-limit]":
            return _error(
                429,
                "rate_limit_exceeded",
                "You have exceeded the rate limit of 150 requests within a 10 second period.",
                headers={"retry-after": "60"},
            )
        if trigger == "[server-error]":
            return _error(500, "internal_error", "An unexpected server error occurred.")
        if trigger == "[garbage]":
            return EmulatorResponse(
                200, b"<html>upstream proxy error</html>", {"content-type": "application/json"}
            )

        fmt = fields.get("output_format", "png")
        # 0 or none: a fresh seed per call, as Stability does — n calls give n different images.
        seed = int(float(fields.get("seed", "0"))) or secrets.randbelow(MAX_SEED) + 1
        filtered = "[filtered]" in prompt
        width, height = ratio_size(fields.get("aspect_ratio", "1:1"))
        image = (
            b"this is not an image"
            if "[not-image]" in prompt
            else render_image(prompt, width, height, fmt, variant=seed)
        )
        finish = "CONTENT_FILTERED" if filtered else "SUCCESS"
        if accept.startswith("application/json"):
            return EmulatorResponse.json(
                200,
                {"image": base64.b64encode(image).decode(), "seed": seed, "finish_reason": finish},
                {"content-type": f"application/json; type=image/{fmt}"},
            )
        return EmulatorResponse(
            200,
            image,
            {
                "content-type": f"image/{fmt}",
                "finish-reason": finish,
                "seed": str(seed),
                "x-request-id": uuid.uuid4().hex,
            },
        )

    @staticmethod
    def _validate(endpoint: str, fields: dict[str, str], files: dict[str, FormPart]) -> list[str]:
        problems = [
            f"{name}: unrecognized field"
            for name in (fields.keys() | files.keys()) - FIELDS[endpoint]
        ]
        prompt = fields.get("prompt", "")
        if not 1 <= len(prompt) <= 10000:
            problems.append("prompt: must be 1 to 10000 characters")
        if len(fields.get("negative_prompt", "")) > 10000:
            problems.append("negative_prompt: must be at most 10000 characters")
        if "aspect_ratio" in fields and fields["aspect_ratio"] not in ASPECT_RATIOS:
            problems.append(f"aspect_ratio: must be one of {sorted(ASPECT_RATIOS)}")
        if "seed" in fields and not _number_in(fields["seed"], 0, MAX_SEED):
            problems.append(f"seed: must be a number from 0 to {MAX_SEED}")
        if fields.get("output_format", "png") not in ("png", "jpeg", "webp"):
            problems.append("output_format: must be png, jpeg or webp")
        if "style_preset" in fields and fields["style_preset"] not in STYLE_PRESETS:
            problems.append("style_preset: invalid value")
        if "model" in fields and fields["model"] not in SD3_MODELS:
            problems.append(f"model: must be one of {sorted(SD3_MODELS)}")
        if "cfg_scale" in fields and not _number_in(fields["cfg_scale"], 1, 10):
            problems.append("cfg_scale: must be a number from 1 to 10")
        if "image" in fields:
            problems.append("image: must be a file")
        problems += _check_image_to_image(endpoint, fields, files.get("image"))
        return problems


def _check_image_to_image(
    endpoint: str, fields: dict[str, str], image: FormPart | None
) -> list[str]:
    problems = []
    mode = fields.get("mode", "text-to-image")
    if mode not in ("text-to-image", "image-to-image"):
        return ["mode: must be text-to-image or image-to-image"]
    if endpoint == "sd3" and mode == "image-to-image":
        if image is None:
            problems.append("image: required in image-to-image mode")
        if "aspect_ratio" in fields:
            problems.append("aspect_ratio: not valid in image-to-image mode")
    elif endpoint == "sd3" and image is not None:
        problems.append("image: only valid with mode=image-to-image")
    if image is not None:
        if not image.data.startswith((b"\x89PNG", b"\xff\xd8\xff")) and image.data[8:12] != b"WEBP":
            problems.append("image: must be a jpeg, png or webp")
        if "strength" not in fields:
            problems.append("strength: required when an image is provided")
    if "strength" in fields:
        if image is None:
            problems.append("strength: only valid with an image")
        elif not _number_in(fields["strength"], 0, 1):
            problems.append("strength: must be a number from 0 to 1")
    return problems


def _number_in(text: str, low: float, high: float) -> bool:
    try:
        return low <= float(text) <= high
    except ValueError:
        return False
