"""Who the providers are: one record each — name, environment prefix, default base URL, where
it publishes its model list, the header that carries our key — and the names derived from it
(the key's variable, the per-provider secret's variable). The adapters' calls
(``image_service.http.ProviderWire``) and the daily model-list check both send the key as the
record says.

Standard library only: the CDK app reads it too (one secret and one alarm per provider).
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass


@dataclass(frozen=True)
class ProviderIdentity:
    name: str  # as the registry and the answers spell it
    env_prefix: str  # OPENAI_API_KEY, OPENAI_BASE_URL, …
    default_base_url: str
    # Path of its model list under the base URL (the daily catalog check); None: it has none.
    model_list_path: str | None = None
    _: KW_ONLY
    key_header: str  # the header its API reads our key from
    key_prefix: str = ""  # what precedes the key in it ("Bearer " for authorization)

    def key_headers(self, api_key: str) -> dict[str, str]:
        """The header that carries ``api_key`` on a call to this provider's API."""
        return {self.key_header: f"{self.key_prefix}{api_key}"}

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


_BEARER = {"key_header": "authorization", "key_prefix": "Bearer "}

PROVIDERS: dict[str, ProviderIdentity] = {
    p.name: p
    for p in (
        ProviderIdentity("openai", "OPENAI", "https://api.openai.com/v1", "/models", **_BEARER),
        ProviderIdentity("stability", "STABILITY", "https://api.stability.ai", **_BEARER),
        ProviderIdentity("flux", "BFL", "https://api.bfl.ai", key_header="x-key"),
        ProviderIdentity(
            "google",
            "GEMINI",
            "https://generativelanguage.googleapis.com/v1beta",
            "/models",
            key_header="x-goog-api-key",
        ),
        ProviderIdentity(
            "xai", "XAI", "https://api.x.ai/v1", "/image-generation-models", **_BEARER
        ),
    )
}

# The providers the daily catalog check asks (Stability and Black Forest Labs publish no list).
MODEL_LIST_PROVIDERS: tuple[str, ...] = tuple(n for n, p in PROVIDERS.items() if p.model_list_path)
