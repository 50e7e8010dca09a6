"""File records (state table, pk `T#<tenant>`, sk `FILE#<file_id>`) and file bytes
(S3 `files/<tenant>/<file_id>`). Layout in docs/design.md.

Expired files (expires_at in the past) are invisible here: `get` answers None and `list` skips
them, whether or not DynamoDB's TTL has removed the record yet. Their bytes go by S3 lifecycle:
objects of expiring files are written with a `retention-days` tag (domain/files.retention_tag).
"""
from __future__ import annotations

import re
import time
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from batchgate import aws
from batchgate.adapters.batch_store import is_conditional_failure, plain, tenant_pk
from batchgate.contract import Prefix
from batchgate.models.records import FileRecord

# S3 multipart parts must be >= 5 MiB (but the last); 8 MiB keeps memory near one part.
WRITER_PART_BYTES = 8 * 1024 * 1024


def file_sk(file_id: str) -> str:
    return f"FILE#{file_id}"


class S3MultipartWriter:
    """Streams bytes into one S3 object, regrouping whatever sizes it is fed into parts of at least
    `part_bytes` (S3 refuses parts under 5 MiB but the last). Objects smaller than one part become
    a single PutObject. Memory: about one part plus one write. `tagging` (an S3 Tagging string,
    e.g. "retention-days=30") is set on the object as it is created."""

    def __init__(self, bucket: str, key: str, part_bytes: int = WRITER_PART_BYTES, *,
                 tagging: str | None = None):
        self.bucket, self.key, self.part_bytes = bucket, key, part_bytes
        self._tags = {"Tagging": tagging} if tagging else {}
        self._buf = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict] = []
        self.bytes = 0

    @property
    def _s3(self):
        return aws.client("s3")

    def write(self, data: bytes) -> None:
        self._buf += data
        self.bytes += len(data)
        if len(self._buf) >= self.part_bytes:
            self._flush()

    def _flush(self) -> None:
        # Parts may differ in size (>= 5 MiB but the last): send the whole buffer as it is,
        # handing the bytearray itself to botocore so no copy of the part is made.
        body, self._buf = self._buf, bytearray()
        if self._upload_id is None:
            self._upload_id = self._s3.create_multipart_upload(Bucket=self.bucket, Key=self.key,
                                                               **self._tags)["UploadId"]
        number = len(self._parts) + 1
        resp = self._s3.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                    PartNumber=number, Body=body)
        self._parts.append({"PartNumber": number, "ETag": resp["ETag"]})

    def close(self) -> int:
        """Commit the object; returns its size."""
        if self._upload_id is None:
            self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=self._buf, **self._tags)
        else:
            if self._buf:
                self._flush()
            self._s3.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                               MultipartUpload={"Parts": self._parts})
            self._upload_id = None  # committed: a later abort() is a no-op
        self._buf = bytearray()
        return self.bytes

    def abort(self) -> None:
        """Drop what was written (safe to call after close(): nothing left to abort)."""
        self._buf = bytearray()
        if self._upload_id is not None:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None


class BucketBackedStore:
    """Records in the state table, bytes in the bucket (files and uploads)."""

    def __init__(self, table_name: str, bucket: str):
        self.table_name = table_name
        self.bucket = bucket

    @property
    def table(self):
        return aws.resource("dynamodb").Table(self.table_name)

    @property
    def _s3(self):
        return aws.client("s3")


class FileStore(BucketBackedStore):
    @staticmethod
    def file_key(tenant: str, file_id: str) -> str:
        return f"{Prefix.FILES}{tenant}/{file_id}"

    # -- records -------------------------------------------------------------------------------
    def register(self, tenant: str, *, file_id: str, filename: str, purpose: str, bytes: int,
                 s3_key: str, created_at: int, expires_at: int | None) -> FileRecord:
        """Create the record of an object already in S3 (create-only: an id is never reused)."""
        record = FileRecord(id=file_id, tenant=tenant, bytes=bytes, created_at=created_at, expires_at=expires_at,
                            filename=filename, purpose=purpose, s3_key=s3_key)
        # A file that never expires has no expires_at attribute (the list filter reads its absence).
        item = record.model_dump(exclude_none=True)
        if expires_at is not None:
            item["ttl"] = expires_at
        self.table.put_item(Item={"pk": tenant_pk(tenant), "sk": file_sk(file_id), **item},
                            ConditionExpression="attribute_not_exists(pk)")
        return record

    def get(self, tenant: str, file_id: str) -> FileRecord | None:
        # Consistent: clients create a batch from a file right after uploading it.
        item = self.table.get_item(Key={"pk": tenant_pk(tenant), "sk": file_sk(file_id)},
                                   ConsistentRead=True).get("Item")
        if not item:
            return None
        record = FileRecord.from_item(plain(item))
        if record.expires_at is not None and record.expires_at < time.time():
            return None
        return record

    def list(self, tenant: str, *, limit: int, ascending: bool, after: str | None,
             purpose: str | None = None) -> tuple[list[FileRecord], bool]:
        """One page in id order (= creation order). Filters apply after DynamoDB's Limit, so keep
        querying until limit+1 matches are in hand or the partition ends."""
        live = Attr("expires_at").not_exists() | Attr("expires_at").gte(int(time.time()))
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("pk").eq(tenant_pk(tenant)) & Key("sk").begins_with("FILE#"),
            "ScanIndexForward": ascending, "ConsistentRead": True,
            "FilterExpression": live & Attr("purpose").eq(purpose) if purpose else live,
            "Limit": min(limit + 1, 1000)}
        if after:
            kwargs["ExclusiveStartKey"] = {"pk": tenant_pk(tenant), "sk": file_sk(after)}
        items: list[dict] = []
        while len(items) <= limit:
            resp = self.table.query(**kwargs)
            items.extend(resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        return [FileRecord.from_item(plain(i)) for i in items[:limit]], len(items) > limit

    def delete(self, tenant: str, file_id: str) -> bool:
        try:
            resp = self.table.delete_item(Key={"pk": tenant_pk(tenant), "sk": file_sk(file_id)},
                                          ConditionExpression="attribute_exists(pk)", ReturnValues="ALL_OLD")
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        key = resp.get("Attributes", {}).get("s3_key") or self.file_key(tenant, file_id)
        self._s3.delete_object(Bucket=self.bucket, Key=key)
        return True

    # -- bytes ---------------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, *, tagging: str | None = None) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, **({"Tagging": tagging} if tagging else {}))

    def writer(self, key: str, part_bytes: int = WRITER_PART_BYTES, *,
               tagging: str | None = None) -> S3MultipartWriter:
        return S3MultipartWriter(self.bucket, key, part_bytes, tagging=tagging)

    def open_stream(self, record: FileRecord):
        """The S3 GetObject Body (botocore StreamingBody): read it in chunks, never whole."""
        return self._s3.get_object(Bucket=self.bucket, Key=record.s3_key)["Body"]

    def read_range(self, s3_key: str, start: int, end_exclusive: int) -> bytes:
        if end_exclusive <= start:
            return b""
        resp = self._s3.get_object(Bucket=self.bucket, Key=s3_key, Range=f"bytes={start}-{end_exclusive - 1}")
        return resp["Body"].read()

    def read_all(self, record: FileRecord) -> bytes:
        return self.open_stream(record).read()

    def presigned_get(self, record: FileRecord, seconds: int) -> str:
        # S3 answers it as a download under the file's name (a browser that opens the URL saves the
        # file instead of showing it); the name is reduced to safe characters for the header.
        name = re.sub(r"[^A-Za-z0-9._-]", "_", record.filename)[:128] or record.id
        return aws.s3_presigner().generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": record.s3_key,
                                  "ResponseContentDisposition": f'attachment; filename="{name}"'},
            ExpiresIn=seconds)

