"""Provider endpoints and API keys.

Keys come from ``{PROVIDER}_API_KEY`` in the environment (local stack, tests) or from one
Secrets Manager secret (``PROVIDER_SECRETS_ARN``, a JSON object of the same names) read once
per container through Powertools' cached parameters. Base URLs follow ``{PROVIDER}_BASE_URL``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from aws_lambda_powertools import Logger

from image_common.errors import ProviderError, ProviderNotConfigured

# provider → (environment prefix, default base URL)
PROVIDER_ENDPOINTS: dict[str, tuple[str, str]] = {
    "openai": ("OPENAI", "https://api.openai.com/v1"),
    "stability": ("STABILITY", "https://api.stability.ai"),
    "flux": ("BFL", "https://api.bfl.ai"),
    "google": ("GEMINI", "https://generativelanguage.googleapis.com/v1beta"),
    "xai": ("XAI", "https://api.x.ai/v1"),
}
SECRET_MAX_AGE_SECONDS = 3600
logger = Logger(child=True)


@dataclass(frozen=True)
class ProviderEndpoint:
    base_url: str
    api_key: str = ""

    def __repr__(self) -> str:  # keep the key out of any log or traceback
        return f"ProviderEndpoint(base_url={self.base_url!r}, api_key=***)"


def provider_endpoint(provider: str) -> ProviderEndpoint:
    prefix, default_url = PROVIDER_ENDPOINTS[provider]
    base_url = os.environ.get(f"{prefix}_BASE_URL") or default_url
    key_name = f"{prefix}_API_KEY"
    api_key = os.environ.get(key_name) or _secret_keys().get(key_name, "")
    if not api_key:
        raise ProviderNotConfigured(f"The {provider} provider is not configured on this service.")
    return ProviderEndpoint(base_url=base_url.rstrip("/"), api_key=api_key)


def _secret_keys() -> dict[str, str]:
    """The provider keys secret, cached by Powertools for ``SECRET_MAX_AGE_SECONDS``: read once
    per container, and a rotated key reaches warm containers within that time."""
    arn = os.environ.get("PROVIDER_SECRETS_ARN")
    if not arn:
        return {}
    from aws_lambda_powertools.utilities import parameters  # boto3: only when a secret is used

    try:
        value = parameters.get_secret(arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
    except Exception as error:  # the AWS detail (ARN, account) stays out of the answer
        logger.error("provider secret unreadable", extra={"error_class": type(error).__name__})
        raise ProviderError("The provider credentials could not be read.") from None
    if not isinstance(value, dict):
        raise ProviderError("The provider credentials secret is not a JSON object.")
    return {k: str(v) for k, v in value.items()}
