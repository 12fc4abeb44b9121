"""The job state machine — the very ASL document the CDK app deploys (``infra/job_definition``)
— executed by moto's Step Functions (Standard, as deployed).

Two ways: with the Lambda tasks as queued results (moto's ``lambda-simple`` backend), which pins
the routing of every outcome; and with moto's Lambda invocations dispatched to the real task
handlers (``job_tasks``) against the emulators, moto S3 and DynamoDB, which pins the handlers'
side of the contract — a synchronous provider, Flux's loop, a worker that crashes mid-call, a
duplicate execution, and a webhook retried until it is delivered.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field

import boto3
import pytest
import requests
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend

from image_service import pipeline
from image_service.job_store import JobStore
from image_service.jobs import execution_input
from image_service.models import parse_request
from image_service.service import Caller, ImageService
from image_service.step_functions import StepFunctionsJobRunner
from image_service.storage import ImageStore
from infra import job_definition
from infra.job_definition import TASKS, build_job_definition
from tests.conftest import TEST_BUCKET, RecordingJobRunner, request_body, start_job

ACCOUNT, REGION = "123456789012", "us-east-1"
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


def lambda_arn(task: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:job-{task.replace('_', '-')}"


@dataclass
class Execution:
    status: str
    error: str | None
    output: dict | None
    visited: list[str]
    lambda_inputs: list[tuple[str, dict]] = field(default_factory=list)

    def inputs_of(self, task: str) -> list[dict]:
        return [payload for arn, payload in self.lambda_inputs if arn == lambda_arn(task)]


@dataclass
class StateMachine:
    client: object
    arn: str

    def run(self, execution_input: dict, timeout: float = 30.0, name: str = "") -> Execution:
        execution_arn = self.client.start_execution(
            stateMachineArn=self.arn,
            name=name or execution_input["job_id"],
            input=json.dumps(execution_input),
        )["executionArn"]
        return self.wait(execution_arn, timeout)

    def wait(self, execution_arn: str, timeout: float = 30.0) -> Execution:
        deadline = time.monotonic() + timeout
        while (described := self.client.describe_execution(executionArn=execution_arn))[
            "status"
        ] == "RUNNING":
            assert time.monotonic() < deadline, "the execution did not finish"
            time.sleep(0.02)
        events = self.client.get_execution_history(executionArn=execution_arn, maxResults=1000)[
            "events"
        ]
        visited = [
            e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
        ]
        scheduled = [
            (e["lambdaFunctionScheduledEventDetails"]["resource"],
             json.loads(e["lambdaFunctionScheduledEventDetails"]["input"]))
            for e in events
            if "lambdaFunctionScheduledEventDetails" in e
        ]  # fmt: skip
        output = described.get("output")
        return Execution(
            status=described["status"],
            error=described.get("error"),
            output=json.loads(output) if output else None,
            visited=visited,
            lambda_inputs=scheduled,
        )


# As a SnapStart stage deploys it: run and store also retry while their version is Inactive.
DEFINITION = build_job_definition(
    {task: lambda_arn(task) for task in TASKS},
    worker_timeout_seconds=300,
    snap_started=frozenset({"run", "store"}),
)


@pytest.fixture
def state_machine(s3) -> StateMachine:
    """The deployed definition in moto's executing Step Functions (Standard, as deployed)."""
    with mock_aws(config=MOTO_CONFIG):
        client = boto3.client("stepfunctions", region_name=REGION)
        arn = client.create_state_machine(
            name="image-jobs",
            definition=json.dumps(DEFINITION),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/image-jobs",
            type="STANDARD",
        )["stateMachineArn"]
        yield StateMachine(client, arn)


def queue_lambda_results(*results: dict) -> None:
    """moto's documented way to script ``lambda-simple`` answers, in invocation order."""
    response = requests.post(
        "http://motoapi.amazonaws.com/moto-api/static/lambda-simple/response",
        json={"results": [json.dumps(r) for r in results], "region": REGION},
        timeout=5,
    )
    assert response.status_code == 201


START = {"job_id": "0" * 32, "customer_id": 123, "interval_seconds": 0}
DONE = {"webhook": {"next": "Done"}}


# --- the definition and the handlers speak the same words ----------------------------------------


def test_the_handlers_use_the_definitions_statuses():
    for name in ("STATUS_SUCCEEDED", "STATUS_FAILED", "STATUS_SUBMITTED", "STATUS_PENDING",
                 "STATUS_READY", "WEBHOOK_RETRY"):  # fmt: skip
        assert getattr(pipeline, name) == getattr(job_definition, name), name


def test_waits_read_their_seconds_from_the_state():
    states = DEFINITION["States"]
    assert states["Wait"]["SecondsPath"] == "$.interval_seconds"
    assert states["WaitToNotify"]["SecondsPath"] == "$.webhook.retry_in_seconds"
    assert states["Run"]["TimeoutSeconds"] > 300  # a backstop beyond the worker's own timeout


def test_run_which_pays_the_provider_is_retried_only_where_lambda_never_ran_it():
    throttled, not_ready = DEFINITION["States"]["Run"]["Retry"]
    assert throttled["ErrorEquals"] == ["Lambda.TooManyRequestsException"]
    assert not_ready["ErrorEquals"] == ["Lambda.SnapStartNotReadyException"]


# --- routing, with the tasks as queued results ----------------------------------------------------


def test_a_synchronous_job_runs_once_then_notifies_and_succeeds(state_machine):
    queue_lambda_results(START | {"status": "Succeeded"}, START | {"status": "Succeeded"} | DONE)
    execution = state_machine.run(START)
    assert execution.status == "SUCCEEDED"
    assert execution.visited == ["Run", "AfterRun", "Notify", "AfterNotify", "Outcome", "Succeeded"]


def test_a_submitted_job_polls_until_ready_then_stores(state_machine):
    submitted = START | {"status": "Submitted"}
    pending = START | {"status": "Pending"}
    queue_lambda_results(
        submitted, pending, pending, START | {"status": "Ready", "result_url": "u"},
        START | {"status": "Succeeded"}, START | {"status": "Succeeded"} | DONE,
    )  # fmt: skip
    execution = state_machine.run(START)
    assert execution.status == "SUCCEEDED"
    loop = ["Wait", "Poll", "AfterPoll"]
    assert execution.visited == [
        "Run", "AfterRun", *loop * 3, "Store", "Notify", "AfterNotify", "Outcome", "Succeeded",
    ]  # fmt: skip
    assert execution.inputs_of("store")[0]["result_url"] == "u"  # the URL, never the image


def test_a_failed_job_notifies_then_fails_the_execution(state_machine):
    queue_lambda_results(START | {"status": "Failed"}, START | {"status": "Failed"} | DONE)
    execution = state_machine.run(START)
    assert (execution.status, execution.error) == ("FAILED", "Job.Failed")
    assert execution.visited[-3:] == ["AfterNotify", "Outcome", "Failed"]


def test_an_unknown_status_is_recorded_as_a_failure(state_machine):
    queue_lambda_results(START | {"status": "Bogus"}, START | {"status": "Failed"},
                         START | {"status": "Failed"} | DONE)  # fmt: skip
    execution = state_machine.run(START)
    assert execution.visited[:4] == ["Run", "AfterRun", "MarkUnknownStatus", "RecordFailure"]
    (recorded,) = execution.inputs_of("record_failure")
    assert recorded["error"]["Error"] == "Job.UnknownStatus"


def test_a_webhook_retry_waits_then_notifies_again(state_machine):
    retry = START | {"status": "Succeeded", "webhook": {"next": "Retry", "retry_in_seconds": 0}}
    queue_lambda_results(
        START | {"status": "Succeeded"}, retry, START | {"status": "Succeeded"} | DONE
    )
    execution = state_machine.run(START)
    assert execution.status == "SUCCEEDED"
    assert execution.visited.count("Notify") == 2 and "WaitToNotify" in execution.visited


# --- the real task handlers inside the execution -------------------------------------------------


@pytest.fixture
def real_tasks(state_machine, job_tasks, monkeypatch):
    """moto's Lambda invocations run the real handlers, with Lambda's error payload on failure."""

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        task = function_name.rsplit(":", 1)[-1].removeprefix("job-").replace("-", "_")
        event = json.loads(body.decode() if isinstance(body, bytes) else body)
        try:
            return json.dumps(getattr(job_tasks, task)(event, None)).encode()
        except BaseException as error:  # as the Python runtime reports an unhandled error
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({
                "errorMessage": str(error), "errorType": type(error).__name__,
                "stackTrace": traceback.format_tb(error.__traceback__),
            }).encode()  # fmt: skip

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    return state_machine


@pytest.fixture
def runner() -> RecordingJobRunner:
    return RecordingJobRunner()


@pytest.fixture
def service(s3, emulators, settings, runner) -> ImageService:
    return ImageService(settings, ImageStore(settings), job_runner=runner)


def job(settings, job_id: str):
    return JobStore(settings.jobs_table).get(job_id)


def test_real_tasks_run_a_synchronous_job(real_tasks, service, runner, settings, s3, emulators):
    start_job(service, "A lighthouse", model="gpt-image-1")
    execution = real_tasks.run(runner.started[-1])
    assert execution.status == "SUCCEEDED", execution
    record = job(settings, runner.started[-1]["job_id"])
    assert record.status == "succeeded"
    assert s3.head_object(Bucket=TEST_BUCKET, Key=record.result["image_key"])
    assert len(emulators["openai"].requests) == 1
    for _, payload in execution.lambda_inputs:  # ids and small JSON only
        assert len(json.dumps(payload)) < 1024


def test_real_tasks_run_a_flux_job_through_its_loop(
    real_tasks, service, runner, settings, emulators
):
    start_job(service, "A fox [polls=2]")
    execution = real_tasks.run(runner.started[-1] | {"interval_seconds": 0})
    assert execution.status == "SUCCEEDED", execution
    assert execution.visited.count("Poll") == 3
    record = job(settings, runner.started[-1]["job_id"])
    assert record.status == "succeeded" and record.polls == 3
    assert len(emulators["flux"].submissions()) == 1 and emulators["flux"].key_leaks == []


def test_real_tasks_a_moderated_prompt_fails_the_job_with_422(
    real_tasks, service, runner, settings
):
    start_job(service, "A fox [moderate]", model="gpt-image-1")
    execution = real_tasks.run(runner.started[-1])
    assert (execution.status, execution.error) == ("FAILED", "Job.Failed")
    record = job(settings, runner.started[-1]["job_id"])
    assert (record.status, record.error.status, record.error.type) == (
        "failed", 422, "content_policy_violation")  # fmt: skip


def test_a_worker_that_crashes_mid_call_is_caught_and_recorded(
    real_tasks, service, runner, settings, emulators, monkeypatch
):
    """The run task's function dies after the provider got the call (a runtime exit): the
    execution catches it, RecordFailure writes the final failed state, and nobody calls the
    provider again."""
    original = pipeline.call_provider

    def crash(provider, request):
        original(provider, request)
        raise SystemExit("Runtime exited with error: signal: killed")

    monkeypatch.setattr(pipeline, "call_provider", crash)
    start_job(service, "A lighthouse", model="gpt-image-1")
    execution = real_tasks.run(runner.started[-1])
    assert (execution.status, execution.error) == ("FAILED", "Job.Failed")
    assert execution.visited[:3] == ["Run", "RecordFailure", "Notify"]
    (recorded,) = execution.inputs_of("record_failure")
    assert recorded["error"]["Error"] == "SystemExit"
    record = job(settings, runner.started[-1]["job_id"])
    assert (record.status, record.error.status, record.error.type) == (
        "failed",
        500,
        "internal_error",
    )
    assert len(emulators["openai"].requests) == 1


def test_a_duplicate_execution_of_a_finished_job_pays_and_stores_nothing(
    real_tasks, service, runner, settings, s3, emulators
):
    start_job(service, "A fox [polls=0]")
    start = runner.started[-1] | {"interval_seconds": 0}
    assert real_tasks.run(start).status == "SUCCEEDED"
    stored = job(settings, start["job_id"]).result["image_key"]
    before = len(emulators["flux"].requests)
    again = real_tasks.run(start, name=start["job_id"] + "-again")
    assert again.status == "SUCCEEDED"
    assert len(emulators["flux"].requests) == before  # no submit, poll or download
    assert job(settings, start["job_id"]).result["image_key"] == stored


def test_the_step_functions_runner_starts_one_execution_per_job(
    real_tasks, s3, emulators, settings
):
    runner = StepFunctionsJobRunner(real_tasks.arn, client=real_tasks.client)
    service = ImageService(settings, ImageStore(settings), job_runner=runner)
    request = parse_request(request_body("A lighthouse", model="gpt-image-1"))
    started = service.start_job(request, caller=Caller.trusted())
    record = service.wait_for_job(started.record, seconds=20)
    assert record.status == "succeeded"
    (execution,) = real_tasks.client.list_executions(stateMachineArn=real_tasks.arn)["executions"]
    assert execution["name"] == started.record.job_id
    document = json.loads(
        real_tasks.client.describe_execution(executionArn=execution["executionArn"])["input"]
    )
    assert document == {"job_id": started.record.job_id, "customer_id": 123, "interval_seconds": 1}
    runner.start(execution_input(record))  # the same job again: not an error, no second run
    assert len(real_tasks.client.list_executions(stateMachineArn=real_tasks.arn)["executions"]) == 1
