"""Per-customer limits and budgets on a real (moto) DynamoDB table, with an injected clock:
counted atomically, refused before any provider call, settled exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from image_common.errors import BudgetExceeded, CustomerRateLimited, StorageError
from image_service.service import ImageService
from image_service.storage import ImageStore
from image_service.usage import (
    CONFLICT_PAUSE_SECONDS,
    TRANSACTION_ATTEMPTS,
    Limits,
    UsageLedger,
    create_table,
)
from local.job_runner import LocalJobRunner
from tests.clock import ManualClock
from tests.conftest import answer_of, pipeline_for, request_body

TABLE = "usage-test"
DEFAULTS = Limits(requests_per_minute=100, daily_budget_usd=1.0, monthly_budget_usd=2.0)


@pytest.fixture
def dynamodb():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        yield client


@pytest.fixture
def clock():
    return ManualClock(datetime(2026, 11, 30, 10, 15, 42, tzinfo=UTC))


@pytest.fixture
def ledger(dynamodb, clock):
    return UsageLedger(TABLE, DEFAULTS, client=dynamodb, clock=clock)


def limit_rate(dynamodb, customer: int, per_minute: int) -> None:
    """A customer's own limit, as ops write it: an item in the usage table."""
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": f"customer#{customer}"},
            "sk": {"S": "limits"},
            "requests_per_minute": {"N": str(per_minute)},
        },
    )


def admit(ledger, customer=7, estimate=0.1):
    return ledger.admit(customer, estimate_usd=estimate, provider="openai", model="gpt-image-1")


# --- rate limit ----------------------------------------------------------------------------------


def test_the_request_over_the_per_minute_limit_is_refused_until_the_next_minute(
    ledger, clock, dynamodb
):
    limit_rate(dynamodb, 7, 3)
    for _ in range(3):
        admit(ledger, estimate=0)
    with pytest.raises(CustomerRateLimited) as refused:
        admit(ledger, estimate=0)
    assert (refused.value.status, refused.value.type) == (429, "rate_limited")
    assert refused.value.retry_after == 60 - 42  # the seconds left in this minute
    clock.now += timedelta(seconds=18)
    admit(ledger, estimate=0)  # a new minute, a new count


def test_rate_limits_are_per_customer(ledger, dynamodb):
    limit_rate(dynamodb, 1, 3)
    limit_rate(dynamodb, 2, 3)
    for _ in range(3):
        admit(ledger, customer=1, estimate=0)
    admit(ledger, customer=2, estimate=0)


def test_a_customer_override_in_the_table_wins_over_the_stage_default(ledger, dynamodb):
    limit_rate(dynamodb, 9, 1)
    assert ledger.limits_for(9) == Limits(1, DEFAULTS.daily_budget_usd, DEFAULTS.monthly_budget_usd)
    admit(ledger, customer=9, estimate=0)
    with pytest.raises(CustomerRateLimited):
        admit(ledger, customer=9, estimate=0)


# --- budgets -------------------------------------------------------------------------------------


def test_reservations_cannot_overshoot_the_daily_budget(ledger, clock):
    admit(ledger, estimate=0.4)
    admit(ledger, estimate=0.4)
    with pytest.raises(BudgetExceeded) as refused:
        admit(ledger, estimate=0.4)  # 1.2 > 1.0
    assert (refused.value.status, refused.value.type) == (429, "budget_exceeded")
    midnight = datetime(2026, 12, 1, tzinfo=UTC)
    assert refused.value.retry_after == int((midnight - clock.now).total_seconds())
    admit(ledger, estimate=0.2)  # exactly up to the budget is allowed


def test_settling_replaces_the_estimate_by_the_actual_cost(ledger):
    charge = admit(ledger, estimate=0.9)
    with pytest.raises(BudgetExceeded):
        admit(ledger, estimate=0.2)
    ledger.settle(charge, 0.3)
    admit(ledger, estimate=0.6)  # 0.3 spent + 0.6 reserved <= 1.0
    day = ledger.usage(7)["day"]
    assert (day["spent_usd"], day["reserved_usd"], day["remaining_usd"]) == (0.3, 0.6, 0.1)


def test_a_failed_generation_releases_its_reservation(ledger):
    charge = admit(ledger, estimate=0.9)
    ledger.settle(charge, None)
    usage = ledger.usage(7)
    assert usage["day"]["spent_usd"] == 0 and usage["day"]["reserved_usd"] == 0
    assert usage["charges"][0]["status"] == "released"


def test_a_charge_is_settled_once_whatever_the_retries(ledger):
    charge = admit(ledger, estimate=0.5)
    ledger.settle(charge, 0.25, job_id="job-1")
    ledger.settle(charge, 0.25, job_id="job-1")
    ledger.settle(charge, None)
    usage = ledger.usage(7)
    assert usage["day"]["spent_usd"] == 0.25 and usage["day"]["reserved_usd"] == 0
    (only,) = usage["charges"]
    assert (only["status"], only["cost_usd"], only["job_id"]) == ("settled", 0.25, "job-1")


def test_the_monthly_budget_holds_across_days_and_says_when_it_resets(ledger, clock):
    for day in range(4):
        clock.now = datetime(2026, 11, 3 + day, 12, tzinfo=UTC)
        admit(ledger, estimate=0.5)  # 2.0 in the month, 0.5 a day
    with pytest.raises(BudgetExceeded) as refused:
        admit(ledger, estimate=0.1)
    assert "monthly" in refused.value.message
    assert refused.value.retry_after == int(
        (datetime(2026, 12, 1, tzinfo=UTC) - clock.now).total_seconds()
    )


def test_an_estimate_alone_over_the_budget_is_refused_without_a_write(ledger, dynamodb):
    with pytest.raises(BudgetExceeded):
        admit(ledger, estimate=1.5)
    items = dynamodb.scan(TableName=TABLE)["Items"]
    assert [i["sk"]["S"] for i in items if not i["sk"]["S"].startswith("minute#")] == []


def test_usage_shows_limits_counts_and_recent_charges_newest_first(ledger, clock):
    first = admit(ledger, estimate=0.1)
    clock.now += timedelta(seconds=1)
    admit(ledger, estimate=0.2)
    ledger.settle(first, 0.05)
    usage = ledger.usage(7)
    assert usage["limits"] == DEFAULTS.as_dict()
    assert usage["minute"] == {"requests": 2, "limit": 100, "resets_at": "2026-11-30T10:16:00Z"}
    assert usage["day"]["period"] == "2026-11-30" and usage["month"]["period"] == "2026-11"
    assert [c["status"] for c in usage["charges"]] == ["reserved", "settled"]
    assert usage["charges"][1]["cost_usd"] == 0.05


def test_an_unreachable_usage_table_refuses_the_request_as_a_502(dynamodb, clock):
    ledger = UsageLedger("no-such-table", DEFAULTS, client=dynamodb, clock=clock)
    with pytest.raises(StorageError) as failed:
        admit(ledger)
    assert failed.value.status == 502 and "nothing was charged" in failed.value.message


# --- through the service: refused before the provider ---------------------------------------------


@pytest.fixture
def service(s3, emulators, settings, dynamodb, clock):
    """Jobs run inline; the request admits, the job's last step settles, on one ledger."""
    ledger = UsageLedger(TABLE, DEFAULTS, client=dynamodb, clock=clock)
    runner = LocalJobRunner(pipeline_for(settings, usage=ledger), background=False)
    return ImageService(settings, ImageStore(settings), job_runner=runner, usage=ledger)


def test_the_service_refuses_over_budget_before_calling_the_provider(service, emulators):
    from image_service.models import parse_request
    from image_service.service import Caller

    request = parse_request(request_body(quality="high", n=10))  # ~1.7 USD > 1.0 a day
    with pytest.raises(BudgetExceeded):
        service.generate(request, caller=Caller.trusted(), wait_seconds=20)
    assert emulators["openai"].requests == []


def test_the_service_settles_what_the_answer_says_it_cost(service, emulators):
    from image_service.models import parse_request

    data = answer_of(service, parse_request(request_body(quality="low")))
    (charge,) = service.usage.usage(123)["charges"]
    assert charge["status"] == "settled" and charge["cost_usd"] == data["cost_usd"] > 0


def test_a_provider_failure_releases_the_reservation(service, emulators):
    from image_common.errors import ContentPolicyViolation
    from image_service.models import parse_request

    with pytest.raises(ContentPolicyViolation):
        answer_of(service, parse_request(request_body("x [moderate]")))
    (charge,) = service.usage.usage(123)["charges"]
    assert charge["status"] == "released" and service.usage.usage(123)["day"]["reserved_usd"] == 0


def test_direct_invoke_over_the_rate_limit_is_a_typed_tool_error_with_retry_after(
    service, lambda_context, monkeypatch, dynamodb
):
    import generation

    limit_rate(dynamodb, 123, 3)
    monkeypatch.setattr(generation, "image_service", lambda: service)
    for _ in range(3):
        assert generation.handler(request_body(quality="low"), lambda_context)["success"]
    result = generation.handler(request_body(quality="low"), lambda_context)
    assert result["success"] is False
    assert result["error"]["type"] == "rate_limited" and result["error"]["code"] == 429
    assert result["error"]["retry_after"] == 18


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("flux", "flux"),  # flux-2-pro, per megapixel: $0.045 at the 1024x1024 it is sent at
        ("grok-imagine-image-2.0", "xai"),  # priced only by the answer: reserves $0.08
        ("gemini-nano-banana-2.1", "google"),  # token-priced only: reserves $0.06
    ],
)
def test_a_customer_below_the_models_estimate_is_refused_before_the_provider_is_called(
    service, emulators, ledger, model, provider
):
    """0.04 left of the day is less than each model's estimate; a $0 estimate would pass."""
    from image_service.models import parse_request
    from image_service.service import Caller

    spent = ledger.admit(123, estimate_usd=0.96, provider=provider, model="earlier")
    ledger.settle(spent, 0.96)
    with pytest.raises(BudgetExceeded) as refused:
        service.generate(
            parse_request(request_body(model=model)), caller=Caller.trusted(), wait_seconds=20
        )
    assert (refused.value.status, refused.value.type) == (429, "budget_exceeded")
    assert emulators[provider].requests == []
    day = service.usage.usage(123)["day"]
    assert (day["reserved_usd"], day["remaining_usd"], day["charges"]) == (0, 0.04, 1)


# --- transactions DynamoDB cancels for another reason than a limit ---------------------------------


class CancellingClient:
    """The real (moto) client, but its next transactions are cancelled with these reasons, as
    DynamoDB cancels them: ``TransactionConflict`` when another transaction was writing one of
    the same items at that moment (a customer's day and month items, under concurrent requests)."""

    def __init__(self, client, *cancellations: list[str]) -> None:
        self._client, self._cancellations = client, list(cancellations)
        self.attempts = 0

    def __getattr__(self, name):
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs):
        self.attempts += 1
        if self._cancellations:
            codes = self._cancellations.pop(0)
            raise self._client.exceptions.TransactionCanceledException(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                    "CancellationReasons": [{"Code": code} for code in codes],
                },
                "TransactWriteItems",
            )
        return self._client.transact_write_items(**kwargs)


CONFLICT_ON_DAY = ["TransactionConflict", "None", "None"]


@pytest.fixture
def pauses():
    return []


def ledger_with(dynamodb, clock, pauses, *cancellations) -> tuple[UsageLedger, CancellingClient]:
    client = CancellingClient(dynamodb, *cancellations)
    return UsageLedger(TABLE, DEFAULTS, client=client, clock=clock, sleep=pauses.append), client


def test_a_reservation_that_met_a_concurrent_one_is_tried_again_and_reserved(
    dynamodb, clock, pauses
):
    ledger, client = ledger_with(dynamodb, clock, pauses, CONFLICT_ON_DAY, CONFLICT_ON_DAY)
    admit(ledger, estimate=0.4)
    assert client.attempts == 3 and len(pauses) == 2
    assert 0 < pauses[0] < pauses[1] <= 4 * CONFLICT_PAUSE_SECONDS  # short, and backing off
    assert ledger.usage(7)["day"]["reserved_usd"] == 0.4


def test_a_reservation_that_keeps_conflicting_is_a_502_that_charged_nothing_not_a_budget_refusal(
    dynamodb, clock, pauses
):
    conflicts = [CONFLICT_ON_DAY] * TRANSACTION_ATTEMPTS
    ledger, client = ledger_with(dynamodb, clock, pauses, *conflicts)
    with pytest.raises(StorageError) as failed:
        admit(ledger)
    assert client.attempts == TRANSACTION_ATTEMPTS
    assert failed.value.status == 502 and "nothing was charged" in failed.value.message
    assert ledger.usage(7)["day"]["reserved_usd"] == 0


@pytest.mark.parametrize(
    "reasons", [["None", "None", "ConditionalCheckFailed"], ["ValidationError", "None", "None"], []]
)
def test_a_reservation_cancelled_for_another_reason_than_a_budget_is_a_502_not_a_budget_refusal(
    dynamodb, clock, pauses, reasons
):
    ledger, client = ledger_with(dynamodb, clock, pauses, reasons)
    with pytest.raises(StorageError):
        admit(ledger)
    assert client.attempts == 1 and pauses == []  # only a conflict is worth trying again


@pytest.mark.parametrize(
    ("reasons", "window"),
    [
        (["ConditionalCheckFailed", "None", "None"], "daily"),
        (["None", "ConditionalCheckFailed", "None"], "monthly"),
    ],
)
def test_a_budget_condition_that_failed_is_still_that_budget_refused(
    dynamodb, clock, pauses, reasons, window
):
    ledger, _ = ledger_with(dynamodb, clock, pauses, reasons)
    with pytest.raises(BudgetExceeded, match=f"the {window} budget"):
        admit(ledger)


def test_a_settlement_that_met_a_concurrent_transaction_is_tried_again_and_settled(
    dynamodb, clock, pauses
):
    ledger, client = ledger_with(dynamodb, clock, pauses)
    charge = admit(ledger, estimate=0.5)
    client._cancellations = [["None", "TransactionConflict", "None"]]
    ledger.settle(charge, 0.25)
    day = ledger.usage(7)["day"]
    assert (day["spent_usd"], day["reserved_usd"]) == (0.25, 0)
    assert len(pauses) == 1


def test_a_settlement_that_keeps_conflicting_is_logged_as_not_settled_not_as_already_settled(
    dynamodb, clock, pauses, caplog
):
    ledger, client = ledger_with(dynamodb, clock, pauses)
    charge = admit(ledger, estimate=0.5)
    client._cancellations = [["None", "TransactionConflict", "None"]] * TRANSACTION_ATTEMPTS
    with caplog.at_level("INFO"):
        ledger.settle(charge, 0.25)
    messages = [record.getMessage() for record in caplog.records]
    assert "charge not settled" in messages and "charge already settled" not in messages
    assert ledger.usage(7)["charges"][0]["status"] == "reserved"  # ages out with the day
