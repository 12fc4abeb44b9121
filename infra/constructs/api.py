"""API Gateway HTTP API with the Lambda authorizer in front of the generation function.

Routes: ``POST /image/generate``, ``GET /image/jobs``, ``GET /image/jobs/{job_id}``,
``GET /image/models`` and the OpenAI-compatible ``/v1/images/generations``,
``/v1/images/edits``, ``/v1/models`` and ``/v1/models/{model}`` (all behind the authorizer,
served by the generation function) and ``GET /health`` (open, served by its own tiny function).
The authorizer uses payload format 2.0 with simple responses, and its result is cached per
``Authorization`` header value. Every integration calls a function's
``live`` alias. The ``$default`` stage throttles (per route where the stage says so) and writes
JSON access logs; CORS preflight is answered by API Gateway itself.
"""

from __future__ import annotations

import json

import jsii
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw_v1
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.log_retention import retention
from infra.nag import acknowledge
from infra.settings import SettingsError, StageSettings

AUTHORIZATION_HEADER = "$request.header.Authorization"
# HTTP API integrations may wait at most 29 s (the request as a whole: 30 s).
INTEGRATION_TIMEOUT = Duration.seconds(29)

GENERATION, HEALTH = "generation", "health"
# (method, path, authorized, served by)
ROUTES: tuple[tuple[apigw.HttpMethod, str, bool, str], ...] = (
    (apigw.HttpMethod.POST, "/image/generate", True, GENERATION),
    (apigw.HttpMethod.GET, "/image/jobs", True, GENERATION),
    (apigw.HttpMethod.GET, "/image/jobs/{job_id}", True, GENERATION),
    (apigw.HttpMethod.GET, "/image/models", True, GENERATION),
    (apigw.HttpMethod.GET, "/image/usage", True, GENERATION),
    # The OpenAI-compatible surface (docs/openai-compatible.md): the SDK's api_key is the JWT.
    (apigw.HttpMethod.POST, "/v1/images/generations", True, GENERATION),
    (apigw.HttpMethod.POST, "/v1/images/edits", True, GENERATION),
    (apigw.HttpMethod.GET, "/v1/models", True, GENERATION),
    (apigw.HttpMethod.GET, "/v1/models/{model}", True, GENERATION),
    (apigw.HttpMethod.GET, "/health", False, HEALTH),
)
ROUTE_KEYS = tuple(f"{method.value} {path}" for method, path, _, _ in ROUTES)

# One JSON object per request. Never the Authorization header, the body or the query string.
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "httpMethod": "$context.httpMethod",
    "routeKey": "$context.routeKey",
    "path": "$context.path",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationStatus": "$context.integrationStatus",
    "integrationError": "$context.integrationErrorMessage",
    "authorizerError": "$context.authorizer.error",
    "customerId": "$context.authorizer.customer_id",
}


@jsii.implements(apigw.IAccessLogSettings)
class _JsonAccessLogs:
    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigw.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigw.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw_v1.AccessLogFormat:
        return apigw_v1.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT))


class ImageApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StageSettings,
        authorizer_function: lambda_.IFunction,
        generation_function: lambda_.IFunction,
        health_function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        api_settings = settings.api

        self.authorizer = authorizers.HttpLambdaAuthorizer(
            "JwtAuthorizer",
            authorizer_function,
            authorizer_name="jwt",
            response_types=[authorizers.HttpLambdaResponseType.SIMPLE],
            identity_source=[AUTHORIZATION_HEADER],
            results_cache_ttl=Duration.seconds(api_settings.authorizer_cache_seconds),
        )
        self.http_api = apigw.HttpApi(
            self,
            "HttpApi",
            api_name=settings.resource_prefix,
            description="Image generation service",
            create_default_stage=False,
            cors_preflight=_cors(settings),
        )
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=retention(settings.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.stage = apigw.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(
                rate_limit=api_settings.throttle_rate_limit,
                burst_limit=api_settings.throttle_burst_limit,
            ),
            access_log_settings=_JsonAccessLogs(access_logs),
        )

        targets = {
            GENERATION: integrations.HttpLambdaIntegration(
                "Generation",
                generation_function,
                payload_format_version=apigw.PayloadFormatVersion.VERSION_2_0,
                timeout=INTEGRATION_TIMEOUT,
            ),
            HEALTH: integrations.HttpLambdaIntegration(
                "Health",
                health_function,
                payload_format_version=apigw.PayloadFormatVersion.VERSION_2_0,
                timeout=INTEGRATION_TIMEOUT,
            ),
        }
        for method, path, authorized, target in ROUTES:
            routes = self.http_api.add_routes(
                path=path,
                methods=[method],
                integration=targets[target],
                authorizer=self.authorizer if authorized else apigw.HttpNoneAuthorizer(),
            )
            for route in routes:
                # Route settings name routes by key: they must exist before the stage.
                self.stage.node.add_dependency(route)
                if not authorized:
                    acknowledge(
                        route,
                        "APIG4",
                        "GET /health is the liveness probe for load balancers and uptime "
                        "checks; it answers a constant and touches no customer data.",
                    )
        self._throttle_routes(settings)

    def _throttle_routes(self, settings: StageSettings) -> None:
        """Route-level limits: what a route costs decides how often it may be called."""
        throttles = settings.api.route_throttles
        unknown = sorted(set(throttles) - set(ROUTE_KEYS))
        if unknown:
            raise SettingsError(
                f"api.route_throttles names unknown routes {unknown}; routes: {list(ROUTE_KEYS)}"
            )
        if not throttles:
            return
        stage = self.stage.node.default_child
        stage.route_settings = {
            key: {"ThrottlingRateLimit": t.rate_limit, "ThrottlingBurstLimit": t.burst_limit}
            for key, t in throttles.items()
        }

    @property
    def url(self) -> str:
        return self.stage.url


def _cors(settings: StageSettings) -> apigw.CorsPreflightOptions | None:
    if not settings.api.cors_allowed_origins:
        return None
    return apigw.CorsPreflightOptions(
        allow_origins=list(settings.api.cors_allowed_origins),
        allow_methods=[
            apigw.CorsHttpMethod.GET,
            apigw.CorsHttpMethod.POST,
            apigw.CorsHttpMethod.OPTIONS,
        ],
        allow_headers=["authorization", "content-type"],
        expose_headers=["retry-after"],
        max_age=Duration.seconds(settings.api.cors_max_age_seconds),
    )
