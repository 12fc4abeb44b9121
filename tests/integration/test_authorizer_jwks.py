"""The authorizer's real HTTP paths, against local servers on 127.0.0.1.

- JWKS mode: the key set is served by a `http.server`; requests are counted to prove the
  caching and the refresh rate limit.
- JWT_SECRET_ARN mode: a second server pretends to be the AWS Parameters and Secrets Lambda
  Extension (`GET /secretsmanager/get?secretId=…` with `X-Aws-Parameters-Secrets-Token`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from urllib.parse import parse_qs, urlparse

import authorizer
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.clock import ManualClock
from tests.conftest import AUTHORIZER_ENV, LocalServer, jwk_of

ISSUER = "https://idp.example/"
AUDIENCE = "image-api"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:jwt/hs256-AbCdEf"
SESSION_TOKEN = "fake-session-token"
SECRET = "secret-from-secrets-manager-0123456789"
AUTH_ENV = (*AUTHORIZER_ENV, "AWS_SESSION_TOKEN")


@pytest.fixture
def server():
    local = LocalServer()
    yield local
    local.close()


@pytest.fixture(autouse=True)
def clean_authorizer(monkeypatch, caplog):
    for name in AUTH_ENV:
        monkeypatch.delenv(name, raising=False)
    caplog.set_level(logging.DEBUG, logger="authorizer")
    authorizer.current_verifier.cache_clear()
    yield
    authorizer.current_verifier.cache_clear()


def claims(**overrides):
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-9",
        "customer_id": 42,
        "scp": ["image:generate"],
        "exp": int(time.time()) + 300,
    }
    base.update(overrides)
    return base


def signed(private_key, alg, kid, **overrides):
    return jwt.encode(claims(**overrides), private_key, algorithm=alg, headers={"kid": kid})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def authorize(token):
    return authorizer.handler(
        {"version": "2.0", "headers": {"authorization": f"Bearer {token}"}}, None
    )


def deny_reasons(caplog):
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "authorizer"]
    return [line["reason"] for line in lines if line["event"] == "deny"]


# --- JWKS mode ---------------------------------------------------------------------------------


@pytest.fixture
def jwks_mode(server, monkeypatch, rsa_key, ec_key):
    server.answer(
        "/jwks.json",
        body={"keys": [jwk_of(rsa_key, "rsa-1", "RS256"), jwk_of(ec_key, "ec-1", "ES256")]},
    )
    monkeypatch.setenv("JWT_JWKS_URL", f"http://127.0.0.1:{server.port}/jwks.json")
    monkeypatch.setenv("JWT_ISSUER", ISSUER)
    monkeypatch.setenv("JWT_AUDIENCE", AUDIENCE)
    return server


def test_rs256_token_is_allowed_with_keys_from_the_jwks_url(jwks_mode, rsa_key):
    assert authorize(signed(rsa_key, "RS256", "rsa-1")) == {
        "isAuthorized": True,
        "context": {"customer_id": "42", "sub": "user-9", "scopes": "image:generate"},
    }


def test_es256_token_is_allowed_with_keys_from_the_jwks_url(jwks_mode, ec_key):
    response = authorize(signed(ec_key, "ES256", "ec-1", customer_id="7"))
    assert response["isAuthorized"] is True and response["context"]["customer_id"] == "7"


def test_keys_are_fetched_once_per_container(jwks_mode, rsa_key, ec_key):
    for _ in range(5):
        assert authorize(signed(rsa_key, "RS256", "rsa-1"))["isAuthorized"] is True
        assert authorize(signed(ec_key, "ES256", "ec-1"))["isAuthorized"] is True
    assert jwks_mode.hits("/jwks.json") == 1


def test_unknown_kid_triggers_one_refresh_and_a_second_one_soon_after_does_not(
    jwks_mode, rsa_key, caplog
):
    authorize(signed(rsa_key, "RS256", "rsa-1"))
    assert jwks_mode.hits("/jwks.json") == 1
    assert authorize(signed(rsa_key, "RS256", "unknown-1")) == {"isAuthorized": False}
    assert jwks_mode.hits("/jwks.json") == 2
    for kid in ("unknown-2", "unknown-3", "unknown-4"):
        assert authorize(signed(rsa_key, "RS256", kid)) == {"isAuthorized": False}
    assert jwks_mode.hits("/jwks.json") == 2
    assert deny_reasons(caplog) == ["unknown_kid"] * 4


def test_rotated_key_is_picked_up_by_the_refresh(jwks_mode, rsa_key, ec_key):
    authorize(signed(rsa_key, "RS256", "rsa-1"))
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks_mode.answer(
        "/jwks.json",
        body={"keys": [jwk_of(rsa_key, "rsa-1", "RS256"), jwk_of(new_key, "rsa-2", "RS256")]},
    )
    assert authorize(signed(new_key, "RS256", "rsa-2"))["isAuthorized"] is True
    assert jwks_mode.hits("/jwks.json") == 2


def test_hs256_token_signed_with_the_rsa_public_key_pem_is_denied(jwks_mode, rsa_key, caplog):
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    payload = b64url(json.dumps(claims()).encode())
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert authorize(f"{header}.{payload}.{b64url(signature)}") == {"isAuthorized": False}
    assert deny_reasons(caplog) == ["disallowed_algorithm"]


def test_alg_none_is_denied_in_jwks_mode(jwks_mode, caplog):
    header = b64url(json.dumps({"alg": "none", "kid": "rsa-1"}).encode())
    assert authorize(f"{header}.{b64url(json.dumps(claims()).encode())}.") == {
        "isAuthorized": False
    }
    assert deny_reasons(caplog) == ["disallowed_algorithm"]


def test_token_signed_by_another_key_under_a_known_kid_is_denied(jwks_mode, caplog):
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert authorize(signed(impostor, "RS256", "rsa-1")) == {"isAuthorized": False}
    assert deny_reasons(caplog) == ["bad_signature"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://other-idp.example/"}, "bad_issuer"),
        ({"aud": "another-app"}, "bad_audience"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"customer_id": 0}, "bad_customer"),
    ],
)
def test_valid_signature_with_wrong_claims_is_denied(jwks_mode, rsa_key, caplog, overrides, reason):
    assert authorize(signed(rsa_key, "RS256", "rsa-1", **overrides)) == {"isAuthorized": False}
    assert deny_reasons(caplog) == [reason]


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # signing it
def test_rsa_key_shorter_than_2048_bits_is_refused(server, monkeypatch, caplog):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    server.answer("/jwks.json", body={"keys": [jwk_of(weak, "weak", "RS256")]})
    monkeypatch.setenv("JWT_JWKS_URL", f"http://127.0.0.1:{server.port}/jwks.json")
    monkeypatch.setenv("JWT_ISSUER", ISSUER)
    monkeypatch.setenv("JWT_AUDIENCE", AUDIENCE)
    assert authorize(signed(weak, "RS256", "weak")) == {"isAuthorized": False}
    assert deny_reasons(caplog) == ["weak_key"]


def test_unreachable_jwks_denies_and_is_not_fetched_per_request(jwks_mode, rsa_key, caplog):
    jwks_mode.answer("/jwks.json", status=503, body={"message": "down"})
    for _ in range(3):
        assert authorize(signed(rsa_key, "RS256", "rsa-1")) == {"isAuthorized": False}
    assert jwks_mode.hits("/jwks.json") == 1
    assert deny_reasons(caplog) == ["jwks_unavailable"] * 3


@pytest.mark.parametrize(
    "body", [b"<html>oops</html>", b'{"keys": "nope"}', b'{"keys": []}', b"[]"]
)
def test_unusable_jwks_document_denies(jwks_mode, rsa_key, caplog, body):
    jwks_mode.answer("/jwks.json", body=body)
    assert authorize(signed(rsa_key, "RS256", "rsa-1")) == {"isAuthorized": False}
    assert deny_reasons(caplog) == ["jwks_unavailable"]


def test_jwks_redirect_is_not_followed(jwks_mode, rsa_key, caplog):
    elsewhere = jwks_mode.routes["/jwks.json"]
    jwks_mode.routes["/elsewhere.json"] = elsewhere
    jwks_mode.answer("/jwks.json", status=302, body=b"", headers={"Location": "/elsewhere.json"})
    assert authorize(signed(rsa_key, "RS256", "rsa-1")) == {"isAuthorized": False}
    assert jwks_mode.hits("/elsewhere.json") == 0


def test_no_token_in_logs_in_jwks_mode(jwks_mode, rsa_key, caplog, capsys):
    tokens = [
        signed(rsa_key, "RS256", "rsa-1"),
        signed(rsa_key, "RS256", "unknown"),
        signed(rsa_key, "RS256", "rsa-1", aud="x"),
    ]
    for token in tokens:
        authorize(token)
    captured = capsys.readouterr()
    everything = caplog.text + captured.out + captured.err
    for token in tokens:
        assert token not in everything and token.split(".")[2] not in everything


# --- JWT_SECRET_ARN through the Parameters and Secrets extension --------------------------------

EXTENSION_PATH = "/secretsmanager/get"


@pytest.fixture
def extension(server, monkeypatch):
    server.answer(
        EXTENSION_PATH, body={"ARN": SECRET_ARN, "Name": "jwt/hs256", "SecretString": SECRET}
    )
    monkeypatch.setenv("JWT_SECRET_ARN", SECRET_ARN)
    monkeypatch.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(server.port))
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    return server


def hs256(secret=SECRET, **overrides):
    payload = {"sub": "svc", "customer_id": 5, "exp": int(time.time()) + 300, **overrides}
    return jwt.encode(payload, secret, algorithm="HS256")


def test_secret_is_read_from_the_extension_once_per_container(extension):
    for _ in range(3):
        assert authorize(hs256()) == {
            "isAuthorized": True,
            "context": {"customer_id": "5", "sub": "svc", "scopes": ""},
        }
    assert extension.hits(EXTENSION_PATH) == 1
    path, headers = extension.requests[0]
    assert parse_qs(urlparse(path).query) == {"secretId": [SECRET_ARN]}
    assert headers["X-Aws-Parameters-Secrets-Token"] == SESSION_TOKEN


def test_token_signed_with_another_secret_is_denied_in_secret_arn_mode(extension, caplog):
    assert authorize(hs256(secret="not-the-secret-in-secrets-manager!!")) == {"isAuthorized": False}
    assert deny_reasons(caplog) == ["bad_signature"]


def test_extension_failure_denies_and_the_next_request_tries_again(extension, caplog):
    extension.answer(EXTENSION_PATH, status=400, body=b"not ready")
    assert authorize(hs256()) == {"isAuthorized": False}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "extension answered 400" in errors[0]
    extension.answer(EXTENSION_PATH, body={"SecretString": SECRET})
    assert authorize(hs256())["isAuthorized"] is True
    assert extension.hits(EXTENSION_PATH) == 2


def test_missing_session_token_is_a_configuration_error_naming_it(extension, monkeypatch, caplog):
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    assert authorize(hs256()) == {"isAuthorized": False}
    assert "AWS_SESSION_TOKEN" in caplog.text
    assert extension.hits(EXTENSION_PATH) == 0


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # signing it
def test_short_secret_in_secrets_manager_is_refused_naming_the_arn_variable(extension, caplog):
    extension.answer(EXTENSION_PATH, body={"SecretString": "short-secret"})
    assert authorize(hs256(secret="short-secret")) == {"isAuthorized": False}
    assert "JWT_SECRET_ARN" in caplog.text
    assert "short-secret" not in caplog.text


def test_secret_never_appears_in_logs(extension, caplog, capsys):
    authorize(hs256())
    authorize(hs256(exp=int(time.time()) - 999))
    captured = capsys.readouterr()
    assert SECRET not in caplog.text + captured.out + captured.err
    assert SESSION_TOKEN not in caplog.text + captured.out + captured.err


@pytest.fixture
def clock(monkeypatch):
    fake = ManualClock()
    monkeypatch.setattr(authorizer.current_verifier, "clock", fake)
    return fake


ROTATED = "rotated-secret-from-secrets-manager-987654"


def test_a_rotated_secret_reaches_a_warm_container_within_the_reread_interval(extension, clock):
    assert authorize(hs256())["isAuthorized"] is True
    extension.answer(EXTENSION_PATH, body={"SecretString": ROTATED})
    clock.now += authorizer.SECRET_REREAD_SECONDS - 1
    assert authorize(hs256())["isAuthorized"] is True  # not yet re-read
    assert extension.hits(EXTENSION_PATH) == 1
    clock.now += 1
    assert authorize(hs256(secret=ROTATED))["isAuthorized"] is True
    assert authorize(hs256()) == {"isAuthorized": False}  # the old key no longer works
    assert extension.hits(EXTENSION_PATH) == 2


def test_a_failed_reread_keeps_the_secret_in_hand_and_retries_an_interval_later(
    extension, clock, caplog
):
    assert authorize(hs256())["isAuthorized"] is True
    extension.answer(EXTENSION_PATH, status=500, body=b"throttled")
    clock.now += authorizer.SECRET_REREAD_SECONDS
    assert authorize(hs256())["isAuthorized"] is True
    assert authorize(hs256())["isAuthorized"] is True
    assert extension.hits(EXTENSION_PATH) == 2  # one failed re-read, not one per request
    assert "jwt_secret_reread_failed" in caplog.text
    extension.answer(EXTENSION_PATH, body={"SecretString": ROTATED})
    clock.now += authorizer.SECRET_REREAD_SECONDS
    assert authorize(hs256(secret=ROTATED))["isAuthorized"] is True
    assert extension.hits(EXTENSION_PATH) == 3


def test_jwks_mode_is_never_rebuilt_so_its_key_cache_survives(monkeypatch, clock):
    monkeypatch.setenv("JWT_JWKS_URL", "https://idp.example/jwks.json")
    monkeypatch.setenv("JWT_ISSUER", ISSUER)
    monkeypatch.setenv("JWT_AUDIENCE", AUDIENCE)
    first = authorizer.current_verifier()
    clock.now += 10 * authorizer.SECRET_REREAD_SECONDS
    assert authorizer.current_verifier() is first
