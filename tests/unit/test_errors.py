"""Errors: safe messages, the envelope, one status per error type."""

import pytest

from image_common import errors
from image_common.envelope import error_envelope, success_envelope


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-abcdefghijklmnop1234567890",
        "xai-ABCDEFGHIJKLMNOP123456",
        "AIzaSyA1234567890abcdefghijklmnopqrstu",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        "Bearer abcdefghijklmnopqrstuvwxyz",
        "x-key: 0123456789abcdef",
    ],
)
def test_credentials_never_survive_into_a_message(secret):
    error = errors.ProviderError(f"upstream said: invalid key {secret} for this request")
    assert secret not in error.message
    assert "[redacted]" in error.message
    assert secret not in str(error_envelope(error))


def test_messages_are_capped():
    assert len(errors.InvalidRequest("x" * 5000).message) == errors.MAX_MESSAGE_CHARS


@pytest.mark.parametrize(
    ("cls", "status", "type_"),
    [
        (errors.InvalidRequest, 400, "invalid_request"),
        (errors.UnknownModel, 400, "unknown_model"),
        (errors.InvalidImage, 400, "invalid_image"),
        (errors.Unauthorized, 401, "unauthorized"),
        (errors.Forbidden, 403, "forbidden"),
        (errors.NotFound, 404, "not_found"),
        (errors.PayloadTooLarge, 413, "payload_too_large"),
        (errors.ContentPolicyViolation, 422, "content_policy_violation"),
        (errors.ProviderRateLimited, 429, "rate_limited"),
        (errors.ProviderError, 502, "provider_error"),
        (errors.StorageError, 502, "storage_error"),
        (errors.ProviderTimeout, 504, "provider_timeout"),
        (errors.InternalError, 500, "internal_error"),
    ],
)
def test_each_error_maps_to_its_status_in_the_envelope(cls, status, type_):
    envelope = error_envelope(cls("something happened"))
    assert envelope == {
        "success": False,
        "code": status,
        "error": {"type": type_, "message": "something happened"},
    }


def test_rate_limit_carries_retry_after():
    envelope = error_envelope(errors.ProviderRateLimited("slow down", retry_after=7))
    assert envelope["error"]["retry_after"] == 7


def test_success_envelope():
    assert success_envelope({"a": 1}) == {"success": True, "code": 200, "data": {"a": 1}}
    assert success_envelope({"a": 1}, 202)["code"] == 202
