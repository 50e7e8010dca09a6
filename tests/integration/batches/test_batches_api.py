"""The batches API handler against moto: create, list, retrieve, cancel, tenant isolation."""
from __future__ import annotations

import json
import types

import pytest
from batches_helpers import BUS, TABLE, call

from batchgate import aws, ids
from batchgate.adapters.batch_store import BatchStore
from batchgate.adapters.events import EventPublisher
from batchgate.domain import batches as domain
from batchgate.handlers import api_batches

BODY = {"endpoint": "/v1/chat/completions", "completion_window": "24h"}


def create(file_id, tenant="acme", headers=None, **extra):
    return call("POST", "/v1/batches", {**BODY, "input_file_id": file_id, **extra}, tenant=tenant,
                headers=headers)


def set_status(table, batch_id, status, tenant="acme", **fields):
    sets = {"status": status, **fields}
    table.update_item(Key={"pk": f"T#{tenant}", "sk": f"BATCH#{batch_id}"},
                      UpdateExpression="SET " + ", ".join(f"#k{i} = :v{i}" for i in range(len(sets))),
                      ExpressionAttributeNames={f"#k{i}": k for i, k in enumerate(sets)},
                      ExpressionAttributeValues={f":v{i}": v for i, v in enumerate(sets.values())})


def task_failures() -> list[dict]:
    """Records the SendTaskFailure calls the handler really makes (moto accepts any token)."""
    calls: list[dict] = []
    aws.client("stepfunctions").meta.events.register(
        "provide-client-params.sfn.SendTaskFailure", lambda params, **_: calls.append(dict(params)))
    return calls


# -- create ----------------------------------------------------------------------------------------
def test_create_stores_a_validating_batch_and_starts_its_execution(input_file, sfn, state_machine_arn, table):
    file_id = input_file()
    answer = create(file_id, metadata={"project": "x"},
                    output_expires_after={"anchor": "created_at", "seconds": 7200})
    assert answer.status == 200, answer.body
    batch = answer.body
    assert ids.BATCH_ID.match(batch["id"])
    assert batch["status"] == "validating" and batch["input_file_id"] == file_id
    assert batch["expires_at"] == batch["created_at"] + 86400
    assert batch["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert batch["metadata"] == {"project": "x"} and batch["usage"] is None
    assert answer.headers["x-request-id"].startswith("req_")

    execution = sfn.describe_execution(executionArn=state_machine_arn.replace(
        ":stateMachine:", ":execution:") + ":" + batch["id"])
    assert execution["name"] == batch["id"]
    assert json.loads(execution["input"]) == {"batch_id": batch["id"], "tenant": "acme"}

    item = table.get_item(Key={"pk": "T#acme", "sk": "BATCH#" + batch["id"]})["Item"]
    assert item["output_expires_after_seconds"] == 7200 and item["total"] == 0
    assert "input_tokens" not in item  # absent, so workers can ADD to it


def test_create_honours_the_configured_window(input_file, monkeypatch):
    monkeypatch.setenv("BATCHGATE_COMPLETION_WINDOW_SECONDS", "5")
    from batchgate import settings
    settings.reset_settings()
    batch = create(input_file()).body
    assert batch["expires_at"] == batch["created_at"] + 5


@pytest.mark.parametrize(("raw", "param", "code"), [
    ("[1, 2]", "body", "invalid_type"),
    ("{not json", None, "invalid_json"),
    ("", "input_file_id", "missing_required_parameter"),
    (json.dumps({"input_file_id": "file-x", "endpoint": "/v1/x", "completion_window": "24h"}),
     "endpoint", "invalid_value"),
])
def test_bad_bodies_are_400_envelopes(aws_env, table, raw, param, code):
    answer = call("POST", "/v1/batches", raw_body=raw)
    assert answer.status == 400
    assert (answer.error["param"], answer.error["code"], answer.error["type"]) == (
        param, code, "invalid_request_error")
    assert table.scan()["Count"] == 0


def test_unknown_and_foreign_input_files_are_404_and_create_nothing(input_file, sfn, state_machine_arn, table):
    foreign = input_file(tenant="other")
    for file_id in (foreign, ids.file_id()):
        answer = create(file_id)
        assert answer.status == 404
        assert answer.body == {"error": {"message": f"No such File object: {file_id}",
                                         "type": "invalid_request_error", "param": "input_file_id",
                                         "code": None}}
    assert sfn.list_executions(stateMachineArn=state_machine_arn)["executions"] == []
    assert not [i for i in table.scan()["Items"] if i["sk"].startswith("BATCH#")]


def test_an_input_file_of_another_purpose_is_400(input_file):
    answer = create(input_file(purpose="assistants"))
    assert answer.status == 400
    assert answer.error["param"] == "input_file_id" and "'batch'" in answer.error["message"]


def test_when_the_execution_cannot_start_the_batch_is_failed_and_the_answer_is_500(input_file, monkeypatch, table):
    monkeypatch.setenv("BATCHGATE_STATE_MACHINE_ARN",
                       "arn:aws:states:us-east-1:123456789012:stateMachine:missing")
    from batchgate import settings
    settings.reset_settings()
    answer = create(input_file())
    assert answer.status == 500 and answer.error["type"] == "server_error"
    (item,) = [i for i in table.scan()["Items"] if i["sk"].startswith("BATCH#")]
    assert item["status"] == "failed" and item["errors"][0]["code"] == "batch_start_failed"
    listed = call("GET", "/v1/batches").body["data"]
    assert listed[0]["status"] == "failed" and listed[0]["errors"]["object"] == "list"


def test_the_same_idempotency_key_returns_the_same_batch(input_file, sfn, state_machine_arn):
    file_id = input_file()
    first = create(file_id, headers={"Idempotency-Key": "abc"})
    again = create(file_id, headers={"idempotency-key": "abc"})
    other_tenant = call("POST", "/v1/batches", {**BODY, "input_file_id": input_file("beta")},
                        tenant="beta", headers={"Idempotency-Key": "abc"})
    assert first.status == again.status == other_tenant.status == 200
    assert again.body["id"] == first.body["id"] != other_tenant.body["id"]
    assert len(sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]) == 2


# -- list / retrieve -------------------------------------------------------------------------------
def test_batches_created_in_one_second_list_newest_first_to_the_millisecond(aws_env, input_file, monkeypatch):
    """Issue 8: ids used to sort by their random part after the second. Through the API, with a
    clock that stays inside one second and advances 1 ms per batch (two batches share a millisecond)."""
    file_id = input_file()
    ticks = iter([1_800_000_000.001, 1_800_000_000.002, 1_800_000_000.002, 1_800_000_000.003,
                  1_800_000_000.004, 1_800_000_000.005, 1_800_000_000.006, 1_800_000_000.007])
    monkeypatch.setattr(ids, "_clock", lambda: next(ticks))
    monkeypatch.setattr(api_batches, "time", types.SimpleNamespace(time=lambda: 1_800_000_000.5))
    created = []
    for _ in range(8):
        answer = call("POST", "/v1/batches", {**BODY, "input_file_id": file_id})
        assert answer.status == 200
        created.append(answer.body["id"])
    listed = [b["id"] for b in call("GET", "/v1/batches").body["data"]]
    # Newest first by millisecond; the two of one millisecond in a stable order (by id), on every page.
    expected = sorted(created, key=lambda i: (ids.batch_created_ms(i), i), reverse=True)
    assert listed == expected
    assert [ids.batch_created_ms(i) - 1_800_000_000_000 for i in listed] == [7, 6, 5, 4, 3, 2, 2, 1]
    paged, after = [], None
    while True:
        page = call("GET", "/v1/batches", query={"limit": "3", **({"after": after} if after else {})}).body
        paged += [b["id"] for b in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert paged == expected


def test_list_pages_45_batches_newest_first_without_duplicates(aws_env):
    store = BatchStore(TABLE, EventPublisher(None))
    request = domain.parse_create({**BODY, "input_file_id": "file-" + "A" * 24})
    base = 1_700_000_000
    for i in range(45):
        for tenant in ("acme", "zeta"):  # another tenant's batches interleave in time
            store.put_new(domain.new_batch_record(tenant, request, now=base + i, window_seconds=86400))
    seen, after, pages = [], None, 0
    while True:
        page = call("GET", "/v1/batches", query={"limit": "10", **({"after": after} if after else {})}).body
        pages += 1
        seen.extend(page["data"])
        assert page["first_id"] == page["data"][0]["id"] and page["last_id"] == page["data"][-1]["id"]
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    assert pages == 5 and len(seen) == 45 and len({b["id"] for b in seen}) == 45
    assert [b["created_at"] for b in seen] == list(range(base + 44, base - 1, -1))
    default = call("GET", "/v1/batches").body
    assert len(default["data"]) == 20 and default["has_more"] is True
    assert call("GET", "/v1/batches", tenant="nobody").body == {
        "object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


def test_a_batch_list_page_is_bounded_in_bytes(aws_env, monkeypatch):
    # 100 batches with full metadata and stored errors would pass Lambda's 6 MB answer.
    from batchgate.models import pages
    monkeypatch.setattr(pages, "PAGE_MAX_BYTES", 30_000)
    store = BatchStore(TABLE, EventPublisher(None))
    metadata = {f"k{i}": "v" * 500 for i in range(16)}
    request = domain.parse_create({**BODY, "input_file_id": "file-" + "B" * 24, "metadata": metadata})
    for i in range(7):
        store.put_new(domain.new_batch_record("acme", request, now=1_700_000_000 + i, window_seconds=86400))
    seen, after = [], None
    while True:
        page = call("GET", "/v1/batches", query={"limit": "100", **({"after": after} if after else {})}).body
        assert 1 <= len(page["data"]) <= 4
        seen += [b["id"] for b in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert len(seen) == len(set(seen)) == 7


@pytest.mark.parametrize(("query", "param"), [({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"),
                                              ({"limit": "x"}, "limit"), ({"after": "file-abc"}, "after")])
def test_bad_list_parameters_are_400_invalid_value(aws_env, query, param):
    answer = call("GET", "/v1/batches", query=query)
    assert answer.status == 400
    assert (answer.error["param"], answer.error["code"]) == (param, "invalid_value")


def test_retrieve(input_file):
    created = create(input_file()).body
    answer = call("GET", f"/v1/batches/{created['id']}")
    assert answer.status == 200 and answer.body == created


@pytest.mark.parametrize("batch_id", ["batch_" + "0" * 32, "not-an-id"])
def test_retrieve_unknown_is_404(aws_env, batch_id):
    answer = call("GET", f"/v1/batches/{batch_id}")
    assert answer.status == 404
    assert answer.body == {"error": {"message": f"No such Batch object: {batch_id}",
                                     "type": "invalid_request_error", "param": "batch_id", "code": None}}


# -- cancel ----------------------------------------------------------------------------------------
def test_cancel_while_validating_moves_to_cancelling(input_file):
    calls = task_failures()
    batch = create(input_file()).body
    answer = call("POST", f"/v1/batches/{batch['id']}/cancel")
    assert answer.status == 200
    assert answer.body["status"] == "cancelling" and answer.body["cancelling_at"] >= batch["created_at"]
    assert calls == []  # no task is waiting yet: the workflow notices the status itself
    assert call("GET", f"/v1/batches/{batch['id']}").body["status"] == "cancelling"


def test_cancel_while_in_progress_fails_the_waiting_task(input_file, table):
    calls = task_failures()
    batch = create(input_file()).body
    set_status(table, batch["id"], "in_progress", task_token="token-1", in_progress_at=1)
    answer = call("POST", f"/v1/batches/{batch['id']}/cancel")
    assert answer.status == 200 and answer.body["status"] == "cancelling"
    assert "task_token" not in answer.body
    assert calls == [{"taskToken": "token-1", "error": "Batch.Cancelled", "cause": "cancelled by user"}]


@pytest.mark.parametrize("status", ["cancelling", "cancelled"])
def test_cancel_again_is_200_and_changes_nothing(input_file, table, status):
    batch = create(input_file()).body
    set_status(table, batch["id"], status, cancelling_at=5)
    answer = call("POST", f"/v1/batches/{batch['id']}/cancel")
    assert answer.status == 200 and answer.body["status"] == status and answer.body["cancelling_at"] == 5


@pytest.mark.parametrize("status", ["completed", "failed", "expired", "finalizing"])
def test_cancel_of_a_finished_batch_is_409_and_not_retryable(input_file, table, status):
    batch = create(input_file()).body
    set_status(table, batch["id"], status)
    answer = call("POST", f"/v1/batches/{batch['id']}/cancel")
    assert answer.status == 409
    assert answer.body == {"error": {"message": f"Cannot cancel a batch with status '{status}'.",
                                     "type": "invalid_request_error", "param": None, "code": None}}
    assert answer.headers["x-should-retry"] == "false"


def test_cancel_publishes_a_status_event(input_file):
    import boto3
    events = boto3.client("events")
    # a rule + SQS target lets the test read what reached the bus
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="seen")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": ["batchgate"]}))
    events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "q", "Arn": queue_arn}])
    batch = create(input_file()).body
    call("POST", f"/v1/batches/{batch['id']}/cancel")
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    kinds = [json.loads(m["Body"])["detail-type"] for m in messages]
    assert "batch.cancelling" in kinds


# -- tenant isolation ------------------------------------------------------------------------------
def test_another_tenant_sees_404_everywhere_and_cannot_cancel(input_file):
    batch = create(input_file()).body
    for method, path in (("GET", f"/v1/batches/{batch['id']}"), ("POST", f"/v1/batches/{batch['id']}/cancel")):
        answer = call(method, path, tenant="intruder")
        assert answer.status == 404 and answer.error["message"] == f"No such Batch object: {batch['id']}"
    assert call("GET", "/v1/batches", tenant="intruder").body["data"] == []
    assert call("GET", f"/v1/batches/{batch['id']}").body["status"] == "validating"


def test_without_an_authorizer_tenant_the_answer_is_401(aws_env):
    answer = call("GET", "/v1/batches", tenant=None)
    assert answer.status == 401 and answer.error["code"] == "invalid_api_key"


def test_an_expired_idempotency_key_binds_anew(aws_env):
    store = BatchStore(TABLE, EventPublisher(None))
    old = store.claim_idempotency_key("acme", "k", "batch_old", "f", expires_at=1)
    assert old["batch_id"] == "batch_old"
    assert store.claim_idempotency_key("acme", "k", "batch_new", "f", expires_at=2**31)["batch_id"] == "batch_new"
    assert store.claim_idempotency_key("acme", "k", "batch_3rd", "f", expires_at=2**31)["batch_id"] == "batch_new"
