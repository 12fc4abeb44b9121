"""Shared fixtures: a test environment set before any function code is imported, moto S3 and
DynamoDB, provider emulators behind the real httpx client, services whose jobs run in-process,
and API Gateway v2 event builders."""

from __future__ import annotations

import base64
import datetime
import json
import os
import threading
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

# Function code reads its settings at import (cold start): set them before anything imports it.
os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "IMAGE_BUCKET": "test-images",
        "JOBS_TABLE": "test-jobs",
        "WEBHOOK_SECRET": "whsec_dGVzdC13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5",
        "POWERTOOLS_SERVICE_NAME": "image-generation",
        "POWERTOOLS_METRICS_NAMESPACE": "ImageService",
        "POWERTOOLS_TRACE_DISABLED": "true",
        # The service's date (model lifecycle): pinned, so no test depends on the calendar.
        "CATALOG_DATE": "2026-11-30",
    }
)
for _name in (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SFN",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_PROFILE",
    "TRUSTED_CALLBACK_ORIGINS",
):
    os.environ.pop(_name, None)

import pytest  # noqa: E402
from moto import mock_aws  # noqa: E402

from image_common.provider_identity import PROVIDERS  # noqa: E402
from image_common.settings import get_settings, url_origin  # noqa: E402
from image_service import aws, job_store  # noqa: E402
from image_service import http as service_http  # noqa: E402
from image_service.job_store import JobStore  # noqa: E402
from image_service.pipeline import JobPipeline  # noqa: E402
from image_service.providers import get_image_provider  # noqa: E402
from image_service.service import ImageService  # noqa: E402
from image_service.storage import ImageStore  # noqa: E402
from local.emulators import (  # noqa: E402
    EMULATORS,
    EmulatorRouter,
    in_process_base_url,
    served_base_url,
)
from local.job_runner import LocalJobRunner  # noqa: E402
from tests.webhook_receiver import WebhookReceiver  # noqa: E402

# Only the in-process emulators' origins skip the URL guard (their result URLs are fetched);
# every other URL goes through it as in AWS. Set before any test reads the settings.
os.environ["TRUSTED_URL_ORIGINS"] = ",".join(
    str(url_origin(in_process_base_url(provider))) for provider in EMULATORS
)

TEST_BUCKET = "test-images"
TEST_JOBS_TABLE = "test-jobs"
TEST_DATE = datetime.date(2026, 11, 30)  # the emulators' (the providers') date, as CATALOG_DATE
PROVIDER_KEYS = {p: f"test-{p}-key-0123456789" for p in PROVIDERS}


@pytest.fixture(scope="session", autouse=True)
def botocore_data_read_once():
    """botocore's data files (service models, endpoint rules), parsed once per test process
    and shared by every session: each test's new container (``aws.forget``) would read the
    same files again, ~0.15 s a test. A new session's state is otherwise its own."""
    import botocore.loaders
    import botocore.session

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(botocore.session, "create_loader", cache(botocore.loaders.create_loader))
        yield


@pytest.fixture
def s3():
    """moto S3 with the image bucket and DynamoDB with the jobs table; the service's cached
    clients are rebuilt inside the mock."""
    with mock_aws():
        aws.forget()
        client = aws.client("s3")  # the service's own client: one per test, as in Lambda
        client.create_bucket(Bucket=TEST_BUCKET)
        job_store.create_table(aws.client("dynamodb"), TEST_JOBS_TABLE)
        yield client
        aws.forget()


@pytest.fixture
def dynamodb(s3):
    """The service's DynamoDB client, inside the same mock as ``s3``."""
    return aws.client("dynamodb")


@pytest.fixture
def emulators(monkeypatch):
    """Every provider emulator, reached through the service's real httpx client."""
    started = {provider: cls(clock=lambda: TEST_DATE) for provider, cls in EMULATORS.items()}
    for provider in EMULATORS:
        monkeypatch.setenv(PROVIDERS[provider].base_url_variable, in_process_base_url(provider))
        monkeypatch.setenv(PROVIDERS[provider].api_key_variable, PROVIDER_KEYS[provider])
    service_http.set_http_client(service_http.new_http_client(EmulatorRouter(started)))
    yield started
    service_http.set_http_client(None)


@pytest.fixture
def settings():
    return get_settings()


def pipeline_for(settings, provider_for=get_image_provider, **kwargs) -> JobPipeline:
    return JobPipeline(
        settings, ImageStore(settings), JobStore(settings.jobs_table), provider_for, **kwargs
    )


def inline_service(settings, provider_for=get_image_provider, **pipeline) -> ImageService:
    """A service whose jobs run the whole pipeline inside ``start``: the answer is final by
    the time ``generate`` returns. ``pipeline``: e.g. the pipeline's ``clock``."""
    runner = LocalJobRunner(pipeline_for(settings, provider_for, **pipeline), background=False)
    return ImageService(settings, ImageStore(settings), provider_for, job_runner=runner)


@pytest.fixture
def image_service(s3, emulators, settings) -> ImageService:
    return inline_service(settings)


class InlineJobs:
    """The generation handler's job runner in tests: each job's whole pipeline runs inside
    ``start``, with the settings and (mocked) clients current at that moment."""

    def start(self, execution_input: dict) -> None:
        LocalJobRunner(pipeline_for(get_settings()), background=False).start(execution_input)


import generation  # noqa: E402  (after the environment above: it reads its settings at import)

generation.job_runner = InlineJobs()


@pytest.fixture
def receiver():
    """A webhook receiver on loopback (plain HTTP), recording each delivery."""
    running = WebhookReceiver().start()
    yield running
    running.stop()


@pytest.fixture
def inline_generation(monkeypatch):
    """The generation handler's module, its jobs run to the end inside the request (whatever
    an earlier test left as its runner), its service made afresh from the current settings."""
    monkeypatch.setattr(generation, "job_runner", InlineJobs())
    generation.image_service.cache_clear()
    yield generation
    generation.image_service.cache_clear()


def request_body(prompt: str = "A serene mountain landscape at sunset", **image: Any) -> dict:
    return {
        "prompt": prompt,
        "settings": {"image": image},
        "customer_id": image.pop("customer_id", 123),
        "save_to_db": image.pop("save_to_db", True),
    }


def http_event(
    method: str = "POST",
    path: str = "/image/generate",
    body: Any = None,
    *,
    customer_id: int | None = 123,
    scopes: str = "",
    raw_body: str | None = None,
    base64_body: bool = False,
) -> dict:
    """An API Gateway HTTP API (payload format 2.0) event, authorizer context included."""
    text = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "authorization": "Bearer x.y.z"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "domainName": "api.example.test",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": "pytest",
            },
            "requestId": "req-1",
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": "23/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1795435200000,
        },
        "isBase64Encoded": base64_body,
    }
    if customer_id is not None:
        event["requestContext"]["authorizer"] = {
            "lambda": {"customer_id": str(customer_id), "sub": "user-1", "scopes": scopes}
        }
    if text is not None:
        event["body"] = base64.b64encode(text.encode()).decode() if base64_body else text
    return event


class LambdaContext:
    function_name = "generation"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:generation"
    aws_request_id = "req-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


# --- helpers for the provider, input-image and cost tests ---------------------------------------


def generate(service: ImageService, prompt: str = "A lighthouse on a cliff", **image: Any) -> dict:
    """One synchronous generation through the real service, as a trusted direct caller."""
    from image_service.models import parse_request

    request = parse_request(request_body(prompt, **image))
    return answer_of(service, request)


def answer_of(service: ImageService, request, *, wait_seconds: float = 5.0) -> dict:
    """A request's job, started and waited for; its ``data`` or its typed error raised."""
    from image_service.service import Caller

    started = service.generate(request, caller=Caller.trusted(), wait_seconds=wait_seconds)
    assert started.record.final, "the job did not finish"
    return service.job_answer(started.record)


def image_bytes(fmt: str = "png", width: int = 64, height: int = 48) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    pil_format = {"jpeg": "JPEG", "webp": "WEBP"}.get(fmt, "PNG")
    Image.new("RGB", (width, height), (200, 40, 90)).save(out, pil_format)
    return out.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@pytest.fixture
def service_with(s3, emulators, settings):
    """An ``ImageService`` whose settings differ from the environment's (e.g. retired models)."""

    def make(**overrides: Any) -> ImageService:
        return inline_service(settings.model_copy(update=overrides))

    return make


# --- helpers for the job tests -----------------------------------------------------------------


class RecordingJobRunner:
    """A job runner that only records the workflow inputs it was asked to start."""

    def __init__(self) -> None:
        self.started: list[dict] = []

    def start(self, execution_input: dict) -> None:
        self.started.append(execution_input)


@pytest.fixture
def job_tasks(s3, emulators):
    """The job workflow's Lambda entry points, with a fresh pipeline for this test's mocks."""
    import job_tasks as module

    module.pipeline_for.cache_clear()
    yield module
    module.pipeline_for.cache_clear()


def start_job(service: ImageService, prompt: str = "A fox in the snow", **image: Any) -> dict:
    """Start a job through the real service without waiting; its 202 ``data``."""
    from image_service.models import parse_request
    from image_service.service import Caller

    image.setdefault("model", "flux-pro-1.1")
    request = parse_request(request_body(prompt, **image))
    return service.start_job(request, caller=Caller.trusted()).record.accepted()


@pytest.fixture
def emulator_over_http(monkeypatch):
    """Serve one provider's emulator on 127.0.0.1, as the local stack does, with a real client."""
    servers = []

    def serve(provider: str):
        emulator = EMULATORS[provider](clock=lambda: TEST_DATE)
        servers.append(emulator.serve())
        monkeypatch.setenv(PROVIDERS[provider].base_url_variable, served_base_url(emulator))
        monkeypatch.setenv(PROVIDERS[provider].api_key_variable, PROVIDER_KEYS[provider])
        # As the local stack does: the emulator's origin (loopback, http) is exempt from the
        # URL guard, so its result URLs can be fetched.
        trusted = os.environ.get("TRUSTED_URL_ORIGINS", "")
        monkeypatch.setenv("TRUSTED_URL_ORIGINS", f"{trusted},{emulator.base_url}")
        get_settings.cache_clear()
        service_http.set_http_client(service_http.new_http_client())
        return emulator

    yield serve
    get_settings.cache_clear()
    service_http.set_http_client(None)
    for server in servers:
        server.shutdown()
        server.server_close()


# --- JWT signing keys (authorizer tests) ---------------------------------------------------------

# Every variable the authorizer reads: cleared before each authorizer test.
AUTHORIZER_ENV = (
    "JWT_SECRET",
    "JWT_SECRET_ARN",
    "JWT_JWKS_URL",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_ALGORITHMS",
    "JWT_CUSTOMER_CLAIM",
    "JWT_LEEWAY_SECONDS",
    "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",
)


@pytest.fixture(scope="session")
def rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def jwk_of(private_key, kid: str, alg: str) -> dict:
    """The public JWK of a key, as a JWKS endpoint would publish it."""
    import jwt

    jwk = jwt.get_algorithm_by_name(alg).to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


class LocalServer:
    """A tiny HTTP server whose answers the test sets, and which records every request."""

    def __init__(self):
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, dict(self.headers)))
                status, headers, body = server.routes.get(
                    urlparse(self.path).path, (404, {}, b"not found")
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def answer(self, path, status=200, body: object = b"", headers=None):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.routes[path] = (status, headers or {"Content-Type": "application/json"}, body)

    def hits(self, path):
        return sum(1 for requested, _ in self.requests if urlparse(requested).path == path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class SecretsManagerExtension(LocalServer):
    """The Parameters and Secrets extension as Lambda runs it: ``GET /secretsmanager/get``
    answered from Secrets Manager itself (moto, when used inside ``mock_aws``)."""

    def __init__(self) -> None:
        super().__init__()
        self.answer_from_secrets_manager()

    def answer_from_secrets_manager(self) -> None:
        import boto3

        server = self

        class Route(dict):
            def get(self, path, default=None):
                if path != "/secretsmanager/get":
                    return default
                query = parse_qs(urlparse(server.requests[-1][0]).query)
                try:
                    value = boto3.client("secretsmanager").get_secret_value(
                        SecretId=query["secretId"][0]
                    )
                except Exception:
                    return (400, {}, b"secret unavailable")
                body = {"ARN": value["ARN"], "SecretString": value["SecretString"]}
                return (200, {"Content-Type": "application/json"}, json.dumps(body).encode())

        self.routes = Route()


@pytest.fixture
def secrets_extension(monkeypatch):
    """Provider keys read as deployed: through the extension, backed by (moto's) Secrets
    Manager; the container's cache of them starts empty."""
    from image_common.credentials import provider_secrets

    extension = SecretsManagerExtension()
    monkeypatch.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(extension.port))
    provider_secrets.clear()
    yield extension
    provider_secrets.clear()
    extension.close()
