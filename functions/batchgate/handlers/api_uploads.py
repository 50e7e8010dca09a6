"""Uploads API: /v1/uploads, /v1/uploads/{upload_id}/parts|complete|cancel."""
from __future__ import annotations

from batchgate.adapters.file_store import FileStore
from batchgate.adapters.upload_store import UploadStore
from batchgate.contract import Env
from batchgate.domain import uploads
from batchgate.handlers import http
from batchgate.handlers.multipart import parse_form
from batchgate.observability import lambda_handler
from batchgate.settings import get_settings

app = http.make_resolver()


def _uploads() -> UploadStore:
    s = get_settings()
    return UploadStore(s.table, s.bucket)


def _files() -> FileStore:
    s = get_settings()
    return FileStore(s.table, s.bucket)


@app.post("/v1/uploads")
def create_upload():
    return http.json_response(uploads.create_upload(_uploads(), http.tenant(app), http.json_object(app)))


@app.post("/v1/uploads/<upload_id>/parts")
def add_part(upload_id: str):
    tenant = http.tenant(app)
    form = parse_form(http.body_bytes(app), http.header(app, "content-type"))
    return http.json_response(uploads.add_part(_uploads(), tenant, upload_id, form.part("data"),
                                               max_part_bytes=get_settings().max_direct_upload_bytes))


@app.post("/v1/uploads/<upload_id>/complete")
def complete_upload(upload_id: str):
    tenant = http.tenant(app)
    return http.json_response(uploads.complete_upload(_uploads(), _files(), tenant, upload_id,
                                                      http.json_object(app)))


@app.post("/v1/uploads/<upload_id>/cancel")
def cancel_upload(upload_id: str):
    return http.json_response(uploads.cancel_upload(_uploads(), http.tenant(app), upload_id))


@lambda_handler(requires=(Env.TABLE, Env.BUCKET))
def handler(event, context):
    return app.resolve(event, context)
