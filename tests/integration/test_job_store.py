"""The job store on DynamoDB (moto): conditional creation, optimistic updates, idempotency keys
with their window, the per-customer listing (newest first, opaque cursor), and TTL."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from image_common.errors import InvalidRequest, StorageError
from image_service.job_records import JobRecord, new_job_id, utcnow
from image_service.job_store import (
    IdempotencyClaim,
    IdempotencyKeyTaken,
    JobStore,
    StaleRecord,
    decode_cursor,
    encode_cursor,
)
from tests.conftest import TEST_JOBS_TABLE

TTL = 2_000_000_000


@pytest.fixture
def store(dynamodb) -> JobStore:
    return JobStore(TEST_JOBS_TABLE)


def job(customer_id: int = 123, *, seconds_ago: float = 0) -> JobRecord:
    created = utcnow() - timedelta(seconds=seconds_ago)
    return JobRecord(
        job_id=new_job_id(), customer_id=customer_id, status="pending", provider="openai",
        model="gpt-image-1", created_at=created, updated_at=created, budget_seconds=60,
        expected_seconds=30,
    )  # fmt: skip


def claim(key: str = "k", fingerprint: str = "f", customer_id: int = 123, expires_in: int = 60):
    expires = int(utcnow().timestamp()) + expires_in
    return IdempotencyClaim.of(customer_id, key, fingerprint, expires_at=expires)


def test_a_job_is_created_once_and_read_back(store, dynamodb):
    record = job()
    store.create(record, ttl_at=TTL, claim=None)
    assert store.get(record.job_id) == record
    with pytest.raises(StorageError):  # the same id again: the condition refuses it
        store.create(record, ttl_at=TTL, claim=None)
    item = dynamodb.get_item(TableName=TEST_JOBS_TABLE, Key={"pk": {"S": f"job#{record.job_id}"}})
    assert item["Item"]["expires_at"] == {"N": str(TTL)} and item["Item"]["customer"] == {
        "S": "123"
    }
    ttl = dynamodb.describe_time_to_live(TableName=TEST_JOBS_TABLE)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_a_malformed_id_is_no_job(store):
    assert store.get("../../x") is None and store.get("f" * 31) is None


def test_an_update_lands_only_on_the_version_it_read(store):
    record = job()
    store.create(record, ttl_at=TTL, claim=None)
    claimed = store.save(record.changed(utcnow(), status="running"))
    assert claimed.version == 1 and store.get(record.job_id).status == "running"
    with pytest.raises(StaleRecord):  # a second worker, with what it read before the claim
        store.save(record.changed(utcnow(), status="running"))


def test_an_idempotency_key_is_taken_with_its_job_in_one_transaction(store):
    first, key = job(), claim("order-1", "body-a")
    store.create(first, ttl_at=TTL, claim=key)
    found = store.find_idempotent(key, utcnow())
    assert (found.job_id, found.fingerprint) == (first.job_id, "body-a")
    second = job()
    with pytest.raises(IdempotencyKeyTaken):
        store.create(second, ttl_at=TTL, claim=claim("order-1", "body-b"))
    assert store.get(second.job_id) is None  # the transaction wrote neither item


def test_an_expired_key_is_free_again(store):
    old = claim("order-2", expires_in=-1)
    store.create(job(), ttl_at=TTL, claim=old)
    assert store.find_idempotent(old, utcnow()) is None
    fresh = job()
    store.create(fresh, ttl_at=TTL, claim=claim("order-2"))
    assert store.find_idempotent(claim("order-2"), utcnow()).job_id == fresh.job_id


def test_keys_are_per_customer_and_hashed(store, dynamodb):
    store.create(job(123), ttl_at=TTL, claim=claim("same", customer_id=123))
    store.create(job(456), ttl_at=TTL, claim=claim("same", customer_id=456))
    items = dynamodb.scan(TableName=TEST_JOBS_TABLE)["Items"]
    keys = [i["pk"]["S"] for i in items if i["pk"]["S"].startswith("idem#")]
    assert len(keys) == 2 and not any("same" in k for k in keys)


def test_the_listing_is_the_customers_newest_first_in_pages(store):
    mine = [job(123, seconds_ago=30 - i) for i in range(5)]
    for record in mine:
        store.create(record, ttl_at=TTL, claim=claim(record.job_id, customer_id=123))
    store.create(job(456), ttl_at=TTL, claim=None)
    seen, cursor = [], None
    while True:
        page, cursor = store.list_for_customer(123, limit=2, cursor=cursor)
        seen += [r.job_id for r in page]
        if cursor is None:
            break
    assert seen == [r.job_id for r in reversed(mine)]  # no idempotency item, nobody else's


def test_a_cursor_round_trips_and_is_bound_to_its_customer():
    record = job()
    last = {"pk": {"S": f"job#{record.job_id}"}, "customer": {"S": "123"},
            "created": {"S": f"{record.created_at.isoformat()}#{record.job_id}"}}  # fmt: skip
    cursor = encode_cursor(last)
    assert decode_cursor(cursor, 123) == last
    with pytest.raises(InvalidRequest):
        decode_cursor(cursor, 456)


@pytest.mark.parametrize(
    "plain",
    [{"pk": "idem#123#x", "customer": "123", "created": "t#x"},
     {"pk": "job#" + "a" * 32, "customer": "123", "created": "t#" + "b" * 32},
     {"pk": "job#" + "a" * 32, "customer": "123"},
     {"pk": "job#" + "a" * 32, "customer": "123", "created": "t#" + "a" * 32, "x": "1"},
     ["not", "an", "object"]],
)  # fmt: skip
def test_a_forged_cursor_is_refused(plain):
    cursor = base64.urlsafe_b64encode(json.dumps(plain).encode()).decode()
    with pytest.raises(InvalidRequest):
        decode_cursor(cursor, 123)


def test_a_store_failure_is_a_typed_502_without_aws_detail(dynamodb):
    missing = JobStore("no-such-table")
    with pytest.raises(StorageError) as raised:
        missing.get(new_job_id())
    assert raised.value.status == 502 and "no-such-table" not in raised.value.message
