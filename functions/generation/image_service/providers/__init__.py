"""Provider adapters: one module each, one interface (``base.ImageProvider``)."""

from __future__ import annotations

import importlib
from functools import cache

from image_service.providers.base import ImageProvider

# provider name → module under image_service.providers; imported only when first used, so a
# request for one provider never pays the import of the others.
_ADAPTER_MODULES = {
    "openai": "openai",
    "stability": "stability",
    "flux": "flux",
    "google": "gemini",
    "xai": "xai",
}


@cache
def get_image_provider(provider: str) -> ImageProvider:
    """The adapter for a provider, created once per container."""
    module = importlib.import_module(f"image_service.providers.{_ADAPTER_MODULES[provider]}")
    return module.create_provider()
