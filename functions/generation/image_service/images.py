"""Image bytes: format sniffing, data URLs. The only place that knows magic numbers."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from image_common.errors import InvalidImage, PayloadTooLarge

MIME_BY_FORMAT = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSION_BY_MIME = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
# Parameter values as browsers and tools write them (``;name=cat.png``, ``;charset=utf-8``).
_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w/+.\-]+)?(?P<params>(;[\w\-]+=[\w\-.+%]+)*);base64,", re.I
)


@dataclass(frozen=True)
class ImageBytes:
    """Image bytes with the MIME type read from the bytes themselves, never from a label."""

    data: bytes
    mime_type: str

    @property
    def extension(self) -> str:
        return EXTENSION_BY_MIME[self.mime_type]

    @property
    def format(self) -> str:
        return self.mime_type.removeprefix("image/")

    def to_data_url(self) -> str:
        return f"data:{self.mime_type};base64,{base64.b64encode(self.data).decode('ascii')}"


def sniff_mime(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_from_bytes(data: bytes, *, what: str = "image") -> ImageBytes:
    mime = sniff_mime(data)
    if mime is None:
        raise InvalidImage(f"The {what} is not a PNG, JPEG or WebP image.")
    return ImageBytes(data, mime)


def decode_base64(text: str, *, max_bytes: int, what: str) -> bytes:
    # Checked before decoding so an oversized input never costs its decoded copy.
    if len(text) * 3 // 4 > max_bytes + 3:
        raise PayloadTooLarge(f"The {what} is larger than {max_bytes // (1024 * 1024)} MiB.")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImage(f"The {what} is not valid base64.") from None
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"The {what} is larger than {max_bytes // (1024 * 1024)} MiB.")
    return data


def decode_data_url(url: str, *, max_bytes: int, what: str = "input image") -> ImageBytes:
    match = _DATA_URL.match(url)
    if not match:
        raise InvalidImage(f"The {what} is not a base64 data URL.")
    data = decode_base64(url[match.end() :], max_bytes=max_bytes, what=what)
    return image_from_bytes(data, what=what)


def is_data_url(value: str) -> bool:
    return value[:5].lower() == "data:"
