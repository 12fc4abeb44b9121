"""Public keys from a JWKS URL, cached per container, refreshed at a rate attackers cannot drive.

Fetch policy:
- the first load happens on the first token that needs a key; while no key set was ever loaded,
  attempts are at least `retry_interval` apart (the IdP may be briefly unreachable);
- after that, a refresh (for an unknown `kid`, or a key set older than `max_age`) happens at most
  once per `refresh_interval`, whether it succeeds or fails, so a flood of tokens with random
  `kid`s costs one fetch a minute;
- a failed refresh keeps the keys already held.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Collection
from typing import Any

from jwt import PyJWK

from jwt_authorizer.events import log_event

FETCH_TIMEOUT_SECONDS = 3.0
REFRESH_INTERVAL_SECONDS = 60.0
RETRY_INTERVAL_SECONDS = 5.0
MAX_AGE_SECONDS = 3600.0
MAX_JWKS_BYTES = 256 * 1024


class JwksUnavailable(Exception):
    """The key set could not be fetched or held no usable key."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A JWKS URL is configuration; a redirect is an unexpected hop we do not follow.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch_jwks(url: str, timeout: float = FETCH_TIMEOUT_SECONDS) -> dict[str, Any]:
    """GET the JWKS document; raise `JwksUnavailable` on any transport or format problem."""
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": "image-service-authorizer"}
    )
    opener = urllib.request.build_opener(_NoRedirects())
    try:
        with opener.open(request, timeout=timeout) as response:
            if response.status != 200:
                raise JwksUnavailable(f"status {response.status}")
            body = response.read(MAX_JWKS_BYTES + 1)
    except JwksUnavailable:
        raise
    except Exception as error:  # URLError, HTTPError, timeouts, connection resets
        raise JwksUnavailable(type(error).__name__) from None
    if len(body) > MAX_JWKS_BYTES:
        raise JwksUnavailable("document too large")
    try:
        document = json.loads(body)
    except ValueError:
        raise JwksUnavailable("not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksUnavailable("no keys array")
    return document


def usable_keys(document: dict[str, Any], algorithms: Collection[str]) -> dict[str, PyJWK]:
    """Signing keys by `kid`, limited to the allowed algorithms; never symmetric (`oct`) keys."""
    keys: dict[str, PyJWK] = {}
    for jwk in document.get("keys", []):
        if not isinstance(jwk, dict) or jwk.get("kty") == "oct":
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or jwk.get("use", "sig") != "sig":
            continue
        try:
            key = PyJWK(jwk)
        except Exception:
            continue  # an unsupported or broken key must not hide the others
        if key.algorithm_name in algorithms:
            keys[kid] = key
    return keys


class JwksKeySource:
    def __init__(
        self,
        url: str,
        algorithms: Collection[str],
        *,
        fetch: Callable[[str], dict[str, Any]] = fetch_jwks,
        clock: Callable[[], float] = time.monotonic,
        refresh_interval: float = REFRESH_INTERVAL_SECONDS,
        retry_interval: float = RETRY_INTERVAL_SECONDS,
        max_age: float = MAX_AGE_SECONDS,
    ) -> None:
        self.url = url
        self._algorithms = frozenset(algorithms)
        self._fetch = fetch
        self._clock = clock
        self._refresh_interval = refresh_interval
        self._retry_interval = retry_interval
        self._max_age = max_age
        self._keys: dict[str, PyJWK] = {}
        self._loaded_at: float | None = None
        self._last_load_attempt: float | None = None
        # Refreshes after the first load, successful or not; the first load is not one.
        self._last_refresh: float | None = None
        # The local dev server may call the handler from several threads.
        self._lock = threading.Lock()

    def key_for(self, kid: str) -> PyJWK | None:
        """The key for `kid`, or None if the (possibly refreshed) key set does not have it.

        Raises `JwksUnavailable` only when no key set has ever been loaded.
        """
        with self._lock:
            now = self._clock()
            fetched = False
            if self._loaded_at is None or now - self._loaded_at >= self._max_age:
                fetched = self._load_if_allowed(now)
            if self._loaded_at is None:
                raise JwksUnavailable("no key set loaded")
            key = self._keys.get(kid)
            if key is None and not fetched:
                self._load_if_allowed(now)
                key = self._keys.get(kid)
            return key

    def _load_if_allowed(self, now: float) -> bool:
        """Fetch when the rate limit allows; return whether a fetch was attempted."""
        if self._loaded_at is None:
            last, wait = self._last_load_attempt, self._retry_interval
        else:
            last, wait = self._last_refresh, self._refresh_interval
        if last is not None and now - last < wait:
            return False
        if self._loaded_at is None:
            self._last_load_attempt = now
        else:
            self._last_refresh = now
        try:
            keys = usable_keys(self._fetch(self.url), self._algorithms)
        except JwksUnavailable as error:
            log_event(logging.WARNING, "jwks_fetch_failed", reason=str(error))
            return True
        if not keys:
            log_event(logging.WARNING, "jwks_fetch_failed", reason="no usable signing key")
            return True
        self._keys = keys
        self._loaded_at = now
        log_event(logging.INFO, "jwks_loaded", kids=",".join(sorted(keys)))
        return True
