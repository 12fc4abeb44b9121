"""Black Forest Labs (Flux) emulator: submit ``POST /v1/{model}``, poll the returned
``polling_url`` (``GET /v1/get_result?id=…``), then fetch ``result.sample`` — a signed, expiring
delivery URL that, like BFL's, is not part of the API and must not receive the ``x-key`` header.

Prompt switches (besides the shared ones of ``base.py``):

- ``[polls=N]``: the task answers ``Pending`` N times before its outcome (else ``default_polls``);
- ``[pending]``: the task never finishes (for budget tests);
- ``[moderate]``: the request is refused at the first poll (``Request Moderated``);
- ``[moderate-output]``: the image is refused after generating (``Content Moderated``);
- ``[error]``: the task ends in ``Error``; ``[lost]``: polls answer ``Task not found``;
- ``[no-credits]``: submit answers 402; ``[rate-limit]``: 429; ``[server-error]``: 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from local.emulators.base import (
    Emulator,
    EmulatorRequest,
    EmulatorResponse,
    ratio_size,
    render_image,
)
from local.emulators.lifecycle import Clock

# Credits per image (1 credit = $0.01), as BFL's submit answer reports them in ``cost``.
CREDITS = {
    "flux-dev": 2.5,
    "flux-pro-1.1": 4.0,
    "flux-pro-1.1-ultra": 6.0,
    "flux-kontext-pro": 4.0,
    "flux-kontext-max": 8.0,
}
_COMMON = {"prompt", "seed", "safety_tolerance", "output_format", "prompt_upsampling",
           "webhook_url", "webhook_secret"}  # fmt: skip
FIELDS = {
    "flux-dev": _COMMON | {"width", "height", "image_prompt", "steps", "guidance"},
    "flux-pro-1.1": _COMMON | {"width", "height", "image_prompt"},
    "flux-pro-1.1-ultra": _COMMON | {"aspect_ratio", "raw", "image_prompt",
                                     "image_prompt_strength"},
    "flux-kontext-pro": _COMMON | {"aspect_ratio", "input_image", "input_image_2",
                                   "input_image_3", "input_image_4"},
}  # fmt: skip
FIELDS["flux-kontext-max"] = FIELDS["flux-kontext-pro"]
# FLUX.2: model → (most input images, credits for the first megapixel, for each further one).
FLUX_2 = {
    "flux-2-pro": (8, 3.0, 1.5),
    "flux-2-max": (8, 7.0, 3.0),
    "flux-2-flex": (8, 5.0, 5.0),
    "flux-2-klein-4b": (4, 1.4, 0.1),
    "flux-2-klein-9b": (4, 1.5, 0.2),
}
FLUX_2_MAX_PIXELS = 4 * 1024 * 1024
FLUX_2_IMAGE_FIELDS = ["input_image"] + [f"input_image_{i}" for i in range(2, 9)]
for _model, (_inputs, _, _) in FLUX_2.items():
    FIELDS[_model] = (
        (_COMMON - {"safety_tolerance"})
        | {"safety_tolerance", "width", "height"}
        | set(FLUX_2_IMAGE_FIELDS[:_inputs])
        | ({"steps", "guidance"} if _model == "flux-2-flex" else set())
    )
DEFAULT_FORMAT = {"flux-kontext-pro": "png", "flux-kontext-max": "png"}
_POLLS = re.compile(r"\[polls=(\d{1,3})\]")
_OUTCOMES = ("[moderate-output]", "[moderate]", "[error]", "[lost]", "[pending]")


@dataclass
class FluxTask:
    id: str
    model: str
    prompt: str
    width: int
    height: int
    output_format: str
    seed: int
    pending_polls: int
    outcome: str | None  # one of _OUTCOMES, or None for a normal image
    polls: int = 0
    sample_token: str | None = None


@dataclass
class Sample:
    data: bytes
    mime_type: str
    expires_at: float


@dataclass
class KeyLeak:
    """A request that carried ``x-key`` to a delivery URL (the service must never do this)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)


def _detail(status: int, msg: str, loc: list[Any] | None = None) -> EmulatorResponse:
    if status == 422:
        document = {"detail": [{"loc": loc or ["body"], "msg": msg, "type": "value_error"}]}
    else:
        document = {"detail": msg}
    return EmulatorResponse.json(status, document)


class FluxEmulator(Emulator):
    name = "flux"
    provider = "flux"
    default_polls = 2
    sample_ttl_seconds = 600.0
    polling_prefix = ""  # e.g. "/us1": the polling URL differs from {base}/v1/get_result

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.tasks: dict[str, FluxTask] = {}
        self.samples: dict[str, Sample] = {}
        self.key_leaks: list[KeyLeak] = []
        self._secret = uuid.uuid4().bytes

    # --- routes -----------------------------------------------------------------------------

    def route(self, request: EmulatorRequest) -> EmulatorResponse:
        path = request.path
        if request.method == "GET" and path.startswith("/delivery/"):
            return self._sample(request)
        if not request.headers.get("x-key"):
            return _detail(403, "Not authenticated")
        if request.method == "GET" and path.endswith("/v1/get_result"):
            return self._result(request.query.get("id", ""))
        if request.method == "POST" and path.startswith("/v1/"):
            return self._submit(path.removeprefix("/v1/"), request)
        return _detail(404, "Not Found")

    def _submit(self, model: str, request: EmulatorRequest) -> EmulatorResponse:
        if model not in FIELDS:
            return _detail(404, "Not Found")
        body = request.json()
        if not isinstance(body, dict):
            return _detail(422, "Input should be a valid dictionary")
        problem = self._validate(model, body)
        if problem:
            return problem
        prompt = body.get("prompt") or ""
        trigger = self.trigger(prompt)
        self.maybe_slow(prompt)
        if "[no-credits]" in prompt:
            return _detail(402, "Insufficient credits")
        if trigger == "[rate-limit]":
            return EmulatorResponse.json(
                429, {"detail": "You have reached the maximum number of active tasks"},
                {"retry-after": "3"},
            )  # fmt: skip
        if trigger == "[server-error]":
            return _detail(500, "Internal Server Error")
        if trigger == "[garbage]":
            return EmulatorResponse(200, b"<html>bad gateway</html>", {"content-type": "text/html"})

        # The image has the size asked for (or, for ratio-only models, the ratio's shape at
        # about 1 MP), as BFL's does: a client that fits sizes wrongly sees it in the bytes.
        if model in FLUX_2:
            width, height = int(body.get("width", 1024)), int(body.get("height", 1024))
        elif "width" in FIELDS[model]:
            width, height = int(body.get("width", 1024)), int(body.get("height", 768))
        else:
            width, height = ratio_size(body.get("aspect_ratio") or "1:1", long_side=1024)
        match = _POLLS.search(prompt)
        task = FluxTask(
            id=str(uuid.uuid4()),
            model=model,
            prompt=prompt,
            width=width,
            height=height,
            output_format=body.get("output_format") or DEFAULT_FORMAT.get(model, "jpeg"),
            seed=int(body["seed"]) if body.get("seed") is not None else 42,
            pending_polls=int(match.group(1)) if match else self.default_polls,
            outcome=next((o for o in _OUTCOMES if o in prompt), None),
        )
        with self._lock:
            self.tasks[task.id] = task
        polling_url = f"{self.base_url}{self.polling_prefix}/v1/get_result?id={task.id}"
        input_mp = _input_megapixels(body)
        output_mp = width * height / 1e6
        cost = CREDITS.get(model)
        if model in FLUX_2:  # priced per megapixel, input megapixels included
            _, first, further = FLUX_2[model]
            cost = round(first + (max(1, math.ceil(input_mp + output_mp)) - 1) * further, 2)
        return EmulatorResponse.json(
            200, {"id": task.id, "polling_url": polling_url, "cost": cost,
                  "input_mp": round(input_mp, 2), "output_mp": round(output_mp, 2)},
        )  # fmt: skip

    def _validate(self, model: str, body: dict) -> EmulatorResponse | None:
        extra = sorted(set(body) - FIELDS[model])
        if extra:
            return _detail(422, "Extra inputs are not permitted", ["body", extra[0]])
        if model.startswith("flux-kontext") and not body.get("prompt"):
            return _detail(422, "Field required", ["body", "prompt"])
        if model in FLUX_2:
            return self._validate_flux_2(model, body)
        for side in ("width", "height"):
            if side in body:
                value = body[side]
                if not isinstance(value, int) or value % 32 or not 256 <= value <= 1440:
                    return _detail(
                        422, "Input should be a multiple of 32 between 256 and 1440", ["body", side]
                    )
        ratio = body.get("aspect_ratio")
        if ratio is not None:
            try:
                w, h = (int(x) for x in str(ratio).split(":"))
                if not 9 / 21 <= w / h <= 21 / 9:
                    raise ValueError
            except ValueError:
                return _detail(422, "Aspect ratio must be between 21:9 and 9:21",
                               ["body", "aspect_ratio"])  # fmt: skip
        tolerance = body.get("safety_tolerance")
        if tolerance is not None and (not isinstance(tolerance, int) or not 0 <= tolerance <= 6):
            return _detail(422, "Input should be between 0 and 6", ["body", "safety_tolerance"])
        if body.get("output_format") not in (None, "jpeg", "png"):
            return _detail(422, "Input should be 'jpeg' or 'png'", ["body", "output_format"])
        for name in ("image_prompt", "input_image", "input_image_2", "input_image_3",
                     "input_image_4"):  # fmt: skip
            value = body.get(name)
            if value is not None and not str(value).startswith("http"):
                try:
                    base64.b64decode(value, validate=True)
                except ValueError:
                    return _detail(422, "Invalid base64 image", ["body", name])
        return None

    def _validate_flux_2(self, model: str, body: dict) -> EmulatorResponse | None:
        if not body.get("prompt"):
            return _detail(422, "Field required", ["body", "prompt"])
        for side in ("width", "height"):
            value = body.get(side, 1024)
            if not isinstance(value, int) or value % 16 or value < 64:
                return _detail(422, "Input should be a multiple of 16, at least 64", ["body", side])
        if body.get("width", 1024) * body.get("height", 1024) > FLUX_2_MAX_PIXELS:
            return _detail(422, "The image may have at most 4 megapixels", ["body", "width"])
        tolerance = body.get("safety_tolerance")
        if tolerance is not None and (not isinstance(tolerance, int) or not 0 <= tolerance <= 5):
            return _detail(422, "Input should be between 0 and 5", ["body", "safety_tolerance"])
        steps, guidance = body.get("steps"), body.get("guidance")
        if steps is not None and (not isinstance(steps, int) or not 1 <= steps <= 50):
            return _detail(422, "Input should be between 1 and 50", ["body", "steps"])
        if guidance is not None and not (
            isinstance(guidance, int | float) and 1.5 <= guidance <= 10
        ):
            return _detail(422, "Input should be between 1.5 and 10", ["body", "guidance"])
        if body.get("output_format") not in (None, "jpeg", "png"):
            return _detail(422, "Input should be 'jpeg' or 'png'", ["body", "output_format"])
        for name in FLUX_2_IMAGE_FIELDS:
            value = body.get(name)
            if value is not None and not str(value).startswith("http"):
                try:
                    base64.b64decode(value, validate=True)
                except ValueError:
                    return _detail(422, "Invalid base64 image", ["body", name])
        return None

    def _result(self, task_id: str) -> EmulatorResponse:
        with self._lock:
            task = self.tasks.get(task_id)
            if task is not None:
                task.polls += 1
        if task is None or task.outcome == "[lost]":
            return EmulatorResponse.json(200, {"id": task_id, "status": "Task not found"})
        if task.outcome == "[moderate]":
            reasons = {"Moderation Reasons": ["Derivative Works Filter"]}
            return self._status(task, "Request Moderated", details=reasons)
        if task.outcome == "[pending]" or task.polls <= task.pending_polls:
            done = 0.99 if task.outcome == "[pending]" else task.polls / (task.pending_polls + 1)
            return self._status(task, "Pending", progress=round(done, 2))
        if task.outcome == "[moderate-output]":
            return self._status(task, "Content Moderated", details={"Moderation Reasons": ["NSFW"]})
        if task.outcome == "[error]":
            return self._status(task, "Error", details={"message": "Generation failed"})
        return self._status(task, "Ready", result=self._ready_result(task))

    def _status(self, task: FluxTask, status: str, **extra: Any) -> EmulatorResponse:
        body = {"id": task.id, "status": status, "result": None, "progress": None,
                "details": None, "preview": None}  # fmt: skip
        return EmulatorResponse.json(200, body | extra)

    def _ready_result(self, task: FluxTask) -> dict[str, Any]:
        with self._lock:
            if task.sample_token is None:
                data = render_image(task.prompt, task.width, task.height, task.output_format)
                task.sample_token = uuid.uuid4().hex
                mime = "image/png" if task.output_format == "png" else "image/jpeg"
                self.samples[task.sample_token] = Sample(
                    data, mime, time.time() + self.sample_ttl_seconds
                )
            sample = self.samples[task.sample_token]
        ext = "png" if sample.mime_type == "image/png" else "jpeg"
        expires = int(sample.expires_at)
        signature = self._sign(task.sample_token, expires)
        path = f"/delivery/{task.sample_token}/sample.{ext}"
        url = f"{self.base_url}{path}?se={expires}&sig={signature}"
        now = time.time()
        return {"sample": url, "seed": task.seed, "prompt": task.prompt,
                "start_time": now - 2, "end_time": now, "duration": 2.0}  # fmt: skip

    def _sign(self, token: str, expires: int) -> str:
        digest = hmac.new(self._secret, f"{token}:{expires}".encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    def _sample(self, request: EmulatorRequest) -> EmulatorResponse:
        if "x-key" in request.headers or "authorization" in request.headers:
            # A delivery host is not the API: a credential sent here has leaked.
            with self._lock:
                self.key_leaks.append(KeyLeak(request.url, dict(request.headers)))
            return EmulatorResponse(400, b"Unexpected credentials", {"content-type": "text/plain"})
        token = request.path.split("/")[2]
        query = request.query
        try:
            expires = int(query.get("se", ""))
        except ValueError:
            return EmulatorResponse(403, b"AuthenticationFailed", {"content-type": "text/plain"})
        sample = self.samples.get(token)
        signed = hmac.compare_digest(query.get("sig", ""), self._sign(token, expires))
        if sample is None or not signed:
            return EmulatorResponse(403, b"AuthenticationFailed", {"content-type": "text/plain"})
        if time.time() > expires or time.time() > sample.expires_at:
            return EmulatorResponse(403, b"Signed URL expired", {"content-type": "text/plain"})
        return EmulatorResponse(200, sample.data, {"content-type": sample.mime_type})

    # --- test helpers -----------------------------------------------------------------------

    def submissions(self) -> list[EmulatorRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path.startswith("/v1/")]

    def polls(self) -> list[EmulatorRequest]:
        return [r for r in self.requests if r.path.endswith("/v1/get_result")]


def _input_megapixels(body: dict) -> float:
    """Megapixels of the base64 input images (BFL bills FLUX.2 inputs too)."""
    total = 0.0
    for name in FLUX_2_IMAGE_FIELDS:
        value = body.get(name)
        if value and not str(value).startswith("http"):
            with Image.open(io.BytesIO(base64.b64decode(value))) as picture:
                total += picture.width * picture.height / 1e6
    return total
