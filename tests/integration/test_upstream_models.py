"""Reading the providers' model lists: each reader against its emulator over real HTTP, with
pagination, provider errors, and keys read as the adapters read them."""

from __future__ import annotations

import datetime
import importlib
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml

from image_common.provider_identity import MODEL_LIST_PROVIDERS, PROVIDERS
from image_service import http as service_http
from image_service.upstream_models import (
    MODEL_LIST_READERS,
    NO_MODEL_LIST,
    fetch_listing,
    listing_fetchers,
)
from local.emulators.model_lists import ModelListing, plant_models
from tests.conftest import PROVIDER_KEYS

TODAY = datetime.date(2026, 11, 30)
SPEC_PATH = Path(__file__).parents[1] / "specs" / "openai-openapi.yaml"


@pytest.fixture
def listed(emulator_over_http):
    """Serve one provider's emulator over HTTP; its calendar is ``TODAY``."""

    def serve(provider: str):
        emulator = emulator_over_http(provider)
        assert emulator.clock() == TODAY
        return emulator

    return serve


def ids(listing) -> set[str]:
    return {m.id for m in listing.models}


# --- OpenAI ----------------------------------------------------------------------------------


def test_openai_list_is_filtered_to_image_models_with_their_shutdown_dates(listed):
    emulator = listed("openai")
    listing = fetch_listing("openai")
    assert listing.state == "checked"
    assert {"gpt-image-2", "gpt-image-2.6-flare", "gpt-image-1.5"} <= ids(listing)
    assert not {"gpt-5", "whisper-1", "text-embedding-3-small"} & ids(listing)
    # shut down before TODAY: no longer listed, as OpenAI does
    assert not {"gpt-image-1", "dall-e-3"} & ids(listing)
    dates = {m.id: m.shutdown_date for m in listing.models}
    assert dates["gpt-image-1.5"] == datetime.date(2026, 12, 1) and dates["gpt-image-2"] is None
    (request,) = [r for r in emulator.requests if r.path == "/v1/models"]
    assert request.method == "GET"
    assert request.headers["authorization"] == f"Bearer {PROVIDER_KEYS['openai']}"


def test_openai_emulator_list_matches_openai_s_list_models_schema(listed):
    emulator = listed("openai")
    emulator.model_listing.plant("gpt-image-2", shutdown_date=datetime.date(2026, 12, 10))
    body = httpx.get(f"{emulator.base_url}/v1/models", headers={"authorization": "Bearer k"}).json()
    with SPEC_PATH.open() as handle:
        spec = yaml.safe_load(handle)
    jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/ListModelsResponse", "components": spec["components"]}
    ).validate(body)
    planted = next(m for m in body["data"] if m["id"] == "gpt-image-2")
    assert planted["shutdown_date"] == "2026-12-10"
    assert all("shutdown_date" not in m for m in body["data"] if m["id"] == "gpt-5")


def test_openai_list_error_is_reported_by_status_and_code_never_the_key(listed):
    emulator = listed("openai")
    emulator.model_listing.fail_status = 401
    listing = fetch_listing("openai")
    assert listing.state == "failed"
    assert listing.reason == "HTTP 401 (invalid_api_key)"
    key = PROVIDER_KEYS["openai"]
    assert key[-4:] not in listing.reason and "***" not in listing.reason


def test_the_openai_list_without_a_key_is_refused_by_the_emulator(listed):
    emulator = listed("openai")
    answer = httpx.get(f"{emulator.base_url}/v1/models")
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "invalid_request_error"


# --- Gemini ----------------------------------------------------------------------------------


def test_gemini_list_follows_every_page(listed):
    emulator = listed("google")
    emulator.model_listing.page_size_limit = 3  # the fetcher asks for 1000; the API caps it
    listing = fetch_listing("google")
    assert listing.state == "checked"
    assert ids(listing) == {
        "gemini-3.1-flash-image",
        "gemini-3-pro-image",
        "gemini-nano-banana-2.1",
        "gemini-3.1-flash-lite-image",
    }
    pages = [r for r in emulator.requests if r.path == "/v1beta/models"]
    assert len(pages) == 3  # 9 models listed today, 3 a page
    assert "pageToken" not in pages[0].query and pages[0].query["pageSize"] == "1000"
    assert all(r.query.get("pageToken") for r in pages[1:])
    assert all(r.headers["x-goog-api-key"] == PROVIDER_KEYS["google"] for r in pages)


def test_gemini_list_keeps_imagen_only_while_google_lists_it(listed):
    emulator = listed("google")
    emulator.clock = lambda: datetime.date(2026, 8, 16)  # the day before Imagen's shutdown
    assert {"imagen-4.0-generate-001", "gemini-2.5-flash-image"} <= ids(fetch_listing("google"))
    emulator.clock = lambda: datetime.date(2026, 8, 17)
    assert "imagen-4.0-generate-001" not in ids(fetch_listing("google"))


def test_gemini_list_error_is_reported_with_google_s_status(listed):
    listed("google").model_listing.fail_status = 503
    listing = fetch_listing("google")
    assert (listing.state, listing.reason) == ("failed", "HTTP 503 (UNAVAILABLE)")


def test_a_bad_gemini_page_token_is_a_400_from_the_emulator(listed):
    emulator = listed("google")
    answer = httpx.get(
        f"{emulator.base_url}/v1beta/models",
        params={"pageToken": "not-a-token"},
        headers={"x-goog-api-key": "k"},
    )
    assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_a_gemini_list_that_pages_in_a_loop_fails_instead_of_hanging(monkeypatch):
    monkeypatch.setenv("GEMINI_BASE_URL", "https://google.example.test/v1beta")
    monkeypatch.setenv("GEMINI_API_KEY", PROVIDER_KEYS["google"])
    looping = httpx.MockTransport(
        lambda request: httpx.Response(200, json={"models": [], "nextPageToken": "same"})
    )
    service_http.set_http_client(service_http.new_http_client(looping))
    try:
        listing = fetch_listing("google")
    finally:
        service_http.set_http_client(None)
    assert listing.state == "failed" and "repeated" in listing.reason


# --- xAI -------------------------------------------------------------------------------------


def test_xai_list_carries_aliases_and_drops_retired_models(listed):
    emulator = listed("xai")
    emulator.model_listing.plant("grok-imagine-image-3", aliases=("grok-imagine-image-latest",))
    listing = fetch_listing("xai")
    assert ids(listing) == {"grok-imagine-image", "grok-imagine-image-2.0", "grok-imagine-image-3"}
    planted = next(m for m in listing.models if m.id == "grok-imagine-image-3")
    assert planted.aliases == ("grok-imagine-image-latest",)
    (request,) = [r for r in emulator.requests if r.path == "/v1/image-generation-models"]
    assert request.headers["authorization"] == f"Bearer {PROVIDER_KEYS['xai']}"


def test_xai_list_before_grok_imagine_quality_shut_down_lists_it_with_its_alias(listed):
    emulator = listed("xai")
    emulator.clock = lambda: datetime.date(2026, 11, 1)
    listing = fetch_listing("xai")
    quality = next(m for m in listing.models if m.id == "grok-imagine-image-quality")
    assert quality.aliases == ("grok-imagine-image-pro",)


def test_xai_list_error_and_a_non_json_answer_are_failures(listed, monkeypatch):
    emulator = listed("xai")
    emulator.model_listing.fail_status = 500
    assert fetch_listing("xai").reason == "HTTP 500"
    html = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>proxy</html>"))
    service_http.set_http_client(service_http.new_http_client(html))
    assert fetch_listing("xai").reason == "unexpected answer: not JSON"


# --- every provider --------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "google", "xai"])
def test_a_provider_without_a_key_is_not_checked_and_not_called(provider, monkeypatch):
    monkeypatch.delenv(PROVIDERS[provider].api_key_variable, raising=False)
    monkeypatch.delenv(PROVIDERS[provider].secret_arn_variable, raising=False)
    calls = []
    recording = httpx.MockTransport(lambda request: calls.append(request) or httpx.Response(500))
    service_http.set_http_client(service_http.new_http_client(recording))
    try:
        listing = fetch_listing(provider)
    finally:
        service_http.set_http_client(None)
    assert (listing.state, listing.reason) == ("not_checked", "no API key configured")
    assert calls == []


@pytest.mark.parametrize("provider", ["stability", "flux"])
def test_stability_and_bfl_publish_no_model_list(provider):
    listing = fetch_listing(provider)
    assert (listing.state, listing.reason) == ("no_model_list", NO_MODEL_LIST)


def test_an_unreachable_provider_is_a_failure_naming_the_kind_of_error(monkeypatch):
    monkeypatch.setenv("XAI_BASE_URL", "http://127.0.0.1:9/v1")  # discard port: refused
    monkeypatch.setenv("XAI_API_KEY", PROVIDER_KEYS["xai"])
    service_http.set_http_client(None)
    listing = fetch_listing("xai", timeout=2.0)
    assert listing.state == "failed" and listing.reason.startswith("could not reach")


def test_a_provider_that_does_not_answer_in_time_is_a_failure(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "https://openai.example.test/v1")
    monkeypatch.setenv("OPENAI_API_KEY", PROVIDER_KEYS["openai"])

    def slow(request):
        raise httpx.ReadTimeout("timed out", request=request)

    service_http.set_http_client(service_http.new_http_client(httpx.MockTransport(slow)))
    try:
        listing = fetch_listing("openai", timeout=1.5)
    finally:
        service_http.set_http_client(None)
    assert (listing.state, listing.reason) == ("failed", "no answer within 1.5 s")


@pytest.mark.parametrize("provider", MODEL_LIST_PROVIDERS)
def test_a_model_list_call_sends_the_key_in_the_header_the_providers_adapter_sends(
    listed, provider
):
    """One definition of how a provider takes our key: the identity record the adapter's wire
    carries is the one the list call reads its header from."""
    from image_service.providers import _ADAPTER_MODULES

    adapter = importlib.import_module(f"image_service.providers.{_ADAPTER_MODULES[provider]}")
    assert adapter.WIRE.identity is PROVIDERS[provider]
    emulator = listed(provider)
    assert fetch_listing(provider).state == "checked"
    [header] = adapter.WIRE.identity.key_headers(PROVIDER_KEYS[provider]).items()
    requests = [
        r for r in emulator.requests if r.path.endswith(PROVIDERS[provider].model_list_path)
    ]
    assert requests and all(r.headers[header[0]] == header[1] for r in requests)


def test_every_provider_with_a_model_list_path_has_a_reader_and_no_other():
    assert set(MODEL_LIST_READERS) == set(MODEL_LIST_PROVIDERS) == {"openai", "google", "xai"}


def test_fetchers_follow_the_given_provider_order():
    assert list(listing_fetchers(("xai", "openai"))) == ["xai", "openai"]


def test_planting_from_the_environment_spec():
    openai = ModelListing("openai", [], clock=lambda: TODAY, publishes_shutdown_dates=True)
    xai = ModelListing("xai", [], clock=lambda: TODAY)
    plant_models({"openai": openai, "xai": xai}, "openai:gpt-image-2@2026-12-10, xai:grok-9")
    assert [(m.id, m.shutdown_date) for m in openai.current()] == [
        ("gpt-image-2", datetime.date(2026, 12, 10))
    ]
    assert [m.id for m in xai.current()] == ["grok-9"]


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("stability:sd4", "provider:model"),
        ("openai", "provider:model"),
        ("xai:grok-9@2026-12-10", "no shutdown dates"),
        ("openai:gpt-image-2@soon", "Invalid isoformat"),
    ],
)
def test_a_bad_plant_spec_is_refused(spec, error):
    listings = {
        "openai": ModelListing("openai", [], publishes_shutdown_dates=True),
        "xai": ModelListing("xai", []),
    }
    with pytest.raises(ValueError, match=error):
        plant_models(listings, spec)
