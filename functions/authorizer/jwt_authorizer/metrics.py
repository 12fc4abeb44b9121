"""The authorizer's own metrics, as CloudWatch embedded-metric-format (EMF) lines on stdout.

Lambda hands stdout to CloudWatch Logs, which turns an EMF line into metric data: no client,
no boto3, no Powertools on the hot path of every request. A deny is counted (in total and per
reason) so that a broken JWT secret or an unreachable JWKS — 403s for everyone — raises an
alarm; an error (no verifier, or a bug) is counted apart, as it is ours, not the caller's.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from image_common.metric_names import (
    AUTHORIZER_DENIALS,
    AUTHORIZER_ERRORS,
    NAMESPACE,
    REASON_DIMENSION,
    SERVICE_DIMENSION,
)

DEFAULT_SERVICE = "image-service-authorizer"


class AuthorizerMetrics:
    def __init__(
        self,
        *,
        namespace: str | None = None,
        service: str | None = None,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.namespace = namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or NAMESPACE
        self.service = service or os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE
        self._out = out
        self._clock = clock

    def denied(self, reason: str) -> None:
        self._emit(AUTHORIZER_DENIALS, {REASON_DIMENSION: reason})

    def errored(self, reason: str) -> None:
        """Our fault: counted as an error and as a deny (the caller was denied all the same)."""
        self._emit(AUTHORIZER_ERRORS, {REASON_DIMENSION: reason})
        self.denied(reason)

    def _emit(self, metric: str, dimensions: dict[str, str]) -> None:
        names = list(dimensions)
        document = {
            "_aws": {
                "Timestamp": int(self._clock() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        # Once in total (what alarms watch) and once per dimension value.
                        "Dimensions": [[SERVICE_DIMENSION], [SERVICE_DIMENSION, *names]],
                        "Metrics": [{"Name": metric, "Unit": "Count"}],
                    }
                ],
            },
            SERVICE_DIMENSION: self.service,
            **dimensions,
            metric: 1,
        }
        out = self._out or sys.stdout
        out.write(json.dumps(document, separators=(",", ":")) + "\n")
        out.flush()
