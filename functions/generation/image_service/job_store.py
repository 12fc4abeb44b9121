"""Job records and idempotency keys in DynamoDB: conditional writes, TTL, a per-customer index.

One table (its schema is ``TABLE`` below; ``infra/constructs/job_table.py`` deploys the same,
a test keeps them in step) holds two kinds of item:

- a job: ``pk = job#{job_id}``, the record as JSON, its ``version`` and, for the listing index,
  ``customer`` and ``created`` (``{created_at}#{job_id}``, so the newest sort last);
- an idempotency key: ``pk = idem#{customer_id}#{sha256(key)}``, the job it started and the
  fingerprint of the request body it came with. It has no ``customer`` attribute, so the
  index (sparse) never lists it.

Every write is conditional: a job is created once, an idempotency key is taken once (unless
it has expired), and an update only lands on the version it read — two workers can never both
claim a job, and a final record is never overwritten.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from image_common.errors import InvalidRequest, StorageError
from image_service import aws
from image_service.job_records import JOB_ID, JobRecord

logger = Logger(child=True)

PARTITION_KEY = "pk"
INDEX_NAME = "by_customer"
INDEX_PARTITION_KEY = "customer"
INDEX_SORT_KEY = "created"
TTL_ATTRIBUTE = "expires_at"
IDEMPOTENCY_KEY_PREFIX = "idem#"  # the generation role may delete these items, and only these
# The table as the code expects it: the local stack and the tests create it from this.
TABLE: dict[str, Any] = {
    "AttributeDefinitions": [
        {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
        {"AttributeName": INDEX_PARTITION_KEY, "AttributeType": "S"},
        {"AttributeName": INDEX_SORT_KEY, "AttributeType": "S"},
    ],
    "KeySchema": [{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": INDEX_NAME,
            "KeySchema": [
                {"AttributeName": INDEX_PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": INDEX_SORT_KEY, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ],
    "BillingMode": "PAY_PER_REQUEST",
}
MAX_LIST_LIMIT = 100


def create_table(client, name: str) -> None:
    """Create the table (local stack, tests) unless it exists, with TTL on ``expires_at``."""
    try:
        client.create_table(TableName=name, **TABLE)
    except client.exceptions.ResourceInUseException:
        return
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})
    client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )


class StaleRecord(Exception):
    """The record changed since it was read (another worker, or it is final already)."""


class IdempotencyKeyTaken(Exception):
    """The idempotency key is held by a job created since it was looked up."""


@dataclass(frozen=True)
class IdempotencyClaim:
    """A customer's idempotency key, hashed, with the fingerprint of the body it came with."""

    customer_id: int
    key_hash: str
    fingerprint: str
    expires_at: int  # epoch seconds

    @classmethod
    def of(cls, customer_id: int, key: str, fingerprint: str, *, expires_at: int):
        key_hash = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return cls(customer_id, key_hash, fingerprint, expires_at)

    @property
    def pk(self) -> str:
        return f"{IDEMPOTENCY_KEY_PREFIX}{self.customer_id}#{self.key_hash}"


@dataclass(frozen=True)
class IdempotentJob:
    job_id: str
    fingerprint: str


def _job_pk(job_id: str) -> str:
    return f"job#{job_id}"


class JobStore:
    def __init__(self, table: str, client=None) -> None:
        self.table = table
        self._client = client

    @property
    def client(self):
        return self._client or aws.client("dynamodb")

    # --- writes ----------------------------------------------------------------------------

    def create(self, record: JobRecord, *, ttl_at: int, claim: IdempotencyClaim | None) -> None:
        """Write a new job — and take its idempotency key in the same transaction."""
        job = {
            "Put": {
                "TableName": self.table,
                "Item": self._item(record, ttl_at),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        if claim is None:
            self._call("create", self.client.transact_write_items, TransactItems=[job])
            return
        key = {
            "Put": {
                "TableName": self.table,
                "Item": {
                    PARTITION_KEY: {"S": claim.pk},
                    "job_id": {"S": record.job_id},
                    "fingerprint": {"S": claim.fingerprint},
                    TTL_ATTRIBUTE: {"N": str(claim.expires_at)},
                },
                # Taken, unless it has expired (TTL deletes items only eventually).
                "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now",
                "ExpressionAttributeValues": {
                    ":now": {"N": str(int(record.created_at.timestamp()))}
                },
            }
        }
        try:
            self.client.transact_write_items(TransactItems=[key, job])
        except self.client.exceptions.TransactionCanceledException as error:
            reasons = error.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                raise IdempotencyKeyTaken() from None
            raise self._storage_error("create", error) from None
        except Exception as error:
            raise self._storage_error("create", error) from None

    def save(self, record: JobRecord) -> JobRecord:
        """Write ``record`` over the version it was read at; ``StaleRecord`` if it moved on."""
        saved = record.model_copy(update={"version": record.version + 1})
        try:
            self.client.update_item(
                TableName=self.table,
                Key={PARTITION_KEY: {"S": _job_pk(record.job_id)}},
                UpdateExpression="SET #record = :record, #version = :next, #status = :status",
                ConditionExpression="#version = :read",
                ExpressionAttributeNames={
                    "#record": "record",
                    "#version": "version",
                    "#status": "status",
                },
                ExpressionAttributeValues={
                    ":record": {"S": _dump(saved)},
                    ":next": {"N": str(saved.version)},
                    ":read": {"N": str(record.version)},
                    ":status": {"S": saved.status},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise StaleRecord() from None
        except Exception as error:
            raise self._storage_error("save", error) from None
        return saved

    # --- reads -----------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        if not JOB_ID.match(job_id):
            return None
        answer = self._call(
            "read",
            self.client.get_item,
            TableName=self.table,
            Key={PARTITION_KEY: {"S": _job_pk(job_id)}},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        return None if item is None else _record(item)

    def find_idempotent(self, claim: IdempotencyClaim, now: datetime) -> IdempotentJob | None:
        answer = self._call(
            "read",
            self.client.get_item,
            TableName=self.table,
            Key={PARTITION_KEY: {"S": claim.pk}},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        if item is None or int(item[TTL_ATTRIBUTE]["N"]) < now.timestamp():
            return None
        return IdempotentJob(item["job_id"]["S"], item["fingerprint"]["S"])

    def release(self, claim: IdempotencyClaim, job_id: str) -> None:
        """Free an idempotency key once its job's answer was delivered — only while it still
        names that job (a conditional delete: a newer job's claim is never removed)."""
        try:
            self.client.delete_item(
                TableName=self.table,
                Key={PARTITION_KEY: {"S": claim.pk}},
                ConditionExpression="job_id = :job",
                ExpressionAttributeValues={":job": {"S": job_id}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            pass  # already released, expired or taken by another job: nothing of ours to free
        except Exception as error:
            raise self._storage_error("release", error) from None

    def list_for_customer(
        self, customer_id: int, *, limit: int, cursor: str | None
    ) -> tuple[list[JobRecord], str | None]:
        """The customer's jobs, newest first; ``cursor`` continues where the last page ended."""
        query: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": INDEX_NAME,
            "KeyConditionExpression": "#customer = :customer",
            "ExpressionAttributeNames": {"#customer": INDEX_PARTITION_KEY},
            "ExpressionAttributeValues": {":customer": {"S": str(customer_id)}},
            "ScanIndexForward": False,
            "Limit": max(1, min(limit, MAX_LIST_LIMIT)),
        }
        if cursor:
            query["ExclusiveStartKey"] = decode_cursor(cursor, customer_id)
        answer = self._call("list", self.client.query, **query)
        records = [_record(item) for item in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        return records, encode_cursor(last) if last else None

    # --- helpers ---------------------------------------------------------------------------

    def _item(self, record: JobRecord, ttl_at: int) -> dict[str, Any]:
        return {
            PARTITION_KEY: {"S": _job_pk(record.job_id)},
            INDEX_PARTITION_KEY: {"S": str(record.customer_id)},
            INDEX_SORT_KEY: {"S": f"{record.created_at.isoformat()}#{record.job_id}"},
            "record": {"S": _dump(record)},
            "version": {"N": str(record.version)},
            "status": {"S": record.status},
            TTL_ATTRIBUTE: {"N": str(ttl_at)},
        }

    def _call(self, what: str, method, **kwargs):
        try:
            return method(**kwargs)
        except Exception as error:
            raise self._storage_error(what, error) from None

    @staticmethod
    def _storage_error(what: str, error: Exception) -> StorageError:
        # botocore's detail (table ARN, account) stays in no answer; its class goes to the log.
        logger.error(
            "job store failed", extra={"operation": what, "error_class": type(error).__name__}
        )
        return StorageError(f"The job record could not be {_VERBS.get(what, 'written')}.")


_VERBS = {"read": "read", "list": "listed", "create": "created", "save": "updated"}


def _dump(record: JobRecord) -> str:
    return record.model_dump_json(exclude_none=True)


def _record(item: dict[str, Any]) -> JobRecord:
    record = JobRecord.model_validate_json(item["record"]["S"])
    return record.model_copy(update={"version": int(item["version"]["N"])})


# --- the listing's cursor -------------------------------------------------------------------------


def encode_cursor(last_key: dict[str, Any]) -> str:
    """DynamoDB's LastEvaluatedKey as an opaque, URL-safe token."""
    plain = {name: value["S"] for name, value in last_key.items()}
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, customer_id: int) -> dict[str, Any]:
    """A cursor this service issued for this customer, or a 400 — never a key of another
    customer's partition, and never a malformed key handed to DynamoDB."""
    invalid = InvalidRequest("The cursor is not valid; use the next_cursor of a listing.")
    try:
        plain = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise invalid from None
    expected = {PARTITION_KEY, INDEX_PARTITION_KEY, INDEX_SORT_KEY}
    if not isinstance(plain, dict) or set(plain) != expected:
        raise invalid
    if not all(isinstance(v, str) and len(v) < 200 for v in plain.values()):
        raise invalid
    if plain[INDEX_PARTITION_KEY] != str(customer_id):
        raise invalid
    job_id = plain[PARTITION_KEY].removeprefix("job#")
    if not plain[PARTITION_KEY].startswith("job#") or not JOB_ID.match(job_id):
        raise invalid
    if not plain[INDEX_SORT_KEY].endswith("#" + job_id):
        raise invalid
    return {name: {"S": value} for name, value in plain.items()}
