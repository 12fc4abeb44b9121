"""The jobs API through the generation handler with API Gateway v2 events: ``POST
/image/generate`` answers 200 when the job finishes within the wait and 202 when it does not
(``Prefer: wait=N`` and ``respond-async``); ``GET /image/jobs/{id}`` answers the progress, the
final 200 or the typed error; ``GET /image/jobs`` lists the caller's own jobs; an
``Idempotency-Key`` attaches a retry to the first job; ``callback_url`` is guarded; a direct
invoke waits for the final answer."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from image_service.job_records import JobRecord, new_job_id, utcnow
from image_service.job_store import JobStore
from local.job_runner import LocalJobRunner
from tests.conftest import (
    RecordingJobRunner,
    http_event,
    pipeline_for,
    request_body,
)


@pytest.fixture
def generation(s3, emulators, settings, monkeypatch):
    """The handler module; ``use(runner, **settings)`` picks how its jobs run and its settings."""
    import generation as module

    def use(runner, **overrides):
        monkeypatch.setattr(module, "settings", settings.model_copy(update=overrides))
        monkeypatch.setattr(module, "job_runner", runner)
        module.image_service.cache_clear()
        return runner

    module.use = use
    yield module
    module.image_service.cache_clear()
    del module.use


@pytest.fixture
def inline(generation, settings):
    """Jobs run to the end inside the request: the fast path."""
    return generation.use(LocalJobRunner(pipeline_for(settings), background=False))


@pytest.fixture
def parked(generation):
    """Jobs are recorded but never run: they stay pending. A short wait keeps tests fast."""
    return generation.use(RecordingJobRunner(), job_wait_seconds=0.3)


@pytest.fixture
def background(generation, settings):
    """Jobs run on a thread beside the request, as the state machine runs them in AWS."""
    runner = LocalJobRunner(pipeline_for(settings))
    generation.use(runner, job_wait_seconds=0.5)
    yield runner
    assert runner.join(20), "a job thread outlived its test"


def call(module, event, context):
    response = module.handler(event, context)
    return response["statusCode"], json.loads(response["body"]), response.get("headers", {})


def post(generation, context, prompt="A lighthouse", *, customer_id=123, headers=None, **image):
    image.setdefault("model", "gpt-image-1")
    event = http_event(body=request_body(prompt, customer_id=customer_id, **image),
                       customer_id=customer_id)  # fmt: skip
    event["headers"] |= headers or {}
    return call(generation, event, context)


def get(generation, context, path: str, customer_id: int = 123, query: dict | None = None, **kw):
    event = http_event("GET", path, customer_id=customer_id, **kw)
    if query:
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
        event["queryStringParameters"] = query
    return call(generation, event, context)


# --- POST /image/generate: 200 when done in time, else 202 ----------------------------------------


def test_a_job_done_within_the_wait_answers_200_with_its_job_id(
    inline, generation, lambda_context, emulators
):
    status, answer, headers = post(generation, lambda_context)
    assert status == 200 and answer["code"] == 200
    data = answer["data"]
    assert len(data["job_id"]) == 32 and data["image_url"].startswith("https://")
    assert headers["Cache-Control"] == "no-store" and "Location" not in headers
    assert len(emulators["openai"].requests) == 1


def test_a_job_not_done_within_the_wait_answers_202_with_where_to_look(
    parked, generation, lambda_context, emulators
):
    status, answer, headers = post(generation, lambda_context)
    assert status == 202 and answer == {"success": True, "code": 202, "data": answer["data"]}
    data = answer["data"]
    assert {"job_id", "status", "status_url"} <= set(data) and data["status"] == "pending"
    assert data["status_url"] == f"/image/jobs/{data['job_id']}" == headers["Location"]
    assert 1 <= int(headers["Retry-After"]) <= 10
    assert emulators["openai"].requests == []  # the worker calls the provider, not the request


def test_prefer_respond_async_answers_202_without_waiting(inline, generation, lambda_context):
    status, answer, headers = post(generation, lambda_context, headers={"prefer": "respond-async"})
    assert status == 202 and headers["Preference-Applied"] == "respond-async"
    # The job ran all the same (here inside start); its answer is at status_url.
    status, answer, _ = get(generation, lambda_context, answer["data"]["status_url"])
    assert status == 200 and answer["data"]["image_url"]


@pytest.mark.parametrize(
    ("prefer", "applied"),
    [("wait=0", "wait=0"), ("respond-async, wait=0", "respond-async, wait=0"),
     ("wait=100", "wait=0.3"), ("wait=abc", None), ("handling=lenient", None)],
)  # fmt: skip
def test_prefer_wait_asks_for_less_never_more(parked, generation, lambda_context, prefer, applied):
    status, _, headers = post(generation, lambda_context, headers={"prefer": prefer})
    assert status == 202 and headers.get("Preference-Applied") == applied


def test_wait_preference_parsing():
    from generation import wait_preference

    assert wait_preference(None, default=20) == (20, None)
    assert wait_preference("respond-async", default=20) == (0.0, "respond-async")
    assert wait_preference('wait="5"', default=20) == (5.0, "wait=5")
    assert wait_preference("Wait=25", default=20) == (20.0, "wait=20")


def test_a_slow_job_answers_202_then_200_at_its_status_url_with_one_provider_call(
    background, generation, lambda_context, emulator_over_http
):
    """Compressed time: a 0.5 s wait against a provider that answers after 2 s."""
    emulator = emulator_over_http("openai")
    status, answer, _ = post(generation, lambda_context, "A slow one [delay=2]")
    assert status == 202
    status_url = answer["data"]["status_url"]
    status, progress, headers = get(generation, lambda_context, status_url)
    assert status == 202 and progress["data"]["status"] == "running"
    assert 0 <= progress["data"]["progress"] < 1 and headers["Retry-After"]
    assert background.join(20)
    status, answer, _ = get(generation, lambda_context, status_url)
    assert status == 200 and answer["data"]["job_id"] == status_url.rsplit("/", 1)[-1]
    assert len(emulator.requests) == 1


def test_a_failed_job_answers_its_typed_error(inline, generation, lambda_context):
    status, answer, _ = post(generation, lambda_context, "x [moderate]")
    assert status == 422 and answer["error"]["type"] == "content_policy_violation"
    job_id = answer["error"]["details"]["job_id"]
    status, again, _ = get(generation, lambda_context, f"/image/jobs/{job_id}")
    assert status == 422 and again == answer


def test_a_job_that_cannot_start_is_a_502_and_recorded_failed(generation, lambda_context, settings):
    generation.use(None)  # deployed runner, with no state machine configured
    status, answer, _ = post(generation, lambda_context)
    assert status == 502 and answer["error"]["type"] == "provider_not_configured"
    jobs, _ = JobStore(settings.jobs_table).list_for_customer(123, limit=5, cursor=None)
    assert [(j.status, j.error.status) for j in jobs] == [("failed", 502)]


# --- GET /image/jobs/{id} -------------------------------------------------------------------------


def test_a_pending_job_reads_202_with_progress(parked, generation, lambda_context):
    job_id = post(generation, lambda_context)[1]["data"]["job_id"]
    status, answer, headers = get(generation, lambda_context, f"/image/jobs/{job_id}")
    assert status == 202 and answer["data"]["status"] == "pending"
    assert answer["data"]["progress"] == 0.0 and answer["data"]["expected_seconds"] > 0
    assert headers["Cache-Control"] == "no-store" and headers["Retry-After"]


@pytest.mark.parametrize(
    "job_id", ["0f1e2d3c4b5a49788796a5b4c3d2e1f0", "not-a-job", "..%2F..%2Fcustomers"]
)
def test_an_unknown_job_is_a_404(parked, generation, lambda_context, job_id):
    status, answer, _ = get(generation, lambda_context, f"/image/jobs/{job_id}")
    assert status == 404 and answer["error"]["type"] == "not_found"


def test_another_customers_job_is_a_404_unless_admin(parked, generation, lambda_context):
    job_id = post(generation, lambda_context, customer_id=123)[1]["data"]["job_id"]
    path = f"/image/jobs/{job_id}"
    assert get(generation, lambda_context, path, customer_id=456)[0] == 404
    owner = {"customer_id": "123"}
    assert get(generation, lambda_context, path, customer_id=456, query=owner)[0] == 404
    admin = get(
        generation, lambda_context, path, customer_id=456, query=owner, scopes="images:admin"
    )
    assert admin[0] == 202


def test_a_job_past_its_deadline_with_no_final_record_reads_as_timed_out(
    parked, generation, lambda_context, settings
):
    created = utcnow() - timedelta(seconds=600)
    job = JobRecord(
        job_id=new_job_id(), customer_id=123, status="running", provider="openai",
        model="gpt-image-1", created_at=created, updated_at=created, claimed_at=created,
        budget_seconds=60, expected_seconds=30,
    )  # fmt: skip
    JobStore(settings.jobs_table).create(job, ttl_at=2_000_000_000, claim=None)  # its worker died
    status, answer, _ = get(generation, lambda_context, f"/image/jobs/{job.job_id}")
    assert status == 504 and answer["error"]["type"] == "provider_timeout"
    assert "60 s budget" in answer["error"]["message"]


def test_the_jobs_routes_need_the_authorizer(parked, generation, lambda_context):
    assert (
        get(generation, lambda_context, f"/image/jobs/{new_job_id()}", customer_id=None)[0] == 401
    )
    assert get(generation, lambda_context, "/image/jobs", customer_id=None)[0] == 401


# --- GET /image/jobs ------------------------------------------------------------------------------


def test_the_listing_has_only_the_callers_jobs_newest_first_in_pages(
    parked, generation, lambda_context
):
    mine = [post(generation, lambda_context, f"Image {i}")[1]["data"]["job_id"] for i in range(3)]
    post(generation, lambda_context, "Someone else's", customer_id=456)
    status, page, _ = get(generation, lambda_context, "/image/jobs", query={"limit": "2"})
    assert status == 200
    first = page["data"]
    assert [j["job_id"] for j in first["jobs"]] == mine[::-1][:2]
    assert first["jobs"][0]["status"] == "pending" and first["jobs"][0]["status_url"]
    assert first["next_cursor"]
    status, page, _ = get(generation, lambda_context, "/image/jobs",
                          query={"limit": "2", "cursor": first["next_cursor"]})  # fmt: skip
    assert [j["job_id"] for j in page["data"]["jobs"]] == mine[:1]
    assert page["data"]["next_cursor"] is None
    others = get(generation, lambda_context, "/image/jobs", customer_id=456)[1]["data"]["jobs"]
    assert len(others) == 1 and others[0]["job_id"] not in mine


@pytest.mark.parametrize("limit", ["0", "101", "ten", "-1"])
def test_a_bad_limit_is_a_400(parked, generation, lambda_context, limit):
    status, answer, _ = get(generation, lambda_context, "/image/jobs", query={"limit": limit})
    assert status == 400 and "limit" in answer["error"]["message"]


@pytest.mark.parametrize("cursor", ["garbage", "eyJmb28iOiAxfQ==", "e30="])
def test_a_forged_cursor_is_a_400(parked, generation, lambda_context, cursor):
    status, answer, _ = get(generation, lambda_context, "/image/jobs", query={"cursor": cursor})
    assert status == 400 and "cursor" in answer["error"]["message"]


def test_another_customers_cursor_is_a_400_not_their_jobs(parked, generation, lambda_context):
    for i in range(2):
        post(generation, lambda_context, f"Theirs {i}", customer_id=456)
    cursor = get(generation, lambda_context, "/image/jobs", customer_id=456,
                 query={"limit": "1"})[1]["data"]["next_cursor"]  # fmt: skip
    status, answer, _ = get(generation, lambda_context, "/image/jobs", query={"cursor": cursor})
    assert status == 400 and answer["error"]["type"] == "invalid_request"


# --- Idempotency-Key --------------------------------------------------------------------------------


def test_a_repeated_idempotency_key_returns_the_same_job_and_calls_the_provider_once(
    inline, generation, lambda_context, emulators
):
    key = {"idempotency-key": "order-42-image"}
    first = post(generation, lambda_context, headers=key)
    second = post(generation, lambda_context, headers=key)
    assert first[0] == second[0] == 200
    assert first[1]["data"]["job_id"] == second[1]["data"]["job_id"]
    assert second[2]["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first[2]
    assert len(emulators["openai"].requests) == 1


def test_a_repeated_key_attaches_to_a_job_still_running(parked, generation, lambda_context):
    key = {"idempotency-key": "retry-after-timeout"}
    first = post(generation, lambda_context, headers=key)
    second = post(generation, lambda_context, headers=key)
    assert first[0] == second[0] == 202
    assert first[1]["data"]["job_id"] == second[1]["data"]["job_id"]
    assert len(parked.started) == 1  # one job, one workflow


def test_the_same_key_with_another_body_is_a_422(inline, generation, lambda_context, emulators):
    key = {"idempotency-key": "k-1"}
    post(generation, lambda_context, "A lighthouse", headers=key)
    status, answer, _ = post(generation, lambda_context, "A different picture", headers=key)
    assert status == 422 and answer["error"]["type"] == "idempotency_key_reused"
    assert len(emulators["openai"].requests) == 1


def test_keys_belong_to_their_customer(inline, generation, lambda_context, emulators):
    key = {"idempotency-key": "shared-name"}
    a = post(generation, lambda_context, customer_id=123, headers=key)[1]["data"]["job_id"]
    b = post(generation, lambda_context, customer_id=456, headers=key)[1]["data"]["job_id"]
    assert a != b and len(emulators["openai"].requests) == 2


def test_an_expired_key_starts_a_new_job(generation, lambda_context, settings, emulators):
    generation.use(LocalJobRunner(pipeline_for(settings), background=False),
                   idempotency_ttl_seconds=60)  # fmt: skip
    key = {"idempotency-key": "short-lived"}
    first = post(generation, lambda_context, headers=key)[1]["data"]["job_id"]
    jobs = generation.image_service().jobs
    jobs.clock = lambda: utcnow() + timedelta(seconds=61)  # the window has passed
    second = post(generation, lambda_context, headers=key)[1]["data"]["job_id"]
    assert first != second and len(emulators["openai"].requests) == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
def test_a_malformed_key_is_a_400(inline, generation, lambda_context, key, emulators):
    status, answer, _ = post(generation, lambda_context, headers={"idempotency-key": key})
    assert status == 400 and "idempotency key" in answer["error"]["message"]
    assert emulators["openai"].requests == []


def test_a_direct_invoke_with_an_idempotency_key_pays_once(
    inline, generation, lambda_context, emulators
):
    event = request_body("A lighthouse", model="gpt-image-1") | {"idempotency_key": "tool-call-7"}
    first = generation.handler(dict(event), lambda_context)
    second = generation.handler(dict(event), lambda_context)
    assert first["success"] and second["success"] and first["job_id"] == second["job_id"]
    assert len(emulators["openai"].requests) == 1


# --- callback_url ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [("http://hooks.example.com/x", "https"), ("https://127.0.0.1/hook", "private"),
     ("https://10.0.0.5/hook", "private"), ("not a url", "https")],
)  # fmt: skip
def test_a_callback_url_outside_the_public_url_guard_is_a_400(
    inline, generation, lambda_context, url, reason, emulators
):
    body = request_body("A lighthouse", model="gpt-image-1") | {"callback_url": url}
    status, answer, _ = call(generation, http_event(body=body), lambda_context)
    assert status == 400 and reason in answer["error"]["message"]
    assert emulators["openai"].requests == []


def test_a_trusted_callback_origin_is_exempt_from_the_guard(generation, lambda_context, settings):
    generation.use(RecordingJobRunner(), job_wait_seconds=0,
                   trusted_callback_origins="http://127.0.0.1:9000")  # fmt: skip
    body = request_body("A lighthouse", model="gpt-image-1") | {
        "callback_url": "http://127.0.0.1:9000/hooks/images"
    }
    status, answer, _ = call(generation, http_event(body=body), lambda_context)
    assert status == 202
    record = JobStore(settings.jobs_table).get(answer["data"]["job_id"])
    assert record.callback_url == "http://127.0.0.1:9000/hooks/images"


# --- direct invoke ------------------------------------------------------------------------------


def test_a_direct_invoke_of_flux_returns_the_finished_image(inline, generation, lambda_context, s3):
    result = generation.handler(request_body("A fox [polls=1]", model="flux-dev"), lambda_context)
    assert result["success"] is True and "flux flux-dev" in result["text"]
    assert result["image_url"].startswith("https://") and result["job_id"]
    assert s3.head_object(Bucket="test-images", Key=result["image_key"])


def test_a_direct_invoke_not_finished_in_its_budget_is_a_typed_504_naming_the_job(
    generation, lambda_context
):
    generation.use(RecordingJobRunner(), invoke_provider_timeout_seconds=0.3)
    result = generation.handler(request_body("A lighthouse"), lambda_context)
    assert result["success"] is False
    assert (result["error"]["code"], result["error"]["type"]) == (504, "provider_timeout")
    assert len(result["error"]["details"]["job_id"]) == 32
