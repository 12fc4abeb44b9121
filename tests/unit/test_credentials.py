"""Provider keys: environment first, else that provider's own Secrets Manager secret (cached by
Powertools), named by ``{PREFIX}_API_KEY_SECRET_ARN``."""

import pytest
from aws_lambda_powertools.utilities import parameters

from image_common.credentials import SECRET_MAX_AGE_SECONDS, provider_endpoint
from image_common.errors import ProviderError, ProviderNotConfigured

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:providers/openai-AbCdEf"


@pytest.fixture
def secret(monkeypatch):
    """OpenAI's secret ARN set (no other provider's), keys not in the environment; records
    Powertools calls."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "STABILITY_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("STABILITY_API_KEY_SECRET_ARN", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY_SECRET_ARN", ARN)
    calls = []

    def set_answer(answer):
        def fake_get_secret(name, **kwargs):
            calls.append((name, kwargs))
            if isinstance(answer, Exception):
                raise answer
            return answer

        monkeypatch.setattr(parameters, "get_secret", fake_get_secret)

    return set_answer, calls


def test_a_key_comes_from_the_secret_with_the_default_base_url(secret):
    set_answer, calls = secret
    set_answer({"api_key": "sk-from-secret-0123456789"})
    endpoint = provider_endpoint("openai")
    assert endpoint.api_key == "sk-from-secret-0123456789"
    assert endpoint.base_url == "https://api.openai.com/v1"
    assert calls == [(ARN, {"transform": "json", "max_age": SECRET_MAX_AGE_SECONDS})]
    assert "sk-from-secret" not in repr(endpoint)


def test_the_environment_wins_over_the_secret(secret, monkeypatch):
    set_answer, calls = secret
    set_answer({"api_key": "sk-from-secret-0123456789"})
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-0123456789")
    assert provider_endpoint("openai").api_key == "sk-from-env-0123456789"
    assert calls == []  # the secret is not even read


def test_a_provider_whose_secret_this_function_was_not_given_is_not_configured(secret):
    set_answer, calls = secret
    set_answer({"api_key": "sk-from-secret-0123456789"})
    with pytest.raises(ProviderNotConfigured) as caught:
        provider_endpoint("stability")
    assert caught.value.status == 502
    assert calls == []  # no other provider's secret is asked for


def test_a_secret_still_holding_its_placeholder_is_not_configured(secret):
    set_answer, _ = secret
    set_answer({"placeholder": "generated-at-deploy"})
    with pytest.raises(ProviderNotConfigured):
        provider_endpoint("openai")


@pytest.mark.parametrize(
    "answer", [RuntimeError(f"AccessDenied for {ARN}"), "not-a-json-object", ["a", "list"]]
)
def test_an_unreadable_secret_is_a_typed_502_that_names_no_arn(secret, answer):
    set_answer, _ = secret
    set_answer(answer)
    with pytest.raises(ProviderError) as caught:
        provider_endpoint("openai")
    assert caught.value.status == 502
    assert ARN not in caught.value.message and "123456789012" not in caught.value.message
