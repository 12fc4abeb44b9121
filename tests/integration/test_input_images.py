"""Input images: data URLs, https URLs and the caller's stored assets — type sniffed from the
bytes, size capped, fetched with a timeout, and never from a private, loopback or link-local
address (checked again on every redirect). DNS answers are simulated; nothing leaves the host."""

from __future__ import annotations

import base64
import socket

import httpx
import pytest

from image_common.errors import InvalidImage, PayloadTooLarge, ProviderTimeout
from image_common.settings import url_origin
from image_service import http as service_http
from image_service.inputs import load_input_image
from image_service.job_records import utcnow
from image_service.models import parse_request
from image_service.storage import ImageStore
from tests.clock import ManualClock
from tests.conftest import (
    TEST_BUCKET,
    answer_of,
    data_url,
    generate,
    image_bytes,
    inline_service,
    request_body,
)

PNG, JPEG, WEBP = image_bytes("png"), image_bytes("jpeg"), image_bytes("webp")
PUBLIC_ADDRESS = "93.184.216.34"


class FakeWeb:
    """An in-process web: URL → response; records every request it serves."""

    def __init__(self, routes: dict[str, httpx.Response | Exception]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.routes.get(str(request.url))
        if answer is None:
            return httpx.Response(404)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def web():
    fake = FakeWeb({})
    service_http.set_http_client(service_http.new_http_client(httpx.MockTransport(fake)))
    yield fake
    service_http.set_http_client(None)


@pytest.fixture
def dns(monkeypatch):
    """Simulated DNS: host → addresses. IP literals resolve to themselves, as getaddrinfo does."""
    answers: dict[str, list[str]] = {}

    def getaddrinfo(host, port, *args, **kwargs):
        host = host.strip("[]")
        addresses = answers.get(host)
        if addresses is None:
            try:
                socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
            except OSError:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
            addresses = [host]
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.fixture
def production(settings):
    """What a deployed function runs with: no trusted origins (the test env trusts the
    in-process emulators)."""
    return settings.model_copy(update={"trusted_url_origins": ""})


def load(reference: str, settings, store: ImageStore | None = None, customer_id: int = 123):
    return load_input_image(
        reference,
        customer_id=customer_id,
        store=store or ImageStore(settings),
        settings=settings,
        what="input image 1",
    )


# --- data URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "mime"), [(PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp")]
)
def test_data_urls_of_each_format_are_sniffed_from_the_bytes(production, data, mime):
    image = load(data_url(data, "image/gif"), production)  # the label lies; the bytes decide
    assert image.mime_type == mime and image.data == data


def test_a_data_url_with_parameters_is_read(production):
    url = f"data:image/png;name=cat.png;base64,{base64.b64encode(PNG).decode()}"
    assert load(url, production).data == PNG


@pytest.mark.parametrize(
    "reference",
    [
        data_url(b"GIF89a\x01\x00\x01\x00"),  # a GIF is not accepted
        data_url(b"%PDF-1.7 not an image"),
        "data:image/png;base64,@@not base64@@",
        "data:image/png,rawbytes",  # not base64
    ],
)
def test_a_bad_data_url_is_a_400(production, reference):
    with pytest.raises(InvalidImage) as caught:
        load(reference, production)
    assert caught.value.status == 400


def test_an_oversized_data_url_is_a_413_before_decoding(production):
    small = production.model_copy(update={"max_input_image_bytes": 1024})
    big = image_bytes("png", 400, 400) + b"\0" * 2048
    with pytest.raises(PayloadTooLarge) as caught:
        load(data_url(big), small)
    assert caught.value.status == 413


# --- the caller's stored assets -------------------------------------------------------------------


def test_a_stored_asset_of_the_caller_is_read(s3, production):
    key = "customers/123/assets/image/abc.jpg"
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=JPEG, ContentType="image/png")
    image = load(key, production)
    assert image.mime_type == "image/jpeg" and image.data == JPEG


@pytest.mark.parametrize(
    "key",
    [
        "customers/456/assets/image/theirs.png",  # another customer's image
        "customers/123/assets/image/../../456/assets/image/theirs.png",
        "customers/123/private/notes.png",
        "some/other/key.png",
    ],
)
def test_another_customers_or_foreign_key_is_a_400(s3, production, key):
    s3.put_object(Bucket=TEST_BUCKET, Key="customers/456/assets/image/theirs.png", Body=PNG)
    with pytest.raises(InvalidImage, match="your own stored images"):
        load(key, production)


def test_a_missing_asset_is_a_400(s3, production):
    with pytest.raises(InvalidImage, match="names no stored image"):
        load("customers/123/assets/image/missing.png", production)


def test_an_oversized_asset_is_a_413(s3, production):
    key = "customers/123/assets/image/huge.png"
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=PNG + b"\0" * 4096)
    with pytest.raises(PayloadTooLarge):
        load(key, production.model_copy(update={"max_input_image_bytes": 1024}))


def test_a_stored_asset_that_is_not_an_image_is_a_400(s3, production):
    key = "customers/123/assets/image/fake.png"
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    with pytest.raises(InvalidImage, match="not a PNG, JPEG or WebP"):
        load(key, production)


# --- https URLs: fetching -------------------------------------------------------------------------


def test_a_public_https_image_is_fetched_without_credentials_and_with_a_timeout(
    web, dns, production
):
    dns["images.example.com"] = [PUBLIC_ADDRESS]
    web.routes["https://images.example.com/cat.webp"] = httpx.Response(200, content=WEBP)
    image = load("https://images.example.com/cat.webp", production)
    assert image.mime_type == "image/webp" and image.data == WEBP
    (request,) = web.requests
    assert "authorization" not in request.headers and "x-key" not in request.headers
    timeout = request.extensions["timeout"]
    # the download's own cap (what is left of it when the request is sent)
    assert timeout["read"] == pytest.approx(service_http.DOWNLOAD_TIMEOUT_SECONDS, abs=0.5)
    assert timeout["connect"] == service_http.CONNECT_TIMEOUT_SECONDS


def test_a_fetched_file_that_is_not_an_image_is_a_400(web, dns, production):
    dns["example.com"] = [PUBLIC_ADDRESS]
    web.routes["https://example.com/page"] = httpx.Response(200, content=b"<html>hi</html>")
    with pytest.raises(InvalidImage, match="not a PNG, JPEG or WebP"):
        load("https://example.com/page", production)


def test_a_failed_fetch_is_a_400(web, dns, production):
    dns["example.com"] = [PUBLIC_ADDRESS]
    with pytest.raises(InvalidImage, match="HTTP 404"):
        load("https://example.com/gone.png", production)


def test_a_declared_oversized_download_is_a_413(web, dns, production):
    dns["example.com"] = [PUBLIC_ADDRESS]
    web.routes["https://example.com/big.png"] = httpx.Response(
        200, content=PNG, headers={"content-length": str(50 * 1024 * 1024)}
    )
    with pytest.raises(PayloadTooLarge):
        load("https://example.com/big.png", production)


def test_an_undeclared_oversized_download_is_cut_off_at_the_cap(web, dns, production):
    dns["example.com"] = [PUBLIC_ADDRESS]

    def endless():
        yield PNG
        for _ in range(100):
            yield b"\0" * 1024

    web.routes["https://example.com/stream.png"] = httpx.Response(200, content=endless())
    with pytest.raises(PayloadTooLarge):
        load(
            "https://example.com/stream.png",
            production.model_copy(update={"max_input_image_bytes": 8192}),
        )


def test_a_slow_server_is_a_504(web, dns, production):
    dns["slow.example.com"] = [PUBLIC_ADDRESS]
    web.routes["https://slow.example.com/a.png"] = httpx.ReadTimeout("read timed out")
    with pytest.raises(ProviderTimeout) as caught:
        load("https://slow.example.com/a.png", production)
    assert caught.value.status == 504


def test_an_unresolvable_host_is_a_400(web, dns, production):
    with pytest.raises(InvalidImage, match="could not be resolved"):
        load("https://no-such-host.example/a.png", production)
    assert web.requests == []


# --- https URLs: SSRF -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",  # loopback
        "10.0.0.7",  # private
        "172.16.5.4",
        "192.168.1.20",
        "169.254.169.254",  # link-local: the instance metadata service
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",  # multicast
        "::1",
        "fe80::1",
        "fd00::1234",  # unique local
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
    ],
)
def test_a_host_resolving_to_a_non_public_address_is_refused_before_any_request(
    web, dns, production, address
):
    dns["innocent.example.com"] = [address]
    web.routes["https://innocent.example.com/a.png"] = httpx.Response(200, content=PNG)
    with pytest.raises(InvalidImage, match="private or reserved address"):
        load("https://innocent.example.com/a.png", production)
    assert web.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/iam/",
        "https://127.0.0.1/a.png",
        "https://[::1]/a.png",
        "https://images.example.com@10.1.2.3/a.png",  # userinfo: the host is 10.1.2.3
    ],
)
def test_literal_private_addresses_are_refused(web, dns, production, url):
    dns["images.example.com"] = [PUBLIC_ADDRESS]
    with pytest.raises(InvalidImage, match="private or reserved address"):
        load(url, production)
    assert web.requests == []


def test_one_private_address_among_public_ones_is_refused(web, dns, production):
    dns["mixed.example.com"] = [PUBLIC_ADDRESS, "10.0.0.1"]
    with pytest.raises(InvalidImage, match="private or reserved address"):
        load("https://mixed.example.com/a.png", production)


@pytest.mark.parametrize(
    "url",
    [
        "http://images.example.com/a.png",
        "ftp://images.example.com/a.png",
        "file:///etc/passwd",
        "gopher://images.example.com/",
    ],
)
def test_only_https_is_fetched(web, dns, production, url):
    dns["images.example.com"] = [PUBLIC_ADDRESS]
    with pytest.raises(InvalidImage):
        load(url, production)  # non-http schemes are not URLs here: they fail as asset keys
    with pytest.raises(InvalidImage, match="must be https"):
        service_http.download(url, max_bytes=1024)
    assert web.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "https://images.example.com:99999/a.png",  # port out of range
        "https://images.example.com:abc/a.png",
        "https://[::1/a.png",  # unclosed IPv6 literal
    ],
)
@pytest.mark.parametrize("trusted", ["", "https://images.example.com"])
def test_a_malformed_url_is_a_400_not_a_crash(web, dns, production, url, trusted):
    dns["images.example.com"] = [PUBLIC_ADDRESS]
    with pytest.raises(InvalidImage):
        load(url, production.model_copy(update={"trusted_url_origins": trusted}))
    assert web.requests == []


def test_a_host_name_dns_cannot_encode_is_a_400(web, production):
    # A label over 63 characters: the resolver's IDNA step fails before any lookup.
    with pytest.raises(InvalidImage, match="could not be resolved"):
        load(f"https://{'a' * 70}.example.com/a.png", production)
    assert web.requests == []


# --- trusted origins (the local stack's emulators and moto): exempt by exact origin only ---------


def test_a_trusted_origin_is_fetched_over_http_on_loopback(web, dns, production):
    web.routes["http://127.0.0.1:9000/a.png"] = httpx.Response(200, content=PNG)
    assert load("http://127.0.0.1:9000/a.png", trusting(production, "http://127.0.0.1:9000")).data
    assert len(web.requests) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9001/a.png",  # another port
        "http://localhost:9000/a.png",  # another host name for the same address
        "https://127.0.0.1:9000/a.png",  # another scheme
        "http://2130706433:9000/a.png",  # 127.0.0.1 as a decimal number
    ],
)
def test_only_the_exact_trusted_origin_is_exempt(web, dns, production, url):
    web.routes[url] = httpx.Response(200, content=PNG)
    with pytest.raises(InvalidImage):
        load(url, trusting(production, "http://127.0.0.1:9000"))
    assert web.requests == []


def test_a_redirect_from_a_trusted_origin_to_a_private_address_is_refused(web, dns, production):
    web.routes["http://127.0.0.1:9000/a.png"] = httpx.Response(
        302, headers={"location": "https://169.254.169.254/latest/meta-data/"}
    )
    with pytest.raises(InvalidImage, match="private or reserved address"):
        load("http://127.0.0.1:9000/a.png", trusting(production, "http://127.0.0.1:9000"))
    assert [str(r.url) for r in web.requests] == ["http://127.0.0.1:9000/a.png"]


def test_a_redirect_to_a_private_address_is_refused(web, dns, production):
    dns["public.example.com"] = [PUBLIC_ADDRESS]
    dns["internal.example.com"] = ["10.20.30.40"]
    web.routes["https://public.example.com/a.png"] = httpx.Response(
        302, headers={"location": "https://internal.example.com/secret.png"}
    )
    web.routes["https://internal.example.com/secret.png"] = httpx.Response(200, content=PNG)
    with pytest.raises(InvalidImage, match="private or reserved address"):
        load("https://public.example.com/a.png", production)
    assert [str(r.url) for r in web.requests] == ["https://public.example.com/a.png"]


def test_a_redirect_to_the_metadata_address_literal_is_refused(web, dns, production):
    dns["public.example.com"] = [PUBLIC_ADDRESS]
    web.routes["https://public.example.com/a.png"] = httpx.Response(
        301, headers={"location": "https://169.254.169.254/latest/meta-data/"}
    )
    with pytest.raises(InvalidImage, match="private or reserved address"):
        load("https://public.example.com/a.png", production)
    assert len(web.requests) == 1


def test_a_redirect_downgrading_to_http_is_refused(web, dns, production):
    dns["public.example.com"] = [PUBLIC_ADDRESS]
    web.routes["https://public.example.com/a.png"] = httpx.Response(
        302, headers={"location": "http://public.example.com/a.png"}
    )
    with pytest.raises(InvalidImage, match="must be https"):
        load("https://public.example.com/a.png", production)
    assert len(web.requests) == 1


def test_a_public_redirect_is_followed(web, dns, production):
    dns["public.example.com"] = [PUBLIC_ADDRESS]
    dns["cdn.example.net"] = ["2606:4700::6810:84e5"]
    web.routes["https://public.example.com/a.png"] = httpx.Response(
        302, headers={"location": "https://cdn.example.net/a.png"}
    )
    web.routes["https://cdn.example.net/a.png"] = httpx.Response(200, content=JPEG)
    assert load("https://public.example.com/a.png", production).data == JPEG
    assert len(web.requests) == 2


def test_too_many_redirects_is_a_400(web, dns, production):
    dns["loop.example.com"] = [PUBLIC_ADDRESS]
    for i in range(10):
        web.routes[f"https://loop.example.com/{i}"] = httpx.Response(
            302, headers={"location": f"/{i + 1}"}
        )
    with pytest.raises(InvalidImage, match="redirected too many times"):
        load("https://loop.example.com/0", production)
    assert len(web.requests) == service_http.MAX_REDIRECTS + 1


# --- through the service --------------------------------------------------------------------------


def test_a_private_input_url_stops_the_request_before_the_provider_is_called(
    service_with, emulators, dns
):
    service = service_with(trusted_url_origins="")
    dns["intranet.example.com"] = ["192.168.0.10"]
    with pytest.raises(InvalidImage) as caught:
        generate(service, model="grok", input_images=["https://intranet.example.com/cat.png"])
    assert caught.value.status == 400
    assert emulators["xai"].requests == []


def test_each_input_image_is_checked_and_named_in_the_error(image_service, emulators):
    with pytest.raises(InvalidImage) as caught:
        generate(
            image_service, model="grok", input_images=[data_url(PNG), data_url(b"not an image")]
        )
    assert "input image 2" in caught.value.message
    assert emulators["xai"].requests == []


def test_input_images_over_the_total_budget_are_a_413_before_the_provider_is_called(
    settings, s3, emulators
):
    one = data_url(image_bytes("png", 64, 64))
    size = len(base64.b64decode(one.split(",", 1)[1]))
    tight = settings.model_copy(update={"max_input_images_total_bytes": size * 2 + size // 2})
    service = inline_service(tight)
    generate(service, input_images=[one, one])  # two fit
    with pytest.raises(PayloadTooLarge, match="add up to more than") as caught:
        generate(service, input_images=[one, one, one])
    assert caught.value.status == 413
    assert len(emulators["openai"].requests) == 1  # only the request that fitted was sent


# --- one deadline for the whole request ------------------------------------------------------------


class RecordingProvider:
    """Stands in for an adapter: records the time the service left it."""

    name = "openai"

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    def generate(self, request):
        from image_service.providers.base import GeneratedImage, ProviderResult

        self.timeouts.append(request.timeout_seconds)
        return ProviderResult(images=[GeneratedImage(provider_image(PNG_BYTES))], sent={})


def provider_image(data: bytes):
    from image_service.images import ImageBytes

    return ImageBytes(data, "image/png")


PNG_BYTES = image_bytes("png", 16, 16)


@pytest.fixture
def slow_image_server():
    """An image URL on loopback whose answer costs the request ``delay`` seconds of its clock."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    delay = {"seconds": 0.0}
    clock = ManualClock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            clock.now += delay["seconds"]
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(PNG_BYTES)))
            self.end_headers()
            self.wfile.write(PNG_BYTES)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    service_http.set_http_client(service_http.new_http_client())
    yield f"http://127.0.0.1:{server.server_address[1]}/in.png", delay, clock
    service_http.set_http_client(None)
    server.shutdown()
    server.server_close()


def trusting(settings, url: str):
    """Settings that exempt the loopback test server's origin from the URL guard."""
    return settings.model_copy(update={"trusted_url_origins": url_origin(url)})


def test_time_spent_fetching_inputs_in_the_request_is_not_taken_from_the_jobs_budget(
    settings, s3, slow_image_server
):
    url, delay, clock = slow_image_server
    delay["seconds"] = 0.4
    provider = RecordingProvider()
    roomy = trusting(settings, url).model_copy(update={"job_max_budget_seconds": 3.0})
    now = utcnow()  # the pipeline's clock stands still: only the download's time could count
    service = inline_service(roomy, provider_for=lambda _: provider, clock=lambda: now)
    service.clock = clock  # the request's deadline runs on the test server's clock
    answer_of(service, parse_request(request_body(input_images=[url])))
    assert provider.timeouts == [3.0]  # the job's budget counts from its claim, after the download


def test_inputs_that_use_up_the_requests_time_are_a_504_before_any_provider_call(
    settings, s3, slow_image_server
):
    url, delay, clock = slow_image_server
    delay["seconds"] = 0.8
    provider = RecordingProvider()
    tight = trusting(settings, url).model_copy(update={"provider_timeout_seconds": 1.5})
    service = inline_service(tight, provider_for=lambda _: provider)
    service.clock = clock  # 1.5 s for the request, 0.8 s of it downloading
    request = parse_request(request_body(input_images=[url]))
    with pytest.raises(ProviderTimeout) as caught:
        answer_of(service, request)
    assert caught.value.status == 504
    assert provider.timeouts == []  # nothing was paid for
