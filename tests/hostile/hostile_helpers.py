"""Helpers for the hostile-input suites: the shared API Gateway helpers (support.apigw) on this suite's
tenant, the contract every answer must meet, and a snapshot of everything stored.
(A uniquely named module, not conftest, so other test folders' helpers cannot shadow it.)"""
from __future__ import annotations

import functools
import json
import time

from hypothesis import HealthCheck, settings
from support import apigw
from support.apigw import Answer, FakeContext, multipart  # noqa: F401 (re-exported to the tests)

# derandomize: the same examples on every run, so a CI failure reproduces; no deadline because moto
# timings vary on shared runners. Applied per test (not as a global profile, which would change other
# suites' hypothesis settings); each test sets its own example budget so the suite stays < 90 s.
_HOSTILE = settings(derandomize=True, deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


def budget(max_examples: int) -> settings:
    return settings(_HOSTILE, max_examples=max_examples)


TABLE = "hostile-state"
KEYS_TABLE = "hostile-keys"
BUCKET = "hostile-bucket"
BUS = "hostile-bus"
STATE_MACHINE = "hostile-batch"
TENANT = "tenant-a"
GOOD_LINE = b'{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}\n'

# The shared API Gateway helpers, on behalf of this suite's tenant unless a test names another.
call = functools.partial(apigw.call, tenant=TENANT)
call_json = functools.partial(apigw.call_json, tenant=TENANT)


def upload_file(tenant: str, data: bytes = GOOD_LINE, filename: str = "in.jsonl", purpose: str = "batch") -> dict:
    body, ctype = multipart([("purpose", None, purpose.encode()), ("file", filename, data)])
    answer = call("POST", "/v1/files", tenant=tenant, body=body, headers={"Content-Type": ctype})
    assert answer.status == 200, answer
    return answer.json()


def store_file(tenant: str, data: bytes, purpose: str = "batch") -> str:
    """Registers a file straight through the files adapter (for inputs bigger than a direct upload)."""
    from batchgate import ids
    from batchgate.adapters.file_store import FileStore

    store, file_id, now = FileStore(TABLE, BUCKET), ids.file_id(), int(time.time())
    key = store.file_key(tenant, file_id)
    store.put_bytes(key, data)
    store.register(tenant, file_id=file_id, filename="in.jsonl", purpose=purpose, bytes=len(data),
                   s3_key=key, created_at=now, expires_at=now + 86400)
    return file_id


# -- the contract ----------------------------------------------------------------------------------
def assert_contract(answer: Answer) -> None:
    """Every answer is a 2xx/3xx object or OpenAI's error envelope with all four keys and a 4xx status."""
    assert answer.status < 500, answer
    if answer.status >= 400:
        body = answer.json()
        assert set(body) == {"error"}, answer
        err = body["error"]
        assert set(err) == {"message", "type", "param", "code"}, answer
        assert isinstance(err["message"], str) and err["message"], answer
        assert err["type"] == "invalid_request_error", answer
        assert err["param"] is None or isinstance(err["param"], str), answer
        assert err["code"] is None or isinstance(err["code"], str), answer
    elif answer.status == 200 and answer.headers.get("content-type", "").startswith("application/json"):
        assert isinstance(answer.json(), dict), answer


def snapshot() -> dict:
    """Everything stored: every item of both tables and every object's ETag and size. Read from moto's
    in-memory backends: a Scan through boto3 re-serializes every item and costs ~1 s per call here."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    from moto.s3.models import s3_backends

    tables = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables
    state = {name: sorted(json.dumps(item.to_json(), sort_keys=True) for item in tables[name].all_items())
             for name in (TABLE, KEYS_TABLE)}
    bucket = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[BUCKET]
    state["s3"] = {key: (obj.etag, obj.size) for key, obj in bucket.keys.items()}
    return state
