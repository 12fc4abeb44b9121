"""A small framework for provider emulators.

An emulator is a plain object with ``handle(EmulatorRequest) -> EmulatorResponse``. The same
object serves two ways: in-process through an ``httpx.MockTransport`` (fast unit and integration
tests) and over real HTTP on 127.0.0.1 (the local stack and end-to-end tests). Both speak the
provider's real wire protocol and return real image bytes.

Behaviour switches for tests and demos ride in the prompt, so any client can trigger them:
``[moderate]`` → the provider's moderation refusal, ``[rate-limit]`` → 429,
``[server-error]`` → 500, ``[garbage]`` → a 200 that is not the expected shape,
``[slow]`` → the answer waits ``slow_seconds``. And on every emulator,
``GET /_emulator/redirect?to=<url>`` answers ``302 Location: <url>``: a redirect from an origin
the local stack trusts, to prove that the URL guard checks every hop. ``[delay=N]`` → the answer
waits N seconds (a 40 s gpt-image-2 at ``high``: ``[delay=40]``; at most ``MAX_DELAY_SECONDS``).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from PIL import Image, ImageDraw

from local.emulators.lifecycle import Clock, is_shut_down, utc_today

TRIGGERS = ("[moderate]", "[rate-limit]", "[server-error]", "[garbage]", "[slow]")
PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
REDIRECT_PATH = "/_emulator/redirect"
DELAY = re.compile(r"\[delay=(\d+(?:\.\d+)?)\]")
MAX_DELAY_SECONDS = 600.0


@dataclass
class FormPart:
    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


@dataclass
class EmulatorRequest:
    method: str
    url: str
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.url).query).items()}

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> list[FormPart]:
        """multipart/form-data parts in order (repeated names kept)."""
        content_type = self.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise ValueError("not multipart/form-data")
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + self.body
        )
        parts = []
        for part in message.iter_parts():
            parts.append(
                FormPart(
                    name=part.get_param("name", header="content-disposition"),
                    filename=part.get_filename(),
                    content_type=part.get_content_type() if part.get_filename() else None,
                    data=part.get_payload(decode=True) or b"",
                )
            )
        return parts


@dataclass
class EmulatorResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, document: Any, headers: dict[str, str] | None = None):
        return cls(
            status,
            json.dumps(document).encode(),
            {"content-type": "application/json"} | (headers or {}),
        )


def render_image(prompt: str, width: int, height: int, fmt: str = "png", variant: int = 0) -> bytes:
    """A real image: a colour from the prompt's hash, with a frame, in the requested format."""
    digest = hashlib.sha256(f"{prompt}#{variant}".encode()).digest()
    width, height = max(8, min(width, 4096)), max(8, min(height, 4096))
    picture = Image.new("RGB", (width, height), tuple(digest[:3]))
    draw = ImageDraw.Draw(picture)
    draw.rectangle(
        [width // 8, height // 8, width * 7 // 8, height * 7 // 8],
        outline=tuple(digest[3:6]),
        width=3,
    )
    out = io.BytesIO()
    picture.save(out, format=PIL_FORMAT[fmt], quality=80) if fmt != "png" else picture.save(
        out, format="PNG"
    )
    return out.getvalue()


def ratio_size(aspect_ratio: str | None, long_side: int = 1024) -> tuple[int, int]:
    if not aspect_ratio or ":" not in aspect_ratio:
        return long_side, long_side
    w, h = (int(x) for x in aspect_ratio.split(":"))
    if w >= h:
        return long_side, max(8, long_side * h // w)
    return max(8, long_side * w // h), long_side


class Emulator:
    """Base class: records requests, dispatches to ``route``, serves in-process or over HTTP."""

    name = "emulator"
    provider = ""  # the service's provider name: its identity record, its lifecycle table
    base_path = ""  # what the provider's base URL carries after the host (OpenAI "/v1")
    slow_seconds = 2.0

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or utc_today  # the provider's calendar; tests pin it
        self.requests: list[EmulatorRequest] = []
        self.base_url = ""  # set when served over HTTP
        self._lock = threading.Lock()

    # subclasses implement this
    def route(self, request: EmulatorRequest) -> EmulatorResponse:  # pragma: no cover
        raise NotImplementedError

    def handle(self, request: EmulatorRequest) -> EmulatorResponse:
        with self._lock:
            self.requests.append(request)
        if request.method == "GET" and request.path == REDIRECT_PATH:
            return EmulatorResponse(302, headers={"location": request.query.get("to", "/")})
        try:
            return self.route(request)
        except (ValueError, KeyError, TypeError) as exc:
            return self.bad_request(f"emulator could not read the request: {exc}")

    def shut_down(self, model: str | None) -> bool:
        """The provider no longer serves ``model`` on the emulator's date (its own table)."""
        return bool(model) and is_shut_down(self.provider, str(model), self.clock())

    def bad_request(self, message: str) -> EmulatorResponse:
        return EmulatorResponse.json(400, {"error": {"message": message}})

    @staticmethod
    def trigger(prompt: str | None) -> str | None:
        for word in TRIGGERS:
            if prompt and word in prompt:
                return word
        return None

    def maybe_slow(self, prompt: str | None) -> None:
        if prompt and "[slow]" in prompt:
            time.sleep(self.slow_seconds)
        delay = DELAY.search(prompt or "")
        if delay:
            time.sleep(min(float(delay[1]), MAX_DELAY_SECONDS))

    # --- in-process -------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        def _handler(request: httpx.Request) -> httpx.Response:
            answer = self.handle(
                EmulatorRequest(
                    method=request.method,
                    url=str(request.url),
                    headers={k.lower(): v for k, v in request.headers.items()},
                    body=request.read(),
                )
            )
            return httpx.Response(answer.status, headers=answer.headers, content=answer.body)

        return httpx.MockTransport(_handler)

    # --- over HTTP --------------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
        """Start serving in a daemon thread; ``self.base_url`` is where it listens."""
        emulator = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                answer = emulator.handle(
                    EmulatorRequest(
                        method=self.command,
                        url=f"{emulator.base_url}{self.path}",
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=self.rfile.read(length) if length else b"",
                    )
                )
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:  # quiet: the stack logs for itself
                pass

        server = _QuietServer((host, port), _Handler)
        server.daemon_threads = True
        self.base_url = f"http://{host}:{server.server_address[1]}"
        threading.Thread(
            target=server.serve_forever, name=f"{self.name}-emulator", daemon=True
        ).start()
        return server


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up before its answer is written (a caller's timeout, a test's
    deliberately slow provider) is not an error of the emulator: no traceback on stderr, as a
    real provider's server would not show it to anyone. Any other error is printed as before."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # broken pipe, reset, aborted
            return
        super().handle_error(request, client_address)
