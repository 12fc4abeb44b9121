"""xAI Images API emulator: ``/v1/images/generations`` and ``/v1/images/edits``, both JSON.

Rejects what xAI rejects: ``size`` and ``style`` ("Argument not supported"), multipart edits,
unknown models, out-of-range values. Answers ``b64_json`` or a temporary ``url`` (served from
here), with ``usage.cost_in_usd_ticks`` (1 USD = 10^10 ticks).

Prompt triggers besides the common ones: ``[moderate]`` → items with ``respect_moderation:
false`` and no image, ``[empty]`` → ``data: []``, ``[not-image]`` → ``b64_json`` that is not an
image, ``[moderate-one]`` → the first of several items is withheld.
"""

from __future__ import annotations

import base64
import uuid
from functools import cached_property

from local.emulators.base import (
    Emulator,
    EmulatorRequest,
    EmulatorResponse,
    ratio_size,
    render_image,
)
from local.emulators.lifecycle import Clock
from local.emulators.model_lists import XAI_LISTED, ModelListing, xai_models_answer

MODELS = {
    "grok-imagine-image", "grok-imagine-image-2.0", "grok-imagine-image-quality",
    "grok-imagine-image-pro", "grok-2-image", "grok-2-image-1212",
}  # fmt: skip
WITH_QUALITY = {"grok-imagine-image-2.0": {"low", "medium"}}  # only 2.0 takes quality
LEGACY = {"grok-2-image", "grok-2-image-1212"}  # no aspect_ratio, resolution, quality or edits
ASPECT_RATIOS = {
    "1:1",
    "3:4",
    "4:3",
    "9:16",
    "16:9",
    "2:3",
    "3:2",
    "9:19.5",
    "19.5:9",
    "9:20",
    "20:9",
    "1:2",
    "2:1",
    "auto",
}
RESOLUTIONS = {"1k": 1024, "2k": 2048}
FIELDS = {
    "model",
    "prompt",
    "n",
    "response_format",
    "aspect_ratio",
    "resolution",
    "quality",
    "user",
}
EDIT_FIELDS = FIELDS | {"image", "images"}
NOT_SUPPORTED = {"size", "style"}
# grok-imagine-image-2.0 is priced by quality and resolution.
TICKS_2_0 = {("low", "1k"): 200_000_000, ("medium", "1k"): 400_000_000,
             ("low", "2k"): 500_000_000, ("medium", "2k"): 800_000_000}  # fmt: skip
TICKS_PER_IMAGE = {
    "grok-imagine-image": 200_000_000,
    "grok-imagine-image-pro": 700_000_000,
    "grok-imagine-image-quality": 700_000_000,
    "grok-2-image": 700_000_000,
    "grok-2-image-1212": 700_000_000,
}


def _error(
    status: int, message: str, code: str = "Client specified an invalid argument", headers=None
) -> EmulatorResponse:
    # xAI's flat error shape: {"code": …, "error": "…"}
    return EmulatorResponse.json(status, {"code": code, "error": message}, headers)


class XAIEmulator(Emulator):
    name = "xai"
    provider = "xai"
    base_path = "/v1"

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.files: dict[str, bytes] = {}  # temporary "url" answers, served from here

    def route(self, request: EmulatorRequest) -> EmulatorResponse:
        if request.method == "GET" and request.path.startswith("/xai-imgen/"):
            data = self.files.get(request.path.rsplit("/", 1)[-1].split(".")[0])
            return (
                EmulatorResponse(200, data, {"content-type": "image/jpeg"})
                if data
                else EmulatorResponse(404)
            )
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return _error(401, "Incorrect API key provided.", "Unauthorized")
        if request.method == "GET" and request.path == "/v1/image-generation-models":
            return xai_models_answer(self.model_listing)
        edit = request.path == "/v1/images/edits"
        if request.method != "POST" or not (edit or request.path == "/v1/images/generations"):
            return _error(404, f"No route for {request.method} {request.path}", "Not Found")
        if not request.headers.get("content-type", "").startswith("application/json"):
            return _error(
                415, "Expected a JSON body (multipart is not supported).", "Unsupported Media Type"
            )
        try:
            body = request.json()
        except ValueError:
            return _error(400, "Failed to parse the request body as JSON.")
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.")
        if self.shut_down(body.get("model")):
            return _error(
                404,
                f"The model {body['model']} does not exist or your team does not have access "
                "to it.",
                "Not Found",
            )
        problem = _validate(body, edit=edit)
        if problem:
            return _error(400 if "does not exist" not in problem else 404, problem)
        return self._generate(body)

    @cached_property
    def model_listing(self) -> ModelListing:
        """``GET /v1/image-generation-models``: what a test may plant in or withdraw from."""
        # the emulator's own calendar, read on every list (a test may change the clock)
        return ModelListing(self.provider, XAI_LISTED, clock=lambda: self.clock())

    def _generate(self, body: dict) -> EmulatorResponse:
        prompt = body["prompt"]
        trigger = self.trigger(prompt)
        self.maybe_slow(prompt)
        if trigger == "[rate-limit]":
            return _error(
                429,
                "Too many requests: rate limit for images reached.",
                "Too Many Requests",
                headers={"retry-after": "3"},
            )
        if trigger == "[server-error]":
            return _error(500, "Internal server error.", "Internal Server Error")
        if trigger == "[garbage]":
            return EmulatorResponse(
                200, b"<html>gateway timeout</html>", {"content-type": "text/html"}
            )
        n = body.get("n", 1)
        if "[empty]" in prompt:
            return EmulatorResponse.json(200, {"data": [], "usage": {"cost_in_usd_ticks": 0}})
        if trigger == "[moderate]" and body["model"] == "grok-imagine-image-2.0":
            answer = {"data": [], "block_reason": "SAFETY_CHECK_FAILED"}
            return EmulatorResponse.json(200, answer | {"usage": {"cost_in_usd_ticks": 0}})
        if trigger == "[moderate]":
            items = [{"url": "", "respect_moderation": False} for _ in range(n)]
            return EmulatorResponse.json(200, {"data": items, "usage": {"cost_in_usd_ticks": 0}})

        long_side = RESOLUTIONS[body.get("resolution", "1k")]
        ratio = body.get("aspect_ratio", "1:1")
        # ratio_size takes whole numbers: 19.5:9 and auto render as squares here.
        drawable = (
            ratio if ratio in ASPECT_RATIOS and "." not in ratio and ratio != "auto" else "1:1"
        )
        width, height = ratio_size(drawable, long_side)
        items, delivered = [], 0
        for i in range(n):
            if "[moderate-one]" in prompt and i == 0:
                items.append({"url": "", "respect_moderation": False})
                continue
            image = (
                b"GIF89a not a jpeg"
                if "[not-image]" in prompt
                else render_image(prompt, width, height, "jpeg", variant=i)
            )
            item: dict = {"revised_prompt": f"{prompt}, detailed, vivid lighting"}
            if body.get("response_format", "url") == "b64_json":
                item["b64_json"] = base64.b64encode(image).decode()
            else:
                file_id = uuid.uuid4().hex
                self.files[file_id] = image
                item["url"] = (
                    f"{self.base_url or 'https://emulator.invalid'}/xai-imgen/{file_id}.jpeg"
                )
            if body["model"] == "grok-imagine-image-2.0":
                item["mime_type"] = "image/jpeg"
            items.append(item | {"respect_moderation": True})
            delivered += 1
        if body["model"] == "grok-imagine-image-2.0":
            tier = (body.get("quality", "medium"), body.get("resolution", "1k"))
            ticks = TICKS_2_0[tier] * delivered
        else:
            ticks = TICKS_PER_IMAGE[body["model"]] * delivered
        return EmulatorResponse.json(200, {"data": items, "usage": {"cost_in_usd_ticks": ticks}})


def _validate(body: dict, *, edit: bool) -> str | None:
    for name in sorted(NOT_SUPPORTED & set(body)):
        return f"Argument not supported: {name}"
    unknown = set(body) - (EDIT_FIELDS if edit else FIELDS)
    if unknown:
        return f"Unknown argument: {sorted(unknown)[0]}"
    model = body.get("model")
    if model not in MODELS:
        return f"The model {model} does not exist or your team does not have access to it."
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        return "prompt: required, a non-empty string"
    n = body.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10:
        return "n: must be an integer from 1 to 10"
    if body.get("response_format", "url") not in ("url", "b64_json"):
        return "response_format: must be url or b64_json"
    if model in LEGACY:
        used = {"aspect_ratio", "resolution", "quality", "image", "images"} & set(body)
        if used or edit:
            return f"Argument not supported on {model}: {sorted(used)[0] if used else 'edits'}"
    if "aspect_ratio" in body and body["aspect_ratio"] not in ASPECT_RATIOS:
        return f"aspect_ratio: unsupported value {body['aspect_ratio']!r}"
    if "resolution" in body and body["resolution"] not in RESOLUTIONS:
        return "resolution: must be 1k or 2k"
    if "quality" in body:
        if model not in WITH_QUALITY:
            return f"Argument not supported on {model}: quality"
        if body["quality"] not in WITH_QUALITY[model]:
            return "quality: must be low or medium"
    if edit:
        return _validate_edit_images(body)
    return None


def _validate_edit_images(body: dict) -> str | None:
    if ("image" in body) == ("images" in body):
        return "Exactly one of image or images is required for an edit."
    images = [body["image"]] if "image" in body else body["images"]
    if not isinstance(images, list) or not 1 <= len(images) <= 3:
        return "images: 1 to 3 images"
    for image in images:
        if (
            not isinstance(image, dict)
            or set(image) - {"url", "type"}
            or not isinstance(image.get("url"), str)
        ):
            return 'image: expected {"url": …, "type": "image_url"}'
        if image.get("type", "image_url") != "image_url":
            return "image.type: must be image_url"
        url = image["url"]
        if url.startswith("data:image/") and ";base64," in url:
            try:
                data = base64.b64decode(url.split(",", 1)[1], validate=True)
            except ValueError:
                return "image.url: invalid base64 data URL"
            if not data.startswith((b"\x89PNG", b"\xff\xd8\xff")) and data[8:12] != b"WEBP":
                return "image.url: the data URL is not a png, jpeg or webp image"
        elif not url.startswith("https://"):
            return "image.url: must be an https URL or a base64 data URL"
    return None
