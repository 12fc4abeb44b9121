"""The OpenAI-compatible surface: OpenAI's Images and Models API as a thin adapter on the service.

An OpenAI request (``CreateImageRequest`` as JSON, ``CreateImageEditRequest`` as multipart or
JSON) becomes the service's ``ImageGenerationRequest`` — the same model resolution,
normalisation, storage, jobs and errors — and the service's answer becomes OpenAI's
``ImagesResponse``; errors take OpenAI's ``{"error": {message, type, param, code}}`` shape. The
customer is always the caller's (the token's), never a body field. Nothing here knows API
Gateway: ``generation.py`` wires the routes.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import multipart
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from image_common.errors import (
    ImageServiceError,
    InvalidRequest,
    JobPending,
    PayloadTooLarge,
    ProviderTimeout,
    UnknownModel,
)
from image_service import catalog as catalogs
from image_service.jobs import derived_idempotency_key, request_fingerprint
from image_service.models import ImageGenerationRequest, parse_request
from image_service.providers.base import SettingWarning
from image_service.registry import ModelSpec
from image_service.service import Caller, ImageService

ResponseFormat = Literal["url", "b64_json"]

# OpenAI's own parameters with no equivalent in the service's vocabulary: OpenAI's models get
# them as sent (provider options); for any other provider they are ignored with a warning —
# unless they hold OpenAI's default, which asks for nothing.
OPENAI_ONLY_PARAMETERS = (
    "background",
    "moderation",
    "output_compression",
    "input_fidelity",
    "user",
    "safety_identifier",
)
_OPENAI_DEFAULTS = {"background": "auto", "moderation": "auto", "output_compression": 100}
# The service's own image settings a client may add (the SDK's ``extra_body``); any other field
# is a 400, as OpenAI answers an unknown parameter.
SERVICE_EXTENSIONS = ("seed", "negative_prompt", "aspect_ratio", "style_preset", "provider_options")
_NOT_PARAMETERS = {
    "customer_id": "the customer is the token's",
    "save_to_db": "response_format decides whether the image is stored",
    "width": "use size",
    "height": "use size",
    "input_images": "send images to /v1/images/edits",
}
# The service's field names (in a validation error) as the OpenAI parameter a client sent.
_PARAMETER_OF_FIELD = {
    "prompt": "prompt",
    "settings.image.model": "model",
    "settings.image.n": "n",
    "settings.image.width": "size",
    "settings.image.height": "size",
    "settings.image.quality": "quality",
    "settings.image.output_format": "output_format",
    "settings.image.style_preset": "style",
    "settings.image.input_images": "image",
    "settings.image.mask": "mask",
}
# What ImagesResponse may report (its enums); anything else is left out rather than invalid.
_RESPONSE_SIZES = frozenset({"1024x1024", "1024x1536", "1536x1024"})
_RESPONSE_QUALITIES = frozenset({"low", "medium", "high"})
_RESPONSE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}
_USAGE_REQUIRED = ("input_tokens", "output_tokens", "total_tokens", "input_tokens_details")

MAX_FORM_PARTS = 48  # 16 images, a mask and every field of OpenAI's edit request, with room
PENDING_RETRY_AFTER_SECONDS = 1  # the SDK honours 0 < Retry-After <= 120 s, then retries
# Whether an identical retry attaches to the job still running (and so never pays twice). Until
# it does, a client must not retry a pending job automatically: each retry would start another.
RETRY_ATTACHES_TO_THE_JOB = True


# --- requests --------------------------------------------------------------------------------


class UnknownParameter(InvalidRequest):
    type = "unknown_parameter"


class OpenAIImageRequest(BaseModel):
    """The fields of OpenAI's ``CreateImageRequest``/``CreateImageEditRequest`` read here,
    plus the service's own settings (``SERVICE_EXTENSIONS``) as extra fields."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    prompt: str
    model: str | None = Field(default=None, max_length=100)
    n: int | None = Field(default=None, ge=1, le=10)
    size: str | None = Field(default=None, pattern=r"^(auto|[1-9]\d{1,4}x[1-9]\d{1,4})$")
    quality: str | None = Field(default=None, max_length=20)
    response_format: ResponseFormat | None = None
    output_format: Literal["png", "jpeg", "jpg", "webp"] | None = None
    output_compression: int | None = Field(default=None, ge=0, le=100)
    background: Literal["transparent", "opaque", "auto"] | None = None
    moderation: Literal["low", "auto"] | None = None
    input_fidelity: Literal["high", "low"] | None = None
    style: Literal["vivid", "natural"] | None = None
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=256)
    stream: bool | None = None
    partial_images: int | None = Field(default=None, ge=0, le=3)


@dataclass(frozen=True)
class OpenAIImageCall:
    """One OpenAI request, mapped: what the service runs, and what the answer needs."""

    request: ImageGenerationRequest
    response_format: ResponseFormat
    model: ModelSpec
    warnings: list[SettingWarning] = field(default_factory=list)
    background: str | None = None  # forwarded to the provider, so the answer may report it


@dataclass(frozen=True)
class EditInputs:
    """The images of an edit request, as references the service loads (data URLs, https URLs
    or the caller's stored keys) — so input limits and checks stay in one place."""

    images: list[str]
    mask: str | None = None


def parse_openai_request(payload: Any) -> OpenAIImageRequest:
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return OpenAIImageRequest.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or None
        messages = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidRequest(f"Invalid request: {messages}", details={"param": name}) from None


def map_request(
    openai: OpenAIImageRequest,
    *,
    customer_id: int,
    enabled_retired: frozenset[str],
    inputs: EditInputs | None = None,
) -> OpenAIImageCall:
    """OpenAI's fields in the service's vocabulary; what has no equivalent is warned about."""
    if openai.stream:
        raise InvalidRequest(
            "Streaming is not supported; send stream=false (or leave it out).",
            details={"param": "stream"},
        )
    extras = openai.model_extra or {}
    unknown = [name for name in extras if name not in SERVICE_EXTENSIONS]
    if unknown:
        reasons = [
            f"'{n}' ({_NOT_PARAMETERS[n]})" if n in _NOT_PARAMETERS else f"'{n}'" for n in unknown
        ]
        raise UnknownParameter(
            f"Unknown parameter: {', '.join(reasons)}. The service's own settings that may be "
            f"added are {', '.join(SERVICE_EXTENSIONS)}.",
            details={"param": unknown[0]},
        )
    model = (
        catalogs.current_catalog()
        .resolve(openai.model, today=catalogs.today(), enabled_retired=enabled_retired)
        .spec
    )
    warnings: list[SettingWarning] = []
    image: dict[str, Any] = dict(extras)
    image["model"] = openai.model
    image["n"] = openai.n or 1
    if openai.quality:
        image["quality"] = openai.quality.lower()
    if openai.output_format:
        image["output_format"] = openai.output_format
    if openai.size and openai.size != "auto":
        width, height = (int(side) for side in openai.size.split("x"))
        image["width"], image["height"] = width, height
    if openai.style:
        if openai.style in model.capabilities.style_presets:
            image["style_preset"] = openai.style
        else:
            warnings.append(_ignored("style", f"{model.id} has no style '{openai.style}'."))

    forwarded = {
        name: getattr(openai, name)
        for name in OPENAI_ONLY_PARAMETERS
        if getattr(openai, name) is not None
    }
    if model.provider == "openai":
        options = image.get("provider_options")
        image["provider_options"] = (options if isinstance(options, dict) else {}) | forwarded
    else:
        for name, value in forwarded.items():
            if _OPENAI_DEFAULTS.get(name) != value:
                message = (
                    f"'{name}' is an OpenAI parameter; {model.id} ({model.provider}) has none."
                )
                warnings.append(_ignored(name, message))
    if inputs is not None:
        image["input_images"] = inputs.images
        if inputs.mask is not None:
            image["mask"] = inputs.mask

    response_format: ResponseFormat = openai.response_format or "b64_json"
    request = parse_request(
        {
            "prompt": openai.prompt,
            "settings": {"image": image},
            "customer_id": customer_id,
            "save_to_db": response_format == "url",
        }
    )
    background = forwarded.get("background") if model.provider == "openai" else None
    return OpenAIImageCall(request, response_format, model, warnings, background)


def _ignored(setting: str, message: str) -> SettingWarning:
    return SettingWarning("unsupported-setting", setting, message)


# --- edits: multipart/form-data or JSON --------------------------------------------------------


def parse_edit_request(
    body: bytes, content_type: str, *, max_part_bytes: int
) -> tuple[OpenAIImageRequest, EditInputs]:
    """An edit request in either of OpenAI's encodings: multipart (``image`` or repeated
    ``image[]`` files, optional ``mask``) or JSON (``images: [{"image_url"}]``, ``mask``)."""
    media_type, params = multipart.parse_options_header(content_type or "")
    if media_type == "application/json":
        return _json_edit(body)
    if media_type != "multipart/form-data" or not params.get("boundary"):
        raise InvalidRequest(
            "Send an edit as multipart/form-data (image files) or application/json.",
            details={"param": None},
        )
    fields: dict[str, str] = {}
    images: list[str] = []
    mask: str | None = None
    for part in _form_parts(body, params["boundary"], max_part_bytes=max_part_bytes):
        if part.name in ("image", "image[]"):
            images.append(_as_data_url(part.raw))
        elif part.name == "mask":
            if mask is not None:
                raise InvalidRequest("Send one mask.", details={"param": "mask"})
            mask = _as_data_url(part.raw)
        elif part.filename is None:
            try:
                fields[part.name] = part.value
            except UnicodeDecodeError:
                raise InvalidRequest(
                    f"The field '{part.name}' is not UTF-8 text.", details={"param": part.name}
                ) from None
    if not images:
        raise InvalidRequest("An edit needs at least one image.", details={"param": "image"})
    return parse_openai_request(fields), EditInputs(images, mask)


def _form_parts(
    body: bytes, boundary: str, *, max_part_bytes: int
) -> list[multipart.MultipartPart]:
    # Everything stays in memory (Lambda's body is already there): one part at most
    # ``max_part_bytes``, all parts together at most the body, never spooled to disk.
    parser = multipart.MultipartParser(
        io.BytesIO(body),
        boundary,
        content_length=len(body),
        part_limit=MAX_FORM_PARTS,
        partsize_limit=max_part_bytes,
        spool_limit=len(body) + 1,
        memory_limit=len(body) + 1,
        disk_limit=0,
    )
    try:
        return parser.parts()
    except multipart.ParserLimitReached:
        limit = max_part_bytes // (1024 * 1024)
        raise PayloadTooLarge(
            f"A part of the form is over the {limit} MiB limit, or the form has more than "
            f"{MAX_FORM_PARTS} parts."
        ) from None
    except multipart.MultipartError:
        raise InvalidRequest(
            "The multipart/form-data body could not be read.", details={"param": None}
        ) from None


def _json_edit(body: bytes) -> tuple[OpenAIImageRequest, EditInputs]:
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    references = payload.pop("images", None)
    mask = payload.pop("mask", None)
    if not isinstance(references, list) or not references:
        raise InvalidRequest(
            "A JSON edit needs 'images': [{\"image_url\": …}, …].", details={"param": "images"}
        )
    images = [_image_url(item, "images") for item in references]
    inputs = EditInputs(images, None if mask is None else _image_url(mask, "mask"))
    return parse_openai_request(payload), inputs


def _image_url(reference: Any, param: str) -> str:
    url = reference.get("image_url") if isinstance(reference, dict) else None
    if isinstance(url, str) and url:
        return url
    if isinstance(reference, dict) and "file_id" in reference:
        message = "File ids are not supported; send an image_url (https or a data URL)."
    else:
        message = f"Each of '{param}' must be an object with an 'image_url'."
    raise InvalidRequest(message, details={"param": param})


def _as_data_url(data: bytes) -> str:
    # The service sniffs the real type and applies its size limits, as for any data URL.
    return "data:application/octet-stream;base64," + base64.b64encode(data).decode("ascii")


# --- answers ---------------------------------------------------------------------------------


def images_response(data: dict[str, Any], call: OpenAIImageCall, *, created: int) -> dict:
    """The service's answer ``data`` as OpenAI's ``ImagesResponse`` (plus extension fields)."""
    items = []
    for image in data.get("images") or [data]:
        url = image["image_url"]
        # b64_json asked for but over the inline limit: the service stored it (and warned).
        item = {"b64_json": url.split(",", 1)[1]} if url.startswith("data:") else {"url": url}
        if image.get("revised_prompt"):
            item["revised_prompt"] = image["revised_prompt"]
        items.append(item)
    answer: dict[str, Any] = {"created": created, "data": items}
    settings = data.get("settings") or {}
    if settings.get("width") and settings.get("height"):
        size = f"{settings['width']}x{settings['height']}"
        if size in _RESPONSE_SIZES:
            answer["size"] = size
    if settings.get("quality") in _RESPONSE_QUALITIES:
        answer["quality"] = settings["quality"]
    if data.get("content_type") in _RESPONSE_FORMATS:
        answer["output_format"] = _RESPONSE_FORMATS[data["content_type"]]
    if call.background in ("transparent", "opaque"):
        answer["background"] = call.background
    usage = data.get("usage")
    if isinstance(usage, dict) and all(key in usage for key in _USAGE_REQUIRED):
        answer["usage"] = usage
    # Extensions: the SDK keeps unknown fields (``response.model_extra``).
    answer["provider"] = data.get("provider")
    answer["model"] = data.get("model")
    answer["warnings"] = [w.to_dict() for w in call.warnings] + list(data.get("warnings") or [])
    answer["cost_usd"] = data.get("cost_usd")
    if data.get("job_id"):
        answer["job_id"] = data["job_id"]
    return answer


def error_response(error: ImageServiceError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Any service error as OpenAI's error shape, with the status the SDK maps to the matching
    exception class: moderation is OpenAI's 400 ``moderation_blocked``, an unknown model its
    404 ``model_not_found``; 429 and 5xx keep ``Retry-After`` (the SDK retries them)."""
    status, code, kind = error.status, error.type, "invalid_request_error"
    if error.type == "content_policy_violation":
        status, code, kind = 400, "moderation_blocked", "image_generation_user_error"
    elif isinstance(error, UnknownModel):
        status, code = 404, "model_not_found"
    elif error.type == "budget_exceeded":  # the customer's spend budget: OpenAI's quota error
        code, kind = "insufficient_quota", "insufficient_quota"
    elif status == 429:
        code, kind = "rate_limit_exceeded", "requests"
    elif status >= 500:
        kind = "server_error"
    body: dict[str, Any] = {
        "message": error.message,
        "type": kind,
        "param": _parameter(error),
        "code": code,
    }
    if error.details.get("job_id"):
        body["job_id"] = error.details["job_id"]
    headers = {} if error.retry_after is None else {"Retry-After": str(error.retry_after)}
    # OpenAI's SDKs retry every 5xx unless told otherwise (x-should-retry). A provider timeout
    # may have been started, and billed, at the provider: an automatic retry could pay twice.
    if isinstance(error, JobPending):
        headers["x-should-retry"] = "true" if RETRY_ATTACHES_TO_THE_JOB else "false"
    elif isinstance(error, ProviderTimeout):
        headers["x-should-retry"] = "false"
    return status, {"error": body}, headers


def _parameter(error: ImageServiceError) -> str | None:
    if "param" in error.details:
        return error.details["param"]
    if isinstance(error, UnknownModel):
        return "model"
    fields = error.details.get("fields") or []
    return _PARAMETER_OF_FIELD.get(fields[0], fields[0]) if fields else None


# --- models ----------------------------------------------------------------------------------


def model_list(catalog: dict[str, Any]) -> dict[str, Any]:
    """Every model the service serves as itself (a retired one is served by its successor)."""
    data = [_model_object(m["id"], m) for m in catalog["models"] if m["served_by"] == m["id"]]
    return {"object": "list", "data": data}


def model_object(name: str, catalog: dict[str, Any]) -> dict[str, Any]:
    """A model or an alias, as OpenAI's ``Model``; an unknown name is a 404."""
    wanted = name.strip().lower()
    models = {m["id"]: m for m in catalog["models"]}
    if wanted in models:
        return _model_object(wanted, models[wanted])
    for alias in catalog["aliases"]:
        if alias["alias"] == wanted:
            return _model_object(wanted, models[alias["model"]]) | {"served_by": alias["served_by"]}
    raise UnknownModel(f"The model '{name}' does not exist.", details={"param": "model"})


def _model_object(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    released = entry.get("released")  # a date in the catalog, when it knows one
    created = (
        int(datetime.fromisoformat(str(released)).replace(tzinfo=UTC).timestamp())
        if released
        else 0
    )
    model = {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": entry["provider"],
        "shutdown_date": entry.get("shutdown_date"),
    }
    if entry["served_by"] != entry["id"]:
        model["served_by"] = entry["served_by"]
    return model


# --- the surface -----------------------------------------------------------------------------


class OpenAIImages:
    """``images.generate``, ``images.edit``, ``models.list`` and ``models.retrieve``."""

    def __init__(
        self,
        service: ImageService,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.clock = clock

    def generate(self, payload: Any, *, caller: Caller, idempotency_key: str | None = None) -> dict:
        call = self._map(parse_openai_request(payload), caller, None)
        return self._run(call, caller, idempotency_key)

    def edit(
        self,
        body: bytes,
        content_type: str,
        *,
        caller: Caller,
        idempotency_key: str | None = None,
    ) -> dict:
        openai, inputs = parse_edit_request(
            body, content_type, max_part_bytes=self.service.settings.max_input_image_bytes
        )
        return self._run(self._map(openai, caller, inputs), caller, idempotency_key)

    def models(self) -> dict:
        return model_list(self._catalog())

    def model(self, name: str) -> dict:
        return model_object(name, self._catalog())

    def _catalog(self) -> dict:
        return self.service.model_catalog()

    def _map(self, openai: OpenAIImageRequest, caller: Caller, inputs: EditInputs | None):
        if caller.customer_id is None:
            raise InvalidRequest("The OpenAI-compatible API acts for the token's customer.")
        return map_request(
            openai,
            customer_id=caller.customer_id,
            enabled_retired=self.service.settings.retired_models_enabled,
            inputs=inputs,
        )

    def _run(
        self, call: OpenAIImageCall, caller: Caller, idempotency_key: str | None = None
    ) -> dict:
        """Start the request's job — or attach to the job an identical earlier request from the
        same customer started and whose answer was not delivered yet — and wait for it up to the
        synchronous budget. Still running: a retryable 503, so the SDK's own retry of the same
        request attaches to this job instead of paying for another."""
        request = call.request
        fingerprint = request_fingerprint(request.model_dump(mode="json"))
        key = idempotency_key or derived_idempotency_key(request.customer_id, fingerprint)
        started = self.service.generate(
            request,
            caller=caller,
            wait_seconds=self.service.settings.job_wait_seconds,
            idempotency_key=key,
            fingerprint=fingerprint,
        )
        record = started.record
        if not record.final:
            raise JobPending(
                f"The image is still being generated (job {record.job_id}); retry the same "
                "request to receive it.",
                retry_after=PENDING_RETRY_AFTER_SECONDS,
                details={"job_id": record.job_id},
            )
        try:
            data = self.service.job_answer(record)  # a failed job raises its own typed error
        finally:
            if idempotency_key is None:  # answered: the next identical request is a new one
                claim = self.service.jobs.claim_for(request.customer_id, key, fingerprint)
                self.service.jobs.release(claim, record.job_id)
        return images_response(data, call, created=int(self.clock()))
