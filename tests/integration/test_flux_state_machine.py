"""The Flux state machine — the very ASL document the CDK app deploys (``infra/flux_definition``)
— executed by moto's Step Functions.

Two ways: with the Lambda tasks as queued results (moto's ``lambda-simple`` backend), which pins
the routing of every outcome; and with moto's Lambda invocations dispatched to the real task
handlers, against the BFL emulator and moto S3, which pins the handlers' side of the contract.
Interval and budget are inputs of the execution, so these run in about a second each.
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

from image_service import job_workflow, jobs
from image_service.job_runners import StepFunctionsJobRunner
from image_service.jobs import record_key
from image_service.models import parse_request
from image_service.service import Caller, ImageService
from image_service.storage import ImageStore
from infra import flux_definition
from infra.flux_definition import build_flux_definition
from tests.conftest import TEST_BUCKET, RecordingJobRunner, request_body, start_flux_job

ACCOUNT, REGION = "123456789012", "us-east-1"
TASKS = ("submit", "poll", "store", "record_failure")
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


def lambda_arn(task: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:flux-{task.replace('_', '-')}"


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

    def run(self, execution_input: dict, timeout: float = 120.0, name: str = "") -> Execution:
        execution_arn = self.client.start_execution(
            stateMachineArn=self.arn,
            name=name or execution_input["job_id"],
            input=json.dumps(execution_input),
        )["executionArn"]
        return self.wait(execution_arn, timeout)

    def wait(self, execution_arn: str, timeout: float = 120.0) -> Execution:
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


@pytest.fixture
def state_machine(s3) -> StateMachine:
    """The deployed definition in moto's executing Step Functions (Express, as deployed)."""
    with mock_aws(config=MOTO_CONFIG):
        client = boto3.client("stepfunctions", region_name=REGION)
        definition = build_flux_definition(*(lambda_arn(task) for task in TASKS))
        arn = client.create_state_machine(
            name="flux-jobs",
            definition=json.dumps(definition),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/flux-jobs",
            type="EXPRESS",
        )["stateMachineArn"]
        yield StateMachine(client, arn)


def job_input(job_id: str, **overrides) -> dict:
    return {
        "job_id": job_id,
        "customer_id": 123,
        "request": {"provider": "flux", "model": "flux-pro-1.1"},
        "interval_seconds": 0,
        "budget_seconds": 60,
    } | overrides


def queue_lambda_results(*results: dict) -> None:
    """moto's documented way to script ``lambda-simple`` answers, in invocation order."""
    response = requests.post(
        "http://motoapi.amazonaws.com/moto-api/static/lambda-simple/response",
        json={"results": [json.dumps(r) for r in results], "region": REGION},
        timeout=5,
    )
    assert response.status_code == 201


SUBMITTED = {"polling_url": "https://api.bfl.ai/v1/get_result?id=t", "submitted_at": "t0"}


def loop(times: int) -> list[str]:
    return ["Wait", "Poll", "CheckStatus"] * times


# --- the definition and the handlers speak the same words ----------------------------------------


def test_the_handlers_use_the_definitions_statuses_and_errors():
    for name in (
        "STATUS_READY",
        "STATUS_PENDING",
        "STATUS_MODERATED",
        "STATUS_ERROR",
        "STATUS_TIMED_OUT",
        "ERROR_MODERATED",
        "ERROR_PROVIDER",
        "ERROR_TIMEOUT",
    ):
        assert getattr(job_workflow, name) == getattr(flux_definition, name), name  # fmt: skip


def test_the_wait_reads_the_interval_from_the_input():
    definition = build_flux_definition(*(lambda_arn(task) for task in TASKS))
    assert definition["States"]["Wait"]["SecondsPath"] == "$.interval_seconds"
    assert definition["TimeoutSeconds"] <= 300  # the Express maximum


# --- routing, with the tasks as queued results ----------------------------------------------------


def test_ready_after_several_polls_is_stored_and_succeeds(state_machine):
    start = job_input("job-ready")
    submitted = start | SUBMITTED
    pending = submitted | {"status": "Pending"}
    queue_lambda_results(
        submitted, pending, pending, pending, submitted | {"status": "Ready", "sample_url": "u"},
        submitted | {"status": "Stored", "image_key": "customers/123/assets/image/x.jpg"},
    )  # fmt: skip
    execution = state_machine.run(start)
    assert execution.status == "SUCCEEDED"
    assert execution.visited == ["Submit", *loop(4), "Store", "Succeeded"]
    assert execution.output["image_key"] == "customers/123/assets/image/x.jpg"
    assert execution.inputs_of("submit") == [start]
    assert execution.inputs_of("store")[0]["sample_url"] == "u"  # the URL, never the image


@pytest.mark.parametrize(
    ("status", "mark", "error", "fail_state"),
    [("Moderated", "MarkModerated", "Flux.Moderated", "Moderated"),
     ("Error", "MarkProviderError", "Flux.ProviderError", "ProviderError"),
     ("TimedOut", "MarkTimedOut", "Flux.Timeout", "TimedOut")],
)  # fmt: skip
def test_each_failed_outcome_records_the_failure_and_fails_typed(
    state_machine, status, mark, error, fail_state
):
    start = job_input(f"job-{status.lower()}")
    submitted = start | SUBMITTED
    queue_lambda_results(
        submitted, submitted | {"status": "Pending"}, submitted | {"status": status},
        submitted | {"status": "failed"},
    )  # fmt: skip
    execution = state_machine.run(start)
    assert (execution.status, execution.error) == ("FAILED", error)
    assert execution.visited == [
        "Submit", *loop(2), mark, "RecordFailure", "FailureKind", fail_state,
    ]  # fmt: skip
    (recorded,) = execution.inputs_of("record_failure")
    assert recorded["job_id"] == start["job_id"] and recorded["error"]["Error"] == error


# --- the real task handlers inside the execution -------------------------------------------------


@pytest.fixture
def real_tasks(state_machine, flux_tasks, monkeypatch):
    """moto's Lambda invocations run the real handlers, with Lambda's error payload on failure."""

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        task = function_name.rsplit(":", 1)[-1].removeprefix("flux-").replace("-", "_")
        event = json.loads(body.decode() if isinstance(body, bytes) else body)
        try:
            return json.dumps(getattr(flux_tasks, task)(event, None)).encode()
        except Exception as error:  # as the Python runtime reports an unhandled error
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


def job_record(s3, job_id: str) -> dict:
    body = s3.get_object(Bucket=TEST_BUCKET, Key=record_key(123, job_id))["Body"].read()
    return json.loads(body)


def test_real_tasks_poll_until_ready_and_store_the_image(
    real_tasks, service, runner, s3, emulators
):
    start_flux_job(service, "A fox in the snow [polls=2]")
    start = runner.started[-1] | {"interval_seconds": 0}
    execution = real_tasks.run(start)
    assert execution.status == "SUCCEEDED", execution
    assert execution.visited == ["Submit", *loop(3), "Store", "Succeeded"]
    job = job_record(s3, start["job_id"])
    assert job["status"] == "succeeded" and job["polls"] == 3
    image = s3.get_object(Bucket=TEST_BUCKET, Key=job["result"]["image_key"])
    assert image["ContentType"] == "image/jpeg"
    assert len(emulators["flux"].submissions()) == 1 and emulators["flux"].key_leaks == []
    for _, payload in execution.lambda_inputs:  # keys and small JSON only
        assert len(json.dumps(payload)) < 2048


def test_real_tasks_moderated_prompt_fails_the_job_with_422(real_tasks, service, runner, s3):
    start_flux_job(service, "A fox [moderate]")
    start = runner.started[-1] | {"interval_seconds": 0}
    execution = real_tasks.run(start)
    assert (execution.status, execution.error) == ("FAILED", "Flux.Moderated")
    job = job_record(s3, start["job_id"])
    assert (job["status"], job["error"]["status"], job["error"]["type"]) == (
        "failed", 422, "content_policy_violation")  # fmt: skip


def test_real_tasks_budget_is_elapsed_time(real_tasks, service, runner, s3, emulators):
    start_flux_job(service, "A fox [pending]")
    start = runner.started[-1] | {"interval_seconds": 1, "budget_seconds": 1}
    execution = real_tasks.run(start)
    assert (execution.status, execution.error) == ("FAILED", "Flux.Timeout")
    assert execution.visited[:4] == ["Submit", *loop(1)]  # timed out after a real wait
    assert len(emulators["flux"].polls()) <= 2  # one wait of 1 s spends the 1 s budget
    assert job_record(s3, start["job_id"])["error"]["type"] == "provider_timeout"


def test_real_tasks_a_failing_task_is_caught_and_recorded(
    real_tasks, service, runner, s3, emulators
):
    emulators["flux"].sample_ttl_seconds = -1  # the signed sample URL has expired
    start_flux_job(service, "A fox [polls=0]")
    start = runner.started[-1] | {"interval_seconds": 0}
    execution = real_tasks.run(start)
    assert (execution.status, execution.error) == ("FAILED", "Flux.TaskFailed")
    assert execution.visited[-4:] == ["Store", "RecordFailure", "FailureKind", "TaskFailed"]
    (recorded,) = execution.inputs_of("record_failure")
    assert recorded["error"]["Error"] == "ProviderError"
    job = job_record(s3, start["job_id"])
    assert (job["status"], job["error"]["status"]) == ("failed", 502)


def test_the_step_functions_runner_starts_one_execution_per_job(
    real_tasks, s3, emulators, settings
):
    runner = StepFunctionsJobRunner(real_tasks.arn, client=real_tasks.client)
    service = ImageService(settings, ImageStore(settings), job_runner=runner)
    request = parse_request(request_body("A fox [polls=0]", model="flux-dev"))
    accepted = service.generate(request, caller=Caller.trusted(), timeout_seconds=5)
    job = service.jobs.wait(service.jobs.get(123, accepted["job_id"]), timeout_seconds=15)
    assert job.status == "succeeded" and job.result["model"] == "flux-dev"
    (execution,) = real_tasks.client.list_executions(stateMachineArn=real_tasks.arn)["executions"]
    assert execution["name"] == accepted["job_id"]
    started = json.loads(
        real_tasks.client.describe_execution(executionArn=execution["executionArn"])["input"]
    )
    assert started["interval_seconds"] == 1 and isinstance(started["interval_seconds"], int)
    runner.start(jobs.execution_input(job))  # the same job again: not an error


def test_a_duplicate_execution_of_a_finished_job_pays_and_stores_nothing(
    real_tasks, service, runner, s3, emulators
):
    start_flux_job(service, "A fox [polls=0]")
    start = runner.started[-1] | {"interval_seconds": 0}
    assert real_tasks.run(start).status == "SUCCEEDED"
    stored = job_record(s3, start["job_id"])["result"]["image_key"]
    requests_before = len(emulators["flux"].requests)
    # Express is at-least-once: the same job may run again (another execution name here,
    # because moto, unlike Express, de-duplicates names).
    again = real_tasks.run(start, name=start["job_id"] + "-again")
    assert again.status == "SUCCEEDED"
    assert len(emulators["flux"].requests) == requests_before  # no submit, poll or download
    assert job_record(s3, start["job_id"])["result"]["image_key"] == stored
