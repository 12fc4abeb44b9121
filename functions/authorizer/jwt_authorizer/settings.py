"""The authorizer's configuration: environment variables read once into a frozen dataclass.

Every error names the variable to fix, so a misconfigured function says so on its first request
instead of denying everyone with no explanation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DEFAULT_SECRET_ALGORITHMS = ("HS256",)
DEFAULT_JWKS_ALGORITHMS = ("RS256", "ES256")
DEFAULT_CUSTOMER_CLAIM = "customer_id"
DEFAULT_LEEWAY_SECONDS = 30
MAX_LEEWAY_SECONDS = 300
DEFAULT_EXTENSION_PORT = 2773
# RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
MIN_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class ConfigurationError(ValueError):
    """The environment does not describe a usable verifier; the message names the variable."""


@dataclass(frozen=True)
class AuthorizerSettings:
    """Exactly one key source is set: `secret`, `secret_arn` or `jwks_url`."""

    algorithms: tuple[str, ...]
    # repr=False: the settings object may end up in a traceback or a debug log line.
    secret: str | None = field(default=None, repr=False)
    secret_arn: str | None = None
    jwks_url: str | None = None
    issuer: str | None = None
    audience: tuple[str, ...] = ()
    customer_claim: str = DEFAULT_CUSTOMER_CLAIM
    leeway_seconds: int = DEFAULT_LEEWAY_SECONDS
    extension_port: int = DEFAULT_EXTENSION_PORT

    @property
    def uses_jwks(self) -> bool:
        return self.jwks_url is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuthorizerSettings:
        env = os.environ if environ is None else environ
        secret = _optional(env, "JWT_SECRET")
        secret_arn = _optional(env, "JWT_SECRET_ARN")
        jwks_url = _optional(env, "JWT_JWKS_URL")

        configured = [
            name
            for name, value in (
                ("JWT_SECRET", secret),
                ("JWT_SECRET_ARN", secret_arn),
                ("JWT_JWKS_URL", jwks_url),
            )
            if value is not None
        ]
        if len(configured) != 1:
            found = ", ".join(configured) if configured else "none"
            raise ConfigurationError(
                f"set exactly one of JWT_SECRET, JWT_SECRET_ARN, JWT_JWKS_URL (found: {found})"
            )

        if jwks_url is not None:
            _check_jwks_url(jwks_url)
        algorithms = _algorithms(env, jwks_mode=jwks_url is not None)
        if secret is not None:
            check_secret_length(secret, "JWT_SECRET", algorithms)

        issuer = _optional(env, "JWT_ISSUER")
        audience = tuple(_comma_list(_optional(env, "JWT_AUDIENCE")))
        if jwks_url is not None and (issuer is None or not audience):
            # A JWKS usually belongs to an identity provider that signs tokens for many apps;
            # without iss and aud any of them would be accepted here.
            missing = "JWT_ISSUER" if issuer is None else "JWT_AUDIENCE"
            raise ConfigurationError(f"{missing} is required when JWT_JWKS_URL is set")

        return cls(
            algorithms=algorithms,
            secret=secret,
            secret_arn=secret_arn,
            jwks_url=jwks_url,
            issuer=issuer,
            audience=audience,
            customer_claim=_optional(env, "JWT_CUSTOMER_CLAIM") or DEFAULT_CUSTOMER_CLAIM,
            leeway_seconds=_int(
                env, "JWT_LEEWAY_SECONDS", DEFAULT_LEEWAY_SECONDS, 0, MAX_LEEWAY_SECONDS
            ),
            extension_port=_int(
                env, "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", DEFAULT_EXTENSION_PORT, 1, 65535
            ),
        )


def check_secret_length(secret: str, variable: str, algorithms: tuple[str, ...]) -> None:
    needed = max(MIN_SECRET_BYTES[name] for name in algorithms)
    if len(secret.encode("utf-8")) < needed:
        raise ConfigurationError(
            f"{variable}: the secret must be at least {needed} bytes for {', '.join(algorithms)}"
        )


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _comma_list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = _optional(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _algorithms(env: Mapping[str, str], *, jwks_mode: bool) -> tuple[str, ...]:
    names = _comma_list(_optional(env, "JWT_ALGORITHMS"))
    if not names:
        return DEFAULT_JWKS_ALGORITHMS if jwks_mode else DEFAULT_SECRET_ALGORITHMS
    unknown = [n for n in names if n not in HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS]
    if unknown:
        # Also catches "none": an unsigned token is never acceptable.
        raise ConfigurationError(f"JWT_ALGORITHMS: unsupported algorithm(s) {', '.join(unknown)}")
    hmac = [n for n in names if n in HMAC_ALGORITHMS]
    if hmac and len(hmac) != len(names):
        raise ConfigurationError("JWT_ALGORITHMS must not mix HMAC (HS*) and asymmetric algorithms")
    if jwks_mode and hmac:
        raise ConfigurationError(
            "JWT_ALGORITHMS: HMAC algorithms are not allowed with JWT_JWKS_URL"
        )
    if not jwks_mode and not hmac:
        raise ConfigurationError(
            "JWT_ALGORITHMS: asymmetric algorithms need JWT_JWKS_URL, not a shared secret"
        )
    return tuple(dict.fromkeys(names))


def _check_jwks_url(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme == "https" and parsed.hostname:
        return
    if parsed.scheme == "http" and parsed.hostname in _LOOPBACK_HOSTS:
        return  # local development and tests only
    raise ConfigurationError("JWT_JWKS_URL must be an https:// URL (http only for localhost)")
