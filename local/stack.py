"""The offline local stack: the real handlers behind a local API Gateway, S3 and DynamoDB from
moto's server, the job pipeline in-process, and a provider emulator for every provider that has
neither a key nor a base URL.

``LocalStack`` is what ``make dev`` (``python -m local``) and the end-to-end tests start. It sets
the environment *before* importing the handler modules (the generation function reads its
settings at import, as on a Lambda cold start) and puts everything back on ``stop()``.
"""

from __future__ import annotations

import datetime
import importlib
import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from local.api_gateway import HttpApiGateway, LambdaFunction, Route

logger = logging.getLogger("local.stack")

REPO_ROOT = Path(__file__).resolve().parent.parent
# What Lambda puts on sys.path: each function's folder (task root) and the layer's python/.
LAMBDA_CODE_PATHS = (
    REPO_ROOT / "functions" / "generation",
    REPO_ROOT / "functions" / "authorizer",
    REPO_ROOT / "functions" / "health",
    REPO_ROOT / "layers" / "common" / "python",
)

HOST = "127.0.0.1"  # never anything but loopback
DEFAULT_PORT = 8000
DEFAULT_BUCKET = "image-generation-dev"
DEFAULT_USAGE_TABLE = "image-usage-dev"
# A fixed development secret, so tokens minted by `python -m local.token` keep working across
# restarts. HS256 needs at least 32 bytes. Never used outside the local stack.
DEV_JWT_SECRET = "local-dev-only-hs256-secret-not-for-production"
# The same for webhook signatures (Standard Webhooks: whsec_ + base64 of the key bytes).
DEV_WEBHOOK_SECRET = "whsec_bG9jYWwtZGV2LW9ubHktd2ViaG9vay1zZWNyZXQ="
DEFAULT_JOBS_TABLE = "image-jobs-dev"
EMULATOR_API_KEY = "local-emulator-key"  # emulators only check that a key is sent
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"

# The deployed API's routes (infra/constructs/api.py; a test keeps the two in step).
ROUTES = [
    Route("POST", "/image/generate", authorized=True),
    Route("GET", "/image/jobs", authorized=True),
    Route("GET", "/image/jobs/{job_id}", authorized=True),
    Route("GET", "/image/models", authorized=True),
    Route("GET", "/image/usage", authorized=True),
    Route("POST", "/v1/images/generations", authorized=True),
    Route("POST", "/v1/images/edits", authorized=True),
    Route("GET", "/v1/models", authorized=True),
    Route("GET", "/v1/models/{model}", authorized=True),
    Route("GET", "/health", authorized=False, function="health"),
]
# As deployed (infra/settings.py, infra/constructs/api.py).
GENERATION_TIMEOUT_SECONDS, GENERATION_MEMORY_MB = 300.0, 1024
AUTHORIZER_TIMEOUT_SECONDS, AUTHORIZER_MEMORY_MB = 10.0, 256
HEALTH_TIMEOUT_SECONDS, HEALTH_MEMORY_MB = 3.0, 128
INTEGRATION_TIMEOUT_SECONDS = 29.0


@dataclass(frozen=True)
class ProviderRoute:
    """Where one provider's calls go, for the start-up summary (never the key)."""

    provider: str
    prefix: str
    target: str  # "emulator", "base-url", "real-api" or "not-configured"
    base_url: str | None


class LocalStack:
    """Start with ``start()`` (or ``with LocalStack() as stack:``); ``base_url`` is the API."""

    def __init__(self, port: int | None = None, today: datetime.date | None = None) -> None:
        self.port = int(os.environ.get("PORT", DEFAULT_PORT)) if port is None else port
        # The stack's calendar: the service (CATALOG_DATE) and every emulator share it, so a
        # model's shutdown date means the same day to both. None: CATALOG_DATE, else today.
        self.today = today
        self.base_url = ""
        self.s3_endpoint = ""
        self.s3_in_process = False  # moto's server, started by this stack
        self.dynamodb_endpoint = ""
        self.dynamodb_in_process = False
        self.jobs_table = ""
        self.job_runner: Any = None
        self._previous_job_runner: Any = None
        self.bucket = ""
        self.usage_table = ""
        self.providers: list[ProviderRoute] = []
        self.emulators: dict[str, Any] = {}
        self._emulator_servers: list[Any] = []
        self._moto: Any = None
        self._gateway: HttpApiGateway | None = None
        self._saved_environ: dict[str, str] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalStack:
        if self._saved_environ is not None:
            raise RuntimeError("this LocalStack is already started")
        self._saved_environ = dict(os.environ)
        try:
            _add_lambda_code_paths()
            self._configure_environment()
            self._start_s3()
            self._start_dynamodb()
            self._start_emulators()
            self._trust_local_origins()
            generation, authorizer = self._load_handlers()
            self._ensure_bucket()
            self._ensure_usage_table()
            self._ensure_jobs_table()
            self._run_jobs_in_process(generation)
            region = os.environ["AWS_DEFAULT_REGION"]
            self._gateway = HttpApiGateway(
                ROUTES,
                integration=LambdaFunction(
                    "image-generation",
                    generation.handler,
                    timeout_seconds=GENERATION_TIMEOUT_SECONDS,
                    memory_mb=GENERATION_MEMORY_MB,
                    region=region,
                    account_id=ACCOUNT_ID,
                ),
                authorizer=LambdaFunction(
                    "jwt-authorizer",
                    authorizer.handler,
                    timeout_seconds=AUTHORIZER_TIMEOUT_SECONDS,
                    memory_mb=AUTHORIZER_MEMORY_MB,
                    region=region,
                    account_id=ACCOUNT_ID,
                ),
                region=region,
                account_id=ACCOUNT_ID,
                integration_timeout_seconds=INTEGRATION_TIMEOUT_SECONDS,
                integrations={
                    "health": LambdaFunction(
                        "health",
                        importlib.import_module("health").handler,
                        timeout_seconds=HEALTH_TIMEOUT_SECONDS,
                        memory_mb=HEALTH_MEMORY_MB,
                        region=region,
                        account_id=ACCOUNT_ID,
                    )
                },
            )
            self.base_url = self._gateway.serve(HOST, self.port)
        except BaseException:
            self.stop()
            raise
        logger.info("local stack ready on %s", self.base_url)
        return self

    def stop(self) -> None:
        if self._gateway is not None:
            self._gateway.shutdown()
            self._gateway = None
        if self.job_runner is not None:
            self.job_runner.join(timeout=5)
            self.job_runner = None
        # In parallel: each server notices a shutdown only at its next poll (0.5 s).
        stopping = [
            threading.Thread(target=server.shutdown, daemon=True)
            for server in self._emulator_servers
        ]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join(timeout=5)
        for server in self._emulator_servers:
            server.server_close()
        self._emulator_servers.clear()
        self.emulators.clear()
        self.providers.clear()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
            self.s3_in_process = False
        if self._saved_environ is not None:
            os.environ.clear()
            os.environ.update(self._saved_environ)
            self._saved_environ = None
            # Reload when the settings it read differ from the restored environment — also when
            # the stack imported it first: its module-level settings are the stack's otherwise.
            self._reset_cached_clients()
            generation = sys.modules.get("generation")
            if generation is not None:  # what the process had before (a test session's runner)
                generation.job_runner = self._previous_job_runner
                generation.image_service.cache_clear()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- steps -------------------------------------------------------------------------------

    def _configure_environment(self) -> None:
        env = os.environ
        env.setdefault("AWS_DEFAULT_REGION", REGION)
        env.setdefault("AWS_REGION", env["AWS_DEFAULT_REGION"])
        env.setdefault("IMAGE_BUCKET", DEFAULT_BUCKET)
        env.setdefault("USAGE_TABLE", DEFAULT_USAGE_TABLE)
        env.setdefault("JOBS_TABLE", DEFAULT_JOBS_TABLE)
        env.setdefault("WEBHOOK_SECRET", DEV_WEBHOOK_SECRET)
        env.setdefault("POWERTOOLS_SERVICE_NAME", "image-generation")
        env.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ImageService")
        env.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        if self.today is not None:
            env["CATALOG_DATE"] = self.today.isoformat()
        if not any(env.get(name) for name in ("JWT_SECRET", "JWT_SECRET_ARN", "JWT_JWKS_URL")):
            env["JWT_SECRET"] = DEV_JWT_SECRET
        self.bucket = env["IMAGE_BUCKET"]
        self.usage_table = env["USAGE_TABLE"]
        self.jobs_table = env["JOBS_TABLE"]

    def _start_s3(self) -> None:
        env = os.environ
        if env.get("AWS_ENDPOINT_URL_S3"):
            self.s3_endpoint = env["AWS_ENDPOINT_URL_S3"]
            return
        self.s3_endpoint = env["AWS_ENDPOINT_URL_S3"] = self._moto_endpoint()

    def _start_dynamodb(self) -> None:
        """The usage table (per-customer limits): moto's server unless an endpoint is given."""
        env = os.environ
        if not env.get("AWS_ENDPOINT_URL_DYNAMODB"):
            env["AWS_ENDPOINT_URL_DYNAMODB"] = self._moto_endpoint()
            self.dynamodb_in_process = True
        self.dynamodb_endpoint = env["AWS_ENDPOINT_URL_DYNAMODB"]

    def _moto_endpoint(self) -> str:
        """moto's server (one, for every AWS service the stack needs), started on first use."""
        env = os.environ
        if self._moto is not None:
            host, port = self._moto.get_host_and_port()
            return f"http://{host}:{port}"
        from moto.server import ThreadedMotoServer

        # moto accepts any credentials; fixed dummies keep real ones out of presigned URLs.
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            env.pop(name, None)
        env["AWS_ACCESS_KEY_ID"] = "local"
        env["AWS_SECRET_ACCESS_KEY"] = "local"
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access line per S3 call
        self._moto = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
        self._moto.start()
        self.s3_in_process = True
        host, port = self._moto.get_host_and_port()
        return f"http://{host}:{port}"

    def _start_emulators(self) -> None:
        from image_common.provider_identity import PROVIDERS
        from local.emulators import EMULATORS, served_base_url

        env = os.environ
        for provider, identity in PROVIDERS.items():
            key_variable, url_variable = identity.api_key_variable, identity.base_url_variable
            key, base_url = env.get(key_variable), env.get(url_variable)
            if provider in EMULATORS and not key and not base_url:
                emulator = EMULATORS[provider](clock=self._clock())
                self._emulator_servers.append(emulator.serve(HOST, 0))
                self.emulators[provider] = emulator
                env[url_variable] = served_base_url(emulator)
                env[key_variable] = EMULATOR_API_KEY
                target = "emulator"
            elif base_url:
                if not key:
                    env[key_variable] = EMULATOR_API_KEY
                target = "base-url"
            else:
                target = "real-api" if key else "not-configured"
            self.providers.append(
                ProviderRoute(provider, identity.env_prefix, target, env.get(url_variable))
            )

    def _trust_local_origins(self) -> None:
        """The production URL guard stays on for everything a caller supplies; only the origins
        of moto's S3 and of the providers' emulators or base URLs (loopback, plain http) are
        exempt, so their result URLs and stored images can be fetched."""
        from image_common.settings import url_origin

        urls = [self.s3_endpoint] + [p.base_url for p in self.providers if p.base_url]
        origins = {url_origin(url) for url in urls} - {None}
        configured = os.environ.get("TRUSTED_URL_ORIGINS", "")
        os.environ["TRUSTED_URL_ORIGINS"] = ",".join(
            sorted(origins | {o.strip() for o in configured.split(",") if o.strip()})
        )

    def _clock(self):
        """The emulators' date: the service's pinned CATALOG_DATE, else UTC today."""
        from image_service.catalog import CatalogSettings

        return CatalogSettings.from_environ(os.environ).clock()

    def _load_handlers(self) -> tuple[ModuleType, ModuleType]:
        self._reset_cached_clients()
        return importlib.import_module("generation"), importlib.import_module("authorizer")

    def _ensure_bucket(self) -> None:
        import boto3
        from botocore.exceptions import ClientError

        s3 = boto3.client("s3", endpoint_url=self.s3_endpoint)
        try:
            s3.head_bucket(Bucket=self.bucket)
        except ClientError:
            region = os.environ["AWS_DEFAULT_REGION"]
            extra = (
                {}
                if region == "us-east-1"
                else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            )
            s3.create_bucket(Bucket=self.bucket, **extra)

    def _ensure_usage_table(self) -> None:
        import boto3

        from image_service.usage import create_table

        create_table(
            boto3.client("dynamodb", endpoint_url=self.dynamodb_endpoint), self.usage_table
        )

    def _ensure_jobs_table(self) -> None:
        import boto3

        from image_service.job_store import create_table

        create_table(boto3.client("dynamodb", endpoint_url=self.dynamodb_endpoint), self.jobs_table)

    def _run_jobs_in_process(self, generation: ModuleType) -> None:
        """The entry point's runner: the job state machine's task handlers, in its order."""
        import job_tasks

        from local.job_runner import LambdaTasks, LocalJobRunner

        self.job_runner = LocalJobRunner(LambdaTasks(job_tasks))
        self._previous_job_runner = generation.job_runner
        generation.job_runner = self.job_runner
        generation.image_service.cache_clear()

    @staticmethod
    def _reset_cached_clients() -> None:
        """Drop what the handler modules cached from another environment: at start (a test
        session may have imported them already) and at stop (the stack may have imported them
        first). The generation module read its settings at import: reloaded when they differ,
        forgotten when this environment has none (the next import then says what is wrong)."""
        from image_common.settings import get_settings
        from image_service import aws, catalog, http

        get_settings.cache_clear()
        catalog.catalog_settings.cache_clear()
        catalog.catalog_source.cache_clear()
        aws.forget()
        http.set_http_client(None)
        job_tasks = sys.modules.get("job_tasks")
        if job_tasks is not None:
            job_tasks.pipeline_for.cache_clear()
        authorizer = sys.modules.get("authorizer")
        if authorizer is not None:
            authorizer.current_verifier.cache_clear()
        generation = sys.modules.get("generation")
        if generation is None:
            return
        try:
            stale = generation.settings != get_settings()
        except Exception:  # e.g. no IMAGE_BUCKET once make dev's environment is put back
            sys.modules.pop("generation")
            return
        if stale:
            runner = generation.job_runner
            importlib.reload(generation)
            generation.job_runner = runner
        else:
            generation.image_service.cache_clear()


def _add_lambda_code_paths() -> None:
    for path in reversed(LAMBDA_CODE_PATHS):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
