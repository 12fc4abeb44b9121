"""Job webhooks: a signed POST (Standard Webhooks) to ``callback_url`` when a job ends, verified
here with the ``standardwebhooks`` library itself; retried on the schedule while the receiver
fails; the delivery state on the job record; and the guard and secret handling around it."""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook

from image_common.errors import InvalidRequest, ProviderError
from image_service.job_store import JobStore
from image_service.models import parse_request
from image_service.service import Caller
from image_service.webhooks import check_callback_url, secret_from_value
from local.job_runner import LocalJobRunner
from tests.conftest import inline_service, pipeline_for, request_body

SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5"  # the tests' WEBHOOK_SECRET


@pytest.fixture
def hooked(settings, receiver):
    """Settings that trust the receiver's origin and retry at once (compressed schedule)."""
    return settings.model_copy(
        update={"trusted_callback_origins": receiver.origin, "webhook_retry_schedule": "0,0"}
    )


def run_job(settings, prompt: str, callback_url: str, **image):
    """A job with a callback, run to the end in-process (the notify loop included)."""
    service = inline_service(settings)
    body = request_body(prompt, model="gpt-image-1", **image) | {"callback_url": callback_url}
    started = service.start_job(parse_request(body), caller=Caller.trusted())
    return JobStore(settings.jobs_table).get(started.record.job_id)


def verified(delivery) -> dict:
    """The payload, once the standardwebhooks library has verified its signature."""
    return Webhook(SECRET).verify(delivery.body, delivery.headers)


def test_a_succeeded_job_posts_a_signed_event_with_the_get_answer(s3, emulators, hooked, receiver):
    job = run_job(hooked, "A lighthouse", receiver.url())
    (delivery,) = receiver.deliveries
    payload = verified(delivery)
    assert payload["type"] == "image.job.succeeded"
    data = payload["data"]
    assert data["success"] is True and data["code"] == 200
    assert data["data"]["job_id"] == job.job_id and data["data"]["image_url"].startswith("https://")
    assert delivery.headers["webhook-id"] == f"msg_{job.job_id}"
    assert job.webhook.status == "delivered" and job.webhook.attempts == 1
    assert job.webhook.last_status_code == 200 and job.webhook.delivered_at


def test_a_failed_job_posts_the_typed_error(s3, emulators, hooked, receiver):
    job = run_job(hooked, "x [moderate]", receiver.url())
    payload = verified(receiver.deliveries[0])
    assert payload["type"] == "image.job.failed"
    assert payload["data"]["success"] is False and payload["data"]["code"] == 422
    error = payload["data"]["error"]
    assert error["type"] == "content_policy_violation"
    assert error["details"] == {"job_id": job.job_id, "status": "failed"}


def test_a_receiver_that_fails_first_gets_the_same_message_again(s3, emulators, hooked, receiver):
    receiver.statuses = [500]
    job = run_job(hooked, "A lighthouse", receiver.url())
    first, second = receiver.deliveries
    assert first.headers["webhook-id"] == second.headers["webhook-id"]  # receivers de-duplicate
    assert verified(first)["type"] == verified(second)["type"] == "image.job.succeeded"
    assert verified(second)["data"]["data"]["job_id"] == job.job_id
    assert (job.webhook.status, job.webhook.attempts) == ("delivered", 2)


def test_delivery_gives_up_after_the_schedule_and_says_so_on_the_job(
    s3, emulators, hooked, receiver
):
    receiver.statuses = [500, 502, 503, 500]
    job = run_job(hooked, "A lighthouse", receiver.url())
    assert len(receiver.deliveries) == 3  # the first try and the schedule's two retries
    assert (job.webhook.status, job.webhook.attempts) == ("failed", 3)
    assert job.webhook.last_status_code == 503 and job.webhook.last_error == "HTTP 503"
    assert job.status == "succeeded"  # the webhook never changes the job's outcome


def test_notify_says_when_to_try_again(s3, emulators, hooked, receiver):
    settings = hooked.model_copy(update={"webhook_retry_schedule": "5,300"})
    receiver.statuses = [500]
    service = inline_service(settings)
    body = request_body("A lighthouse", model="gpt-image-1") | {"callback_url": receiver.url()}
    recorder = []
    service.jobs.runner = type("R", (), {"start": lambda self, s: recorder.append(s)})()
    record = service.start_job(parse_request(body), caller=Caller.trusted()).record
    pipeline = pipeline_for(settings)
    state = pipeline.run(recorder[0])
    retry = pipeline.notify(state)
    assert retry["webhook"] == {"next": "Retry", "retry_in_seconds": 5}
    assert pipeline.notify(retry)["webhook"] == {"next": "Done"}
    assert JobStore(settings.jobs_table).get(record.job_id).webhook.attempts == 2


def test_a_redirect_is_not_followed(s3, emulators, hooked, receiver):
    receiver.statuses = [307, 307, 307]
    job = run_job(hooked, "A lighthouse", receiver.url())
    assert job.webhook.status == "failed" and job.webhook.last_status_code == 307


def test_an_unreachable_receiver_is_a_failed_attempt_not_a_failed_job(s3, emulators, hooked):
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens
    settings = hooked.model_copy(update={"trusted_callback_origins": closed})
    job = run_job(settings, "A lighthouse", closed + "/hook")
    assert job.status == "succeeded" and job.webhook.status == "failed"
    assert "could not be reached" in job.webhook.last_error


def test_a_job_without_callback_sends_nothing(s3, emulators, hooked, receiver):
    service = inline_service(hooked)
    request = parse_request(request_body("A lighthouse", model="gpt-image-1"))
    record = service.start_job(request, caller=Caller.trusted()).record
    assert receiver.deliveries == []
    assert JobStore(hooked.jobs_table).get(record.job_id).webhook is None


def test_the_local_runner_retries_on_the_schedule(s3, emulators, hooked, receiver):
    receiver.statuses = [500, 500]
    slept = []
    service = inline_service(hooked)
    service.jobs.runner = LocalJobRunner(pipeline_for(hooked), background=False, sleep=slept.append)
    body = request_body("A lighthouse", model="gpt-image-1") | {"callback_url": receiver.url()}
    service.start_job(parse_request(body), caller=Caller.trusted())
    assert len(receiver.deliveries) == 3 and slept == [0, 0]


# --- the guard and the secret ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://hooks.example.com/x", "https://127.0.0.1/x", "https://169.254.169.254/latest",
     "https://[::1]/x", "ftp://example.com/x", "https://" + "a" * 2050],
)  # fmt: skip
def test_the_guard_refuses_what_is_not_public_https(settings, url):
    with pytest.raises(InvalidRequest, match="callback_url"):
        check_callback_url(url, settings)


def test_a_trusted_origin_is_matched_exactly(settings):
    trusted = settings.model_copy(update={"trusted_callback_origins": "http://127.0.0.1:9000"})
    check_callback_url("http://127.0.0.1:9000/hooks", trusted)
    with pytest.raises(InvalidRequest):
        check_callback_url("http://127.0.0.1:9001/hooks", trusted)


@pytest.mark.parametrize(
    ("value", "secret"),
    [("whsec_abc", "whsec_abc"), ('{"WEBHOOK_SECRET": "abcd"}', "whsec_abcd"),
     ("  abcd  ", "whsec_abcd"), (b"whsec_x", "whsec_x")],
)  # fmt: skip
def test_the_secret_is_read_as_whsec_or_as_the_stacks_generated_json(value, secret):
    assert secret_from_value(value) == secret


@pytest.mark.parametrize("value", ["", "{}", '{"WEBHOOK_SECRET": ""}', None])
def test_an_empty_secret_is_a_typed_error(value):
    with pytest.raises(ProviderError):
        secret_from_value(value)
