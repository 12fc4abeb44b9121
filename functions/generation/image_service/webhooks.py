"""Job callbacks: the ``callback_url`` guard, and signed deliveries (Standard Webhooks).

A job with a ``callback_url`` gets one POST when it ends: ``{"type": "image.job.succeeded" |
"image.job.failed", "timestamp", "data": <what GET /image/jobs/{id} answers>}``, signed with the
``standardwebhooks`` package (headers ``webhook-id``, ``webhook-timestamp``,
``webhook-signature``). The ``webhook-id`` is the same on every retry of one job's message, so a
receiver can drop duplicates. The secret (``whsec_…``) is ``WEBHOOK_SECRET`` locally and a
Secrets Manager secret in AWS (``WEBHOOK_SECRET_ARN``), read once per container through
Powertools' cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import httpx
from aws_lambda_powertools import Logger

from image_common.errors import InvalidImage, InvalidRequest, ProviderError
from image_common.settings import ServiceSettings, url_origin
from image_service.http import check_public_url, new_http_client, request_timeout

logger = Logger(child=True)

EVENT_SUCCEEDED = "image.job.succeeded"
EVENT_FAILED = "image.job.failed"
DELIVERY_TIMEOUT_SECONDS = 10.0
MAX_CALLBACK_URL_CHARS = 2048
SECRET_MAX_AGE_SECONDS = 3600


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
        from aws_lambda_powertools.utilities import parameters

        try:
            value = parameters.get_secret(arn, max_age=SECRET_MAX_AGE_SECONDS)
        except Exception as error:
            logger.error("webhook secret unreadable", extra={"error_class": type(error).__name__})
            raise ProviderError("The webhook secret could not be read.") from None
        return secret_from_value(value)


def secret_from_value(value: Any) -> str:
    """The signing secret from the secret's value: ``whsec_…``, or the JSON the stack generates
    (``{"WEBHOOK_SECRET": "<base64 key>"}``), to which the ``whsec_`` prefix is added."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value).get("WEBHOOK_SECRET")
        except (ValueError, AttributeError):
            value = None
    if not isinstance(value, str) or not value.strip():
        raise ProviderError("The webhook secret is empty or not readable.")
    value = value.strip()
    return value if value.startswith("whsec_") else "whsec_" + value
