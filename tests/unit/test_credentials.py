"""Provider keys: environment first, else that provider's own Secrets Manager secret (named by
``{PREFIX}_API_KEY_SECRET_ARN``), read through the Parameters and Secrets extension (a local
server stands in for it) and cached per container."""

import json
from urllib.parse import parse_qs, urlparse

import pytest

from image_common.credentials import SecretCache, provider_endpoint, provider_secrets
from image_common.errors import ProviderError, ProviderNotConfigured
from tests.conftest import LocalServer

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:providers/openai-AbCdEf"
SESSION_TOKEN = "session-token-of-this-container"
EXTENSION_PATH = "/secretsmanager/get"


def secret_answer(api_key: str = "sk-from-secret-0123") -> dict:
    return {"ARN": ARN, "SecretString": json.dumps({"api_key": api_key})}


@pytest.fixture
def extension(monkeypatch):
    """OpenAI's secret ARN set (no other provider's), keys not in the environment, the extension
    on a local port."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "STABILITY_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("STABILITY_API_KEY_SECRET_ARN", raising=False)
    server = LocalServer()
    server.answer(EXTENSION_PATH, body=secret_answer())
    monkeypatch.setenv("OPENAI_API_KEY_SECRET_ARN", ARN)
    monkeypatch.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(server.port))
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    provider_secrets.clear()
    yield server
    provider_secrets.clear()
    server.close()


def test_a_key_comes_from_the_providers_secret_through_the_extension(extension):
    endpoint = provider_endpoint("openai")
    assert endpoint.api_key == "sk-from-secret-0123"
    assert endpoint.base_url == "https://api.openai.com/v1"
    assert "sk-from-secret" not in repr(endpoint)
    ((path, headers),) = extension.requests
    assert parse_qs(urlparse(path).query) == {"secretId": [ARN]}
    assert headers["X-Aws-Parameters-Secrets-Token"] == SESSION_TOKEN


def test_the_secret_is_read_once_per_container(extension):
    for _ in range(3):
        assert provider_endpoint("openai").api_key == "sk-from-secret-0123"
    assert extension.hits(EXTENSION_PATH) == 1


def test_the_environment_wins_over_the_secret(extension, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-0123456789")
    assert provider_endpoint("openai").api_key == "sk-from-env-0123456789"
    assert extension.hits(EXTENSION_PATH) == 0  # the secret is not even read


def test_a_provider_whose_secret_this_function_was_not_given_is_not_configured(extension):
    with pytest.raises(ProviderNotConfigured) as caught:
        provider_endpoint("stability")
    assert caught.value.status == 502
    assert extension.hits(EXTENSION_PATH) == 0  # no other provider's secret is asked for


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, b"not ready"),  # e.g. called during init, or the grant is missing
        (200, b"<html>"),
        (200, {"SecretString": "not-json"}),
        (200, {"SecretString": '["a", "list"]'}),
        (200, {"SecretBinary": "AAAA"}),
    ],
)
def test_an_unreadable_secret_is_a_typed_502_that_names_no_arn(extension, status, body):
    extension.answer(EXTENSION_PATH, status=status, body=body)
    with pytest.raises(ProviderError) as caught:
        provider_endpoint("openai")
    assert caught.value.status == 502
    assert ARN not in caught.value.message and "123456789012" not in caught.value.message


def test_without_a_session_token_the_secret_is_a_502_and_the_extension_is_not_called(
    extension, monkeypatch
):
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    with pytest.raises(ProviderError):
        provider_endpoint("openai")
    assert extension.hits(EXTENSION_PATH) == 0


def test_a_failed_read_is_not_cached_the_next_request_tries_again(extension):
    extension.answer(EXTENSION_PATH, status=500, body=b"throttled")
    with pytest.raises(ProviderError):
        provider_endpoint("openai")
    extension.answer(EXTENSION_PATH, body=secret_answer("sk-late"))
    assert provider_endpoint("openai").api_key == "sk-late"


def test_a_rotated_secret_is_read_again_after_the_max_age():
    now, reads = [0.0], []

    def read(arn):
        reads.append(arn)
        return json.dumps({"api_key": f"sk-{len(reads)}"})

    cache = SecretCache(read=read, clock=lambda: now[0], max_age=3600)
    assert cache.get(ARN)["api_key"] == "sk-1"
    now[0] = 3599.0
    assert cache.get(ARN)["api_key"] == "sk-1"
    now[0] = 3600.0
    assert cache.get(ARN)["api_key"] == "sk-2"
    assert len(reads) == 2
