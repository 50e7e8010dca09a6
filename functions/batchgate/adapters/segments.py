"""S3 objects of the batch engine: segments of chunk results under `work/<batch>/<chunk>/`.

A segment is `<start>.<writer>.out.jsonl`, `<start>.<writer>.err.jsonl` (only when non-empty), then
`<start>.seg.json`, written create-only: it is the commit record, and only one can ever exist per start
line. The data objects are plain puts keyed by their writer (the run's lease owner), and the record names
its writer: until a `.seg.json` names them they belong to nobody, and a run that lost its lease but is
still alive (a write sent just before Lambda's timeout lands after it) can only write keys no record
will ever name.

`ahead.jsonl` keeps the answers a run got past its first unanswered line, which no segment can hold
yet: the next run of the chunk uses them instead of sending those lines again, and Finalize reports them
instead of "not executed". Only lines past a chunk's committed cursor are ever read from it.
"""
from __future__ import annotations

from collections.abc import Iterator

import orjson
from botocore.exceptions import ClientError

from batchgate import aws
from batchgate.contract import Prefix
from batchgate.models.engine import AnsweredLine, SegmentRecord, Usage
from batchgate.observability import logger

READ_BLOCK = 1024 * 1024


def _missing(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound")


def _denied(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] in ("AccessDenied", "403", "Forbidden")


class SegmentStore:
    def __init__(self, bucket: str):
        self.bucket = bucket

    @property
    def s3(self):
        return aws.client("s3")

    @staticmethod
    def prefix(batch_id: str) -> str:
        return f"{Prefix.WORK}{batch_id}/"

    def key(self, batch_id: str, chunk: int, start_line: int, kind: str, writer: str = "") -> str:
        name = f"{start_line:06d}.{writer}.{kind}" if writer else f"{start_line:06d}.{kind}"
        return f"{Prefix.WORK}{batch_id}/{chunk:06d}/{name}"

    def _get_or_none(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such key. S3 answers a missing key with 403,
        not 404, unless the caller may list the whole bucket, and the engine's roles may list only
        `work/` (s3:ListBucket with an s3:prefix condition). So a 403 is asked again as a listing of
        exactly that key: absent there means missing; present means a real denial, raised."""
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _missing(exc):
                return None
            if not _denied(exc):
                raise
            listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1).get("Contents", [])
            if any(o["Key"] == key for o in listed):
                raise
            return None

    def get_record(self, batch_id: str, chunk: int, start_line: int) -> SegmentRecord | None:
        data = self._get_or_none(self.key(batch_id, chunk, start_line, "seg.json"))
        return None if data is None else SegmentRecord.model_validate_json(data)

    def put_data(self, batch_id: str, chunk: int, start_line: int, out: bytes, err: bytes, writer: str = "") -> None:
        for kind, data in (("out.jsonl", out), ("err.jsonl", err)):
            if data:
                self.s3.put_object(Bucket=self.bucket, Key=self.key(batch_id, chunk, start_line, kind, writer),
                                   Body=data, ContentType="application/jsonl")

    def put_record(self, batch_id: str, chunk: int, seg: SegmentRecord) -> bool:
        """Create-only. False when a record for this start line already exists."""
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self.key(batch_id, chunk, seg.start_line, "seg.json"),
                               Body=seg.model_dump_json().encode(), ContentType="application/json",
                               IfNoneMatch="*")
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def put_ahead(self, batch_id: str, chunk: int, answers: dict[int, AnsweredLine]) -> None:
        """Each answer as a header line {i, ok, end, usage, n} then its n bytes of result line."""
        parts = []
        for i, a in sorted(answers.items()):
            parts.append(orjson.dumps({"i": i, "ok": a.ok, "end": a.end, "usage": a.usage.model_dump(),
                                       "n": len(a.data)}) + b"\n")
            parts.append(a.data)
        self.s3.put_object(Bucket=self.bucket, Key=self.key_ahead(batch_id, chunk), Body=b"".join(parts),
                           ContentType="application/octet-stream")

    def get_ahead(self, batch_id: str, chunk: int) -> dict[int, AnsweredLine]:
        data = self._get_or_none(self.key_ahead(batch_id, chunk))
        if data is None:
            return {}
        answers, pos = {}, 0
        while pos < len(data):
            nl = data.index(b"\n", pos)
            head = orjson.loads(data[pos:nl])
            body_end = nl + 1 + head["n"]
            answers[head["i"]] = AnsweredLine(head["ok"], data[nl + 1:body_end], Usage(**head["usage"]),
                                              head["end"])
            pos = body_end
        return answers

    def key_ahead(self, batch_id: str, chunk: int) -> str:
        return f"{Prefix.WORK}{batch_id}/{chunk:06d}/ahead.jsonl"

    def stream_data(self, batch_id: str, chunk: int, seg: SegmentRecord, kind: str) -> Iterator[bytes]:
        """The bytes the segment's record names (its writer's data object)."""
        body = self.s3.get_object(Bucket=self.bucket,
                                  Key=self.key(batch_id, chunk, seg.start_line, kind, seg.writer))["Body"]
        try:
            yield from body.iter_chunks(READ_BLOCK)
        finally:
            body.close()

    def delete_batch(self, batch_id: str) -> None:
        """Best effort once the result files exist (a lifecycle rule on work/ catches leftovers)."""
        try:
            paginator = self.s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix(batch_id)):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
        except ClientError:
            logger.exception("work objects not deleted", extra={"batch_id": batch_id})

