"""Local mode's moto server applies each DynamoDB write and each conditional S3 put atomically, as
DynamoDB and S3 do.

Without `batchgate_local.atomic`, moto reads, checks and writes an item without a lock: concurrent
`ADD`s lose increments, and two conditional claims (or two create-only puts of one key) can both
succeed. The fault sweep once saw a batch's `chunks_done` one short, so the last chunk never resumed
the workflow.
"""
from __future__ import annotations

import sys
import threading
import time
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from batchgate_local import atomic

THREADS, EACH = 8, 40


@pytest.fixture
def moto_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client("dynamodb", endpoint_url=url)
    client.create_table(TableName="t", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    # Switch threads every few bytecodes, so a read-check-write without a lock is interleaved.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    atomic.install()
    try:
        yield url
    finally:
        atomic.uninstall()
        sys.setswitchinterval(interval)
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10).read()
        server.stop()


def _hammer(url: str, work, service: str = "dynamodb", each: int = EACH) -> list:
    results: list = []
    start = threading.Barrier(THREADS)

    def run():
        client = boto3.client(service, endpoint_url=url)
        for i in range(each):
            start.wait()  # every thread at once, for each i
            results.append(work(client, i))

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_adds_in_transactions_all_count(moto_url):
    boto3.client("dynamodb", endpoint_url=moto_url).put_item(TableName="t", Item={"pk": {"S": "b"}, "n": {"N": "0"}})

    def add(client, _):
        client.transact_write_items(TransactItems=[{"Update": {
            "TableName": "t", "Key": {"pk": {"S": "b"}}, "UpdateExpression": "ADD n :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}}}}])

    _hammer(moto_url, add)
    item = boto3.client("dynamodb", endpoint_url=moto_url).get_item(TableName="t", Key={"pk": {"S": "b"}})["Item"]
    assert int(item["n"]["N"]) == THREADS * EACH


def test_a_conditional_claim_is_won_once(moto_url):
    """Each round's item can be claimed once; every thread tries every round."""
    def claim(client, i):
        try:
            client.update_item(TableName="t", Key={"pk": {"S": f"chunk{i}"}}, UpdateExpression="SET owner_id = :me",
                               ConditionExpression="attribute_not_exists(owner_id)",
                               ExpressionAttributeValues={":me": {"S": threading.current_thread().name}})
            return i
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ConditionalCheckFailedException"
            return None

    won = [i for i in _hammer(moto_url, claim) if i is not None]
    assert sorted(won) == list(range(EACH))


def test_a_create_only_put_is_won_once(moto_url, monkeypatch):
    """moto checks If-None-Match, then stores: a slow store lets a second put pass the check too."""
    from moto.s3.models import S3Backend

    store = S3Backend.put_object

    def slow_store(self, *args, **kwargs):
        time.sleep(0.05)
        return store(self, *args, **kwargs)

    monkeypatch.setattr(S3Backend, "put_object", slow_store)
    s3 = boto3.client("s3", endpoint_url=moto_url)
    s3.create_bucket(Bucket="atomic-test")

    def put(client, i):
        try:
            client.put_object(Bucket="atomic-test", Key=f"seg/{i}", Body=b"x", IfNoneMatch="*")
            return i
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "PreconditionFailed"
            return None

    won = [i for i in _hammer(moto_url, put, service="s3", each=5) if i is not None]
    assert sorted(won) == list(range(5))
