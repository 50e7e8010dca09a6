"""Chunk items of a batch (pk `B#<batch>`, sk `CHUNK#<n:06d>`) and the one transaction that commits a
segment: chunk cursor moves (only for the lease holder, only from the cursor it read) and the batch's
counters and usage are ADDed, together or not at all."""
from __future__ import annotations

from collections.abc import Iterable

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from batchgate import aws
from batchgate.adapters.batch_store import av, batch_sk, chunk_pk, chunk_sk, is_conditional_failure, plain, tenant_pk
from batchgate.models.engine import USAGE_FIELDS, ChunkRecord, ChunkSpec, SegmentRecord


def _record(item: dict) -> ChunkRecord:
    return ChunkRecord.model_validate(plain(item))


class ChunkStore:
    def __init__(self, table_name: str):
        self.table_name = table_name

    @property
    def table(self):
        return aws.resource("dynamodb").Table(self.table_name)

    def _key(self, batch_id: str, n: int) -> dict:
        return {"pk": chunk_pk(batch_id), "sk": chunk_sk(n)}

    def put_all(self, batch_id: str, tenant: str, chunks: Iterable[ChunkSpec], ttl: int | None) -> None:
        """Write the manifest (deterministic, so a re-run simply rewrites the same items)."""
        with self.table.batch_writer() as w:
            for c in chunks:
                item = {**self._key(batch_id, c.n), "batch_id": batch_id, "tenant": tenant,
                        **c.model_dump(), "next_line": c.first_line, "next_byte": c.byte_start,
                        "state": "open", "segments": 0, "claims": 0}
                if ttl:
                    item["ttl"] = ttl
                w.put_item(Item=item)

    def get(self, batch_id: str, n: int) -> ChunkRecord | None:
        item = self.table.get_item(Key=self._key(batch_id, n), ConsistentRead=True).get("Item")
        return _record(item) if item else None

    def list(self, batch_id: str) -> list[ChunkRecord]:
        kwargs = {"KeyConditionExpression": Key("pk").eq(chunk_pk(batch_id)), "ConsistentRead": True}
        out: list[ChunkRecord] = []
        while True:
            resp = self.table.query(**kwargs)
            out.extend(_record(i) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return sorted(out, key=lambda c: c.n)
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def claim(self, batch_id: str, n: int, owner: str, lease_until: float, now: float) -> ChunkRecord | None:
        """Take the lease if the chunk is open and nobody holds a live lease."""
        try:
            resp = self.table.update_item(
                Key=self._key(batch_id, n),
                # An item without the count predates it: counted as claimed before (never "first").
                UpdateExpression="SET lease_owner = :o, lease_until = :u, "
                                 "claims = if_not_exists(claims, :before) + :one",
                ConditionExpression="attribute_exists(pk) AND #s = :open AND "
                                    "(attribute_not_exists(lease_until) OR lease_until < :now)",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":o": owner, ":u": int(lease_until) + 1, ":open": "open",
                                           ":now": int(now), ":before": 1, ":one": 1},
                ReturnValues="ALL_NEW")
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
            # The condition also fails when our own claim was applied and its answer was lost
            # (botocore retried it): the lease then carries our owner id, so it is ours.
            chunk = self.get(batch_id, n)
            return chunk if chunk is not None and chunk.lease_owner == owner else None
        return _record(resp["Attributes"])

    def release(self, batch_id: str, n: int, owner: str) -> None:
        try:
            self.table.update_item(
                Key=self._key(batch_id, n), UpdateExpression="REMOVE lease_owner, lease_until",
                ConditionExpression="lease_owner = :o", ExpressionAttributeValues={":o": owner})
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise

    def seal(self, batch_id: str, n: int, now: float) -> bool:
        """Close an open chunk for good, unless a live lease holds it. True when it is closed now."""
        try:
            self.table.update_item(
                Key=self._key(batch_id, n), UpdateExpression="SET #s = :sealed",
                ConditionExpression="#s = :open AND (attribute_not_exists(lease_until) OR lease_until < :now)",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":sealed": "sealed", ":open": "open", ":now": int(now)})
            return True
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
        chunk = self.get(batch_id, n)
        return chunk is not None and chunk.state != "open"

    def commit_segment(self, tenant: str, batch_id: str, chunk: ChunkRecord, owner: str,
                       seg: SegmentRecord, *, release: bool) -> bool:
        """Record `seg` (its objects are already in S3): move the cursor from chunk.next_line to
        seg.end_line and ADD its counts to the batch, atomically. False if the lease or cursor moved."""
        done = seg.end_line >= chunk.end_line
        sets = "SET next_line = :nl, next_byte = :nb, #s = :state ADD #seg :one"
        if done or release:
            sets += " REMOVE lease_owner, lease_until"
        chunk_update = {
            "TableName": self.table_name, "Key": av(self._key(batch_id, chunk.n)),
            "UpdateExpression": sets,
            "ConditionExpression": "lease_owner = :me AND #s = :open AND next_line = :old",
            "ExpressionAttributeNames": {"#s": "state", "#seg": "segments"},
            "ExpressionAttributeValues": av({":nl": seg.end_line, ":nb": seg.end_byte,
                                              ":state": "done" if done else "open", ":one": 1,
                                              ":me": owner, ":open": "open",
                                              ":old": chunk.next_line})}
        adds = {"completed": seg.completed, "failed": seg.failed, "chunks_done": 1 if done else 0,
                **{f: getattr(seg.usage, f) for f in USAGE_FIELDS}}
        batch_update = {
            "TableName": self.table_name, "Key": av({"pk": tenant_pk(tenant), "sk": batch_sk(batch_id)}),
            "UpdateExpression": "ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(adds))),
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeNames": {f"#a{i}": k for i, k in enumerate(adds)},
            "ExpressionAttributeValues": av({f":a{i}": v for i, v in enumerate(adds.values())})}
        try:
            aws.client("dynamodb").transact_write_items(
                TransactItems=[{"Update": chunk_update}, {"Update": batch_update}])
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True
