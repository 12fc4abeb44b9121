"""Provider endpoints and API keys.

Keys come from ``{PROVIDER}_API_KEY`` in the environment (local stack, tests) or, in AWS, from
that provider's own Secrets Manager secret (``{PROVIDER}_API_KEY_SECRET_ARN``, holding
``{"api_key": "…"}``), read through the Parameters and Secrets Lambda extension on localhost —
no boto3 on a first request's path — and kept for ``SECRET_MAX_AGE_SECONDS``, so a rotated key
reaches warm containers within that time. A function is given the ARNs of the keys it uses
only. Base URLs follow ``{PROVIDER}_BASE_URL``. Under Lambda SnapStart there is no session token
for the extension, so ``image_service.snapstart`` points ``provider_secrets.read`` at a
Secrets Manager reader (botocore, which this layer never imports: the authorizer shares it).

When to read is each secret's schedule, on an injected clock (as the catalog overlay's): after
a good read not before the max age; after a failed read not before ``SECRET_RETRY_SECONDS`` —
so an extension or Secrets Manager outage or throttling costs each container one read per
secret per retry interval, not one per request. Until the retry, a request needing the key gets
the failed read's 502 at once, or, if the key was read fine before and is at most
``SECRET_STALE_GRACE_SECONDS`` past its max age, that last good key — and each request served
so is counted (``record_stale``, which the function code points at its metric: this layer emits
none, the authorizer shares it).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from aws_lambda_powertools import Logger

from image_common.errors import ProviderError, ProviderNotConfigured
from image_common.provider_identity import PROVIDERS, ProviderIdentity
from image_common.secret_extension import SecretUnavailable, read_secret_from_environment

SECRET_MAX_AGE_SECONDS = 3600
# After a failed read: long enough that an extension or Secrets Manager outage or throttling is
# not met by every request of every container, short enough that recovery shows soon (until
# then a request needing the key fails fast, so this is shorter than the catalog overlay's).
SECRET_RETRY_SECONDS = 10
# How long past its max age a key that was read fine stays in use while its secret cannot be
# read: a rotated-out key is normally still valid that long (keep it valid max age + this).
SECRET_STALE_GRACE_SECONDS = 900
UNREADABLE = "The provider credentials could not be read."
logger = Logger(child=True)


@dataclass(frozen=True)
class ProviderEndpoint:
    base_url: str
    api_key: str = ""

    def __repr__(self) -> str:  # keep the key out of any log or traceback
        return f"ProviderEndpoint(base_url={self.base_url!r}, api_key=***)"


def provider_endpoint(provider: str) -> ProviderEndpoint:
    identity = PROVIDERS[provider]
    base_url = os.environ.get(identity.base_url_variable) or identity.default_base_url
    api_key = os.environ.get(identity.api_key_variable) or _secret_key(identity)
    if not api_key:
        raise ProviderNotConfigured(f"The {provider} provider is not configured on this service.")
    return ProviderEndpoint(base_url=base_url.rstrip("/"), api_key=api_key)


@dataclass
class _Held:
    """One secret's state: its last good document and when to read it again."""

    document: dict | None = None
    good_until: float = -math.inf  # the last good document is served until then
    fresh_until: float = -math.inf  # ... and past this, from its stale grace
    next_read_at: float = -math.inf
    failure: str = ""  # the message of the last failed read, for the requests until the retry


class SecretCache:
    """JSON-object secrets by ARN, read through the extension on a schedule per secret:
    ``max_age_seconds`` after a good read, ``retry_seconds`` after a failed one (``monotonic``
    is the clock; tests move it). Until the retry, a request is served the last good document
    if it is at most ``stale_grace_seconds`` past its max age, else fails fast with the failed
    read's error — no read; each request served from that grace calls ``record_stale``.
    Parallel provider calls of one request share one read (a lock). ``name`` is what its log
    lines call the secret (the webhook signing secret has its own cache)."""

    def __init__(
        self,
        read: Callable[[str], str] = read_secret_from_environment,
        *,
        max_age_seconds: float = SECRET_MAX_AGE_SECONDS,
        retry_seconds: float = SECRET_RETRY_SECONDS,
        stale_grace_seconds: float = SECRET_STALE_GRACE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        record_stale: Callable[[], None] = lambda: None,
        name: str = "provider secret",
    ) -> None:
        self.read = read
        self.name = name
        self.record_stale = record_stale
        self.max_age, self.retry, self.grace = max_age_seconds, retry_seconds, stale_grace_seconds
        self.monotonic = monotonic
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()

    def get(self, arn: str) -> dict:
        with self._lock:
            now = self.monotonic()
            held = self._held.setdefault(arn, _Held())
            if now < held.next_read_at:
                return self._served(held, now)
            # Claimed as if it will fail: whatever the read raises, the next is not before then.
            held.next_read_at, held.failure = now + self.retry, UNREADABLE
            try:
                document = self._fetch(arn)
            except _ReadFailed as failed:
                held.failure = failed.message
                extra = {"reason": failed.reason, "retry_in_seconds": self.retry}
                if held.document is not None and now < held.good_until:
                    logger.warning(f"{self.name} unreadable; the last good key stays", extra=extra)
                else:
                    logger.error(f"{self.name} unreadable", extra=extra)
                return self._served(held, now)
            held.document, held.failure = document, ""
            held.good_until = now + self.max_age + self.grace
            held.next_read_at = held.fresh_until = now + self.max_age
            return document

    def _served(self, held: _Held, now: float) -> dict:
        if held.document is not None and now < held.good_until:
            if now >= held.fresh_until:
                self.record_stale()
            return held.document
        raise ProviderError(held.failure) from None  # the failed read's answer, again

    def _fetch(self, arn: str) -> dict:
        try:
            document = json.loads(self.read(arn))
        except (SecretUnavailable, ValueError) as error:
            # The reason is ours (no secret material); the ARN and account stay out of answers.
            reason = str(error) if isinstance(error, SecretUnavailable) else "not JSON"
            raise _ReadFailed(UNREADABLE, reason) from None
        if not isinstance(document, dict):
            raise _ReadFailed(
                "The provider credentials secret is not a JSON object.", "not a JSON object"
            )
        return document

    def clear(self) -> None:
        with self._lock:
            self._held.clear()


class _ReadFailed(Exception):
    """A failed read: the message a caller sees, and the reason for the log line (neither holds
    secret material, the ARN or the account)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message, self.reason = message, reason


provider_secrets = SecretCache()


def _secret_key(identity: ProviderIdentity) -> str:
    arn = os.environ.get(identity.secret_arn_variable)
    if not arn:
        return ""
    return str(provider_secrets.get(arn).get("api_key") or "")
