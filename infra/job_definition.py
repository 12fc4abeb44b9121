"""The job workflow as Amazon States Language — the one definition, deployed and tested.

Every generation runs through it, whichever its provider (docs/jobs.md). The stack deploys it
with CloudFormation definition substitutions (``${RunFunctionArn}`` …), and tests run the very
same document in moto's Step Functions with their own Lambda ARNs.

Contract with the task handlers (``functions/generation/job_tasks.py``):

- input: ``{"job_id", "customer_id", "interval_seconds"}``;
- every task receives the whole (small) job state and returns it, extended: ``run`` sets
  ``status`` to ``Succeeded`` or ``Failed`` (a synchronous provider: the job is over) or
  ``Submitted`` (a submit/poll provider); ``poll`` to ``Pending``, ``Ready`` (+ ``result_url``)
  or ``Failed``; ``store`` to ``Succeeded`` or ``Failed``. A task writes the job's final
  record itself before it answers ``Succeeded`` or ``Failed``;
- a task that raises (a crash, a timeout, a throttle that outlived its retries) is caught:
  ``record_failure`` gets the state plus ``error: {"Error", "Cause"}`` and writes the job's
  final failed state — no job stays unfinished;
- ``notify`` makes one webhook delivery attempt and sets ``webhook.next`` to ``Retry`` (with
  ``webhook.retry_in_seconds``) or ``Done``; its failures never change the job's outcome.

Images never travel through the state (256 KB limit): only ids, keys and URLs do.
"""

from __future__ import annotations

from typing import Any

# Status values the tasks return (image_service.pipeline uses the same; a test checks).
STATUS_SUCCEEDED = "Succeeded"
STATUS_FAILED = "Failed"
STATUS_SUBMITTED = "Submitted"
STATUS_PENDING = "Pending"
STATUS_READY = "Ready"
WEBHOOK_RETRY = "Retry"

# What the execution fails with when the job failed (the typed error is in the job record).
ERROR_JOB_FAILED = "Job.Failed"
ERROR_UNKNOWN_STATUS = "Job.UnknownStatus"

# Placeholders the stack replaces with the task functions' ARNs (DefinitionSubstitutions).
TASKS = ("run", "poll", "store", "record_failure", "notify")
PLACEHOLDERS = {
    "run": "${RunFunctionArn}",
    "poll": "${PollFunctionArn}",
    "store": "${StoreFunctionArn}",
    "record_failure": "${RecordFailureFunctionArn}",
    "notify": "${NotifyFunctionArn}",
}

# Lambda's own transient errors. A throttled call never ran, so even run (which calls, and
# pays, the provider) may retry it; the others are safe to repeat (idempotent on the record).
_THROTTLED = ["Lambda.TooManyRequestsException"]
_TRANSIENT = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]


# A SnapStart version not invoked for 14 days (or recycled by Lambda) turns Inactive: an invoke
# fails with this until Lambda has re-created its snapshot. The function never ran, so even run
# may retry it. Waits of 5 + 10 + 20 + 40 s: with run's throttle retries (63 s) they end before
# the deadline of a job nobody claimed (start grace + the shortest budget + the finalize grace,
# 150 s; a test keeps it so); a job still refused then fails as "at capacity, try again".
_SNAPSTART_NOT_READY = ["Lambda.SnapStartNotReadyException"]
_SNAPSTART_NOT_READY_BACKOFF = {"IntervalSeconds": 5, "MaxAttempts": 4, "BackoffRate": 2.0}


def _retry(errors: list[str], *, attempts: int = 3) -> list[dict[str, Any]]:
    return [
        {"ErrorEquals": errors, "IntervalSeconds": 1, "MaxAttempts": attempts, "BackoffRate": 2.0}
    ]


def _retry_until_restored(snap_started: bool) -> list[dict[str, Any]]:
    """A SnapStart task's own retrier (its own attempt count) while its version is Inactive."""
    if not snap_started:
        return []
    return [{"ErrorEquals": _SNAPSTART_NOT_READY, **_SNAPSTART_NOT_READY_BACKOFF}]


def _task(
    resource: str,
    next_state: str,
    *,
    retry_on: list[str],
    catch_to: str,
    snap_started: bool = False,
    attempts: int = 3,
) -> dict:
    # A Lambda ARN as Resource passes the state in and takes the function's answer as the new
    # state: no Payload/StatusCode wrapper grows the state.
    return {
        "Type": "Task",
        "Resource": resource,
        "Retry": _retry(retry_on, attempts=attempts) + _retry_until_restored(snap_started),
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": catch_to}],
        "Next": next_state,
    }


def _when(variable: str, value: str, next_state: str) -> dict[str, Any]:
    return {"Variable": variable, "StringEquals": value, "Next": next_state}


def build_job_definition(
    arns: dict[str, str],
    *,
    worker_timeout_seconds: int,
    snap_started: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The job state machine as an ASL document, for the five task functions' ARNs;
    ``snap_started`` names the tasks whose function restores from a SnapStart snapshot."""
    missing = set(TASKS) - set(arns)
    if missing:
        raise ValueError(f"the job workflow needs: {', '.join(sorted(missing))}")
    unknown = set(snap_started) - set(TASKS)
    if unknown:
        raise ValueError(f"not a job task: {', '.join(sorted(unknown))}")

    def task(name: str, next_state: str, **options: Any) -> dict:
        return _task(arns[name], next_state, snap_started=name in snap_started, **options)

    # A throttled worker never ran: wait for capacity a while longer (1 + 2 + … + 32 s).
    run = task("run", "AfterRun", retry_on=_THROTTLED, catch_to="RecordFailure", attempts=6)
    # A backstop over the function's own timeout: a hung invoke still ends in RecordFailure.
    run["TimeoutSeconds"] = worker_timeout_seconds + 30
    return {
        "Comment": "Image job: run (or submit, then poll and store), record, notify",
        "StartAt": "Run",
        "States": {
            "Run": run,
            "AfterRun": {
                "Type": "Choice",
                "Choices": [
                    _when("$.status", STATUS_SUBMITTED, "Wait"),
                    _when("$.status", STATUS_SUCCEEDED, "Notify"),
                    _when("$.status", STATUS_FAILED, "Notify"),
                ],
                "Default": "MarkUnknownStatus",
            },
            "Wait": {"Type": "Wait", "SecondsPath": "$.interval_seconds", "Next": "Poll"},
            "Poll": task("poll", "AfterPoll", retry_on=_TRANSIENT, catch_to="RecordFailure"),
            "AfterPoll": {
                "Type": "Choice",
                "Choices": [
                    _when("$.status", STATUS_PENDING, "Wait"),
                    _when("$.status", STATUS_READY, "Store"),
                    _when("$.status", STATUS_FAILED, "Notify"),
                    _when("$.status", STATUS_SUCCEEDED, "Notify"),
                ],
                "Default": "MarkUnknownStatus",
            },
            "Store": task("store", "Notify", retry_on=_TRANSIENT, catch_to="RecordFailure"),
            "MarkUnknownStatus": {
                "Type": "Pass",
                "Result": {"Error": ERROR_UNKNOWN_STATUS, "Cause": "A task returned no status."},
                "ResultPath": "$.error",
                "Next": "RecordFailure",
            },
            # Even if the record cannot be written, readers see the job fail at its deadline.
            "RecordFailure": task(
                "record_failure", "Notify", retry_on=_TRANSIENT, catch_to="Failed"
            ),
            "Notify": task("notify", "AfterNotify", retry_on=_TRANSIENT, catch_to="Outcome"),
            "AfterNotify": {
                "Type": "Choice",
                "Choices": [_when("$.webhook.next", WEBHOOK_RETRY, "WaitToNotify")],
                "Default": "Outcome",
            },
            "WaitToNotify": {
                "Type": "Wait",
                "SecondsPath": "$.webhook.retry_in_seconds",
                "Next": "Notify",
            },
            "Outcome": {
                "Type": "Choice",
                "Choices": [_when("$.status", STATUS_SUCCEEDED, "Succeeded")],
                "Default": "Failed",
            },
            "Succeeded": {"Type": "Succeed"},
            "Failed": {
                "Type": "Fail",
                "Error": ERROR_JOB_FAILED,
                "Cause": "The job failed; its record holds the typed error.",
            },
        },
    }


def job_definition_template(
    *, worker_timeout_seconds: int, snap_started: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The definition with CloudFormation substitution placeholders instead of ARNs."""
    return build_job_definition(
        PLACEHOLDERS, worker_timeout_seconds=worker_timeout_seconds, snap_started=snap_started
    )
