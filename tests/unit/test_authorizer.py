"""The JWT authorizer: event in, simple response out; denials carry the reason that fired.

No network here: JWKS behaviour is driven through an injected fetch function and clock
(`tests/integration/test_authorizer_jwks.py` covers the real HTTP paths).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import authorizer
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import HMACAlgorithm

from jwt_authorizer import verifier as verifier_module
from jwt_authorizer.jwks import JwksKeySource, JwksUnavailable
from jwt_authorizer.settings import AuthorizerSettings, ConfigurationError
from jwt_authorizer.verifier import Denial, DenialReason, Principal, TokenVerifier
from tests.clock import ManualClock
from tests.conftest import AUTHORIZER_ENV as AUTH_ENV
from tests.conftest import jwk_of

REPO = Path(__file__).resolve().parents[2]
SECRET = "unit-test-secret-0123456789abcdef-XYZ"  # 37 bytes


# --- helpers -------------------------------------------------------------------------------


def claims(**overrides):
    base = {
        "sub": "user-1",
        "customer_id": 123,
        "scope": "image:generate",
        "exp": int(time.time()) + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload, secret=SECRET, headers=None):
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload, alg="none"):
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(payload).encode())}."


def hmac_signed_with(key: bytes, payload, kid=None):
    """An HS256 token whose HMAC key is `key` (pyjwt refuses to make this with a PEM key)."""
    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def event_with(authorization=None, **extra):
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": "arn:aws:execute-api:x",
        "headers": headers,
        **extra,
    }


def decide(token, caplog):
    """Run the handler on `Bearer <token>`; return its response and the denial reasons logged."""
    caplog.clear()
    response = authorizer.handler(event_with(f"Bearer {token}"), None)
    return response, logged_reasons(caplog)


def logged_reasons(caplog):
    reasons = []
    for record in caplog.records:
        if record.name == "authorizer":
            line = json.loads(record.getMessage())
            if line.get("event") == "deny":
                reasons.append(line["reason"])
    return reasons


def assert_denied(token, caplog, reason):
    response, reasons = decide(token, caplog)
    assert response == {"isAuthorized": False}
    assert reasons == [reason]


@pytest.fixture(autouse=True)
def secret_mode(monkeypatch, caplog):
    for name in AUTH_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JWT_SECRET", SECRET)
    caplog.set_level(logging.DEBUG, logger="authorizer")
    authorizer.current_verifier.cache_clear()
    yield
    authorizer.current_verifier.cache_clear()


class CountingFetch:
    def __init__(self, *documents):
        self.documents = list(documents)
        self.calls = 0

    def __call__(self, url):
        self.calls += 1
        document = self.documents[min(self.calls, len(self.documents)) - 1]
        if isinstance(document, Exception):
            raise document
        return document


def jwks_verifier(fetch, clock=None, **kwargs):
    source = JwksKeySource(
        "https://idp.example/jwks.json",
        ("RS256", "ES256"),
        fetch=fetch,
        clock=clock or ManualClock(),
    )
    return TokenVerifier(
        algorithms=("RS256", "ES256"),
        jwks=source,
        issuer="https://idp.example/",
        audience=("image-api",),
        **kwargs,
    )


def rs256(private_key, payload, kid="rsa-1"):
    return jwt.encode(payload, private_key, algorithm="RS256", headers={"kid": kid})


# --- HS256 through the handler --------------------------------------------------------------


def test_valid_hs256_token_is_allowed_with_string_context(caplog):
    response, reasons = decide(hs256(claims(scope="image:generate image:read")), caplog)
    assert response == {
        "isAuthorized": True,
        "context": {"customer_id": "123", "sub": "user-1", "scopes": "image:generate image:read"},
    }
    assert reasons == []


def test_numeric_string_customer_id_is_accepted():
    response = authorizer.handler(event_with(f"Bearer {hs256(claims(customer_id='42'))}"), None)
    assert response["context"]["customer_id"] == "42"


def test_expired_token_is_denied(caplog):
    assert_denied(hs256(claims(exp=int(time.time()) - 120)), caplog, "expired")


def test_expiry_within_leeway_is_still_accepted(caplog):
    response, _ = decide(hs256(claims(exp=int(time.time()) - 5)), caplog)
    assert response["isAuthorized"] is True


def test_leeway_is_configurable(monkeypatch, caplog):
    monkeypatch.setenv("JWT_LEEWAY_SECONDS", "0")
    assert_denied(hs256(claims(exp=int(time.time()) - 5)), caplog, "expired")


def test_token_without_exp_is_denied(caplog):
    assert_denied(hs256(claims(exp=None)), caplog, "missing_claim")


def test_not_yet_valid_token_is_denied(caplog):
    assert_denied(hs256(claims(nbf=int(time.time()) + 600)), caplog, "not_yet_valid")


def test_nbf_within_leeway_is_accepted(caplog):
    response, _ = decide(hs256(claims(nbf=int(time.time()) + 10)), caplog)
    assert response["isAuthorized"] is True


def test_wrong_signature_is_denied(caplog):
    assert_denied(
        hs256(claims(), secret="another-secret-of-sufficient-length!!"), caplog, "bad_signature"
    )


def test_tampered_payload_is_denied(caplog):
    header, _, signature = hs256(claims()).split(".")
    forged = b64url(json.dumps(claims(customer_id=999)).encode())
    assert_denied(f"{header}.{forged}.{signature}", caplog, "bad_signature")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_alg_none_token_is_denied(alg, caplog):
    assert_denied(unsigned(claims(), alg), caplog, "disallowed_algorithm")


def test_hs512_token_is_denied_when_only_hs256_is_allowed(caplog):
    token = jwt.encode(claims(), SECRET * 2, algorithm="HS512")
    assert_denied(token, caplog, "disallowed_algorithm")


def test_rs256_token_is_denied_in_secret_mode(rsa_key, caplog):
    assert_denied(rs256(rsa_key, claims()), caplog, "disallowed_algorithm")


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b",
        "a.b.c.d.e",  # five segments: a JWE, not a JWS
        "!!!.###.$$$",
        "eyJhbGciOiJIUzI1NiJ9.eyJ.sig",  # payload is not JSON
        "W10.e30.e30",  # header is a JSON array
        "bm90LWpzb24.e30.sig",  # header is "not-json"
        "a.e30.sig",  # header is not valid base64
        "_w.e30.sig",  # header is not UTF-8
    ],
)
def test_malformed_token_is_denied(token, caplog):
    assert_denied(token, caplog, "malformed")


def test_oversized_token_is_denied_before_parsing(caplog, monkeypatch):
    token = hs256(claims(padding="x" * 9000))
    assert len(token) > 8 * 1024
    parsed = []
    monkeypatch.setattr(verifier_module, "_unverified_header", lambda t: parsed.append(t))
    monkeypatch.setattr(jwt.PyJWT, "decode", lambda *args, **kwargs: parsed.append(args))
    assert_denied(token, caplog, "oversized")
    assert authorizer.current_verifier().verify(token) == Denial(DenialReason.OVERSIZED)
    assert parsed == []


# --- the secret's key check, once per verifier ----------------------------------------------


@pytest.fixture
def key_checks(monkeypatch):
    """Counts pyjwt's HMAC key check (is the secret really a DER key or certificate?)."""
    calls = []
    original = HMACAlgorithm._is_der_key

    def counting(key_bytes):
        calls.append(key_bytes)
        return original(key_bytes)

    monkeypatch.setattr(HMACAlgorithm, "_is_der_key", staticmethod(counting))
    return calls


def test_the_secret_is_checked_once_when_the_verifier_is_built_not_per_token(key_checks):
    tokens = [hs256(claims(sub=f"user-{n}")) for n in range(3)]
    key_checks.clear()  # jwt.encode checks its key too
    verifier = authorizer.current_verifier()
    assert key_checks == [SECRET.encode()]
    for token in tokens:
        assert isinstance(verifier.verify(token), Principal)
    assert key_checks == [SECRET.encode()]  # fails if pyjwt stops using our algorithm


def test_another_key_given_to_the_verifiers_pyjwt_is_still_checked_in_full(key_checks):
    pem = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
    other = b"a-different-secret-object-0123456789abcdef"
    signed_with_other = hs256(claims(), secret=other)
    verifier = authorizer.current_verifier()
    key_checks.clear()
    with pytest.raises(jwt.InvalidKeyError):
        verifier._jwt.decode(hmac_signed_with(pem, claims()), pem, algorithms=["HS256"])
    assert verifier._jwt.decode(signed_with_other, other, algorithms=["HS256"])["sub"] == "user-1"
    assert key_checks == [other]  # the PEM is refused before the DER check; `other` is checked


def test_pyjwt_module_level_decode_keeps_its_own_hmac_algorithm():
    authorizer.current_verifier()
    assert type(jwt.api_jws._jws_global_obj.get_algorithm_by_name("HS256")) is HMACAlgorithm


@pytest.mark.parametrize(
    "secret",
    [
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
        '{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}',
    ],
    ids=["pem", "jwk"],
)
def test_a_key_shaped_secret_still_denies_every_token_as_weak_key(secret, monkeypatch, caplog):
    monkeypatch.setenv("JWT_SECRET", secret)
    token = hmac_signed_with(secret.encode(), claims())
    assert_denied(token, caplog, "weak_key")
    assert_denied(token, caplog, "weak_key")  # the same on the next request


def test_a_warm_verifier_still_denies_expired_tampered_and_exp_less_tokens(caplog):
    assert decide(hs256(claims()), caplog)[0]["isAuthorized"] is True
    assert_denied(hs256(claims(exp=int(time.time()) - 120)), caplog, "expired")
    assert_denied(hs256(claims(exp=None)), caplog, "missing_claim")
    header, _, signature = hs256(claims()).split(".")
    forged = b64url(json.dumps(claims(customer_id=999)).encode())
    assert_denied(f"{header}.{forged}.{signature}", caplog, "bad_signature")
    assert_denied(hs256(claims(), secret="another-secret-of-sufficient-length!!"), caplog,
                  "bad_signature")  # fmt: skip
    assert decide(hs256(claims()), caplog)[0]["isAuthorized"] is True


def test_wrong_issuer_is_denied_when_issuer_is_configured(monkeypatch, caplog):
    monkeypatch.setenv("JWT_ISSUER", "https://auth.example/")
    assert_denied(hs256(claims(iss="https://evil.example/")), caplog, "bad_issuer")
    assert_denied(hs256(claims()), caplog, "missing_claim")
    assert decide(hs256(claims(iss="https://auth.example/")), caplog)[0]["isAuthorized"] is True


def test_wrong_audience_is_denied_when_audience_is_configured(monkeypatch, caplog):
    monkeypatch.setenv("JWT_AUDIENCE", "image-api")
    assert_denied(hs256(claims(aud="billing-api")), caplog, "bad_audience")
    assert_denied(hs256(claims()), caplog, "missing_claim")
    assert (
        decide(hs256(claims(aud=["billing-api", "image-api"])), caplog)[0]["isAuthorized"] is True
    )


def test_token_with_audience_is_denied_when_no_audience_is_configured(caplog):
    # pyjwt's rule, kept on purpose: a token addressed to someone must not be accepted by a
    # service that cannot tell whether it is that someone.
    assert_denied(hs256(claims(aud="image-api")), caplog, "bad_audience")


def test_missing_customer_claim_is_denied(caplog):
    assert_denied(hs256(claims(customer_id=None)), caplog, "missing_customer")


@pytest.mark.parametrize(
    "value", [0, -1, "0", "-5", "abc", "12a", "007", "", " 7", True, 1.5, [1], {"id": 1}, 2**63]
)
def test_customer_claim_that_is_not_a_positive_integer_is_denied(value, caplog):
    assert_denied(hs256(claims(customer_id=value)), caplog, "bad_customer")


def test_customer_claim_name_is_configurable(monkeypatch, caplog):
    monkeypatch.setenv("JWT_CUSTOMER_CLAIM", "tenant")
    response, _ = decide(hs256(claims(customer_id=None, tenant=77)), caplog)
    assert response["context"]["customer_id"] == "77"
    assert_denied(hs256(claims()), caplog, "missing_customer")


@pytest.mark.parametrize(
    ("scope_claims", "expected"),
    [
        ({"scope": "a b a"}, "a b"),
        ({"scope": None, "scp": ["x", "y"]}, "x y"),
        ({"scope": None, "scp": "x y"}, "x y"),
        ({"scope": None, "scopes": ["z"]}, "z"),
        ({"scope": None}, ""),
    ],
)
def test_scopes_come_from_scope_scp_or_scopes(scope_claims, expected, caplog):
    response, _ = decide(hs256(claims(**scope_claims)), caplog)
    assert response["context"]["scopes"] == expected


@pytest.mark.parametrize("scp", [[1], ["a b"], [""], {"a": 1}])
def test_malformed_scope_claim_is_denied(scp, caplog):
    assert_denied(hs256(claims(scope=None, scp=scp)), caplog, "bad_claim")


@pytest.mark.parametrize("odd", [{"sub": 5}, {"iat": "yesterday"}, {"jti": 7}])
def test_registered_claims_of_the_wrong_type_are_denied(odd, caplog):
    assert_denied(hs256(claims(**odd)), caplog, "bad_claim")


def test_iat_in_the_future_is_denied(caplog):
    assert_denied(hs256(claims(iat=int(time.time()) + 600)), caplog, "not_yet_valid")


def test_missing_sub_gives_empty_subject(caplog):
    response, _ = decide(hs256(claims(sub=None)), caplog)
    assert response["context"]["sub"] == ""


# --- reading the header --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "missing_token"),
        ("", "missing_token"),
        ("Bearer", "missing_token"),
        ("Bearer   ", "missing_token"),
        ("Basic dXNlcjpwYXNz", "wrong_scheme"),
        ("Token abc.def.ghi", "wrong_scheme"),
        ("Bearer a.b.c extra", "malformed"),
    ],
)
def test_missing_or_non_bearer_authorization_is_denied(authorization, reason, caplog):
    response = authorizer.handler(event_with(authorization), None)
    assert response == {"isAuthorized": False}
    assert logged_reasons(caplog) == [reason]


def test_scheme_is_case_insensitive_and_header_name_too():
    token = hs256(claims())
    assert authorizer.handler(event_with(f"bearer {token}"), None)["isAuthorized"] is True
    event = {"headers": {"Authorization": f"BEARER {token}"}}
    assert authorizer.handler(event, None)["isAuthorized"] is True


def test_identity_source_is_used_when_headers_are_absent():
    event = {"version": "2.0", "identitySource": [f"Bearer {hs256(claims())}"]}
    assert authorizer.handler(event, None)["isAuthorized"] is True


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        "Bearer x",
        {},
        {"headers": None},
        {"headers": {"authorization": 5}},
        {"identitySource": [None]},
        {"identitySource": "Bearer x"},
    ],
)
def test_odd_events_are_denied_without_raising(event):
    assert authorizer.handler(event, None) == {"isAuthorized": False}


def test_unexpected_error_in_verification_is_a_deny_not_an_exception(monkeypatch, caplog):
    class Broken:
        def verify(self, token):
            raise RuntimeError("boom")

    monkeypatch.setattr(authorizer, "build_verifier", lambda settings: Broken())
    assert authorizer.handler(event_with(f"Bearer {hs256(claims())}"), None) == {
        "isAuthorized": False
    }
    assert logged_reasons(caplog) == ["internal_error"]
    assert "boom" not in caplog.text


# --- configuration -------------------------------------------------------------------------


def test_secret_mode_defaults():
    settings = AuthorizerSettings.from_env({"JWT_SECRET": SECRET})
    assert settings.algorithms == ("HS256",)
    assert (settings.customer_claim, settings.leeway_seconds, settings.extension_port) == (
        "customer_id",
        30,
        2773,
    )
    assert not settings.uses_jwks


def test_jwks_mode_defaults_to_rs256_and_es256():
    settings = AuthorizerSettings.from_env(
        {
            "JWT_JWKS_URL": "https://idp.example/.well-known/jwks.json",
            "JWT_ISSUER": "https://idp.example/",
            "JWT_AUDIENCE": "image-api, other-api",
        }
    )
    assert settings.algorithms == ("RS256", "ES256")
    assert settings.audience == ("image-api", "other-api")


def test_settings_repr_does_not_show_the_secret():
    assert SECRET not in repr(AuthorizerSettings.from_env({"JWT_SECRET": SECRET}))


JWKS = {"JWT_JWKS_URL": "https://idp.example/jwks.json", "JWT_ISSUER": "i", "JWT_AUDIENCE": "a"}


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({}, "JWT_SECRET, JWT_SECRET_ARN, JWT_JWKS_URL"),
        ({"JWT_SECRET": "  "}, "JWT_SECRET, JWT_SECRET_ARN, JWT_JWKS_URL"),
        (
            {"JWT_SECRET": SECRET, "JWT_JWKS_URL": "https://x/jwks"},
            "found: JWT_SECRET, JWT_JWKS_URL",
        ),
        ({"JWT_SECRET": SECRET, "JWT_SECRET_ARN": "arn:x"}, "found: JWT_SECRET, JWT_SECRET_ARN"),
        ({"JWT_SECRET": "short"}, "JWT_SECRET"),
        ({"JWT_SECRET": SECRET, "JWT_ALGORITHMS": "HS512"}, "JWT_SECRET"),
        ({"JWT_SECRET": SECRET, "JWT_ALGORITHMS": "none"}, "JWT_ALGORITHMS"),
        ({"JWT_SECRET": SECRET, "JWT_ALGORITHMS": "HS256,RS256"}, "JWT_ALGORITHMS"),
        ({"JWT_SECRET": SECRET, "JWT_ALGORITHMS": "RS256"}, "JWT_ALGORITHMS"),
        ({**JWKS, "JWT_ALGORITHMS": "HS256"}, "JWT_ALGORITHMS"),
        ({**JWKS, "JWT_ALGORITHMS": "RS256,XX999"}, "JWT_ALGORITHMS"),
        ({**JWKS, "JWT_JWKS_URL": "http://idp.example/jwks.json"}, "JWT_JWKS_URL"),
        ({**JWKS, "JWT_JWKS_URL": "file:///etc/passwd"}, "JWT_JWKS_URL"),
        ({**JWKS, "JWT_ISSUER": ""}, "JWT_ISSUER"),
        ({**JWKS, "JWT_AUDIENCE": " , "}, "JWT_AUDIENCE"),
        ({"JWT_SECRET": SECRET, "JWT_LEEWAY_SECONDS": "soon"}, "JWT_LEEWAY_SECONDS"),
        ({"JWT_SECRET": SECRET, "JWT_LEEWAY_SECONDS": "-1"}, "JWT_LEEWAY_SECONDS"),
        ({"JWT_SECRET": SECRET, "JWT_LEEWAY_SECONDS": "3600"}, "JWT_LEEWAY_SECONDS"),
        (
            {"JWT_SECRET_ARN": "arn:x", "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": "0"},
            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",
        ),
    ],
)
def test_configuration_errors_name_the_variable(environ, variable):
    with pytest.raises(ConfigurationError, match=variable):
        AuthorizerSettings.from_env(environ)


def test_loopback_http_jwks_url_is_allowed_for_local_development():
    settings = AuthorizerSettings.from_env({**JWKS, "JWT_JWKS_URL": "http://127.0.0.1:9/jwks.json"})
    assert settings.jwks_url == "http://127.0.0.1:9/jwks.json"


def test_misconfigured_function_denies_and_logs_the_variable(monkeypatch, caplog):
    monkeypatch.setenv("JWT_SECRET", "too-short")
    response = authorizer.handler(event_with(f"Bearer {hs256(claims())}"), None)
    assert response == {"isAuthorized": False}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "JWT_SECRET" in errors[0].getMessage()
    assert "too-short" not in caplog.text


def test_configuration_is_read_once_per_container(monkeypatch):
    token = hs256(claims())
    assert authorizer.handler(event_with(f"Bearer {token}"), None)["isAuthorized"] is True
    monkeypatch.setenv("JWT_SECRET", "a-different-secret-that-is-long-enough")
    assert authorizer.handler(event_with(f"Bearer {token}"), None)["isAuthorized"] is True
    authorizer.current_verifier.cache_clear()
    assert authorizer.handler(event_with(f"Bearer {token}"), None)["isAuthorized"] is False


def test_verifier_refuses_an_algorithm_family_that_does_not_match_its_key_source():
    with pytest.raises(ValueError):
        TokenVerifier(algorithms=("HS256",), jwks=JwksKeySource("https://x/j", ("RS256",)))
    with pytest.raises(ValueError):
        TokenVerifier(algorithms=("RS256",), secret=SECRET.encode())


# --- logs never carry the token or the secret ----------------------------------------------


def test_no_token_or_secret_in_logs(caplog, capsys, monkeypatch):
    monkeypatch.setenv("JWT_ISSUER", "https://auth.example/")
    tokens = [
        hs256(claims(iss="https://auth.example/")),
        hs256(claims(iss="https://auth.example/", exp=int(time.time()) - 999)),
        hs256(claims(iss="https://evil.example/")),
        hs256(claims(iss="https://auth.example/"), secret="wrong-secret-wrong-secret-wrong-secret"),
        hs256(claims(iss="https://auth.example/", customer_id="abc")),
        unsigned(claims()),
    ]
    for token in tokens:
        authorizer.handler(event_with(f"Bearer {token}"), None)
        authorizer.handler({"identitySource": [f"Basic {token}"]}, None)
    captured = capsys.readouterr()
    everything = caplog.text + captured.out + captured.err
    assert len(logged_reasons(caplog)) == 2 * len(tokens) - 1  # all but the valid one
    assert SECRET not in everything
    for token in tokens:
        header, payload, signature = token.split(".")
        assert token not in everything
        assert payload not in everything
        if signature:
            assert signature not in everything


def test_deny_log_line_is_one_json_object_even_for_hostile_kid(caplog):
    token = hs256(
        claims(exp=int(time.time()) - 999), headers={"kid": 'x"\n{"event":"allow"}' + "k" * 500}
    )
    decide(token, caplog)
    lines = [r.getMessage() for r in caplog.records if r.name == "authorizer"]
    assert len(lines) == 1 and "\n" not in lines[0]
    record = json.loads(lines[0])
    assert record["event"] == "deny" and len(record["kid"]) <= 128


# --- JWKS mode, keys from an injected fetch ---------------------------------------------------


def test_rs256_and_es256_tokens_verify_against_the_jwks(rsa_key, ec_key):
    fetch = CountingFetch(
        {"keys": [jwk_of(rsa_key, "rsa-1", "RS256"), jwk_of(ec_key, "ec-1", "ES256")]}
    )
    verifier = jwks_verifier(fetch)
    payload = claims(iss="https://idp.example/", aud="image-api")
    assert verifier.verify(rs256(rsa_key, payload)) == Principal(
        "123", "user-1", ("image:generate",)
    )
    es = jwt.encode(payload, ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    assert isinstance(verifier.verify(es), Principal)
    assert fetch.calls == 1


def test_hs256_signed_with_the_rsa_public_key_is_denied(rsa_key):
    fetch = CountingFetch({"keys": [jwk_of(rsa_key, "rsa-1", "RS256")]})
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = hmac_signed_with(pem, claims(iss="https://idp.example/", aud="image-api"), kid="rsa-1")
    assert jwks_verifier(fetch).verify(forged) == Denial(
        DenialReason.DISALLOWED_ALGORITHM, kid="rsa-1"
    )
    assert fetch.calls == 0  # refused before any key is looked up


def test_symmetric_keys_in_a_jwks_are_ignored():
    fetch = CountingFetch(
        {"keys": [{"kty": "oct", "kid": "sym", "k": b64url(SECRET.encode()), "alg": "HS256"}]}
    )
    source = JwksKeySource("https://x/j", ("RS256",), fetch=fetch, clock=ManualClock())
    with pytest.raises(JwksUnavailable):
        source.key_for("sym")


def test_token_algorithm_must_match_the_keys_algorithm(rsa_key, ec_key):
    # An ES256 token naming an RSA key's kid: allowed algorithm, wrong key type.
    fetch = CountingFetch({"keys": [jwk_of(rsa_key, "rsa-1", "RS256")]})
    payload = claims(iss="https://idp.example/", aud="image-api")
    token = jwt.encode(payload, ec_key, algorithm="ES256", headers={"kid": "rsa-1"})
    assert jwks_verifier(fetch).verify(token).reason is DenialReason.DISALLOWED_ALGORITHM


def test_jwks_token_without_kid_is_denied(rsa_key):
    fetch = CountingFetch({"keys": [jwk_of(rsa_key, "rsa-1", "RS256")]})
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert jwks_verifier(fetch).verify(token).reason is DenialReason.MISSING_KID


def test_unknown_kid_refreshes_once_then_waits_a_minute(rsa_key):
    clock = ManualClock()
    fetch = CountingFetch({"keys": [jwk_of(rsa_key, "rsa-1", "RS256")]})
    source = JwksKeySource("https://x/j", ("RS256",), fetch=fetch, clock=clock)
    assert source.key_for("rsa-1") is not None and fetch.calls == 1
    assert source.key_for("attacker-1") is None and fetch.calls == 2
    clock.now += 30
    assert source.key_for("attacker-2") is None and fetch.calls == 2
    assert source.key_for("rsa-1") is not None and fetch.calls == 2
    clock.now += 31
    assert source.key_for("attacker-3") is None and fetch.calls == 3


def test_rotated_key_is_found_by_the_refresh(rsa_key, ec_key):
    old = {"keys": [jwk_of(rsa_key, "rsa-1", "RS256")]}
    new = {"keys": [jwk_of(rsa_key, "rsa-1", "RS256"), jwk_of(ec_key, "ec-2", "ES256")]}
    fetch = CountingFetch(old, new)
    source = JwksKeySource("https://x/j", ("RS256", "ES256"), fetch=fetch, clock=ManualClock())
    source.key_for("rsa-1")
    assert source.key_for("ec-2").algorithm_name == "ES256"
    assert fetch.calls == 2


def test_first_load_failure_is_retried_after_five_seconds_not_per_request(rsa_key):
    clock = ManualClock()
    fetch = CountingFetch(JwksUnavailable("down"), {"keys": [jwk_of(rsa_key, "rsa-1", "RS256")]})
    source = JwksKeySource("https://x/j", ("RS256",), fetch=fetch, clock=clock)
    for _ in range(3):
        with pytest.raises(JwksUnavailable):
            source.key_for("rsa-1")
    assert fetch.calls == 1
    clock.now += 5
    assert source.key_for("rsa-1") is not None and fetch.calls == 2


def test_failed_refresh_keeps_the_keys_already_held(rsa_key):
    clock = ManualClock()
    fetch = CountingFetch({"keys": [jwk_of(rsa_key, "rsa-1", "RS256")]}, JwksUnavailable("down"))
    source = JwksKeySource("https://x/j", ("RS256",), fetch=fetch, clock=clock)
    source.key_for("rsa-1")
    clock.now += 3600  # the set is now old enough to be refetched; the fetch fails
    assert source.key_for("rsa-1") is not None and fetch.calls == 2
    assert source.key_for("rsa-1") is not None and fetch.calls == 2  # and is not retried at once


def test_key_set_is_refetched_after_an_hour(rsa_key, ec_key):
    clock = ManualClock()
    fetch = CountingFetch(
        {"keys": [jwk_of(rsa_key, "rsa-1", "RS256")]}, {"keys": [jwk_of(ec_key, "ec-1", "ES256")]}
    )
    source = JwksKeySource("https://x/j", ("RS256", "ES256"), fetch=fetch, clock=clock)
    source.key_for("rsa-1")
    clock.now += 3599
    assert source.key_for("rsa-1") is not None and fetch.calls == 1
    clock.now += 1
    assert source.key_for("rsa-1") is None  # revoked at the IdP, gone here too
    assert fetch.calls == 2


# --- import hygiene --------------------------------------------------------------------------


def run_lambda_python(code, **env):
    """A fresh interpreter with Lambda's import path: the function folder and the layer."""
    path = [str(REPO / "functions" / "authorizer"), str(REPO / "layers" / "common" / "python")]
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": ":".join(path), "PATH": "/usr/bin:/bin", **env},
        cwd=REPO / "functions" / "authorizer",
    )


def test_importing_the_authorizer_loads_no_pydantic_boto3_or_httpx():
    result = run_lambda_python(
        "import json, sys, authorizer; "
        "heavy = {'pydantic', 'pydantic_core', 'boto3', 'botocore', 'httpx', "
        "'aws_lambda_powertools'}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_unknown_log_level_does_not_break_the_import():
    result = run_lambda_python(
        "import logging, authorizer; print(logging.getLogger('authorizer').level)",
        LOG_LEVEL="verbose",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(logging.INFO)
