"""Flux jobs on the local stack over real HTTP: 202 → poll ``/image/jobs/{id}`` → the image; a
moderated prompt → the job fails with 422; another customer → 404. The jobs run the workflow's
own task handlers (the local stack's runner) against the BFL emulator, with the deployed
interval; ``Prefer: respond-async`` asks for the 202 without waiting."""

from __future__ import annotations

import io
import time

import httpx
import pytest
from PIL import Image

pytestmark = pytest.mark.e2e


def flux_body(prompt: str, *, customer_id: int = 1, **image) -> dict:
    image.setdefault("model", "flux-dev")
    return {"prompt": prompt, "settings": {"image": image}, "customer_id": customer_id}


def start(api, local_stack, prompt: str, customer_id: int = 1, **image) -> dict:
    response = api.post(
        "/image/generate",
        json=flux_body(prompt, customer_id=customer_id, **image),
        headers=local_stack.auth(customer_id) | {"prefer": "respond-async"},
    )
    assert response.status_code == 202, response.text
    return response.json()["data"]


def until_final(api, local_stack, job: dict, customer_id: int = 1) -> tuple[httpx.Response, list]:
    """GET the status URL until it stops answering 202; the final answer and the pending ones."""
    pending, deadline = [], time.monotonic() + 120  # a hang guard, not a speed check
    while True:
        response = api.get(job["status_url"], headers=local_stack.auth(customer_id))
        if response.status_code != 202:
            return response, pending
        pending.append(response.json()["data"])
        assert time.monotonic() < deadline, "the job never finished"
        time.sleep(0.2)


def test_a_flux_job_goes_from_202_through_pending_to_the_stored_image(api, local_stack):
    job = start(
        api, local_stack, "A red fox in fresh snow [polls=1]", seed=21, width=768, height=512
    )
    assert job["status"] == "pending" and job["model"] == "flux-dev"

    final, pending = until_final(api, local_stack, job)

    assert pending and {p["status"] for p in pending} <= {"pending", "running"}
    assert all(p["job_id"] == job["job_id"] for p in pending)
    assert final.status_code == 200, final.text
    data = final.json()["data"]
    assert (data["job_id"], data["provider"], data["seed"]) == (job["job_id"], "flux", 21)
    assert data["settings"]["width"] == 768 and data["settings"]["height"] == 512
    assert data["cost_usd"] == pytest.approx(0.025)
    image = httpx.get(data["image_url"], timeout=10)  # the presigned URL, from moto's S3 server
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(image.content)).format == "JPEG"
    bfl = local_stack.stack.emulators["flux"]
    assert bfl.key_leaks == []  # the sample was fetched without x-key


def test_a_moderated_prompt_fails_the_job_with_422(api, local_stack):
    job = start(api, local_stack, "Something the moderation refuses [moderate]", customer_id=3)

    final, _ = until_final(api, local_stack, job, customer_id=3)

    assert final.status_code == 422, final.text
    body = final.json()
    assert body["success"] is False and body["code"] == 422
    assert body["error"]["type"] == "content_policy_violation"
    assert body["error"]["details"]["job_id"] == job["job_id"]
    assert api.get(job["status_url"], headers=local_stack.auth(3)).status_code == 422  # stays so


def test_another_customer_gets_404_for_a_job_before_and_after_it_finishes(api, local_stack):
    job = start(api, local_stack, "A private picture [polls=0]", customer_id=5)
    assert api.get(job["status_url"], headers=local_stack.auth(6)).status_code == 404

    final, _ = until_final(api, local_stack, job, customer_id=5)

    assert final.status_code == 200
    foreign = api.get(job["status_url"], headers=local_stack.auth(6))
    assert foreign.status_code == 404 and foreign.json()["error"]["type"] == "not_found"
