"""Finalize writes the result files with the `retention-days` tag the bucket's lifecycle rules act on."""
from __future__ import annotations

import boto3
from engine_helpers import chat_lines


def tags(file_id: str) -> dict[str, str]:
    resp = boto3.client("s3").get_object_tagging(Bucket="bucket", Key=f"files/tenant-a/{file_id}")
    return {t["Key"]: t["Value"] for t in resp["TagSet"]}


def test_output_and_error_files_are_tagged_from_output_expires_after(engine):
    batch_id = engine.create_batch(chat_lines(4, extra={2: "__fail_400__"}), output_expires_after_seconds=3600)
    batch = engine.run_all(batch_id)
    assert batch.output_file_id and batch.error_file_id
    assert tags(batch.output_file_id) == {"retention-days": "1"}
    assert tags(batch.error_file_id) == {"retention-days": "1"}


def test_result_files_default_to_30_days(engine):
    batch = engine.run_all(engine.create_batch(chat_lines(2)))
    assert tags(batch.output_file_id) == {"retention-days": "30"}
