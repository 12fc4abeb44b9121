"""The Flux workflow as Amazon States Language — the one definition, deployed and tested.

The stack deploys it with CloudFormation definition substitutions (``${SubmitFunctionArn}`` …),
and tests run the very same document in moto's Step Functions with their own Lambda ARNs.

Contract with the task handlers (``functions/generation/flux_tasks.py``):

- input: ``{"job_id", "customer_id", "request": {...}, "interval_seconds", "budget_seconds"}``;
- every task receives the whole (small) job state and returns it, extended: ``submit`` adds
  ``polling_url`` and ``submitted_at``; ``poll`` sets ``status`` to ``Pending``, ``Ready``,
  ``Moderated``, ``Error`` or ``TimedOut`` (it compares the time since ``submitted_at`` with
  ``budget_seconds``); ``store`` writes the image and the finished job record;
- on any failure ``record_failure`` gets the state plus ``error: {"Error", "Cause"}`` and writes
  the job's final state; the execution then fails with a typed error (``Flux.*``).

Images never travel through the state (256 KB limit): only keys and URLs do.
"""

from __future__ import annotations

from typing import Any

# Status values returned by the poll task.
STATUS_READY = "Ready"
STATUS_PENDING = "Pending"
STATUS_MODERATED = "Moderated"
STATUS_ERROR = "Error"
STATUS_TIMED_OUT = "TimedOut"

# Typed errors the execution fails with.
ERROR_MODERATED = "Flux.Moderated"
ERROR_PROVIDER = "Flux.ProviderError"
ERROR_TIMEOUT = "Flux.Timeout"
ERROR_TASK_FAILED = "Flux.TaskFailed"
MODERATED_CAUSE = "The provider refused the prompt or an input image."
TIMEOUT_CAUSE = "The image was not ready within the job's budget."

# A backstop only: the poll task ends the job when its budget is spent. Express max is 300 s.
DEFAULT_EXECUTION_TIMEOUT_SECONDS = 300

# Placeholders the stack replaces with the task functions' ARNs (DefinitionSubstitutions).
SUBMIT_ARN_PLACEHOLDER = "${SubmitFunctionArn}"
POLL_ARN_PLACEHOLDER = "${PollFunctionArn}"
STORE_ARN_PLACEHOLDER = "${StoreFunctionArn}"
RECORD_FAILURE_ARN_PLACEHOLDER = "${RecordFailureFunctionArn}"

# Lambda's own transient errors. A throttled call never ran, so even submit (not idempotent:
# a repeat would start, and bill, a second provider job) may retry it.
_THROTTLED = ["Lambda.TooManyRequestsException"]
_TRANSIENT = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
_CATCH_ALL = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}]


def _retry(errors: list[str]) -> list[dict[str, Any]]:
    return [{"ErrorEquals": errors, "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2.0}]


def _task(resource: str, next_state: str, *, retry_on: list[str]) -> dict[str, Any]:
    # A Lambda ARN as Resource passes the state in and takes the function's answer as the new
    # state (CDK's payload_response_only): no Payload/StatusCode wrapper grows the state.
    return {
        "Type": "Task",
        "Resource": resource,
        "Retry": _retry(retry_on),
        "Catch": _CATCH_ALL,
        "Next": next_state,
    }


def _mark_failure(error: str, cause: str) -> dict[str, Any]:
    return {
        "Type": "Pass",
        "Result": {"Error": error, "Cause": cause},
        "ResultPath": "$.error",
        "Next": "RecordFailure",
    }


def _when(variable: str, value: str, next_state: str) -> dict[str, Any]:
    return {"Variable": variable, "StringEquals": value, "Next": next_state}


def _fail(error: str, cause: str) -> dict[str, Any]:
    return {"Type": "Fail", "Error": error, "Cause": cause}


def build_flux_definition(
    submit_arn: str,
    poll_arn: str,
    store_arn: str,
    record_failure_arn: str,
    *,
    timeout_seconds: int = DEFAULT_EXECUTION_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """The Flux state machine as an ASL document, for any four Lambda function ARNs."""
    return {
        "Comment": "Flux job: submit, poll every interval_seconds until ready, store the image",
        "StartAt": "Submit",
        "TimeoutSeconds": timeout_seconds,
        "States": {
            "Submit": _task(submit_arn, "Wait", retry_on=_THROTTLED),
            "Wait": {"Type": "Wait", "SecondsPath": "$.interval_seconds", "Next": "Poll"},
            "Poll": _task(poll_arn, "CheckStatus", retry_on=_TRANSIENT),
            "CheckStatus": {
                "Type": "Choice",
                "Choices": [
                    _when("$.status", STATUS_READY, "Store"),
                    _when("$.status", STATUS_PENDING, "Wait"),
                    _when("$.status", STATUS_MODERATED, "MarkModerated"),
                    _when("$.status", STATUS_ERROR, "MarkProviderError"),
                    _when("$.status", STATUS_TIMED_OUT, "MarkTimedOut"),
                ],
                "Default": "MarkUnknownStatus",
            },
            "Store": _task(store_arn, "Succeeded", retry_on=_TRANSIENT),
            "Succeeded": {"Type": "Succeed"},
            "MarkModerated": _mark_failure(ERROR_MODERATED, MODERATED_CAUSE),
            "MarkProviderError": _mark_failure(ERROR_PROVIDER, "The provider reported an error."),
            "MarkTimedOut": _mark_failure(ERROR_TIMEOUT, TIMEOUT_CAUSE),
            "MarkUnknownStatus": _mark_failure(
                ERROR_PROVIDER, "The poll task returned an unknown status."
            ),
            "RecordFailure": {
                "Type": "Task",
                "Resource": record_failure_arn,
                "ResultPath": None,  # keep the state (and its error) for the choice below
                "Retry": _retry(_TRANSIENT),
                "Catch": [
                    {"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": "FailureKind"}
                ],
                "Next": "FailureKind",
            },
            "FailureKind": {
                "Type": "Choice",
                "Choices": [
                    _when("$.error.Error", ERROR_MODERATED, "Moderated"),
                    _when("$.error.Error", ERROR_PROVIDER, "ProviderError"),
                    _when("$.error.Error", ERROR_TIMEOUT, "TimedOut"),
                ],
                "Default": "TaskFailed",
            },
            "Moderated": _fail(ERROR_MODERATED, MODERATED_CAUSE),
            "ProviderError": _fail(ERROR_PROVIDER, "The provider could not make the image."),
            "TimedOut": _fail(ERROR_TIMEOUT, TIMEOUT_CAUSE),
            "TaskFailed": _fail(ERROR_TASK_FAILED, "A Flux task failed; see the job record."),
        },
    }


def flux_definition_template(*, timeout_seconds: int = DEFAULT_EXECUTION_TIMEOUT_SECONDS) -> dict:
    """The definition with CloudFormation substitution placeholders instead of ARNs."""
    return build_flux_definition(
        SUBMIT_ARN_PLACEHOLDER,
        POLL_ARN_PLACEHOLDER,
        STORE_ARN_PLACEHOLDER,
        RECORD_FAILURE_ARN_PLACEHOLDER,
        timeout_seconds=timeout_seconds,
    )
