"""From the provider's answer to ours with as few copies as possible: the provider's base64 is
checked piece by piece and passed through into a data URL unchanged; the answer's JSON is parsed
from a stream; several images go to S3 in parallel."""

from __future__ import annotations

import base64
import binascii
import json
import threading

import httpx
import pytest

from image_common.errors import ProviderError, StorageError
from image_service import images as images_module
from image_service.delivery import deliver
from image_service.http import json_or_error, provider_answer
from image_service.images import ImageBytes, base64_form, check_base64
from image_service.providers.base import GeneratedImage, provider_base64_image
from image_service.service import ImageService
from image_service.storage import ImageStore
from tests.conftest import generate, image_bytes

PNG = image_bytes("png", 400, 300)
PNG_TEXT = base64.b64encode(PNG).decode()


def test_a_provider_image_keeps_its_base64_text_and_learns_type_and_size_from_it():
    image = provider_base64_image(PNG_TEXT, "openai")
    assert (image.mime_type, image.size) == ("image/png", len(PNG))
    assert image.to_data_url() == f"data:image/png;base64,{PNG_TEXT}"
    assert image.data == PNG  # decoded only when asked (S3)


def test_the_data_url_passes_the_providers_text_through_without_decoding_it(monkeypatch):
    image = provider_base64_image(PNG_TEXT, "openai")
    monkeypatch.setattr(images_module.binascii, "b2a_base64", _forbidden)
    monkeypatch.setattr(images_module.binascii, "a2b_base64", _forbidden)
    url = image.to_data_url()
    assert url.removeprefix("data:image/png;base64,") == PNG_TEXT


def test_checking_the_providers_base64_never_decodes_the_whole_image(monkeypatch):
    big = base64.b64encode(PNG + bytes(600_000)).decode()
    decoded_sizes = []
    real = binascii.a2b_base64

    def counting(text, **kwargs):
        decoded_sizes.append(len(text))
        return real(text, **kwargs)

    monkeypatch.setattr(images_module.binascii, "a2b_base64", counting)
    head, size = check_base64(big)
    assert head == PNG[:16] and size == len(PNG) + 600_000
    assert len(decoded_sizes) > 1 and max(decoded_sizes) <= 64 * 1024


@pytest.mark.parametrize(
    "text",
    [
        PNG_TEXT[:-1],  # not a multiple of 4
        PNG_TEXT[:100] + "=" * 4 + PNG_TEXT[104:],  # padding inside
        PNG_TEXT[:70_000] + "====" + PNG_TEXT[70_004:],  # padding inside a later piece
        PNG_TEXT[:200] + "é" + PNG_TEXT[201:],  # not ASCII
        PNG_TEXT[:200] + "\n" + PNG_TEXT[201:],  # not canonical
        base64.b64encode(b"GIF89a" + bytes(100)).decode(),  # base64, but not PNG/JPEG/WebP
    ],
)
def test_bad_base64_from_a_provider_is_a_502(text):
    with pytest.raises(ProviderError) as caught:
        provider_base64_image(text, "openai")
    assert caught.value.status == 502


def test_base64_sizes_follow_the_padding():
    for length in (1, 2, 3, 4, 100, 101, 102):
        data = b"\x89PNG\r\n\x1a\n" + bytes(length)
        assert check_base64(base64.b64encode(data).decode())[1] == len(data)


def test_an_inline_generation_answers_the_emulators_base64_unchanged(image_service, emulators):
    answers = []
    route = emulators["openai"].route

    def recording(request):
        response = route(request)
        answers.append(json.loads(response.body)["data"][0]["b64_json"])
        return response

    emulators["openai"].route = recording
    data = generate(image_service, save_to_db=False)
    assert data["image_url"] == f"data:image/png;base64,{answers[0]}"


# --- an inline answer through the job: stored once as the provider's text, read back as it ---


def _no_whole_image_coded(monkeypatch, limit: int = 64 * 1024) -> list[int]:
    """Fail on any base64 encode, or decode, of more than ``limit`` at once (the image is ~1 MB;
    the check decodes 64 KB pieces; botocore encodes small checksums)."""
    coded: list[int] = []
    encode, decode = binascii.b2a_base64, binascii.a2b_base64

    def guarded(real):
        def call(data, **kwargs):
            coded.append(len(data))
            if len(data) > limit:
                raise AssertionError("the whole image was decoded or re-encoded")
            return real(data, **kwargs)

        return call

    monkeypatch.setattr(binascii, "b2a_base64", guarded(encode))
    monkeypatch.setattr(binascii, "a2b_base64", guarded(decode))
    return coded


def test_an_inline_answer_through_the_job_is_the_providers_base64_never_decoded_or_reencoded(
    image_service, emulators, s3, monkeypatch
):
    big = base64.b64encode(image_bytes("png", 700, 500) + bytes(900_000)).decode()
    route = emulators["openai"].route

    def answering_big(request):
        response = route(request)
        answer = json.loads(response.body)
        answer["data"][0]["b64_json"] = big
        return type(response).json(200, answer)

    emulators["openai"].route = answering_big
    coded = _no_whole_image_coded(monkeypatch)
    data = generate(image_service, save_to_db=False, model="gpt-image-1")
    assert data["image_url"] == f"data:image/png;base64,{big}"
    assert coded, "the provider's base64 was checked"
    # A later read (GET /image/jobs/{id}, a webhook) inlines the same text from S3.
    (key,) = [o["Key"] for o in s3.list_objects_v2(Bucket="test-images")["Contents"]]
    assert s3.get_object(Bucket="test-images", Key=key)["Body"].read() == big.encode()
    again = ImageStore(image_service.settings).read_job_bytes(key)
    assert again.to_data_url() == data["image_url"]


def test_an_image_from_bytes_is_kept_as_base64_and_reads_back_as_the_same_bytes(settings, s3):
    store = ImageStore(settings)
    key = store.put_job_answer_image(7, "job-1", "output-0", ImageBytes(PNG, "image/png"))
    assert key == "jobs/7/job-1/output-0.png.b64"
    read = store.read_job_bytes(key)
    assert (read.mime_type, read.size, read.data) == ("image/png", len(PNG), PNG)
    assert read.to_data_url() == f"data:image/png;base64,{PNG_TEXT}"


def test_a_job_image_stored_as_bytes_still_reads_as_that_image(settings, s3):
    # Records written before answers were kept as base64 name the raw bytes (``….png``).
    s3.put_object(Bucket=settings.image_bucket, Key="jobs/7/job-1/output-0.png", Body=PNG)
    read = ImageStore(settings).read_job_bytes("jobs/7/job-1/output-0.png")
    assert read.data == PNG and read.to_data_url() == f"data:image/png;base64,{PNG_TEXT}"


def test_the_form_check_gives_the_full_checks_head_and_size():
    for length in (1, 2, 3, 4, 100, 101, 102):
        text = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(length)).decode()
        assert base64_form(text) == check_base64(text)
    for bad in ("", "abc", "é" * 4, "=" * 24):
        with pytest.raises(ValueError):
            base64_form(bad)


def test_reading_back_an_answer_image_decodes_only_its_first_bytes(settings, s3, monkeypatch):
    store = ImageStore(settings)
    key = store.put_job_answer_image(7, "job-1", "output-0", provider_base64_image(PNG_TEXT, "x"))
    decoded: list[int] = []
    real = binascii.a2b_base64

    def counting(text, **kwargs):
        decoded.append(len(text))
        return real(text, **kwargs)

    monkeypatch.setattr(binascii, "a2b_base64", counting)
    read = store.read_job_bytes(key)
    assert read.to_data_url() == f"data:image/png;base64,{PNG_TEXT}" and read.size == len(PNG)
    assert decoded and max(decoded) <= 24  # its form and first bytes, not a second full pass


@pytest.mark.parametrize(
    "body",
    [
        PNG_TEXT[:-1].encode(),  # cut short
        b"\xff\xfe" + PNG_TEXT.encode(),  # not ASCII
        base64.b64encode(b"GIF89a" + bytes(100)),  # base64, but no image this service writes
    ],
)
def test_a_damaged_stored_answer_image_is_a_502_storage_error(settings, s3, body):
    key = "jobs/7/job-1/output-0.png.b64"
    s3.put_object(Bucket=settings.image_bucket, Key=key, Body=body)
    with pytest.raises(StorageError) as caught:
        ImageStore(settings).read_job_bytes(key)
    assert caught.value.status == 502 and caught.value.type == "storage_error"
    assert key not in caught.value.message


# --- the provider's JSON, parsed from a stream ---------------------------------------------------


def _streamed_answer(chunks: list[bytes]) -> httpx.Client:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=iter(chunks)))
    return httpx.Client(transport=transport)


def test_a_streamed_answer_is_parsed_across_chunk_boundaries():
    answer = {"data": [{"b64_json": PNG_TEXT, "revised_prompt": "Café ☕"}]}
    body = json.dumps(answer, ensure_ascii=False).encode()
    split = body.index("☕".encode()) + 1  # a multi-byte character cut in two
    chunks = [body[:1000], body[1000:split], body[split:]]
    with provider_answer(_streamed_answer(chunks), "POST", "https://p.test/x") as response:
        answer = json_or_error("openai", response)
    assert answer["data"][0] == {"b64_json": PNG_TEXT, "revised_prompt": "Café ☕"}


@pytest.mark.parametrize("chunks", [[b"<html>"], [b'{"a": "\xff"}'], [b"[1, 2]"]])
def test_a_streamed_answer_that_is_not_a_json_object_is_a_502(chunks):
    with provider_answer(_streamed_answer(chunks), "POST", "https://p.test/x") as response:
        with pytest.raises(ProviderError) as caught:
            json_or_error("openai", response)
    assert caught.value.status == 502


# --- several images to S3 at once ----------------------------------------------------------------


class BarrierStore(ImageStore):
    """Each put waits until ``parties`` puts are in flight together: only a parallel upload gets
    past it (a sequential one would break the barrier). Records removals."""

    def __init__(self, settings, parties: int, fail_index: int | None = None) -> None:
        super().__init__(settings, client=object())
        self.barrier = threading.Barrier(parties, timeout=10)
        self.fail_index, self.calls, self.lock = fail_index, [], threading.Lock()
        self.removed: list[str] = []

    def _put_image(self, key, image, metadata):
        with self.lock:
            index = len(self.calls)
            self.calls.append(image.size)
        self.barrier.wait()
        if index == self.fail_index:
            raise StorageError("The image could not be stored.")

    def url_for(self, key):
        return f"https://s3.test/{key}"

    def _remove(self, keys):
        self.removed.extend(keys)


def _result(count: int):
    from image_service.providers.base import ProviderResult

    items = [GeneratedImage(image=provider_base64_image(PNG_TEXT, "openai")) for _ in range(count)]
    return ProviderResult(images=items, sent={})


def _prepared(settings, n: int):
    from image_service.models import parse_request
    from tests.conftest import request_body

    service = ImageService(settings, ImageStore(settings, client=object()))
    request = parse_request(request_body(n=n, model="gpt-image-1"))
    return service.prepare(request, timeout_seconds=5.0)


def test_several_images_are_uploaded_in_parallel(settings):
    store = BarrierStore(settings, parties=3)
    data = deliver(_prepared(settings, 3), _result(3), store=store, settings=settings, job_id="j")
    assert len({i["image_key"] for i in data["images"]}) == 3
    assert store.calls == [len(PNG)] * 3 and store.removed == []


def test_a_failed_parallel_upload_is_a_502_after_every_upload_ended_and_removes_all(settings):
    store = BarrierStore(settings, parties=2, fail_index=1)
    with pytest.raises(StorageError) as caught:
        deliver(_prepared(settings, 2), _result(2), store=store, settings=settings, job_id="j")
    assert caught.value.status == 502 and len(store.calls) == 2
    assert len(store.removed) == 2  # all or none: the stored one goes too


def _forbidden(*args, **kwargs):
    raise AssertionError("the image was decoded or re-encoded")


def test_image_bytes_built_from_bytes_still_encode_their_data_url():
    assert ImageBytes(PNG, "image/png").to_data_url() == f"data:image/png;base64,{PNG_TEXT}"


# --- the HTTP answer's JSON text --------------------------------------------------------------


def test_inline_images_are_spliced_into_the_json_text_unchanged():
    from generation import json_text

    url = f"data:image/png;base64,{PNG_TEXT}"
    body = {"success": True, "code": 200,
            "data": {"image_url": url, "revised_prompt": 'A "quoted" café ☕ \u2028',
                     "images": [{"image_url": url, "seed": 1},
                                {"image_url": "data:image/webp;base64,UklGRg==", "seed": 2}]}}  # fmt: skip
    text = json_text(body)
    assert json.loads(text) == body
    assert text == json.dumps(body, separators=(",", ":"))


def test_answers_without_inline_images_are_plain_json():
    from generation import json_text

    body = {"success": False, "code": 400, "error": {"type": "invalid_request", "message": "x"}}
    assert json_text(body) == json.dumps(body, separators=(",", ":"))
    stored = {"success": True, "data": {"image_url": "https://cdn.test/k.png", "images": None}}
    assert json.loads(json_text(stored)) == stored
