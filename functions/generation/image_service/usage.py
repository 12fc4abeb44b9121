"""Per-customer rate limits and spend budgets, enforced before a provider is paid.

Every generation is *admitted* first: one request counted against the customer's requests per
minute, and the request's estimated cost *reserved* against its daily and monthly budgets — each
an atomic, conditional DynamoDB write, so concurrent requests cannot overshoot. When the work
ends, the charge is *settled* with the actual cost (or released at 0 when nothing was
produced), exactly once. Defaults come from the stage; one customer's overrides are an item in
the same table (docs/limits.md).

Items of the usage table (``pk`` = ``customer#{id}``, ``sk`` below; ``expires_at`` is the TTL):

- ``limits`` — overrides: ``requests_per_minute``, ``daily_budget_usd``, ``monthly_budget_usd``;
- ``minute#YYYY-MM-DDTHH:MM`` — ``requests`` in that minute (a fixed window);
- ``day#YYYY-MM-DD``, ``month#YYYY-MM`` — ``committed_usd`` (what the budget checks: reserved
  estimates plus settled costs), ``reserved_usd``, ``spent_usd``, ``charges``;
- ``charge#<created>#<id>`` — one generation: its estimate, then its settled cost.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from image_common.errors import BudgetExceeded, CustomerRateLimited, StorageError
from image_service import aws
from image_service.telemetry import record_cost, record_limit_rejection

logger = Logger(child=True)

MINUTE_TTL = timedelta(minutes=5)
DAY_TTL = timedelta(days=40)
MONTH_TTL = timedelta(days=400)
CHARGE_TTL = timedelta(days=90)
USAGE_CHARGES_SHOWN = 20
# DynamoDB cancels a transaction that meets another one writing the same item at that moment
# (reason ``TransactionConflict``), and every request of a customer writes its day and month
# items: such a transaction is tried again, after a short jittered pause, this many times in all.
TRANSACTION_ATTEMPTS = 4
CONFLICT_PAUSE_SECONDS = 0.02  # doubled after each conflict
RESERVED, SETTLED, RELEASED = "reserved", "settled", "released"


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int
    daily_budget_usd: float
    monthly_budget_usd: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests_per_minute": self.requests_per_minute,
            "daily_budget_usd": self.daily_budget_usd,
            "monthly_budget_usd": self.monthly_budget_usd,
        }


@dataclass(frozen=True)
class Charge:
    """A reservation made at admission; what ``settle`` needs to close it."""

    customer_id: int
    charge_id: str
    sort_key: str
    day: str
    month: str
    estimate_usd: float
    provider: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "charge_id": self.charge_id,
            "sort_key": self.sort_key,
            "day": self.day,
            "month": self.month,
            "estimate_usd": self.estimate_usd,
            "provider": self.provider,
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Charge:
        return cls(
            customer_id=int(value["customer_id"]),
            charge_id=str(value["charge_id"]),
            sort_key=str(value["sort_key"]),
            day=str(value["day"]),
            month=str(value["month"]),
            estimate_usd=float(value["estimate_usd"]),
            provider=str(value["provider"]),
        )


# The table as the code expects it (infra/constructs/usage.py deploys the same): pk/sk strings.
TABLE: dict[str, Any] = {
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ],
    "BillingMode": "PAY_PER_REQUEST",
}


def create_table(client, name: str) -> None:
    """Create the usage table (local stack, tests) unless it exists."""
    try:
        client.create_table(TableName=name, **TABLE)
    except client.exceptions.ResourceInUseException:
        return


def utcnow() -> datetime:
    return datetime.now(UTC)


class UsageLedger:
    def __init__(
        self,
        table: str,
        defaults: Limits,
        *,
        client: Any = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table = table
        self.defaults = defaults
        self._client = client
        self.clock = clock
        self.sleep = sleep

    @property
    def client(self):
        return self._client or aws.client("dynamodb")  # the job records' client

    # --- admission ------------------------------------------------------------------------------

    def limits_for(self, customer_id: int) -> Limits:
        """The stage's defaults, with this customer's overrides (if ops wrote any)."""
        item = self._get(customer_id, "limits") or {}
        return Limits(
            requests_per_minute=int(_number(item, "requests_per_minute"))
            if "requests_per_minute" in item
            else self.defaults.requests_per_minute,
            daily_budget_usd=_number(item, "daily_budget_usd")
            if "daily_budget_usd" in item
            else self.defaults.daily_budget_usd,
            monthly_budget_usd=_number(item, "monthly_budget_usd")
            if "monthly_budget_usd" in item
            else self.defaults.monthly_budget_usd,
        )

    def admit(self, customer_id: int, *, estimate_usd: float, provider: str, model: str) -> Charge:
        """Count the request and reserve its estimate, or raise ``CustomerRateLimited`` /
        ``BudgetExceeded`` (each with ``retry_after``) — before any provider is called."""
        now = self.clock()
        limits = self.limits_for(customer_id)
        self._count_request(customer_id, limits, now)
        return self._reserve(customer_id, limits, now, max(0.0, estimate_usd), provider, model)

    def _count_request(self, customer_id: int, limits: Limits, now: datetime) -> None:
        minute = now.strftime("%Y-%m-%dT%H:%M")
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_key(customer_id, f"minute#{minute}"),
                UpdateExpression="ADD requests :one SET expires_at = if_not_exists(expires_at, :ttl)",
                ConditionExpression="attribute_not_exists(requests) OR requests < :limit",
                ExpressionAttributeValues={
                    ":one": _n(1),
                    ":limit": _n(limits.requests_per_minute),
                    ":ttl": _n(_epoch(now + MINUTE_TTL)),
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            record_limit_rejection(CustomerRateLimited.type)
            raise CustomerRateLimited(
                f"More than {limits.requests_per_minute} requests in a minute; "
                "retry after the time in Retry-After.",
                retry_after=max(1, 60 - now.second),
            ) from None
        except Exception as error:
            raise _unavailable(error) from None

    def _reserve(
        self,
        customer_id: int,
        limits: Limits,
        now: datetime,
        estimate: float,
        provider: str,
        model: str,
    ) -> Charge:
        day, month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")
        for window, budget in (
            ("day", limits.daily_budget_usd),
            ("month", limits.monthly_budget_usd),
        ):
            if estimate > budget:  # the estimate alone is over: no write can help
                raise self._budget_exceeded(window, budget, now)
        charge_id = uuid.uuid4().hex
        sort_key = f"charge#{now.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{charge_id}"
        ttl = {"day": _epoch(now + DAY_TTL), "month": _epoch(now + MONTH_TTL)}
        budgets = {"day": limits.daily_budget_usd, "month": limits.monthly_budget_usd}
        windows = {"day": day, "month": month}
        updates = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": _key(customer_id, f"{window}#{windows[window]}"),
                    "UpdateExpression": (
                        "ADD committed_usd :e, reserved_usd :e, charges :one "
                        "SET expires_at = if_not_exists(expires_at, :ttl)"
                    ),
                    # committed + estimate <= budget; with nothing to reserve: committed < budget
                    "ConditionExpression": (
                        "attribute_not_exists(committed_usd) OR committed_usd <= :max"
                        if estimate > 0
                        else "attribute_not_exists(committed_usd) OR committed_usd < :max"
                    ),
                    "ExpressionAttributeValues": {
                        ":e": _n(estimate),
                        ":one": _n(1),
                        ":ttl": _n(ttl[window]),
                        ":max": _n(budgets[window] - estimate if estimate > 0 else budgets[window]),
                    },
                }
            }
            for window in ("day", "month")
        ]
        charge_item = {
            **_key(customer_id, sort_key),
            "charge_id": {"S": charge_id},
            "status": {"S": RESERVED},
            "provider": {"S": provider},
            "model": {"S": model},
            "estimate_usd": _n(estimate),
            "day": {"S": day},
            "month": {"S": month},
            "created_at": {"S": _iso(now)},
            "expires_at": _n(_epoch(now + CHARGE_TTL)),
        }
        put_charge = {
            "Put": {
                "TableName": self.table,
                "Item": charge_item,
                "ConditionExpression": "attribute_not_exists(sk)",
            }
        }
        try:
            cancelled = self._write_transaction([*updates, put_charge])
        except Exception as error:
            raise _unavailable(error) from None
        if cancelled:  # the reasons, item by item: day, month, charge
            for index, window in enumerate(("day", "month")):
                if cancelled[index : index + 1] == ["ConditionalCheckFailed"]:
                    raise self._budget_exceeded(window, budgets[window], now)
            logger.error("usage reservation cancelled", extra={"reasons": cancelled})
            raise StorageError("Usage limits could not be checked; nothing was charged.")
        return Charge(customer_id, charge_id, sort_key, day, month, estimate, provider)

    def _budget_exceeded(self, window: str, budget: float, now: datetime) -> BudgetExceeded:
        record_limit_rejection(BudgetExceeded.type)
        resets = _next_day(now) if window == "day" else _next_month(now)
        period = "daily" if window == "day" else "monthly"
        return BudgetExceeded(
            f"This request would exceed the {period} budget of {budget:g} USD; "
            f"it resets at {_iso(resets)}.",
            retry_after=max(1, int((resets - now).total_seconds())),
        )

    # --- settlement -----------------------------------------------------------------------------

    def settle(self, charge: Charge, cost_usd: float | None, *, job_id: str | None = None) -> None:
        """Replace the reservation by the actual cost (``None``: nothing produced, release it).
        Exactly once per charge; a repeated settle changes nothing. Never raises: the image is
        already made, a bookkeeping failure is logged (and the reservation ages out with the
        day)."""
        actual = max(0.0, cost_usd) if cost_usd is not None else 0.0
        status = SETTLED if cost_usd is not None else RELEASED
        now = self.clock()
        charge_update: dict[str, Any] = {
            "TableName": self.table,
            "Key": _key(charge.customer_id, charge.sort_key),
            "UpdateExpression": "SET #status = :status, cost_usd = :c, settled_at = :at"
            + (", job_id = :job" if job_id else ""),
            "ConditionExpression": "#status = :reserved",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":status": {"S": status},
                ":reserved": {"S": RESERVED},
                ":c": _n(actual),
                ":at": {"S": _iso(now)},
                **({":job": {"S": job_id}} if job_id else {}),
            },
        }
        windows = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": _key(charge.customer_id, sort_key),
                    "UpdateExpression": (
                        "ADD committed_usd :delta, reserved_usd :release, spent_usd :c"
                    ),
                    "ExpressionAttributeValues": {
                        ":delta": _n(actual - charge.estimate_usd),
                        ":release": _n(-charge.estimate_usd),
                        ":c": _n(actual),
                    },
                }
            }
            for sort_key in (f"day#{charge.day}", f"month#{charge.month}")
        ]
        try:
            cancelled = self._write_transaction([{"Update": charge_update}, *windows])
        except Exception as error:
            logger.error(
                "charge not settled",
                extra={"charge_id": charge.charge_id, "error_class": type(error).__name__},
            )
            return
        if cancelled and cancelled[0] == "ConditionalCheckFailed":  # no longer reserved
            logger.info("charge already settled", extra={"charge_id": charge.charge_id})
            return
        if cancelled:
            logger.error(
                "charge not settled", extra={"charge_id": charge.charge_id, "reasons": cancelled}
            )
            return
        if actual > 0:
            record_cost(charge.provider, actual)

    def _write_transaction(self, items: list[dict[str, Any]]) -> list[str]:
        """Write ``items`` as one transaction: ``[]`` when it is written, else the reason
        DynamoDB cancelled it for, item by item (``"None"`` for an item that was not the
        cause). A conflict with another transaction on the same item is tried again."""
        attempts = 0
        while True:
            try:
                self.client.transact_write_items(TransactItems=items)
                return []
            except self.client.exceptions.TransactionCanceledException as error:
                reasons = error.response.get("CancellationReasons") or []
                codes = [str(reason.get("Code") or "None") for reason in reasons] or ["Unknown"]
            attempts += 1
            if "TransactionConflict" not in codes or attempts == TRANSACTION_ATTEMPTS:
                return codes
            self.sleep(random.uniform(0.5, 1.0) * CONFLICT_PAUSE_SECONDS * 2 ** (attempts - 1))

    # --- what the customer sees -----------------------------------------------------------------

    def usage(self, customer_id: int) -> dict[str, Any]:
        now = self.clock()
        limits = self.limits_for(customer_id)
        minute = self._get(customer_id, f"minute#{now.strftime('%Y-%m-%dT%H:%M')}") or {}
        day = self._get(customer_id, f"day#{now.strftime('%Y-%m-%d')}") or {}
        month = self._get(customer_id, f"month#{now.strftime('%Y-%m')}") or {}
        return {
            "customer_id": customer_id,
            "limits": limits.as_dict(),
            "minute": {
                "requests": int(_number(minute, "requests")),
                "limit": limits.requests_per_minute,
                "resets_at": _iso(now.replace(second=0, microsecond=0) + timedelta(minutes=1)),
            },
            "day": _window_view(day, limits.daily_budget_usd, now.strftime("%Y-%m-%d"))
            | {"resets_at": _iso(_next_day(now))},
            "month": _window_view(month, limits.monthly_budget_usd, now.strftime("%Y-%m"))
            | {"resets_at": _iso(_next_month(now))},
            "charges": self._recent_charges(customer_id),
        }

    def _recent_charges(self, customer_id: int) -> list[dict[str, Any]]:
        try:
            answer = self.client.query(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues={
                    ":pk": {"S": _pk(customer_id)},
                    ":prefix": {"S": "charge#"},
                },
                ScanIndexForward=False,
                Limit=USAGE_CHARGES_SHOWN,
            )
        except Exception as error:
            raise _unavailable(error) from None
        charges = []
        for item in answer.get("Items", []):
            charge = {
                "charge_id": item["charge_id"]["S"],
                "status": item["status"]["S"],
                "provider": item["provider"]["S"],
                "model": item["model"]["S"],
                "estimate_usd": _number(item, "estimate_usd"),
                "cost_usd": _number(item, "cost_usd") if "cost_usd" in item else None,
                "created_at": item["created_at"]["S"],
            }
            for optional in ("job_id", "settled_at"):
                if optional in item:
                    charge[optional] = item[optional]["S"]
            charges.append(charge)
        return charges

    def _get(self, customer_id: int, sort_key: str) -> dict[str, Any] | None:
        try:
            answer = self.client.get_item(TableName=self.table, Key=_key(customer_id, sort_key))
        except Exception as error:
            raise _unavailable(error) from None
        return answer.get("Item")


# --- helpers -------------------------------------------------------------------------------------


def _pk(customer_id: int) -> str:
    return f"customer#{customer_id}"


def _key(customer_id: int, sort_key: str) -> dict[str, Any]:
    return {"pk": {"S": _pk(customer_id)}, "sk": {"S": sort_key}}


def _n(value: float) -> dict[str, str]:
    """A DynamoDB number; money to the micro-dollar, so sums stay exact."""
    text = f"{value:.6f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return {"N": "0" if text in ("", "-0") else text}


def _number(item: dict[str, Any], name: str) -> float:
    value = item.get(name)
    return round(float(value["N"]), 6) if value else 0.0


def _window_view(item: dict[str, Any], budget: float, period: str) -> dict[str, Any]:
    committed = _number(item, "committed_usd")
    return {
        "period": period,
        "spent_usd": _number(item, "spent_usd"),
        "reserved_usd": _number(item, "reserved_usd"),
        "budget_usd": budget,
        "remaining_usd": round(max(0.0, budget - committed), 6),
        "charges": int(_number(item, "charges")),
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _next_day(now: datetime) -> datetime:
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def _next_month(now: datetime) -> datetime:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


def _unavailable(error: Exception) -> StorageError:
    logger.error("usage table unavailable", extra={"error_class": type(error).__name__})
    return StorageError("Usage limits could not be checked; nothing was charged.")


def usage_ledger_for(settings: Any) -> UsageLedger | None:
    """The deployment's ledger (``USAGE_TABLE`` and the stage's default limits), or none."""
    if not settings.usage_table:
        return None
    defaults = Limits(
        requests_per_minute=settings.rate_limit_per_minute,
        daily_budget_usd=settings.daily_budget_usd,
        monthly_budget_usd=settings.monthly_budget_usd,
    )
    return UsageLedger(settings.usage_table, defaults)
