"""S3: images under ``customers/{id}/assets/image/{uuid}.{ext}``, a job's transient bytes under
``jobs/{customer_id}/{job_id}/`` (its input images, and an inline answer's image until it is
read), and URLs for them. Records live in DynamoDB (``job_store.py``), never here.

The bucket is private. A stored key is turned into a URL on demand: a presigned GET, or a stable
CloudFront URL (origin access control) — chosen per stage by ``IMAGE_URL_MODE``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import uuid
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from aws_lambda_powertools import Logger

from image_common.errors import InvalidImage, PayloadTooLarge, StorageError
from image_common.settings import ServiceSettings
from image_service import aws
from image_service.images import ImageBytes, base64_form, image_from_bytes, sniff_mime

logger = Logger(child=True)
JOBS_PREFIX = "jobs/"
BASE64_SUFFIX = ".b64"  # a job's image kept as base64 text (an inline answer's)
MAX_PARALLEL_UPLOADS = 4
_ASSET_KEY = re.compile(
    r"^customers/(?P<customer>\d+)/assets/image/[A-Za-z0-9._\-]+\.(png|jpg|jpeg|webp)$"
)


def _upload(data: bytes) -> dict[str, object]:
    """An upload's body with its CRC32 (S3 checks it), sent without copying the image: botocore
    joins a ``bytes`` body to the request's headers before sending it, and checksums a file in
    1 MB pieces two at a time — each a whole extra copy of a ~2 MB image. A ``BytesIO`` (which
    shares the bytes) is streamed instead, and the checksum is computed here in one pass."""
    checksum = zlib.crc32(data).to_bytes(4, "big")
    return {"Body": io.BytesIO(data), "ChecksumCRC32": base64.b64encode(checksum).decode()}


def image_key(customer_id: int, extension: str) -> str:
    return f"customers/{customer_id}/assets/image/{uuid.uuid4()}.{extension}"


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


class ImageStore:
    def __init__(self, settings: ServiceSettings, client=None) -> None:
        self._settings = settings
        self._client = client

    @property
    def client(self):
        return self._client or aws.client("s3")

    @property
    def bucket(self) -> str:
        return self._settings.image_bucket

    def store_image(self, customer_id: int, image: ImageBytes, *, metadata: dict[str, str]) -> str:
        (key,) = self.store_images(customer_id, [image], metadata=metadata)
        return key

    def store_images(
        self, customer_id: int, images: Sequence[ImageBytes], *, metadata: dict[str, str]
    ) -> list[str]:
        """All of a request's images, or none: when one cannot be stored, those already stored
        are removed before the 502, so a failed request leaves nothing that nobody points to.
        Several images are uploaded in parallel. Their keys: whoever shows them signs the URLs
        (``url_for``), so the function that stores them needs no read access."""
        # Every key before any put: a put that failed late may still have landed.
        keys = [image_key(customer_id, image.extension) for image in images]
        try:
            if len(images) == 1:
                self._put_image(keys[0], images[0], metadata)
            else:  # in parallel; all of them end before a failure is raised
                with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_UPLOADS, len(images))) as pool:
                    puts = [
                        pool.submit(self._put_image, key, image, metadata)
                        for key, image in zip(keys, images, strict=True)
                    ]
                for put in puts:
                    put.result()
            return keys
        except Exception:
            self._remove(keys)
            raise

    def _put_image(self, key: str, image: ImageBytes, metadata: dict[str, str]) -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                **_upload(image.data),
                ContentType=image.mime_type,
                Metadata=metadata,
            )
        except Exception:  # botocore's errors; the caller sees a 502, never the AWS detail
            raise StorageError("The image could not be stored.") from None

    def _remove(self, keys: list[str]) -> None:
        if not keys:
            return
        try:
            answer = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
            )
            left = [error["Key"] for error in answer.get("Errors", [])]
        except Exception:
            left = keys
        if left:  # the keys (no content, no prompt) so that someone can remove them
            logger.error("stored images of a failed request were not removed", extra={"keys": left})

    def url_for(self, key: str) -> str:
        if self._settings.image_url_mode == "cloudfront":
            return f"https://{self._settings.image_cdn_domain}/{key}"
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=self._settings.presign_expires_seconds,
        )

    def read_asset(self, customer_id: int, key: str, *, max_bytes: int) -> ImageBytes:
        """One of the caller's own stored images, used as an input image."""
        match = _ASSET_KEY.match(key)
        if not match or int(match["customer"]) != customer_id:
            raise InvalidImage("An input image key must name one of your own stored images.")
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            raise InvalidImage("An input image key names no stored image.") from None
        except Exception:
            raise StorageError("A stored input image could not be read.") from None
        if obj["ContentLength"] > max_bytes:
            obj["Body"].close()
            raise PayloadTooLarge("A stored input image is over the size limit.")
        return image_from_bytes(obj["Body"].read(), what="stored input image")

    def put_job_bytes(self, customer_id: int, job_id: str, name: str, image: ImageBytes) -> str:
        """A job's transient image (an input image, or an inline answer's image): the workflow
        passes its key, never its bytes. The ``jobs/`` prefix expires by lifecycle rule."""
        key = f"{JOBS_PREFIX}{customer_id}/{job_id}/{name}.{image.extension}"
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=image.data, ContentType=image.mime_type
            )
        except Exception:
            raise StorageError("The job's image could not be stored.") from None
        return key

    def put_job_answer_image(
        self, customer_id: int, job_id: str, name: str, image: ImageBytes
    ) -> str:
        """An inline answer's image, kept until it is read as a data URL: stored as its base64
        text (``….png.b64``) — the provider's own text when it sent base64 — so the job's worker
        never decodes it and every reader inlines it without re-encoding it."""
        key = f"{JOBS_PREFIX}{customer_id}/{job_id}/{name}.{image.extension}{BASE64_SUFFIX}"
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                **_upload(image.base64_bytes()),
                ContentType="text/plain",
            )
        except Exception:
            raise StorageError("The job's image could not be stored.") from None
        return key

    def read_job_bytes(self, key: str) -> ImageBytes:
        """A job's transient image: bytes (input images), or base64 text (an inline answer's
        image, ``put_job_answer_image``) kept as text for its data URL."""
        if not key.startswith(JOBS_PREFIX):
            raise StorageError("The job's image could not be read.")
        try:
            data = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception:
            raise StorageError("The job's image could not be read.") from None
        if not key.endswith(BASE64_SUFFIX):
            return image_from_bytes(data, what="job image")
        try:
            text = data.decode("ascii")
            del data  # one copy of the image at a time
            # Checked piece by piece when the provider sent it, and S3 checked its CRC32 when
            # it was stored: only its form is checked again (a full pass is ~25 ms per image).
            head, size = base64_form(text)
        except ValueError:  # UnicodeDecodeError too: not what this service wrote
            raise StorageError("The job's image could not be read.") from None
        mime = sniff_mime(head)
        if mime is None:
            raise StorageError("The job's image could not be read.")
        return ImageBytes.from_checked_base64(text, mime, size)
