"""DynamoDB persistence of batches and their chunks (state table; layout in docs/design.md).

Items are `models.records.BatchRecord`s. Every status change is one conditional UpdateItem: racing
writers cannot both win. Which status may follow which is the domain's rule (`domain/status.py`, which
calls `transition` with the allowed predecessors); a change that won is then published as an event.
Chunk items are `adapters/chunk_store.py`'s.
"""
from __future__ import annotations

import functools
import hashlib
import time
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError
from pydantic import TypeAdapter

from batchgate import aws
from batchgate.adapters.events import EventPublisher
from batchgate.domain.status import TERMINAL
from batchgate.models.records import USAGE_FIELDS, BatchRecord
from batchgate.observability import batch_ended, logger


def tenant_pk(tenant: str) -> str:
    return f"T#{tenant}"


def batch_sk(batch_id: str) -> str:
    return f"BATCH#{batch_id}"


def chunk_pk(batch_id: str) -> str:
    return f"B#{batch_id}"


def chunk_sk(n: int) -> str:
    return f"CHUNK#{n:06d}"


def plain(value: Any) -> Any:
    """DynamoDB values back to plain Python (Decimal -> int/float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# Fields a record leaves absent until a worker ADDs to them (an ADD needs a number or no attribute).
_ADDED_LATER = frozenset(USAGE_FIELDS)


def _check_fields(fields: dict[str, Any]) -> None:
    """A partial update names only fields `BatchRecord` declares: the item's shape has one definition."""
    unknown = set(fields) - set(BatchRecord.model_fields)
    if unknown:
        raise ValueError(f"not BatchRecord fields: {sorted(unknown)}")
    for name, value in fields.items():  # and each value has the declared type
        _field_type(name).validate_python(value)


@functools.cache
def _field_type(name: str) -> TypeAdapter[Any]:
    annotation = BatchRecord.model_fields[name].annotation
    assert annotation is not None  # every field of the record is annotated
    return TypeAdapter(annotation)


def is_conditional_failure(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] in ("ConditionalCheckFailedException",
                                             "TransactionCanceledException")


class BatchStore:
    def __init__(self, table_name: str, events: EventPublisher):
        self.table_name = table_name
        self.events = events

    @property
    def table(self):
        return aws.resource("dynamodb").Table(self.table_name)

    # -- batches -------------------------------------------------------------------------------
    def put_new(self, record: BatchRecord) -> None:
        # Usage sums stay absent (workers ADD to them); every other field is written, nulls included.
        fields = record.model_dump(exclude_none=False)
        fields = {k: v for k, v in fields.items() if v is not None or k not in _ADDED_LATER}
        item = {"pk": tenant_pk(record.tenant), "sk": batch_sk(record.id), **fields}
        self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")

    def get(self, tenant: str, batch_id: str, consistent: bool = False) -> BatchRecord | None:
        resp = self.table.get_item(Key={"pk": tenant_pk(tenant), "sk": batch_sk(batch_id)},
                                   ConsistentRead=consistent)
        item = resp.get("Item")
        return BatchRecord.from_item(plain(item)) if item else None

    def list(self, tenant: str, limit: int, after: str | None) -> tuple[list[BatchRecord], bool]:
        """Newest first (ids are time-prefixed, so key order is time order)."""
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("pk").eq(tenant_pk(tenant)) & Key("sk").begins_with("BATCH#"),
            "ScanIndexForward": False, "Limit": limit + 1}
        if after:
            kwargs["ExclusiveStartKey"] = {"pk": tenant_pk(tenant), "sk": batch_sk(after)}
        items: list[dict[str, Any]] = []
        while len(items) < limit + 1:
            resp = self.table.query(**kwargs)
            items.extend(resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        return [BatchRecord.from_item(plain(i)) for i in items[:limit]], len(items) > limit

    def transition(self, tenant: str, batch_id: str, to: str, *, allowed_from: Iterable[str],
                   timestamp_field: str, extra: dict[str, Any] | None = None,
                   at: int | None = None) -> BatchRecord | None:
        """Move the batch to `to` if its status is one of `allowed_from`; set `timestamp_field` and
        `extra`. Returns the new record, or None when the condition failed (someone else moved it
        first). Called through `domain.status.transition`, which owns the rule."""
        _check_fields(extra or {})
        froms = tuple(allowed_from)
        now = int(time.time()) if at is None else at
        # A unique token tells our own write apart from a rival's when the answer to an applied
        # write is lost and botocore's retry then fails the condition.
        token = uuid.uuid4().hex
        sets = {"status": to, timestamp_field: now, **(extra or {}), "status_token": token}
        names = {f"#f{i}": k for i, k in enumerate(sets)}
        values = {f":v{i}": v for i, v in enumerate(sets.values())}
        froms_ph = {f":from{i}": s for i, s in enumerate(froms)}
        names["#status"] = "status"
        try:
            resp = self.table.update_item(
                Key={"pk": tenant_pk(tenant), "sk": batch_sk(batch_id)},
                UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(sets))),
                ConditionExpression=f"attribute_exists(pk) AND #status IN ({', '.join(froms_ph)})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={**values, **froms_ph},
                ReturnValues="ALL_NEW")
            record = BatchRecord.from_item(plain(resp["Attributes"]))
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
            found = self.get(tenant, batch_id, consistent=True)
            if not found or found.status != to or found.status_token != token:
                return None
            record = found
        self.events.batch_status(tenant, batch_id, to, now, record)
        if to in TERMINAL:
            try:
                batch_ended(to, now - record.created_at)
            except Exception:  # a metric never undoes a status change
                logger.exception("batch duration metric not emitted")
        return record

    def update_fields(self, tenant: str, batch_id: str, fields: dict[str, Any], *,
                      require_status: Iterable[str] | None = None) -> bool:
        """Set fields without a status change (e.g. the task token), optionally only in given states."""
        _check_fields(fields)
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":v{i}": v for i, v in enumerate(fields.values())}
        cond = "attribute_exists(pk)"
        if require_status:
            ph = {f":s{i}": s for i, s in enumerate(require_status)}
            values.update(ph)
            names["#status"] = "status"
            cond += f" AND #status IN ({', '.join(ph)})"
        try:
            self.table.update_item(
                Key={"pk": tenant_pk(tenant), "sk": batch_sk(batch_id)},
                UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
                ConditionExpression=cond, ExpressionAttributeNames=names,
                ExpressionAttributeValues=values)
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    # -- idempotent create (added by the batches API) -----------------------------------------
    def claim_idempotency_key(self, tenant: str, key: str, batch_id: str, fingerprint: str,
                              expires_at: int) -> dict[str, Any]:
        """Bind `key` to `batch_id` unless it is already bound; return the binding that holds
        (`batch_id`, `fingerprint`). Items live under the tenant's pk, so keys never cross tenants."""
        k = {"pk": tenant_pk(tenant), "sk": "IDEM#" + hashlib.sha256(key.encode()).hexdigest()}
        item = {**k, "batch_id": batch_id, "fingerprint": fingerprint, "ttl": expires_at}
        try:
            # An expired binding may linger until DynamoDB's TTL sweep: it no longer counts.
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk) OR #ttl < :now",
                                ExpressionAttributeNames={"#ttl": "ttl"},
                                ExpressionAttributeValues={":now": int(time.time())})
            return item
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
        return plain(self.table.get_item(Key=k, ConsistentRead=True)["Item"])
