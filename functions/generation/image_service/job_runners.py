"""How a job is started: ``StepFunctionsJobRunner`` (deployed) or ``LocalJobRunner`` (the local
stack: the same task handlers, same order, interval and budget, in a background thread).
``JOB_RUNNER=local`` selects the latter.
"""

from __future__ import annotations

import importlib
import json
import math
import threading
import time
from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger

from image_common.errors import (
    ProviderError,
    ProviderNotConfigured,
)
from image_common.settings import ServiceSettings
from image_service.job_workflow import _FAILURE_ERRORS, ERROR_PROVIDER, STATUS_PENDING, STATUS_READY
from image_service.jobs import JobRunner

logger = Logger(child=True)


# --- runners ----------------------------------------------------------------------------------


@cache
def get_sfn_client():
    """One client per container; ``AWS_ENDPOINT_URL_SFN`` (boto3's own) points it elsewhere."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "stepfunctions",
        config=Config(
            connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"}
        ),
    )


class StepFunctionsJobRunner:
    """Starts the Flux state machine; the execution name is the job id."""

    def __init__(self, state_machine_arn: str | None, client=None) -> None:
        self.state_machine_arn = state_machine_arn
        self._client = client

    @property
    def client(self):
        return self._client or get_sfn_client()

    def start(self, execution_input: dict[str, Any]) -> None:
        if not self.state_machine_arn:
            raise ProviderNotConfigured("Asynchronous jobs are not configured on this service.")
        # A Wait state counts whole seconds.
        document = execution_input | {
            "interval_seconds": max(1, math.ceil(execution_input["interval_seconds"])),
            "budget_seconds": execution_input["budget_seconds"],
        }
        client = self.client
        try:
            client.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=execution_input["job_id"],
                input=json.dumps(document, separators=(",", ":")),
            )
        except client.exceptions.ExecutionAlreadyExists:
            return  # the same job started twice: one execution
        except Exception as error:  # botocore's errors: the caller sees a 502, never AWS detail
            logger.error("job start failed", extra={"error_class": type(error).__name__})
            raise ProviderError("The image job could not be started.") from None


class LocalJobRunner:
    """The local stack's runner: the workflow's own task handlers (``flux_tasks``), in the state
    machine's order, with its interval and budget, in a background thread."""

    def __init__(self, tasks: Any = None, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._tasks = tasks
        self._sleep = sleep
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def tasks(self) -> Any:
        return self._tasks or importlib.import_module("flux_tasks")

    def start(self, execution_input: dict[str, Any]) -> None:
        thread = threading.Thread(
            target=self.run, args=(dict(execution_input),), name="job-" + execution_input["job_id"],
            daemon=True,
        )  # fmt: skip
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def run(self, state: dict[str, Any]) -> dict[str, Any]:
        """Submit → (wait → poll)* → store, or record_failure, as the ASL does."""
        tasks = self.tasks
        try:
            state = tasks.submit(state, None)
            while True:
                self._sleep(float(state["interval_seconds"]))
                state = tasks.poll(state, None)
                status = state.get("status")
                if status == STATUS_PENDING:
                    continue
                if status == STATUS_READY:
                    return tasks.store(state, None)
                error = _FAILURE_ERRORS.get(status, ERROR_PROVIDER)
                return self._record_failure(state | {"error": {"Error": error, "Cause": ""}})
        except Exception as exc:  # what a Catch on States.ALL would route to RecordFailure
            cause = json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__})
            return self._record_failure(
                state | {"error": {"Error": type(exc).__name__, "Cause": cause}}
            )

    def _record_failure(self, state: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.tasks.record_failure(state, None)
        except Exception as exc:
            logger.error("record_failure failed", extra={"error_class": type(exc).__name__})
            return state

    def join(self, timeout: float = 10.0) -> bool:
        """Wait for running jobs (tests, shutdown); True when none is left running."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)


def job_runner_for(settings: ServiceSettings) -> JobRunner:
    """``JOB_RUNNER=local`` (the local stack) or the deployed state machine."""
    if settings.job_runner == "local":
        return LocalJobRunner()
    return StepFunctionsJobRunner(settings.flux_state_machine_arn)
