"""Lambda entry points of the job state machine (``infra/job_definition.py``): run, poll,
store, record_failure and notify. Each takes the job's small state and returns it extended; the
work is in ``image_service.pipeline.JobPipeline``. The local stack's runner calls these same
functions, in the state machine's order.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger

from image_common.errors import ImageServiceError, InternalError
from image_common.settings import ServiceSettings, get_settings
from image_service import snapstart, telemetry
from image_service.job_store import JobStore
from image_service.pipeline import JobPipeline
from image_service.providers import get_image_provider
from image_service.storage import ImageStore
from image_service.usage import usage_ledger_for

logger = Logger()
settings = get_settings()  # a misconfigured function fails here, at cold start
snapstart.register()  # the hooks run only where SnapStart is on (run and store)
telemetry.count_stale_provider_keys()


def pipeline() -> JobPipeline:
    return pipeline_for(get_settings())


@cache
def pipeline_for(current: ServiceSettings) -> JobPipeline:
    """One per container (per settings: the local stack may restart with another environment)."""
    return JobPipeline(
        current,
        ImageStore(current),
        JobStore(current.jobs_table),
        get_image_provider,
        usage=usage_ledger_for(current),
    )


def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _run("run", event)


def poll(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _run("poll", event)


def store(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _run("store", event)


def record_failure(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _run("record_failure", event)


def notify(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _run("notify", event)


def _run(step: str, event: dict[str, Any]) -> dict[str, Any]:
    logger.append_keys(job_id=event.get("job_id"), step=step)
    try:
        return getattr(pipeline(), step)(event)
    except ImageServiceError as error:
        logger.info("task failed", extra={"error_type": error.type, "status": error.status})
        # Re-raised bare: the Lambda error (its name is the workflow's error) carries the safe
        # message and no trace of the code below.
        raise type(error)(error.message, retry_after=error.retry_after) from None
    except Exception as error:
        logger.error("task failed unexpectedly", extra={"error_class": type(error).__name__})
        raise InternalError() from None
    finally:
        logger.remove_keys(["job_id", "step"])
