"""The local API Gateway's own behaviour, over real HTTP, with recording stand-in functions:
the payload 2.0 events it builds, how it honours the authorizer, and how it turns a Lambda
result (or failure) into the HTTP answer. The real handlers are covered in test_local_stack."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from local.api_gateway import HttpApiGateway, LambdaFunction, Route

pytestmark = pytest.mark.e2e

ROUTES = [
    Route("POST", "/things", authorized=True),
    Route("GET", "/things/{thing_id}", authorized=True),
    Route("GET", "/open", authorized=False),
]


class Recorder:
    """A Lambda handler that records its events and answers what the test says."""

    def __init__(self, answer: Any = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self.answer = answer if answer is not None else {"statusCode": 200, "body": "ok"}
        self.release = threading.Event()
        self.release.set()

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        self.contexts.append(context)
        self.release.wait(5)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer(event) if callable(self.answer) else self.answer


def allow_with_context(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "isAuthorized": event["identitySource"] == ["Bearer good"],
        "context": {"customer_id": "7", "sub": "user-7", "scopes": "a b"},
    }


@pytest.fixture
def gateway() -> Iterator[tuple[HttpApiGateway, Recorder, Recorder, httpx.Client]]:
    integration, authorizer = Recorder(), Recorder(allow_with_context)
    gw = HttpApiGateway(
        ROUTES,
        integration=LambdaFunction("integration", integration),
        authorizer=LambdaFunction("authorizer", authorizer),
        integration_timeout_seconds=1.0,
    )
    base_url = gw.serve("127.0.0.1", 0)
    with httpx.Client(base_url=base_url, timeout=5) as client:
        yield gw, integration, authorizer, client
    integration.release.set()
    gw.shutdown()


GOOD = {"authorization": "Bearer good"}


def test_integration_event_is_payload_format_2_0(gateway):
    _, integration, _, client = gateway

    response = client.get(
        "/things/a%20b?x=1&x=2&y=",
        headers=GOOD | {"X-Custom": "v", "cookie": "c1=1; c2=2", "user-agent": "tester"},
    )

    assert response.status_code == 200
    event = integration.events[-1]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /things/{thing_id}"
    assert event["rawPath"] == "/things/a%20b"
    assert event["rawQueryString"] == "x=1&x=2&y="
    assert event["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert event["pathParameters"] == {"thing_id": "a b"}
    assert event["cookies"] == ["c1=1", "c2=2"]
    assert event["headers"]["x-custom"] == "v" and "cookie" not in event["headers"]
    assert all(name == name.lower() for name in event["headers"])
    assert event["isBase64Encoded"] is False and "body" not in event
    context = event["requestContext"]
    assert context["http"] == {
        "method": "GET",
        "path": "/things/a%20b",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "tester",
    }
    assert context["routeKey"] == "GET /things/{thing_id}" and context["stage"] == "$default"
    assert context["requestId"] == response.headers["apigw-requestid"]
    assert isinstance(context["timeEpoch"], int) and context["time"].endswith("+0000")
    assert context["authorizer"] == {
        "lambda": {"customer_id": "7", "sub": "user-7", "scopes": "a b"}
    }
    lambda_context = integration.contexts[-1]
    assert lambda_context.function_name == "integration"
    assert 0 < lambda_context.get_remaining_time_in_millis() <= 30_000


def test_authorizer_event_is_a_request_authorizer_payload_2_0(gateway):
    _, _, authorizer, client = gateway

    client.post("/things?q=1", headers=GOOD, content=b"{}")

    event = authorizer.events[-1]
    assert event["version"] == "2.0" and event["type"] == "REQUEST"
    assert event["identitySource"] == ["Bearer good"]
    assert event["routeArn"] == (
        "arn:aws:execute-api:us-east-1:123456789012:local/$default/POST/things"
    )
    assert event["routeKey"] == "POST /things"
    assert event["headers"]["authorization"] == "Bearer good"
    assert event["queryStringParameters"] == {"q": "1"}
    assert "body" not in event and "authorizer" not in event["requestContext"]


def test_text_bodies_pass_as_text_and_binary_bodies_as_base64(gateway):
    _, integration, _, client = gateway

    client.post("/things", headers=GOOD | {"content-type": "application/json"}, content=b'{"a":1}')
    text_event = integration.events[-1]
    client.post("/things", headers=GOOD | {"content-type": "image/png"}, content=b"\x89PNG\x00\xff")
    binary_event = integration.events[-1]

    assert (text_event["body"], text_event["isBase64Encoded"]) == ('{"a":1}', False)
    assert binary_event["isBase64Encoded"] is True
    assert base64.b64decode(binary_event["body"]) == b"\x89PNG\x00\xff"


def test_open_route_skips_the_authorizer(gateway):
    _, integration, authorizer, client = gateway

    response = client.get("/open")

    assert response.status_code == 200
    assert authorizer.events == []
    assert "authorizer" not in integration.events[-1]["requestContext"]


def test_denied_request_never_reaches_the_integration(gateway):
    _, integration, authorizer, client = gateway

    missing = client.post("/things", content=b"{}")
    empty = client.post("/things", content=b"{}", headers={"authorization": ""})
    denied = client.post("/things", content=b"{}", headers={"authorization": "Bearer bad"})

    assert (missing.status_code, missing.json()) == (401, {"message": "Unauthorized"})
    assert (empty.status_code, empty.json()) == (401, {"message": "Unauthorized"})
    assert (denied.status_code, denied.json()) == (403, {"message": "Forbidden"})
    assert len(authorizer.events) == 1  # only the request that carried an identity
    assert integration.events == []


@pytest.mark.parametrize(
    "answer",
    [
        RuntimeError("boom"),
        {"allowed": True},
        {"isAuthorized": "true"},
        {"isAuthorized": True, "context": "x"},
    ],
    ids=["raises", "no-isAuthorized", "not-a-boolean", "context-not-an-object"],
)
def test_failing_or_invalid_authorizer_is_500(gateway, answer):
    _, integration, authorizer, client = gateway
    authorizer.answer = answer

    response = client.post("/things", headers=GOOD, content=b"{}")

    assert (response.status_code, response.json()) == (500, {"message": "Internal Server Error"})
    assert integration.events == []


def test_lambda_result_becomes_the_http_response(gateway):
    _, integration, _, client = gateway
    integration.answer = {
        "statusCode": 201,
        "headers": {"content-type": "image/png", "x-count": 3},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": base64.b64encode(b"\x89PNG-bytes").decode(),
        "isBase64Encoded": True,
    }

    response = client.post("/things", headers=GOOD, content=b"{}")

    assert response.status_code == 201
    assert response.content == b"\x89PNG-bytes"
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-count"] == "3"
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2"]


def test_result_without_status_code_is_a_200_json_body(gateway):
    _, integration, _, client = gateway
    integration.answer = {"hello": "world"}

    response = client.post("/things", headers=GOOD, content=b"{}")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"hello": "world"}


@pytest.mark.parametrize(
    "answer",
    [
        RuntimeError("boom"),
        {"statusCode": 200, "body": "x" * (6 * 1024 * 1024 + 1)},
        {"statusCode": "two hundred", "body": ""},
        {"statusCode": 200, "body": {"not": "a string"}},
    ],
    ids=["raises", "over-6-mb", "bad-status", "body-not-a-string"],
)
def test_failing_or_invalid_integration_is_500(gateway, answer):
    _, integration, _, client = gateway
    integration.answer = answer

    response = client.post("/things", headers=GOOD, content=b"{}")

    assert (response.status_code, response.json()) == (500, {"message": "Internal Server Error"})


def test_integration_slower_than_the_timeout_is_503(gateway):
    _, integration, _, client = gateway
    integration.release.clear()  # the handler waits until released

    response = client.post("/things", headers=GOOD, content=b"{}")

    assert (response.status_code, response.json()) == (503, {"message": "Service Unavailable"})
    integration.release.set()


def test_chunked_body_is_read_whole(gateway):
    _, integration, _, client = gateway

    response = client.post(
        "/things",
        headers=GOOD | {"content-type": "text/plain"},
        content=iter([b"hello ", b"world"]),
    )

    assert response.status_code == 200
    assert integration.events[-1]["body"] == "hello world"


def test_local_routes_are_the_deployed_routes():
    # Read infra/constructs/api.py's ROUTES literal without importing the CDK.
    import ast
    from pathlib import Path

    from local.stack import REPO_ROOT
    from local.stack import ROUTES as LOCAL_ROUTES

    tree = ast.parse(Path(REPO_ROOT, "infra", "constructs", "api.py").read_text())
    literal = next(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign | ast.Assign)
        and any(
            isinstance(target, ast.Name) and target.id == "ROUTES"
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        )
    )
    deployed = {
        (method.attr, path.value, authorized.value, target.id.lower())  # GENERATION, HEALTH
        for method, path, authorized, target in (entry.elts for entry in literal.elts)
    }

    local = {(r.method, r.path, r.authorized, r.function or "generation") for r in LOCAL_ROUTES}
    assert local == deployed


def test_oversized_upload_announced_with_expect_100_continue_is_refused_before_it_is_sent(gateway):
    import socket
    from urllib.parse import urlsplit

    gw, integration, _, _ = gateway
    address = urlsplit(gw.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as connection:
        connection.sendall(
            b"POST /things HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10485761\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        answer = b""
        while chunk := connection.recv(65536):  # the gateway closes the connection after it
            answer += chunk

    assert answer.startswith(b"HTTP/1.1 413 ")
    assert answer.endswith(b'{"message":"Request Entity Too Large"}')
    assert integration.events == []


def test_one_log_line_per_request_without_headers_or_query(gateway, caplog):
    _, _, _, client = gateway
    caplog.set_level("INFO", logger="local.api")

    client.get("/things/1?api_key=query-secret", headers={"authorization": "Bearer good"})

    lines = [r.getMessage() for r in caplog.records if r.name == "local.api"]
    assert len(lines) == 1
    assert lines[0].startswith("GET /things/1 200 ") and lines[0].endswith("ms")
    assert "query-secret" not in caplog.text and "Bearer" not in caplog.text


def raw_exchange(gw: HttpApiGateway, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client to tidy them up); the status, headers and body."""
    import socket
    from urllib.parse import urlsplit

    address = urlsplit(gw.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):  # each of these answers closes the connection
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize(
    ("request_bytes", "status", "message"),
    [
        (b"PROPFIND /things HTTP/1.1\r\nHost: x\r\n\r\n", 501, "Not Implemented"),
        (b"TRACE /things HTTP/1.1\r\nHost: x\r\n\r\n", 501, "Not Implemented"),
        (b"GET /things HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
         431, "Request Header Fields Too Large"),
        (b"GET /things HTTP/1.1\r\nHost: x\r\n" + b"X-Many: 1\r\n" * 120 + b"\r\n",
         431, "Request Header Fields Too Large"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "Request-URI Too Long"),
        (b"GARBAGE\r\n\r\n", 400, "Bad Request"),
        (b"GET /things HTTP/9.9\r\nHost: x\r\n\r\n", 505, "HTTP Version Not Supported"),
    ],
)  # fmt: skip
def test_what_the_http_server_refuses_is_answered_as_json_like_the_gateway(
    gateway, request_bytes, status, message
):
    gw, integration, authorizer, _ = gateway
    answered, headers, body = raw_exchange(gw, request_bytes)
    assert answered == status
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"message": message}
    assert "server" not in headers
    assert integration.events == [] and authorizer.events == []


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/open", {}),  # the integration's answer
        ("GET", "/nowhere", {}),  # the gateway's own 404
        ("POST", "/things", {}),  # 401 before the authorizer
    ],
)
def test_no_answer_carries_a_server_banner(gateway, method, path, headers):
    _, _, _, client = gateway
    response = client.request(method, path, headers=headers)
    assert "server" not in response.headers
    assert response.headers["date"]
