"""Lambda functions: runtime and sizes, layers, logs, environment, and least-privilege roles."""

from __future__ import annotations

import json

import pytest

from infra.bundling import LAMBDA_PYTHON_VERSION
from infra.constructs.functions import RUNTIME
from infra.settings import JOB_FINALIZE_GRACE_SECONDS

# No bucket, no service settings: the authorizer, health, and the catalog check (its own test
# file: tests/infra/test_infra_models_check.py).
NOT_SERVICE_CODE = {"authorizer.handler", "health.handler", "models_check.handler"}
HANDLERS = {
    "authorizer.handler",
    "generation.handler",
    "health.handler",
    "job_tasks.run",
    "job_tasks.poll",
    "job_tasks.store",
    "job_tasks.record_failure",
    "job_tasks.notify",
    "models_check.handler",
}


def _functions(synth) -> dict[str, dict]:
    """Handler → function properties."""
    return {
        r["Properties"]["Handler"]: r["Properties"]
        for r in synth.resources("AWS::Lambda::Function").values()
    }


def _statements(synth, handler: str) -> list[dict]:
    """Every statement of the role that the function with ``handler`` runs as."""
    role_id = _functions(synth)[handler]["Role"]["Fn::GetAtt"][0]
    statements = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    (role,) = [r for i, r in synth.resources("AWS::IAM::Role").items() if i == role_id]
    assert "ManagedPolicyArns" not in role["Properties"]  # no AWS managed policy, no wildcards
    return statements


def _actions(statement: dict) -> set[str]:
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def _resources(statement: dict) -> list:
    resources = statement["Resource"]
    return resources if isinstance(resources, list) else [resources]


def _bucket_prefixes(synth, statement: dict) -> set[str]:
    bucket = synth.logical_id(synth.stack.node.find_child("Storage").bucket)
    prefixes = set()
    for resource in _resources(statement):
        parts = resource["Fn::Join"][1]
        assert parts[0] == {"Fn::GetAtt": [bucket, "Arn"]}
        prefixes.add(parts[1])
    return prefixes


def _grants(synth, handler: str) -> dict[str, set]:
    """S3 action → object key patterns it is allowed on."""
    grants: dict[str, set] = {}
    for statement in _statements(synth, handler):
        for action in _actions(statement) & {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}:
            grants.setdefault(action, set()).update(_bucket_prefixes(synth, statement))
    return grants


def test_every_function_runs_on_arm64_and_the_layer_build_python(synthesized):
    functions = _functions(synthesized)
    assert set(functions) == HANDLERS
    for props in functions.values():
        assert props["Architectures"] == ["arm64"]
        assert props["Runtime"] == RUNTIME.name == f"python{LAMBDA_PYTHON_VERSION}"


@pytest.mark.parametrize(
    ("handler", "sizing"),
    [
        ("authorizer.handler", "authorizer"),
        ("generation.handler", "generation"),
        ("health.handler", "health"),
        ("job_tasks.run", "job_run"),
        ("job_tasks.poll", "job_poll"),
        ("job_tasks.store", "job_store"),
        ("job_tasks.record_failure", "job_record_failure"),
        ("job_tasks.notify", "job_notify"),
        ("models_check.handler", "models_check"),
    ],
)
def test_memory_and_timeout_come_from_the_stage_settings(dev, handler, sizing):
    expected = getattr(dev.settings.functions, sizing)
    props = _functions(dev)[handler]
    assert (props["MemorySize"], props["Timeout"]) == (expected.memory_mb, expected.timeout_seconds)


def test_generation_outlives_the_job_budget_for_direct_invokes(synthesized):
    generation = _functions(synthesized)["generation.handler"]
    budget = synthesized.settings.jobs.max_budget_seconds
    assert generation["Timeout"] > budget
    env = generation["Environment"]["Variables"]
    assert int(env["INVOKE_PROVIDER_TIMEOUT_SECONDS"]) < generation["Timeout"]
    # the direct invoke's wait reaches the job's deadline: budget plus the finalize grace
    assert int(env["INVOKE_PROVIDER_TIMEOUT_SECONDS"]) >= budget + JOB_FINALIZE_GRACE_SECONDS
    assert int(env["PROVIDER_TIMEOUT_SECONDS"]) < 29  # the HTTP path lives inside API Gateway's
    assert int(env["JOB_WAIT_SECONDS"]) <= 25  # and so does the wait for a job
    run = _functions(synthesized)["job_tasks.run"]
    assert int(run["Environment"]["Variables"]["JOB_MAX_BUDGET_SECONDS"]) < run["Timeout"]


def test_each_function_logs_to_its_own_group_with_the_stage_retention(synthesized):
    groups = synthesized.resources("AWS::Logs::LogGroup")
    seen = set()
    for props in _functions(synthesized).values():
        group_id = props["LoggingConfig"]["LogGroup"]["Ref"]
        assert groups[group_id]["Properties"]["RetentionInDays"] == (
            synthesized.settings.log_retention_days
        )
        seen.add(group_id)
    assert len(seen) == len(HANDLERS)


def _layer_ids(synth) -> dict[str, dict]:
    """The stack's own layers by a short name: authorizer / generation dependencies, common."""
    layers = {}
    for logical_id, layer in synth.resources("AWS::Lambda::LayerVersion").items():
        description = layer["Properties"]["Description"]
        name = "common" if description.startswith("Shared") else description.split()[4]
        layers[name] = {"Ref": logical_id}
    return layers


def test_each_function_gets_its_own_dependencies_and_the_common_code(synthesized):
    layers = _layer_ids(synthesized)
    assert set(layers) == {"authorizer", "generation", "common"}
    for handler, props in _functions(synthesized).items():
        if handler == "health.handler":  # answers a constant: no layer to load on a cold start
            assert "Layers" not in props
            continue
        # (Lambda unpacks every layer into one /opt: their order does not matter here)
        own = sorted(layer["Ref"] for layer in props["Layers"] if "Ref" in layer)
        deps = layers["authorizer"] if handler == "authorizer.handler" else layers["generation"]
        assert own == sorted([deps["Ref"], layers["common"]["Ref"]]), handler
    for layer in synthesized.resources("AWS::Lambda::LayerVersion").values():
        assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
        assert layer["Properties"]["CompatibleRuntimes"] == [RUNTIME.name]


def test_the_generation_layers_are_not_the_authorizers(dev):
    # cryptography (pyjwt[crypto]) is in the authorizer's layer only: distinct assets.
    assets = {
        name: dev.resources("AWS::Lambda::LayerVersion")[ref["Ref"]]["Properties"]["Content"]
        for name, ref in _layer_ids(dev).items()
    }
    assert assets["authorizer"]["S3Key"] != assets["generation"]["S3Key"]


def _has_secrets_extension(props: dict) -> bool:
    """The extension's public layer: a region map lookup, or its ARN when the region is pinned."""
    return any(
        "Fn::FindInMap" in layer if isinstance(layer, dict) else "Parameters-and-Secrets" in layer
        for layer in props.get("Layers", [])
    )


def test_every_function_given_a_secret_reads_it_through_the_extension(synthesized):
    given_keys = set()
    for handler, props in _functions(synthesized).items():
        env = props.get("Environment", {}).get("Variables", {})
        has_extension = _has_secrets_extension(props)
        reads_key = any(
            name.endswith("_API_KEY_SECRET_ARN") or name == "WEBHOOK_SECRET_ARN" for name in env
        )
        if handler == "authorizer.handler":
            continue  # its own test: the extension in secret mode only
        assert has_extension == reads_key, handler  # no extension where no secret is read
        if reads_key:
            given_keys.add(handler)
            assert env["PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED"] == "true"
            assert "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT" in env
    assert {"job_tasks.run", "job_tasks.poll", "job_tasks.notify"} <= given_keys


def test_the_notify_function_reads_only_the_webhook_secret_through_the_extension(synthesized):
    props = _functions(synthesized)["job_tasks.notify"]
    env = props["Environment"]["Variables"]
    secret = synthesized.logical_id(synthesized.stack.node.find_child("Secrets").webhook_secret)
    assert _has_secrets_extension(props)
    assert env["PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED"] == "true"
    assert env["WEBHOOK_SECRET_ARN"] == {"Ref": secret}
    assert not any(name.endswith("_API_KEY_SECRET_ARN") for name in env)  # no provider key


def test_service_functions_know_the_bucket_and_url_mode(dev, prod):
    for synth, mode in ((dev, "presigned"), (prod, "cloudfront")):
        bucket = synth.logical_id(synth.stack.node.find_child("Storage").bucket)
        for handler, props in _functions(synth).items():
            if handler in NOT_SERVICE_CODE:
                continue
            env = props["Environment"]["Variables"]
            assert env["IMAGE_BUCKET"] == {"Ref": bucket}
            assert env["IMAGE_URL_MODE"] == mode
            assert ("IMAGE_CDN_DOMAIN" in env) == (mode == "cloudfront")
            assert ("JOB_STATE_MACHINE_ARN" in env) == (handler == "generation.handler")
            assert ("WEBHOOK_SECRET_ARN" in env) == (handler == "job_tasks.notify")
            table = synth.logical_id(synth.stack.node.find_child("Jobs").table)
            assert env["JOBS_TABLE"] == {"Ref": table}
            assert env["POWERTOOLS_SERVICE_NAME"] == synth.settings.resource_prefix


def _as_deployed(variables: dict) -> dict[str, str]:
    """The environment with CloudFormation references replaced by plausible values."""
    return {
        name: value if isinstance(value, str) else f"resolved-{name.lower()}"
        for name, value in variables.items()
    }


EXTENSION_AND_POWERTOOLS_PREFIXES = (
    "POWERTOOLS_",
    "PARAMETERS_SECRETS_EXTENSION_",
    "SECRETS_MANAGER_",
    "SSM_PARAMETER_STORE_",
)


def test_service_code_accepts_the_environment_the_stack_gives_it(dev, prod):
    from image_common.provider_identity import PROVIDERS
    from image_common.settings import ServiceSettings, load_settings
    from image_service.catalog import ENVIRONMENT_VARIABLES, CatalogSettings

    secret_variables = {p.secret_arn_variable for p in PROVIDERS.values()}
    for synth in (dev, prod):
        for handler, props in _functions(synth).items():
            if handler in NOT_SERVICE_CODE:
                continue
            env = _as_deployed(props["Environment"]["Variables"])
            unknown = {
                name
                for name in env
                if name.lower() not in ServiceSettings.model_fields
                # Powertools' own, and the secrets extension's (its config; the port is ours too)
                and not name.startswith(EXTENSION_AND_POWERTOOLS_PREFIXES)
                and name not in secret_variables  # read by image_common.credentials
                and name not in ENVIRONMENT_VARIABLES  # read by image_service.catalog
            }
            assert unknown == set(), handler  # a typo here would be silently ignored
            CatalogSettings.from_environ(env)  # raises on a malformed value
            settings = load_settings(env)
            assert settings.image_url_mode == synth.settings.image_url.mode


def test_authorizer_code_accepts_the_environment_the_stack_gives_it(dev, jwks):
    from jwt_authorizer.settings import AuthorizerSettings

    dev_env = _as_deployed(_functions(dev)["authorizer.handler"]["Environment"]["Variables"])
    assert AuthorizerSettings.from_env(dev_env).secret_arn == "resolved-jwt_secret_arn"
    jwks_env = _as_deployed(_functions(jwks)["authorizer.handler"]["Environment"]["Variables"])
    assert AuthorizerSettings.from_env(jwks_env).uses_jwks


def test_authorizer_in_secret_mode_reads_the_jwt_secret_through_the_extension(dev):
    props = _functions(dev)["authorizer.handler"]
    env = props["Environment"]["Variables"]
    secret = dev.logical_id(dev.stack.node.find_child("Secrets").jwt_secret)
    assert env["JWT_SECRET_ARN"] == {"Ref": secret}
    assert env["JWT_ALGORITHMS"] == "HS256"
    assert env["PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED"] == "true"
    assert any("Fn::FindInMap" in layer for layer in props["Layers"])  # the extension's ARN
    assert not {"JWT_JWKS_URL", "JWT_SECRET"} & set(env)


def test_authorizer_in_jwks_mode_has_issuer_audience_and_no_secret(jwks):
    props = _functions(jwks)["authorizer.handler"]
    env = props["Environment"]["Variables"]
    assert env["JWT_JWKS_URL"] == "https://issuer.example.com/.well-known/jwks.json"
    assert env["JWT_ISSUER"] == "https://issuer.example.com/"
    assert env["JWT_AUDIENCE"] == "image-service"
    assert env["JWT_ALGORITHMS"] == "RS256,ES256"
    assert not {"JWT_SECRET_ARN", "JWT_SECRET"} & set(env)
    assert not any("Fn::FindInMap" in layer for layer in props["Layers"])


def test_generation_reads_customers_and_jobs_and_writes_only_job_inputs(synthesized):
    assert _grants(synthesized, "generation.handler") == {
        "s3:GetObject": {"/customers/*", "/jobs/*"},
        "s3:PutObject": {"/jobs/*"},
    }


def test_generation_may_start_only_its_state_machine_and_reads_no_secret(synthesized):
    stack = synthesized.stack
    workflow = stack.resolve(stack.node.find_child("JobWorkflow").state_machine.state_machine_arn)
    statements = _statements(synthesized, "generation.handler")
    starts = [s for s in statements if any(a.startswith("states:") for a in _actions(s))]
    assert [(_actions(s), _resources(s)) for s in starts] == [
        ({"states:StartExecution"}, [workflow])
    ]
    # the job's run task calls the provider; the request never does
    assert not [s for s in statements if any(a.startswith("secretsmanager:") for a in _actions(s))]


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        (
            "job_tasks.run",
            {
                "s3:GetObject": {"/jobs/*"},
                "s3:PutObject": {"/customers/*", "/jobs/*"},
                "s3:DeleteObject": {"/customers/*"},  # a part-way failure removes what it stored
            },
        ),
        ("job_tasks.poll", {}),
        (
            "job_tasks.store",
            {  # no GetObject: a job's record keeps keys, its readers sign the URLs
                "s3:PutObject": {"/customers/*", "/jobs/*"},
                "s3:DeleteObject": {"/customers/*"},
            },
        ),
        ("job_tasks.record_failure", {}),
        ("job_tasks.notify", {"s3:GetObject": {"/customers/*", "/jobs/*"}}),
        ("authorizer.handler", {}),
        ("health.handler", {}),
        ("models_check.handler", {}),
    ],
)
def test_each_job_task_and_the_authorizer_touch_only_their_prefixes(dev, handler, expected):
    assert _grants(dev, handler) == expected


def _dynamodb(synth, handler: str, table: dict) -> dict[str, list]:
    """DynamoDB action → the jobs-table resources (table or index) it is allowed on."""
    grants: dict[str, list] = {}
    for statement in _statements(synth, handler):
        jobs = [r for r in _resources(statement) if json.dumps(table) in json.dumps(r)]
        for action in _actions(statement):
            if action.startswith("dynamodb:") and jobs:
                grants.setdefault(action, []).extend(jobs)
    return grants


@pytest.mark.parametrize(
    ("handler", "actions"),
    [
        # DeleteItem: the OpenAI surface frees its derived idempotency key once answered
        ("generation.handler", {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"}),
        # the tasks read and advance a job the generation function created: no PutItem
        ("job_tasks.run", {"GetItem", "UpdateItem"}),
        ("job_tasks.poll", {"GetItem", "UpdateItem"}),
        ("job_tasks.store", {"GetItem", "UpdateItem"}),
        ("job_tasks.record_failure", {"GetItem", "UpdateItem"}),
        ("job_tasks.notify", {"GetItem", "UpdateItem"}),
        ("authorizer.handler", set()),
        ("health.handler", set()),
    ],
)
def test_job_records_are_reachable_only_as_each_function_needs(dev, handler, actions):
    table = {"Fn::GetAtt": [dev.logical_id(dev.stack.node.find_child("Jobs").table), "Arn"]}
    grants = _dynamodb(dev, handler, table)
    assert {a.removeprefix("dynamodb:") for a in grants} == actions
    for action, resources in grants.items():
        if action == "dynamodb:Query":  # the listing: the customer index only
            assert resources == [{"Fn::Join": ["", [table, "/index/by_customer"]]}]
        else:
            assert resources == [table]


def test_generation_may_delete_idempotency_keys_and_no_job_record(synthesized):
    deletes = [
        s
        for s in _statements(synthesized, "generation.handler")
        if "dynamodb:DeleteItem" in _actions(s)
    ]
    (statement,) = deletes
    assert _actions(statement) == {"dynamodb:DeleteItem"}
    assert statement["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["idem#*"]}
    }


def test_only_the_notify_task_reads_the_webhook_secret(dev):
    secret = dev.stack.resolve(dev.stack.node.find_child("Secrets").webhook_secret.secret_arn)
    for handler in HANDLERS:
        reads = [
            r
            for s in _statements(dev, handler)
            if "secretsmanager:GetSecretValue" in _actions(s)
            for r in _resources(s)
        ]
        assert (secret in reads) == (handler == "job_tasks.notify"), handler


def test_no_function_has_wildcard_actions_or_resources_beyond_x_ray(synthesized):
    for handler in HANDLERS:
        for statement in _statements(synthesized, handler):
            assert statement["Effect"] == "Allow"
            assert not any("*" in action for action in _actions(statement)), statement
            if "*" in _resources(statement):
                assert _actions(statement) <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def test_each_function_writes_only_to_its_own_log_group(dev):
    for handler, props in _functions(dev).items():
        group = props["LoggingConfig"]["LogGroup"]["Ref"]
        log_statements = [
            s for s in _statements(dev, handler) if any(a.startswith("logs:") for a in _actions(s))
        ]
        assert [_resources(s) for s in log_statements] == [[{"Fn::GetAtt": [group, "Arn"]}]]


def test_other_services_get_an_invoke_policy_for_generations_live_alias_only(dev):
    alias = dev.live_alias_ids()["generation.handler"]
    (policy,) = dev.resources("AWS::IAM::ManagedPolicy").values()
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {"Action": "lambda:InvokeFunction", "Effect": "Allow", "Resource": {"Ref": alias}}
    ]
    assert "InvokeGenerationPolicyArn" in dev.template_json["Outputs"]


def test_the_stage_log_level_reaches_every_function_and_lambda_keeps_those_lines(dev, prod):
    for synth, level in ((dev, "DEBUG"), (prod, "INFO")):
        assert synth.settings.functions.log_level == level
        for handler, props in _functions(synth).items():
            assert props["LoggingConfig"]["ApplicationLogLevel"] == level, handler
            env = props["Environment"]["Variables"]
            # Powertools reads POWERTOOLS_LOG_LEVEL; the authorizer's plain logger, LOG_LEVEL.
            variable = "LOG_LEVEL" if handler == "authorizer.handler" else "POWERTOOLS_LOG_LEVEL"
            assert env[variable] == level, handler


def test_the_local_stack_runs_the_functions_with_the_deployed_limits():
    from infra.constructs.api import INTEGRATION_TIMEOUT
    from infra.settings import AUTHORIZER_SIZING, GENERATION_SIZING, HEALTH_SIZING
    from local import stack as local

    assert (local.GENERATION_TIMEOUT_SECONDS, local.GENERATION_MEMORY_MB) == (
        GENERATION_SIZING.timeout_seconds,
        GENERATION_SIZING.memory_mb,
    )
    assert (local.AUTHORIZER_TIMEOUT_SECONDS, local.AUTHORIZER_MEMORY_MB) == (
        AUTHORIZER_SIZING.timeout_seconds,
        AUTHORIZER_SIZING.memory_mb,
    )
    assert (local.HEALTH_TIMEOUT_SECONDS, local.HEALTH_MEMORY_MB) == (
        HEALTH_SIZING.timeout_seconds,
        HEALTH_SIZING.memory_mb,
    )
    assert local.INTEGRATION_TIMEOUT_SECONDS == INTEGRATION_TIMEOUT.to_seconds()


def test_reserved_concurrency_per_function_comes_from_the_stage(dev, prod, jwks):
    names = {
        "authorizer.handler": "authorizer",
        "generation.handler": "generation",
        "health.handler": "health",
        "job_tasks.run": "job_run",
        "job_tasks.poll": "job_poll",
        "job_tasks.store": "job_store",
        "job_tasks.record_failure": "job_record_failure",
        "job_tasks.notify": "job_notify",
        "models_check.handler": "models_check",  # daily: shares the pool in both stages
    }
    for synth in (dev, prod):
        reserved = synth.settings.functions.reserved_concurrency
        for handler, props in _functions(synth).items():
            assert props.get("ReservedConcurrentExecutions") == getattr(reserved, names[handler])
    assert prod.settings.functions.reserved_concurrency.generation > (
        dev.settings.functions.reserved_concurrency.generation
    )
    # a stage without reservations (a new account's limit of 10 allows none) shares the pool
    assert all("ReservedConcurrentExecutions" not in p for p in _functions(jwks).values())


def test_every_function_publishes_a_version_behind_a_live_alias(synthesized):
    aliases = synthesized.resources("AWS::Lambda::Alias")
    versions = synthesized.resources("AWS::Lambda::Version")
    assert len(aliases) == len(versions) == len(HANDLERS)
    assert set(synthesized.live_alias_ids()) == HANDLERS
    for alias in aliases.values():
        props = alias["Properties"]
        assert props["Name"] == "live"
        version_id = props["FunctionVersion"]["Fn::GetAtt"][0]
        assert versions[version_id]["Properties"]["FunctionName"] == props["FunctionName"]


def test_only_generation_may_list_and_only_under_customers(synthesized):
    """ListBucket makes S3 answer a missing key with 404 instead of 403: only an input image
    key that names nothing needs that (the caller's 400). A job's own images under jobs/
    that cannot be read fail the job either way."""
    for handler in HANDLERS:
        listings = [s for s in _statements(synthesized, handler) if "s3:ListBucket" in _actions(s)]
        if handler != "generation.handler":
            assert listings == [], handler
            continue
        (listing,) = listings
        assert listing["Condition"] == {"StringLike": {"s3:prefix": ["customers/*"]}}


def test_cloudfront_urls_leave_the_tasks_no_read_of_stored_images(prod):
    # CloudFront URLs are not signed by the function: no GetObject on customers/*
    assert "s3:GetObject" not in _grants(prod, "job_tasks.store")
    assert _grants(prod, "job_tasks.notify") == {"s3:GetObject": {"/jobs/*"}}
