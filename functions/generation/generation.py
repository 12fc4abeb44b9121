"""The generation Lambda: ``POST /image/generate``, ``GET /image/jobs[/{id}]`` (API Gateway HTTP
API, payload 2.0) and direct ``lambda:Invoke`` from other services. Parse, call the service,
shape the answer. It chooses how jobs run: the job state machine (``JOB_STATE_MACHINE_ARN``), or
the runner the local stack hands it (``job_runner``)."""

from __future__ import annotations

import json
import uuid
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from http_resolver import APIGatewayHttpResolver, Response, content_types
from image_common.envelope import error_envelope, success_envelope
from image_common.errors import (
    ImageServiceError,
    InternalError,
    InvalidRequest,
    NotFound,
    Unauthorized,
)
from image_common.json_body import parse_json_body, request_bytes
from image_common.metric_names import (
    ERROR_TYPE_DIMENSION,
    IMAGES_GENERATED,
    INVOKE_FAILURES,
    PROVIDER_DIMENSION,
)
from image_common.settings import get_settings
from image_service import snapstart, telemetry
from image_service.job_records import JobRecord, utcnow
from image_service.job_store import MAX_LIST_LIMIT
from image_service.jobs import DEFAULT_LIST_LIMIT, JobRunner, request_fingerprint
from image_service.models import parse_request
from image_service.openai_compat import OpenAIImages, error_response
from image_service.service import Caller, ImageService
from image_service.step_functions import StepFunctionsJobRunner
from image_service.storage import ImageStore
from image_service.tool import ImageGenerationService

# API Gateway's payload limit. In AWS, Lambda's own 6 MB invoke limit refuses larger bodies
# before this handler runs; the check guards the local stack and direct invokes.
MAX_BODY_BYTES = 10 * 1024 * 1024

logger = Logger()
metrics = Metrics()
app = APIGatewayHttpResolver()
settings = get_settings()  # a misconfigured function fails here, at cold start
snapstart.register()  # the hooks run only where SnapStart is on
telemetry.count_stale_provider_keys()  # provider calls run here in the local stack's jobs
# How jobs run. Deployed: the job state machine. The local stack sets its in-process runner here.
job_runner: JobRunner | None = None


@cache
def image_service() -> ImageService:
    runner = job_runner or StepFunctionsJobRunner(settings.job_state_machine_arn)
    return ImageService(settings, ImageStore(settings), job_runner=runner)


def openai_images() -> OpenAIImages:
    return OpenAIImages(image_service())


# --- HTTP routes -----------------------------------------------------------------------------


@app.post("/image/generate")
def generate() -> Response:
    body = _json_body()
    request = parse_request(body)
    wait_seconds, applied = wait_preference(
        app.current_event.headers.get("prefer"), default=settings.job_wait_seconds
    )
    key = app.current_event.headers.get("idempotency-key")
    started = image_service().generate(
        request,
        caller=caller_from_authorizer(app.current_event.raw_event),
        wait_seconds=wait_seconds,
        idempotency_key=key,
        fingerprint=request_fingerprint(body) if key is not None else None,
    )
    headers = {"Preference-Applied": applied} if applied else {}
    if started.attached:
        headers["Idempotent-Replayed"] = "true"
    return _job_answer(started.record, headers=headers, count=True)


@app.get("/image/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    job = image_service().job(
        job_id,
        caller=caller_from_authorizer(app.current_event.raw_event),
        customer_id=_admin_customer(),
    )
    return _job_answer(job, headers={})


@app.get("/image/jobs")
def list_jobs() -> Response:
    event = app.current_event
    limit = _limit(event.get_query_string_value("limit"))
    jobs, next_cursor = image_service().list_jobs(
        caller=caller_from_authorizer(event.raw_event),
        limit=limit,
        cursor=event.get_query_string_value("cursor") or None,
        customer_id=_admin_customer(),
    )
    data = {"jobs": [job.summary() for job in jobs], "next_cursor": next_cursor}
    return _json(200, success_envelope(data), headers={"Cache-Control": "no-store"})


def _job_answer(job: JobRecord, *, headers: dict[str, str], count: bool = False) -> Response:
    """A finished job answers as a finished request: its data (200) or its typed error; one
    still running answers 202 with where and when to look again."""
    headers = headers | {"Cache-Control": "no-store"}
    if not job.final:
        now = utcnow()
        headers |= {"Location": job.status_url, "Retry-After": str(job.retry_after(now))}
        return _json(202, success_envelope(job.progress_view(now), code=202), headers=headers)
    try:
        data = image_service().job_answer(job)
    except ImageServiceError as error:
        return _error(error, headers=headers)
    if count:  # the request that made the image, not every later read of it
        _count_images(data)
    return _json(200, success_envelope(data), headers=headers)


def wait_preference(prefer: str | None, *, default: float) -> tuple[float, str | None]:
    """How long to wait for the job (RFC 7240 ``Prefer``): ``respond-async`` alone → not at all,
    ``wait=N`` → at most N s; never longer than ``default``. Returns the wait and the
    ``Preference-Applied`` value. Preferences it does not understand are ignored, as the RFC
    asks."""
    asked_async, asked_wait = False, None
    for part in (prefer or "").split(","):
        name, _, value = part.strip().partition("=")
        name, value = name.strip().lower(), value.strip().strip('"')
        if name == "respond-async":
            asked_async = True
        elif name == "wait" and value.isdigit():
            asked_wait = int(value)
    if asked_wait is not None:
        wait = min(float(asked_wait), default)
        return wait, ", ".join(["respond-async"] * asked_async + [f"wait={wait:g}"])
    if asked_async:
        return 0.0, "respond-async"
    return default, None


def _admin_customer() -> int | None:
    owner = app.current_event.get_query_string_value("customer_id") or ""  # admin scope only
    return int(owner) if owner.isdigit() else None


def _limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIST_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIST_LIMIT:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}.")
    return int(value)


@app.get("/image/usage")
def get_usage() -> Response:
    """The caller's requests this minute, spend this day and month, limits, recent charges."""
    owner = app.current_event.get_query_string_value("customer_id") or ""  # admin scope only
    usage = image_service().usage_of(
        caller=caller_from_authorizer(app.current_event.raw_event),
        customer_id=int(owner) if owner.isdigit() else None,
    )
    return _json(200, success_envelope(usage), headers={"Cache-Control": "no-store"})


@app.get("/image/models")
def list_models() -> Response:
    caller_from_authorizer(app.current_event.raw_event)  # behind the JWT authorizer, like generate
    catalog = image_service().model_catalog()
    return _json(200, success_envelope(catalog), headers={"Cache-Control": "private, max-age=300"})


# --- the OpenAI-compatible surface (docs/openai-compatible.md) --------------------------------


@app.post("/v1/images/generations")
def openai_generate() -> Response:
    answer = openai_images().generate(
        _json_body(),
        caller=caller_from_authorizer(app.current_event.raw_event),
        idempotency_key=app.current_event.headers.get("idempotency-key"),
    )
    _count_images({"provider": answer["provider"], "images": answer["data"]})
    return _json(200, answer)


@app.post("/v1/images/edits")
def openai_edit() -> Response:
    answer = openai_images().edit(
        _raw_body(),
        app.current_event.headers.get("content-type") or "",
        caller=caller_from_authorizer(app.current_event.raw_event),
        idempotency_key=app.current_event.headers.get("idempotency-key"),
    )
    _count_images({"provider": answer["provider"], "images": answer["data"]})
    return _json(200, answer)


@app.get("/v1/models")
def openai_models() -> Response:
    caller_from_authorizer(app.current_event.raw_event)
    return _json(200, openai_images().models(), headers={"Cache-Control": "private, max-age=300"})


@app.get("/v1/models/<model>")
def openai_model(model: str) -> Response:
    caller_from_authorizer(app.current_event.raw_event)
    return _json(
        200, openai_images().model(model), headers={"Cache-Control": "private, max-age=300"}
    )


@app.exception_handler(ImageServiceError)
def service_error(error: ImageServiceError) -> Response:
    logger.info("request failed", extra={"error_type": error.type, "status": error.status})
    return _error(error)


@app.exception_handler(Exception)
def unexpected_error(error: Exception) -> Response:
    # The type only: a message or traceback could carry a key, a token or a prompt.
    logger.error("unexpected error", extra={"error_class": type(error).__name__})
    return _error(InternalError())


@app.not_found
def not_found(_: Exception) -> Response:
    return _error(NotFound("No such route."))


def _error(error: ImageServiceError, *, headers: dict[str, str] | None = None) -> Response:
    """The one place an error becomes an answer: OpenAI's shape under /v1/, else the envelope."""
    if app.current_event.path.startswith("/v1/"):
        status, body, own = error_response(error)
        return _json(status, body, headers=(headers or {}) | (own or {}) or None)
    headers = dict(headers or {})
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return _json(error.status, error_envelope(error), headers=headers or None)


def caller_from_authorizer(event: dict[str, Any]) -> Caller:
    """The authorizer's context (simple response) as a ``Caller``."""
    context = (event.get("requestContext") or {}).get("authorizer", {}).get("lambda") or {}
    customer = str(context.get("customer_id", ""))
    if not customer.isdigit():
        # Only reachable if the route was deployed without the authorizer: refuse, loudly.
        raise Unauthorized("Missing or invalid token.")
    return Caller(
        customer_id=int(customer),
        subject=str(context.get("sub") or "") or None,
        scopes=frozenset(str(context.get("scopes") or "").split()),
    )


def _json_body() -> Any:
    event = app.current_event
    return parse_json_body(
        event.body, base64_encoded=event.is_base64_encoded, max_bytes=MAX_BODY_BYTES
    )


def _raw_body() -> bytes:
    """The body as bytes (a multipart upload is binary: API Gateway sends it base64)."""
    event = app.current_event
    return request_bytes(
        event.body, base64_encoded=event.is_base64_encoded, max_bytes=MAX_BODY_BYTES
    )


def _json(status: int, body: dict, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json_text(body),
        headers=headers,
    )


def json_text(body: dict) -> str:
    """The answer as JSON. Inline images (data URLs: base64, nothing to escape) are spliced into
    the text rather than run through the encoder, which would hold each twice more — its escaped
    copy and the joined text — beside the URL itself: four copies of the image at once."""
    data = body.get("data")
    if not isinstance(data, dict):
        return json.dumps(body, separators=(",", ":"))
    slot = uuid.uuid4().hex  # cannot occur in anything else the answer holds
    urls: list[str] = []

    def without_data_url(item: dict) -> dict:
        url = item.get("image_url")
        if not (isinstance(url, str) and url.startswith("data:")):
            return item
        urls.append(url)
        return item | {"image_url": f"{slot}{len(urls) - 1}."}

    shallow = without_data_url(data)
    if isinstance(data.get("images"), list):
        shallow = shallow | {"images": [without_data_url(i) for i in data["images"]]}
    rest = json.dumps(body | {"data": shallow}, separators=(",", ":"))
    pieces = []
    for index, url in enumerate(urls):
        before, rest = rest.split(f"{slot}{index}.", 1)
        pieces += [before, url]
    pieces.append(rest)
    return "".join(pieces)


def _count_images(data: dict[str, Any]) -> None:
    metrics.add_dimension(name=PROVIDER_DIMENSION, value=data["provider"])
    metrics.add_metric(
        name=IMAGES_GENERATED, unit=MetricUnit.Count, value=len(data.get("images") or [1])
    )


def _count_invoke_failure(error_type: str) -> None:
    metrics.add_dimension(name=ERROR_TYPE_DIMENSION, value=error_type)
    metrics.add_metric(name=INVOKE_FAILURES, unit=MetricUnit.Count, value=1)


# --- entry point -----------------------------------------------------------------------------


def is_http_event(event: Any) -> bool:
    return isinstance(event, dict) and "http" in (event.get("requestContext") or {})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if is_http_event(event):
        return app.resolve(event, context)
    # Direct lambda:Invoke (an agent's tool executor): trusted, no 30 s limit, tool-shaped result.
    tool = ImageGenerationService(image_service())
    result = tool.generate_image(event, timeout_seconds=settings.invoke_provider_timeout_seconds)
    if result["success"]:
        _count_images(result)
    else:  # an answer, not an exception: only this metric makes the failure visible
        _count_invoke_failure(result["error"]["type"])
    return result
