"""``GET /health``: the open liveness route, served by its own 128 MB function.

It answers a constant in the service's envelope and imports nothing but ``json``, so an uptime
check (or anyone, unauthenticated) never starts the 1 GB generation function or its layers.
"""

from __future__ import annotations

import json
from typing import Any

BODY = json.dumps({"success": True, "code": 200, "data": {"status": "ok"}}, separators=(",", ":"))


def handler(event: Any, context: Any) -> dict[str, Any]:
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": BODY,
    }
