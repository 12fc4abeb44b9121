"""A local stand-in for API Gateway HTTP API in front of Lambda functions.

It does what the deployed API does, in the same order, with the same answers for the cases the
gateway handles itself (docs/local-stack.md cites the sources):

1. match the route (``METHOD /path`` with ``{param}`` segments) — no match: 404 ``Not Found``;
2. cap the body at 10 MB — over: 413 ``Request Entity Too Large``;
3. on an authorized route, check the identity source (``Authorization`` header) — missing or
   empty: 401 ``Unauthorized`` without calling the authorizer;
4. call the authorizer Lambda with an authorizer payload 2.0 event and read its simple response —
   ``isAuthorized: false``: 403 ``Forbidden``; an error or an invalid answer: 500;
5. call the integration Lambda with a payload 2.0 event carrying
   ``requestContext.authorizer.lambda`` = the authorizer's ``context``, and turn its result into
   the HTTP response — an error, an invalid result or one over Lambda's 6 MB response limit: 500;
   no answer within the 30 s integration timeout: 503 ``Service Unavailable``.

Each request is served on its own thread; each function runs one invocation at a time, like a
single warm Lambda execution environment (the handlers keep per-invocation state in globals).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

logger = logging.getLogger("local.api")

MAX_REQUEST_BODY_BYTES = 10 * 1024 * 1024  # HTTP API payload quota
MAX_LAMBDA_RESPONSE_BYTES = 6 * 1024 * 1024  # Lambda's synchronous response limit
INTEGRATION_TIMEOUT_SECONDS = 30.0  # HTTP API's maximum integration timeout
IDENTITY_HEADER = "authorization"  # the authorizer's identity source: $request.header.Authorization

# The gateway's own answers: fixed bodies, no service envelope.
NOT_FOUND = (404, "Not Found")
PAYLOAD_TOO_LARGE = (413, "Request Entity Too Large")
UNAUTHORIZED = (401, "Unauthorized")
FORBIDDEN = (403, "Forbidden")
INTERNAL_SERVER_ERROR = (500, "Internal Server Error")
SERVICE_UNAVAILABLE = (503, "Service Unavailable")

_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|xml|javascript|x-www-form-urlencoded|[\w.+-]+\+(json|xml)))$"
)

LambdaHandler = Callable[[Any, Any], Any]


# --- routes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One route of the API: ``Route("GET", "/image/jobs/{job_id}", authorized=True)``.
    ``function`` names the integration when it is not the gateway's default one."""

    method: str
    path: str
    authorized: bool = True
    function: str | None = None

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        found = re.fullmatch(pattern, path)
        return {k: unquote(v) for k, v in found.groupdict().items()} if found else None


# --- Lambda ----------------------------------------------------------------------------------


class LambdaError(Exception):
    """The function failed, returned something Lambda cannot send back, or took too long."""


class FakeLambdaContext:
    """The parts of Lambda's context object that handlers and Powertools read."""

    def __init__(self, function: LambdaFunction) -> None:
        self.function_name = function.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:{function.region}:{function.account_id}:function:{function.name}"
        )
        self.memory_limit_in_mb = function.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function.name}"
        self.log_stream_name = f"local/{function.name}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + function.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class LambdaFunction:
    """A handler run the way Lambda runs it: JSON in, JSON out, one invocation at a time."""

    name: str
    handler: LambdaHandler
    timeout_seconds: float = 30.0
    memory_mb: int = 1024
    region: str = "us-east-1"
    account_id: str = "123456789012"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def invoke(self, event: dict[str, Any]) -> Any:
        payload = json.loads(json.dumps(event))  # the function sees JSON, not our objects
        with self._lock:
            try:
                result = self.handler(payload, FakeLambdaContext(self))
            except Exception as error:
                # The class only: a message could carry a token or a key.
                raise LambdaError(f"{self.name} raised {type(error).__name__}") from None
        try:
            serialized = json.dumps(result)
        except (TypeError, ValueError):
            raise LambdaError(f"{self.name} returned a value that is not JSON") from None
        if len(serialized.encode("utf-8")) > MAX_LAMBDA_RESPONSE_BYTES:
            raise LambdaError(f"{self.name} returned more than Lambda's 6 MB response limit")
        return json.loads(serialized)


def invoke_with_timeout(function: LambdaFunction, event: dict[str, Any], timeout: float) -> Any:
    """The gateway stops waiting after ``timeout``; the function itself runs on, as in AWS."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = function.invoke(event)
        except LambdaError as error:
            outcome["error"] = error

    worker = threading.Thread(target=run, name=f"invoke-{function.name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"{function.name} did not answer within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


# --- requests and responses ------------------------------------------------------------------


@dataclass
class GatewayRequest:
    method: str
    target: str  # path and query, as on the request line
    headers: list[tuple[str, str]]  # as received, repeats kept
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    host: str = "127.0.0.1"
    port: int = 80


@dataclass
class GatewayResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def message(cls, answer: tuple[int, str]) -> GatewayResponse:
        status, text = answer
        body = json.dumps({"message": text}, separators=(",", ":")).encode()
        return cls(status, [("content-type", "application/json")], body)

    def json(self) -> Any:
        return json.loads(self.body)


class HttpApiGateway:
    """Routes, authorizes and invokes; ``serve()`` puts it on a real socket."""

    def __init__(
        self,
        routes: list[Route],
        integration: LambdaFunction,
        authorizer: LambdaFunction | None,
        *,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        api_id: str = "local",
        stage: str = "$default",
        integration_timeout_seconds: float = INTEGRATION_TIMEOUT_SECONDS,
        integrations: dict[str, LambdaFunction] | None = None,
    ) -> None:
        if any(route.authorized for route in routes) and authorizer is None:
            raise ValueError("an authorized route needs an authorizer")
        self.integrations = dict(integrations or {})
        unknown = {r.function for r in routes if r.function} - set(self.integrations)
        if unknown:
            raise ValueError(f"routes name unknown functions: {', '.join(sorted(unknown))}")
        self.routes = routes
        self.integration = integration
        self.authorizer = authorizer
        self.region = region
        self.account_id = account_id
        self.api_id = api_id
        self.stage = stage
        self.integration_timeout_seconds = integration_timeout_seconds
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # --- the pipeline ------------------------------------------------------------------------

    def handle(self, request: GatewayRequest) -> GatewayResponse:
        request_id = _request_id()
        response = self._handle(request, request_id)
        response.headers.append(("apigw-requestid", request_id))
        return response

    def _handle(self, request: GatewayRequest, request_id: str) -> GatewayResponse:
        if len(request.body) > MAX_REQUEST_BODY_BYTES:
            return GatewayResponse.message(PAYLOAD_TOO_LARGE)
        matched = self._match(request.method, urlsplit(request.target).path or "/")
        if matched is None:
            return GatewayResponse.message(NOT_FOUND)
        route, path_parameters = matched

        event = self._event(request, route, path_parameters, request_id)
        if route.authorized:
            identity = event["headers"].get(IDENTITY_HEADER, "")
            if not identity:
                return GatewayResponse.message(UNAUTHORIZED)
            decision = self._authorize(event, identity)
            if isinstance(decision, GatewayResponse):
                return decision
            event["requestContext"]["authorizer"] = {"lambda": decision}

        function = self.integrations[route.function] if route.function else self.integration
        try:
            result = invoke_with_timeout(function, event, self.integration_timeout_seconds)
        except TimeoutError as error:
            logger.error("integration timeout: %s", error)
            return GatewayResponse.message(SERVICE_UNAVAILABLE)
        except LambdaError as error:
            logger.error("integration error: %s", error)
            return GatewayResponse.message(INTERNAL_SERVER_ERROR)
        try:
            return _http_response(result)
        except (TypeError, ValueError) as error:
            logger.error("integration returned an invalid response: %s", error)
            return GatewayResponse.message(INTERNAL_SERVER_ERROR)

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            parameters = route.match(method, path)
            if parameters is not None:
                return route, parameters
        return None

    def _authorize(self, event: dict[str, Any], identity: str) -> dict[str, Any] | GatewayResponse:
        assert self.authorizer is not None
        authorizer_event = {
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": (
                f"arn:aws:execute-api:{self.region}:{self.account_id}:{self.api_id}/"
                f"{self.stage}/{event['requestContext']['http']['method']}{event['rawPath']}"
            ),
            "identitySource": [identity],
        } | {k: v for k, v in event.items() if k not in ("version", "body", "isBase64Encoded")}
        try:
            answer = invoke_with_timeout(
                self.authorizer, authorizer_event, self.authorizer.timeout_seconds
            )
        except (LambdaError, TimeoutError) as error:
            logger.error("authorizer error: %s", error)
            return GatewayResponse.message(INTERNAL_SERVER_ERROR)
        # Simple responses: a boolean and an optional object of context values.
        if not isinstance(answer, dict) or not isinstance(answer.get("isAuthorized"), bool):
            logger.error("authorizer returned an invalid simple response")
            return GatewayResponse.message(INTERNAL_SERVER_ERROR)
        context = answer.get("context") or {}
        if not isinstance(context, dict):
            logger.error("authorizer returned a context that is not an object")
            return GatewayResponse.message(INTERNAL_SERVER_ERROR)
        if not answer["isAuthorized"]:
            return GatewayResponse.message(FORBIDDEN)
        return context

    def _event(
        self,
        request: GatewayRequest,
        route: Route,
        path_parameters: dict[str, str],
        request_id: str,
    ) -> dict[str, Any]:
        """The payload format 2.0 event, as API Gateway builds it."""
        split = urlsplit(request.target)
        raw_path = split.path or "/"
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in request.headers:
            name = name.lower()
            if name == "cookie":
                cookies.extend(c.strip() for c in value.split(";") if c.strip())
            else:
                headers[name] = f"{headers[name]},{value}" if name in headers else value
        headers.setdefault("x-forwarded-for", request.source_ip)
        headers.setdefault("x-forwarded-proto", "http")
        headers.setdefault("x-forwarded-port", str(request.port))
        trace_id = f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()}"
        headers.setdefault("x-amzn-trace-id", trace_id)

        now = datetime.now(UTC)
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.key,
            "rawPath": raw_path,
            "rawQueryString": split.query,
            "headers": headers,
            "requestContext": {
                "accountId": self.account_id,
                "apiId": self.api_id,
                "domainName": request.host,
                "domainPrefix": request.host.split(".")[0],
                "http": {
                    "method": request.method,
                    "path": raw_path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": request.source_ip,
                    "userAgent": headers.get("user-agent", ""),
                },
                "requestId": request_id,
                "routeKey": route.key,
                "stage": self.stage,
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": False,
        }
        if cookies:
            event["cookies"] = cookies
        query: dict[str, str] = {}
        for name, value in parse_qsl(split.query, keep_blank_values=True):
            query[name] = f"{query[name]},{value}" if name in query else value
        if query:
            event["queryStringParameters"] = query
        if path_parameters:
            event["pathParameters"] = path_parameters
        if request.body:
            event["body"], event["isBase64Encoded"] = _event_body(
                request.body, headers.get("content-type", "")
            )
        return event

    # --- over HTTP ---------------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        gateway = self

        class _Handler(_GatewayHandler):
            pass

        _Handler.gateway = gateway
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="local-api-gateway",
            daemon=True,
        )
        self._thread.start()
        return self.base_url

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class _GatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    gateway: HttpApiGateway

    def send_response(self, code: int, message: str | None = None) -> None:
        # As API Gateway: a Date header, no Server banner (http.server's names Python's version).
        self.send_response_only(code, message)
        self.send_header("date", self.date_time_string())

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What http.server refuses before a request reaches the gateway (a method HTTP APIs do
        not route, header fields or a URI over the limits, a malformed request line) answered
        as the gateway answers everything of its own: ``{"message": …}`` JSON, not an HTML page.
        """
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        if self.request_version == "HTTP/0.9":  # an unreadable request line: still a status line
            self.request_version = "HTTP/1.1"
        self._log(code, time.monotonic())
        self._send(GatewayResponse.message((code, phrase)), close=True)

    def handle_expect_100(self) -> bool:
        # Refuse an oversized upload before the client sends it (curl asks for large bodies).
        if self._declared_length() > MAX_REQUEST_BODY_BYTES:
            response = GatewayResponse.message(PAYLOAD_TOO_LARGE)
            self._log(response.status, time.monotonic())
            self._send(response, close=True)
            return False
        return super().handle_expect_100()

    def _declared_length(self) -> int:
        try:
            return int(self.headers.get("content-length") or 0)
        except ValueError:
            return 0

    def _serve(self) -> None:
        started = time.monotonic()
        body = self._read_body()
        if body is None:
            response, close = GatewayResponse.message(PAYLOAD_TOO_LARGE), True
        else:
            host_header = self.headers.get("host") or f"{self.server.server_address[0]}"
            request = GatewayRequest(
                method=self.command,
                target=self.path,
                headers=list(self.headers.items()),
                body=body,
                source_ip=self.client_address[0],
                host=host_header.rsplit(":", 1)[0],
                port=self.server.server_address[1],
            )
            try:
                response = self.gateway.handle(request)
            except Exception as error:  # a bug here must still answer, as the gateway would
                logger.error("local gateway failure: %s", type(error).__name__)
                response = GatewayResponse.message(INTERNAL_SERVER_ERROR)
            close = False
        self._log(response.status, started)  # first: the line exists once the client has its answer
        self._send(response, close=close)

    def _log(self, status: int, started: float) -> None:
        # Never the query string or a header: they can carry tokens.
        logger.info(
            "%s %s %d %.0fms",
            self.command or "-",
            urlsplit(getattr(self, "path", "") or "").path or "-",
            status,
            (time.monotonic() - started) * 1000,
        )

    def _read_body(self) -> bytes | None:
        """The request body, or None when it is over the limit."""
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            return self._read_chunked()
        length = self._declared_length()
        if length > MAX_REQUEST_BODY_BYTES:
            self._discard(length)
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _discard(self, length: int) -> None:
        """Read and drop an oversized body, so the client gets to read our 413."""
        remaining = min(length, 4 * MAX_REQUEST_BODY_BYTES)  # beyond that, just hang up
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)

    def _read_chunked(self) -> bytes | None:
        chunks, total = [], 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_REQUEST_BODY_BYTES:
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, response: GatewayResponse, *, close: bool) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("content-length", str(len(response.body)))
        if close:
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

    def log_message(self, *args: Any) -> None:  # one line per request, from _serve
        pass


# --- helpers ---------------------------------------------------------------------------------


def _request_id() -> str:
    # API Gateway's request ids look like "JKJaXmPLvHcESHA=".
    return base64.b64encode(os.urandom(11)).decode()


def _event_body(body: bytes, content_type: str) -> tuple[str, bool]:
    """Text bodies pass as text; anything else (or undecodable) is base64, as API Gateway does."""
    media_type = content_type.split(";")[0].strip().lower()
    if _TEXT_TYPES.match(media_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode(), True


def _http_response(result: Any) -> GatewayResponse:
    """A payload 2.0 Lambda result as HTTP; without ``statusCode`` the result is the JSON body."""
    if not (isinstance(result, dict) and "statusCode" in result):
        body = result if isinstance(result, str) else json.dumps(result)
        return GatewayResponse(200, [("content-type", "application/json")], body.encode())
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError("statusCode is not an HTTP status")
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        if not isinstance(value, (str, int, float, bool)):
            raise ValueError(f"header {name!r} is not a scalar")
        headers.append((str(name), str(value).lower() if isinstance(value, bool) else str(value)))
    for cookie in result.get("cookies") or []:
        headers.append(("set-cookie", str(cookie)))
    body = result.get("body")
    if body is None:
        data = b""
    elif not isinstance(body, str):
        raise ValueError("body is not a string")
    elif result.get("isBase64Encoded"):
        data = base64.b64decode(body, validate=True)
    else:
        data = body.encode("utf-8")
    return GatewayResponse(status, headers, data)
