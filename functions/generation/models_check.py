"""The daily model catalog check (an EventBridge schedule): ask each provider's model list,
compare it with the catalog, and publish the drift as CloudWatch metrics (alarmed in
``infra/constructs/monitoring.py``) and one structured log line. ``make models-check`` runs the
same check from a terminal (``local/models_check.py``)."""

from __future__ import annotations

import datetime
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from image_common import metric_names
from image_service import telemetry
from image_service.model_drift import CheckSettings, DriftReport, check_catalog, service_catalog
from image_service.registry import PROVIDERS
from image_service.upstream_models import listing_fetchers

logger = Logger()
metrics = Metrics()
check_settings = CheckSettings.from_environ(os.environ)  # a bad setting fails at cold start
telemetry.count_stale_provider_keys()


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    report = check_catalog(
        service_catalog(),
        listing_fetchers(PROVIDERS),
        today=check_day(event),
        warning_days=check_settings.warning_days,
        acknowledged=check_settings.acknowledged,
    )
    publish(report)
    return report.as_dict()


def check_day(event: dict[str, Any]) -> datetime.date:
    """The scheduled event's own time (UTC) is the check's today; a manual invoke: now."""
    when = event.get("time") if isinstance(event, dict) else None
    if isinstance(when, str):
        try:
            moment = datetime.datetime.fromisoformat(when)
        except ValueError:
            logger.warning("event time unreadable; checking for today", extra={"time": when[:40]})
        else:
            if moment.tzinfo is not None:
                moment = moment.astimezone(datetime.UTC)
            return moment.date()
    return datetime.datetime.now(datetime.UTC).date()


def publish(report: DriftReport) -> None:
    counts = {
        # Alarmed: the sum of what needs a catalog change.
        metric_names.MODEL_DRIFT_FINDINGS: len(report.drift),
        metric_names.MODELS_MISSING_UPSTREAM: report.count("missing_upstream"),
        metric_names.MODEL_SHUTDOWNS_NOT_IN_CATALOG: (
            report.count("shutdown_soon") + report.count("shutdown_past")
        ),
        metric_names.UPSTREAM_MODELS_NOT_IN_CATALOG: report.count("unknown_upstream"),
        # Shutdowns inside the window, the ones the catalog already handles too.
        metric_names.MODEL_SHUTDOWNS_WITHIN_WINDOW: report.count("shutdown_soon", drift_only=False),
        metric_names.MODEL_LISTS_CHECKED: sum(1 for x in report.listings if x.state == "checked"),
        metric_names.MODEL_LIST_FAILURES: len(report.failed),  # alarmed
    }
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    for finding in report.drift:
        logger.warning("model catalog drift", extra={"finding": finding.as_dict()})
    for listing in report.failed:
        logger.error(
            "model list unavailable",
            extra={"provider": listing.provider, "reason": listing.reason},
        )
    logger.info("model catalog check", extra={"report": report.as_dict()})
