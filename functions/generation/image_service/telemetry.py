"""The service's business metrics: provider calls and failures, and what was spent, per provider.

Each is its own embedded-metric-format line (Powertools ``single_metric``), written when it
happens, so that its dimensions (``provider``) never mix with the handler's per-invocation set,
and the job tasks (no ``log_metrics`` decorator) emit them as well. Names come from
``image_common.metric_names``, which the alarms read too.
"""

from __future__ import annotations

import os

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from image_common.credentials import provider_secrets
from image_common.metric_names import (
    COST_USD,
    LIMIT_REJECTIONS,
    NAMESPACE,
    PROVIDER_CALLS,
    PROVIDER_DIMENSION,
    PROVIDER_ERRORS,
    PROVIDER_KEY_STALE_SERVED,
    SERVICE_DIMENSION,
    WEBHOOK_DELIVERY_FAILURES,
)


def record_provider_call(provider: str, *, failed: bool) -> None:
    _emit(PROVIDER_CALLS, 1, MetricUnit.Count, {PROVIDER_DIMENSION: provider})
    if failed:
        _emit(PROVIDER_ERRORS, 1, MetricUnit.Count, {PROVIDER_DIMENSION: provider})


def record_cost(provider: str, cost_usd: float) -> None:
    """Settled spend: once in total (the cost-per-hour alarm) and once per provider."""
    _emit(COST_USD, cost_usd, MetricUnit.NoUnit, {})
    _emit(COST_USD, cost_usd, MetricUnit.NoUnit, {PROVIDER_DIMENSION: provider})


def record_webhook_failure() -> None:
    """A job's callback given up on, after every retry of its schedule."""
    _emit(WEBHOOK_DELIVERY_FAILURES, 1, MetricUnit.Count, {})


def record_limit_rejection(error_type: str) -> None:
    _emit(LIMIT_REJECTIONS, 1, MetricUnit.Count, {"error_type": error_type})


def record_event(name: str) -> None:
    """One occurrence of a service-wide event (e.g. ``CATALOG_OVERLAY_REJECTED``), under the
    ``service`` dimension alone — the set its alarm reads."""
    _emit(name, 1, MetricUnit.Count, {})


def record_stale_provider_key() -> None:
    """A request served a provider key from its stale grace (its secret unreadable)."""
    _emit(PROVIDER_KEY_STALE_SERVED, 1, MetricUnit.Count, {})


def count_stale_provider_keys() -> None:
    """Point the provider key cache (image_common, which emits no metric: the authorizer shares
    it) at this module's count. Each entry point calls it once, at cold start."""
    provider_secrets.record_stale = record_stale_provider_key


def _emit(name: str, value: float, unit: MetricUnit, dimensions: dict[str, str]) -> None:
    service = os.environ.get("POWERTOOLS_SERVICE_NAME") or "image-service"
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or NAMESPACE
    with single_metric(
        name=name,
        unit=unit,
        value=value,
        namespace=namespace,
        default_dimensions={SERVICE_DIMENSION: service},
    ) as metric:
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension)
