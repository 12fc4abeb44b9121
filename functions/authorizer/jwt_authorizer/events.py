"""One JSON line per authorizer event. Callers pass reasons and ids, never tokens or secrets."""

from __future__ import annotations

import json
import logging
import os

logger = logging.getLogger("authorizer")
# An unknown LOG_LEVEL must not break the import (and with it every request): fall back to INFO.
_level = logging.getLevelName(os.environ.get("LOG_LEVEL", "INFO").strip().upper())
logger.setLevel(_level if isinstance(_level, int) else logging.INFO)

MAX_FIELD_CHARS = 128


def log_event(level: int, event: str, **fields: object) -> None:
    if not logger.isEnabledFor(level):
        return
    record = {"event": event}
    for name, value in fields.items():
        if value is not None:
            # Values such as kid and iss come from an unverified token: bound their size;
            # json.dumps escapes control characters, so they cannot forge log lines.
            record[name] = value if isinstance(value, (int, bool)) else str(value)[:MAX_FIELD_CHARS]
    logger.log(level, json.dumps(record, separators=(",", ":")))
