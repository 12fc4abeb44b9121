"""Outbound HTTP: one client per container, the providers' call, and safe URL downloads.

Every provider call and every fetch of a URL we did not choose (an input image, a provider's
result URL) goes through here, so timeouts, size caps and address checks live in one place.
The adapters share one call (``provider_exchange``: key header, timeout, transport failures and
error statuses mapped onto the service's errors); what differs between providers is data, a
``ProviderWire`` each.
"""

from __future__ import annotations

import codecs
import ipaddress
import json
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from image_common.credentials import ProviderEndpoint
from image_common.errors import (
    ContentPolicyViolation,
    ImageServiceError,
    InvalidImage,
    InvalidRequest,
    PayloadTooLarge,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
)
from image_common.provider_identity import ProviderIdentity
from image_common.settings import url_origin

CONNECT_TIMEOUT_SECONDS = 5.0
DOWNLOAD_TIMEOUT_SECONDS = 15.0
MAX_REDIRECTS = 3
USER_AGENT = "image-generation-service/1.0"


_client: httpx.Client | None = None


def get_http_client() -> httpx.Client:
    """Created once per container; reused across invocations (connection pooling)."""
    global _client
    if _client is None:
        _client = new_http_client()
    return _client


def set_http_client(client: httpx.Client | None) -> None:
    """Swap the container's client (tests and the local stack route it to emulators)."""
    global _client
    _client = client


def new_http_client(transport: httpx.BaseTransport | None = None) -> httpx.Client:
    return httpx.Client(
        transport=transport,
        timeout=httpx.Timeout(30.0, connect=CONNECT_TIMEOUT_SECONDS),
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        follow_redirects=False,
        headers={"user-agent": USER_AGENT},
    )


def request_timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(CONNECT_TIMEOUT_SECONDS, seconds))


# --- provider calls ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorAnswer:
    """What a provider's error answer says, as that provider's reader finds it."""

    message: str = ""
    code: str = ""  # the provider's error code or name, looked up in its wire's code sets


# The error answer's JSON (None when it is not JSON) → what it says.
ErrorReader = Callable[[Any], ErrorAnswer]


def read_error_object(body: Any) -> ErrorAnswer:
    """``{"error": {"message", "code"}}`` (OpenAI, Gemini, xAI), or ``{"error": "…"}`` (xAI's flat
    shape, OpenAI-compatible gateways)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return ErrorAnswer(error)
    if not isinstance(error, dict):
        return ErrorAnswer()
    code = error.get("code")
    return ErrorAnswer(str(error.get("message") or ""), code if isinstance(code, str) else "")


@dataclass(frozen=True)
class ProviderWire:
    """What differs between the providers' HTTP calls, as data: who it is (its identity record,
    which says how the key travels), how an error answer reads, which error codes mean a
    refusal or a model it does not serve. ``provider_exchange`` is the call itself, the same
    for every adapter."""

    identity: ProviderIdentity
    read_error: ErrorReader = read_error_object
    content_policy_codes: frozenset[str] = frozenset()  # → 422 content_policy_violation
    model_not_found_codes: frozenset[str] = frozenset()  # besides any 404 → 502
    # The provider's own wording for a status; the status still decides the error's type.
    status_messages: Mapping[int, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.identity.name


@contextmanager
def provider_exchange(
    wire: ProviderWire,
    endpoint: ProviderEndpoint,
    method: str,
    url: str,
    *,
    timeout_seconds: float,
    model: str | None = None,
    check_status: bool = True,
    headers: Mapping[str, str] | None = None,
    **content: Any,
) -> Iterator[httpx.Response]:
    """One call to a provider, with its key, on the container's client.

    A transport failure — sending, or reading the answer inside the ``with`` — is a
    ``ProviderTimeout`` (504) or ``ProviderError`` (502); an error status is the service's typed
    error (``provider_status_error``) unless ``check_status`` is false (a caller that reads the
    status itself). A successful answer is left unread: ``json_or_error`` parses it from the
    stream, ``response.read()`` takes raw bytes — one copy either way.
    """
    sent_headers = {**wire.identity.key_headers(endpoint.api_key), **(headers or {})}
    client = get_http_client()
    timeout = request_timeout(timeout_seconds)
    with (
        _transport_errors(wire.name),
        provider_answer(
            client, method, url, headers=sent_headers, timeout=timeout, **content
        ) as response,
    ):
        if check_status and response.status_code >= 400:
            raise provider_status_error(wire, response, model=model, api_key=endpoint.api_key)
        yield response


@contextmanager
def _transport_errors(provider: str) -> Iterator[None]:
    try:
        yield
    except ImageServiceError:
        raise
    except httpx.TimeoutException:
        raise ProviderTimeout(f"The {provider} provider did not answer in time.") from None
    except httpx.HTTPError:
        raise ProviderError(f"Could not reach the {provider} provider.") from None


def retry_after_seconds(response: httpx.Response) -> int | None:
    value = response.headers.get("retry-after")
    if value and value.strip().isdigit():
        return int(value.strip())
    return None


def provider_status_error(
    wire: ProviderWire, response: httpx.Response, *, model: str | None = None, api_key: str = ""
) -> ImageServiceError:
    """A provider's error answer (read whole) as the service's error. Only the 400 and the
    refusal quote the provider's message (the caller can act on it), with our key struck out."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    said = wire.read_error(body)
    message = said.message.replace(api_key, "[redacted]") if api_key else said.message
    provider, own = wire.name, wire.status_messages.get(status)
    if said.code and said.code in wire.content_policy_codes:
        return ContentPolicyViolation(f"The {provider} provider refused the request: {message}")
    if status == 429:
        return ProviderRateLimited(
            own or f"The {provider} provider is rate limiting requests; try again later.",
            retry_after=retry_after_seconds(response),
        )
    if status == 413:
        return PayloadTooLarge(own or f"The request is too large for {provider}.")
    if status == 404 or (said.code and said.code in wire.model_not_found_codes):
        # The model is ours to choose (the catalog's): a retired model or a wrong URL, not the
        # caller's mistake.
        served = model or "this model"
        return ProviderError(
            own or f"The {provider} provider does not serve {served} (HTTP {status})."
        )
    if status in (400, 422):
        detail = f"{provider}: {message}" if message else f"{provider} answered HTTP {status}"
        return InvalidRequest(own or f"The provider rejected the request. {detail}")
    if status in (401, 403):
        # Our credentials, not the caller's: a server-side problem, with no detail to leak.
        return ProviderError(own or f"The {provider} provider refused this service's credentials.")
    return ProviderError(own or f"The {provider} provider failed (HTTP {status}).")


@contextmanager
def provider_answer(
    client: httpx.Client, method: str, url: str, **kwargs: Any
) -> Iterator[httpx.Response]:
    """A provider call whose successful answer is left unread, for ``json_or_error`` to parse
    piece by piece; an error answer (small) is read whole for the error mapping."""
    with client.stream(method, url, **kwargs) as response:
        if response.status_code >= 400:
            response.read()
        yield response


def json_or_error(provider: str, response: httpx.Response) -> dict:
    """The body of a successful answer as a JSON object, or a 502 for garbage."""
    try:
        body = json.loads(_body_for_json(response))
    except ValueError:
        raise ProviderError(f"The {provider} provider sent an answer that is not JSON.") from None
    if not isinstance(body, dict):
        raise ProviderError(f"The {provider} provider sent an unexpected answer.")
    return body


def _body_for_json(response: httpx.Response) -> bytes | str:
    """The body, for ``json.loads``. An unread (streamed) answer is decoded chunk by chunk, so
    its bytes and its text are never both held whole: an image's base64 inside the JSON would
    otherwise be held three times while it is parsed (bytes, decoded text, parsed string)."""
    try:
        return response.content
    except httpx.ResponseNotRead:
        decoder = codecs.getincrementaldecoder(response.encoding or "utf-8")()
        pieces = [decoder.decode(chunk) for chunk in response.iter_bytes()]
        pieces.append(decoder.decode(b"", final=True))
        return "".join(pieces)


# --- downloads of URLs we did not choose --------------------------------------------------------


def check_public_url(url: str, *, trusted_origins: frozenset[str] = frozenset()) -> None:
    """Refuse anything but https to a public address (SSRF guard). Only a URL whose origin is
    one of ``trusted_origins`` (the local stack's emulators and moto, by exact origin) skips it.
    """
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number in 0–65535
    except ValueError:
        raise InvalidImage("The image URL is not a valid URL.") from None
    if trusted_origins and url_origin(url) in trusted_origins:
        return
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidImage("Image URLs must be https URLs.")
    try:
        infos = socket.getaddrinfo(parts.hostname, port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):  # UnicodeError: a label IDNA cannot encode
        raise InvalidImage("The image URL's host could not be resolved.") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global or address.is_multicast:
            raise InvalidImage("The image URL points to a private or reserved address.")


def download(
    url: str,
    *,
    max_bytes: int,
    trusted_origins: frozenset[str] = frozenset(),
    timeout_seconds: float = DOWNLOAD_TIMEOUT_SECONDS,
    what: str = "image",
    error: type[ImageServiceError] = InvalidImage,
) -> bytes:
    """GET a URL with no credentials, checking every redirect hop, capped in size and time.

    ``timeout_seconds`` bounds the whole fetch — every redirect hop and a slow trickle of bytes
    — not only each network wait. ``error`` is what a failed fetch raises: a bad caller-supplied
    URL is the caller's 400, a provider's result URL that fails is the provider's 502.
    """
    client = get_http_client()
    deadline = time.monotonic() + timeout_seconds
    for _ in range(MAX_REDIRECTS + 1):
        try:
            check_public_url(url, trusted_origins=trusted_origins)
        except InvalidImage as refused:
            if error is InvalidImage:
                raise
            # A provider's URL that points inward is the provider's fault (502), not the caller's.
            raise error(f"The {what} URL was refused: {refused.message}") from None
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise httpx.TimeoutException("download deadline")
            with client.stream("GET", url, timeout=request_timeout(remaining)) as response:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise error(f"Fetching the {what} failed (HTTP {response.status_code}).")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise PayloadTooLarge(f"The {what} is larger than {max_bytes} bytes.")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    if time.monotonic() > deadline:
                        raise httpx.TimeoutException("download deadline")
                    size += len(chunk)
                    if size > max_bytes:
                        raise PayloadTooLarge(f"The {what} is larger than {max_bytes} bytes.")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.TimeoutException:
            raise ProviderTimeout(f"Fetching the {what} timed out.") from None
        except (httpx.HTTPError, httpx.InvalidURL):
            raise error(f"Fetching the {what} failed.") from None
    raise error(f"Fetching the {what} was redirected too many times.")
