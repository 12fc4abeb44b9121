"""Provider endpoints and API keys.

Keys come from ``{PROVIDER}_API_KEY`` in the environment (local stack, tests) or, in AWS, from
that provider's own Secrets Manager secret (``{PROVIDER}_API_KEY_SECRET_ARN``, holding
``{"api_key": "…"}``), read through the Parameters and Secrets Lambda extension on localhost —
no boto3 on a first request's path — and kept for ``SECRET_MAX_AGE_SECONDS``, so a rotated key
reaches warm containers within that time. A function is given the ARNs of the keys it uses
only. Base URLs follow ``{PROVIDER}_BASE_URL``.
"""

from __future__ import annotations

import json
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


class SecretCache:
    """JSON-object secrets by ARN, read through the extension, each kept ``max_age`` seconds.
    Parallel provider calls of one request share one read (a lock); a failed read is not kept."""

    def __init__(
        self,
        read: Callable[[str], str] = read_secret_from_environment,
        clock: Callable[[], float] = time.monotonic,
        max_age: float = SECRET_MAX_AGE_SECONDS,
    ) -> None:
        self.read, self.clock, self.max_age = read, clock, max_age
        self._values: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def get(self, arn: str) -> dict:
        with self._lock:
            held = self._values.get(arn)
            if held is not None and self.clock() - held[0] < self.max_age:
                return held[1]
            value = self._fetch(arn)
            self._values[arn] = (self.clock(), value)
            return value

    def _fetch(self, arn: str) -> dict:
        try:
            document = json.loads(self.read(arn))
        except (SecretUnavailable, ValueError) as error:
            # The reason is ours (no secret material); the ARN and account stay out of answers.
            reason = str(error) if isinstance(error, SecretUnavailable) else "not JSON"
            logger.error("provider secret unreadable", extra={"reason": reason})
            raise ProviderError("The provider credentials could not be read.") from None
        if not isinstance(document, dict):
            raise ProviderError("The provider credentials secret is not a JSON object.")
        return document

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


provider_secrets = SecretCache()


def _secret_key(identity: ProviderIdentity) -> str:
    arn = os.environ.get(identity.secret_arn_variable)
    if not arn:
        return ""
    return str(provider_secrets.get(arn).get("api_key") or "")
