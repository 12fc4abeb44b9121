"""JSON request bodies, checked before anything reads them.

JSON is UTF-8 (RFC 8259): a body in another encoding — a raw PNG upload, Latin-1 text — is the
caller's 400, not a decoding exception. Nesting is bounded: the json module and pydantic
recurse, and a 2 KB body of 1,000 brackets would otherwise exhaust the stack; no request of
ours needs more than a few levels, so anything past ``MAX_JSON_DEPTH`` is refused by name.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from image_common.errors import InvalidRequest, PayloadTooLarge

MAX_JSON_DEPTH = 64


def parse_json_body(body: str | None, *, base64_encoded: bool, max_bytes: int) -> Any:
    """The JSON value of an API Gateway body (``isBase64Encoded`` as given), or a 400/413."""
    if not body:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    raw: str | bytes = body
    if base64_encoded:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("The request body is not valid base64.") from None
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"The request body is over the {max_bytes // 2**20} MB limit.")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(
                "The request body is not UTF-8 text; send a JSON object (application/json)."
            ) from None
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise _too_deep() from None
    except ValueError:
        raise InvalidRequest("The request body is not valid JSON.") from None


def request_bytes(body: str | None, *, base64_encoded: bool, max_bytes: int) -> bytes:
    """An API Gateway body as bytes (a binary upload, e.g. multipart, arrives base64), or a
    400/413 — the size checked before decoding a body that cannot fit."""
    if not body:
        raise InvalidRequest("The request body is empty.")
    if len(body) > (max_bytes * 4 // 3 + 4 if base64_encoded else max_bytes * 4):
        raise PayloadTooLarge(f"The request body is over the {max_bytes // 2**20} MB limit.")
    if base64_encoded:
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("The request body is not valid base64.") from None
    else:
        data = body.encode("utf-8", errors="surrogatepass")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"The request body is over the {max_bytes // 2**20} MB limit.")
    return data


def check_json_value(value: Any) -> None:
    """Refuse nesting deeper than ``MAX_JSON_DEPTH`` and strings that are not valid Unicode.

    Iterative, so the check itself cannot overflow the stack. A lone surrogate (``"\\ud800"``
    is valid JSON syntax) cannot be encoded as UTF-8 and would fail later, in S3 or a provider.
    """
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict):
            if depth > MAX_JSON_DEPTH:
                raise _too_deep()
            for key, item in node.items():
                _check_text(key)
                pending.append((item, depth + 1))
        elif isinstance(node, list):
            if depth > MAX_JSON_DEPTH:
                raise _too_deep()
            pending.extend((item, depth + 1) for item in node)
        elif isinstance(node, str):
            _check_text(node)


def _check_text(text: Any) -> None:
    if isinstance(text, str) and not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(
                "The request holds a string that is not valid Unicode (a lone surrogate escape)."
            ) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python's json accepts them, RFC no


def _too_deep() -> InvalidRequest:
    return InvalidRequest(f"The request body is nested deeper than {MAX_JSON_DEPTH} levels.")
