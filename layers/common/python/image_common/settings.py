"""The generation function's configuration: environment variables read once, typed, validated.

A misconfigured function fails on its first start with a message naming the variable, not on
the hundredth request. Each field is read from the upper-cased variable of the same name: a
plain pydantic model rather than pydantic-settings, the same validation for ~70 ms less cold
start. Provider keys are not read here: they come from the environment or, in AWS, from one
Secrets Manager secret fetched once per container on first use (``credentials``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MiB = 1024 * 1024


class ServiceSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    image_bucket: str = Field(min_length=3, description="Bucket for images and job records.")
    image_url_mode: Literal["presigned", "cloudfront"] = "presigned"
    image_cdn_domain: str | None = None
    presign_expires_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    provider_timeout_seconds: float = Field(default=25.0, gt=0, le=900)  # HTTP path: < 30 s
    invoke_provider_timeout_seconds: float = Field(default=110.0, gt=0, le=900)
    admin_scope: str = "images:admin"

    max_input_image_bytes: int = Field(default=10 * MiB, gt=0)
    # All input images and the mask of one request together: bounds memory (and base64 copies).
    max_input_images_total_bytes: int = Field(default=25 * MiB, gt=0)
    # Lambda's synchronous response limit is 6 MB; keep room for the envelope and headers.
    max_response_bytes: int = Field(default=6 * 1000 * 1000 - 64 * 1024, gt=0)
    # Local stack and tests only: origins (scheme://host:port, comma list) that URL fetches may
    # reach although the public-URL guard would refuse them — the emulators and moto's S3.
    # Everything else a caller or a provider supplies goes through the guard, as in AWS.
    trusted_url_origins: str = ""
    # Retired models this deployment's provider accounts still serve (comma list).
    enabled_retired_models: str = ""

    # Per-customer limits (image_service.usage): the usage table, and the stage's defaults that
    # a customer's own item in it overrides. No table: no limits (tests that need none).
    usage_table: str | None = None
    rate_limit_per_minute: int = Field(default=30, ge=1)
    daily_budget_usd: float = Field(default=20.0, gt=0)
    monthly_budget_usd: float = Field(default=200.0, gt=0)

    # Jobs (docs/jobs.md). Every generation is a job: a record in DynamoDB, run by the job
    # state machine (or, in the local stack, the same tasks in-process).
    jobs_table: str = Field(default="image-jobs", min_length=3)
    job_state_machine_arn: str | None = None
    # The longest any one job may run its provider call or poll loop: each model's own budget
    # (image_service.budgets) is capped here, to fit the worker function's timeout.
    job_max_budget_seconds: float = Field(default=240, gt=0, le=840)
    job_poll_interval_seconds: float = Field(default=1.0, gt=0, le=10)
    # How long POST /image/generate waits for a job before answering 202: inside API Gateway's
    # 30 s integration limit, with room for validation and the answer.
    job_wait_seconds: float = Field(default=20, ge=0, le=25)
    job_record_ttl_days: int = Field(default=30, ge=1, le=3650)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60, le=7 * 24 * 3600)

    # Webhooks: the signing secret (whsec_…) from the environment (local) or Secrets Manager.
    webhook_secret: str | None = Field(default=None, repr=False)
    webhook_secret_arn: str | None = None
    # Origins (scheme://host[:port]) exempt from the public-URL guard for callback_url.
    trusted_callback_origins: str = ""
    # Seconds to wait before each retry of a failed delivery (Standard Webhooks' schedule).
    webhook_retry_schedule: str = "5,300,1800,7200,18000,36000"

    @model_validator(mode="after")
    def _cdn_needs_domain(self) -> ServiceSettings:
        if self.image_url_mode == "cloudfront" and not self.image_cdn_domain:
            raise ValueError("IMAGE_CDN_DOMAIN is required when IMAGE_URL_MODE=cloudfront")
        return self

    @model_validator(mode="after")
    def _origins_are_origins(self) -> ServiceSettings:
        for item in filter(None, (o.strip() for o in self.trusted_url_origins.split(","))):
            parts = urlsplit(item)
            if url_origin(item) is None or parts.path not in ("", "/") or parts.query:
                raise ValueError(f"TRUSTED_URL_ORIGINS: {item!r} is not scheme://host[:port]")
        return self

    @property
    def trusted_origins(self) -> frozenset[str]:
        """The normalised origins of ``trusted_url_origins``."""
        origins = (url_origin(o.strip()) for o in self.trusted_url_origins.split(",") if o.strip())
        return frozenset(o for o in origins if o)

    @model_validator(mode="after")
    def _webhook_settings(self) -> ServiceSettings:
        if self.webhook_secret and not self.webhook_secret.startswith("whsec_"):
            raise ValueError("WEBHOOK_SECRET must be a Standard Webhooks secret (whsec_…)")
        try:
            self.webhook_retry_delays  # noqa: B018 - validates the schedule
        except ValueError:
            raise ValueError("WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds") from None
        for item in filter(None, (o.strip() for o in self.trusted_callback_origins.split(","))):
            if url_origin(item) is None:
                raise ValueError(f"TRUSTED_CALLBACK_ORIGINS: {item!r} is not scheme://host[:port]")
        return self

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        delays = tuple(float(x) for x in self.webhook_retry_schedule.split(",") if x.strip())
        if any(d < 0 for d in delays):
            raise ValueError("negative delay")
        return delays

    @property
    def trusted_callback_origin_set(self) -> frozenset[str]:
        """The normalised origins of ``trusted_callback_origins``."""
        origins = (url_origin(o.strip()) for o in self.trusted_callback_origins.split(",") if o)
        return frozenset(o for o in origins if o)

    @property
    def retired_models_enabled(self) -> frozenset[str]:
        return frozenset(m.strip().lower() for m in self.enabled_retired_models.split(",") if m)


def url_origin(url: str) -> str | None:
    """``scheme://host:port`` of a URL, lower-cased, the default port written out; None when
    the URL has no host or a bad port."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme.lower()}://{host.lower()}:{port}"


class ConfigurationError(RuntimeError):
    """Raised at cold start; the message names the variables at fault."""


def load_settings(environ: Mapping[str, str]) -> ServiceSettings:
    values = {
        name: environ[name.upper()]
        for name in ServiceSettings.model_fields
        if environ.get(name.upper(), "") != ""
    }
    try:
        return ServiceSettings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'_'.join(str(p) for p in e['loc']).upper() or 'settings'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigurationError(f"Invalid configuration: {problems}") from None


@cache
def get_settings() -> ServiceSettings:
    """The container's settings, read once."""
    return load_settings(os.environ)
