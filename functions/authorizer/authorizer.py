"""Lambda authorizer for the HTTP API (payload format 2.0, simple responses).

Handler string: `authorizer.handler`. Reads `Authorization: Bearer <JWT>`, answers
`{"isAuthorized": true, "context": {"customer_id", "sub", "scopes"}}` or `{"isAuthorized": false}`.
It never raises: API Gateway would turn an error into a 500, and a deny is what we mean.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from image_common.secret_extension import SecretUnavailable
from jwt_authorizer.events import log_event
from jwt_authorizer.metrics import AuthorizerMetrics
from jwt_authorizer.settings import AuthorizerSettings, ConfigurationError
from jwt_authorizer.verifier import (
    MAX_TOKEN_BYTES,
    Denial,
    DenialReason,
    TokenVerifier,
    build_verifier,
)

_MAX_HEADER_CHARS = MAX_TOKEN_BYTES + len("Bearer ")
# JWT_SECRET_ARN mode re-reads the secret this often, so a rotated key reaches warm containers
# too (the extension caches it as long: SECRET_CACHE_TTL in infra/constructs/functions.py).
SECRET_REREAD_SECONDS = 300.0
# Denials that are the service's fault, not the caller's: counted as authorizer errors too.
SERVICE_FAULTS = frozenset({DenialReason.JWKS_UNAVAILABLE})


class _ContainerVerifier:
    """The container's verifier, built on its first request (the secrets extension is not up
    during init), then reused; a failed build is not kept, so the next request tries again.
    The environment is read once; in JWT_SECRET_ARN mode the secret alone is re-read every
    SECRET_REREAD_SECONDS, and a failed re-read keeps the verifier in hand.
    Tests start over with `current_verifier.cache_clear()`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._settings: AuthorizerSettings | None = None
        self._verifier: TokenVerifier | None = None
        self._built_at = 0.0

    def __call__(self) -> TokenVerifier:
        now = self.clock()
        if self._verifier is None:
            settings = AuthorizerSettings.from_env()
            self._verifier, self._settings, self._built_at = build_verifier(settings), settings, now
        elif self._settings.secret_arn and now - self._built_at >= SECRET_REREAD_SECONDS:
            self._built_at = now  # one attempt per interval, whatever its outcome
            try:
                self._verifier = build_verifier(self._settings)
            except (ConfigurationError, SecretUnavailable) as error:
                log_event(logging.WARNING, "jwt_secret_reread_failed", detail=str(error))
        return self._verifier

    def cache_clear(self) -> None:
        self._settings, self._verifier = None, None


current_verifier = _ContainerVerifier()
metrics = AuthorizerMetrics()


def handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        verifier = current_verifier()
    except (ConfigurationError, SecretUnavailable) as error:
        # The messages name the variable and never carry secret material.
        log_event(logging.ERROR, "authorizer_unavailable", detail=str(error))
        metrics.errored("unavailable")
        return _deny()
    try:
        token = bearer_token(event)
        outcome = token if isinstance(token, Denial) else verifier.verify(token)
    except Exception as error:  # a bug must still end in a deny, never in a 500
        log_event(logging.ERROR, "deny", reason="internal_error", error=type(error).__name__)
        metrics.errored("internal_error")
        return _deny()

    if isinstance(outcome, Denial):
        log_event(
            logging.INFO,
            "deny",
            reason=outcome.reason.value,
            kid=outcome.kid,
            iss=outcome.issuer,
            claim=outcome.claim,
        )
        if outcome.reason in SERVICE_FAULTS:
            metrics.errored(outcome.reason.value)
        else:
            metrics.denied(outcome.reason.value)
        return _deny()
    log_event(logging.DEBUG, "allow", customer_id=outcome.customer_id)
    return {"isAuthorized": True, "context": outcome.as_context()}


def bearer_token(event: Any) -> str | Denial:
    """The token from `Authorization: Bearer <token>`, or why there is none."""
    value = _authorization_header(event)
    if value is None or not value.strip():
        return Denial(DenialReason.MISSING_TOKEN)
    if len(value) > _MAX_HEADER_CHARS:
        return Denial(DenialReason.OVERSIZED)
    parts = value.split()
    if parts[0].lower() != "bearer":
        return Denial(DenialReason.WRONG_SCHEME)
    if len(parts) != 2:
        return Denial(DenialReason.MISSING_TOKEN if len(parts) == 1 else DenialReason.MALFORMED)
    return parts[1]


def _authorization_header(event: Any) -> str | None:
    if not isinstance(event, dict):
        return None
    headers = event.get("headers")
    if isinstance(headers, dict):
        value = headers.get("authorization")  # API Gateway v2 lower-cases header names
        if isinstance(value, str):
            return value
        # other callers (local stack, tests) may not
        for name, value in headers.items():
            if isinstance(name, str) and name.lower() == "authorization" and isinstance(value, str):
                return value
    sources = event.get("identitySource")
    if isinstance(sources, list) and sources and isinstance(sources[0], str):
        return sources[0]
    return None


def _deny() -> dict[str, Any]:
    return {"isAuthorized": False}
