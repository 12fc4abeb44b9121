"""Provider emulators: each speaks one provider's wire protocol and returns real image bytes.

``EMULATORS`` maps the service's provider name to its emulator class; the local stack and the
tests start one per provider that has no key or base URL of its own. Everything else about a
provider (environment prefix, key and base-URL variables) is its identity record,
``image_common.provider_identity.PROVIDERS``; the path its base URL carries is the emulator's
``base_path``.
"""

from __future__ import annotations

import httpx

from local.emulators.base import Emulator
from local.emulators.flux import FluxEmulator
from local.emulators.gemini import GeminiEmulator
from local.emulators.openai import OpenAIEmulator
from local.emulators.stability import StabilityEmulator
from local.emulators.xai import XAIEmulator

EMULATORS: dict[str, type[Emulator]] = {
    emulator.provider: emulator
    for emulator in (
        OpenAIEmulator,
        StabilityEmulator,
        GeminiEmulator,
        XAIEmulator,
        FluxEmulator,
    )
}


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
    return f"https://{provider}.emulator.test{EMULATORS[provider].base_path}"


def served_base_url(emulator: Emulator) -> str:
    """What ``{PREFIX}_BASE_URL`` is for an emulator serving over HTTP."""
    return emulator.base_url + emulator.base_path
