"""The URL guard through the running local stack: every URL a caller supplies (input images,
mask) goes through the production guard over real HTTP. Only the origins of moto's S3 and the
emulators are exempt — by exact origin — so a stored image can be an input image, but loopback,
the metadata address in any spelling, plain http and redirects to them are 400s, and nothing
is ever fetched from them."""

from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from tests.conftest import image_bytes  # at collection: importing it re-runs its env setup

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def loopback_image():
    """A server on loopback that would happily serve an image; it must never be asked."""
    data, seen = image_bytes("png"), []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def outbound_tripwire(monkeypatch):
    """Refuses and records any connection this process opens to a non-loopback address, so a
    broken guard fails the test without a packet leaving the machine."""
    attempts: list[str] = []
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        host = str(address[0]).strip("[]")
        infos = socket.getaddrinfo(host, address[1], proto=socket.IPPROTO_TCP)
        if not all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos):
            attempts.append(host)
            raise OSError("tripwire: outbound connection refused")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    return attempts


def generate(api, local_stack, **image):
    body = {
        "prompt": "a fox",
        "customer_id": 1,
        "settings": {"image": {"model": "openai", **image}},
    }
    return api.post("/image/generate", json=body, headers=local_stack.auth(1))


SSRF_URLS = [
    "http://127.0.0.1:{port}/a.png",  # plain http, loopback
    "https://127.0.0.1:{port}/a.png",  # loopback
    "https://localhost:{port}/a.png",
    "https://[::1]:{port}/a.png",
    "https://2130706433:{port}/a.png",  # 127.0.0.1 as a decimal number
    "https://0x7f000001:{port}/a.png",  # 127.0.0.1 in hex
    "https://0177.0.0.1:{port}/a.png",  # 127.0.0.1 in octal
    "https://169.254.169.254/latest/meta-data/iam/",  # the instance metadata service
    "https://2852039166/latest/meta-data/",  # 169.254.169.254 as a decimal number
    "https://0xa9fea9fe/latest/meta-data/",  # 169.254.169.254 in hex
    "https://[::ffff:169.254.169.254]/latest/meta-data/",  # IPv4-mapped
    "http://images.example.com/a.png",  # plain http to a public name
    "https://images.example.com@127.0.0.1:{port}/a.png",  # userinfo: the host is loopback
]


@pytest.mark.parametrize("template", SSRF_URLS)
@pytest.mark.parametrize("field", ["input_images", "mask"])
def test_a_url_the_guard_refuses_is_a_400_and_is_never_fetched(
    api, local_stack, loopback_image, outbound_tripwire, template, field
):
    port, seen = loopback_image
    url = template.format(port=port)
    image = {"input_images": [url]}
    if field == "mask":
        image = {"input_images": [stored_image_url(api, local_stack)], "mask": url}
    calls_before = len(local_stack.stack.emulators["openai"].requests)
    response = generate(api, local_stack, **image)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_image"
    assert seen == [] and outbound_tripwire == []
    assert len(local_stack.stack.emulators["openai"].requests) == calls_before  # nothing paid


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/a.png",
        "https://127.0.0.1:{port}/a.png",
        "https://169.254.169.254/latest/meta-data/",
        "https://2130706433:{port}/a.png",
    ],
)
def test_a_redirect_from_a_trusted_origin_to_a_private_address_is_a_400(
    api, local_stack, loopback_image, outbound_tripwire, target
):
    port, seen = loopback_image
    emulator = local_stack.stack.emulators["stability"]
    url = f"{emulator.base_url}/_emulator/redirect?to={quote(target.format(port=port), safe='')}"
    response = generate(api, local_stack, input_images=[url])
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_image"
    assert [r.path for r in emulator.requests][-1] == "/_emulator/redirect"  # hop 1 was taken
    assert seen == [] and outbound_tripwire == []  # hop 2 was not


def stored_image_url(api, local_stack) -> str:
    response = generate(api, local_stack)
    assert response.status_code == 200, response.text
    return response.json()["data"]["image_url"]


def test_a_stored_image_url_from_moto_is_exempt_by_origin_and_works_as_an_input(
    api, local_stack, outbound_tripwire
):
    url = stored_image_url(api, local_stack)  # http://127.0.0.1:<moto>/…?X-Amz-Signature=…
    assert url.startswith("http://127.0.0.1:")
    response = generate(api, local_stack, input_images=[url])
    assert response.status_code == 200, response.text
    assert outbound_tripwire == []
