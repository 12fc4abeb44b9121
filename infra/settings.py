"""Typed per-stage settings, read from the ``cdk.json`` context.

``cdk.json`` holds ``"stages": {"dev": {...}, "prod": {...}}`` and a default ``"stage"``; pick
another with ``-c stage=prod``. Each stage lists only what differs from the defaults below, and
is validated here, so a typo or an out-of-range value fails synth with a message that names the
setting — never a half-configured deployment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

STAGE_CONTEXT_KEY = "stage"
STAGES_CONTEXT_KEY = "stages"
SERVICE_NAME = "image-service"

# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
SECRET_COMPLETE_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$"
)
WEB_ACL_ARN = re.compile(
    r"^arn:aws[a-z-]*:wafv2:us-east-1:\d{12}:global/webacl/[A-Za-z0-9_-]+/[0-9a-f-]+$"
)
SNS_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Regions where Lambda SnapStart is not offered, per AWS's SnapStart page as read on 2026-11-30
# ("all commercial regions except Asia Pacific (New Zealand) and Asia Pacific (Taipei)"; other
# partitions not covered). Re-read the page before relying on this list.
SNAPSTART_UNAVAILABLE_REGIONS = {
    "ap-southeast-6": "Asia Pacific (New Zealand)",
    "ap-east-2": "Asia Pacific (Taipei)",
}
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class SettingsError(ValueError):
    """The cdk.json context does not describe a deployable stage; the message says what to fix."""


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JwtSettings(_Settings):
    """How the authorizer verifies tokens: a shared HS* secret, or an identity provider's JWKS."""

    mode: Literal["secret", "jwks"] = "secret"
    # secret mode: the stack creates the secret, unless a complete ARN of an existing one is given
    secret_arn: str | None = Field(default=None, pattern=SECRET_COMPLETE_ARN.pattern)
    # jwks mode
    jwks_url: str | None = Field(default=None, pattern=r"^https://[^\s/]+(/\S*)?$")
    issuer: str | None = None
    audience: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = ()  # empty: HS256 (secret) or RS256, ES256 (jwks)
    customer_claim: str = Field(default="customer_id", min_length=1)
    leeway_seconds: int = Field(default=30, ge=0, le=300)

    @model_validator(mode="after")
    def _mode_is_complete(self) -> Self:
        if self.mode == "jwks":
            missing = [n for n in ("jwks_url", "issuer") if not getattr(self, n)]
            if not self.audience:
                missing.append("audience")
            if missing:
                raise ValueError(f"jwks mode needs {', '.join(missing)}")
            if self.secret_arn:
                raise ValueError("secret_arn is only used in secret mode")
            if set(self.algorithms) & HMAC_ALGORITHMS:
                raise ValueError("jwks mode accepts only asymmetric algorithms")
        else:
            if self.jwks_url or self.issuer or self.audience:
                raise ValueError("jwks_url, issuer and audience are only used in jwks mode")
            if set(self.algorithms) - HMAC_ALGORITHMS:
                raise ValueError("secret mode accepts only HS256, HS384 or HS512")
        unknown = set(self.algorithms) - HMAC_ALGORITHMS - ASYMMETRIC_ALGORITHMS
        if unknown:
            raise ValueError(f"unsupported algorithm(s): {', '.join(sorted(unknown))}")
        return self

    @property
    def effective_algorithms(self) -> tuple[str, ...]:
        if self.algorithms:
            return self.algorithms
        return ("RS256", "ES256") if self.mode == "jwks" else ("HS256",)


class ImageUrlSettings(_Settings):
    """What ``image_url`` is: a presigned S3 GET, or a stable URL behind CloudFront (OAC)."""

    mode: Literal["presigned", "cloudfront"] = "presigned"
    presign_expires_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    cloudfront_price_class: Literal["PRICE_CLASS_100", "PRICE_CLASS_200", "PRICE_CLASS_ALL"] = (
        "PRICE_CLASS_100"
    )
    # Optional custom domain for stable URLs, with its ACM certificate (in us-east-1); without
    # them the distribution's *.cloudfront.net name is used.
    cdn_domain_name: str | None = Field(default=None, pattern=r"^([a-z0-9-]+\.)+[a-z]{2,}$")
    cdn_certificate_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:acm:us-east-1:\d{12}:certificate/[0-9a-f-]+$"
    )

    @model_validator(mode="after")
    def _domain_needs_certificate(self) -> Self:
        if bool(self.cdn_domain_name) != bool(self.cdn_certificate_arn):
            raise ValueError("cdn_domain_name and cdn_certificate_arn go together")
        if self.cdn_domain_name and self.mode != "cloudfront":
            raise ValueError("cdn_domain_name is only used in cloudfront mode")
        return self


class FunctionSizing(_Settings):
    memory_mb: int = Field(ge=128, le=10240)
    timeout_seconds: int = Field(ge=1, le=900)


# Sized for what each does. The authorizer verifies a signature (CPU-light, on every request);
# generation validates, records and starts the job and waits for it (behind the API its answer
# is cut at API Gateway's 30 s anyway; a direct invoke waits for the job's deadline); the job's
# `run` makes the provider call (up to the job's budget) and stores the images, `store` does the
# same for a submit/poll provider's result, `poll` and `notify` make one small call each.
AUTHORIZER_SIZING = FunctionSizing(memory_mb=256, timeout_seconds=10)
GENERATION_SIZING = FunctionSizing(memory_mb=1024, timeout_seconds=300)
JOB_RUN_SIZING = FunctionSizing(memory_mb=1024, timeout_seconds=300)
JOB_POLL_SIZING = FunctionSizing(memory_mb=256, timeout_seconds=20)
JOB_STORE_SIZING = FunctionSizing(memory_mb=1024, timeout_seconds=60)
JOB_RECORD_FAILURE_SIZING = FunctionSizing(memory_mb=256, timeout_seconds=15)
JOB_NOTIFY_SIZING = FunctionSizing(memory_mb=256, timeout_seconds=30)
HEALTH_SIZING = FunctionSizing(memory_mb=128, timeout_seconds=3)  # answers a constant
# The daily model catalog check: three list calls of at most 10 s each (Gemini's may page).
MODELS_CHECK_SIZING = FunctionSizing(memory_mb=256, timeout_seconds=120)
# A job's record is final at the latest at its deadline: its budget plus this grace for storing
# the image (FINALIZE_GRACE_SECONDS in functions/generation/image_service/job_records.py; a test
# keeps the two equal) ...
JOB_FINALIZE_GRACE_SECONDS = 30
# ... a direct invoke stops waiting this long before the function's timeout, to answer cleanly,
# and the run task's timeout leaves this much after the budget to store the images.
INVOKE_TIMEOUT_MARGIN_SECONDS = 10


class ReservedConcurrency(_Settings):
    """Concurrent executions reserved for — and the most allowed to — each function. A cap keeps
    one runaway caller from starving the account's other functions (and the provider bill in
    check); ``None`` shares the account's unreserved pool (e.g. a new account whose limit is
    10, where nothing can be reserved). Lambda keeps 100 of the account's limit unreserved."""

    authorizer: int | None = Field(default=None, ge=1, le=3000)
    generation: int | None = Field(default=None, ge=1, le=3000)
    health: int | None = Field(default=None, ge=1, le=3000)
    job_run: int | None = Field(default=None, ge=1, le=3000)
    job_poll: int | None = Field(default=None, ge=1, le=3000)
    job_store: int | None = Field(default=None, ge=1, le=3000)
    job_record_failure: int | None = Field(default=None, ge=1, le=3000)
    job_notify: int | None = Field(default=None, ge=1, le=3000)
    models_check: int | None = Field(default=None, ge=1, le=3000)


class FunctionsSettings(_Settings):
    authorizer: FunctionSizing = AUTHORIZER_SIZING
    health: FunctionSizing = HEALTH_SIZING
    generation: FunctionSizing = GENERATION_SIZING
    job_run: FunctionSizing = JOB_RUN_SIZING
    job_poll: FunctionSizing = JOB_POLL_SIZING
    job_store: FunctionSizing = JOB_STORE_SIZING
    job_record_failure: FunctionSizing = JOB_RECORD_FAILURE_SIZING
    job_notify: FunctionSizing = JOB_NOTIFY_SIZING
    models_check: FunctionSizing = MODELS_CHECK_SIZING
    # Provider call budget on the HTTP path: must leave room inside API Gateway's 30 s.
    provider_timeout_seconds: int = Field(default=25, ge=1, le=27)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    admin_scope: str = Field(default="images:admin", min_length=1)
    # Retired models this stage's provider accounts still serve (see the model registry).
    enabled_retired_models: tuple[str, ...] = ()
    tracing: bool = True
    reserved_concurrency: ReservedConcurrency = ReservedConcurrency()
    # Lambda SnapStart on the functions whose cold start is heavy and on a generation's path
    # (generation, job_run, job_store; infra/constructs/functions.py): a published version
    # restores from a snapshot of its initialised container. Off: a region without SnapStart,
    # or while debugging init code (it then runs on every cold start, in the invoke's logs).
    snap_start: bool = True


class Throttle(_Settings):
    rate_limit: float = Field(gt=0, le=10000)  # steady requests / second
    burst_limit: int = Field(gt=0, le=5000)


class ApiSettings(_Settings):
    throttle_rate_limit: float = Field(default=50, gt=0, le=10000)  # steady requests / second
    throttle_burst_limit: int = Field(default=100, gt=0, le=5000)
    # Authorizer results are cached per Authorization header value; 0 turns the cache off.
    authorizer_cache_seconds: int = Field(default=60, ge=0, le=3600)
    cors_allowed_origins: tuple[str, ...] = ()
    cors_max_age_seconds: int = Field(default=3600, ge=0, le=86400)
    # Per route ("POST /image/generate"): what a route costs decides its limit; a route not
    # named here gets the stage's limit above. Unknown route keys fail synth (api.py).
    route_throttles: dict[str, Throttle] = Field(default_factory=dict)


class LimitsSettings(_Settings):
    """Per-customer defaults; one customer's overrides live in the usage table (docs/limits.md)."""

    requests_per_minute: int = Field(default=30, ge=1, le=100_000)
    daily_budget_usd: float = Field(default=20.0, gt=0)
    monthly_budget_usd: float = Field(default=200.0, gt=0)

    @model_validator(mode="after")
    def _month_holds_a_day(self) -> Self:
        if self.monthly_budget_usd < self.daily_budget_usd:
            raise ValueError("monthly_budget_usd must be at least daily_budget_usd")
        return self


GENERATION_TRAFFIC_SHIFTING = Literal[
    "all_at_once",
    "canary_10_percent_5_minutes",
    "canary_10_percent_10_minutes",
    "canary_10_percent_15_minutes",
    "linear_10_percent_every_1_minute",
]


class DeploySettings(_Settings):
    # How CodeDeploy moves the generation function's alias to a new version; any alarm of the
    # stage during the shift rolls it back.
    generation_traffic_shifting: GENERATION_TRAFFIC_SHIFTING = "canary_10_percent_5_minutes"
    termination_protection: bool = False


class EdgeSettings(_Settings):
    """WAF in front of the CloudFront image distribution (cloudfront URL mode only). A
    CLOUDFRONT web ACL must live in us-east-1: name an existing one, or let the app create it
    in a small us-east-1 stack (needs the stage's ``region``; docs/deploy.md)."""

    web_acl_arn: str | None = Field(default=None, pattern=WEB_ACL_ARN.pattern)
    # Requests per client IP per 5 minutes before WAF blocks it (the created ACL's rule).
    rate_limit_per_5_minutes: int | None = Field(default=None, ge=10, le=2_000_000_000)

    @property
    def creates_web_acl(self) -> bool:
        return self.web_acl_arn is None and self.rate_limit_per_5_minutes is not None


class StorageSettings(_Settings):
    job_record_expiration_days: int = Field(default=30, ge=1)
    image_expiration_days: int | None = Field(default=None, ge=1)  # None: images are kept
    access_log_expiration_days: int = Field(default=90, ge=1)
    # Keep the buckets and secrets when the stack is deleted (data outlives a redeploy).
    retain_data: bool = True


class JobsSettings(_Settings):
    """Every generation is a job (docs/jobs.md); these are passed to the functions."""

    interval_seconds: int = Field(default=1, ge=1, le=10)  # between polls of a Flux task
    # The longest a job may wait for its provider (each model's own budget is capped here).
    max_budget_seconds: int = Field(default=240, ge=10, le=840)
    # How long POST /image/generate waits before answering 202 (inside API Gateway's 30 s).
    wait_seconds: int = Field(default=20, ge=0, le=25)
    # Execution data holds prompts: log it only where that is acceptable (dev).
    log_execution_data: bool = False
    # Seconds before each retry of a webhook delivery (the last attempt ~17 h after the first).
    webhook_retry_schedule: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000)
    # A secret ops created themselves (complete ARN); by default the stack generates one.
    webhook_secret_arn: str | None = Field(default=None, pattern=SECRET_COMPLETE_ARN.pattern)


class CatalogSettings(_Settings):
    """The ops overlay over the shipped model catalog (docs/providers.md): an SSM String
    parameter the stack names and grants, but does not create (a deploy must never overwrite
    what ops published)."""

    # None: /{resource_prefix}/catalog-overlay
    overlay_parameter: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9_.\-/]{1,1000}$")
    overlay_max_age_seconds: int = Field(default=300, ge=0, le=3600)
    # After a failed or rejected read, a container reads again no sooner than this: one SSM
    # read per container per interval during an outage or throttling, not one per request.
    overlay_retry_seconds: int = Field(default=30, ge=1, le=3600)


class ModelsCheckSettings(_Settings):
    """The daily comparison of the model catalog with the providers' model lists."""

    enabled: bool = True  # False: the function exists, the schedule is off
    # EventBridge schedule expression (UTC); daily, early, before the working day in Europe.
    schedule: str = Field(
        default="cron(0 6 * * ? *)", pattern=r"^(cron\([^)]+\)|rate\(\d+ (minute|hour|day)s?\))$"
    )
    warning_days: int = Field(default=30, ge=1, le=365)  # shutdowns this close are drift
    # Upstream model ids ops chose not to add to the catalog: reported, not alarmed.
    acknowledged_models: tuple[str, ...] = ()


class MonitoringSettings(_Settings):
    alarm_topic_arn: str | None = Field(default=None, pattern=SNS_TOPIC_ARN.pattern)
    alarm_emails: tuple[str, ...] = ()
    api_5xx_rate_percent: float = Field(default=5.0, gt=0, le=100)
    api_5xx_min_requests: int = Field(default=20, ge=1)  # below this volume the rate is noise
    function_errors_threshold: int = Field(default=1, ge=1)
    throttles_threshold: int = Field(default=1, ge=1)
    job_failures_threshold: int = Field(default=3, ge=1)
    api_4xx_rate_percent: float = Field(default=30.0, gt=0, le=100)
    api_latency_p99_ms: int = Field(default=25_000, ge=100, le=30_000)
    # Denials (bad tokens) are normal; most requests denied is a broken key or issuer.
    authorizer_denial_rate_percent: float = Field(default=50.0, gt=0, le=100)
    authorizer_errors_threshold: int = Field(default=1, ge=1)
    invoke_failures_threshold: int = Field(default=1, ge=1)  # 5xx-type direct-invoke answers
    duration_near_timeout_percent: float = Field(default=90.0, gt=0, le=100)
    concurrency_near_reservation_percent: float = Field(default=80.0, gt=0, le=100)
    provider_error_rate_percent: float = Field(default=20.0, gt=0, le=100)
    provider_min_calls: int = Field(default=10, ge=1)
    cost_per_hour_usd: float = Field(default=50.0, gt=0)
    webhook_failures_threshold: int = Field(default=1, ge=1)
    model_drift_threshold: int = Field(default=1, ge=1)  # drift findings in one daily check
    # Catalog reads that kept the last good catalog, per period: any rejection of a published
    # overlay (re-counted on each re-read while it stays published); unreachable reads above one
    # blip (each container retries a failed read once per catalog.overlay_retry_seconds, so at
    # the default 30 s one busy container counts up to 10 in a 5-minute period).
    catalog_overlay_rejected_threshold: int = Field(default=1, ge=1)
    catalog_overlay_unreachable_threshold: int = Field(default=5, ge=1)
    # Requests served a provider key past its max age because its secret could not be read.
    provider_key_stale_threshold: int = Field(default=1, ge=1)
    # p90 of Lambda's Restore Duration per period (SnapStart functions): the run step's cold-start
    # targets hold in AWS only below the margin docs/performance.md measured — 340 ms against the
    # openai SDK (500 ms against LiteLLM). The request path has no cold target of its own; it
    # gets the same default. A signal to investigate, not a page.
    job_run_restore_p90_ms: int = Field(default=340, ge=10, le=10_000)
    generation_restore_p90_ms: int = Field(default=340, ge=10, le=10_000)
    period_minutes: int = Field(default=5, ge=1, le=60)
    evaluation_periods: int = Field(default=1, ge=1, le=10)
    # A stage that must not alarm into the void: it needs alarm_emails or alarm_topic_arn.
    require_subscriber: bool = False

    @model_validator(mode="after")
    def _emails_are_emails(self) -> Self:
        bad = [e for e in self.alarm_emails if not EMAIL.match(e)]
        if bad:
            raise ValueError(f"not an email address: {', '.join(bad)}")
        if self.alarm_topic_arn and self.alarm_emails:
            raise ValueError("subscribe emails to the existing alarm topic, not here")
        if self.require_subscriber and not (self.alarm_emails or self.alarm_topic_arn):
            raise ValueError("this stage requires alarm_emails or alarm_topic_arn")
        return self


class StageSettings(_Settings):
    """Everything that differs between stages. ``name`` comes from the key in ``stages``."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,19}$")
    account: str | None = Field(default=None, pattern=r"^\d{12}$")
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    log_retention_days: int = 30
    # provider name → complete ARN of an existing secret {"api_key": "…"}; others are created.
    provider_secret_arns: dict[str, str] = Field(default_factory=dict)
    jwt: JwtSettings = JwtSettings()
    image_url: ImageUrlSettings = ImageUrlSettings()
    functions: FunctionsSettings = FunctionsSettings()
    api: ApiSettings = ApiSettings()
    storage: StorageSettings = StorageSettings()
    jobs: JobsSettings = JobsSettings()
    models_check: ModelsCheckSettings = ModelsCheckSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    limits: LimitsSettings = LimitsSettings()
    catalog: CatalogSettings = CatalogSettings()
    deploy: DeploySettings = DeploySettings()
    edge: EdgeSettings = EdgeSettings()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        from infra.service_code import PROVIDERS

        unknown = sorted(set(self.provider_secret_arns) - set(PROVIDERS))
        if unknown:
            raise ValueError(
                f"provider_secret_arns: unknown provider(s) {unknown}; known: {list(PROVIDERS)}"
            )
        bad = [a for a in self.provider_secret_arns.values() if not SECRET_COMPLETE_ARN.match(a)]
        if bad:
            raise ValueError(f"provider_secret_arns: not a complete secret ARN: {bad}")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ValueError(
                f"log_retention_days must be one of {', '.join(map(str, LOG_RETENTION_DAYS))}"
            )
        # A direct invoke waits for the whole job, up to its deadline.
        budget = self.jobs.max_budget_seconds
        needed = budget + JOB_FINALIZE_GRACE_SECONDS + INVOKE_TIMEOUT_MARGIN_SECONDS
        if self.functions.generation.timeout_seconds < needed:
            raise ValueError(
                "functions.generation.timeout_seconds must exceed jobs.max_budget_seconds by "
                f"{JOB_FINALIZE_GRACE_SECONDS + INVOKE_TIMEOUT_MARGIN_SECONDS} s "
                f"(at least {needed}): a direct invoke waits for the job's deadline"
            )
        # The run task makes the provider call for the whole budget, then stores the images.
        if self.functions.job_run.timeout_seconds < budget + INVOKE_TIMEOUT_MARGIN_SECONDS:
            raise ValueError(
                "functions.job_run.timeout_seconds must exceed jobs.max_budget_seconds by "
                f"{INVOKE_TIMEOUT_MARGIN_SECONDS} s (at least "
                f"{budget + INVOKE_TIMEOUT_MARGIN_SECONDS}): the worker waits up to the budget"
            )
        if self.functions.snap_start and self.region in SNAPSTART_UNAVAILABLE_REGIONS:
            raise ValueError(
                f"functions.snap_start: Lambda SnapStart is not available in {self.region} "
                f"({SNAPSTART_UNAVAILABLE_REGIONS[self.region]}); set functions.snap_start "
                "to false for this stage"
            )
        edge = self.edge
        if (edge.web_acl_arn or edge.rate_limit_per_5_minutes) and (
            self.image_url.mode != "cloudfront"
        ):
            raise ValueError("edge settings protect the CloudFront distribution: cloudfront mode")
        if edge.creates_web_acl and not self.region:
            raise ValueError(
                "edge.rate_limit_per_5_minutes creates a web ACL in us-east-1, referenced across "
                "regions: set the stage's region (or give edge.web_acl_arn)"
            )
        return self

    @property
    def stack_name(self) -> str:
        return f"ImageService-{self.name}"

    @property
    def resource_prefix(self) -> str:
        return f"{SERVICE_NAME}-{self.name}"

    @property
    def catalog_overlay_parameter(self) -> str:
        return self.catalog.overlay_parameter or f"/{self.resource_prefix}/catalog-overlay"


def load_stage_settings(context: Mapping[str, Any], stage: str | None = None) -> StageSettings:
    """The selected stage's settings, validated; ``SettingsError`` names what is wrong."""
    stage = stage or context.get(STAGE_CONTEXT_KEY)
    stages = context.get(STAGES_CONTEXT_KEY)
    if not isinstance(stages, Mapping) or not stages:
        raise SettingsError(f'cdk.json context has no "{STAGES_CONTEXT_KEY}" object')
    if not stage:
        raise SettingsError(f"no stage selected: pass -c {STAGE_CONTEXT_KEY}=<{'|'.join(stages)}>")
    if stage not in stages:
        raise SettingsError(
            f"unknown stage {stage!r}; cdk.json defines: {', '.join(sorted(stages))}"
        )
    raw = stages[stage]
    if not isinstance(raw, Mapping):
        raise SettingsError(f"stages.{stage} must be an object")
    try:
        return StageSettings.model_validate({**raw, "name": stage})
    except ValidationError as exc:
        problems = "; ".join(
            f"stages.{stage}{''.join(_path(e['loc']))}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(f"invalid settings for stage {stage!r}: {problems}") from None


def _path(loc: tuple[int | str, ...]) -> list[str]:
    return [f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc]
