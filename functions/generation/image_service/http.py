"""Outbound HTTP: one client per container, provider error mapping, and safe URL downloads.

Every provider call and every fetch of a URL we did not choose (an input image, a provider's
result URL) goes through here, so timeouts, size caps and address checks live in one place.
"""

from __future__ import annotations

import codecs
import ipaddress
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

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


@contextmanager
def provider_call(provider: str) -> Iterator[None]:
    """Map transport failures of a provider call onto the service's errors."""
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


def raise_for_provider_status(
    provider: str, response: httpx.Response, message: str, *, moderated: bool = False
) -> None:
    """Turn a provider's non-2xx answer into the service's error; return quietly on 2xx."""
    status = response.status_code
    if status < 400:
        return
    detail = f"{provider}: {message}" if message else f"{provider} answered HTTP {status}"
    if moderated:
        raise ContentPolicyViolation(f"The {provider} provider refused the request: {message}")
    if status == 429:
        raise ProviderRateLimited(
            f"The {provider} provider is rate limiting requests; try again later.",
            retry_after=retry_after_seconds(response),
        )
    if status == 413:
        raise PayloadTooLarge(f"The request is too large for {provider}.")
    if status in (400, 422):
        raise InvalidRequest(f"The provider rejected the request. {detail}")
    if status == 404:  # the model or endpoint is ours to choose: a retired model, a wrong URL
        raise ProviderError(f"The {provider} provider does not serve this model (HTTP 404).")
    if status in (401, 403):
        # Our credentials, not the caller's: a server-side problem, with no detail to leak.
        raise ProviderError(f"The {provider} provider refused this service's credentials.")
    raise ProviderError(f"The {provider} provider failed (HTTP {status}).")


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
