"""The authorizer counts its denials and its own failures as CloudWatch EMF lines on stdout,
so a broken JWT secret or an unreachable JWKS (403s for everyone) raises an alarm."""

from __future__ import annotations

import base64
import io
import json
import time

import authorizer
import jwt
import pytest

from image_common.metric_names import AUTHORIZER_DENIALS, AUTHORIZER_ERRORS, NAMESPACE
from jwt_authorizer.metrics import AuthorizerMetrics
from tests.conftest import AUTHORIZER_ENV

SECRET = "metrics-test-secret-0123456789abcdef-XYZ"


def _event(token: str | None) -> dict:
    return {"headers": {"authorization": f"Bearer {token}"} if token else {}}


@pytest.fixture
def emitted(monkeypatch):
    """The EMF documents the authorizer writes during a test."""
    out = io.StringIO()
    monkeypatch.setattr(
        authorizer, "metrics", AuthorizerMetrics(service="authz", out=out, clock=lambda: 1700.5)
    )
    for name in AUTHORIZER_ENV:
        monkeypatch.delenv(name, raising=False)
    authorizer.current_verifier.cache_clear()
    yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    authorizer.current_verifier.cache_clear()


def _counts(documents: list[dict]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for document in documents:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        (metric,) = directive["Metrics"]
        key = (metric["Name"], document["reason"])
        counts[key] = counts.get(key, 0) + document[metric["Name"]]
    return counts


def test_an_expired_token_counts_one_denial_with_its_reason(emitted, monkeypatch):
    monkeypatch.setenv("JWT_SECRET", SECRET)
    token = jwt.encode({"customer_id": 1, "exp": int(time.time()) - 3600}, SECRET, "HS256")
    assert authorizer.handler(_event(token), None) == {"isAuthorized": False}
    assert _counts(emitted()) == {(AUTHORIZER_DENIALS, "expired"): 1}


def test_a_missing_secret_counts_an_error_as_well_as_a_denial(emitted):
    # No JWT_SECRET / JWT_SECRET_ARN / JWT_JWKS_URL: the verifier cannot be built.
    assert authorizer.handler(_event("a.b.c"), None) == {"isAuthorized": False}
    assert _counts(emitted()) == {
        (AUTHORIZER_ERRORS, "unavailable"): 1,
        (AUTHORIZER_DENIALS, "unavailable"): 1,
    }


def test_an_unreachable_jwks_is_an_error_not_just_a_denial(emitted, monkeypatch):
    monkeypatch.setenv("JWT_JWKS_URL", "http://127.0.0.1:9/jwks.json")  # nothing listens on 9
    monkeypatch.setenv("JWT_ISSUER", "https://issuer.example/")
    monkeypatch.setenv("JWT_AUDIENCE", "image-api")
    token = jwt.encode({"customer_id": 1}, "k" * 40, "HS256", headers={"kid": "k1"})
    token = ".".join([_rs256_header(), *token.split(".")[1:]])
    assert authorizer.handler(_event(token), None) == {"isAuthorized": False}
    assert (AUTHORIZER_ERRORS, "jwks_unavailable") in _counts(emitted())


def test_an_allowed_request_emits_no_metric(emitted, monkeypatch):
    monkeypatch.setenv("JWT_SECRET", SECRET)
    token = jwt.encode({"customer_id": 7, "exp": int(time.time()) + 300}, SECRET, "HS256")
    assert authorizer.handler(_event(token), None)["isAuthorized"] is True
    assert emitted() == []


def test_each_line_is_valid_emf_in_the_service_namespace_totalled_and_per_reason():
    out = io.StringIO()
    AuthorizerMetrics(service="authz", out=out, clock=lambda: 1700.5).denied("bad_signature")
    document = json.loads(out.getvalue())
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert document["_aws"]["Timestamp"] == 1700500
    assert directive["Namespace"] == NAMESPACE
    assert directive["Dimensions"] == [["service"], ["service", "reason"]]
    assert directive["Metrics"] == [{"Name": AUTHORIZER_DENIALS, "Unit": "Count"}]
    assert (document["service"], document["reason"], document[AUTHORIZER_DENIALS]) == (
        "authz",
        "bad_signature",
        1,
    )


def _rs256_header() -> str:
    header = json.dumps({"alg": "RS256", "typ": "JWT", "kid": "k1"}).encode()
    return base64.urlsafe_b64encode(header).rstrip(b"=").decode()
