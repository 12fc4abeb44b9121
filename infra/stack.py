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
from infra.constructs.flux_workflow import FluxWorkflow
from infra.constructs.functions import ServiceFunctions
from infra.constructs.monitoring import ServiceMonitoring
from infra.constructs.secrets import ServiceSecrets
from infra.constructs.storage import ImageStorage
from infra.settings import SERVICE_NAME, StageSettings


class ImageServiceStack(Stack):
    def __init__(
        self,
        scope: Construct,
        *,
        settings: StageSettings,
        assets: LambdaAssets,
    ) -> None:
        super().__init__(
            scope,
            settings.stack_name,
            description=f"Image generation service ({settings.name})",
            env=Environment(account=settings.account, region=settings.region),
            tags={"service": SERVICE_NAME, "stage": settings.name},
        )

        secrets = ServiceSecrets(self, "Secrets", settings=settings)
        storage = ImageStorage(self, "Storage", settings=settings)
        functions = ServiceFunctions(
            self, "Functions", settings=settings, assets=assets, storage=storage, secrets=secrets
        )
        flux = FluxWorkflow(
            self,
            "FluxWorkflow",
            settings=settings,
            tasks=functions.flux_tasks,
            started_by=functions.generation,
        )
        api = ImageApi(
            self,
            "Api",
            settings=settings,
            authorizer_function=functions.authorizer,
            generation_function=functions.generation,
        )
        monitoring = ServiceMonitoring(
            self,
            "Monitoring",
            settings=settings,
            api=api,
            authorizer=functions.authorizer,
            generation=functions.generation,
            functions=functions.all,
            flux_state_machine=flux.state_machine,
        )

        outputs = {
            "ApiUrl": (api.url, "Base URL of the HTTP API"),
            "ImageBucketName": (storage.bucket.bucket_name, "Bucket of images and job records"),
            "FluxStateMachineArn": (flux.state_machine.state_machine_arn, "Flux workflow"),
            "GenerationFunctionName": (
                functions.generation.function_name,
                "lambda:Invoke this function for tool-shaped results (no 30 s API limit)",
            ),
            "GenerationFunctionArn": (functions.generation.function_arn, "Generation function"),
            "InvokeGenerationPolicyArn": (
                functions.invoke_generation_policy.managed_policy_arn,
                "Attach to a caller's role to allow invoking the generation function",
            ),
            "AuthorizerFunctionName": (functions.authorizer.function_name, "JWT authorizer"),
            "ProviderSecretArn": (secrets.provider_keys.secret_arn, "Provider API keys (JSON)"),
            "AlarmTopicArn": (monitoring.topic.topic_arn, "Alarm notifications"),
            **{
                f"Flux{name.title().replace('_', '')}FunctionName": (
                    fn.function_name,
                    f"Flux {name} task",
                )
                for name, fn in functions.flux_tasks.items()
            },
        }
        if secrets.jwt_secret is not None:
            outputs["JwtSecretArn"] = (secrets.jwt_secret.secret_arn, "HS256 key for bearer JWTs")
        if storage.cdn_domain:
            outputs["ImageCdnDomain"] = (storage.cdn_domain, "Stable image URLs (CloudFront)")
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)
