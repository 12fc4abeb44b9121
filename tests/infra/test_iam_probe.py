"""The dynamic IAM probe: run every entry point under moto as Lambda would run it (the
environment its template gives it, its provider keys from Secrets Manager), record every AWS
call it makes, and compare with what its role is granted in the synthesized template — both
ways: no call ungranted, no grant unused.

Recording: a botocore ``before-parameter-build`` hook on every client created during the run
(it sees real calls and presigned URLs alike — a presigned GET is a ``s3:GetObject`` of the
signer's); an ``after-call`` hook turns a ``NoSuchKey`` into the ``s3:ListBucket`` on that key
S3 requires to answer 404 rather than 403; a DynamoDB transaction counts as each of its items'
actions (that is how IAM authorises it); secrets read through the Lambda extension (the JWT
secret, provider keys, the webhook signing secret) are recorded by a stand-in extension on localhost. A function with
SnapStart on in the template runs as restored: its before-snapshot and after-restore hooks first,
no session token, the extension refusing it — its provider keys come from Secrets Manager through
botocore, recorded like any call. CloudWatch Logs and X-Ray grants are the runtime's, not the
code's, and are left out.

The job state machine's task functions (one per step, each with its own role) are run as the
state machine runs them: the probe's state machine is a stand-in that runs nothing, so each
task is invoked with its job's execution input, step after step, and each function's calls
are compared with its own role.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.session
import jwt
import pytest
from moto import mock_aws
from standardwebhooks import Webhook

from image_common.provider_identity import PROVIDERS
from image_service.job_store import PARTITION_KEY
from infra.job_definition import TASKS
from local.emulators import EMULATORS, EmulatorRouter, in_process_base_url
from tests.conftest import (
    PROVIDER_KEYS,
    TEST_DATE,
    data_url,
    http_event,
    image_bytes,
    request_body,
)
from tests.webhook_receiver import WebhookReceiver

REGION, ACCOUNT = "us-east-1", "123456789012"
BUCKET, TABLE, JOBS_TABLE = "probe-images", "probe-usage", "probe-jobs"
JWT_SECRET = "probe-jwt-secret-0123456789abcdef-0123456789"
CDN_DOMAIN = "images.probe.example"
WEBHOOK_KEY = "cHJvYmUtd2ViaG9vay1rZXktMDEyMzQ1"  # 24 bytes in base64, as the stack generates
RUNTIME_ONLY = ("logs:", "xray:")
TRANSACTION_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


@dataclass(frozen=True)
class Call:
    action: str
    resource: str
    # What a condition of its grant is checked against: s3:ListBucket's ("s3:prefix", key),
    # a DynamoDB item action's ("dynamodb:LeadingKeys", partition key).
    context: tuple[str, str] | None = None


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)
    # An injected S3 failure: the PutObject under this prefix after `_skip` others fails.
    _fail_put_under: str | None = None
    _skip: int = 0

    def fail_put(self, prefix: str, *, after: int = 0) -> None:
        self._fail_put_under, self._skip = prefix, after

    def before(self, params, model, context, event_name, **_):
        service = event_name.split(".")[1]
        context["probe_params"] = params
        # the ARN of a call names the region of the client that made it (a presigned URL's
        # context names none: an S3 ARN has no region)
        region = context.get("client_region", REGION)
        self.calls += list(_as_calls(service, model.name, params, region))
        if model.name == "PutObject" and self._fail_put_under is not None:
            if params["Key"].startswith(self._fail_put_under):
                if self._skip == 0:
                    self._fail_put_under = None
                    raise RuntimeError("injected S3 failure")
                self._skip -= 1

    def after(self, parsed, model, context, event_name, **_):
        error = (parsed or {}).get("Error", {}).get("Code")
        if model.name == "GetObject" and error in ("NoSuchKey", "404"):
            params = context.get("probe_params", {})
            bucket = f"arn:aws:s3:::{params['Bucket']}"
            self.calls.append(Call("s3:ListBucket", bucket, ("s3:prefix", params["Key"])))


def _as_calls(service: str, operation: str, params: dict, region: str) -> list[Call]:
    if service == "s3":
        action = {"HeadObject": "GetObject"}.get(operation, operation)
        if operation == "DeleteObjects":  # authorised as s3:DeleteObject per key
            return [
                Call("s3:DeleteObject", f"arn:aws:s3:::{params['Bucket']}/{o['Key']}")
                for o in params["Delete"]["Objects"]
            ]
        if operation in ("ListObjects", "ListObjectsV2"):
            prefix = ("s3:prefix", params.get("Prefix", ""))
            return [Call("s3:ListBucket", f"arn:aws:s3:::{params['Bucket']}", prefix)]
        return [Call(f"s3:{action}", f"arn:aws:s3:::{params['Bucket']}/{params['Key']}")]
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            return [
                Call(
                    f"dynamodb:{TRANSACTION_ACTIONS[kind]}",
                    _table_arn(body["TableName"], region),
                    _leading_key(body),
                )
                for item in params["TransactItems"]
                for kind, body in item.items()
            ]
        resource = _table_arn(params["TableName"], region)
        if "IndexName" in params:  # IAM authorises a query of an index on the index's ARN
            resource += f"/index/{params['IndexName']}"
        return [Call(f"dynamodb:{operation}", resource, _leading_key(params))]
    if service == "secrets-manager":
        return [Call(f"secretsmanager:{operation}", params["SecretId"])]
    if service == "sfn":
        resource = params.get("stateMachineArn") or params.get("executionArn") or "*"
        return [Call(f"states:{operation}", resource)]
    if service == "ssm":
        return [
            Call(f"ssm:{operation}", f"arn:aws:ssm:{region}:{ACCOUNT}:parameter{params['Name']}")
        ]
    return [Call(f"{service}:{operation}", "*")]


def _leading_key(params: dict) -> tuple[str, str] | None:
    item = params.get("Key") or params.get("Item") or {}
    value = item.get(PARTITION_KEY, {}).get("S")
    return None if value is None else ("dynamodb:LeadingKeys", value)  # none: a query


def _table_arn(name: str, region: str = REGION) -> str:
    return f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{name}"


# --- the template, resolved against the probe's resources ---------------------------------------


class Resolver:
    """CloudFormation intrinsics → the concrete names of the probe's moto resources."""

    def __init__(self, values: dict[tuple[str, str], str], region: str = REGION) -> None:
        self.values = values | {
            ("AWS::Partition", "Ref"): "aws",
            ("AWS::Region", "Ref"): region,
            ("AWS::AccountId", "Ref"): ACCOUNT,
            ("AWS::URLSuffix", "Ref"): "amazonaws.com",
        }

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return [self(v) for v in value]
        if "Ref" in value:
            return self.values.get((value["Ref"], "Ref"), f"unresolved:{value['Ref']}")
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            return self.values.get((logical_id, attribute), f"unresolved:{logical_id}")
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(str(self(p)) for p in parts)
        return {k: self(v) for k, v in value.items()}


@dataclass(frozen=True)
class Grant:
    action: str
    resource: str
    # One (key, pattern) of a conditioned statement: each is a grant of its own, so e.g. a
    # ListBucket on a prefix the code never needs to answer 404 under shows as unused.
    condition: tuple[str, str] | None = None

    def allows(self, call: Call) -> bool:
        if not fnmatch.fnmatchcase(call.action, self.action):
            return False
        if not fnmatch.fnmatchcase(call.resource, self.resource):
            return False
        if self.condition is None:
            return True
        key, pattern = self.condition
        return (
            call.context is not None
            and call.context[0] == key
            and fnmatch.fnmatchcase(call.context[1], pattern)
        )


def grants_of(synth, handler: str, resolve: Resolver) -> list[Grant]:
    functions = synth.resources("AWS::Lambda::Function")
    (props,) = [
        r["Properties"] for r in functions.values() if r["Properties"]["Handler"] == handler
    ]
    role_id = props["Role"]["Fn::GetAtt"][0]
    grants = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = _as_list(statement["Action"])
            if all(a.startswith(RUNTIME_ONLY) for a in actions):
                continue
            condition = statement.get("Condition", {})
            # Single-valued per call here, so ForAllValues: is StringLike on that one value.
            assert set(condition) <= {"StringLike", "ForAllValues:StringLike"}, statement
            conditions = [
                (key, pattern)
                for operator in condition.values()
                for key, patterns in operator.items()
                for pattern in _as_list(patterns)
            ]
            # Unconditioned, it lists every key in the bucket: broader than any call shows.
            assert conditions or "s3:ListBucket" not in actions, f"{handler}: {statement}"
            for action in actions:
                for resource in _as_list(resolve(statement["Resource"])):
                    grants += [Grant(action, resource, c) for c in conditions or [None]]
    return grants


def environment_of(synth, handler: str, resolve: Resolver) -> dict[str, str]:
    functions = synth.resources("AWS::Lambda::Function")
    (props,) = [
        r["Properties"] for r in functions.values() if r["Properties"]["Handler"] == handler
    ]
    return {k: str(resolve(v)) for k, v in props["Environment"]["Variables"].items()}


def snapstart_of(synth, handler: str) -> bool:
    """Whether the function restores from a SnapStart snapshot (its hooks run before)."""
    functions = synth.resources("AWS::Lambda::Function")
    (props,) = [
        r["Properties"] for r in functions.values() if r["Properties"]["Handler"] == handler
    ]
    return props.get("SnapStart", {}).get("ApplyOn") == "PublishedVersions"


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# --- the run --------------------------------------------------------------------------------------


class FakeSecretsExtension:
    """The Parameters and Secrets extension's HTTP API, recording what it is asked for — also
    as the ``GetSecretValue`` call it makes for the function (into ``recorder``, when set)."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.asked: list[str] = []
        self.recorder = None
        self.refusing = False  # a SnapStart function's calls: the extension cannot serve them
        probe = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                secret_id = parse_qs(urlsplit(self.path).query)["secretId"][0]
                probe.asked.append(secret_id)
                if probe.refusing:
                    self.send_response(401)
                    self.end_headers()
                    return
                if probe.recorder is not None:
                    probe.recorder.calls.append(Call("secretsmanager:GetSecretValue", secret_id))
                body = json.dumps({"SecretString": secrets[secret_id]}).encode()
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stage(request):
    """The synthesized stage probed: dev (presigned URLs) unless a test names another."""
    return request.getfixturevalue(getattr(request, "param", "dev"))


@pytest.fixture
def probe(stage, monkeypatch):
    """moto with the stack's resources, the emulators, a recorder on every new botocore client,
    and ``run(handler)`` that sets that function's environment and clears per-container caches."""
    from aws_lambda_powertools.utilities.parameters import base as parameters

    from image_common.credentials import provider_secrets
    from image_common.settings import get_settings
    from image_service import (
        aws,
        catalog,
        job_store,
        snapstart,
        usage,
    )
    from image_service import http as service_http
    from image_service.webhooks import webhook_secrets

    read_through_extension = provider_secrets.read

    def forget_container_state() -> None:
        """What a container caches from its environment: its AWS session and clients (and how
        the session looks credentials up: SnapStart's hook changes that), settings, the
        catalog's source, Powertools' parameters."""
        aws.forget()
        for cache in (
            get_settings,
            catalog.catalog_settings,  # the function's own overlay parameter
            catalog.catalog_source,
        ):
            cache.cache_clear()
        parameters.DEFAULT_PROVIDERS.clear()
        parameters.clear_caches()
        provider_secrets.read = read_through_extension  # SnapStart's hook switches it
        provider_secrets.clear()
        webhook_secrets.clear()

    recorder = Recorder()
    create_client = botocore.session.Session.create_client

    def recording_client(self, *args, **kwargs):
        client = create_client(self, *args, **kwargs)
        client.meta.events.register("before-parameter-build", recorder.before)
        client.meta.events.register("after-call", recorder.after)
        return client

    stack = stage.stack
    logical = stage.logical_id
    region = stage.settings.region or REGION  # a stage that pins its region runs there
    with mock_aws():
        values: dict[tuple[str, str], str] = {}
        location = {} if region == "us-east-1" else {"LocationConstraint": region}
        boto3.client("s3", region_name=region).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration=location
        )
        bucket = logical(stack.node.find_child("Storage").bucket)
        values |= {(bucket, "Ref"): BUCKET, (bucket, "Arn"): f"arn:aws:s3:::{BUCKET}"}
        distribution = stack.node.find_child("Storage").distribution
        if distribution is not None:  # cloudfront mode: stable image URLs on this host
            values[(logical(distribution), "DomainName")] = CDN_DOMAIN
        usage.create_table(boto3.client("dynamodb", region_name=region), TABLE)
        table = logical(stack.node.find_child("Usage").table)
        values |= {(table, "Ref"): TABLE, (table, "Arn"): _table_arn(TABLE, region)}
        job_store.create_table(boto3.client("dynamodb", region_name=region), JOBS_TABLE)
        jobs = logical(stack.node.find_child("Jobs").table)
        values |= {(jobs, "Ref"): JOBS_TABLE, (jobs, "Arn"): _table_arn(JOBS_TABLE, region)}
        secrets_client = boto3.client("secretsmanager", region_name=region)
        secret_values = {}
        for provider, secret in stack.node.find_child("Secrets").provider_keys.items():
            value = json.dumps({"api_key": PROVIDER_KEYS[provider]})
            arn = secrets_client.create_secret(Name=f"probe/{provider}", SecretString=value)["ARN"]
            values[(logical(secret), "Ref")] = arn
            secret_values[arn] = value  # provider keys come through the extension too
        jwt_arn = secrets_client.create_secret(Name="probe/jwt", SecretString=JWT_SECRET)["ARN"]
        values[(logical(stack.node.find_child("Secrets").jwt_secret), "Ref")] = jwt_arn
        secret_values[jwt_arn] = JWT_SECRET
        webhook_value = json.dumps({"WEBHOOK_SECRET": WEBHOOK_KEY})
        webhook_arn = secrets_client.create_secret(
            Name="probe/webhook", SecretString=webhook_value
        )["ARN"]
        secret_values[webhook_arn] = webhook_value  # the notify function's, through the extension
        values[(logical(stack.node.find_child("Secrets").webhook_secret), "Ref")] = webhook_arn
        machine = boto3.client("stepfunctions", region_name=region).create_state_machine(
            name="probe-jobs",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/probe",
        )["stateMachineArn"]
        state_machine = stack.node.find_child("JobWorkflow").state_machine
        values[(logical(state_machine), "Ref")] = machine
        resolve = Resolver(values, region)

        started = {provider: cls(clock=lambda: TEST_DATE) for provider, cls in EMULATORS.items()}
        service_http.set_http_client(service_http.new_http_client(EmulatorRouter(started)))
        extension = FakeSecretsExtension(secret_values)
        monkeypatch.setattr(botocore.session.Session, "create_client", recording_client)
        saved = dict(os.environ)

        def run(handler: str, environment: dict[str, str] | None = None) -> Recorder:
            """``environment``: what a test adds to the function's own (no AWS setting). A
            SnapStart function is run as restored: its hooks run first, as Lambda runs them
            (clients made before the snapshot are recorded too), and it has no session token
            — so no secret through the extension."""
            os.environ.clear()
            os.environ.update(saved)
            os.environ.pop("WEBHOOK_SECRET", None)  # the secret comes from Secrets Manager
            for identity in PROVIDERS.values():
                os.environ.pop(identity.api_key_variable, None)  # keys come from the secrets
                os.environ[identity.base_url_variable] = in_process_base_url(identity.name)
            os.environ.update(environment_of(stage, handler, resolve))
            os.environ.update(environment or {})
            os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = region
            os.environ["PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"] = str(extension.port)
            forget_container_state()
            recorder.calls.clear()
            extension.asked.clear()
            extension.recorder = recorder
            extension.refusing = snapstart_of(stage, handler)
            if extension.refusing:
                os.environ.pop("AWS_SESSION_TOKEN", None)
                snapstart.before_snapshot()
                snapstart.after_restore()
            return recorder

        try:
            yield run, resolve, extension, started
        finally:
            extension.close()
            service_http.set_http_client(None)
            os.environ.clear()
            os.environ.update(saved)
            forget_container_state()
            # Later tests in this process import these handlers: give them back their settings,
            # and the generation handler its test job runner (a reload resets it to None).
            runner = getattr(sys.modules.get("generation"), "job_runner", None)
            for name in ("generation", "job_tasks", "authorizer"):
                if name in sys.modules:
                    importlib.reload(sys.modules[name])
            if "generation" in sys.modules:
                sys.modules["generation"].job_runner = runner


def compare(synth, handler: str, resolve: Resolver, calls: list[Call]) -> None:
    """Every call granted, every grant used: a grant only a path the probe does not drive
    would use is a path to drive, not an exception to list."""
    grants = grants_of(synth, handler, resolve)
    ungranted = sorted({c for c in calls if not any(g.allows(c) for g in grants)}, key=str)
    unused = sorted({g for g in grants if not any(g.allows(c) for c in calls)}, key=str)
    assert ungranted == [], f"{handler} calls what its role does not grant"
    assert unused == [], f"{handler} is granted what it never uses: {unused}"


def _fresh(module_name: str):
    module = importlib.import_module(module_name)
    return importlib.reload(module)  # a cold start: settings read from this environment


class Context:
    function_name = "probe"
    memory_limit_in_mb = 1024
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:probe"
    aws_request_id = "probe-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def _call(generation, event) -> tuple[int, dict]:
    response = generation.handler(event, Context())
    return response["statusCode"], json.loads(response["body"])


# --- the entry points -------------------------------------------------------------------------------


def _async(event: dict) -> dict:
    event["headers"]["prefer"] = "respond-async"  # start the job, answer 202 at once
    return event


class TaskFunctions:
    """The job state machine's task functions, invoked as it invokes them: each step is its
    own Lambda function (``job_tasks.<step>``, its own role and environment), started cold, and
    the AWS calls each makes are kept apart, per function."""

    def __init__(self, run, environment: dict[str, str]) -> None:
        self._run, self._environment = run, environment
        self.calls: dict[str, list[Call]] = {step: [] for step in TASKS}

    def invoke(self, step: str, state: dict, *, fail_put_under: str | None = None) -> dict:
        recorder = self._run(f"job_tasks.{step}", self._environment)
        if fail_put_under is not None:
            recorder.fail_put(fail_put_under)
        try:
            return getattr(_fresh("job_tasks"), step)(dict(state), Context())
        finally:
            self.calls[step] += recorder.calls


def _start(generation, body: dict) -> str:
    """A job as the API starts it (202 at once); its id."""
    event = _async(http_event(body=body, customer_id=body["customer_id"]))
    status, answer = _call(generation, event)
    assert status == 202, answer
    return answer["data"]["job_id"]


def _workflow_inputs() -> dict[str, dict]:
    """Job id → the input its execution was started with: what the Run state receives."""
    sfn = boto3.client("stepfunctions")  # in the probed function's region
    (machine,) = sfn.list_state_machines()["stateMachines"]
    executions = sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]
    described = (sfn.describe_execution(executionArn=e["executionArn"]) for e in executions)
    return {e["name"]: json.loads(e["input"]) for e in described}


def test_generation_calls_exactly_what_it_is_granted(dev, probe):
    run, resolve, _, _ = probe
    # Time compressed: the OpenAI surface answers at once instead of waiting for a job that the
    # stand-in state machine never runs.
    no_wait = {"JOB_WAIT_SECONDS": "0"}
    recorder = run("generation.handler", no_wait)
    generation = _fresh("generation")

    # a job: its record (and an idempotency key) in DynamoDB, its execution started
    status, job = _call(generation, _async(http_event(body=request_body(quality="low"))))
    assert status == 202, job
    keyed = _async(http_event(body=request_body(quality="low", n=2)))
    keyed["headers"]["idempotency-key"] = "probe-key"
    assert _call(generation, keyed)[0] == 202
    assert _call(generation, keyed)[0] == 202  # the same job again: read, not written
    # an input image by a stored key that is not there (404, not 403): a 400
    missing = request_body(input_images=["customers/123/assets/image/none.png"])
    assert _call(generation, _async(http_event(body=missing)))[0] == 400
    # reads: the job, the caller's jobs, an unknown job, the caller's usage
    job_id = job["data"]["job_id"]
    assert _call(generation, http_event("GET", f"/image/jobs/{job_id}"))[0] == 202
    assert _call(generation, http_event("GET", "/image/jobs"))[0] == 200
    assert _call(generation, http_event("GET", "/image/jobs/" + "0" * 32))[0] == 404
    assert _call(generation, http_event("GET", "/image/usage"))[0] == 200
    # an input image: written under jobs/ for the job's run step to read
    edit = request_body(quality="low", input_images=[data_url(image_bytes("png", 64, 64))])
    assert _call(generation, _async(http_event(body=edit)))[0] == 202
    # the OpenAI surface: its job still running, a retryable 503 ...
    openai = http_event(
        path="/v1/images/generations",
        body={"model": "gpt-image-1", "prompt": "A kite", "quality": "low"},
        customer_id=301,
    )
    assert _call(generation, openai)[0] == 503
    calls = list(recorder.calls)

    # ... its job run by the job's run task ...
    inputs = _workflow_inputs()
    (kite,) = [state for state in inputs.values() if state["customer_id"] == 301]
    assert TaskFunctions(run, {}).invoke("run", kite)["status"] == "Succeeded"
    # ... and the SDK's retry (another container): the inline image read from jobs/, and the
    # request's derived idempotency key freed once answered (DeleteItem)
    recorder = run("generation.handler", no_wait)
    generation = _fresh("generation")
    status, answer = _call(generation, openai)
    assert status == 200, answer
    assert answer["data"][0]["b64_json"]
    calls += recorder.calls

    # Step Functions refuses to start a job: the job is marked failed, the caller gets a 502.
    sfn = boto3.client("stepfunctions", region_name=REGION)
    sfn.delete_state_machine(
        stateMachineArn=sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    )
    recorder = run("generation.handler", no_wait)
    generation = _fresh("generation")
    refused = request_body("A comet", quality="low", customer_id=302)
    assert _call(generation, _async(http_event(body=refused, customer_id=302)))[0] == 502
    calls += recorder.calls

    compare(dev, "generation.handler", resolve, calls)


@pytest.fixture
def webhooks():
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


def _delivered(webhooks: WebhookReceiver, path: str) -> dict:
    """The one signed delivery to ``path``, its signature checked with the stack's secret."""
    (delivery,) = webhooks.for_path(path)
    return Webhook("whsec_" + WEBHOOK_KEY).verify(delivery.body, delivery.headers)


@pytest.mark.parametrize("stage", ["dev", "prod"], indirect=True)  # presigned, cloudfront
def test_each_job_task_calls_exactly_what_it_is_granted(stage, probe, webhooks):
    run, resolve, _, _ = probe
    # The receiver is on localhost, not a public https host: trusted, as the local stack does.
    trusted = {"TRUSTED_CALLBACK_ORIGINS": webhooks.origin}
    flux = "flux-pro-1.1"
    low = {"quality": "low"}
    # One customer per job: no job meets another's rate limit.
    bodies = {
        # synchronous providers (run makes the whole call): stored, inline, from an input image
        "stored": request_body("A lighthouse", customer_id=201, **low)
        | {"callback_url": webhooks.url("/stored")},
        "inline": request_body("A harbour", customer_id=202, save_to_db=False, **low)
        | {"callback_url": webhooks.url("/inline")},
        "edit": request_body(
            "A harbour at night",
            customer_id=203,
            input_images=[data_url(image_bytes("png", 64, 64))],
            **low,
        ),
        "unstorable": request_body("A pier", customer_id=204, **low),
        "timed_out": request_body("A glacier", customer_id=205, **low)
        | {"callback_url": webhooks.url("/failed")},
        # every other provider's key, each from its own secret
        "stability": request_body("A dune", model="core", customer_id=206),
        "gemini": request_body("A fjord", model="gemini", customer_id=207, save_to_db=False),
        "xai": request_body("A mesa", model="grok", customer_id=208),
        # Flux: submit, poll, store
        "flux": request_body("A fox [polls=0]", model=flux, customer_id=209)
        | {"callback_url": webhooks.url("/flux")},
        "flux_inline": request_body(
            "A hare [polls=0]", model=flux, customer_id=210, save_to_db=False
        ),
        "flux_moderated": request_body("Refused [moderate]", model=flux, customer_id=211),
        "flux_unstorable": request_body("An owl [polls=0]", model=flux, customer_id=212),
    }
    run("generation.handler", trusted)
    generation = _fresh("generation")
    job_ids = {name: _start(generation, body) for name, body in bodies.items()}
    inputs = _workflow_inputs()
    state = {name: inputs[job_id] for name, job_id in job_ids.items()}

    tasks = TaskFunctions(run, trusted)
    # Run: a synchronous provider's job ends here, succeeded or failed; Flux's is submitted.
    for name in ("stored", "inline", "edit", "stability", "gemini", "xai"):
        state[name] = tasks.invoke("run", state[name])
        assert state[name]["status"] == "Succeeded", name
    # the image cannot be stored: the job fails, and what landed is removed
    state["unstorable"] = tasks.invoke("run", state["unstorable"], fail_put_under="customers/")
    assert state["unstorable"]["status"] == "Failed"
    for name in ("flux", "flux_inline", "flux_moderated", "flux_unstorable"):
        state[name] = tasks.invoke("run", state[name])
        assert state[name]["status"] == "Submitted", name
        state[name] = tasks.invoke("poll", state[name])
    assert state["flux_moderated"]["status"] == "Failed"  # refused at the poll
    for name in ("flux", "flux_inline"):
        assert state[name]["status"] == "Ready", name
        state[name] = tasks.invoke("store", state[name])
        assert state[name]["status"] == "Succeeded", name
    state["flux_unstorable"] = tasks.invoke(
        "store", state["flux_unstorable"], fail_put_under="customers/"
    )
    assert state["flux_unstorable"]["status"] == "Failed"
    # The Run state timed out: its catch hands record_failure the error.
    failure = {"Error": "States.Timeout", "Cause": "The task timed out."}
    state["timed_out"] = tasks.invoke("record_failure", state["timed_out"] | {"error": failure})
    assert state["timed_out"]["status"] == "Failed"
    # Every job ends in Notify: one signed POST to a job's callback_url, none without one.
    for name in state:
        assert tasks.invoke("notify", state[name])["webhook"] == {"next": "Done"}, name
    stored = _delivered(webhooks, "/stored")["data"]["data"]
    if stage.settings.image_url.mode == "presigned":
        assert "X-Amz-Signature=" in stored["image_url"]  # signed by the notify function
    else:
        assert stored["image_url"].startswith(f"https://{CDN_DOMAIN}/customers/")
    assert _delivered(webhooks, "/inline")["data"]["data"]["image_url"].startswith("data:image/")
    assert _delivered(webhooks, "/flux")["type"] == "image.job.succeeded"
    assert _delivered(webhooks, "/failed")["type"] == "image.job.failed"
    assert len(webhooks.deliveries) == 4
    # notify's one read of its secret, through the stand-in extension (each invocation is a
    # cold start here), and no Secrets Manager client of its own
    reads = [c for c in tasks.calls["notify"] if c.action == "secretsmanager:GetSecretValue"]
    assert len(reads) == 4
    assert all(c.resource.split(":secret:")[1].startswith("probe/webhook-") for c in reads)

    for step in TASKS:
        compare(stage, f"job_tasks.{step}", resolve, tasks.calls[step])


def test_the_authorizer_reads_only_its_jwt_secret_through_the_extension(dev, probe):
    run, resolve, extension, _ = probe
    recorder = run("authorizer.handler")
    os.environ["AWS_SESSION_TOKEN"] = "probe-session"
    authorizer = _fresh("authorizer")
    token = jwt.encode(
        {"customer_id": 5, "exp": int(time.time()) + 300}, JWT_SECRET, algorithm="HS256"
    )
    decision = authorizer.handler({"headers": {"authorization": f"Bearer {token}"}}, None)
    assert decision["isAuthorized"] is True
    calls = recorder.calls + [Call("secretsmanager:GetSecretValue", s) for s in extension.asked]
    compare(dev, "authorizer.handler", resolve, calls)


def test_health_calls_nothing_and_is_granted_nothing_but_its_logs(dev, probe):
    run, resolve, _, _ = probe
    recorder = run("health.handler")
    response = _fresh("health").handler(http_event("GET", "/health", customer_id=None), None)
    assert response["statusCode"] == 200
    compare(dev, "health.handler", resolve, recorder.calls)


def test_the_probe_catches_a_missing_and_an_unused_grant(dev, probe):
    """The comparison itself: a call nobody granted, and a grant nobody used, both fail it."""
    _, resolve, _, _ = probe
    stray = Call("s3:GetObject", f"arn:aws:s3:::{BUCKET}/secrets/x")
    with pytest.raises(AssertionError, match="does not grant"):
        compare(dev, "health.handler", resolve, [stray])
    with pytest.raises(AssertionError, match="never uses"):
        compare(dev, "job_tasks.record_failure", resolve, [])


class _OneRole:
    """A template's stand-in: one function (``probe.handler``) whose role holds these
    statements — the comparison's condition rules, without a synth."""

    def __init__(self, *statements: dict) -> None:
        self.statements = list(statements)

    def resources(self, resource_type: str) -> dict:
        if resource_type == "AWS::Lambda::Function":
            role = {"Fn::GetAtt": ["Role", "Arn"]}
            return {"Fn": {"Properties": {"Handler": "probe.handler", "Role": role}}}
        document = {"Statement": self.statements}
        return {"Policy": {"Properties": {"Roles": [{"Ref": "Role"}], "PolicyDocument": document}}}


def test_the_probe_checks_each_condition_value_and_refuses_listing_the_whole_bucket():
    bucket, table = f"arn:aws:s3:::{BUCKET}", _table_arn(JOBS_TABLE)
    resolve = Resolver({})
    listing = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket}
    both = listing | {"Condition": {"StringLike": {"s3:prefix": ["customers/*", "jobs/*"]}}}
    missing_asset = _listed("customers/1/assets/x.png")
    compare(_OneRole(both), "probe.handler", resolve, [missing_asset, _listed("jobs/1/x.png")])
    with pytest.raises(AssertionError, match="never uses"):  # jobs/* is a grant of its own
        compare(_OneRole(both), "probe.handler", resolve, [missing_asset])
    with pytest.raises(AssertionError, match="s3:ListBucket"):  # every key in the bucket
        compare(_OneRole(listing), "probe.handler", resolve, [missing_asset])

    keys_only = {
        "Effect": "Allow",
        "Action": "dynamodb:DeleteItem",
        "Resource": table,
        "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["idem#*"]}},
    }
    free_key = Call("dynamodb:DeleteItem", table, ("dynamodb:LeadingKeys", "idem#1#ab"))
    delete_job = Call("dynamodb:DeleteItem", table, ("dynamodb:LeadingKeys", "job#ab"))
    compare(_OneRole(keys_only), "probe.handler", resolve, [free_key])
    with pytest.raises(AssertionError, match="does not grant"):
        compare(_OneRole(keys_only), "probe.handler", resolve, [free_key, delete_job])


def _listed(key: str) -> Call:
    return Call("s3:ListBucket", f"arn:aws:s3:::{BUCKET}", ("s3:prefix", key))


def test_the_models_check_reads_only_the_keys_of_the_providers_that_publish_a_list(dev, probe):
    run, resolve, _, _ = probe
    recorder = run("models_check.handler")
    report = _fresh("models_check").handler({"time": "2026-11-30T06:00:00Z"}, Context())
    assert report["failed_lists"] == 0  # every list read, with its key from its own secret
    compare(dev, "models_check.handler", resolve, recorder.calls)
