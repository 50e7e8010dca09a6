"""adapters/sqs.py: SendMessageBatch in tens, the entries SQS reports as failed sent again, and an error
naming what was refused when they keep failing (both queues send through it)."""
from __future__ import annotations

import boto3
import pytest
from botocore.stub import ANY, Stubber

from batchgate import aws
from batchgate.adapters import sqs

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/q"


@pytest.fixture
def stub(monkeypatch):
    client = boto3.client("sqs", region_name="us-east-1")
    monkeypatch.setattr(aws, "client", lambda name: client)
    monkeypatch.setattr(sqs.time, "sleep", lambda s: None)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def _ok(ids):
    return {"Successful": [{"Id": i, "MessageId": f"m{i}", "MD5OfMessageBody": "x"} for i in ids], "Failed": []}


def test_entries_go_in_tens_and_a_refused_entry_is_sent_again(stub):
    entries = [{"MessageBody": f"b{i}", "MessageGroupId": "t"} for i in range(12)]
    stub.add_response("send_message_batch", {**_ok([str(i) for i in range(1, 10)]),
                                             "Failed": [{"Id": "0", "SenderFault": False, "Code": "InternalError"}]},
                      {"QueueUrl": URL, "Entries": [{"Id": str(i), **entries[i]} for i in range(10)]})
    stub.add_response("send_message_batch", _ok(["0"]),
                      {"QueueUrl": URL, "Entries": [{"Id": "0", **entries[0]}]})
    stub.add_response("send_message_batch", _ok(["0", "1"]),
                      {"QueueUrl": URL, "Entries": [{"Id": "0", **entries[10]}, {"Id": "1", **entries[11]}]})
    sqs.send_batches(URL, entries, "test messages")


def test_entries_that_keep_failing_raise_naming_them(stub):
    failed = {"Successful": [], "Failed": [{"Id": "0", "SenderFault": False, "Code": "InternalError"}]}
    for _ in range(5):
        stub.add_response("send_message_batch", failed, {"QueueUrl": URL, "Entries": ANY})
    with pytest.raises(RuntimeError, match="SQS refused 1 test messages"):
        sqs.send_batches(URL, [{"MessageBody": "b"}], "test messages")


def test_group_ids_sqs_would_refuse_are_digested():
    assert sqs.group_id("team/ml-1") == "team/ml-1"
    assert len(sqs.group_id("a b")) == 64 and sqs.group_id("a b") == sqs.group_id("a b")
