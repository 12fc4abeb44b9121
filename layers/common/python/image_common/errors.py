"""The service's error taxonomy.

Domain code raises these; one place (``envelope.error_envelope``) turns them into the HTTP or
tool answer. Each error carries its HTTP status, a stable ``type`` and a message that is safe to
show a caller: never a provider key, token or stack trace.
"""

from __future__ import annotations

import re
from typing import Any

_SECRET_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),  # OpenAI-style keys
    re.compile(r"\bxai-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"),  # Google API keys
    re.compile(r"(?i)\b(bearer|x-key|api[-_ ]?key)\s*[:=]?\s*[A-Za-z0-9._\-]{8,}"),
    re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"),  # JWTs
    re.compile(r"X-Amz-(Signature|Credential|Security-Token)=[^&\s]+"),
)
MAX_MESSAGE_CHARS = 1000


def sanitize_message(message: object) -> str:
    """Strip anything that looks like a credential and cap the length."""
    text = " ".join(str(message).split())
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("[redacted]", text)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


class ImageServiceError(Exception):
    """Base of every error a caller may see."""

    status: int = 500
    type: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        retry_after: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.message = sanitize_message(message)
        self.retry_after = retry_after
        self.details = details or {}
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.details:
            body["details"] = self.details
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        return body


class InvalidRequest(ImageServiceError):
    status, type = 400, "invalid_request"


class UnknownModel(InvalidRequest):
    type = "unknown_model"


class InvalidImage(InvalidRequest):
    type = "invalid_image"


class Unauthorized(ImageServiceError):
    status, type = 401, "unauthorized"


class Forbidden(ImageServiceError):
    status, type = 403, "forbidden"


class NotFound(ImageServiceError):
    status, type = 404, "not_found"


class PayloadTooLarge(ImageServiceError):
    status, type = 413, "payload_too_large"


class ContentPolicyViolation(ImageServiceError):
    status, type = 422, "content_policy_violation"


class ProviderRateLimited(ImageServiceError):
    status, type = 429, "rate_limited"


class CustomerRateLimited(ImageServiceError):
    """The customer sent more requests per minute than its limit; refused before any provider
    call. Same type as a provider's rate limit: to the caller both mean "slow down"."""

    status, type = 429, "rate_limited"


class BudgetExceeded(ImageServiceError):
    """The customer's daily or monthly spend budget cannot cover this request's estimate;
    refused before any provider call. ``retry_after``: when the budget's window resets."""

    status, type = 429, "budget_exceeded"


class ProviderError(ImageServiceError):
    status, type = 502, "provider_error"


class ProviderNotConfigured(ProviderError):
    type = "provider_not_configured"


class StorageError(ImageServiceError):
    status, type = 502, "storage_error"


class ProviderTimeout(ImageServiceError):
    status, type = 504, "provider_timeout"


class JobPending(ImageServiceError):
    """The answer is not ready yet: the job runs on; the same request later receives it."""

    status, type = 503, "job_pending"


class InternalError(ImageServiceError):
    status, type = 500, "internal_error"

    def __init__(self, message: str = "An unexpected error occurred.", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
