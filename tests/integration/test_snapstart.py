"""SnapStart hooks (``image_service.snapstart``): before the snapshot every client a first request
would create is created — with no network, no credentials looked up, no data read — and provider
keys are read from Secrets Manager (moto) instead of the extension; after a restore, keys,
the catalog overlay and credentials read before are read again. Run against moto and the
emulators, as the job's run step and the generation handler run."""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import subprocess
import sys
import textwrap
import types
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber

from image_common.credentials import UNREADABLE, provider_endpoint, provider_secrets
from image_common.provider_identity import PROVIDERS
from image_common.secret_extension import SecretUnavailable
from image_service import (
    aws,
    catalog,
    secrets_manager,
    snapstart,
)
from image_service import http as service_http
from image_service.service import ImageService
from image_service.storage import ImageStore
from tests.conftest import (
    PROVIDER_KEYS,
    LocalServer,
    RecordingJobRunner,
    http_event,
    request_body,
    start_job,
)

ROOT = Path(__file__).parents[2]
OPENAI = PROVIDERS["openai"]
ACCOUNT = "123456789012"
MISSING_ARN = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:image/providers/none-AbCdEf"
CREDENTIALS_PATH = "/2018-06-01/credentials"  # where Lambda's container endpoint answers


def forget_container() -> None:
    """A new container: no botocore session, no client, no catalog source yet (moto's state
    stays: it is AWS)."""
    aws.forget()
    catalog.catalog_settings.cache_clear()
    catalog.catalog_source.cache_clear()


@pytest.fixture(autouse=True)
def container():
    """The hooks change process-wide state (the key reader, the botocore session's credential
    lookup, random's state): each test gets it back as it found it."""
    read, state = provider_secrets.read, random.getstate()
    yield
    provider_secrets.read = read
    provider_secrets.clear()
    random.setstate(state)
    forget_container()
    service_http.set_http_client(None)  # the emulators fixture's teardown does the same


@contextmanager
def no_network(monkeypatch):
    """Every connection and name lookup refused, and recorded (in case one is swallowed)."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise ConnectionRefusedError("no network before the snapshot")

    with monkeypatch.context() as patched:
        patched.setattr(socket.socket, "connect", refuse)
        patched.setattr(socket.socket, "connect_ex", refuse)
        patched.setattr(socket, "getaddrinfo", refuse)
        yield attempts


@pytest.fixture
def client_count(monkeypatch):
    """How many botocore clients are created from now on (any session)."""
    created: list[str] = []
    create_client = botocore.session.Session.create_client

    def counting(self, service_name, *args, **kwargs):
        created.append(service_name)
        return create_client(self, service_name, *args, **kwargs)

    monkeypatch.setattr(botocore.session.Session, "create_client", counting)
    return created


@pytest.fixture
def job_state(s3, emulators, settings):
    """A pending OpenAI job, as the request path leaves it for the run step."""
    runner = RecordingJobRunner()
    start_job(ImageService(settings, ImageStore(settings), job_runner=runner), model="gpt-image-1")
    return runner.started[-1]


@pytest.fixture
def key_in_secrets_manager(s3, emulators, monkeypatch):
    """OpenAI's key only in Secrets Manager (moto), as deployed; no extension, and no session
    token (SnapStart gives none)."""
    arn = boto3.client("secretsmanager").create_secret(
        Name="image/providers/openai", SecretString=json.dumps({"api_key": PROVIDER_KEYS["openai"]})
    )["ARN"]
    monkeypatch.delenv(OPENAI.api_key_variable)
    monkeypatch.setenv(OPENAI.secret_arn_variable, arn)
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    monkeypatch.delenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", raising=False)
    return arn


# --- before the snapshot ---------------------------------------------------------------------


def test_before_snapshot_opens_no_connection_and_the_run_step_after_it_creates_no_client(
    job_tasks, job_state, emulators, monkeypatch, client_count
):
    forget_container()
    with no_network(monkeypatch) as attempts:
        with pytest.raises(ConnectionRefusedError):  # the guard holds
            socket.create_connection(("127.0.0.1", 9))
        attempts.clear()
        snapstart.before_snapshot()
    assert attempts == []
    assert sorted(client_count) == ["dynamodb", "s3", "secretsmanager", "ssm", "stepfunctions"]

    state = job_tasks.run(job_state, None)

    assert state["status"] == "Succeeded" and len(emulators["openai"].requests) == 1
    assert len(client_count) == 5  # none created by the run step


def test_before_snapshot_creates_the_provider_http_client_once_without_connecting(monkeypatch):
    made = []
    new_http_client = service_http.new_http_client
    monkeypatch.setattr(
        service_http, "new_http_client", lambda: made.append(1) or new_http_client()
    )
    service_http.set_http_client(None)
    forget_container()
    with no_network(monkeypatch) as attempts:
        snapstart.before_snapshot()
    assert attempts == [] and made == [1]
    assert service_http.get_http_client() is service_http.get_http_client() and made == [1]


def test_under_container_credentials_none_are_looked_up_before_the_snapshot_only_on_first_use(
    job_tasks, job_state, monkeypatch
):
    """SnapStart's shape: no access keys in the environment, credentials from Lambda's
    container endpoint (a local server here) — which botocore would call when a client is
    made, unless the lookup waits for the first signed request."""
    endpoint = LocalServer()
    endpoint.answer(CREDENTIALS_PATH, body={
        "AccessKeyId": "ASIAFROMCONTAINER", "SecretAccessKey": "container-secret",
        "Token": "container-token", "Expiration": "2999-01-01T00:00:00Z",
    })  # fmt: skip
    try:
        # Changed inside moto's mock (it sets access keys of its own), put back before it ends.
        with mock.patch.dict("os.environ"):
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
                os.environ.pop(name, None)
            os.environ.update({
                "AWS_CONTAINER_CREDENTIALS_FULL_URI":
                    f"http://127.0.0.1:{endpoint.port}{CREDENTIALS_PATH}",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container-auth",
                "AWS_CONFIG_FILE": "/nonexistent/config",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
            })  # fmt: skip
            forget_container()
            with no_network(monkeypatch) as attempts:
                snapstart.before_snapshot()
            assert attempts == [] and endpoint.hits(CREDENTIALS_PATH) == 0

            assert job_tasks.run(job_state, None)["status"] == "Succeeded"
            assert endpoint.hits(CREDENTIALS_PATH) == 1  # once, shared by every client
            assert endpoint.requests[-1][1]["Authorization"] == "container-auth"

            snapstart.after_restore()  # credentials belong to the environment that got them
            aws.client("dynamodb").describe_table(TableName="test-jobs")
            assert endpoint.hits(CREDENTIALS_PATH) == 2
    finally:
        endpoint.close()


# --- provider keys under SnapStart -----------------------------------------------------------


def test_after_before_snapshot_the_run_step_reads_the_key_from_secrets_manager(
    job_tasks, job_state, key_in_secrets_manager, emulators
):
    forget_container()
    snapstart.before_snapshot()

    state = job_tasks.run(job_state, None)

    assert state["status"] == "Succeeded"
    (call,) = emulators["openai"].requests
    assert call.headers["authorization"] == f"Bearer {PROVIDER_KEYS['openai']}"


@pytest.fixture
def generation(s3, emulators, inline_generation):
    return inline_generation


def test_a_missing_secret_is_the_credentials_502_naming_no_arn_in_the_answer_or_the_log(
    generation, key_in_secrets_manager, monkeypatch, lambda_context, capsys, caplog
):
    monkeypatch.setenv(OPENAI.secret_arn_variable, MISSING_ARN)
    forget_container()
    snapstart.before_snapshot()
    caplog.set_level(logging.INFO)

    response = generation.handler(http_event(body=request_body(quality="low")), lambda_context)

    body = json.loads(response["body"])
    assert response["statusCode"] == 502
    assert body["error"]["type"] == "provider_error" and body["error"]["message"] == UNREADABLE
    unreadable = [r for r in caplog.records if r.getMessage() == "provider secret unreadable"]
    assert [r.__dict__["reason"] for r in unreadable] == [
        "Secrets Manager: ResourceNotFoundException"
    ]
    printed = capsys.readouterr()
    for text in (response["body"], printed.out, printed.err,
                 *(str(r.__dict__) for r in caplog.records)):  # fmt: skip
        assert MISSING_ARN not in text and "image/providers/none" not in text
        assert PROVIDER_KEYS["openai"] not in text


# --- the reader's failures -------------------------------------------------------------------

SECRET_TEXT = json.dumps({"api_key": "sk-never-in-a-reason-0123"})


def stubbed_error(code: str):
    def prepare(monkeypatch) -> str:
        stubber = Stubber(aws.client("secretsmanager"))
        stubber.add_client_error(
            "get_secret_value",
            service_error_code=code,
            service_message=f"User arn:aws:iam::{ACCOUNT}:role/x is not allowed on {MISSING_ARN}",
        )
        stubber.activate()
        return MISSING_ARN

    return prepare


def missing_secret(monkeypatch) -> str:
    return MISSING_ARN  # moto's own ResourceNotFoundException


def binary_secret(monkeypatch) -> str:
    return boto3.client("secretsmanager").create_secret(
        Name="image/providers/binary", SecretBinary=SECRET_TEXT.encode()
    )["ARN"]


def unreachable_endpoint(monkeypatch) -> str:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", f"http://127.0.0.1:{port}")
    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda seconds: None)  # its one retry
    return MISSING_ARN


@pytest.mark.parametrize(
    ("prepare", "reason"),
    [
        (missing_secret, "Secrets Manager: ResourceNotFoundException"),
        (stubbed_error("AccessDeniedException"), "Secrets Manager: AccessDeniedException"),
        (stubbed_error("ThrottlingException"), "Secrets Manager: ThrottlingException"),
        (unreachable_endpoint, "Secrets Manager: EndpointConnectionError"),
        (binary_secret, "the secret has no SecretString (binary secrets are not supported)"),
    ],
    ids=["missing", "access-denied", "throttled", "unreachable", "binary"],
)
def test_each_failure_of_the_reader_is_secret_unavailable_with_a_reason_and_no_secret(
    s3, monkeypatch, prepare, reason
):
    forget_container()
    arn = prepare(monkeypatch)

    with pytest.raises(SecretUnavailable) as raised:
        secrets_manager.read_secret_string(arn)

    assert str(raised.value) == reason
    shown = raised.value.__cause__ or (
        None if raised.value.__suppress_context__ else raised.value.__context__
    )
    assert shown is None  # no AWS error (its message names the ARN) in a traceback either
    for secret_or_place in (arn, ACCOUNT, SECRET_TEXT, "sk-never-in-a-reason"):
        assert secret_or_place not in repr(raised.value)


def test_the_reader_returns_the_secret_string(s3):
    arn = boto3.client("secretsmanager").create_secret(
        Name="image/providers/text", SecretString=SECRET_TEXT
    )["ARN"]
    assert secrets_manager.read_secret_string(arn) == SECRET_TEXT


# --- after a restore -------------------------------------------------------------------------


def test_after_restore_a_key_read_before_is_read_again(key_in_secrets_manager):
    forget_container()
    snapstart.before_snapshot()
    assert provider_endpoint("openai").api_key == PROVIDER_KEYS["openai"]
    boto3.client("secretsmanager").put_secret_value(
        SecretId=key_in_secrets_manager, SecretString=json.dumps({"api_key": "sk-rotated-0123"})
    )
    assert provider_endpoint("openai").api_key == PROVIDER_KEYS["openai"]  # kept for max age

    snapstart.after_restore()

    assert provider_endpoint("openai").api_key == "sk-rotated-0123"


def test_after_restore_the_catalog_overlay_read_before_is_read_again(s3, monkeypatch):
    ssm = boto3.client("ssm")
    parameter = "/image-service/test/catalog-overlay"
    alias = {"aliases": {"openai": "gpt-image-2.6-flare"}}
    ssm.put_parameter(Name=parameter, Value=json.dumps(alias), Type="String")
    monkeypatch.setenv("CATALOG_OVERLAY_PARAMETER", parameter)
    forget_container()
    snapstart.before_snapshot()
    assert catalog.current_catalog().aliases["openai"] == "gpt-image-2.6-flare"
    moved = {"aliases": {"openai": "gpt-image-1"}}
    ssm.put_parameter(Name=parameter, Value=json.dumps(moved), Type="String", Overwrite=True)
    assert catalog.current_catalog().aliases["openai"] == "gpt-image-2.6-flare"  # max age

    snapstart.after_restore()

    assert catalog.current_catalog().aliases["openai"] == "gpt-image-1"


def test_after_restore_random_draws_differ_from_what_the_snapshot_would_give():
    random.seed(14)  # the state a snapshot would hold
    from_the_snapshot = [random.random() for _ in range(4)]
    random.seed(14)

    snapstart.after_restore()

    assert [random.random() for _ in range(4)] != from_the_snapshot


def test_after_restore_gives_openssl_fresh_entropy(monkeypatch):
    added = []
    monkeypatch.setattr("ssl.RAND_add", lambda data, entropy: added.append((data, entropy)))

    snapstart.after_restore()
    snapstart.after_restore()

    assert [len(data) for data, _ in added] == [48, 48] and added[0][0] != added[1][0]
    assert all(entropy == 48.0 for _, entropy in added)


# --- registration ----------------------------------------------------------------------------


class FakeSnapshotRestore(types.ModuleType):
    """What Lambda's ``snapshot_restore_py`` offers: two registration calls."""

    def __init__(self) -> None:
        super().__init__("snapshot_restore_py")
        self.before: list = []
        self.after: list = []
        self.register_before_snapshot = self.before.append
        self.register_after_restore = self.after.append


def test_register_hands_both_hooks_to_snapshot_restore_py_and_they_run(s3, monkeypatch):
    fake = FakeSnapshotRestore()
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", fake)
    forget_container()

    snapstart.register()

    assert fake.before == [snapstart.before_snapshot]
    assert fake.after == [snapstart.after_restore]
    for hook in (*fake.before, *fake.after):
        hook()
    assert provider_secrets.read is secrets_manager.read_secret_string


def test_without_snapshot_restore_py_register_changes_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import fails
    read = provider_secrets.read

    snapstart.register()

    assert provider_secrets.read is read


def test_both_entry_points_register_the_hooks_at_import_without_importing_botocore(tmp_path):
    (tmp_path / "snapshot_restore_py.py").write_text(textwrap.dedent("""
        registered = []
        def register_before_snapshot(hook): registered.append(("before", hook.__qualname__))
        def register_after_restore(hook): registered.append(("after", hook.__qualname__))
    """))  # fmt: skip
    probe = textwrap.dedent("""
        import json, os, sys
        os.environ.setdefault("IMAGE_BUCKET", "probe-bucket")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Probe")
        import snapshot_restore_py
        name = sys.argv[1]
        __import__(name)
        print(json.dumps({"registered": snapshot_restore_py.registered,
                          "botocore": "botocore.session" in sys.modules}))
    """)
    path = f"{tmp_path}:{ROOT / 'functions/generation'}:{ROOT / 'layers/common/python'}"
    for entry_point in ("generation", "job_tasks"):
        result = subprocess.run(
            [sys.executable, "-c", probe, entry_point],
            env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        seen = json.loads(result.stdout.strip().splitlines()[-1])
        assert seen == {
            "registered": [["before", "before_snapshot"], ["after", "after_restore"]],
            "botocore": False,
        }, entry_point
