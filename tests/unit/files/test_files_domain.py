"""Pure Files/Uploads logic: batch upload rules, UTF-8 streaming check, form parsing, wire shapes,
and `complete` against in-memory ports (ordering, regrouping contract, all-or-nothing)."""
from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchgate import errors, ids
from batchgate.domain import files, uploads
from batchgate.handlers.multipart import parse_form
from batchgate.models.files import ExpiresAfterRequest, file_object
from batchgate.models.records import FileRecord, UploadPartRecord, UploadRecord


# -- batch rules -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["in.jsonl", "IN.JSONL", "upload", "dir/x.jsonl", ".hidden"])
def test_batch_filenames_accepted(name):
    files.check_batch_filename(name)


@pytest.mark.parametrize("name", ["in.json", "in.csv", "in.jsonl.gz", "a.txt"])
def test_batch_filenames_refused(name):
    with pytest.raises(errors.InvalidRequest) as exc:
        files.check_batch_filename(name)
    assert exc.value.message == "Invalid file format for Batch API. Must be .jsonl." and exc.value.param == "file"


def test_batch_size_limit_is_200mb():
    files.check_batch_size(200 * 1024 * 1024)
    with pytest.raises(errors.InvalidRequest, match="^File is too large."):
        files.check_batch_size(200 * 1024 * 1024 + 1)


def test_expiry_defaults():
    assert files.expires_at_for("batch", 1000, None) == 1000 + 30 * 86400
    assert files.expires_at_for("user_data", 1000, None) is None
    two_h = ExpiresAfterRequest(anchor="created_at", seconds=7200)
    assert files.expires_at_for("batch", 1000, two_h) == 8200
    assert files.expires_at_for("vision", 1000, two_h) == 8200


def test_direct_upload_limit_is_413_naming_uploads_api():
    files.check_direct_upload(4 * 1024 * 1024, 4 * 1024 * 1024)
    with pytest.raises(errors.PayloadTooLarge) as exc:
        files.check_direct_upload(4 * 1024 * 1024 + 1, 4 * 1024 * 1024)
    msg = exc.value.message
    assert exc.value.status == 413 and "Uploads API" in msg
    # In words any client understands: the three HTTP steps and the part size, no SDK helper name.
    for step in ("POST /v1/uploads", "POST /v1/uploads/{upload_id}/parts", "POST /v1/uploads/{upload_id}/complete"):
        assert step in msg
    assert "at most 4 MiB (4194304 bytes)" in msg and "upload_file_chunked" not in msg


def test_size_words():
    assert files.size_words(4 * 1024 * 1024) == "4 MiB (4194304 bytes)"
    assert files.size_words(2048) == "2 KiB (2048 bytes)"
    assert files.size_words(1000) == "1000 bytes"


# -- UTF-8 streaming check ---------------------------------------------------------------------
def _chunks(data: bytes, cuts: list[int]):
    points = sorted({c % (len(data) + 1) for c in cuts})
    prev = 0
    for p in points + [len(data)]:
        yield data[prev:p]
        prev = p


@given(st.binary(max_size=64), st.lists(st.integers(min_value=0, max_value=64), max_size=6))
def test_streaming_check_agrees_with_whole_decode(data, cuts):
    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    check = files.Utf8Check()
    try:
        for chunk in _chunks(data, cuts):
            check.feed(chunk)
        check.finish()
        ok = True
    except errors.InvalidRequest:
        ok = False
    assert ok == valid


@given(st.text(max_size=30), st.lists(st.integers(min_value=0, max_value=200), max_size=5))
def test_streaming_check_accepts_any_text_however_split(text, cuts):
    check = files.Utf8Check()
    for chunk in _chunks(text.encode("utf-8"), cuts):
        check.feed(chunk)
    check.finish()


def test_bad_byte_is_located_by_line_and_offset():
    check = files.Utf8Check()
    check.feed(b'{"a":1}\n{"b":"\xc3')
    with pytest.raises(errors.InvalidRequest) as exc:
        check.feed(b'(x"}\n')
    assert "line 2" in exc.value.message and "byte offset 14" in exc.value.message


def test_truncated_sequence_at_end_is_invalid():
    check = files.Utf8Check()
    check.feed(b'{"a":"\xe2\x82')
    with pytest.raises(errors.InvalidRequest):
        check.finish()


# -- multipart forms ---------------------------------------------------------------------------
def _form(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    out = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--B\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    return out + b"--B--\r\n", "multipart/form-data; boundary=B"


def test_form_reads_bracket_and_json_objects():
    form = parse_form(*_form([("purpose", None, b"batch"), ("expires_after[anchor]", None, b"created_at"),
                              ("expires_after[seconds]", None, b"3600"), ("file", "a.jsonl", b"{}\n")]))
    req = files.parse_create(form.fields(nested=("expires_after",)))
    assert req.purpose == "batch" and req.expires_after.seconds == 3600
    assert form.file("file").filename == "a.jsonl" and form.file("file").data == b"{}\n"
    form = parse_form(*_form([("purpose", None, b"vision"),
                              ("expires_after", None, b'{"anchor":"created_at","seconds":4000}')]))
    assert files.parse_create(form.fields(nested=("expires_after",))).expires_after.seconds == 4000


def test_form_file_without_filename_and_path_names():
    form = parse_form(*_form([("data", None, b"\x00\xffbin")]))
    assert form.file("data").data == b"\x00\xffbin" and form.file("data").filename == "upload"
    form = parse_form(*_form([("file", "../../etc/x.jsonl", b"")]))
    assert form.file("file").filename == "x.jsonl"


def test_form_missing_part_and_wrong_content_type():
    form = parse_form(*_form([("purpose", None, b"batch")]))
    with pytest.raises(errors.InvalidRequest) as exc:
        form.file("file")
    assert exc.value.code == "missing_required_parameter" and exc.value.param == "file"
    with pytest.raises(errors.InvalidRequest, match="multipart/form-data"):
        parse_form(b"{}", "application/json")


# -- wire shapes -------------------------------------------------------------------------------
def test_file_object_is_exactly_openais_shape():
    record = FileRecord.from_item({"id": "file-x", "bytes": 3, "created_at": 10, "filename": "a.jsonl",
                                   "purpose": "batch", "s3_key": "files/t/file-x", "tenant": "t", "ttl": 99})
    assert file_object(record) == {"id": "file-x", "object": "file", "bytes": 3, "created_at": 10,
                                   "expires_at": None, "filename": "a.jsonl", "purpose": "batch",
                                   "status": "processed", "status_details": None}


def test_upload_status_expires_after_an_hour():
    rec = UploadRecord(id="upload_x", tenant="t", bytes=1, created_at=0, expires_at=3600, filename="a",
                       purpose="batch", mime_type="application/jsonl")
    assert uploads.upload_object(rec, now=3599)["status"] == "pending"
    assert uploads.upload_object(rec, now=3600)["status"] == "expired"
    assert "tenant" not in uploads.upload_object(rec, now=3599)
    done = rec.model_copy(update={"status": "completed"})
    assert uploads.upload_object(done, now=9999)["status"] == "completed"


# -- complete against in-memory ports ----------------------------------------------------------
class MemWriter:
    def __init__(self, sink: dict, key: str):
        self.sink, self.key, self.buf, self.aborted = sink, key, io.BytesIO(), False

    def write(self, data: bytes) -> None:
        self.buf.write(data)

    def close(self) -> int:
        self.sink[self.key] = self.buf.getvalue()
        return len(self.sink[self.key])

    def abort(self) -> None:
        self.aborted = True


class MemFiles:
    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.records: dict[str, dict] = {}
        self.writers: list[MemWriter] = []

    def file_key(self, tenant, file_id):
        return f"files/{tenant}/{file_id}"

    def writer(self, key, *, tagging=None):
        self.writers.append(MemWriter(self.objects, key))
        return self.writers[-1]

    def register(self, tenant, *, file_id, filename, purpose, bytes, s3_key, created_at, expires_at):
        self.records[file_id] = FileRecord(id=file_id, tenant=tenant, bytes=bytes, filename=filename,
                                           purpose=purpose, s3_key=s3_key, created_at=created_at,
                                           expires_at=expires_at)
        return self.records[file_id]


class MemUploads:
    """UploadRepository in memory, returning the records the store returns."""
    def __init__(self):
        self.uploads: dict[str, UploadRecord] = {}
        self.part_data: dict[str, bytes] = {}
        self.part_recs: dict[str, dict[str, UploadPartRecord]] = {}
        self.claimed = False

    def create(self, record):
        self.uploads[record.id] = record

    def get(self, tenant, upload_id):
        rec = self.uploads.get(upload_id)
        return rec if rec and rec.tenant == tenant else None

    def put_part(self, tenant, upload_id, *, part_id, data, created_at, ttl):
        self.part_data[part_id] = data
        rec = UploadPartRecord(id=part_id, upload_id=upload_id, created_at=created_at, bytes=len(data),
                               s3_key=f"uploads/{tenant}/{upload_id}/{part_id}")
        self.part_recs.setdefault(upload_id, {})[part_id] = rec
        return rec

    def parts(self, upload_id):
        return dict(self.part_recs.get(upload_id, {}))

    def iter_part(self, part):
        data = self.part_data[part.id]
        for i in range(0, len(data), 3):  # tiny reads: splits multi-byte characters
            yield data[i:i + 3]

    def claim_completion(self, tenant, upload_id, *, now, lease_seconds):
        if self.claimed:
            return False
        self.claimed = True
        return True

    def release_completion(self, tenant, upload_id):
        self.claimed = False

    def _set(self, upload_id, **fields):
        self.uploads[upload_id] = self.uploads[upload_id].model_copy(update=fields)
        return self.uploads[upload_id]

    def mark_completed(self, tenant, upload_id, *, file, now):
        return self._set(upload_id, status="completed", file=file, completed_at=now)

    def mark_cancelled(self, tenant, upload_id, *, now):
        return self._set(upload_id, status="cancelled", cancelled_at=now)

    def delete_parts(self, tenant, upload_id):
        for pid in self.part_recs.pop(upload_id, {}):
            del self.part_data[pid]


def _upload(repo, chunks, purpose="batch", filename="x.jsonl"):
    up = uploads.create_upload(repo, "t", {"filename": filename, "purpose": purpose,
                                           "bytes": sum(map(len, chunks)), "mime_type": "application/jsonl"},
                               now=1000)
    part_ids = [uploads.add_part(repo, "t", up["id"], files.FilePart(c), max_part_bytes=100, now=1001)["id"]
                for c in chunks]
    return up, part_ids


def test_complete_streams_in_given_order_and_cleans_up():
    repo, store = MemUploads(), MemFiles()
    chunks = ['{"a":"é"}\n'.encode(), b'{"b":2}\n', '{"c":"ü"}\n'.encode()]
    up, pids = _upload(repo, chunks)
    done = uploads.complete_upload(repo, store, "t", up["id"], {"part_ids": pids[::-1]}, now=1002)
    assert done["status"] == "completed" and done["file"]["bytes"] == sum(map(len, chunks))
    key = store.file_key("t", done["file"]["id"])
    assert store.objects[key] == b"".join(chunks[::-1])
    assert ids.FILE_ID.match(done["file"]["id"]) and repo.part_data == {}
    assert done["file"]["expires_at"] == 1002 + 30 * 86400


def test_complete_failure_aborts_and_releases():
    repo, store = MemUploads(), MemFiles()
    up, pids = _upload(repo, [b'{"a":1}\n', b'{"b":"\xff"}\n'])
    with pytest.raises(errors.InvalidRequest, match="UTF-8"):
        uploads.complete_upload(repo, store, "t", up["id"], {"part_ids": pids}, now=1002)
    assert store.objects == {} and store.records == {} and store.writers[0].aborted
    assert not repo.claimed and repo.uploads[up["id"]].status == "pending"


def test_non_batch_upload_skips_content_checks():
    repo, store = MemUploads(), MemFiles()
    up, pids = _upload(repo, [b"\xff\xfe", b"\x00"], purpose="vision", filename="img.png")
    done = uploads.complete_upload(repo, store, "t", up["id"], {"part_ids": pids}, now=1002)
    assert done["file"]["expires_at"] is None and done["file"]["filename"] == "img.png"


def test_parts_refused_when_too_large_or_not_pending():
    repo = MemUploads()
    up, _ = _upload(repo, [b"{}"])
    with pytest.raises(errors.PayloadTooLarge):
        uploads.add_part(repo, "t", up["id"], files.FilePart(b"x" * 101), max_part_bytes=100, now=1001)
    with pytest.raises(errors.InvalidRequest, match="'expired'"):
        uploads.add_part(repo, "t", up["id"], files.FilePart(b"x"), max_part_bytes=100, now=1000 + 3600)
    with pytest.raises(errors.NotFound):
        uploads.add_part(repo, "other", up["id"], files.FilePart(b"x"), max_part_bytes=100, now=1001)
