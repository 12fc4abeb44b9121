"""HTTP API: the authorizer's wiring, which routes it guards, throttling, access logs, CORS."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from infra.constructs.api import ACCESS_LOG_FORMAT

AUTHORIZED_ROUTES = {
    "POST /image/generate",
    "GET /image/jobs",
    "GET /image/jobs/{job_id}",
    "GET /image/models",
    "GET /image/usage",
}
OPENAI_COMPATIBLE_ROUTES = {
    "POST /v1/images/generations",
    "POST /v1/images/edits",
    "GET /v1/models",
    "GET /v1/models/{model}",
}
OPEN_ROUTES = {"GET /health"}


def _routes(synth) -> dict[str, dict]:
    return {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in synth.resources("AWS::ApiGatewayV2::Route").values()
    }


def _authorizer(synth) -> tuple[str, dict]:
    (logical_id, resource), *others = synth.resources("AWS::ApiGatewayV2::Authorizer").items()
    assert not others
    return logical_id, resource["Properties"]


def test_authorizer_is_the_lambda_with_payload_2_and_simple_responses(synthesized):
    _, authorizer = _authorizer(synthesized)
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["AuthorizerPayloadFormatVersion"] == "2.0"
    assert authorizer["EnableSimpleResponses"] is True
    uri = json.dumps(authorizer["AuthorizerUri"])
    assert json.dumps({"Ref": synthesized.live_alias_ids()["authorizer.handler"]}) in uri


def test_authorizer_result_is_cached_per_authorization_header(dev, prod):
    for synth, ttl in ((dev, 60), (prod, 60)):
        _, authorizer = _authorizer(synth)
        assert authorizer["IdentitySource"] == ["$request.header.Authorization"]
        assert authorizer["AuthorizerResultTtlInSeconds"] == ttl


def test_exactly_the_service_and_openai_compatible_routes_exist(synthesized):
    assert set(_routes(synthesized)) == AUTHORIZED_ROUTES | OPENAI_COMPATIBLE_ROUTES | OPEN_ROUTES


def test_image_and_openai_compatible_routes_require_the_authorizer_and_health_is_open(synthesized):
    authorizer_id, _ = _authorizer(synthesized)
    for key, route in _routes(synthesized).items():
        if key in AUTHORIZED_ROUTES | OPENAI_COMPATIBLE_ROUTES:
            assert route["AuthorizationType"] == "CUSTOM", key
            assert route["AuthorizerId"] == {"Ref": authorizer_id}, key
        else:
            assert route["AuthorizationType"] == "NONE", key
            assert "AuthorizerId" not in route


def test_image_routes_go_to_generation_and_health_to_its_own_function_live_aliases(
    synthesized,
):
    aliases = synthesized.live_alias_ids()
    integrations = synthesized.resources("AWS::ApiGatewayV2::Integration")
    assert len(integrations) == 2
    target_of = {}
    for logical_id, integration in integrations.items():
        props = integration["Properties"]
        assert (props["IntegrationType"], props["PayloadFormatVersion"]) == ("AWS_PROXY", "2.0")
        assert props["TimeoutInMillis"] == 29000
        (handler,) = [h for h, a in aliases.items() if props["IntegrationUri"] == {"Ref": a}]
        target_of[logical_id] = handler
    for key, route in _routes(synthesized).items():
        integration_id = route["Target"]["Fn::Join"][1][1]["Ref"]
        expected = "health.handler" if key == "GET /health" else "generation.handler"
        assert target_of[integration_id] == expected, key


def test_generate_is_throttled_harder_than_models_and_health(dev, prod):
    for synth in (dev, prod):
        (stage,) = synth.resources("AWS::ApiGatewayV2::Stage").values()
        routes = stage["Properties"]["RouteSettings"]
        default = stage["Properties"]["DefaultRouteSettings"]
        rate = {
            key: routes.get(key, default)["ThrottlingRateLimit"]
            for key in ("POST /image/generate", "GET /image/models", "GET /health")
        }
        assert rate["POST /image/generate"] < rate["GET /image/models"]
        assert rate["POST /image/generate"] < rate["GET /health"]
        # The OpenAI-compatible routes generate too: the same limit, not a way around it.
        for key in ("POST /v1/images/generations", "POST /v1/images/edits"):
            assert routes[key] == routes["POST /image/generate"], key
        for key, throttle in synth.settings.api.route_throttles.items():
            assert routes[key] == {
                "ThrottlingRateLimit": throttle.rate_limit,
                "ThrottlingBurstLimit": throttle.burst_limit,
            }
        # route settings name routes that must exist before the stage does
        route_ids = set(synth.resources("AWS::ApiGatewayV2::Route"))
        (stage_resource,) = synth.resources("AWS::ApiGatewayV2::Stage").values()
        assert route_ids <= set(stage_resource.get("DependsOn", []))


def test_a_throttle_for_an_unknown_route_fails_synth(placeholder_layers, tmp_path):
    from infra.settings import SettingsError
    from tests.infra.conftest import _synthesize

    stage = {
        "api": {"route_throttles": {"POST /image/generat": {"rate_limit": 1, "burst_limit": 1}}}
    }
    with pytest.raises(SettingsError, match="unknown routes"):
        _synthesize("typo", placeholder_layers, tmp_path, extra_stages={"typo": stage})


def test_api_gateway_may_invoke_generation_only_on_its_routes(dev):
    permissions = [p["Properties"] for p in dev.resources("AWS::Lambda::Permission").values()]
    # Besides API Gateway, only the models-check schedule (test_infra_models_check.py).
    assert {p["Principal"] for p in permissions} == {
        "apigateway.amazonaws.com",
        "events.amazonaws.com",
    }
    for permission in (p for p in permissions if p["Principal"] == "apigateway.amazonaws.com"):
        source = json.dumps(permission["SourceArn"])
        assert any(
            part in source for part in ("/*/*/image", "/*/*/v1/", "/*/*/health", "/authorizers/")
        ), source


def test_default_stage_throttles_per_stage_settings(dev, prod):
    for synth in (dev, prod):
        api = synth.settings.api
        synth.template.has_resource_properties(
            "AWS::ApiGatewayV2::Stage",
            {
                "StageName": "$default",
                "AutoDeploy": True,
                "DefaultRouteSettings": {
                    "ThrottlingRateLimit": api.throttle_rate_limit,
                    "ThrottlingBurstLimit": api.throttle_burst_limit,
                },
            },
        )


def test_access_logs_are_json_without_the_token(synthesized):
    (stage,) = synthesized.resources("AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["AccessLogSettings"]
    assert json.loads(settings["Format"]) == ACCESS_LOG_FORMAT
    assert "authorization" not in settings["Format"].lower().replace("authorizer", "")
    assert "Fn::GetAtt" in settings["DestinationArn"]
    synthesized.template.has_resource_properties(
        "AWS::Logs::LogGroup", {"RetentionInDays": synthesized.settings.log_retention_days}
    )


def test_cors_allows_the_stage_origins_and_the_authorization_header(dev):
    dev.template.has_resource_properties(
        "AWS::ApiGatewayV2::Api",
        {
            "ProtocolType": "HTTP",
            "CorsConfiguration": {
                "AllowOrigins": ["http://localhost:3000"],
                "AllowHeaders": Match.array_with(["authorization", "content-type"]),
                "AllowMethods": Match.array_with(["GET", "POST"]),
            },
        },
    )


def test_no_cors_when_a_stage_lists_no_origins(prod):
    (api,) = prod.resources("AWS::ApiGatewayV2::Api").values()
    assert "CorsConfiguration" not in api["Properties"]
