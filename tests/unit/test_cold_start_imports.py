"""Cold start: the handler module imports what a request needs and nothing more — and a job's
first provider call reads its key through the secrets extension, without boto3 or cryptography."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from local.emulators.openai import OpenAIEmulator
from tests.conftest import LocalServer

ROOT = Path(__file__).parents[2]
PROBE = """
import json, os, sys
os.environ.setdefault("IMAGE_BUCKET", "probe-bucket")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Probe")
import generation
class Context:  # what Powertools' logger reads from Lambda's context
    function_name, memory_limit_in_mb, aws_request_id = "generation", 1024, "probe-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:generation"
if os.environ.get("PROBE_EVENT"):  # what a job's run task does: prepare, then the provider call
    from image_service.models import parse_request
    from image_service.pipeline import call_provider
    from image_service.providers import get_image_provider
    service = generation.image_service()
    prepared = service.prepare(parse_request(json.loads(os.environ["PROBE_EVENT"])),
                               timeout_seconds=20)
    result = call_provider(get_image_provider("openai"), prepared.provider_request)
    print(json.dumps({"success": True, "url": result.images[0].image.to_data_url()[:30]}))
print(json.dumps(sorted(m for m in sys.modules)))
"""
NEVER_ON_THE_FIRST_REQUEST = {
    "boto3",
    "botocore.client",
    "botocore.session",
    "s3transfer",
    "cryptography",
    "jwt",
    "aws_lambda_powertools.utilities.parameters",
    # the rest of Powertools' event_handler package: other resolvers, and asyncio with them
    "aws_lambda_powertools.event_handler.appsync",
    "aws_lambda_powertools.event_handler.bedrock_agent",
    "asyncio",
}


def run_probe(**env: str) -> list[str]:
    env = {"PYTHONPATH": f"{ROOT / 'functions/generation'}:{ROOT / 'layers/common/python'}",
           "PATH": "/usr/bin:/bin", **env}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()


def test_generation_handler_defers_boto3_and_provider_adapters():
    modules = set(json.loads(run_probe()[-1]))
    assert "generation" in modules and "image_service.service" in modules
    # boto3 loads on first storage use; each adapter only when its provider is first asked for
    # (Powertools imports the bare botocore package for its user agent: no client machinery)
    assert not NEVER_ON_THE_FIRST_REQUEST & modules
    adapters = {
        m
        for m in modules
        if m.startswith("image_service.providers.") and m != "image_service.providers.base"
    }
    assert adapters == set()
    assert not {"PIL", "moto", "local"} & modules
    # the daily catalog check shares the code asset, not the request path
    assert not {"models_check", "image_service.model_drift", "image_service.upstream_models"} & (
        modules
    )


def test_the_models_check_reads_the_key_header_without_importing_any_adapter():
    probe = (
        "import json, os, sys\n"
        "os.environ.setdefault('POWERTOOLS_METRICS_NAMESPACE', 'Probe')\n"
        "import models_check\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {"PYTHONPATH": f"{ROOT / 'functions/generation'}:{ROOT / 'layers/common/python'}",
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    modules = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert "image_service.upstream_models" in modules
    assert "image_common.provider_identity" in modules  # where the key header is written
    # the drift check's Lambda loads no adapter (their key headers live in the identity record)
    assert not {m for m in modules if m.startswith("image_service.providers")}


@pytest.fixture
def provider_and_extension():
    emulator = OpenAIEmulator()
    server = emulator.serve()
    extension = LocalServer()
    secret = json.dumps({"api_key": "sk-probe-0123456789"})
    extension.answer("/secretsmanager/get", body={"SecretString": secret})
    yield emulator, extension
    extension.close()
    server.shutdown()
    server.server_close()


def test_a_first_provider_call_reads_the_key_through_the_extension_without_boto3(
    provider_and_extension,
):
    emulator, extension = provider_and_extension
    event = {"prompt": "A lighthouse", "customer_id": 1, "save_to_db": False,
             "settings": {"image": {"model": "gpt-image-1"}}}  # fmt: skip
    lines = run_probe(
        PROBE_EVENT=json.dumps(event),
        OPENAI_BASE_URL=f"{emulator.base_url}/v1",
        OPENAI_API_KEY_SECRET_ARN="arn:aws:secretsmanager:us-east-1:123456789012:secret:openai-AbCdEf",
        PARAMETERS_SECRETS_EXTENSION_HTTP_PORT=str(extension.port),
        AWS_SESSION_TOKEN="probe-session-token",
    )
    assert json.loads(lines[-2]) == {"success": True, "url": "data:image/png;base64,iVBORw0K"}
    assert extension.hits("/secretsmanager/get") == 1
    modules = set(json.loads(lines[-1]))
    assert "image_service.providers.openai" in modules
    assert not NEVER_ON_THE_FIRST_REQUEST & modules


def test_powertools_event_handler_names_still_resolve_after_the_lean_import():
    probe = (
        "import http_resolver, sys\n"
        "assert 'aws_lambda_powertools.event_handler.appsync' not in sys.modules\n"
        "from aws_lambda_powertools.event_handler import AppSyncResolver, APIGatewayHttpResolver\n"
        "assert APIGatewayHttpResolver is http_resolver.APIGatewayHttpResolver\n"
        "print('ok')\n"
    )
    env = {"PYTHONPATH": str(ROOT / "functions/generation"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


AWS_PROBE = """
import json, sys
import generation, job_tasks
from image_service import aws, catalog
aws.client("dynamodb").list_tables()
aws.client("s3").list_buckets()
aws.client("stepfunctions").list_state_machines()
print(json.dumps({"openai": catalog.current_catalog().aliases["openai"],
                  "modules": sorted(sys.modules)}))
"""


def test_the_job_paths_aws_clients_and_the_catalog_overlay_need_no_boto3():
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        aws = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "probe",
               "AWS_SECRET_ACCESS_KEY": "probe", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
        boto3.client("ssm", endpoint_url=aws["AWS_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id="probe", aws_secret_access_key="probe").put_parameter(
            Name="/probe/overlay", Type="String",
            Value=json.dumps({"aliases": {"openai": "gpt-image-2.6-flare"}}))  # fmt: skip
        env = {"PYTHONPATH": f"{ROOT / 'functions/generation'}:{ROOT / 'layers/common/python'}",
               "PATH": "/usr/bin:/bin", "IMAGE_BUCKET": "probe-bucket",
               "POWERTOOLS_METRICS_NAMESPACE": "Probe", "CATALOG_OVERLAY_PARAMETER": "/probe/overlay",
               **aws}  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-c", AWS_PROBE], env=env, capture_output=True, text=True, check=False
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["openai"] == "gpt-image-2.6-flare"  # the overlay was read from SSM
    modules = set(answer["modules"])
    assert "botocore.client" in modules
    assert not {"boto3", "s3transfer", "aws_lambda_powertools.utilities.parameters"} & modules


WEBHOOK_PROBE = """
import json, os, sys
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Probe")
from image_common.settings import ServiceSettings
from image_service.webhooks import WebhookSender
settings = ServiceSettings(image_bucket="probe-bucket", webhook_secret_arn=os.environ["ARN"])
print(json.dumps({"secret": WebhookSender(settings)._secret(), "modules": sorted(sys.modules)}))
"""


def test_the_notify_step_reads_the_webhook_secret_through_the_extension_without_boto3():
    extension = LocalServer()
    secret = json.dumps({"WEBHOOK_SECRET": "cHJvYmUtd2ViaG9vay1rZXktMDEyMzQ1"})
    extension.answer("/secretsmanager/get", body={"SecretString": secret})
    env = {"PYTHONPATH": f"{ROOT / 'functions/generation'}:{ROOT / 'layers/common/python'}",
           "PATH": "/usr/bin:/bin", "AWS_SESSION_TOKEN": "probe-session-token",
           "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(extension.port),
           "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:webhook-AbCdEf"}  # fmt: skip
    try:
        result = subprocess.run(
            [sys.executable, "-c", WEBHOOK_PROBE], env=env, capture_output=True, text=True,
            check=False,
        )  # fmt: skip
    finally:
        extension.close()
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["secret"] == "whsec_cHJvYmUtd2ViaG9vay1rZXktMDEyMzQ1"
    assert extension.hits("/secretsmanager/get") == 1
    modules = set(answer["modules"])
    assert not {"boto3", "botocore.client", "aws_lambda_powertools.utilities.parameters"} & modules
