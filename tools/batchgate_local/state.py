"""Local mode's state folder: the data of record survives restarts (`batchgate local --state-dir`).

What is kept: every item of every DynamoDB table and every object of every S3 bucket the templates
declare (files, uploads, batches, chunks, segments, keys: the data of record), keyed by the template's
logical ids, so a restart restores them whatever physical names moto gives the new resources.

How: write-through. Each successful DynamoDB write request (PutItem, UpdateItem, DeleteItem,
BatchWriteItem, TransactWriteItems) and each S3 write request (PUT, POST, DELETE of an object; POST
?delete of many) appends the resulting state of every item/object it touched to `journal.jsonl`
(fsync'ed) before moto answers it; object bytes go to `blobs/` first (fsync'ed). A write the client saw
succeed is therefore on disk, whether the process then stops on Ctrl-C or is killed; a line cut short
by a kill is a write nobody was told succeeded, and is dropped. Each start replays the journal into the
fresh moto, then rewrites it compacted (atomic replace) and deletes unreferenced blobs.

What is not kept, and is re-created instead: queue messages and Step Functions executions are derived
state. On start, every batch that was not finished (validating, in_progress, finalizing, cancelling)
has its chunk leases cleared (their holder died with the old process) and its workflow started again
from the top: each step is re-runnable (Validate answers from the status the batch reached, Dispatch
re-sends one pointer per chunk, the chunk commit protocol counts each line once, Finalize rewrites the
same files). Messages in the dead-letter queues, webhook deliveries not yet made (or waiting for a
retry) and S3 multipart uploads in flight are not kept.

Layout (format version 1): `state.json` (format, version, notes such as the development key's id),
`journal.jsonl`, `blobs/`, `lock` (an flock held while a service uses the folder).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchgate.observability import logger

FORMAT = "batchgate-local-state"
VERSION = 1
DEFAULT_DIR = ".batchgate"
UNFINISHED = ("validating", "in_progress", "finalizing", "cancelling")
NOT_KEPT = ("queue messages (chunk pointers are re-sent for unfinished batches; webhook deliveries not yet "
            "made or waiting for a retry, and dead-letter messages, are lost), workflow executions (restarted "
            "for unfinished batches), S3 multipart uploads in flight")

_DDB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
_PARTIQL = frozenset({"ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"})


def _partiql_writes(params: dict) -> bool:
    """Whether a PartiQL request holds anything but SELECTs (which the journal could not follow)."""
    statements = [params.get("Statement")] + [s.get("Statement") for s in
                                              params.get("Statements") or params.get("TransactStatements") or []]
    return any(str(st).lstrip()[:6].upper() != "SELECT" for st in statements if st is not None)


class StateError(Exception):
    """The state folder cannot be used (locked, incompatible, damaged): the message says what to do."""


@dataclass
class Report:
    items: int = 0
    objects: int = 0
    dropped_tail: bool = False
    orphaned: dict[str, int] = field(default_factory=dict)   # logical ids no longer in the templates
    resumed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.items} items and {self.objects} objects restored"]
        if self.resumed:
            parts.append(f"{len(self.resumed)} unfinished batch(es) resumed")
        return ", ".join(parts)


def _line(rec: dict) -> bytes:
    return json.dumps(rec, separators=(",", ":")).encode() + b"\n"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


class StateDir:
    """One state folder, locked for the lifetime of one LocalService."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).absolute()
        self.blobs = self.path / "blobs"
        self.meta: dict[str, Any] = {}
        self.report = Report()
        # (logical table, key JSON) -> item (DynamoDB JSON); (logical bucket, key) -> object entry
        self._items: dict[tuple[str, str], dict] = {}
        self._objects: dict[tuple[str, str], dict] = {}
        self._lock_file: Any = None
        self._journal: Any = None
        self._write_lock = threading.Lock()   # one journal line at a time
        self._s3_lock = threading.RLock()     # read-state-then-journal of objects, one at a time
        self._closed = True
        self._close_lock = threading.Lock()
        self._tables: dict[str, str] = {}     # physical -> logical
        self._buckets: dict[str, str] = {}
        self._s3_seen: dict[tuple[str, str], tuple] = {}
        self._uninstall: list[Callable[[], None]] = []

    # -- open / lock / format -----------------------------------------------------------------------

    def open(self) -> StateDir:
        try:   # private: it holds every tenant's files and results
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create the state folder {self.path}: {exc}") from exc
        try:
            self._refuse_foreign()   # before the lock file: a folder of someone else's stays untouched
            self._lock()
        except OSError as exc:
            raise StateError(f"cannot use the state folder {self.path}: {exc}") from exc
        try:
            self._check_format()
            self.blobs.mkdir(exist_ok=True)
            self._load()
            self._compact()
        except OSError as exc:
            self.close()
            raise StateError(f"cannot use the state folder {self.path}: {exc}") from exc
        except BaseException:
            self.close()
            raise
        return self

    def _lock(self) -> None:
        f = open(self.path / "lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise StateError(f"the state folder {self.path} is in use by another batchgate local (pid {holder}); "
                             "stop that one, or give this one another --state-dir") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f

    def _refuse_foreign(self) -> None:
        if (self.path / "state.json").exists():
            return
        others = [p.name for p in self.path.iterdir() if p.name not in ("lock", "state.json.tmp")]
        if others:
            raise StateError(f"{self.path} is not a batchgate local state folder (it holds {sorted(others)[:5]}); "
                             "give --state-dir an empty or new folder")

    def _check_format(self) -> None:
        meta_path = self.path / "state.json"
        if not meta_path.exists():
            self._refuse_foreign()
            self.meta = {"format": FORMAT, "version": VERSION}
            _write_atomic(meta_path, json.dumps(self.meta, indent=2).encode())
            return
        try:
            self.meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise StateError(f"cannot read {meta_path}: {exc}") from exc
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            raise StateError(f"{self.path} is not a batchgate local state folder ({meta_path} names no "
                             f"format {FORMAT!r})")
        if self.meta.get("version") != VERSION:
            raise StateError(f"{self.path} was written by an incompatible batchgate local (state format version "
                             f"{self.meta.get('version')!r}; this one reads version {VERSION}). Use the batchgate "
                             "version that wrote it, or move the folder away to start empty")

    def note(self, **values: Any) -> None:
        """Remember small facts across restarts in state.json (never secrets)."""
        self.meta.update(values)
        _write_atomic(self.path / "state.json", json.dumps(self.meta, indent=2).encode())

    # -- journal ------------------------------------------------------------------------------------

    def _load(self) -> None:
        path = self.path / "journal.jsonl"
        if not path.exists():
            return
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
        tail = lines.pop()   # b"" after a final newline; else a line the process never finished
        if tail:
            self.report.dropped_tail = True
        for n, line in enumerate(lines, 1):
            try:
                self._apply(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise StateError(f"{path} line {n} is damaged ({exc}); nothing was changed. Move the folder "
                                 "away to start empty, or repair that line") from exc

    def _apply(self, rec: dict) -> None:
        if rec["t"] == "ddb":
            k = (rec["tb"], json.dumps(rec["k"], sort_keys=True))
            if rec["i"] is None:
                self._items.pop(k, None)
            else:
                self._items[k] = rec["i"]
        elif rec["t"] == "s3":
            ko = (rec["b"], rec["k"])
            if rec.get("blob") is None:
                self._objects.pop(ko, None)
            else:
                self._objects[ko] = rec
        else:
            raise KeyError(f"unknown record type {rec['t']!r}")

    def _compact(self) -> None:
        out = bytearray()
        for (table, key), item in self._items.items():
            out += _line({"t": "ddb", "tb": table, "k": json.loads(key), "i": item})
        for rec in self._objects.values():
            out += _line(rec)
        path = self.path / "journal.jsonl"
        _write_atomic(path, bytes(out))
        live = {rec["blob"] for rec in self._objects.values()}
        missing = sorted(b for b in live if not (self.blobs / b).is_file())
        if missing:
            raise StateError(f"{len(missing)} object file(s) the journal names are missing from {self.blobs} "
                             f"(e.g. {missing[0]}); nothing was changed")
        for p in self.blobs.iterdir():
            if p.name not in live:
                p.unlink()
        self._journal = open(path, "ab", buffering=0)
        self._closed = False

    def _append(self, rec: dict) -> None:
        line = _line(rec)
        with self._write_lock:
            if self._closed:
                raise StateError("the state folder is closed: this write is not kept")
            self._journal.write(line)
            os.fsync(self._journal.fileno())

    # -- restore into moto, then journal every write ------------------------------------------------

    def restore(self, tables: dict[str, str], buckets: dict[str, str], account: str, region: str) -> Report:
        """Load the kept state into moto's backends. `tables`/`buckets`: logical id -> physical name."""
        from moto.dynamodb.models import dynamodb_backends
        from moto.s3.models import s3_backends

        self._tables = {phys: lid for lid, phys in tables.items()}
        self._buckets = {phys: lid for lid, phys in buckets.items()}
        ddb = dynamodb_backends[account][region]
        for (lid, _), item in self._items.items():
            if lid not in tables:
                self.report.orphaned[lid] = self.report.orphaned.get(lid, 0) + 1
                continue
            ddb.get_table(tables[lid]).put_item(item)
            self.report.items += 1
        s3 = s3_backends[account]["aws"]
        for (lid, key), rec in self._objects.items():
            if lid not in buckets:
                self.report.orphaned[lid] = self.report.orphaned.get(lid, 0) + 1
                continue
            fake = s3.put_object(buckets[lid], key, b"", disable_notification=True)
            with open(self.blobs / rec["blob"], "rb") as f, fake.lock:
                fake._value_buffer.seek(0)
                shutil.copyfileobj(f, fake._value_buffer, 1 << 20)
                fake.contentsize = fake._value_buffer.tell()
            fake._etag = rec.get("etag") or None
            fake._metadata.clear()
            fake.set_metadata(dict(rec.get("meta") or {}))
            if rec.get("tags"):
                s3.put_object_tagging(fake, rec["tags"])
            self._s3_seen[(lid, key)] = self._signature(s3, fake)
            self.report.objects += 1
        self._items = {}   # moto holds them now (orphans stay in the compacted journal)
        if self.report.orphaned:
            logger.warning("state kept for resources the templates no longer have (left in the journal): %s",
                           self.report.orphaned)
        return self.report

    def install(self, account: str, region: str) -> None:
        """Journal every DynamoDB and S3 write from now on (undone by close())."""
        from moto.dynamodb.responses import DynamoHandler
        from moto.s3.responses import S3Response

        from batchgate_local import atomic

        state = self
        ddb_call = DynamoHandler.call_action
        key_response = S3Response._key_response
        bucket_response = S3Response._bucket_response

        def call_action(handler):
            action = handler._get_action()
            if action in _PARTIQL and _partiql_writes(getattr(handler, "params", None) or {}):
                return 400, {}, json.dumps({
                    "__type": "com.amazonaws.dynamodb.v20120810#ValidationException",
                    "message": "batchgate local does not keep PartiQL writes in its state folder: use the item "
                               "actions (PutItem, UpdateItem, ...), or run with --ephemeral"})
            if action not in _DDB_WRITES:
                return ddb_call(handler)
            params = dict(getattr(handler, "params", {}) or {})
            with atomic._lock:   # the write and its journal line, before any other DynamoDB action
                if state._closed:
                    return 503, {}, json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ServiceUnavailable",
                                                "message": "batchgate local is stopping"})
                result = ddb_call(handler)
                if int(result[0]) < 300:
                    state._journal_ddb(params, account, region)
                return result

        def _key(handler, request, full_url):
            if request.method not in ("PUT", "POST", "DELETE"):
                return key_response(handler, request, full_url)
            bucket = handler.parse_bucket_name_from_url(request, full_url)
            if bucket not in state._buckets:
                return key_response(handler, request, full_url)
            name = handler.parse_key_name()
            if state._closed:
                return 503, {}, "batchgate local is stopping"
            try:
                return key_response(handler, request, full_url)
            finally:
                state._sync_object(bucket, name, account)

        def _bucket(handler, request, full_url):
            if request.method != "POST":
                return bucket_response(handler, request, full_url)
            bucket = handler.parse_bucket_name_from_url(request, full_url)
            if bucket not in state._buckets:
                return bucket_response(handler, request, full_url)
            if state._closed:
                return 503, {}, "batchgate local is stopping"
            try:
                return bucket_response(handler, request, full_url)
            finally:
                state._sync_bucket(bucket, account)

        DynamoHandler.call_action = call_action   # type: ignore[method-assign]
        S3Response._key_response = _key          # type: ignore[method-assign]
        S3Response._bucket_response = _bucket    # type: ignore[method-assign]

        def undo() -> None:
            DynamoHandler.call_action = ddb_call       # type: ignore[method-assign]
            S3Response._key_response = key_response    # type: ignore[method-assign]
            S3Response._bucket_response = bucket_response   # type: ignore[method-assign]
        self._uninstall.append(undo)

    def _journal_ddb(self, params: dict, account: str, region: str) -> None:
        from moto.dynamodb.models import dynamodb_backends

        backend = dynamodb_backends[account][region]
        touched: list[tuple[str, dict | None, dict | None]] = []   # (table, key, item)
        if "TransactItems" in params:
            for op in params["TransactItems"]:
                for kind in ("Put", "Update", "Delete"):
                    if kind in op:
                        touched.append((op[kind]["TableName"], op[kind].get("Key"), op[kind].get("Item")))
        elif "RequestItems" in params:
            for table, reqs in params["RequestItems"].items():
                for r in reqs:
                    if "PutRequest" in r:
                        touched.append((table, None, r["PutRequest"]["Item"]))
                    elif "DeleteRequest" in r:
                        touched.append((table, r["DeleteRequest"]["Key"], None))
        else:
            touched.append((params["TableName"], params.get("Key"), params.get("Item")))
        for name, key, item in touched:
            table = backend.get_table(name)
            lid = self._tables.get(table.name)
            if lid is None:
                continue
            if key is None:
                key = {a: (item or {})[a] for a in (table.hash_key_attr, table.range_key_attr) if a}
            hash_key, range_key = backend.get_keys_value(table, key)
            current = table.get_item(hash_key, range_key)
            self._append({"t": "ddb", "tb": lid, "k": key,
                          "i": current.to_json()["Attributes"] if current is not None else None})

    @staticmethod
    def _signature(s3: Any, fake: Any) -> tuple:
        tags = s3.tagger.list_tags_for_resource(fake.arn).get("Tags", [])
        return (id(fake), fake.etag, fake.last_modified, json.dumps(dict(fake._metadata), sort_keys=True),
                json.dumps(tags, sort_keys=True))

    def _sync_object(self, bucket: str, key: str, account: str) -> None:
        """Journal the object's state now if it differs from what was last journaled."""
        from moto.s3.models import s3_backends

        s3 = s3_backends[account]["aws"]
        lid = self._buckets[bucket]
        with self._s3_lock:
            b = s3.buckets.get(bucket)
            fake = b.keys.get(key) if b is not None else None
            sig = self._signature(s3, fake) if fake is not None else None
            if sig == self._s3_seen.get((lid, key)):
                return
            old = self._objects.get((lid, key))
            if fake is None:
                rec: dict = {"t": "s3", "b": lid, "k": key, "blob": None}
                self._append(rec)
                self._objects.pop((lid, key), None)
                self._s3_seen.pop((lid, key), None)
            else:
                blob = uuid.uuid4().hex
                with open(self.blobs / blob, "wb") as f, fake.lock:
                    fake._value_buffer.seek(0)
                    shutil.copyfileobj(fake._value_buffer, f, 1 << 20)
                    f.flush()
                    os.fsync(f.fileno())
                tags = {t["Key"]: t["Value"] for t in s3.tagger.list_tags_for_resource(fake.arn).get("Tags", [])}
                rec = {"t": "s3", "b": lid, "k": key, "blob": blob, "etag": fake.etag.strip('"'),
                       "meta": {str(k): str(v) for k, v in fake._metadata.items()}, "tags": tags}
                try:
                    self._append(rec)
                except BaseException:
                    (self.blobs / blob).unlink(missing_ok=True)
                    raise
                self._objects[(lid, key)] = rec
                self._s3_seen[(lid, key)] = sig or ()
            if old is not None:
                (self.blobs / old["blob"]).unlink(missing_ok=True)

    def _sync_bucket(self, bucket: str, account: str) -> None:
        from moto.s3.models import s3_backends

        lid = self._buckets[bucket]
        b = s3_backends[account]["aws"].buckets.get(bucket)
        with self._s3_lock:
            # A bucket-level POST deletes keys (?delete) or adds one (a form upload): the keys whose
            # presence changed, not every object's content, need a look.
            seen = {k for (bl, k) in self._s3_seen if bl == lid}
            present = set(b.keys.keys()) if b is not None else set()
            for name in sorted(seen ^ present):
                self._sync_object(bucket, name, account)

    # -- resume -------------------------------------------------------------------------------------

    def resume_batches(self, table_name: str, state_machine_arn: str) -> list[str]:
        """Give every unfinished batch its workflow back (see the module docstring)."""
        from boto3.dynamodb.conditions import Attr

        from batchgate import aws
        from batchgate.adapters.chunk_store import ChunkStore
        from batchgate.adapters.workflow import Workflow

        table = aws.resource("dynamodb").Table(table_name)
        kwargs: dict[str, Any] = {"FilterExpression": Attr("sk").begins_with("BATCH#") & Attr("status").is_in(
            list(UNFINISHED)), "ConsistentRead": True}
        found: list[tuple[str, str]] = []
        while True:
            resp = table.scan(**kwargs)
            found += [(str(i["tenant"]), str(i["id"])) for i in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        chunks, workflow = ChunkStore(table_name), Workflow(state_machine_arn)
        for tenant, batch_id in found:
            for c in chunks.list(batch_id):
                if c.state == "open" and c.lease_owner:
                    chunks.release(batch_id, c.n, c.lease_owner)   # its holder died with the old process
            workflow.start(batch_id, tenant)
        self.report.resumed = [b for _, b in found]
        return self.report.resumed

    # -- close --------------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._lock_file is not None

    def close(self) -> None:
        """Stop journaling (later writes fail instead of going unkept), undo the hooks, unlock."""
        with self._close_lock:
            self._close()

    def _close(self) -> None:
        with self._s3_lock, self._write_lock:   # the order every writer takes them in
            self._closed = True
            if self._journal is not None:
                with contextlib.suppress(OSError):
                    self._journal.close()
                self._journal = None
        for undo in reversed(self._uninstall):
            undo()
        self._uninstall = []
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                self._lock_file.close()
            self._lock_file = None
