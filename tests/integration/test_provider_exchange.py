"""The call every provider adapter shares (``image_service.http.provider_exchange``), over real
HTTP to a local server: the key in the provider's header, transport failures and each error
status mapped onto the service's typed errors, the provider's own codes and wording as data, an
answer left unread for the streamed parse — and never the key in an error or a log line."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from image_common.credentials import ProviderEndpoint
from image_common.errors import (
    ContentPolicyViolation,
    ImageServiceError,
    InvalidRequest,
    PayloadTooLarge,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
)
from image_common.provider_identity import ProviderIdentity
from image_service import http as service_http
from image_service.http import (
    ErrorAnswer,
    ProviderWire,
    json_or_error,
    provider_exchange,
)

KEY = "acme-live-key-0123456789abcdef"
ACME = ProviderIdentity(
    "acme", "ACME", "https://api.acme.example", key_header="authorization", key_prefix="Bearer "
)
BFL_LIKE = ProviderIdentity("bfl", "BFL", "https://api.bfl.example", key_header="x-key")
# An OpenAI-like dialect: bearer key, {"error": {"message", "code"}}, codes that mean something.
WIRE = ProviderWire(
    ACME,
    content_policy_codes=frozenset({"moderation_blocked"}),
    model_not_found_codes=frozenset({"model_not_found"}),
)
TIMEOUT_SECONDS = 0.3  # the stalled route never answers before its release, so this must fire


class Provider:
    """A local HTTP server: each path answers what the test set, or stalls until released,
    or breaks off in the middle of its body. Records every request's headers."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.headers: list[dict[str, str]] = []
        self.release = threading.Event()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                provider.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path == "/stall":
                    provider.release.wait(10)
                    return
                if self.path == "/truncated":  # says 1000 bytes, sends 10, hangs up
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", "1000")
                    self.end_headers()
                    self.wfile.write(b'{"data": [')
                    self.close_connection = True
                    return
                status, headers, body = provider.routes[self.path]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def answer(self, path: str, status: int, body: object, headers: dict | None = None) -> str:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        content_type = "text/html" if isinstance(body, bytes) else "application/json"
        self.routes[path] = (status, {"content-type": content_type, **(headers or {})}, raw)
        return f"{self.url}{path}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def provider() -> Iterator[Provider]:
    server = Provider()
    service_http.set_http_client(service_http.new_http_client())
    yield server
    service_http.set_http_client(None)
    server.close()


@pytest.fixture
def endpoint(provider) -> ProviderEndpoint:
    return ProviderEndpoint(base_url=provider.url, api_key=KEY)


def call(endpoint, url: str, *, wire: ProviderWire = WIRE, **kwargs) -> dict:
    """The adapters' skeleton: one exchange, its answer parsed from the stream."""
    kwargs.setdefault("timeout_seconds", TIMEOUT_SECONDS)
    with provider_exchange(wire, endpoint, "POST", url, json={"prompt": "p"}, **kwargs) as answer:
        return json_or_error(wire.name, answer)


def failure(endpoint, url: str, expected: type[ImageServiceError], **kwargs) -> ImageServiceError:
    with pytest.raises(expected) as caught:
        call(endpoint, url, **kwargs)
    error = caught.value
    assert KEY not in error.message and KEY not in json.dumps(error.to_dict())
    chained = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    assert chained is None  # no httpx exception (its request, its headers) rides along
    return error


# --- sending -------------------------------------------------------------------------------------


def test_the_key_travels_in_the_providers_header_beside_the_callers_headers(provider, endpoint):
    url = provider.answer("/ok", 200, {"data": []})
    wire = ProviderWire(BFL_LIKE)
    with provider_exchange(
        wire, endpoint, "POST", url, timeout_seconds=1, headers={"accept": "image/*"}
    ):
        pass
    assert provider.headers[-1]["x-key"] == KEY
    assert provider.headers[-1]["accept"] == "image/*"
    assert "authorization" not in provider.headers[-1]
    assert call(endpoint, url) == {"data": []}
    assert provider.headers[-1]["authorization"] == f"Bearer {KEY}"


def test_a_successful_answer_is_left_unread_for_the_streamed_parse(provider, endpoint):
    url = provider.answer("/ok", 200, {"data": [{"b64_json": "iVBORw0KGgo="}]})
    with provider_exchange(WIRE, endpoint, "POST", url, timeout_seconds=1) as response:
        with pytest.raises(httpx.ResponseNotRead):  # no whole copy of the body was made
            response.content  # noqa: B018
        assert json_or_error("acme", response) == {"data": [{"b64_json": "iVBORw0KGgo="}]}


# --- transport failures --------------------------------------------------------------------------


def test_a_provider_that_does_not_answer_in_time_is_a_504(provider, endpoint):
    error = failure(endpoint, f"{provider.url}/stall", ProviderTimeout)
    assert (error.status, error.type) == (504, "provider_timeout")
    assert error.message == "The acme provider did not answer in time."


def test_a_provider_that_refuses_the_connection_is_a_502(endpoint):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = failure(endpoint, f"http://127.0.0.1:{port}/v1", ProviderError)
    assert (error.status, error.type) == (502, "provider_error")
    assert error.message == "Could not reach the acme provider."


def test_an_answer_that_breaks_off_while_it_is_read_is_a_502(provider, endpoint):
    error = failure(endpoint, f"{provider.url}/truncated", ProviderError)
    assert error.status == 502 and error.message == "Could not reach the acme provider."


# --- error statuses ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_a_502_that_quotes_nothing(provider, endpoint, status):
    url = provider.answer("/auth", status, {"error": {"message": f"Incorrect API key: {KEY}"}})
    error = failure(endpoint, url, ProviderError)
    assert (error.status, error.type) == (502, "provider_error")
    assert error.message == "The acme provider refused this service's credentials."


def test_a_404_is_a_502_naming_the_model_the_provider_does_not_serve(provider, endpoint):
    url = provider.answer("/gone", 404, {"error": {"message": "no such model", "code": None}})
    error = failure(endpoint, url, ProviderError, model="acme-1")
    assert (error.status, error.type) == (502, "provider_error")
    assert error.message == "The acme provider does not serve acme-1 (HTTP 404)."


def test_a_model_not_found_code_is_a_502_even_on_a_400(provider, endpoint):
    # Not the caller's 400: the catalog chose the model.
    gone = {"error": {"message": "The model acme-1 does not exist", "code": "model_not_found"}}
    error = failure(endpoint, provider.answer("/gone", 400, gone), ProviderError, model="acme-1")
    assert error.status == 502 and error.message.endswith("does not serve acme-1 (HTTP 400).")


def test_a_content_policy_code_is_a_422_with_the_providers_reason(provider, endpoint):
    refusal = {"error": {"message": "Your request was rejected", "code": "moderation_blocked"}}
    error = failure(endpoint, provider.answer("/no", 400, refusal), ContentPolicyViolation)
    assert (error.status, error.type) == (422, "content_policy_violation")
    assert error.message == "The acme provider refused the request: Your request was rejected"


def test_a_400_is_the_callers_400_with_the_providers_reason_and_never_our_key(
    provider, endpoint, caplog
):
    echo = {"error": {"message": f"size is invalid for key {KEY}", "code": "invalid_value"}}
    with caplog.at_level(logging.DEBUG):
        error = failure(endpoint, provider.answer("/bad", 400, echo), InvalidRequest)
    assert (error.status, error.type) == (400, "invalid_request")
    assert error.message.startswith("The provider rejected the request. acme: size is invalid")
    assert KEY not in caplog.text


@pytest.mark.parametrize(("retry_after", "expected"), [("7", 7), (None, None), ("soon", None)])
def test_a_429_is_rate_limited_with_the_providers_retry_after(
    provider, endpoint, retry_after, expected
):
    headers = {"retry-after": retry_after} if retry_after else {}
    url = provider.answer("/busy", 429, {"error": {"message": "slow down"}}, headers)
    error = failure(endpoint, url, ProviderRateLimited)
    assert (error.status, error.type, error.retry_after) == (429, "rate_limited", expected)


def test_a_413_is_payload_too_large(provider, endpoint):
    error = failure(endpoint, provider.answer("/big", 413, {}), PayloadTooLarge)
    assert error.status == 413


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_is_a_502_naming_the_status(provider, endpoint, status):
    url = provider.answer("/boom", status, {"error": {"message": "internal"}})
    error = failure(endpoint, url, ProviderError)
    assert error.status == 502 and error.message == f"The acme provider failed (HTTP {status})."


@pytest.mark.parametrize(
    ("status", "expected", "message"),
    [
        (502, ProviderError, "The acme provider failed (HTTP 502)."),
        (400, InvalidRequest, "The provider rejected the request. acme answered HTTP 400"),
    ],
)
def test_an_error_answer_that_is_not_json_is_mapped_by_its_status(
    provider, endpoint, status, expected, message
):
    url = provider.answer("/html", status, b"<html><body>Bad Gateway</body></html>")
    assert failure(endpoint, url, expected).message == message


def test_a_successful_answer_that_is_not_json_is_a_502(provider, endpoint):
    error = failure(endpoint, provider.answer("/html", 200, b"<html>"), ProviderError)
    assert (
        error.status == 502
        and error.message == "The acme provider sent an answer that is not JSON."
    )


# --- the provider's own wording, and callers that read the status themselves ----------------------


def test_a_providers_own_wording_replaces_the_message_but_the_status_keeps_the_type(
    provider, endpoint
):
    wire = ProviderWire(
        BFL_LIKE,
        read_error=lambda body: ErrorAnswer(str(body.get("detail", "")) if body else ""),
        status_messages={402: "Out of credits.", 429: "Too many tasks in flight."},
    )
    credits = failure(
        endpoint, provider.answer("/pay", 402, {"detail": "pay"}), ProviderError, wire=wire
    )
    assert (credits.status, credits.message) == (502, "Out of credits.")
    url = provider.answer("/busy", 429, {"detail": "busy"}, {"retry-after": "3"})
    busy = failure(endpoint, url, ProviderRateLimited, wire=wire)
    assert (busy.message, busy.retry_after) == ("Too many tasks in flight.", 3)
    validation = failure(
        endpoint, provider.answer("/v", 422, {"detail": "width"}), InvalidRequest, wire=wire
    )
    assert validation.message == "The provider rejected the request. bfl: width"


def test_without_the_status_check_an_error_answer_comes_back_read(provider, endpoint):
    url = provider.answer("/poll", 503, {"error": "later"})
    with provider_exchange(
        WIRE, endpoint, "GET", url, timeout_seconds=1, check_status=False
    ) as response:
        assert response.status_code == 503
    assert response.json() == {"error": "later"}  # read whole before the stream closed


def test_without_the_status_check_transport_failures_are_still_mapped(provider, endpoint):
    with pytest.raises(ProviderTimeout):
        with provider_exchange(
            WIRE,
            endpoint,
            "POST",
            f"{provider.url}/stall",
            timeout_seconds=TIMEOUT_SECONDS,
            check_status=False,
        ):
            pass
