"""The image generation service: a table of contents of its capabilities.

Each capability is one construct (``infra/constructs/``) taking the others' outputs as
arguments; this stack only wires them together and publishes what other services and ops
need as outputs.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Environment, Stack
from constructs import Construct

from infra.bundling import LambdaAssets
from infra.constructs.api import ImageApi
from infra.constructs.deployment import GenerationDeployment
from infra.constructs.functions import ServiceFunctions
from infra.constructs.job_table import JobTable
from infra.constructs.job_workflow import JobWorkflow
from infra.constructs.models_check import ModelsCheckSchedule
from infra.constructs.monitoring import ServiceMonitoring
from infra.constructs.secrets import ServiceSecrets
from infra.constructs.storage import ImageStorage
from infra.constructs.usage import UsageTable
from infra.service_code import PROVIDERS
from infra.settings import SERVICE_NAME, StageSettings


class ImageServiceStack(Stack):
    def __init__(
        self,
        scope: Construct,
        *,
        settings: StageSettings,
        assets: LambdaAssets,
        web_acl_arn: str | None = None,
        cross_region_references: bool = False,
    ) -> None:
        super().__init__(
            scope,
            settings.stack_name,
            description=f"Image generation service ({settings.name})",
            env=Environment(account=settings.account, region=settings.region),
            tags={"service": SERVICE_NAME, "stage": settings.name},
            termination_protection=settings.deploy.termination_protection,
            cross_region_references=cross_region_references,
        )

        secrets = ServiceSecrets(self, "Secrets", settings=settings)
        storage = ImageStorage(self, "Storage", settings=settings, web_acl_arn=web_acl_arn)
        usage = UsageTable(self, "Usage", settings=settings)
        job_table = JobTable(self, "Jobs", settings=settings)
        functions = ServiceFunctions(
            self,
            "Functions",
            settings=settings,
            assets=assets,
            storage=storage,
            secrets=secrets,
            usage=usage,
            job_table=job_table,
        )
        workflow = JobWorkflow(
            self,
            "JobWorkflow",
            settings=settings,
            tasks=functions.job_task_aliases,
            started_by=functions.generation,
            snap_started=functions.snap_started_job_tasks,
        )
        api = ImageApi(
            self,
            "Api",
            settings=settings,
            authorizer_function=functions.live(functions.authorizer),
            generation_function=functions.live(functions.generation),
            health_function=functions.live(functions.health),
        )
        ModelsCheckSchedule(
            self, "ModelsCheck", settings=settings, function=functions.live(functions.models_check)
        )
        monitoring = ServiceMonitoring(
            self,
            "Monitoring",
            settings=settings,
            api=api,
            authorizer=functions.authorizer,
            generation=functions.generation,
            functions=functions.named,
            job_state_machine=workflow.state_machine,
            models_check=functions.models_check,
            snap_started=frozenset(functions.snap_started),
        )
        GenerationDeployment(
            self,
            "GenerationDeployment",
            settings=settings,
            alias=functions.live(functions.generation),
            rollback_alarms=monitoring.rollback_alarms,
        )

        outputs = {
            "ApiUrl": (api.url, "Base URL of the HTTP API"),
            "ImageBucketName": (storage.bucket.bucket_name, "Bucket of images"),
            "UsageTableName": (usage.table.table_name, "Per-customer usage; limit overrides"),
            "JobsTableName": (job_table.table.table_name, "Job records and idempotency keys"),
            "JobStateMachineArn": (workflow.state_machine.state_machine_arn, "Job workflow"),
            "WebhookSecretArn": (secrets.webhook_secret.secret_arn, "Webhook signing secret"),
            "GenerationFunctionName": (
                functions.generation.function_name,
                "lambda:Invoke this function for tool-shaped results (no 30 s API limit)",
            ),
            "GenerationFunctionArn": (functions.generation.function_arn, "Generation function"),
            "GenerationAliasArn": (
                functions.live(functions.generation).function_arn,
                "Invoke this (the live alias): deploys shift it, with rollback",
            ),
            "HealthFunctionName": (functions.health.function_name, "GET /health"),
            "DashboardName": (monitoring.dashboard.dashboard_name, "Operations dashboard"),
            "InvokeGenerationPolicyArn": (
                functions.invoke_generation_policy.managed_policy_arn,
                "Attach to a caller's role to allow invoking the generation function",
            ),
            "AuthorizerFunctionName": (functions.authorizer.function_name, "JWT authorizer"),
            "ModelsCheckFunctionName": (
                functions.models_check.function_name,
                "Daily model catalog check (invoke it by hand for a report now)",
            ),
            "AlarmTopicArn": (monitoring.topic.topic_arn, "Alarm notifications"),
            **{
                f"Job{name.title().replace('_', '')}FunctionName": (
                    fn.function_name,
                    f"Job {name} task",
                )
                for name, fn in functions.job_tasks.items()
            },
        }
        for provider, secret in secrets.provider_keys.items():
            outputs[f"{PROVIDERS[provider].env_prefix.title()}ApiKeySecretArn"] = (
                secret.secret_arn,
                f'The {provider} API key: put-secret-value {{"api_key": "…"}}',
            )
        if secrets.jwt_secret is not None:
            outputs["JwtSecretArn"] = (secrets.jwt_secret.secret_arn, "HS256 key for bearer JWTs")
        if storage.cdn_domain:
            outputs["ImageCdnDomain"] = (storage.cdn_domain, "Stable image URLs (CloudFront)")
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)
