"""Lambda entry points of the Flux workflow (``infra/flux_definition.py``): submit, poll, store
and record_failure. Each takes the job's small state and returns it extended; the work is in
``image_service.job_workflow.JobWorkflow``. The local stack's ``LocalJobRunner`` calls these same
functions, in the state machine's order.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger

from image_common.errors import ImageServiceError, InternalError
from image_common.settings import ServiceSettings, get_settings
from image_service.job_workflow import JobWorkflow
from image_service.jobs import JobStore
from image_service.service import ImageService
from image_service.storage import ImageStore

logger = Logger()
settings = get_settings()  # a misconfigured function fails here, at cold start


def workflow() -> JobWorkflow:
    return workflow_for(get_settings())


@cache
def workflow_for(current: ServiceSettings) -> JobWorkflow:
    """One per container (per settings: the local stack may restart with another environment)."""
    store = ImageStore(current)
    return JobWorkflow(ImageService(current, store), JobStore(store))


def submit(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _run("submit", event)


def poll(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _run("poll", event)


def store(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _run("store", event)


def record_failure(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _run("record_failure", event)


def _run(step: str, event: dict[str, Any]) -> dict[str, Any]:
    logger.append_keys(job_id=event.get("job_id"), step=step)
    try:
        return getattr(workflow(), step)(event)
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
