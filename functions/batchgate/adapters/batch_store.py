"""DynamoDB persistence of batches and their tenants' quota counters (state table; layout in
docs/design.md). Chunk items are `adapters/chunk_store.py`'s.

Items are `models.records.BatchRecord`s. Every status change is one conditional write: racing writers
cannot both win. Which status may follow which is the domain's rule (`domain/status.py`, which calls
`transition` with the allowed predecessors); a change that won is then published as an event. A
tenant's quota counters (sk `QUOTA#ACTIVE` and `QUOTA#TOKENS#<model>`, attribute `n`) change only in
the same transaction as the batch item that takes or gives back its share.
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
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError
from pydantic import TypeAdapter

from batchgate import aws
from batchgate.adapters.events import EventPublisher
from batchgate.domain.ports import QuotaExceeded
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


QUOTA_ACTIVE_SK = "QUOTA#ACTIVE"


def quota_tokens_sk(model: str | None) -> str:
    return f"QUOTA#TOKENS#{model or ''}"


_ser = TypeSerializer()


def av(values: dict[str, Any]) -> dict[str, Any]:
    """Plain values -> DynamoDB attribute values (for the low-level client's transactions)."""
    return {k: _ser.serialize(v) for k, v in values.items()}


def plain(value: Any) -> Any:
    """DynamoDB values back to plain Python (Decimal -> int/float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# Fields a new item leaves absent (not null): workers ADD to the usage sums (an ADD needs a number or
# no attribute), and the quota writes are conditioned on `attribute_not_exists`.
_ADDED_LATER = frozenset(USAGE_FIELDS) | {"quota_tokens", "quota_model", "quota_released"}


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


def _failed_condition(exc: ClientError, index: int) -> bool:
    """Whether item `index` of a cancelled transaction failed its condition."""
    reasons = exc.response.get("CancellationReasons") or []
    return (exc.response["Error"]["Code"] == "TransactionCanceledException" and index < len(reasons)
            and reasons[index].get("Code") == "ConditionalCheckFailed")


def _held(record: BatchRecord) -> list[tuple[str, int]]:
    """What the batch holds of its tenant's counters: (counter sk, amount to give back)."""
    if record.quota_released:
        return []
    held = [(QUOTA_ACTIVE_SK, -1)] if record.quota_active else []
    if record.quota_tokens:
        held.append((quota_tokens_sk(record.quota_model), -record.quota_tokens))
    return held


class BatchStore:
    def __init__(self, table_name: str, events: EventPublisher):
        self.table_name = table_name
        self.events = events

    @property
    def table(self):
        return aws.resource("dynamodb").Table(self.table_name)

    # -- batches -------------------------------------------------------------------------------
    def put_new(self, record: BatchRecord, *, active_limit: int | None = None) -> BatchRecord:
        """Store a new batch and count it among its tenant's active batches, together or not at all;
        returns what was stored. Raises QuotaExceeded, storing nothing, when the tenant already has
        `active_limit` of them."""
        record = record.model_copy(update={"quota_active": True})
        # Usage sums stay absent (workers ADD to them); every other field is written, nulls included.
        fields = record.model_dump(exclude_none=False)
        fields = {k: v for k, v in fields.items() if v is not None or k not in _ADDED_LATER}
        item = {"pk": tenant_pk(record.tenant), "sk": batch_sk(record.id), **fields}
        try:
            aws.client("dynamodb").transact_write_items(TransactItems=[
                {"Put": {"TableName": self.table_name, "Item": av(item),
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Update": self._count(record.tenant, QUOTA_ACTIVE_SK, 1, active_limit)}])
        except ClientError as exc:
            if active_limit is not None and _failed_condition(exc, 1):
                raise QuotaExceeded(active_limit, self.quota_count(record.tenant, QUOTA_ACTIVE_SK)) from None
            raise
        return record

    def reserve_tokens(self, tenant: str, batch_id: str, model: str | None, tokens: int,
                       limit: int | None) -> None:
        """Count a validating batch's estimated prompt tokens as enqueued for `model`, once: a re-run
        (or a batch no longer validating) changes nothing. Raises QuotaExceeded over `limit`."""
        counter = quota_tokens_sk(model)
        if limit is not None and tokens > limit:
            raise QuotaExceeded(limit, self.quota_count(tenant, counter))
        batch_update = {
            "TableName": self.table_name, "Key": av({"pk": tenant_pk(tenant), "sk": batch_sk(batch_id)}),
            "UpdateExpression": "SET quota_tokens = :t, quota_model = :m",
            "ConditionExpression": "#status = :validating AND attribute_not_exists(quota_tokens)",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": av({":t": tokens, ":m": model, ":validating": "validating"})}
        try:
            aws.client("dynamodb").transact_write_items(TransactItems=[
                {"Update": batch_update}, {"Update": self._count(tenant, counter, tokens, limit)}])
        except ClientError as exc:
            if _failed_condition(exc, 0):
                return  # counted by an earlier run, or no longer validating: nothing to count
            if limit is not None and _failed_condition(exc, 1):
                raise QuotaExceeded(limit, self.quota_count(tenant, counter)) from None
            raise

    def quota_count(self, tenant: str, sk: str) -> int:
        item = self.table.get_item(Key={"pk": tenant_pk(tenant), "sk": sk}, ConsistentRead=True).get("Item")
        return int(item.get("n", 0)) if item else 0

    def _count(self, tenant: str, sk: str, delta: int, limit: int | None = None) -> dict[str, Any]:
        """A counter update for a transaction: ADD `delta`, refused if the total would pass `limit`."""
        update: dict[str, Any] = {
            "TableName": self.table_name, "Key": av({"pk": tenant_pk(tenant), "sk": sk}),
            "UpdateExpression": "ADD #n :d", "ExpressionAttributeNames": {"#n": "n"},
            "ExpressionAttributeValues": av({":d": delta})}
        if limit is not None:
            update["ConditionExpression"] = "attribute_not_exists(#n) OR #n <= :room"
            update["ExpressionAttributeValues"].update(av({":room": limit - delta}))
        return update

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
                   at: int | None = None, release_quota: bool = False) -> BatchRecord | None:
        """Move the batch to `to` if its status is one of `allowed_from`; set `timestamp_field` and
        `extra`. Returns the new record, or None when the condition failed (someone else moved it
        first). Called through `domain.status.transition`, which owns the rule; with `release_quota`
        (a terminal status) the same transaction gives back the batch's share of its tenant's quotas."""
        _check_fields(extra or {})
        froms = tuple(allowed_from)
        now = int(time.time()) if at is None else at
        # A unique token tells our own write apart from a rival's when the answer to an applied
        # write is lost and botocore's retry then fails the condition.
        token = uuid.uuid4().hex
        sets = {"status": to, timestamp_field: now, **(extra or {}), "status_token": token}
        try:
            record = self._release_and_move(tenant, batch_id, froms, sets) if release_quota else \
                self._move(tenant, batch_id, froms, sets)
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
            record = None
        if record is None:
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

    @staticmethod
    def _set_clause(sets: dict[str, Any], froms: tuple[str, ...]) -> tuple[str, str, dict[str, str], dict[str, Any]]:
        names = {f"#f{i}": k for i, k in enumerate(sets)}
        values = {f":v{i}": v for i, v in enumerate(sets.values())}
        froms_ph = {f":from{i}": s for i, s in enumerate(froms)}
        names["#status"] = "status"
        return ("SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(sets))),
                f"attribute_exists(pk) AND #status IN ({', '.join(froms_ph)})", names, {**values, **froms_ph})

    def _move(self, tenant: str, batch_id: str, froms: tuple[str, ...], sets: dict[str, Any]) -> BatchRecord:
        update, condition, names, values = self._set_clause(sets, froms)
        resp = self.table.update_item(
            Key={"pk": tenant_pk(tenant), "sk": batch_sk(batch_id)}, UpdateExpression=update,
            ConditionExpression=condition, ExpressionAttributeNames=names, ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW")
        return BatchRecord.from_item(plain(resp["Attributes"]))

    def _release_and_move(self, tenant: str, batch_id: str, froms: tuple[str, ...],
                          sets: dict[str, Any]) -> BatchRecord | None:
        """The status write and the counters' give-back in one transaction, on the share the batch
        held when read (a share taken since fails the condition and is read again)."""
        for _ in range(3):
            current = self.get(tenant, batch_id, consistent=True)
            if current is None or current.status not in froms:
                return None
            held = _held(current)
            if not held:
                return self._move(tenant, batch_id, froms, sets)
            update, condition, names, values = self._set_clause({**sets, "quota_released": True}, froms)
            condition += " AND attribute_not_exists(quota_released) AND " + (
                "quota_tokens = :qt" if current.quota_tokens else "attribute_not_exists(quota_tokens)")
            if current.quota_tokens:
                values[":qt"] = current.quota_tokens
            items = [{"Update": {"TableName": self.table_name,
                                 "Key": av({"pk": tenant_pk(tenant), "sk": batch_sk(batch_id)}),
                                 "UpdateExpression": update, "ConditionExpression": condition,
                                 "ExpressionAttributeNames": names, "ExpressionAttributeValues": av(values)}}]
            items += [{"Update": self._count(tenant, sk, delta)} for sk, delta in held]
            try:
                # botocore's retry of this very request (a lost answer) reuses the token, which makes
                # it idempotent on DynamoDB's side; a new attempt here is new parameters, so a new token.
                aws.client("dynamodb").transact_write_items(TransactItems=items,
                                                            ClientRequestToken=uuid.uuid4().hex)
            except ClientError as exc:
                if not _failed_condition(exc, 0):
                    raise
                continue  # moved by a rival, or its share changed: read again
            return self.get(tenant, batch_id, consistent=True)
        return None

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

    def release_idempotency_key(self, tenant: str, key: str, batch_id: str) -> None:
        """Unbind `key` if it is still bound to `batch_id` (a create that stored nothing)."""
        k = {"pk": tenant_pk(tenant), "sk": "IDEM#" + hashlib.sha256(key.encode()).hexdigest()}
        try:
            self.table.delete_item(Key=k, ConditionExpression="batch_id = :b",
                                   ExpressionAttributeValues={":b": batch_id})
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
