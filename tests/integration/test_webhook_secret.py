"""The webhook signing secret as deployed: only in (moto's) Secrets Manager, read by the notify
task through the Parameters and Secrets extension (a stand-in on localhost) on the provider
keys' schedule, on a test clock — kept for its max age, a rotation picked up after it, and a
failed read not repeated before the retry interval: during an outage each notify invocation
fails at once, as one failed read did (the workflow's Catch), without reading again."""

from __future__ import annotations

import json
import logging

import pytest
from moto import mock_aws
from standardwebhooks import Webhook

from image_common.credentials import SECRET_MAX_AGE_SECONDS, SECRET_RETRY_SECONDS
from image_common.errors import ProviderError
from image_common.settings import get_settings
from image_service.job_store import JobStore
from image_service.models import parse_request
from image_service.service import Caller, ImageService
from image_service.storage import ImageStore
from image_service.webhooks import UNREADABLE, webhook_secrets
from tests.clock import ManualClock
from tests.conftest import RecordingJobRunner, request_body

EXTENSION_PATH = "/secretsmanager/get"
FIRST_KEY = "Zmlyc3Qtd2ViaG9vay1rZXktMDEyMzQ1"  # as the stack generates: base64, no prefix
ROTATED_KEY = "cm90YXRlZC13ZWJob29rLWtleS0wMTIz"


@pytest.fixture
def secret(s3, secrets_extension, receiver, monkeypatch):
    """The notify function's environment in AWS: the secret's ARN, no ``WEBHOOK_SECRET``; its
    container's cache of the secret empty and on a test clock. Yields (arn, clock)."""
    import boto3

    with mock_aws():
        client = boto3.client("secretsmanager")
        arn = client.create_secret(
            Name="image-service-test/webhook-signing-secret",
            SecretString=json.dumps({"WEBHOOK_SECRET": FIRST_KEY}),  # the stack's shape
        )["ARN"]
        monkeypatch.delenv("WEBHOOK_SECRET")
        monkeypatch.setenv("WEBHOOK_SECRET_ARN", arn)
        monkeypatch.setenv("TRUSTED_CALLBACK_ORIGINS", receiver.origin)
        monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", "0,0,0")
        get_settings.cache_clear()
        webhook_secrets.clear()
        monkeypatch.setattr(webhook_secrets, "monotonic", clock := ManualClock())
        yield arn, clock
        webhook_secrets.clear()
    get_settings.cache_clear()


def finished_job(receiver, path: str) -> dict:
    """A job with a callback, run to its end: the state the Notify step is given."""
    settings = get_settings()
    runner = RecordingJobRunner()
    service = ImageService(settings, ImageStore(settings), job_runner=runner)
    body = request_body("A lighthouse", model="gpt-image-1", quality="low")
    request = parse_request(body | {"callback_url": receiver.url(path)})
    service.start_job(request, caller=Caller.trusted())
    return runner.started[-1]


def ran(job_tasks, receiver, path: str) -> dict:
    state = job_tasks.run(finished_job(receiver, path), None)
    assert state["status"] == "Succeeded"
    return state


def signed_with(key: str, delivery) -> dict:
    return Webhook("whsec_" + key).verify(delivery.body, delivery.headers)


def extension_fails(extension) -> None:
    """Secrets Manager throttling, as the extension passes it on."""
    extension.routes = {}
    extension.answer(EXTENSION_PATH, status=400, body=b"ThrottlingException: Rate exceeded")


def test_the_secret_from_secrets_manager_signs_deliveries_through_the_extension(
    secret, job_tasks, secrets_extension, receiver
):
    state = ran(job_tasks, receiver, "/one")
    assert job_tasks.notify(state, None)["webhook"] == {"next": "Done"}
    (delivery,) = receiver.deliveries
    assert signed_with(FIRST_KEY, delivery)["type"] == "image.job.succeeded"
    assert secrets_extension.hits(EXTENSION_PATH) == 1


def test_a_good_secret_is_kept_for_its_max_age_and_a_rotated_one_is_used_after_it(
    secret, job_tasks, secrets_extension, receiver
):
    import boto3

    arn, clock = secret
    first = ran(job_tasks, receiver, "/first")
    job_tasks.notify(first, None)
    boto3.client("secretsmanager").put_secret_value(
        SecretId=arn, SecretString=json.dumps({"WEBHOOK_SECRET": ROTATED_KEY})
    )
    clock.advance(SECRET_MAX_AGE_SECONDS - 1)
    job_tasks.notify(ran(job_tasks, receiver, "/kept"), None)
    assert secrets_extension.hits(EXTENSION_PATH) == 1  # not read again within the max age
    clock.advance(1)
    job_tasks.notify(ran(job_tasks, receiver, "/rotated"), None)
    assert secrets_extension.hits(EXTENSION_PATH) == 2
    (kept,) = receiver.for_path("/kept")
    (rotated,) = receiver.for_path("/rotated")
    assert signed_with(FIRST_KEY, kept) and signed_with(ROTATED_KEY, rotated)


def test_during_an_outage_notify_fails_at_once_and_reads_once_per_retry_interval(
    secret, job_tasks, secrets_extension, receiver, caplog
):
    arn, clock = secret
    state = ran(job_tasks, receiver, "/late")
    working = secrets_extension.routes
    extension_fails(secrets_extension)
    caplog.set_level(logging.INFO)
    for _ in range(3):  # the workflow's Catch gets the same typed error each time
        with pytest.raises(ProviderError) as failed:
            job_tasks.notify(state, None)
        assert (failed.value.type, failed.value.message) == ("provider_error", UNREADABLE)
        clock.advance((SECRET_RETRY_SECONDS - 1) / 3)
    assert secrets_extension.hits(EXTENSION_PATH) == 1  # one read, not one per invocation
    assert receiver.deliveries == []
    assert JobStore(get_settings().jobs_table).get(state["job_id"]).webhook is None
    unreadable = [r for r in caplog.records if r.getMessage() == "webhook secret unreadable"]
    assert [r.__dict__["reason"] for r in unreadable] == ["extension answered 400"]
    assert not any(arn in str(r.__dict__) for r in caplog.records)

    secrets_extension.routes = working  # Secrets Manager is back
    clock.advance(SECRET_RETRY_SECONDS)
    assert job_tasks.notify(state, None)["webhook"] == {"next": "Done"}
    assert secrets_extension.hits(EXTENSION_PATH) == 2
    (delivery,) = receiver.deliveries
    assert signed_with(FIRST_KEY, delivery)["type"] == "image.job.succeeded"


@pytest.mark.parametrize("value", ["", "{}", '{"WEBHOOK_SECRET": ""}'])
def test_a_secret_of_no_known_shape_is_a_failed_read_not_retried_before_the_interval(
    secret, job_tasks, secrets_extension, receiver, value
):
    import boto3

    arn, clock = secret
    boto3.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=value or " ")
    state = ran(job_tasks, receiver, "/empty")
    for _ in range(2):
        with pytest.raises(ProviderError, match=UNREADABLE):
            job_tasks.notify(state, None)
    assert secrets_extension.hits(EXTENSION_PATH) == 1
    assert receiver.deliveries == []


def test_a_plain_whsec_secret_is_used_as_it_is(secret, job_tasks, secrets_extension, receiver):
    import boto3

    arn, _ = secret
    boto3.client("secretsmanager").put_secret_value(
        SecretId=arn, SecretString="whsec_" + ROTATED_KEY
    )
    job_tasks.notify(ran(job_tasks, receiver, "/plain"), None)
    (delivery,) = receiver.deliveries
    assert signed_with(ROTATED_KEY, delivery)["type"] == "image.job.succeeded"
