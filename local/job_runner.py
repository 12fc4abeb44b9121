"""The local stack's job runner: the job state machine's steps, in its order, in-process.

``infra/job_definition.py`` is what runs in AWS; this runs the same task entry points
(``job_tasks``, or a ``JobPipeline`` in tests) in the same order — run, then (wait interval,
poll)* and store for a submitted task, record_failure for anything raised, then notify until
the webhook is delivered or given up — with the same interval, budgets and records. The state
machine definition itself is tested on its own (moto executes it).

``background=True`` (the local stack) runs each job on its own thread, as Step Functions runs
it beside the request; ``background=False`` runs it inside ``start`` (tests that want the
finished job at once).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from image_service.pipeline import (
    STATUS_FAILED,
    STATUS_PENDING,
    STATUS_READY,
    STATUS_SUBMITTED,
    STATUS_SUCCEEDED,
    WEBHOOK_RETRY,
)

logger = logging.getLogger("local.jobs")


class LambdaTasks:
    """The ``job_tasks`` module's entry points, called as Lambda calls them: (event, context)."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def __getattr__(self, step: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        function = getattr(self.module, step)
        return lambda state: function(state, None)


class LocalJobRunner:
    def __init__(
        self,
        tasks: Any,
        *,
        background: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.tasks = tasks
        self.background = background
        self._sleep = sleep
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, execution_input: dict[str, Any]) -> None:
        if not self.background:
            self.run(dict(execution_input))
            return
        thread = threading.Thread(
            target=self.run,
            args=(dict(execution_input),),
            name="job-" + execution_input["job_id"],
            daemon=True,
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def run(self, state: dict[str, Any]) -> dict[str, Any]:
        """The state machine's path through one job."""
        try:
            state = self.tasks.run(state)
            if state.get("status") == STATUS_SUBMITTED:
                while True:
                    self._sleep(float(state["interval_seconds"]))
                    state = self.tasks.poll(state)
                    if state.get("status") != STATUS_PENDING:
                        break
                if state.get("status") == STATUS_READY:
                    state = self.tasks.store(state)
            if state.get("status") not in (STATUS_SUCCEEDED, STATUS_FAILED):
                cause = "A step returned an unknown status."
                state = self._record_failure(state, "Job.UnknownStatus", cause)
        except Exception as exc:  # what a Catch on States.ALL routes to RecordFailure
            logger.warning("job step failed: %s", type(exc).__name__)  # the class, never the text
            cause = json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__})
            state = self._record_failure(state, type(exc).__name__, cause)
        return self._notify(state)

    def _record_failure(self, state: dict[str, Any], error: str, cause: str) -> dict[str, Any]:
        try:
            return self.tasks.record_failure(state | {"error": {"Error": error, "Cause": cause}})
        except Exception as exc:
            logger.error("record_failure failed: %s", type(exc).__name__)
            return state | {"status": STATUS_FAILED}

    def _notify(self, state: dict[str, Any]) -> dict[str, Any]:
        try:
            while True:
                state = self.tasks.notify(state)
                webhook = state.get("webhook") or {}
                if webhook.get("next") != WEBHOOK_RETRY:
                    return state
                self._sleep(float(webhook.get("retry_in_seconds", 1)))
        except Exception as exc:  # a failed delivery never changes the job's outcome
            logger.error("notify failed: %s", type(exc).__name__)
            return state

    def join(self, timeout: float = 10.0) -> bool:
        """Wait for running jobs (tests, shutdown); True when none is left running."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)
