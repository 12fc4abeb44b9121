"""Lambda functions and layers: the authorizer, generation, health, the five job tasks, and
the daily model catalog check.

Every function runs on arm64 and ``RUNTIME``, with its own log group (retention per stage),
its own role holding only what that function does, memory, timeout and reserved concurrency
from the stage settings, and a published version behind the alias ``live`` — what the API,
the workflow and other services call, so that a deploy can shift traffic (and roll back).
Where the stage turns SnapStart on (``functions.snap_start``), the functions whose cold start
is heavy and on a generation's path — generation, the job's run and store tasks — restore each
published version from a snapshot of its initialised container.
Layers: the function's own third-party dependencies (built by ``infra/bundling.py``: the
authorizer's hold pyjwt and cryptography, the generation function's Powertools, pydantic and
httpx), the shared ``image_common`` code, and — for every function that reads a secret — the
AWS Parameters and Secrets extension, which serves it over localhost without boto3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import Annotations, AssetHashType, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.bundling import ASSET_EXCLUDES, LambdaAssets
from infra.constructs.job_table import JobTable
from infra.constructs.secrets import ServiceSecrets
from infra.constructs.storage import IMAGES_PREFIX, JOBS_PREFIX, ImageStorage
from infra.constructs.usage import UsageTable
from infra.log_retention import retention
from infra.nag import acknowledge
from infra.service_code import MODEL_LIST_PROVIDERS, PROVIDERS, metric_names
from infra.settings import INVOKE_TIMEOUT_MARGIN_SECONDS, FunctionSizing, StageSettings

RUNTIME = lambda_.Runtime.PYTHON_3_14  # infra/bundling.py builds the layer for the same version
ARCHITECTURE = lambda_.Architecture.ARM_64
PARAMS_AND_SECRETS_VERSION = lambda_.ParamsAndSecretsVersions.V1_0_103
# How long the extension serves a secret from its cache (a rotation reaches it within this).
SECRET_CACHE_TTL = Duration.minutes(5)
LIVE_ALIAS = "live"
FLUX = "flux"  # the one submit/poll provider: its key is all the poll task needs
# image_service.usage: admission reads the customer's limits (GetItem), counts the minute
# (UpdateItem), reserves in a transaction (UpdateItem, PutItem); GET /image/usage reads
# (GetItem, Query); settling a charge is one transaction of updates.
ADMITS_AND_SHOWS_USAGE = ("GetItem", "PutItem", "Query", "UpdateItem")
SETTLES_USAGE = ("UpdateItem",)
# image_service.job_store: the generation function creates a job (PutItem: a transaction of
# the record and its idempotency key), reads jobs and keys (GetItem), marks a job failed when
# its execution cannot start (UpdateItem); the task functions read and advance a job (GetItem,
# UpdateItem) and never create one.
STARTS_JOBS = ("GetItem", "PutItem", "UpdateItem")
ADVANCES_JOBS = ("GetItem", "UpdateItem")
# With JSON logs Lambda drops lines below the function's application log level (INFO unless
# set), whatever level the code logs at: the stage's level goes to both.
APPLICATION_LOG_LEVELS = {
    "DEBUG": lambda_.ApplicationLogLevel.DEBUG,
    "INFO": lambda_.ApplicationLogLevel.INFO,
    "WARNING": lambda_.ApplicationLogLevel.WARN,
    "ERROR": lambda_.ApplicationLogLevel.ERROR,
}

X_RAY_REASON = (
    "X-Ray's PutTraceSegments and PutTelemetryRecords have no resource-level permissions; "
    "'*' is the only resource AWS accepts for them."
)


@dataclass(frozen=True)
class _Spec:
    """One function: what runs, how big, which layers, and what it may touch."""

    id: str
    description: str
    handler: str
    sizing: FunctionSizing
    reserved_concurrency: int | None
    read_prefixes: tuple[str, ...] = ()
    # Read prefixes where a missing key is the caller's error (404), not a storage failure:
    # S3 tells missing from forbidden only to a role that may list there (s3:ListBucket).
    not_found_prefixes: tuple[str, ...] = ()
    write_prefixes: tuple[str, ...] = ()
    # Where it may delete: the images a request stored before it failed part-way (no orphans).
    delete_prefixes: tuple[str, ...] = ()
    # Keys it hands out as presigned GET URLs (presigned mode): S3 checks the signer's GetObject.
    presign_prefixes: tuple[str, ...] = ()
    reads_provider_keys: tuple[str, ...] = ()  # provider names
    reads_jwt_secret: bool = False
    usage_actions: tuple[str, ...] = ()  # DynamoDB item actions on the usage table
    reads_webhook_secret: bool = False
    job_actions: tuple[str, ...] = ()  # DynamoDB item actions on the jobs table
    lists_jobs: bool = False  # the per-customer index (GET /image/jobs)
    # DeleteItem of idempotency keys only: the OpenAI surface frees its derived key once the
    # job's answer was delivered (an identical request later is a new job).
    frees_idempotency_keys: bool = False
    reads_catalog: bool = False  # the model catalog's ops overlay (an SSM parameter)
    # SnapStart on its published versions, where the stage turns it on: for heavy cold starts
    # on a generation's path. Not the authorizer: it reads its secret through the extension,
    # whose callers prove themselves with AWS_SESSION_TOKEN — not given to SnapStart functions.
    snap_start: bool = False
    environment: dict[str, str] = field(default_factory=dict)


class ServiceFunctions(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StageSettings,
        assets: LambdaAssets,
        storage: ImageStorage,
        secrets: ServiceSecrets,
        usage: UsageTable,
        job_table: JobTable,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._storage = storage
        self._usage = usage
        self._job_table = job_table
        self._secrets = secrets
        self._log_retention = retention(settings.log_retention_days)

        self.dependency_layers = {
            name: lambda_.LayerVersion(
                self,
                f"{name.capitalize()}DependenciesLayer",
                code=lambda_.Code.from_asset(
                    str(folder),
                    exclude=list(ASSET_EXCLUDES),
                    asset_hash=assets.dependency_layer_hashes.get(name),
                    asset_hash_type=(
                        AssetHashType.CUSTOM if name in assets.dependency_layer_hashes else None
                    ),
                ),
                compatible_runtimes=[RUNTIME],
                compatible_architectures=[ARCHITECTURE],
                description=f"Third-party packages of the {name} function "
                f"(functions/{name}/requirements.txt, pinned by constraints.txt)",
            )
            for name, folder in assets.dependency_layers.items()
        }
        self.common_layer = lambda_.LayerVersion(
            self,
            "CommonLayer",
            code=lambda_.Code.from_asset(str(assets.common_layer), exclude=list(ASSET_EXCLUDES)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="Shared service code: image_common (errors, envelope, settings, secrets)",
        )
        authorizer_code = lambda_.Code.from_asset(
            str(assets.authorizer_code), exclude=list(ASSET_EXCLUDES)
        )
        generation_code = lambda_.Code.from_asset(
            str(assets.generation_code), exclude=list(ASSET_EXCLUDES)
        )
        authorizer_layers = [self.dependency_layers["authorizer"], self.common_layer]
        service_layers = [self.dependency_layers["generation"], self.common_layer]

        sizes = settings.functions
        reserved = sizes.reserved_concurrency
        self.aliases: dict[str, lambda_.Alias] = {}
        self.named: dict[str, lambda_.Function] = {}  # construct id → function
        self.snap_started: set[str] = set()  # construct ids of the SnapStart functions
        self.authorizer = self._function(
            _Spec(
                id="Authorizer",
                description="Verifies bearer JWTs for the HTTP API (simple responses)",
                handler="authorizer.handler",
                sizing=sizes.authorizer,
                reserved_concurrency=reserved.authorizer,
                reads_jwt_secret=True,
                environment=self._authorizer_environment(),
            ),
            code=authorizer_code,
            # image_common: the metric names, and the secrets extension client (stdlib only)
            layers=authorizer_layers,
        )
        self.health = self._function(
            _Spec(
                id="Health",
                description="GET /health: answers a constant (no layers, no service code)",
                handler="health.handler",
                sizing=sizes.health,
                reserved_concurrency=reserved.health,
            ),
            code=lambda_.Code.from_asset(str(assets.health_code), exclude=list(ASSET_EXCLUDES)),
            layers=[],
        )

        service_env = self._service_environment(storage) | usage.environment(settings)
        self.generation = self._function(
            _Spec(
                id="Generation",
                description="Image generation: HTTP API (payload 2.0) and direct lambda:Invoke",
                handler="generation.handler",
                sizing=sizes.generation,
                reserved_concurrency=reserved.generation,
                # customers/: input images by key (a key that names nothing is the caller's
                # 400), and presigned URLs of stored images; jobs/: the job's input images
                # (written) and an inline answer's image (read).
                # No provider key: the job's run task calls the provider, not the request.
                read_prefixes=(IMAGES_PREFIX, JOBS_PREFIX),
                not_found_prefixes=(IMAGES_PREFIX,),
                write_prefixes=(JOBS_PREFIX,),
                usage_actions=ADMITS_AND_SHOWS_USAGE,
                job_actions=STARTS_JOBS,
                lists_jobs=True,
                frees_idempotency_keys=True,
                reads_catalog=True,
                snap_start=True,  # every request's path, behind the API and direct invokes
                environment={
                    **service_env,
                    "INVOKE_PROVIDER_TIMEOUT_SECONDS": str(
                        sizes.generation.timeout_seconds - INVOKE_TIMEOUT_MARGIN_SECONDS
                    ),
                    "JOB_WAIT_SECONDS": str(settings.jobs.wait_seconds),
                },
            ),
            code=generation_code,
            layers=service_layers,
        )

        # Every task that can end a job settles its usage charge (actual cost, or released).
        job_task_specs = {
            "run": _Spec(
                id="JobRun",
                description="Job: claim, call the provider (or submit its task), store the images",
                handler="job_tasks.run",
                sizing=sizes.job_run,
                reserved_concurrency=reserved.job_run,
                # The job's input images: one that cannot be read fails the job, found or not.
                read_prefixes=(JOBS_PREFIX,),
                # Stored images' keys go into the record (readers sign the URLs): no read.
                write_prefixes=(IMAGES_PREFIX, JOBS_PREFIX),
                delete_prefixes=(IMAGES_PREFIX,),  # a part-way failure removes what it stored
                reads_provider_keys=tuple(PROVIDERS),
                usage_actions=SETTLES_USAGE,
                job_actions=ADVANCES_JOBS,
                reads_catalog=True,  # the job's model spec, from the catalog in force
                # Under SnapStart its code reads the keys from Secrets Manager's API (no
                # AWS_SESSION_TOKEN to show the extension); an invoke of $LATEST still reads
                # them through the extension. The same GetSecretValue grants serve both.
                snap_start=True,
                environment=service_env,
            ),
            "poll": _Spec(
                id="JobPoll",
                description="Job: poll a submitted task's status",
                handler="job_tasks.poll",
                sizing=sizes.job_poll,
                reserved_concurrency=reserved.job_poll,
                reads_provider_keys=(FLUX,),
                usage_actions=SETTLES_USAGE,
                job_actions=ADVANCES_JOBS,
                environment=service_env,
            ),
            "store": _Spec(
                id="JobStore",
                description="Job: download a submitted task's image, store it, finish the record",
                handler="job_tasks.store",
                sizing=sizes.job_store,
                reserved_concurrency=reserved.job_store,
                write_prefixes=(IMAGES_PREFIX, JOBS_PREFIX),
                delete_prefixes=(IMAGES_PREFIX,),
                usage_actions=SETTLES_USAGE,
                job_actions=ADVANCES_JOBS,  # no provider key: the result URL needs none
                reads_catalog=True,  # the job's model spec, from the catalog in force
                snap_start=True,  # downloads and stores a submitted task's image (1 GB)
                environment=service_env,
            ),
            "record_failure": _Spec(
                id="JobRecordFailure",
                description="Job: write the job's final failed state",
                handler="job_tasks.record_failure",
                sizing=sizes.job_record_failure,
                reserved_concurrency=reserved.job_record_failure,
                usage_actions=SETTLES_USAGE,
                job_actions=ADVANCES_JOBS,
                environment=service_env,
            ),
            "notify": _Spec(
                id="JobNotify",
                description="Job: deliver the signed webhook of a finished job",
                handler="job_tasks.notify",
                sizing=sizes.job_notify,
                reserved_concurrency=reserved.job_notify,
                # jobs/: an inline answer's image, read into the payload; customers/: stored
                # images' presigned URLs (signed only: none in cloudfront mode).
                read_prefixes=(JOBS_PREFIX,),
                presign_prefixes=(IMAGES_PREFIX,),
                reads_webhook_secret=True,
                job_actions=ADVANCES_JOBS,  # the webhook's delivery state
                environment={
                    **service_env,
                    "WEBHOOK_SECRET_ARN": secrets.webhook_secret.secret_arn,
                },
            ),
        }
        # Other services attach this to their role to call generation directly (docs/deploy.md).
        self.invoke_generation_policy = iam.ManagedPolicy(
            self,
            "InvokeGenerationPolicy",
            description="Allows a direct lambda:Invoke of the image generation function",
            statements=[
                iam.PolicyStatement(
                    actions=["lambda:InvokeFunction"],
                    resources=[self.aliases["Generation"].function_arn],
                )
            ],
        )

        self.job_tasks: dict[str, lambda_.Function] = {
            name: self._function(spec, code=generation_code, layers=service_layers)
            for name, spec in job_task_specs.items()
        }

        # Same code as generation (the catalog, the providers' endpoints), its own entry point:
        # generation's cold path never imports it. Keys: the providers that publish a list.
        check = settings.models_check
        self.models_check = self._function(
            _Spec(
                id="ModelsCheck",
                description="Daily: compares the model catalog with the providers' model lists",
                handler="models_check.handler",
                sizing=sizes.models_check,
                reserved_concurrency=reserved.models_check,
                reads_provider_keys=MODEL_LIST_PROVIDERS,
                reads_catalog=True,  # the catalog in force, overlay included, is what drifts
                environment={
                    "MODELS_CHECK_WARNING_DAYS": str(check.warning_days),
                    "MODELS_CHECK_ACKNOWLEDGED": ",".join(check.acknowledged_models),
                },
            ),
            code=generation_code,
            layers=service_layers,
        )

    @property
    def all(self) -> list[lambda_.Function]:
        return [
            self.authorizer,
            self.generation,
            self.health,
            *self.job_tasks.values(),
            self.models_check,
        ]

    def live(self, function: lambda_.Function) -> lambda_.Alias:
        """The ``live`` alias of one of these functions: what callers invoke."""
        return self.aliases[function.node.scope.node.id]

    @property
    def job_task_aliases(self) -> dict[str, lambda_.Alias]:
        return {name: self.live(fn) for name, fn in self.job_tasks.items()}

    @property
    def snap_started_job_tasks(self) -> frozenset[str]:
        """The job tasks (``run``, ``store``, …) whose versions restore from a snapshot: the
        workflow retries their invokes while a snapshot is being re-created."""
        return frozenset(
            name
            for name, fn in self.job_tasks.items()
            if fn.node.scope.node.id in self.snap_started
        )

    def _function(
        self,
        spec: _Spec,
        *,
        code: lambda_.Code,
        layers: list[lambda_.ILayerVersion],
    ) -> lambda_.Function:
        scope = Construct(self, spec.id)
        snap_start = spec.snap_start and self._settings.functions.snap_start
        log_group = logs.LogGroup(
            scope,
            "Logs",
            retention=self._log_retention,
            removal_policy=RemovalPolicy.DESTROY,  # logs follow the function, not the data
        )
        role = iam.Role(
            scope,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{self._settings.resource_prefix} {spec.id} function",
        )
        # Instead of AWSLambdaBasicExecutionRole (any log group): write to its own group only.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        function = lambda_.Function(
            scope,
            "Function",
            description=spec.description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=spec.handler,
            code=code,
            layers=layers,
            memory_size=spec.sizing.memory_mb,
            timeout=Duration.seconds(spec.sizing.timeout_seconds),
            role=role,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=APPLICATION_LOG_LEVELS[self._settings.functions.log_level],
            tracing=lambda_.Tracing.ACTIVE if self._settings.functions.tracing else None,
            environment={
                **self._powertools_environment(),
                **spec.environment,
                **self._provider_key_environment(spec.reads_provider_keys),
                **(self._catalog_environment() if spec.reads_catalog else {}),
            },
            # The extension stays on a SnapStart function: an invoke of $LATEST still uses it.
            params_and_secrets=self._secrets_extension(spec),
            # No provisioned concurrency, EFS or ephemeral storage over 512 MB may join it
            # (SnapStart refuses them; a test checks the template).
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
            recursive_loop=lambda_.RecursiveLoop.TERMINATE,
            # Nothing here is built for asynchronous invokes; a retry would bill a second image.
            retry_attempts=0,
            reserved_concurrent_executions=spec.reserved_concurrency,
        )
        self.named[spec.id] = function
        if snap_start:
            self.snap_started.add(spec.id)
            # CDK warns on every SnapStart function that only published versions restore.
            Annotations.of(function).acknowledge_warning(
                "@aws-cdk/aws-lambda:snapStartRequirePublish",
                "Its current_version is published below, behind the live alias every caller "
                "invokes: SnapStart applies to that version.",
            )
        self.aliases[spec.id] = lambda_.Alias(
            scope, "Live", alias_name=LIVE_ALIAS, version=function.current_version
        )
        presign = spec.presign_prefixes if self._settings.image_url.mode == "presigned" else ()
        self._storage.grant_object_access(
            role,
            read=spec.read_prefixes,
            write=spec.write_prefixes,
            delete=spec.delete_prefixes,
            presign=presign,
            not_found=spec.not_found_prefixes,
        )
        self._storage.acknowledge_prefix_wildcards(
            role,
            sorted(
                set(spec.read_prefixes)
                | set(spec.write_prefixes)
                | set(spec.delete_prefixes)
                | set(presign)
            ),
        )
        self._secrets.allow_reading_provider_keys(role, spec.reads_provider_keys)
        if spec.reads_catalog:
            self._allow_reading_catalog_overlay(role)
        self._usage.grant(role, spec.usage_actions)
        if spec.reads_jwt_secret:
            self._secrets.allow_reading_jwt_secret(role)
        if spec.reads_webhook_secret:
            self._secrets.allow_reading_webhook_secret(role)
        self._job_table.grant(
            role,
            spec.job_actions,
            list_jobs=spec.lists_jobs,
            free_idempotency_keys=spec.frees_idempotency_keys,
        )
        if self._settings.functions.tracing:
            acknowledge(role, "IAM5", X_RAY_REASON, finding="Resource::*")
        return function

    def _powertools_environment(self) -> dict[str, str]:
        return {
            "POWERTOOLS_SERVICE_NAME": self._settings.resource_prefix,
            "POWERTOOLS_METRICS_NAMESPACE": metric_names.NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": self._settings.functions.log_level,
        }

    def _service_environment(self, storage: ImageStorage) -> dict[str, str]:
        settings = self._settings
        env = {
            "IMAGE_BUCKET": storage.bucket.bucket_name,
            "IMAGE_URL_MODE": settings.image_url.mode,
            "PRESIGN_EXPIRES_SECONDS": str(settings.image_url.presign_expires_seconds),
            "PROVIDER_TIMEOUT_SECONDS": str(settings.functions.provider_timeout_seconds),
            "ADMIN_SCOPE": settings.functions.admin_scope,
            "JOBS_TABLE": self._job_table.table.table_name,
            "JOB_MAX_BUDGET_SECONDS": str(settings.jobs.max_budget_seconds),
            "JOB_POLL_INTERVAL_SECONDS": str(settings.jobs.interval_seconds),
            "JOB_RECORD_TTL_DAYS": str(settings.storage.job_record_expiration_days),
            "WEBHOOK_RETRY_SCHEDULE": ",".join(map(str, settings.jobs.webhook_retry_schedule)),
        }
        if storage.cdn_domain:
            env["IMAGE_CDN_DOMAIN"] = storage.cdn_domain
        if settings.functions.enabled_retired_models:
            env["ENABLED_RETIRED_MODELS"] = ",".join(settings.functions.enabled_retired_models)
        return env

    def _catalog_environment(self) -> dict[str, str]:
        catalog = self._settings.catalog
        return {
            "CATALOG_OVERLAY_PARAMETER": self._settings.catalog_overlay_parameter,
            "CATALOG_OVERLAY_MAX_AGE_SECONDS": str(catalog.overlay_max_age_seconds),
            "CATALOG_OVERLAY_RETRY_SECONDS": str(catalog.overlay_retry_seconds),
        }

    def _allow_reading_catalog_overlay(self, role: iam.Role) -> None:
        """``ssm:GetParameter`` on the overlay parameter only (a String: no KMS key needed)."""
        parameter_arn = Stack.of(self).format_arn(
            service="ssm",
            resource="parameter",
            resource_name=self._settings.catalog_overlay_parameter.lstrip("/"),
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[parameter_arn])
        )

    def _provider_key_environment(self, providers: tuple[str, ...]) -> dict[str, str]:
        """Where each provider key the function may read lives — and only those."""
        return {
            PROVIDERS[name].secret_arn_variable: self._secrets.provider_keys[name].secret_arn
            for name in providers
        }

    def _authorizer_environment(self) -> dict[str, str]:
        jwt = self._settings.jwt
        env = {
            "JWT_ALGORITHMS": ",".join(jwt.effective_algorithms),
            "JWT_CUSTOMER_CLAIM": jwt.customer_claim,
            "JWT_LEEWAY_SECONDS": str(jwt.leeway_seconds),
            "LOG_LEVEL": self._settings.functions.log_level,  # the authorizer has no Powertools
        }
        if jwt.mode == "jwks":
            env |= {
                "JWT_JWKS_URL": str(jwt.jwks_url),
                "JWT_ISSUER": str(jwt.issuer),
                "JWT_AUDIENCE": ",".join(jwt.audience),
            }
        else:
            assert self._secrets.jwt_secret is not None
            env["JWT_SECRET_ARN"] = self._secrets.jwt_secret.secret_arn
        return env

    def _secrets_extension(self, spec: _Spec) -> lambda_.ParamsAndSecretsLayerVersion | None:
        """The Parameters and Secrets extension, for every function that reads a secret: it
        serves the secret over localhost, so the function needs no boto3 to read it."""
        reads_jwt_secret = spec.reads_jwt_secret and self._settings.jwt.mode == "secret"
        if not (spec.reads_provider_keys or reads_jwt_secret or spec.reads_webhook_secret):
            return None
        return lambda_.ParamsAndSecretsLayerVersion.from_version(
            PARAMS_AND_SECRETS_VERSION,
            cache_enabled=True,
            secrets_manager_ttl=SECRET_CACHE_TTL,
        )
