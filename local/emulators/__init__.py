"""Provider emulators: each speaks one provider's wire protocol and returns real image bytes.

``EMULATORS`` maps the service's provider name to (environment prefix, emulator class); the
local stack and the tests start one per provider that has no key or base URL of its own.
"""

from __future__ import annotations

import httpx

from local.emulators.base import Emulator
from local.emulators.flux import FluxEmulator
from local.emulators.gemini import GeminiEmulator
from local.emulators.openai import OpenAIEmulator
from local.emulators.stability import StabilityEmulator
from local.emulators.xai import XAIEmulator

EMULATORS: dict[str, tuple[str, type[Emulator]]] = {
    "openai": ("OPENAI", OpenAIEmulator),
    "stability": ("STABILITY", StabilityEmulator),
    "google": ("GEMINI", GeminiEmulator),
    "xai": ("XAI", XAIEmulator),
    "flux": ("BFL", FluxEmulator),
}

# The path each provider's base URL carries (``{PREFIX}_BASE_URL`` = emulator URL + this).
BASE_PATHS = {"openai": "/v1", "stability": "", "flux": "", "google": "/v1beta", "xai": "/v1"}


class EmulatorRouter(httpx.MockTransport):
    """One in-process transport for every emulator, routed by host name."""

    def __init__(self, emulators: dict[str, Emulator]) -> None:
        self.by_host = {}
        for provider, emulator in emulators.items():
            host = f"{provider}.emulator.test"
            emulator.base_url = f"https://{host}"
            self.by_host[host] = emulator.transport()
        super().__init__(self._route)

    def _route(self, request: httpx.Request) -> httpx.Response:
        transport = self.by_host.get(request.url.host)
        if transport is None:
            raise httpx.ConnectError(f"no emulator for {request.url.host}", request=request)
        return transport.handle_request(request)


def in_process_base_url(provider: str) -> str:
    return f"https://{provider}.emulator.test{BASE_PATHS[provider]}"
