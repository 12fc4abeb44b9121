"""Black Forest Labs (Flux): submit a task, follow its ``polling_url``, download ``result.sample``.

Flux is asynchronous: ``FluxProvider`` is an ``AsynchronousImageProvider``, whose steps the job
pipeline (``pipeline.py``, the job state machine in AWS) calls one by one: ``build_body``,
``submit``, ``poll`` every interval, ``fetch_result``.

Wire contract (PROVIDERS.md): ``x-key`` auth; ``width``/``height`` (multiples of 32, 256–1440)
for dev/pro, multiples of 16 up to 4 MP for FLUX.2, ``aspect_ratio`` for ultra and kontext;
``image_prompt`` (dev/pro/ultra) or ``input_image`` (+ ``_2``..``_4`` kontext, ..``_8`` FLUX.2)
as base64; statuses ``Pending``, ``Ready``,
``Request Moderated``, ``Content Moderated``, ``Error``, ``Task not found``. ``result.sample`` is
a signed URL valid about ten minutes, fetched over https **without** ``x-key``: it is a delivery
host, not the API. ``cost`` in the submit answer is in credits (1 credit = $0.01); FLUX.2 is
priced per megapixel, and that answer's ``cost`` already counts them.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote, urlsplit

from aws_lambda_powertools import Logger

from image_common.credentials import provider_endpoint
from image_common.errors import InvalidRequest, ProviderError, ProviderTimeout
from image_common.provider_identity import PROVIDERS
from image_service.http import ErrorAnswer, ProviderWire, json_or_error, provider_exchange
from image_service.images import ImageBytes
from image_service.providers.base import (
    AsynchronousImageProvider,
    PollResult,
    ProviderRequest,
    SettingWarning,
    Submission,
    SubmitBody,
    download_provider_image,
    merge_provider_options,
)
from image_service.registry import ModelSpec

NAME = "flux"
USD_PER_CREDIT = 0.01
SUBMIT_TIMEOUT_SECONDS = 20.0
POLL_TIMEOUT_SECONDS = 10.0
TRUSTED_POLLING_DOMAIN = "bfl.ai"  # polling URLs may name a regional host: *.bfl.ai
MODERATED_STATUSES = frozenset({"Request Moderated", "Content Moderated"})
FAILED_STATUSES = frozenset({"Error", "Task not found"})

# Provider-only parameters (``provider_options``) and their bounds, per model; anything else
# is dropped with a warning rather than sent to an API that rejects unknown fields.
# (safety_tolerance's upper bound is the model's: 6 on FLUX.1, 5 on FLUX.2 — in the catalog.)
_COMMON_OPTIONS: dict[str, tuple[type, float | None, float | None]] = {
    "prompt_upsampling": (bool, None, None),
}
_MODEL_OPTIONS: dict[str, dict[str, tuple[type, float | None, float | None]]] = {
    "flux-dev": {"steps": (int, 1, 50), "guidance": (float, 1.5, 5)},
    "flux-pro-1.1-ultra": {"raw": (bool, None, None), "image_prompt_strength": (float, 0, 1)},
    "flux-2-flex": {"steps": (int, 1, 50), "guidance": (float, 1.5, 10)},
}
# input_image … input_image_8 (kontext takes up to 4, FLUX.2 up to 8, klein 4)
_INPUT_IMAGE_FIELDS = ("input_image", *(f"input_image_{i}" for i in range(2, 9)))
_IMAGE_FIELDS = frozenset({"image_prompt", *_INPUT_IMAGE_FIELDS})
_SIZED_APIS = frozenset({"flux-dimensions", "flux-2"})  # width/height, not aspect_ratio
# Set by the service from the request, or not ours to set (we poll; webhooks are not used).
_RESERVED = _IMAGE_FIELDS | {
    "prompt", "width", "height", "aspect_ratio", "seed", "output_format", "webhook_url",
    "webhook_secret",
}  # fmt: skip

logger = Logger(child=True)


def _error_answer(body: Any) -> ErrorAnswer:
    """``{"detail": "…"}``, or pydantic's ``{"detail": [{"loc", "msg", "input"}]}`` read as loc
    and msg only: ``input`` would echo the prompt or an image."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return ErrorAnswer(detail[:300])
    if not isinstance(detail, list):
        return ErrorAnswer()
    problems = []
    for item in detail:
        if isinstance(item, dict):
            loc = item.get("loc") if isinstance(item.get("loc"), list) else []
            field = ".".join(str(part) for part in loc[1:]) or "body"
            problems.append(f"{field}: {item.get('msg', '')}")
    return ErrorAnswer("; ".join(problems)[:300])


WIRE = ProviderWire(
    PROVIDERS[NAME],
    read_error=_error_answer,
    status_messages={
        402: "The flux provider account is out of credits.",
        429: "The flux provider has too many tasks in flight; try again shortly.",
    },
)


class FluxBody(SubmitBody):
    """The submit body; ``sent`` is what may be logged or kept of it."""

    @property
    def sent(self) -> dict[str, Any]:
        """The body without prompt and images: safe and small enough to log or keep."""
        return {
            k: (f"<{len(v)} base64 chars>" if k in _IMAGE_FIELDS else v)
            for k, v in self.body.items()
            if k != "prompt"
        }


FluxSubmission = Submission
FluxPoll = PollResult


# --- the steps --------------------------------------------------------------------------------


def build_body(request: ProviderRequest) -> FluxBody:
    """The submit body for one image of ``request`` (Flux makes one image per task)."""
    model, settings = request.model, request.settings
    body: dict[str, Any] = {"prompt": request.prompt}
    if model.api in _SIZED_APIS:
        body["width"], body["height"] = settings.width, settings.height
    elif settings.aspect_ratio:
        body["aspect_ratio"] = settings.aspect_ratio
    if settings.seed is not None:
        body["seed"] = settings.seed
    if settings.output_format:
        body["output_format"] = settings.output_format
    images = [base64.b64encode(image.data).decode("ascii") for image in request.input_images]
    if images and model.api in ("flux-kontext", "flux-2"):
        body |= dict(zip(_INPUT_IMAGE_FIELDS, images, strict=False))
    elif images:
        body["image_prompt"] = images[0]
    warnings = _merge_options(body, request.provider_options, model)
    return FluxBody(body=body, warnings=warnings)


def submit(model_id: str, body: dict[str, Any]) -> FluxSubmission:
    """``POST /v1/{model}`` → the task id, where to poll it, and what it costs."""
    endpoint = provider_endpoint(NAME)
    with provider_exchange(
        WIRE,
        endpoint,
        "POST",
        f"{endpoint.base_url}/v1/{quote(model_id)}",
        json=body,
        timeout_seconds=SUBMIT_TIMEOUT_SECONDS,
        model=model_id,
    ) as response:
        answer = json_or_error(NAME, response)
    task_id, polling_url = answer.get("id"), answer.get("polling_url")
    if not isinstance(task_id, str) or not task_id:
        raise ProviderError("The flux provider accepted the request but sent no task id.")
    cost = answer.get("cost")
    cost_usd = (
        round(cost * USD_PER_CREDIT, 6)
        if isinstance(cost, int | float) and not isinstance(cost, bool)
        else None
    )
    return FluxSubmission(
        task_id=task_id,
        polling_url=_trusted_polling_url(polling_url, task_id, endpoint.base_url),
        cost_usd=cost_usd,
    )


def poll(task_id: str, polling_url: str) -> FluxPoll:
    """One ``GET`` of the task's polling URL. A transient failure (timeout, 429, 5xx) reads as
    ``Pending``: the job's time budget, not one unlucky poll, decides when to give up."""
    endpoint = provider_endpoint(NAME)
    url = _trusted_polling_url(polling_url, task_id, endpoint.base_url)
    try:
        with provider_exchange(
            WIRE, endpoint, "GET", url, timeout_seconds=POLL_TIMEOUT_SECONDS, check_status=False
        ) as response:
            response.read()  # small; read here, where a transport failure is still mapped
    except (ProviderTimeout, ProviderError) as error:
        return FluxPoll("Pending", provider_status="unreachable", message=error.message)
    if response.status_code == 429 or response.status_code >= 500:
        return FluxPoll("Pending", provider_status=f"HTTP {response.status_code}")
    if response.status_code >= 400:
        if response.status_code in (401, 403):
            raise ProviderError("The flux provider refused this service's credentials.")
        raise ProviderError(f"Polling the flux task failed (HTTP {response.status_code}).")
    return _read_poll(json_or_error(NAME, response))


def fetch_sample(sample_url: str) -> ImageBytes:
    """Download ``result.sample`` with no credentials, https only; a bad result URL is a 502."""
    return download_provider_image(sample_url, NAME)


# --- the adapter ------------------------------------------------------------------------------


class FluxProvider(AsynchronousImageProvider):
    """The job pipeline's steps for Flux."""

    name = NAME

    def build_body(self, request: ProviderRequest) -> FluxBody:
        return build_body(request)

    def submit(self, model_id: str, body: dict[str, Any]) -> Submission:
        return submit(model_id, body)

    def poll(self, task_id: str, polling_url: str) -> PollResult:
        return poll(task_id, polling_url)

    def fetch_result(self, result_url: str) -> ImageBytes:
        return fetch_sample(result_url)


def create_provider() -> FluxProvider:
    return FluxProvider()


# --- helpers ----------------------------------------------------------------------------------


def _merge_options(body: dict[str, Any], options: dict[str, Any], model: ModelSpec) -> list:
    """Only the options this model takes, type- and range-checked; the rest is warned about."""
    model_id = model.id
    tolerance = model.capabilities.safety_tolerance_max
    accepted = _COMMON_OPTIONS | _MODEL_OPTIONS.get(model_id, {})
    if tolerance is not None:
        accepted = accepted | {"safety_tolerance": (int, 0, tolerance)}
    warnings, checked = [], {}
    for key, value in options.items():
        if key in accepted:
            checked[key] = _checked_option(key, value, accepted[key])
        elif key in _RESERVED:
            checked[key] = value  # refused, with its warning, by merge_provider_options
        else:
            warnings.append(
                SettingWarning(
                    "unsupported-setting",
                    f"provider_options.{key}",
                    f"{model_id} does not take '{key}'; ignored. It takes: "
                    f"{', '.join(sorted(accepted))}.",
                )
            )
    return warnings + merge_provider_options(body, checked, reserved=_RESERVED)


def _checked_option(key: str, value: Any, rule: tuple[type, float | None, float | None]) -> Any:
    kind, low, high = rule
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and low is not None and high is not None:
        ok = low <= value <= high
    if not ok:
        bounds = f" between {low:g} and {high:g}" if low is not None else ""
        raise InvalidRequest(f"provider_options.{key} must be a {kind.__name__}{bounds}.")
    return value


def _trusted_polling_url(polling_url: Any, task_id: str, base_url: str) -> str:
    """The provider's polling URL when it is on the API's host or a BFL host; else the API's own
    ``get_result`` — the ``x-key`` header goes only to hosts we chose."""
    fallback = f"{base_url}/v1/get_result?id={quote(task_id)}"
    if not isinstance(polling_url, str):
        return fallback
    parts, base = urlsplit(polling_url), urlsplit(base_url)
    host = parts.hostname or ""
    same_origin = (parts.scheme, parts.netloc) == (base.scheme, base.netloc)
    bfl_host = parts.scheme == "https" and (
        host == TRUSTED_POLLING_DOMAIN or host.endswith("." + TRUSTED_POLLING_DOMAIN)
    )
    if same_origin or bfl_host:
        return polling_url
    logger.warning("untrusted polling URL replaced", extra={"polling_host": host})
    return fallback


def _read_poll(answer: dict[str, Any]) -> FluxPoll:
    status = answer.get("status")
    progress = answer.get("progress") if isinstance(answer.get("progress"), int | float) else None
    if status == "Ready":
        result = answer.get("result") if isinstance(answer.get("result"), dict) else {}
        sample = result.get("sample")
        if not isinstance(sample, str) or not sample:
            return FluxPoll("Error", status, message="The flux provider sent no image URL.")
        seed = result.get("seed")
        return FluxPoll(
            "Ready",
            status,
            result_url=sample,
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            progress=1.0,
        )
    if status in MODERATED_STATUSES:
        what = "the prompt or an input image" if status == "Request Moderated" else "the image"
        reasons = _moderation_reasons(answer.get("details"))
        return FluxPoll(
            "Moderated",
            status,
            message=f"The flux provider's moderation refused {what} ({status}){reasons}.",
        )
    if status in FAILED_STATUSES:
        message = (
            "The flux provider lost the task (Task not found)."
            if status == "Task not found"
            else "The flux provider could not make the image (Error)."
        )
        return FluxPoll("Error", status, message=message)
    # "Pending", and any status this adapter does not know yet: keep polling within the budget.
    return FluxPoll("Pending", str(status or "unknown")[:40], progress=progress)


def _moderation_reasons(details: Any) -> str:
    reasons = details.get("Moderation Reasons") if isinstance(details, dict) else None
    if isinstance(reasons, list) and reasons and all(isinstance(r, str) for r in reasons):
        return ": " + ", ".join(r[:60] for r in reasons[:5])
    return ""
