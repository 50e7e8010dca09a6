"""validate -> dispatch -> chunk workers -> finalize, with the handlers called as the state machine
and the SQS trigger would call them."""
from __future__ import annotations

import orjson
from engine_helpers import chat_lines


def test_batch_runs_to_completed_with_every_line_once_in_input_order(engine):
    # Given a 23-line batch cut into 5-line chunks
    batch_id = engine.create_batch(chat_lines(23))

    # When the whole workflow runs
    validated = engine.validate(batch_id)
    assert validated["outcome"] == "valid" and validated["seconds_left"] > 3000
    item = engine.batch(batch_id)
    assert (item.status, item.model, item.total, item.chunk_count) == \
        ("in_progress", "gpt-test", 23, 5)
    assert engine.dispatch(batch_id)["chunks_sent"] == 5
    engine.drain()
    assert engine.workflow.successes[0][0] == f"token-{batch_id}"
    assert engine.workflow.successes[0][1] == {"batch_id": batch_id, "tenant": "tenant-a", "reason": "completed"}
    assert engine.finalize(batch_id, "completed")["status"] == "completed"

    # Then the output holds each line once, in input order, with the upstream's answer
    batch = engine.batch(batch_id)
    assert batch.status == "completed" and batch.completed_at and batch.finalizing_at
    lines = engine.file_lines(batch.output_file_id)
    assert [line["custom_id"] for line in lines] == [f"req-{i}" for i in range(23)]
    assert batch.error_file_id is None
    assert (batch.total, batch.completed, batch.failed) == (23, 23, 0)
    for line in lines:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200
        assert line["response"]["request_id"].startswith("req_")
        assert line["response"]["body"]["object"] == "chat.completion"
    # usage = the sum of the usage blocks that were written
    usages = [line["response"]["body"]["usage"] for line in lines]
    assert batch.input_tokens == sum(u["prompt_tokens"] for u in usages) > 0
    assert batch.output_tokens == sum(u["completion_tokens"] for u in usages) > 0
    assert batch.total_tokens == sum(u["total_tokens"] for u in usages)
    # the output file is a batch_output file with the agreed name, and the work objects are gone
    record = engine.files.get("tenant-a", batch.output_file_id)
    assert record.purpose == "batch_output"
    assert record.filename == f"{batch_id}_output.jsonl"   # batch_<hex>_output.jsonl, not batch_batch_...
    assert record.expires_at - record.created_at == 30 * 86400
    import boto3
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket="bucket", Prefix=f"work/{batch_id}/")


def test_finalize_is_idempotent(engine):
    batch_id = engine.create_batch(chat_lines(7))
    batch = engine.run_all(batch_id)
    again = engine.finalize(batch_id, "completed")
    assert again["status"] == "completed"
    assert engine.batch(batch_id).output_file_id == batch.output_file_id


def test_output_expires_after_sets_result_file_expiry(engine):
    batch_id = engine.create_batch(chat_lines(3), output_expires_after_seconds=7200)
    batch = engine.run_all(batch_id)
    record = engine.files.get("tenant-a", batch.output_file_id)
    assert record.expires_at - record.created_at == 7200


def test_responses_and_embeddings_usage_is_summed(engine):
    lines = [orjson.dumps({"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
                           "body": {"model": "emb", "input": ["a b c d", "e f g h"]}}) for i in range(3)]
    batch_id = engine.create_batch(b"\n".join(lines), endpoint="/v1/embeddings")
    batch = engine.run_all(batch_id)
    out = engine.file_lines(batch.output_file_id)
    assert len(out) == 3 and batch.input_tokens == sum(o["response"]["body"]["usage"]["prompt_tokens"]
                                                           for o in out)
    lines = [orjson.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/responses",
                           "body": {"model": "m", "input": "hello there", "reasoning": {"effort": "low"}}})
             for i in range(2)]
    batch_id = engine.create_batch(b"\n".join(lines) + b"\n", endpoint="/v1/responses")
    batch = engine.run_all(batch_id)
    out = engine.file_lines(batch.output_file_id)
    assert batch.reasoning_tokens == sum(o["response"]["body"]["usage"]["output_tokens_details"]
                                            ["reasoning_tokens"] for o in out) == 32
    assert batch.output_tokens == sum(o["response"]["body"]["usage"]["output_tokens"] for o in out)


def test_chunk_messages_carry_their_tenant_as_message_group(engine):
    """The tenant as MessageGroupId makes the standard chunk queue an SQS fair queue (issue 10)."""
    import boto3

    from batchgate.adapters.sqs import group_id
    batch_id = engine.create_batch(chat_lines(12), tenant="team/ml-1")
    engine.validate(batch_id, tenant="team/ml-1")
    engine.dispatch(batch_id, tenant="team/ml-1")
    got = boto3.client("sqs").receive_message(QueueUrl=engine.queue_url, MaxNumberOfMessages=10,
                                              MessageSystemAttributeNames=["MessageGroupId"])["Messages"]
    assert got and {m["Attributes"]["MessageGroupId"] for m in got} == {"team/ml-1"}
    # a tenant SQS would refuse as a group id goes as its digest (1-128 alphanumerics and punctuation)
    assert group_id("a tenant with spaces") == group_id("a tenant with spaces") != "a tenant with spaces"
    assert len(group_id("é" * 200)) == 64 and group_id("x" * 128) == "x" * 128
