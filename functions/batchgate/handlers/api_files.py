"""Files API: /v1/files, /v1/files/{file_id}, /v1/files/{file_id}/content."""
from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from batchgate.adapters.file_store import FileStore
from batchgate.contract import Env
from batchgate.domain import files
from batchgate.handlers import http
from batchgate.handlers.multipart import parse_form
from batchgate.models.files import file_object
from batchgate.observability import lambda_handler
from batchgate.settings import get_settings

app = http.make_resolver()


def _store() -> FileStore:
    s = get_settings()
    return FileStore(s.table, s.bucket)


@app.post("/v1/files")
def create_file():
    tenant = http.tenant(app)
    body = http.body_bytes(app)
    files.check_direct_upload(len(body), get_settings().max_direct_upload_bytes)
    form = parse_form(body, http.header(app, "content-type"))
    part = form.file("file")
    fields = form.fields(nested=("expires_after",))
    return http.json_response(file_object(files.create_file(_store(), tenant, part, fields)))


@app.get("/v1/files")
def list_files():
    query = app.current_event.query_string_parameters or {}
    return http.json_response(files.list_files(_store(), http.tenant(app), query))


@app.get("/v1/files/<file_id>")
def retrieve_file(file_id: str):
    return http.json_response(file_object(files.get_file(_store(), http.tenant(app), file_id)))


@app.delete("/v1/files/<file_id>")
def delete_file(file_id: str):
    return http.json_response(files.delete_file(_store(), http.tenant(app), file_id))


@app.get("/v1/files/<file_id>/content")
def file_content(file_id: str):
    s = get_settings()
    content = files.file_content(_store(), http.tenant(app), file_id,
                                 redirect_over=s.content_redirect_bytes, presign_seconds=s.presign_seconds)
    if content.redirect:
        # `?redirect=json` (the browser console): the same notice as a 200, since a page cannot keep
        # fetch() from following a 302 to another origin nor read a 302's Location.
        if (app.current_event.query_string_parameters or {}).get("redirect") == "json":
            return http.json_response(content.notice)
        # The SDK follows it and drops Authorization on the cross-origin hop to S3; the JSON body
        # tells a client that does not follow redirects where the bytes are.
        answer = http.json_response(content.notice, status=302)
        answer.headers["Location"] = content.redirect
        return answer
    return Response(status_code=200, content_type="application/octet-stream", body=content.data)


@lambda_handler(requires=(Env.TABLE, Env.BUCKET))
def handler(event, context):
    return app.resolve(event, context)
