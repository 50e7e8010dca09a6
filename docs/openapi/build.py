"""Builds functions/batchgate/openapi.json, the OpenAPI 3.1 document the service publishes at
GET /v1/openapi.json.

It starts from OpenAI's own schema (openai-upstream.json: the batch, file and upload parts of
openai/openai-openapi, copied verbatim) so the wire shapes stay OpenAI's, keeps only the routes
Batchgate serves, and adds what OpenAI's document leaves out but Batchgate answers:
- explicit nulls: the API sends every key, unset ones as null (OpenAI's schema marks none nullable);
- the error answers (400/401/404/409/413/429/500) in OpenAI's error envelope;
- the 302 redirect of GET /files/{file_id}/content for large files, and its real content type;
- Batchgate's limits (list `limit` ranges, metadata sizes, upload sizes, the `evals` purpose).

Regenerate after editing this file (tests/conformance/test_openapi_document.py checks that the
committed file equals this output):

    .venv/bin/python docs/openapi/build.py
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
UPSTREAM = HERE / "openai-upstream.json"
OUTPUT = HERE.parents[1] / "functions" / "batchgate" / "openapi.json"

VERSION = "1.0.0"
NULL = {"type": "null"}
# Internal bookkeeping in OpenAI's document that means nothing to a Batchgate client.
_DROP_KEYS = ("x-oaiMeta", "x-stainless-naming", "x-oaiTypeLabel", "x-stainless-const")

# GET /files/{file_id}/content of a large file: the 302's body, or the 200 of `?redirect=json`.
REDIRECT_NOTICE = {
    "type": "object", "description": "Where the bytes are, for a client that does not follow "
                                     "redirects (curl without -L).",
    "required": ["object", "id", "bytes", "url", "expires_in", "message"],
    "properties": {"object": {"type": "string", "const": "file.content.redirect"},
                   "id": {"type": "string"}, "bytes": {"type": "integer"},
                   "url": {"type": "string", "format": "uri", "description": "Same as Location."},
                   "expires_in": {"type": "integer", "description": "Seconds the URL is valid."},
                   "message": {"type": "string"}}}

SCHEMAS = ("Batch", "BatchError", "BatchRequestCounts", "BatchFileExpirationAfter", "CreateBatchRequest",
           "ListBatchesResponse", "Metadata", "OpenAIFile", "CreateFileRequest", "FileExpirationAfter",
           "ListFilesResponse", "DeleteFileResponse", "Upload", "UploadPart", "CreateUploadRequest",
           "AddUploadPartRequest", "CompleteUploadRequest")

# (path, method) -> (our summary, error statuses besides 200 and the 401/429 every keyed route has)
OPERATIONS: dict[tuple[str, str], tuple[str, tuple[int, ...]]] = {
    ("/files", "post"): ("Upload a file (multipart). Batch input files must be UTF-8 JSONL of at most "
                         "200 MB; this route takes bodies up to 4 MB, larger files go through /uploads.",
                         (400, 413)),
    ("/files", "get"): ("List the caller's files.", (400,)),
    ("/files/{file_id}", "get"): ("Retrieve a file object.", (404,)),
    ("/files/{file_id}", "delete"): ("Delete a file.", (404,)),
    ("/files/{file_id}/content", "get"): ("Download a file's bytes: inline, or for large files a 302 "
                                          "redirect to a short-lived presigned URL.", (404,)),
    ("/uploads", "post"): ("Create an Upload (a file sent in parts; up to 8 GB).", (400, 413)),
    ("/uploads/{upload_id}/parts", "post"): ("Add a part (multipart field `data`, at most 4 MiB) to a "
                                             "pending Upload.", (400, 404, 409, 413)),
    ("/uploads/{upload_id}/complete", "post"): ("Complete an Upload: its parts, in the given order, become "
                                                "a file.", (400, 404, 409, 413)),
    ("/uploads/{upload_id}/cancel", "post"): ("Cancel a pending Upload.", (400, 404, 409)),
    ("/batches", "post"): ("Create a batch from an uploaded JSONL file and start it. File-content problems "
                           "are reported later on the batch (`status: failed`, `errors`).",
                           (400, 404, 409, 413, 500)),
    ("/batches", "get"): ("List the caller's batches, newest first.", (400,)),
    ("/batches/{batch_id}", "get"): ("Retrieve a batch.", (404,)),
    ("/batches/{batch_id}/cancel", "post"): ("Cancel a batch: `cancelling` until in-flight requests "
                                             "finish, then `cancelled`. Idempotent; 409 for a batch that "
                                             "already completed, failed or expired.", (404, 409, 500)),
}

ERROR_RESPONSES = {
    400: ("BadRequest", "The request is invalid (`param` names the culprit; `code` is e.g. `invalid_value`, "
                        "`invalid_type` or `missing_required_parameter`)."),
    401: ("Unauthorized", "Missing or invalid API key (`code: invalid_api_key`)."),
    404: ("NotFound", "No such object for this API key (objects of other keys are never visible)."),
    409: ("Conflict", "The object's state forbids the operation. Carries `x-should-retry: false`, so the "
                      "SDK does not retry it."),
    413: ("PayloadTooLarge", "The request body is over a size limit (`code: request_too_large`)."),
    429: ("TooManyRequests", "Throttled by the API's rate limit (`code: rate_limit_exceeded`)."),
    500: ("ServerError", "The service could not complete the operation; retrying is safe."),
}

REQUEST_ID_HEADER = {"description": "Identifies the request in the service's logs.",
                     "schema": {"type": "string"}}

LINKS = {
    # Where an answer's id can be used next: documents the flow, and lets stateful testers chain calls.
    ("/files", "post"): {f"{op}": ("file_id", "$response.body#/id") for op in
                         ("retrieveFile", "deleteFile", "downloadFile")},
    ("/uploads", "post"): {f"{op}": ("upload_id", "$response.body#/id") for op in
                           ("addUploadPart", "completeUpload", "cancelUpload")},
    ("/batches", "post"): {f"{op}": ("batch_id", "$response.body#/id") for op in
                           ("retrieveBatch", "cancelBatch")},
}


def _clean(node):
    if isinstance(node, dict):
        return {k: _clean(v) for k, v in node.items() if k not in _DROP_KEYS}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def _nullable(schema: dict) -> dict:
    """The same schema, also allowing null (OpenAPI 3.1 / JSON Schema style)."""
    if "$ref" in schema or "allOf" in schema or "anyOf" in schema:
        return {"anyOf": [schema, NULL]}
    if isinstance(schema.get("type"), str):
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, NULL]}


def _all_required(schema: dict) -> None:
    schema["required"] = list(schema["properties"])


def _schemas(upstream: dict) -> dict:
    src = _clean(copy.deepcopy(upstream["components"]["schemas"]))
    s = {name: src[name] for name in SCHEMAS}

    # Batch: every key is sent; unset ones are null.
    batch = s["Batch"]["properties"]
    for name in ("model", "errors", "output_file_id", "error_file_id", "in_progress_at", "expires_at",
                 "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at",
                 "usage"):
        batch[name] = _nullable(batch[name])
    batch["errors"]["required"] = ["object", "data"]
    batch["errors"]["properties"]["object"]["enum"] = ["list"]
    _all_required(s["Batch"])
    for name in ("code", "message"):
        s["BatchError"]["properties"][name] = _nullable(s["BatchError"]["properties"][name])

    # Lists: an empty page has no first or last id.
    for lst in ("ListBatchesResponse", "ListFilesResponse"):
        props = s[lst]["properties"]
        props["first_id"] = _nullable(props["first_id"])
        props["last_id"] = _nullable(props["last_id"])
        props["object"] = {"type": "string", "enum": ["list"]}
        _all_required(s[lst])

    # File object: Batchgate also stores `evals` files (an upload purpose OpenAI's File enum lacks).
    f = s["OpenAIFile"]
    f["type"] = "object"
    f["properties"]["purpose"]["enum"].append("evals")
    f["properties"]["expires_at"] = _nullable(f["properties"]["expires_at"])
    f["properties"]["status_details"] = _nullable(f["properties"]["status_details"])
    _all_required(f)

    # Upload: `file` is null until completed (OpenAI's `nullable: true` is OpenAPI 3.0, void in 3.1).
    up = s["Upload"]
    up["properties"]["file"] = {"anyOf": [{"$ref": "#/components/schemas/OpenAIFile"}, NULL],
                                "description": "The file the completed Upload became; null before."}
    _all_required(up)

    # Requests: Batchgate's accepted values and limits.
    create_upload = s["CreateUploadRequest"]["properties"]
    create_upload["purpose"]["enum"] = ["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]
    create_upload["bytes"].update(minimum=0, maximum=8 * 1024 ** 3)
    create_upload["filename"].update(minLength=1, maxLength=1024)
    create_upload["mime_type"]["minLength"] = 1
    s["CreateUploadRequest"]["additionalProperties"] = True  # unknown keys are ignored, as OpenAI does
    s["CompleteUploadRequest"]["additionalProperties"] = True
    s["Metadata"]["anyOf"][0].update(maxProperties=16, propertyNames={"maxLength": 64})
    s["Metadata"]["anyOf"][0]["additionalProperties"] = {"type": "string", "maxLength": 512}

    s["Error"] = {
        "type": "object", "title": "Error",
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}},
        "required": ["message", "type", "param", "code"],
    }
    s["ErrorResponse"] = {"type": "object", "properties": {"error": {"$ref": "#/components/schemas/Error"}},
                          "required": ["error"]}
    return s


def _error_responses() -> dict:
    out = {}
    for status, (name, description) in ERROR_RESPONSES.items():
        headers = {"x-request-id": REQUEST_ID_HEADER}
        if status == 409:
            headers["x-should-retry"] = {"description": "Always `false`: retrying cannot help.",
                                         "schema": {"type": "string", "enum": ["false", "true"]}}
        if status == 429:
            headers["Retry-After"] = {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        out[name] = {"description": description, "headers": headers,
                     "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    return out


def _ok(content: dict, description: str, **extra) -> dict:
    return {"description": description, "headers": {"x-request-id": REQUEST_ID_HEADER}, "content": content,
            **extra}


def _operation(path: str, method: str, upstream_op: dict) -> dict:
    summary, errors = OPERATIONS[(path, method)]
    op = _clean(copy.deepcopy(upstream_op))
    op.pop("description", None)
    op["summary"] = summary
    ok = op["responses"]["200"]
    ok_content = ok["content"]
    if path == "/files/{file_id}/content":
        # The bytes as stored, not JSON (OpenAI's document says application/json).
        ok_content = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    responses = {"200": _ok(ok_content, ok.get("description") or "OK")}
    if path == "/files/{file_id}/content":
        op.setdefault("parameters", []).append({
            "name": "redirect", "in": "query", "required": False,
            "description": "`json`: a file too large to answer inline is answered 200 with the redirect's "
                           "JSON body instead of a 302 (for browsers, whose fetch cannot read a 302).",
            "schema": {"type": "string", "enum": ["json"]}})
        responses["200"]["content"]["application/json"] = {"schema": copy.deepcopy(REDIRECT_NOTICE)}
        responses["302"] = {
            "description": "The file is larger than a Lambda answer may be: fetch it from `Location`, a "
                           "presigned URL valid for a few minutes (do not send the API key there).",
            "headers": {"Location": {"required": True, "schema": {"type": "string", "format": "uri"}},
                        "x-request-id": REQUEST_ID_HEADER},
            "content": {"application/json": {"schema": copy.deepcopy(REDIRECT_NOTICE)}}}
    for status in sorted({*errors, 401, 429}):
        responses[str(status)] = {"$ref": f"#/components/responses/{ERROR_RESPONSES[status][0]}"}
    links = LINKS.get((path, method))
    if links:
        responses["200"]["links"] = {
            f"{target}": {"operationId": target, "parameters": {param: expr}}
            for target, (param, expr) in links.items()}
    op["responses"] = responses
    _limits(path, method, op)
    return op


def _limits(path: str, method: str, op: dict) -> None:
    params = {p["name"]: p for p in op.get("parameters", [])}
    if (path, method) == ("/batches", "get"):
        params["limit"]["schema"].update(minimum=1, maximum=100)
        params["after"]["description"] = "A batch id: the page starts after it."
    if (path, method) == ("/files", "get"):
        params["limit"]["schema"].update(minimum=1, maximum=10000)
        params["after"]["description"] = "A file id: the page starts after it."
    for p in params.values():
        p.pop("example", None)
        p["schema"].pop("example", None)


def build() -> dict:
    upstream = json.loads(UPSTREAM.read_text())
    paths: dict = {}
    for (path, method) in OPERATIONS:
        paths.setdefault(path, {})[method] = _operation(path, method, upstream["paths"][path][method])
    paths["/openapi.json"] = {"get": {
        "operationId": "getOpenApiDocument", "tags": ["Meta"], "security": [],
        "summary": "This document. Needs no API key.",
        "responses": {"200": _ok({"application/json": {"schema": {"type": "object"}}}, "The OpenAPI document."),
                      "429": {"$ref": "#/components/responses/TooManyRequests"}},
    }}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Batchgate",
            "version": VERSION,
            "summary": "A self-hosted, OpenAI-compatible Files, Uploads and Batches API.",
            "description": "Point the official OpenAI SDK at `<deployment>/v1`. Shapes follow OpenAI's "
                           "published OpenAPI document (openai/openai-openapi), restricted to the routes "
                           "served here, with explicit nulls, error answers and Batchgate's limits added.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": "/v1"}],
        "security": [{"ApiKeyAuth": []}],
        "tags": [{"name": "Files"}, {"name": "Uploads"}, {"name": "Batch"}, {"name": "Meta"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"ApiKeyAuth": {"type": "http", "scheme": "bearer",
                                               "description": "`Authorization: Bearer <API key>`"}},
            "responses": _error_responses(),
            "schemas": _schemas(upstream),
        },
    }


def render(document: dict) -> str:
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    OUTPUT.write_text(render(build()))
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
