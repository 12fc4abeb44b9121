"""The response envelope: ``{success, code, data}`` or ``{success, code, error}``."""

from __future__ import annotations

from typing import Any

from image_common.errors import ImageServiceError


def success_envelope(data: dict[str, Any], code: int = 200) -> dict[str, Any]:
    return {"success": True, "code": code, "data": data}


def error_envelope(error: ImageServiceError) -> dict[str, Any]:
    return {"success": False, "code": error.status, "error": error.to_dict()}
