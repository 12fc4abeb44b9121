"""Per-customer limits over the local stack: refused before any provider call, and the usage a
customer sees. Limits are set the way ops set them — an item in the usage table."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest

from tests.e2e.conftest import E2E_DATE
from tests.e2e.test_flux_e2e import start, until_final

pytestmark = pytest.mark.e2e

# The limits' clock: mid-minute on the stack's calendar day, so that no request of a test falls
# into another minute (or day) than its seeded counters, however busy the machine.
NOW = datetime(E2E_DATE.year, E2E_DATE.month, E2E_DATE.day, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def limits_clock(local_stack, monkeypatch):
    """The in-process generation function's usage ledger reads the time from NOW."""
    ledger = sys.modules["generation"].image_service().usage
    monkeypatch.setattr(ledger, "clock", lambda: NOW)


def set_limits(local_stack, customer_id: int, **limits: float) -> None:
    item = {"pk": {"S": f"customer#{customer_id}"}, "sk": {"S": "limits"}}
    item |= {name: {"N": str(value)} for name, value in limits.items()}
    local_stack.dynamodb().put_item(TableName=local_stack.stack.usage_table, Item=item)


def seed_minute_counters(local_stack, customer_id: int, requests: int) -> None:
    """The counter of the ledger's current minute (NOW's)."""
    local_stack.dynamodb().put_item(
        TableName=local_stack.stack.usage_table,
        Item={
            "pk": {"S": f"customer#{customer_id}"},
            "sk": {"S": f"minute#{NOW.strftime('%Y-%m-%dT%H:%M')}"},
            "requests": {"N": str(requests)},
        },
    )


def generate(api, local_stack, customer_id: int, quality: str = "high"):
    body = {
        "prompt": "A lighthouse in a storm",
        "settings": {"image": {"model": "openai", "quality": quality}},
        "customer_id": customer_id,
    }
    return api.post("/image/generate", json=body, headers=local_stack.auth(customer_id))


def openai_calls(local_stack) -> int:
    return len(local_stack.stack.emulators["openai"].requests)


def test_over_its_rate_limit_a_customer_gets_429_with_retry_after_and_no_provider_call(
    api, local_stack
):
    set_limits(local_stack, 601, requests_per_minute=3)
    seed_minute_counters(local_stack, 601, requests=2)
    before = openai_calls(local_stack)

    allowed = generate(api, local_stack, 601, quality="low")
    assert allowed.status_code == 200, allowed.text
    assert openai_calls(local_stack) == before + 1

    refused = generate(api, local_stack, 601, quality="low")
    assert refused.status_code == 429
    body = refused.json()
    assert (body["success"], body["code"], body["error"]["type"]) == (False, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) == 30  # the minute ends 30 s after NOW
    assert openai_calls(local_stack) == before + 1  # the emulator never saw the refused request


def test_over_its_budget_a_customer_gets_the_budget_error_and_no_provider_call(api, local_stack):
    # one high-quality gpt-image-1 square is about 0.17 USD: the budget covers one, not two
    set_limits(local_stack, 602, daily_budget_usd=0.25, monthly_budget_usd=0.25)
    before = openai_calls(local_stack)

    first = generate(api, local_stack, 602)
    assert first.status_code == 200, first.text
    assert openai_calls(local_stack) == before + 1

    refused = generate(api, local_stack, 602)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "budget_exceeded" and "0.25 USD" in error["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert openai_calls(local_stack) == before + 1


def test_usage_shows_the_settled_cost_of_each_finished_generation_and_job(api, local_stack):
    made = generate(api, local_stack, 603, quality="low")
    assert made.status_code == 200, made.text
    job = start(api, local_stack, "A fox in the snow [polls=1]", customer_id=603)
    final, _ = until_final(api, local_stack, job, customer_id=603)
    assert final.status_code == 200, final.text

    usage = api.get("/image/usage", headers=local_stack.auth(603))

    assert usage.status_code == 200 and usage.headers["cache-control"] == "no-store"
    data = usage.json()["data"]
    assert data["customer_id"] == 603
    charges = {c.get("job_id"): c for c in data["charges"]}
    assert charges[job["job_id"]]["status"] == "settled"
    assert charges[job["job_id"]]["cost_usd"] == pytest.approx(final.json()["data"]["cost_usd"])
    sync = charges[made.json()["data"]["job_id"]]  # every generation is a job now
    assert sync["status"] == "settled" and sync["provider"] == "openai"
    assert sync["cost_usd"] == pytest.approx(made.json()["data"]["cost_usd"])
    spent = made.json()["data"]["cost_usd"] + final.json()["data"]["cost_usd"]
    assert data["day"]["spent_usd"] == pytest.approx(spent)
    assert data["day"]["reserved_usd"] == pytest.approx(0)
    assert data["month"]["spent_usd"] == pytest.approx(spent)
    assert data["limits"]["requests_per_minute"] == 100000  # the stage default (e2e env)


def test_usage_is_the_callers_own_and_needs_a_token(api, local_stack):
    assert api.get("/image/usage").status_code == 401
    other = api.get("/image/usage?customer_id=603", headers=local_stack.auth(604))
    assert other.status_code == 200 and other.json()["data"]["customer_id"] == 604
    admin = api.get(
        "/image/usage?customer_id=603", headers=local_stack.auth(1, scopes=["images:admin"])
    )
    assert admin.json()["data"]["customer_id"] == 603
