"""Every generation is a job, over real HTTP on the local stack: a slow generation answers 202
then 200 at its status URL with one provider call, a fast one 200 at once, ``respond-async`` 202
at once; a repeated ``Idempotency-Key`` is one job and one call, another body with it a 422; the
listing shows only the caller's jobs; webhooks arrive signed (verified with the
``standardwebhooks`` library) for a succeeded and a failed job, and again after a 500.

Compressed time (tests/e2e/conftest.py): the request waits 6 s, not 20, so a "40 s" OpenAI
generation is ``[delay=10]`` here; webhook retries come after 1 s."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from standardwebhooks import Webhook

from local.stack import DEV_WEBHOOK_SECRET

pytestmark = pytest.mark.e2e
HANG_GUARD_SECONDS = 60


def body(prompt: str, *, customer_id: int = 1, **extra) -> dict:
    image = {"model": "gpt-image-2", "quality": "high"}
    return {"prompt": prompt, "settings": {"image": image}, "customer_id": customer_id} | extra


def until_final(api, local_stack, status_url: str, customer_id: int = 1) -> httpx.Response:
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while True:
        response = api.get(status_url, headers=local_stack.auth(customer_id))
        if response.status_code != 202:
            return response
        assert time.monotonic() < deadline, "the job never finished"
        time.sleep(0.3)


def unique(prompt: str) -> str:
    return f"{prompt} #{uuid.uuid4().hex[:8]}"


def test_a_slow_generation_answers_202_then_200_at_its_status_url_with_one_call(api, local_stack):
    prompt = unique("A lighthouse in a storm, every wave drawn [delay=10]")
    response = api.post("/image/generate", json=body(prompt), headers=local_stack.auth(1))

    assert response.status_code == 202, response.text
    data = response.json()["data"]
    assert response.headers["location"] == data["status_url"] == f"/image/jobs/{data['job_id']}"
    assert int(response.headers["retry-after"]) >= 1
    running = api.get(data["status_url"], headers=local_stack.auth(1))
    assert running.status_code == 202 and running.json()["data"]["status"] == "running"

    final = until_final(api, local_stack, data["status_url"])

    assert final.status_code == 200, final.text
    image = final.json()["data"]
    assert image["job_id"] == data["job_id"] and image["model"] == "gpt-image-2"
    assert httpx.get(image["image_url"], timeout=10).status_code == 200
    assert local_stack.openai_calls(prompt) == 1


def test_a_fast_generation_answers_200_directly(api, local_stack):
    prompt = unique("A quick sketch")
    response = api.post("/image/generate", json=body(prompt), headers=local_stack.auth(1))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["job_id"] and "location" not in response.headers
    assert local_stack.openai_calls(prompt) == 1


def test_respond_async_answers_202_at_once(api, local_stack):
    prompt = unique("A quick sketch, later")
    headers = local_stack.auth(1) | {"prefer": "respond-async"}
    response = api.post("/image/generate", json=body(prompt), headers=headers)
    assert response.status_code == 202 and response.headers["preference-applied"] == "respond-async"
    assert until_final(api, local_stack, response.json()["data"]["status_url"]).status_code == 200


def test_a_repeated_idempotency_key_is_one_job_and_one_call(api, local_stack):
    prompt = unique("A slow portrait [delay=10]")
    headers = local_stack.auth(1) | {"idempotency-key": f"e2e-{uuid.uuid4()}"}
    first = api.post("/image/generate", json=body(prompt), headers=headers)
    second = api.post("/image/generate", json=body(prompt), headers=headers)  # a client's retry
    assert first.status_code == 202 and second.status_code in (200, 202)
    assert second.json()["data"]["job_id"] == first.json()["data"]["job_id"]
    assert second.headers["idempotent-replayed"] == "true"
    final = until_final(api, local_stack, first.json()["data"]["status_url"])
    third = api.post("/image/generate", json=body(prompt), headers=headers)
    assert (
        third.status_code == 200
        and third.json()["data"]["job_id"] == final.json()["data"]["job_id"]
    )
    assert local_stack.openai_calls(prompt) == 1

    other = api.post("/image/generate", json=body(unique("Another picture")), headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["type"] == "idempotency_key_reused"


def test_the_listing_shows_only_the_callers_jobs(api, local_stack):
    customer, stranger = 41, 42
    mine = [
        api.post("/image/generate", json=body(unique("Mine"), customer_id=customer),
                 headers=local_stack.auth(customer)).json()["data"]["job_id"]
        for _ in range(2)
    ]  # fmt: skip
    theirs = api.post("/image/generate", json=body(unique("Theirs"), customer_id=stranger),
                      headers=local_stack.auth(stranger)).json()["data"]["job_id"]  # fmt: skip

    listing = api.get("/image/jobs", params={"limit": 10}, headers=local_stack.auth(customer))

    assert listing.status_code == 200, listing.text
    listed = [j["job_id"] for j in listing.json()["data"]["jobs"]]
    assert listed == mine[::-1] and theirs not in listed
    page = api.get("/image/jobs", params={"limit": 1}, headers=local_stack.auth(customer))
    cursor = page.json()["data"]["next_cursor"]
    rest = api.get("/image/jobs", params={"cursor": cursor}, headers=local_stack.auth(stranger))
    assert rest.status_code == 400  # one customer's cursor is not another's way in


def deliveries(local_stack, path: str, count: int):
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while len(found := local_stack.receiver.for_path(path)) < count:
        assert time.monotonic() < deadline, f"{count} deliveries expected at {path}, got {found}"
        time.sleep(0.2)
    return found


def verify(delivery) -> dict:
    return Webhook(DEV_WEBHOOK_SECRET).verify(delivery.body, delivery.headers)


def test_webhooks_arrive_signed_for_a_succeeded_and_a_failed_job(api, local_stack):
    path_ok, path_failed = f"/ok/{uuid.uuid4().hex}", f"/failed/{uuid.uuid4().hex}"
    ok = api.post(
        "/image/generate",
        json=body(unique("A postcard"), callback_url=local_stack.receiver.url(path_ok)),
        headers=local_stack.auth(1),
    )
    failed = api.post(
        "/image/generate",
        json=body(unique("Refused [moderate]"), callback_url=local_stack.receiver.url(path_failed)),
        headers=local_stack.auth(1),
    )
    assert (ok.status_code, failed.status_code) == (200, 422)

    (succeeded,) = deliveries(local_stack, path_ok, 1)
    (refused,) = deliveries(local_stack, path_failed, 1)

    event = verify(succeeded)
    assert event["type"] == "image.job.succeeded"
    assert event["data"]["data"]["job_id"] == ok.json()["data"]["job_id"]
    event = verify(refused)
    assert event["type"] == "image.job.failed" and event["data"]["code"] == 422
    assert (
        event["data"]["error"]["details"]["job_id"] == failed.json()["error"]["details"]["job_id"]
    )
    tampered = succeeded.body.replace(b"succeeded", b"SUCCEEDED")
    with pytest.raises(Exception, match="signature"):
        Webhook(DEV_WEBHOOK_SECRET).verify(tampered, succeeded.headers)


def test_a_webhook_is_retried_after_the_receiver_answers_500(api, local_stack):
    path = f"/flaky/{uuid.uuid4().hex}"
    local_stack.receiver.statuses.append(500)  # the next delivery fails, the retry succeeds
    response = api.post(
        "/image/generate",
        json=body(unique("A second chance"), callback_url=local_stack.receiver.url(path)),
        headers=local_stack.auth(1),
    )
    job_id = response.json()["data"]["job_id"]

    first, second = deliveries(local_stack, path, 2)

    assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{job_id}"
    assert verify(second)["type"] == "image.job.succeeded"
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while True:  # the job's listing entry shows the delivery once recorded
        jobs = api.get("/image/jobs", headers=local_stack.auth(1)).json()["data"]["jobs"]
        (entry,) = [j for j in jobs if j["job_id"] == job_id]
        if entry.get("webhook", {}).get("status") == "delivered":
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert entry["webhook"] == {"status": "delivered", "attempts": 2}
    assert json.loads(second.body)["data"]["code"] == 200


def test_a_callback_url_that_is_not_public_https_is_a_400(api, local_stack):
    response = api.post(
        "/image/generate",
        json=body("A postcard", callback_url="http://169.254.169.254/latest/meta-data"),
        headers=local_stack.auth(1),
    )
    assert response.status_code == 400 and "callback_url" in response.json()["error"]["message"]
