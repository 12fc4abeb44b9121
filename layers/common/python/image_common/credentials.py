"""Provider endpoints and API keys.

Keys come from ``{PROVIDER}_API_KEY`` in the environment (local stack, tests) or, in AWS, from
that provider's own Secrets Manager secret (``{PROVIDER}_API_KEY_SECRET_ARN``, holding
``{"api_key": "…"}``) read once per container through Powertools' cached parameters. A function
is given the ARNs of the keys it uses only. Base URLs follow ``{PROVIDER}_BASE_URL``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from aws_lambda_powertools import Logger

from image_common.errors import ProviderError, ProviderNotConfigured
from image_common.provider_identity import PROVIDERS, ProviderIdentity

# provider → (environment prefix, default base URL)
PROVIDER_ENDPOINTS: dict[str, tuple[str, str]] = {
    name: (p.env_prefix, p.default_base_url) for name, p in PROVIDERS.items()
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
    identity = PROVIDERS[provider]
    base_url = os.environ.get(identity.base_url_variable) or identity.default_base_url
    api_key = os.environ.get(identity.api_key_variable) or _secret_key(identity)
    if not api_key:
        raise ProviderNotConfigured(f"The {provider} provider is not configured on this service.")
    return ProviderEndpoint(base_url=base_url.rstrip("/"), api_key=api_key)


def _secret_key(identity: ProviderIdentity) -> str:
    """The provider's own secret, cached by Powertools for ``SECRET_MAX_AGE_SECONDS``: read once
    per container, and a rotated key reaches warm containers within that time."""
    arn = os.environ.get(identity.secret_arn_variable)
    if not arn:
        return ""
    from aws_lambda_powertools.utilities import parameters  # boto3: only when a secret is used

    try:
        value = parameters.get_secret(arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
    except Exception as error:  # the AWS detail (ARN, account) stays out of the answer
        logger.error("provider secret unreadable", extra={"error_class": type(error).__name__})
        raise ProviderError("The provider credentials could not be read.") from None
    if not isinstance(value, dict):
        raise ProviderError("The provider credentials secret is not a JSON object.")
    return str(value.get("api_key") or "")
