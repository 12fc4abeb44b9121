"""A provider key's secret during an outage, end to end: the generation function, its key only
in (moto's) Secrets Manager behind the Parameters and Secrets extension. Each request needing
the key is answered at once with the typed 502 while the retry interval runs — one read per
interval, not one per request — and the first read past it recovers. A key read fine before
is served past its max age for a grace, each such request counted as a metric."""

from __future__ import annotations

import json
import logging

import pytest
from moto import mock_aws

from image_common.credentials import (
    SECRET_MAX_AGE_SECONDS,
    SECRET_RETRY_SECONDS,
    provider_secrets,
)
from image_common.metric_names import NAMESPACE, PROVIDER_KEY_STALE_SERVED, SERVICE_DIMENSION
from image_common.provider_identity import PROVIDERS
from tests.clock import ManualClock
from tests.conftest import PROVIDER_KEYS, http_event, request_body

EXTENSION_PATH = "/secretsmanager/get"


@pytest.fixture
def openai_key_in_secrets_manager(s3, emulators, secrets_extension, monkeypatch):
    """OpenAI's key only in its secret (as deployed); the key cache on a test clock."""
    import boto3

    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="image-service-test/providers/openai",
            SecretString=json.dumps({"api_key": PROVIDER_KEYS["openai"]}),
        )["ARN"]
        monkeypatch.delenv(PROVIDERS["openai"].api_key_variable)
        monkeypatch.setenv(PROVIDERS["openai"].secret_arn_variable, arn)
        monkeypatch.setattr(provider_secrets, "monotonic", clock := ManualClock())
        yield arn, clock


@pytest.fixture
def generation(openai_key_in_secrets_manager, inline_generation):
    return inline_generation


def extension_fails(extension) -> None:
    """Secrets Manager throttling, as the extension passes it on."""
    extension.routes = {}
    extension.answer(EXTENSION_PATH, status=400, body=b"ThrottlingException: Rate exceeded")


def test_during_an_outage_requests_get_the_typed_502_at_once_and_the_secret_is_read_once(
    generation, openai_key_in_secrets_manager, secrets_extension, lambda_context, capsys, caplog
):
    arn, clock = openai_key_in_secrets_manager
    extension_fails(secrets_extension)
    caplog.set_level(logging.INFO)
    answers = []
    for _ in range(4):
        response = generation.handler(http_event(body=request_body(quality="low")), lambda_context)
        answers.append((response["statusCode"], json.loads(response["body"])["error"]))
        clock.now += 2
    invoked = generation.handler(request_body(quality="low"), lambda_context)

    assert secrets_extension.hits(EXTENSION_PATH) == 1
    assert {status for status, _ in answers} == {502}
    assert {(e["type"], e["message"]) for _, e in answers} == {
        ("provider_error", "The provider credentials could not be read.")
    }
    assert invoked["success"] is False and invoked["error"]["type"] == "provider_error"
    printed = capsys.readouterr()  # the metrics
    logged = [str(record.__dict__) for record in caplog.records]  # every log line, with extras
    for text in (json.dumps(answers), json.dumps(invoked), printed.out, printed.err, *logged):
        assert arn not in text and PROVIDER_KEYS["openai"] not in text
    unreadable = [r for r in caplog.records if r.getMessage() == "provider secret unreadable"]
    assert [r.__dict__["reason"] for r in unreadable] == ["extension answered 400"]  # one read


def test_the_first_request_past_the_retry_interval_reads_again_and_recovers(
    generation, openai_key_in_secrets_manager, secrets_extension, lambda_context
):
    _, clock = openai_key_in_secrets_manager
    extension_fails(secrets_extension)
    assert generation.handler(request_body(quality="low"), lambda_context)["success"] is False
    secrets_extension.answer_from_secrets_manager()  # the outage is over
    clock.now += SECRET_RETRY_SECONDS - 1
    assert generation.handler(request_body(quality="low"), lambda_context)["success"] is False
    assert secrets_extension.hits(EXTENSION_PATH) == 1
    clock.now += 1
    assert generation.handler(request_body(quality="low"), lambda_context)["success"] is True
    assert generation.handler(request_body(quality="low"), lambda_context)["success"] is True
    assert secrets_extension.hits(EXTENSION_PATH) == 2  # then kept for the max age


def stale_serves(stdout: str) -> list[dict]:
    """The EMF documents of stdout that carry the stale-key count."""
    documents = [json.loads(line) for line in stdout.splitlines() if line.startswith('{"_aws"')]
    return [d for d in documents if PROVIDER_KEY_STALE_SERVED in d]


def test_each_request_served_a_stale_key_is_counted_under_the_service_dimension_alone(
    generation, openai_key_in_secrets_manager, secrets_extension, lambda_context, capsys
):
    _, clock = openai_key_in_secrets_manager
    assert generation.handler(request_body(quality="low"), lambda_context)["success"] is True
    assert stale_serves(capsys.readouterr().out) == []  # a fresh key: not counted
    extension_fails(secrets_extension)
    clock.now += SECRET_MAX_AGE_SECONDS  # due for a refresh, which fails: the last good key
    for _ in range(2):
        assert generation.handler(request_body(quality="low"), lambda_context)["success"] is True
        clock.now += 2
    documents = stale_serves(capsys.readouterr().out)
    assert len(documents) == 2  # one per request, though only the first read the secret
    for document in documents:
        [directive] = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        assert directive["Dimensions"] == [[SERVICE_DIMENSION]]
        assert directive["Metrics"] == [{"Name": PROVIDER_KEY_STALE_SERVED, "Unit": "Count"}]
        assert document[PROVIDER_KEY_STALE_SERVED] in (1, [1])  # Powertools may list it
    assert secrets_extension.hits(EXTENSION_PATH) == 2
