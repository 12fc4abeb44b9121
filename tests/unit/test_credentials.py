"""Provider keys: environment first, else that provider's own Secrets Manager secret (named by
``{PREFIX}_API_KEY_SECRET_ARN``), read through the Parameters and Secrets extension (a local
server stands in for it) and cached per container."""

import json
import logging
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from image_common.credentials import (
    SECRET_RETRY_SECONDS,
    UNREADABLE,
    SecretCache,
    provider_endpoint,
    provider_secrets,
)
from image_common.errors import ProviderError, ProviderNotConfigured
from image_common.secret_extension import SecretUnavailable
from tests.clock import ManualClock
from tests.conftest import LocalServer

ROOT = Path(__file__).parents[2]
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


# --- the read schedule, on an injected clock and a counting reader -------------------------------


class Reader:
    """A counting stand-in for the extension: a key, or the failure the test sets."""

    def __init__(self) -> None:
        self.reads: list[str] = []
        self.failure: Exception | None = None
        self.answer = json.dumps({"api_key": "sk-first-0123456789"})

    def __call__(self, arn: str) -> str:
        self.reads.append(arn)
        if self.failure is not None:
            raise self.failure
        return self.answer


def a_cache(reader: Reader, clock: ManualClock) -> SecretCache:
    return SecretCache(
        read=reader,
        max_age_seconds=3600,
        retry_seconds=10,
        stale_grace_seconds=900,
        monotonic=clock,
    )


def test_after_a_failed_read_the_next_request_fails_fast_until_the_retry_then_reads_again(
    extension, monkeypatch
):
    now = ManualClock()
    monkeypatch.setattr(provider_secrets, "monotonic", now)
    extension.answer(EXTENSION_PATH, status=500, body=b"throttled")
    with pytest.raises(ProviderError) as first:
        provider_endpoint("openai")
    extension.answer(EXTENSION_PATH, body=secret_answer("sk-late-0123"))
    now.advance(SECRET_RETRY_SECONDS - 1)
    with pytest.raises(ProviderError) as fast:
        provider_endpoint("openai")
    assert (fast.value.status, fast.value.type, fast.value.message) == (
        502,
        "provider_error",
        first.value.message,
    )
    assert extension.hits(EXTENSION_PATH) == 1  # the second request did not read
    now.advance(1)
    assert provider_endpoint("openai").api_key == "sk-late-0123"
    assert extension.hits(EXTENSION_PATH) == 2


def test_a_rotated_secret_is_read_again_after_the_max_age():
    now, reads = ManualClock(), []

    def read(arn):
        reads.append(arn)
        return json.dumps({"api_key": f"sk-{len(reads)}"})

    cache = SecretCache(read=read, max_age_seconds=3600, monotonic=now)
    assert cache.get(ARN)["api_key"] == "sk-1"
    now.advance(3599)
    assert cache.get(ARN)["api_key"] == "sk-1"
    now.advance(1)
    assert cache.get(ARN)["api_key"] == "sk-2"
    assert len(reads) == 2


def test_during_an_outage_requests_make_one_read_per_retry_interval_and_each_gets_the_502(caplog):
    reader, now = Reader(), ManualClock()
    reader.failure = SecretUnavailable("extension answered 429")
    cache = a_cache(reader, now)
    answers = []
    with caplog.at_level(logging.ERROR):
        for _ in range(3):  # three intervals of 10 s, a request every 2 s
            for _ in range(5):
                with pytest.raises(ProviderError) as caught:
                    cache.get(ARN)
                answers.append((caught.value.status, caught.value.type, caught.value.message))
                now.advance(2)
    assert len(reader.reads) == 3
    assert set(answers) == {(502, "provider_error", "The provider credentials could not be read.")}
    lines = [r for r in caplog.records if r.getMessage() == "provider secret unreadable"]
    assert [(r.__dict__["reason"], r.__dict__["retry_in_seconds"]) for r in lines] == [
        ("extension answered 429", 10)
    ] * 3  # one line per read, not per request
    assert ARN not in caplog.text and "123456789012" not in caplog.text


def test_after_an_outage_the_first_read_past_the_interval_recovers_and_max_age_resumes():
    reader, now = Reader(), ManualClock()
    reader.failure = SecretUnavailable("extension unreachable (URLError)")
    cache = a_cache(reader, now)
    with pytest.raises(ProviderError):
        cache.get(ARN)
    reader.failure = None
    now.advance(10)
    assert cache.get(ARN)["api_key"] == "sk-first-0123456789"
    now.advance(3599)
    assert cache.get(ARN)["api_key"] == "sk-first-0123456789"
    assert len(reader.reads) == 2  # the failure, the recovery; nothing during the max age
    now.advance(1)
    cache.get(ARN)
    assert len(reader.reads) == 3


def test_a_secret_that_is_not_an_object_fails_fast_with_its_own_message_until_the_retry():
    reader, now = Reader(), ManualClock()
    reader.answer = '["a", "list"]'
    cache = a_cache(reader, now)
    for _ in range(2):
        with pytest.raises(ProviderError) as caught:
            cache.get(ARN)
        assert caught.value.message == "The provider credentials secret is not a JSON object."
    assert len(reader.reads) == 1


def test_a_read_that_raises_unexpectedly_is_claimed_too_the_next_request_fails_fast():
    reader, now = Reader(), ManualClock()
    reader.failure = RuntimeError("a bug in the reader")
    cache = a_cache(reader, now)
    with pytest.raises(RuntimeError):
        cache.get(ARN)
    with pytest.raises(ProviderError) as caught:
        cache.get(ARN)
    assert caught.value.message == "The provider credentials could not be read."
    assert len(reader.reads) == 1


def test_an_expired_key_whose_refresh_fails_is_served_for_the_grace_with_one_read_per_interval(
    caplog,
):
    reader, now = Reader(), ManualClock()
    cache = a_cache(reader, now)
    assert cache.get(ARN)["api_key"] == "sk-first-0123456789"
    reader.failure = SecretUnavailable("extension answered 500")
    now.advance(3600)  # expired: a refresh is due, and fails
    with caplog.at_level(logging.WARNING):
        for _ in range(10):  # 20 s of requests
            assert cache.get(ARN)["api_key"] == "sk-first-0123456789"
            now.advance(2)
    assert len(reader.reads) == 1 + 2  # the good read, then one failed refresh per interval
    lines = [r for r in caplog.records if "last good key stays" in r.getMessage()]
    assert len(lines) == 2 and lines[0].levelno == logging.WARNING
    assert "sk-first" not in caplog.text and ARN not in caplog.text


def test_past_the_grace_a_stale_key_is_no_longer_served_and_requests_fail_fast():
    reader, now = Reader(), ManualClock()
    cache = a_cache(reader, now)
    cache.get(ARN)
    reader.failure = SecretUnavailable("extension answered 500")
    now.advance(3600 + 895)  # the refresh fails 5 s before the grace ends: still served
    assert cache.get(ARN)["api_key"] == "sk-first-0123456789"
    now.advance(5)  # the grace is over, inside the retry interval: no read, the 502
    with pytest.raises(ProviderError) as caught:
        cache.get(ARN)
    assert (caught.value.status, caught.value.message) == (502, UNREADABLE)
    assert len(reader.reads) == 2
    now.advance(5)
    with pytest.raises(ProviderError):
        cache.get(ARN)
    assert len(reader.reads) == 3


def test_a_good_read_during_the_grace_gives_a_fresh_key_a_full_lifetime():
    reader, now = Reader(), ManualClock()
    cache = a_cache(reader, now)
    cache.get(ARN)
    reader.failure = SecretUnavailable("extension answered 500")
    now.advance(3600)
    cache.get(ARN)  # stale, refresh failed
    reader.failure, reader.answer = None, json.dumps({"api_key": "sk-rotated-0123456789"})
    now.advance(10)
    assert cache.get(ARN)["api_key"] == "sk-rotated-0123456789"
    reader.failure = SecretUnavailable("extension answered 500")
    now.advance(3599 + 900)  # the new key's grace counts from its own read
    assert cache.get(ARN)["api_key"] == "sk-rotated-0123456789"
    assert len(reader.reads) == 4


def test_each_secret_keeps_its_own_schedule():
    other = ARN.replace("openai", "xai")
    reader, now = Reader(), ManualClock()
    cache = a_cache(reader, now)
    reader.failure = SecretUnavailable("extension answered 500")
    with pytest.raises(ProviderError):
        cache.get(ARN)
    reader.failure = None
    assert cache.get(other)["api_key"] == "sk-first-0123456789"  # not held back by ARN's retry
    assert reader.reads == [ARN, other]


def a_counting_cache(reader: Reader, clock: ManualClock) -> tuple[SecretCache, list[float]]:
    """A cache whose stale serves are recorded with the clock's time."""
    cache = a_cache(reader, clock)
    served_stale: list[float] = []
    cache.record_stale = lambda: served_stale.append(clock.now)
    return cache, served_stale


def test_each_request_served_a_key_from_its_stale_grace_is_counted_and_no_other():
    reader, now = Reader(), ManualClock()
    cache, served_stale = a_counting_cache(reader, now)
    start = now.now
    cache.get(ARN)
    now.advance(3599)
    cache.get(ARN)  # fresh: a second before its max age
    assert served_stale == []
    reader.failure = SecretUnavailable("extension answered 500")
    now.advance(1)
    assert cache.get(ARN)["api_key"] == "sk-first-0123456789"  # the refresh failed: stale
    now.advance(2)
    assert cache.get(ARN)["api_key"] == "sk-first-0123456789"  # inside the retry: stale, no read
    assert served_stale == [start + 3600, start + 3602]
    now.advance(900)  # past the grace: the 502, not a stale key
    with pytest.raises(ProviderError):
        cache.get(ARN)
    assert len(served_stale) == 2


def test_a_key_read_again_after_a_stale_serve_is_fresh_and_not_counted():
    reader, now = Reader(), ManualClock()
    cache, served_stale = a_counting_cache(reader, now)
    cache.get(ARN)
    reader.failure = SecretUnavailable("extension answered 500")
    now.advance(3600)
    cache.get(ARN)
    reader.failure = None
    now.advance(10)
    cache.get(ARN)  # read fine: a full lifetime again
    now.advance(3599)
    cache.get(ARN)
    assert len(served_stale) == 1


def test_a_failed_first_read_serves_no_key_and_counts_nothing():
    reader, now = Reader(), ManualClock()
    cache, served_stale = a_counting_cache(reader, now)
    reader.failure = SecretUnavailable("extension unreachable (URLError)")
    for _ in range(2):
        with pytest.raises(ProviderError):
            cache.get(ARN)
        now.advance(5)
    assert served_stale == []


@pytest.mark.parametrize("entry_point", ["generation", "job_tasks", "models_check"])
def test_every_entry_point_that_may_read_a_provider_key_counts_its_stale_serves(entry_point):
    """In a fresh interpreter, as Lambda loads it: importing the handler module points the key
    cache at the metric (image_common's default counts nothing)."""
    probe = (
        f"import {entry_point}\n"
        "from image_common.credentials import provider_secrets\n"
        "from image_service.telemetry import record_stale_provider_key\n"
        "print(provider_secrets.record_stale is record_stale_provider_key)\n"
    )
    env = {
        "PYTHONPATH": f"{ROOT / 'functions/generation'}:{ROOT / 'layers/common/python'}",
        "PATH": "/usr/bin:/bin",
        "IMAGE_BUCKET": "probe-bucket",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "True"
