"""Who the providers are: one record each — name, environment prefix, default base URL, where
it publishes its model list — and the names derived from it (the key's variable, the
per-provider secret's variable).

Standard library only: the CDK app reads it too (one secret and one alarm per provider).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProviderIdentity:
    name: str  # as the registry and the answers spell it
    env_prefix: str  # OPENAI_API_KEY, OPENAI_BASE_URL, …
    default_base_url: str
    # Path of its model list under the base URL (the daily catalog check); None: it has none.
    model_list_path: str | None = None

    @property
    def api_key_variable(self) -> str:
        return f"{self.env_prefix}_API_KEY"

    @property
    def base_url_variable(self) -> str:
        return f"{self.env_prefix}_BASE_URL"

    @property
    def secret_arn_variable(self) -> str:
        """In AWS: the ARN of this provider's own secret, ``{"api_key": "…"}``."""
        return f"{self.env_prefix}_API_KEY_SECRET_ARN"


PROVIDERS: dict[str, ProviderIdentity] = {
    p.name: p
    for p in (
        ProviderIdentity("openai", "OPENAI", "https://api.openai.com/v1", "/models"),
        ProviderIdentity("stability", "STABILITY", "https://api.stability.ai"),
        ProviderIdentity("flux", "BFL", "https://api.bfl.ai"),
        ProviderIdentity(
            "google", "GEMINI", "https://generativelanguage.googleapis.com/v1beta", "/models"
        ),
        ProviderIdentity("xai", "XAI", "https://api.x.ai/v1", "/image-generation-models"),
    )
}

# The providers the daily catalog check asks (Stability and Black Forest Labs publish no list).
MODEL_LIST_PROVIDERS: tuple[str, ...] = tuple(n for n, p in PROVIDERS.items() if p.model_list_path)
