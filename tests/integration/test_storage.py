"""Storage on S3 (moto): key layout, real content type, metadata, URLs that fetch the same bytes,
inline data URLs, the 6 MB response limit, and the caller's own assets as input images."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from image_common.errors import InvalidImage, StorageError
from image_service import aws
from image_service.images import ImageBytes
from image_service.models import parse_request
from image_service.service import ImageService
from image_service.storage import ImageStore
from tests.conftest import TEST_BUCKET, answer_of, inline_service, request_body

KEY_PATTERN = re.compile(r"^customers/123/assets/image/[0-9a-f\-]{36}\.(png|jpg|webp)$")


def generate(service: ImageService, **kwargs):
    prompt = kwargs.pop("prompt", "A serene mountain landscape at sunset")
    return answer_of(service, parse_request(request_body(prompt, **kwargs)))


def test_stored_image_key_content_type_and_metadata(image_service, s3):
    data = generate(image_service, output_format="jpeg")
    key = data["image_key"]
    assert KEY_PATTERN.match(key) and key.endswith(".jpg")
    head = s3.head_object(Bucket=TEST_BUCKET, Key=key)
    assert head["ContentType"] == "image/jpeg"
    assert head["Metadata"] == {
        "provider": "openai",
        "model": "gpt-image-2.5-flare",
        "prompt-sha256": hashlib.sha256(b"A serene mountain landscape at sunset").hexdigest(),
        "customer-id": "123",
    }
    body = s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read()
    assert body.startswith(b"\xff\xd8\xff")


def test_content_type_comes_from_the_bytes_not_the_request(
    image_service, emulators, monkeypatch, s3
):
    # The provider answers PNG although WebP was asked: the object says PNG, honestly.
    emulator = emulators["openai"]
    original = emulator._generate
    monkeypatch.setattr(
        emulator,
        "_generate",
        lambda body, *, edit: original({**body, "output_format": "png"}, edit=edit),
    )
    data = generate(image_service, output_format="webp")
    assert data["image_key"].endswith(".png")
    assert s3.head_object(Bucket=TEST_BUCKET, Key=data["image_key"])["ContentType"] == "image/png"


def test_save_to_db_false_returns_a_data_url_and_stores_no_asset(image_service, s3):
    data = generate(image_service, save_to_db=False)
    assert data["image_url"].startswith("data:image/png;base64,")
    assert base64.b64decode(data["image_url"].split(",", 1)[1]).startswith(b"\x89PNG")
    assert "image_key" not in data and "inline_key" not in data
    assert s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix="customers/").get("KeyCount") == 0
    # Only the job's transient copy, under jobs/ (expired by lifecycle), from which it is read:
    # the image's base64 text, exactly as the answer inlines it.
    (transient,) = s3.list_objects_v2(Bucket=TEST_BUCKET)["Contents"]
    assert transient["Key"] == f"jobs/123/{data['job_id']}/output-0.png.b64"
    stored = s3.get_object(Bucket=TEST_BUCKET, Key=transient["Key"])["Body"].read()
    assert data["image_url"] == "data:image/png;base64," + stored.decode("ascii")


def test_an_answer_over_the_response_limit_is_stored_not_truncated(settings, s3, emulators):
    tight = settings.model_copy(update={"max_response_bytes": 1000})
    service = inline_service(tight)
    data = generate(service, save_to_db=False)
    assert data["image_url"].startswith("https://")
    assert data["image_key"]
    warning = next(w for w in data["warnings"] if w["setting"] == "save_to_db")
    assert "6 MB" in warning["message"]
    stored = s3.get_object(Bucket=TEST_BUCKET, Key=data["image_key"])["Body"].read()
    assert stored.startswith(b"\x89PNG")


def test_cloudfront_mode_returns_a_stable_url(settings, s3, emulators):
    cdn = settings.model_copy(
        update={"image_url_mode": "cloudfront", "image_cdn_domain": "images.example.com"}
    )
    data = generate(inline_service(cdn))
    assert data["image_url"] == f"https://images.example.com/{data['image_key']}"


def test_upload_failure_is_a_502_storage_error(settings, emulators, s3):
    missing_bucket = settings.model_copy(update={"image_bucket": "no-such-bucket"})
    with pytest.raises(StorageError) as caught:
        generate(inline_service(missing_bucket))
    assert caught.value.status == 502
    assert "no-such-bucket" not in caught.value.message


def test_a_stored_asset_can_be_an_input_image(image_service, emulators, s3):
    first = generate(image_service)
    generate(image_service, prompt="Make it night", input_images=[first["image_key"]])
    sent = emulators["openai"].requests[-1]
    assert sent.path == "/v1/images/edits"
    stored = s3.get_object(Bucket=TEST_BUCKET, Key=first["image_key"])["Body"].read()
    assert [p.data for p in sent.form() if p.name == "image[]"] == [stored]


@pytest.mark.parametrize(
    "key",
    [
        "customers/999/assets/image/0f1e2d3c-0000-4000-8000-000000000000.png",  # another customer
        "customers/123/assets/image/../../999/assets/image/x.png",
        "jobs/123/abc.json",
        "customers/123/assets/image/missing.png",
    ],
)
def test_asset_keys_must_name_the_callers_own_existing_images(image_service, key):
    with pytest.raises(InvalidImage) as caught:
        generate(image_service, input_images=[key])
    assert caught.value.status == 400


@pytest.fixture
def moto_server(monkeypatch):
    """moto's S3 over real HTTP, so a presigned URL can be fetched like a browser would."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://{host}:{port}")
    aws.forget()
    boto3.client("s3", endpoint_url=f"http://{host}:{port}").create_bucket(Bucket=TEST_BUCKET)
    yield
    aws.forget()
    server.stop()


def test_presigned_url_fetches_the_same_bytes(moto_server, settings):
    store = ImageStore(settings)
    image = ImageBytes(b"\x89PNG\r\n\x1a\n" + b"pixels" * 100, "image/png")
    key = store.store_image(123, image, metadata={"provider": "openai"})
    url = store.url_for(key)
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=3600" in url
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == image.data
    assert response.headers["content-type"] == "image/png"


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_every_upload_carries_the_crc32_of_its_bytes_for_s3_to_check(settings, s3):
    import zlib

    sent: list[dict] = []
    store = ImageStore(settings)
    store.client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: sent.append({k: _text(v) for k, v in request.headers.items()}),
    )
    image = ImageBytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 300, "image/png")
    stored_key = store.store_image(123, image, metadata={"provider": "openai"})
    key = store.put_job_answer_image(123, "job-1", "output-0", image)

    def crc32(data: bytes) -> str:
        return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()

    text = base64.b64encode(image.data)
    assert [h["x-amz-checksum-crc32"] for h in sent] == [crc32(image.data), crc32(text)]
    # The CRC32 is the integrity check: the body is not hashed again into the signature.
    assert {h["X-Amz-Content-SHA256"] for h in sent} == {"UNSIGNED-PAYLOAD"}
    assert s3.get_object(Bucket=TEST_BUCKET, Key=stored_key)["Body"].read() == image.data
    assert s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read() == text


def test_an_inline_answer_of_several_images_fits_the_response_limit(settings, s3, emulators):
    """With n > 1 the first data URL is in the answer twice (``image_url`` and ``images[0]``):
    the limit counts it twice, so what is returned inline always fits."""
    roomy = generate(inline_service(settings), save_to_db=False, n=2)
    inline_size = len(json.dumps(roomy))
    limit = inline_size * 9 // 10  # the two images alone fit, the real answer does not
    tight = settings.model_copy(update={"max_response_bytes": limit})
    data = generate(inline_service(tight), save_to_db=False, n=2)
    assert len(json.dumps(data)) <= limit
    assert [image["image_url"][:8] for image in data["images"]] == ["https://"] * 2
    assert any(w["setting"] == "save_to_db" for w in data["warnings"])
