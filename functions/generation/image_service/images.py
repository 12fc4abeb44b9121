"""Image bytes: format sniffing, data URLs. The only place that knows magic numbers."""

from __future__ import annotations

import binascii
import math
import re

from image_common.errors import InvalidImage, PayloadTooLarge

MIME_BY_FORMAT = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSION_BY_MIME = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
# Parameter values as browsers and tools write them (``;name=cat.png``, ``;charset=utf-8``).
_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w/+.\-]+)?(?P<params>(;[\w\-]+=[\w\-.+%]+)*);base64,", re.I
)


class ImageBytes:
    """Image bytes with the MIME type read from the bytes themselves, never from a label.

    Either holds the bytes, or — for an image a provider sent as base64 — that base64 text,
    checked and passed through unchanged into a data URL (no decode and re-encode of the same
    text); it is decoded only when the bytes themselves are needed (S3, an upload).
    """

    __slots__ = ("_data", "_base64", "mime_type", "size")

    def __init__(self, data: bytes, mime_type: str) -> None:
        self._data: bytes | None = data
        self._base64: str | None = None
        self.mime_type = mime_type
        self.size = len(data)

    @classmethod
    def from_checked_base64(cls, text: str, mime_type: str, size: int) -> ImageBytes:
        """Base64 text already checked by ``check_base64`` (which gives the size)."""
        image = cls.__new__(cls)
        image._data, image._base64, image.mime_type, image.size = None, text, mime_type, size
        return image

    @property
    def data(self) -> bytes:
        if self._data is not None:
            return self._data
        return binascii.a2b_base64(self._base64, strict_mode=True)  # checked: cannot fail

    @property
    def extension(self) -> str:
        return EXTENSION_BY_MIME[self.mime_type]

    @property
    def format(self) -> str:
        return self.mime_type.removeprefix("image/")

    @property
    def data_url_length(self) -> int:
        return len(self.mime_type) + 13 + math.ceil(self.size / 3) * 4

    def to_data_url(self) -> str:
        text = self._base64
        if text is None:
            text = binascii.b2a_base64(self._data, newline=False).decode("ascii")
        return f"data:{self.mime_type};base64,{text}"

    def base64_bytes(self) -> bytes:
        """The image as base64 (ASCII bytes): the provider's own text when it sent base64 (one
        copy, no re-encode), else the bytes encoded."""
        if self._base64 is not None:
            return self._base64.encode("ascii")
        return binascii.b2a_base64(self._data, newline=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageBytes):
            return NotImplemented
        return self.mime_type == other.mime_type and self.data == other.data

    __hash__ = None  # mutable-looking equality on bytes: not a dict key

    def __repr__(self) -> str:
        return f"ImageBytes({self.mime_type}, {self.size} bytes)"


_CHECK_CHUNK = 64 * 1024  # base64 characters per step (a multiple of 4): no full-size copy


def check_base64(text: str) -> tuple[bytes, int]:
    """The first bytes (for sniffing) and the decoded size of strict base64 ``text``, checked
    piece by piece so that no decoded copy of the whole image is ever held.
    Raises ``ValueError`` for anything but canonical, padded base64."""
    if not text.isascii() or len(text) % 4:
        raise ValueError("not base64")
    head = b""
    for start in range(0, len(text), _CHECK_CHUNK):
        piece = text[start : start + _CHECK_CHUNK]
        if "=" in piece and start + _CHECK_CHUNK < len(text):
            raise ValueError("padding inside base64")
        decoded = binascii.a2b_base64(piece, strict_mode=True)  # binascii.Error is a ValueError
        if not head:
            head = decoded[:16]
    return head, len(text) // 4 * 3 - len(text[-2:]) + len(text[-2:].rstrip("="))


def base64_form(text: str) -> tuple[bytes, int]:
    """The first bytes and the decoded size of base64 ``text`` whose every piece was checked
    before (``check_base64``) — here only its form: ASCII, whole quads, a decodable start.
    Raises ``ValueError`` when even that is wrong."""
    if not text.isascii() or len(text) % 4 or not text:
        raise ValueError("not base64")
    head = binascii.a2b_base64(text[:24], strict_mode=True)[:16]
    return head, len(text) // 4 * 3 - len(text[-2:]) + len(text[-2:].rstrip("="))


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
    try:  # from the str itself: base64.b64decode would first copy it into ASCII bytes
        data = binascii.a2b_base64(text, strict_mode=True)
    except ValueError:  # binascii.Error, and non-ASCII text
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
