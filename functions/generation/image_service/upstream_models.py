"""The providers' own model lists, read through their real endpoints, filtered to image models.

- OpenAI ``GET /v1/models``: ``{"object": "list", "data": [{"id", …, "shutdown_date"?}]}``; a
  deprecated model carries its ``shutdown_date`` (YYYY-MM-DD).
- Gemini ``GET /v1beta/models``: ``{"models": [{"name": "models/…",
  "supportedGenerationMethods"}], "nextPageToken"?}``, paginated (``pageSize``, ``pageToken``);
  no shutdown dates.
- xAI ``GET /v1/image-generation-models``: ``{"models": [{"id", "aliases", …}]}``; image models
  only, no shutdown dates.
- Stability and Black Forest Labs publish no model list.

Where each list lives, and the header that carries the key, is the provider's identity record
(``model_list_path``, ``key_headers``: the same header the adapters send). Keys and base
URLs are read as the adapters read them (``image_common.credentials``): a provider
with no key is "not checked", not an error. A failed list call becomes a ``failed`` listing whose
reason names the HTTP status or the kind of failure — never the provider's message, which may
quote the key.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterator
from functools import partial

import httpx

from image_common.credentials import ProviderEndpoint, provider_endpoint
from image_common.errors import ProviderError, ProviderNotConfigured
from image_common.provider_identity import PROVIDERS
from image_service.http import get_http_client, request_timeout
from image_service.model_drift import ListFetcher, ProviderListing, UpstreamModel

LIST_TIMEOUT_SECONDS = 10.0
GEMINI_PAGE_SIZE = 1000  # the API's maximum; the emulator serves smaller pages to test paging
MAX_PAGES = 50  # a provider that pages forever is a failure, not a hang
NO_MODEL_LIST = "the provider publishes no model list"
_SAFE_CODE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class ModelListError(Exception):
    """The list could not be read; the message is safe to log and show."""


# --- image-model filters: the lists also hold text, audio and embedding models ---------------


def is_openai_image_model(model_id: str) -> bool:
    return "image" in model_id or model_id.startswith("dall-e")


def is_gemini_image_model(model_id: str, methods: list[str]) -> bool:
    # Gemini image models answer generateContent (Imagen: predict); the list has no output
    # modality, so the name decides: "…-image…", "imagen-…", and the "nano-banana" line.
    named = "image" in model_id or model_id.startswith("imagen") or "nano-banana" in model_id
    return named and bool({"generateContent", "predict"} & set(methods))


# --- one reader per provider -----------------------------------------------------------------


def read_openai_models(endpoint: ProviderEndpoint, timeout: float) -> list[UpstreamModel]:
    body = _get_json("openai", endpoint, timeout=timeout)
    items = _list_of(body, "data")
    return [
        UpstreamModel(id=item["id"], shutdown_date=_date(item.get("shutdown_date")))
        for item in items
        if is_openai_image_model(item["id"])
    ]


def read_gemini_models(endpoint: ProviderEndpoint, timeout: float) -> list[UpstreamModel]:
    models = []
    for item in _gemini_pages(endpoint, timeout):
        model_id = str(item["name"]).removeprefix("models/")
        methods = item.get("supportedGenerationMethods") or []
        if is_gemini_image_model(model_id, methods):
            models.append(UpstreamModel(id=model_id))
    return models


def _gemini_pages(endpoint: ProviderEndpoint, timeout: float) -> Iterator[dict]:
    token: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        params = {"pageSize": str(GEMINI_PAGE_SIZE)} | ({"pageToken": token} if token else {})
        body = _get_json("google", endpoint, params=params, timeout=timeout)
        yield from _list_of(body, "models", allow_missing=True)
        token = body.get("nextPageToken") or None
        if token is None:
            return
        if token in seen:
            raise ModelListError("the model list pages in a loop (a page token repeated)")
        seen.add(token)
    raise ModelListError(f"the model list has more than {MAX_PAGES} pages")


def read_xai_models(endpoint: ProviderEndpoint, timeout: float) -> list[UpstreamModel]:
    body = _get_json("xai", endpoint, timeout=timeout)
    models = []
    for item in _list_of(body, "models"):
        aliases = item.get("aliases") or []
        if not isinstance(aliases, list):
            raise ModelListError("unexpected answer: aliases is not a list")
        models.append(UpstreamModel(id=item["id"], aliases=tuple(str(a) for a in aliases)))
    return models


Reader = Callable[[ProviderEndpoint, float], list[UpstreamModel]]

# Provider → how to read its list: every provider whose identity names a ``model_list_path``.
MODEL_LIST_READERS: dict[str, Reader] = {
    "openai": read_openai_models,
    "google": read_gemini_models,
    "xai": read_xai_models,
}


def fetch_listing(
    provider: str, *, timeout: float = LIST_TIMEOUT_SECONDS, reader: Reader | None = None
) -> ProviderListing:
    """The provider's image models, or a listing that says why there are none."""
    reader = reader or MODEL_LIST_READERS.get(provider)
    if reader is None:
        return ProviderListing(provider, "no_model_list", reason=NO_MODEL_LIST)
    try:
        endpoint = provider_endpoint(provider)
    except ProviderNotConfigured:
        return ProviderListing(provider, "not_checked", reason="no API key configured")
    except ProviderError as error:  # the keys secret could not be read
        return ProviderListing(provider, "failed", reason=error.message)
    try:
        models = reader(endpoint, timeout)
    except ModelListError as error:
        return ProviderListing(provider, "failed", reason=str(error))
    except httpx.TimeoutException:
        return ProviderListing(provider, "failed", reason=f"no answer within {timeout:g} s")
    except httpx.HTTPError as error:
        return ProviderListing(
            provider, "failed", reason=f"could not reach the provider ({type(error).__name__})"
        )
    except (KeyError, TypeError, AttributeError, ValueError):
        return ProviderListing(provider, "failed", reason="unexpected answer: a model entry")
    return ProviderListing(provider, "checked", models=tuple(models))


def listing_fetchers(
    providers: tuple[str, ...], *, timeout: float = LIST_TIMEOUT_SECONDS
) -> dict[str, ListFetcher]:
    """One fetcher per provider, in the given order, for ``model_drift.check_catalog``."""
    return {p: partial(fetch_listing, p, timeout=timeout) for p in providers}


# --- plumbing --------------------------------------------------------------------------------


def _get_json(
    provider: str,
    endpoint: ProviderEndpoint,
    *,
    timeout: float,
    params: dict[str, str] | None = None,
) -> dict:
    """GET the provider's model list (its identity's path), with the key in the header its
    identity names — the same one the adapters send."""
    identity = PROVIDERS[provider]
    response = get_http_client().get(
        f"{endpoint.base_url}{identity.model_list_path}",
        headers=identity.key_headers(endpoint.api_key),
        params=params,
        timeout=request_timeout(timeout),
    )
    if response.status_code != 200:
        raise ModelListError(f"HTTP {response.status_code}{_error_code(response)}")
    try:
        body = response.json()
    except ValueError:
        raise ModelListError("unexpected answer: not JSON") from None
    if not isinstance(body, dict):
        raise ModelListError("unexpected answer: not a JSON object")
    return body


def _list_of(body: dict, name: str, *, allow_missing: bool = False) -> list[dict]:
    items = body.get(name, [] if allow_missing else None)
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("id", i.get("name")), str) for i in items
    ):
        raise ModelListError(f"unexpected answer: no '{name}' list of models")
    return items


def _error_code(response: httpx.Response) -> str:
    """The provider's machine-readable error code (OpenAI ``code``, Gemini ``status``), if it is
    a plain token: never the message, which may quote the key."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    if not isinstance(error, dict):
        return ""
    for name in ("code", "status", "type"):
        value = error.get(name)
        if isinstance(value, str) and _SAFE_CODE.match(value):
            return f" ({value})"
    return ""


def _date(value: object) -> datetime.date | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ModelListError("unexpected answer: shutdown_date is not a date")
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise ModelListError(f"unexpected answer: shutdown_date {value[:20]!r}") from None
