"""Upload records (pk `T#<tenant>`, sk `UPLOAD#<id>`), part records (pk `U#<upload_id>`,
sk `PART#<part_id>`) and part bytes (S3 `uploads/<tenant>/<upload_id>/<part_id>`).

Records carry a TTL (a day after the upload expires); part objects left behind by abandoned
uploads are for the bucket's lifecycle rule on `uploads/` to remove.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from batchgate.adapters.batch_store import is_conditional_failure, plain, tenant_pk
from batchgate.adapters.file_store import BucketBackedStore
from batchgate.contract import Prefix
from batchgate.models.records import UploadPartRecord, UploadRecord

PART_READ_BYTES = 1024 * 1024


def upload_sk(upload_id: str) -> str:
    return f"UPLOAD#{upload_id}"


def parts_pk(upload_id: str) -> str:
    return f"U#{upload_id}"


class UploadStore(BucketBackedStore):
    @staticmethod
    def part_key(tenant: str, upload_id: str, part_id: str) -> str:
        return f"{Prefix.UPLOADS}{tenant}/{upload_id}/{part_id}"

    def _key(self, tenant: str, upload_id: str) -> dict:
        return {"pk": tenant_pk(tenant), "sk": upload_sk(upload_id)}

    # -- uploads -------------------------------------------------------------------------------
    def create(self, record: UploadRecord) -> None:
        item = {**self._key(record.tenant, record.id), **record.model_dump(exclude_none=True),
                "ttl": record.expires_at + 86400}
        self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")

    def get(self, tenant: str, upload_id: str) -> UploadRecord | None:
        item = self.table.get_item(Key=self._key(tenant, upload_id), ConsistentRead=True).get("Item")
        return UploadRecord.from_item(plain(item)) if item else None

    def _update(self, tenant: str, upload_id: str, expression: str, condition: str,
                values: dict[str, Any]) -> UploadRecord | None:
        try:
            resp = self.table.update_item(
                Key=self._key(tenant, upload_id), UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames={k: v for k, v in (("#s", "status"), ("#f", "file"))
                                          if k in expression or k in condition},
                ExpressionAttributeValues=values, ReturnValues="ALL_NEW")
        except ClientError as exc:
            if is_conditional_failure(exc):
                return None
            raise
        return UploadRecord.from_item(plain(resp["Attributes"]))

    def claim_completion(self, tenant: str, upload_id: str, *, now: int, lease_seconds: int) -> bool:
        """One `complete` at a time: a lease, so a crashed one does not block the upload forever."""
        return self._update(
            tenant, upload_id, "SET completing_until = :until",
            "#s = :pending AND (attribute_not_exists(completing_until) OR completing_until < :now)",
            {":until": now + lease_seconds, ":pending": "pending", ":now": now}) is not None

    def release_completion(self, tenant: str, upload_id: str) -> None:
        self.table.update_item(Key=self._key(tenant, upload_id), UpdateExpression="REMOVE completing_until")

    def mark_completed(self, tenant: str, upload_id: str, *, file: dict[str, Any],
                       now: int) -> UploadRecord | None:
        return self._update(
            tenant, upload_id, "SET #s = :done, #f = :file, completed_at = :now REMOVE completing_until",
            "#s = :pending", {":done": "completed", ":file": file, ":now": now, ":pending": "pending"})

    def mark_cancelled(self, tenant: str, upload_id: str, *, now: int) -> UploadRecord | None:
        return self._update(
            tenant, upload_id, "SET #s = :cancelled, cancelled_at = :now",
            "#s = :pending AND (attribute_not_exists(completing_until) OR completing_until < :now)",
            {":cancelled": "cancelled", ":now": now, ":pending": "pending"})

    # -- parts ---------------------------------------------------------------------------------
    def put_part(self, tenant: str, upload_id: str, *, part_id: str, data: bytes, created_at: int,
                 ttl: int) -> UploadPartRecord:
        key = self.part_key(tenant, upload_id, part_id)
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        record = UploadPartRecord(id=part_id, upload_id=upload_id, created_at=created_at, bytes=len(data), s3_key=key)
        self.table.put_item(Item={"pk": parts_pk(upload_id), "sk": f"PART#{part_id}", **record.model_dump(),
                                  "ttl": ttl})
        return record

    def parts(self, upload_id: str) -> dict[str, UploadPartRecord]:
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(parts_pk(upload_id)),
                                  "ConsistentRead": True}
        out: dict[str, UploadPartRecord] = {}
        while True:
            resp = self.table.query(**kwargs)
            for item in resp.get("Items", []):
                part = UploadPartRecord.from_item(plain(item))
                out[part.id] = part
            if "LastEvaluatedKey" not in resp:
                return out
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def iter_part(self, part: UploadPartRecord, chunk_bytes: int = PART_READ_BYTES) -> Iterator[bytes]:
        body = self._s3.get_object(Bucket=self.bucket, Key=part.s3_key)["Body"]
        try:
            yield from body.iter_chunks(chunk_bytes)
        finally:
            body.close()

    def delete_parts(self, tenant: str, upload_id: str) -> None:
        parts = list(self.parts(upload_id).values())
        for i in range(0, len(parts), 1000):
            self._s3.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": p.s3_key} for p in parts[i:i + 1000]], "Quiet": True})
        with self.table.batch_writer() as batch:
            for p in parts:
                batch.delete_item(Key={"pk": parts_pk(upload_id), "sk": f"PART#{p.id}"})
