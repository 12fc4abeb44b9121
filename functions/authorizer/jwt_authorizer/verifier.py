"""Token in, `Principal` or `Denial` out: an expected failure is a typed value, not an exception."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, NamedTuple

import jwt
from jwt import PyJWK
from jwt import exceptions as jwt_errors
from jwt.algorithms import HMACAlgorithm

from image_common.secret_extension import read_secret_string
from jwt_authorizer.jwks import JwksKeySource, JwksUnavailable
from jwt_authorizer.settings import (
    ASYMMETRIC_ALGORITHMS,
    HMAC_ALGORITHMS,
    AuthorizerSettings,
    ConfigurationError,
    check_secret_length,
)

MAX_TOKEN_BYTES = 8 * 1024
MAX_KID_CHARS = 256
MAX_CUSTOMER_ID = 2**63 - 1
# Compact JWS: three base64url segments. Rejects JWE (five segments) and junk before any decoding.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_NUMERIC_ID = re.compile(r"[1-9][0-9]{0,18}")


class DenialReason(StrEnum):
    MISSING_TOKEN = "missing_token"
    WRONG_SCHEME = "wrong_scheme"
    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    DISALLOWED_ALGORITHM = "disallowed_algorithm"
    MISSING_KID = "missing_kid"
    UNKNOWN_KID = "unknown_kid"
    JWKS_UNAVAILABLE = "jwks_unavailable"
    WEAK_KEY = "weak_key"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    MISSING_CLAIM = "missing_claim"
    BAD_ISSUER = "bad_issuer"
    BAD_AUDIENCE = "bad_audience"
    BAD_CLAIM = "bad_claim"
    MISSING_CUSTOMER = "missing_customer"
    BAD_CUSTOMER = "bad_customer"


# Outcomes are NamedTuples, not frozen dataclasses: a Principal is built on every allowed request
# (a frozen dataclass's __init__ sets each field through object.__setattr__, several times the
# cost), and creating a dataclass at import costs a millisecond or two of every cold start.
class Denial(NamedTuple):
    reason: DenialReason
    kid: str | None = None
    issuer: str | None = None  # unverified, for the log line only
    claim: str | None = None


class Principal(NamedTuple):
    customer_id: str
    subject: str
    scopes: tuple[str, ...]

    def as_context(self) -> dict[str, str]:
        # API Gateway accepts only scalar context values, hence strings throughout.
        return {
            "customer_id": self.customer_id,
            "sub": self.subject,
            "scopes": " ".join(self.scopes),
        }


class TokenVerifier:
    """Verifies with exactly one key source: an HMAC secret or a JWKS, never both.

    The algorithm family is tied to the key source, so an HS256 token "signed" with an RSA
    public key (algorithm confusion) or an unsigned `alg: none` token never reaches a key.
    """

    def __init__(
        self,
        *,
        algorithms: Iterable[str],
        secret: bytes | None = None,
        jwks: JwksKeySource | None = None,
        issuer: str | None = None,
        audience: Iterable[str] = (),
        customer_claim: str = "customer_id",
        leeway_seconds: int = 30,
    ) -> None:
        self.algorithms = tuple(algorithms)
        if (secret is None) == (jwks is None):
            raise ValueError("give exactly one of secret or jwks")
        family = HMAC_ALGORITHMS if secret is not None else ASYMMETRIC_ALGORITHMS
        if not self.algorithms or not set(self.algorithms) <= family:
            raise ValueError(f"algorithms {self.algorithms} do not match the key source")
        self._secret = secret
        self._jwks = jwks
        self._issuer = issuer
        self._audience = list(audience) or None
        self._customer_claim = customer_claim
        self._leeway = leeway_seconds
        self._algorithm_list = list(self.algorithms)
        self._jwt = jwt.PyJWT(options={"require": ["exp"], "enforce_minimum_key_length": True})
        if secret is not None:
            _check_secret_once(self._jwt, secret, self.algorithms)

    def verify(self, token: str) -> Principal | Denial:
        if len(token) > MAX_TOKEN_BYTES:
            return Denial(DenialReason.OVERSIZED)
        if not _COMPACT_JWS.fullmatch(token):
            return Denial(DenialReason.MALFORMED)
        if self._secret is not None:
            # One key: no need to read the header first (pyjwt reads it, and refuses an
            # algorithm outside the allow-list). The kid is only read for a denial's log line.
            key: bytes | PyJWK | Denial = self._secret
            kid = None
        else:
            header = _unverified_header(token)
            if header is None:
                return Denial(DenialReason.MALFORMED)
            kid = header.get("kid") if isinstance(header.get("kid"), str) else None
            if header.get("alg") not in self.algorithms:
                return Denial(DenialReason.DISALLOWED_ALGORITHM, kid=kid)
            key = self._key(kid)
            if isinstance(key, Denial):
                return key

        try:
            claims = self._jwt.decode(
                token,
                key,
                algorithms=self._algorithm_list,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
            )
        except jwt_errors.PyJWTError as error:
            return Denial(
                _reason_for(error),
                kid=kid or _unverified_kid(token),
                issuer=_unverified_issuer(token),
                claim=getattr(error, "claim", None),
            )
        principal = self._principal(claims)
        if isinstance(principal, Denial) and principal.kid is None:
            return principal._replace(kid=kid or _unverified_kid(token))
        return principal

    def _key(self, kid: str | None) -> bytes | PyJWK | Denial:
        if self._secret is not None:
            return self._secret
        assert self._jwks is not None
        if not kid or len(kid) > MAX_KID_CHARS:
            return Denial(DenialReason.MISSING_KID)
        try:
            key = self._jwks.key_for(kid)
        except JwksUnavailable:
            return Denial(DenialReason.JWKS_UNAVAILABLE, kid=kid)
        return key if key is not None else Denial(DenialReason.UNKNOWN_KID, kid=kid)

    def _principal(self, claims: dict[str, Any]) -> Principal | Denial:
        customer = claims.get(self._customer_claim)
        if customer is None:
            return _claim_denial(DenialReason.MISSING_CUSTOMER, claims, self._customer_claim)
        customer_id = _customer_id(customer)
        if customer_id is None:
            return _claim_denial(DenialReason.BAD_CUSTOMER, claims, self._customer_claim)
        scopes = _scopes(claims)
        if scopes is None:
            return _claim_denial(DenialReason.BAD_CLAIM, claims, "scope")
        # pyjwt has checked that `sub`, when present, is a string.
        return Principal(customer_id, claims.get("sub", ""), scopes)


def _claim_denial(reason: DenialReason, claims: Mapping[str, Any], claim: str) -> Denial:
    # The issuer is read for the log line only, so only on this path, not on every allow.
    issuer = claims.get("iss")
    return Denial(reason, issuer=issuer if isinstance(issuer, str) else None, claim=claim)


class _SecretCheckedOnceHMAC(HMACAlgorithm):
    """HMAC for the container's one secret, whose key check ran once, when the verifier was built.

    pyjwt's `prepare_key` refuses an HMAC key that is really a PEM, DER, SSH or JWK key
    (algorithm confusion) by trying to parse it as each: ~20 µs, a fifth of a verification, on
    every token. Our secret is fixed for the verifier's life (a re-read secret builds a new
    verifier), so that check is done here once; any other key object still gets it in full.
    """

    def __init__(self, hash_alg: Any, secret: bytes) -> None:
        super().__init__(hash_alg)
        super().prepare_key(secret)  # the full check; raises InvalidKeyError for a key-shaped one
        self._secret = secret

    def prepare_key(self, key: str | bytes) -> bytes:
        # The very object checked above (the verifier passes its own), else the full check.
        return key if key is self._secret else super().prepare_key(key)


_HMAC_HASHES = {
    "HS256": HMACAlgorithm.SHA256,
    "HS384": HMACAlgorithm.SHA384,
    "HS512": HMACAlgorithm.SHA512,
}


def _check_secret_once(verifier: jwt.PyJWT, secret: bytes, algorithms: Iterable[str]) -> None:
    """Swap pyjwt's HMAC algorithms in `verifier` for ones that checked `secret` already.

    A secret that fails the check is left to pyjwt's per-token check, which denies every token
    with `weak_key`, as it always has. pyjwt has no public way to hand a `PyJWT` its
    algorithms, so this reaches its `_jws` (pyjwt is pinned; a unit test fails if the swap
    stops taking effect). Only this verifier's own `PyJWT` changes, never pyjwt's global one.
    """
    try:
        checked = {name: _SecretCheckedOnceHMAC(_HMAC_HASHES[name], secret) for name in algorithms}
    except jwt_errors.InvalidKeyError:
        return
    for name, algorithm in checked.items():
        verifier._jws.unregister_algorithm(name)
        verifier._jws.register_algorithm(name, algorithm)


def build_verifier(
    settings: AuthorizerSettings, environ: Mapping[str, str] | None = None
) -> TokenVerifier:
    """The verifier for this container: reads the secret or prepares the JWKS cache."""
    env = os.environ if environ is None else environ
    common = dict(
        algorithms=settings.algorithms,
        issuer=settings.issuer,
        audience=settings.audience,
        customer_claim=settings.customer_claim,
        leeway_seconds=settings.leeway_seconds,
    )
    if settings.jwks_url is not None:
        return TokenVerifier(jwks=JwksKeySource(settings.jwks_url, settings.algorithms), **common)
    if settings.secret_arn is not None:
        session_token = env.get("AWS_SESSION_TOKEN", "")
        if not session_token:
            raise ConfigurationError(
                "AWS_SESSION_TOKEN is not set; JWT_SECRET_ARN is read through the "
                "Parameters and Secrets Lambda Extension, which requires it"
            )
        secret = read_secret_string(
            settings.secret_arn, port=settings.extension_port, session_token=session_token
        )
        check_secret_length(secret, "JWT_SECRET_ARN", settings.algorithms)
    else:
        assert settings.secret is not None
        secret = settings.secret
    return TokenVerifier(secret=secret.encode("utf-8"), **common)


def _reason_for(error: jwt_errors.PyJWTError) -> DenialReason:
    # Subclasses first: InvalidSignatureError is a DecodeError, most others InvalidTokenError.
    mapping: tuple[tuple[type[Exception], DenialReason], ...] = (
        (jwt_errors.InvalidSignatureError, DenialReason.BAD_SIGNATURE),
        (jwt_errors.ExpiredSignatureError, DenialReason.EXPIRED),
        (jwt_errors.ImmatureSignatureError, DenialReason.NOT_YET_VALID),
        (jwt_errors.InvalidIssuerError, DenialReason.BAD_ISSUER),
        (jwt_errors.InvalidAudienceError, DenialReason.BAD_AUDIENCE),
        (jwt_errors.MissingRequiredClaimError, DenialReason.MISSING_CLAIM),
        (jwt_errors.InvalidAlgorithmError, DenialReason.DISALLOWED_ALGORITHM),
        (jwt_errors.InvalidKeyError, DenialReason.WEAK_KEY),
        (jwt_errors.DecodeError, DenialReason.MALFORMED),
    )
    for error_type, reason in mapping:
        if isinstance(error, error_type):
            return reason
    return DenialReason.BAD_CLAIM  # iat, sub or jti of the wrong type


def _customer_id(value: object) -> str | None:
    """A positive integer, given as a JSON number or a string of digits; anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if 0 < value <= MAX_CUSTOMER_ID else None
    if isinstance(value, str) and _NUMERIC_ID.fullmatch(value) and int(value) <= MAX_CUSTOMER_ID:
        return value
    return None


def _scopes(claims: Mapping[str, Any]) -> tuple[str, ...] | None:
    """`scope` (space separated, OAuth 2), else `scp`, else `scopes`; None if malformed."""
    for name in ("scope", "scp", "scopes"):
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, str):
            items = value.split()
        elif isinstance(value, list) and all(
            isinstance(item, str) and item and not any(c.isspace() for c in item) for item in value
        ):
            items = value
        else:
            return None
        return tuple(dict.fromkeys(items))
    return ()


def _unverified_header(token: str) -> dict[str, Any] | None:
    """The JOSE header, only to pick the key; pyjwt parses and checks it again when verifying.
    (Done here rather than with `jwt.get_unverified_header`, which would parse the whole token
    a second time: a third of the warm verification time.)"""
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):  # binascii.Error and JSONDecodeError are ValueErrors
        return None
    return header if isinstance(header, dict) else None


def _unverified_kid(token: str) -> str | None:
    header = _unverified_header(token)
    kid = header.get("kid") if header is not None else None
    return kid if isinstance(kid, str) else None


def _unverified_issuer(token: str) -> str | None:
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except Exception:
        return None
    return issuer if isinstance(issuer, str) else None
