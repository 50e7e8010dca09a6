"""Local mode runs every function in one process; Lambda gives each concurrent invocation its own.
Powertools' event handler keeps the current event in class attributes shared by all resolvers, so two
overlapping API invocations in one process would read each other's request (a POST /v1/files saw a
GET's headers and answered "expects a multipart/form-data body" in a fault sweep). Local mode runs such
handlers one at a time; this test overlaps two invocations by events, not by timing."""
from __future__ import annotations

import json
import threading

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from batchgate_local.lambdas import POWERTOOLS_STATE, FunctionSpec, InProcessLambdas

app = APIGatewayRestResolver()
parked, release = threading.Event(), threading.Event()


@app.post("/slow")
def slow():
    parked.set()
    release.wait(60)
    return {"content_type": app.current_event.headers.get("content-type")}


@app.get("/fast")
def fast():
    return {"ok": True}


def handler(event, context):
    return app.resolve(event, context)


def _event(method: str, path: str, headers: dict) -> dict:
    return {"httpMethod": method, "path": path, "resource": path, "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()}, "queryStringParameters": None,
            "multiValueQueryStringParameters": None, "pathParameters": None, "body": None,
            "isBase64Encoded": False, "requestContext": {"requestId": "r", "stage": "v1", "httpMethod": method,
                                                         "path": path, "resourcePath": path}}


def test_overlapping_api_invocations_each_see_their_own_request():
    lambdas = InProcessLambdas()
    lambdas.register(FunctionSpec("Probe", "probe", "arn:aws:lambda:us-east-1:123456789012:function:probe",
                                  f"{__name__}.handler", timeout_seconds=60))
    results: dict[str, dict] = {}
    fast_done = threading.Event()

    def post():
        event = _event("POST", "/slow", {"content-type": "multipart/form-data"})
        results["slow"] = lambdas.invoke("probe", event).payload

    def get():
        results["fast"] = lambdas.invoke("probe", _event("GET", "/fast", {})).payload
        with POWERTOOLS_STATE.changed:
            fast_done.set()
            POWERTOOLS_STATE.changed.notify_all()

    first = threading.Thread(target=post)
    first.start()
    assert parked.wait(60)
    second = threading.Thread(target=get)
    second.start()
    # The GET either waits for the POST to finish (the fix) or runs right through (the bug).
    with POWERTOOLS_STATE.changed:
        assert POWERTOOLS_STATE.changed.wait_for(lambda: POWERTOOLS_STATE.waiting or fast_done.is_set(), 60)
    release.set()
    first.join(60)
    second.join(60)
    assert json.loads(results["slow"]["body"]) == {"content_type": "multipart/form-data"}
    assert results["fast"]["statusCode"] == 200
