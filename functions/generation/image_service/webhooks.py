"""Job callbacks: the ``callback_url`` guard, and signed deliveries (Standard Webhooks).

A job with a ``callback_url`` gets one POST when it ends: ``{"type": "image.job.succeeded" |
"image.job.failed", "timestamp", "data": <what GET /image/jobs/{id} answers>}``, signed with the
``standardwebhooks`` package (headers ``webhook-id``, ``webhook-timestamp``,
``webhook-signature``). The ``webhook-id`` is the same on every retry of one job's message, so a
receiver can drop duplicates. The secret (``whsec_…``) is ``WEBHOOK_SECRET`` locally and a
Secrets Manager secret in AWS (``WEBHOOK_SECRET_ARN``), read as the provider keys are: through
the Parameters and Secrets extension (no boto3 for it), on ``SecretCache``'s schedule — kept
for its max age, and after a failed read not read again before the retry interval, so an
outage or throttling costs a container one read per interval, not one per notify invocation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import httpx

from image_common.credentials import SecretCache
from image_common.errors import InvalidImage, InvalidRequest, ProviderError
from image_common.secret_extension import SecretUnavailable, read_secret_from_environment
from image_common.settings import ServiceSettings, url_origin
from image_service.http import check_public_url, new_http_client, request_timeout

EVENT_SUCCEEDED = "image.job.succeeded"
EVENT_FAILED = "image.job.failed"
DELIVERY_TIMEOUT_SECONDS = 10.0
MAX_CALLBACK_URL_CHARS = 2048
SECRET_KEY = "WEBHOOK_SECRET"  # the key of the secret's JSON, as the stack generates it
UNREADABLE = "The webhook secret could not be read."


def check_callback_url(url: str, settings: ServiceSettings) -> None:
    """https to a public address — the guard of input image URLs — unless its origin is one of
    ``TRUSTED_CALLBACK_ORIGINS`` (local development and tests; empty in AWS)."""
    if len(url) > MAX_CALLBACK_URL_CHARS:
        raise InvalidRequest("callback_url is too long.")
    origin = url_origin(url)
    if origin is not None and origin in settings.trusted_callback_origin_set:
        return
    try:
        check_public_url(url)  # no trusted origins: the full guard
    except InvalidImage as refused:
        reason = refused.message.replace("Image URLs", "callback_url").replace("image URL", "URL")
        raise InvalidRequest(f"callback_url was refused: {reason}") from None


@cache
def get_webhook_client() -> httpx.Client:
    """Deliveries go to customers' hosts: their own client (no redirects followed, as every
    client of ours), apart from the providers' connection pool. Once per container."""
    return new_http_client()


@dataclass(frozen=True)
class DeliveryAttempt:
    delivered: bool
    status_code: int | None = None
    error: str | None = None


class WebhookSender:
    """Signs and POSTs one message; never follows a redirect, never raises for the receiver's
    failures (they are the attempt's outcome)."""

    def __init__(self, settings: ServiceSettings, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self._client = client

    def send(
        self, url: str, message_id: str, payload: dict[str, Any], now: datetime
    ) -> DeliveryAttempt:
        from standardwebhooks import Webhook  # only the notify step needs it

        body = json.dumps(payload, separators=(",", ":"))
        try:
            check_callback_url(url, self.settings)  # again: the name may resolve elsewhere now
        except InvalidRequest as refused:
            return DeliveryAttempt(False, error=refused.message)
        signature = Webhook(self._secret()).sign(msg_id=message_id, timestamp=now, data=body)
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        client = self._client or get_webhook_client()
        try:
            response = client.post(
                url,
                content=body.encode("utf-8"),
                headers=headers,
                timeout=request_timeout(DELIVERY_TIMEOUT_SECONDS),
            )
        except httpx.TimeoutException:
            return DeliveryAttempt(False, error="The receiver did not answer in time.")
        except httpx.HTTPError as error:
            return DeliveryAttempt(
                False, error=f"The receiver could not be reached ({type(error).__name__})."
            )
        if 200 <= response.status_code < 300:
            return DeliveryAttempt(True, status_code=response.status_code)
        return DeliveryAttempt(
            False, status_code=response.status_code, error=f"HTTP {response.status_code}"
        )

    def _secret(self) -> str:
        if self.settings.webhook_secret:
            return self.settings.webhook_secret
        arn = self.settings.webhook_secret_arn
        if not arn:
            raise ProviderError("Webhooks are not configured on this service.")
        try:
            return webhook_secrets.get(arn)[SECRET_KEY]
        except ProviderError:  # the cache logged the reason, once per read
            raise ProviderError(UNREADABLE) from None


def read_webhook_secret(arn: str) -> str:
    """The secret through the extension, as the JSON object the cache keeps (``{"WEBHOOK_SECRET":
    "whsec_…"}``); a value of neither known shape is a failed read, retried on the schedule."""
    try:
        secret = secret_from_value(read_secret_from_environment(arn))
    except ProviderError as unusable:
        raise SecretUnavailable(unusable.message) from None
    return json.dumps({SECRET_KEY: secret})


# Its own schedule, the provider keys' constants. Once per container.
webhook_secrets = SecretCache(read_webhook_secret, name="webhook secret")


def secret_from_value(value: Any) -> str:
    """The signing secret from the secret's value: ``whsec_…``, or the JSON the stack generates
    (``{"WEBHOOK_SECRET": "<base64 key>"}``), to which the ``whsec_`` prefix is added."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value).get(SECRET_KEY)
        except (ValueError, AttributeError):
            value = None
    if not isinstance(value, str) or not value.strip():
        raise ProviderError("The webhook secret is empty or not readable.")
    value = value.strip()
    return value if value.startswith("whsec_") else "whsec_" + value
