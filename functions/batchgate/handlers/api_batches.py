"""`/v1/batches`: create, list, retrieve, cancel (thin: parse, call the domain, answer)."""
from __future__ import annotations

import time

from batchgate import openapi
from batchgate.adapters.batch_store import BatchStore
from batchgate.adapters.events import EventPublisher
from batchgate.adapters.workflow import Workflow
from batchgate.contract import Env
from batchgate.domain import batches as domain
from batchgate.handlers import http
from batchgate.models.batches import batch_list, batch_object
from batchgate.observability import lambda_handler
from batchgate.settings import get_settings

app = http.make_resolver()


def _store() -> BatchStore:
    s = get_settings()
    return BatchStore(s.table, EventPublisher(s.event_bus))


def _workflow() -> Workflow:
    return Workflow(get_settings().state_machine_arn)


def _files():
    from batchgate.adapters.file_store import FileStore  # the files API's adapter

    s = get_settings()
    return FileStore(s.table, s.bucket)


@app.post("/v1/batches")
def create():
    tenant, s = http.tenant(app), get_settings()
    item = domain.create_batch(
        tenant, http.json_object(app), files=_files(), batches=_store(),
        workflow=_workflow(), now=int(time.time()), window_seconds=s.completion_window_seconds,
        idempotency_key=app.current_event.headers.get("Idempotency-Key"),
        active_limit=s.quotas.active_batches(tenant))
    return http.json_response(batch_object(item))


@app.get("/v1/batches")
def list_():
    query = app.current_event.query_string_parameters or {}
    items, has_more = domain.list_batches(http.tenant(app), query, batches=_store())
    return http.json_response(batch_list(items, has_more))


@app.get("/v1/batches/<batch_id>")
def retrieve(batch_id: str):
    return http.json_response(batch_object(domain.get_batch(http.tenant(app), batch_id, _store())))


@app.post("/v1/batches/<batch_id>/cancel")
def cancel(batch_id: str):
    item = domain.cancel_batch(http.tenant(app), batch_id, batches=_store(), workflow=_workflow())
    return http.json_response(batch_object(item))


@app.get("/v1/openapi.json")
def openapi_document():  # no authorizer on this route: the published contract holds no tenant data
    return http.json_response(openapi.document())


@lambda_handler(requires=(Env.TABLE, Env.BUCKET, Env.STATE_MACHINE_ARN, Env.EVENT_BUS))
def handler(event, context):
    return app.resolve(event, context)
