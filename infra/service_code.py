"""Facts infra reads from the code it deploys, so each is written once: the metric names the
functions emit, the error taxonomy (which errors are the service's fault), and the providers.

These modules live in the common layer (``layers/common/python``), standard library only; its
folder goes on ``sys.path`` here, as Lambda puts a layer's ``python/`` there.
"""

from __future__ import annotations

import sys

from infra.bundling import PROJECT_ROOT

_COMMON_LAYER_CODE = str(PROJECT_ROOT / "layers" / "common" / "python")
if _COMMON_LAYER_CODE not in sys.path:
    sys.path.append(_COMMON_LAYER_CODE)

from image_common import errors, metric_names  # noqa: E402
from image_common.provider_identity import MODEL_LIST_PROVIDERS, PROVIDERS  # noqa: E402

__all__ = ["MODEL_LIST_PROVIDERS", "PROVIDERS", "errors", "metric_names", "server_error_types"]


def server_error_types() -> tuple[str, ...]:
    """The ``type`` of every error that is the service's (or a provider's) fault: status ≥ 500."""
    found: dict[str, None] = {}
    pending = [errors.ImageServiceError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.status >= 500:
            found[cls.type] = None
    return tuple(sorted(found))
