"""Local mode's state folder (batchgate_local/state.py): every acknowledged DynamoDB and S3 write is in
the journal, a restart restores exactly the last state, and a folder that cannot be used safely is
refused with a clear message instead of being overwritten."""
from __future__ import annotations

import json
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from batchgate_local import atomic
from batchgate_local.state import StateDir, StateError

ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture
def moto_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    atomic.install()
    try:
        yield url
    finally:
        atomic.uninstall()
        _reset(url)
        server.stop()


def _reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10).read()


def _resources(url: str, suffix: str) -> tuple[dict, dict]:
    """A fresh table and bucket under new physical names (as a new moto deploy gives)."""
    ddb = boto3.client("dynamodb", endpoint_url=url, region_name=REGION)
    ddb.create_table(TableName=f"state-{suffix}", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}])
    boto3.client("s3", endpoint_url=url, region_name=REGION).create_bucket(Bucket=f"bucket-{suffix}")
    return {"StateTable": f"state-{suffix}"}, {"Bucket": f"bucket-{suffix}"}


def _open(path, url: str, suffix: str) -> tuple[StateDir, str, str]:
    tables, buckets = _resources(url, suffix)
    state = StateDir(path).open()
    state.restore(tables, buckets, ACCOUNT, REGION)
    state.install(ACCOUNT, REGION)
    return state, tables["StateTable"], buckets["Bucket"]


def _items(url: str, table: str) -> dict:
    ddb = boto3.client("dynamodb", endpoint_url=url, region_name=REGION)
    return {(i["pk"]["S"], i["sk"]["S"]): i for i in ddb.scan(TableName=table)["Items"]}


def _objects(url: str, bucket: str) -> dict:
    s3 = boto3.client("s3", endpoint_url=url, region_name=REGION)
    out = {}
    for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        got = s3.get_object(Bucket=bucket, Key=o["Key"])
        tags = s3.get_object_tagging(Bucket=bucket, Key=o["Key"])["TagSet"]
        out[o["Key"]] = (got["Body"].read(), got["ContentType"], {t["Key"]: t["Value"] for t in tags})
    return out


def _k(pk: str, sk: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def test_every_kind_of_write_survives_a_restart(moto_url, tmp_path):
    state, table, bucket = _open(tmp_path / "s", moto_url, "a")
    ddb = boto3.client("dynamodb", endpoint_url=moto_url, region_name=REGION)
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name=REGION)
    ddb.put_item(TableName=table, Item={**_k("a", "1"), "n": {"N": "1"}})
    ddb.update_item(TableName=table, Key=_k("a", "1"), UpdateExpression="ADD n :one",
                    ExpressionAttributeValues={":one": {"N": "2"}})
    ddb.put_item(TableName=table, Item={**_k("a", "gone"), "x": {"S": "y"}})
    ddb.delete_item(TableName=table, Key=_k("a", "gone"))
    ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": {**_k("b", str(i)), "v": {"S": "é" * i}}}}
                                               for i in range(5)]})
    ddb.batch_write_item(RequestItems={table: [{"DeleteRequest": {"Key": _k("b", "4")}}]})
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": table, "Item": {**_k("t", "1"), "m": {"M": {"l": {"L": [{"N": "1"}]}}}}}},
        {"Update": {"TableName": table, "Key": _k("a", "1"), "UpdateExpression": "SET s = :s",
                    "ExpressionAttributeValues": {":s": {"SS": ["p", "q"]}}}}])
    with pytest.raises(ClientError):   # a cancelled transaction changes (and journals) nothing
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": _k("t", "never")}},
            {"ConditionCheck": {"TableName": table, "Key": _k("a", "1"),
                                "ConditionExpression": "attribute_not_exists(pk)"}}])
    s3.put_object(Bucket=bucket, Key="files/x", Body=b"\x00binary\xff" * 1000, ContentType="application/jsonl",
                  Tagging="retention-days=3")
    s3.put_object(Bucket=bucket, Key="files/over", Body=b"first")
    s3.put_object(Bucket=bucket, Key="files/over", Body=b"second")
    s3.put_object(Bucket=bucket, Key="work/a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="work/b", Body=b"b")
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "work/a"}, {"Key": "work/b"}], "Quiet": True})
    s3.put_object(Bucket=bucket, Key="work/c", Body=b"c")
    s3.delete_object(Bucket=bucket, Key="work/c")
    mp = s3.create_multipart_upload(Bucket=bucket, Key="files/multi")
    parts = [s3.upload_part(Bucket=bucket, Key="files/multi", UploadId=mp["UploadId"], PartNumber=n,
                            Body=bytes([n]) * (5 * 2**20 if n == 1 else 10))["ETag"] for n in (1, 2)]
    s3.complete_multipart_upload(Bucket=bucket, Key="files/multi", UploadId=mp["UploadId"], MultipartUpload={
        "Parts": [{"ETag": e, "PartNumber": n} for n, e in zip((1, 2), parts, strict=True)]})
    items, objects = _items(moto_url, table), _objects(moto_url, bucket)
    state.close()
    _reset(moto_url)

    state, table2, bucket2 = _open(tmp_path / "s", moto_url, "b")
    try:
        assert _items(moto_url, table2) == items
        assert _objects(moto_url, bucket2) == objects
        assert set(objects) == {"files/x", "files/over", "files/multi"}
        assert objects["files/over"][0] == b"second"
        assert objects["files/x"][1:] == ("application/jsonl", {"retention-days": "3"})
        assert (state.report.items, state.report.objects) == (len(items), 3)
        assert len(list((tmp_path / "s" / "blobs").iterdir())) == 3   # replaced and deleted bytes are gone
    finally:
        state.close()


def test_a_line_cut_off_by_a_kill_is_dropped_and_a_damaged_one_refused(moto_url, tmp_path):
    state, table, _ = _open(tmp_path / "s", moto_url, "a")
    boto3.client("dynamodb", endpoint_url=moto_url, region_name=REGION).put_item(TableName=table, Item=_k("a", "1"))
    state.close()
    journal = tmp_path / "s" / "journal.jsonl"
    good = journal.read_bytes()
    journal.write_bytes(good + b'{"t":"ddb","tb":"StateTable","k":{"pk"')   # the write a kill cut short
    again = StateDir(tmp_path / "s").open()
    assert again.report.dropped_tail and len(again._items) == 1
    again.close()
    assert journal.read_bytes() == good   # compacted without the torn line

    journal.write_bytes(b"not json\n" + good)
    with pytest.raises(StateError, match="line 1 is damaged"):
        StateDir(tmp_path / "s").open()
    assert journal.read_bytes() == b"not json\n" + good   # nothing was changed


def test_the_folder_is_locked_versioned_and_never_someone_elses(tmp_path):
    state = StateDir(tmp_path / "s").open()
    with pytest.raises(StateError, match="in use by another batchgate local"):
        StateDir(tmp_path / "s").open()
    state.close()
    StateDir(tmp_path / "s").open().close()   # free again once closed

    meta = json.loads((tmp_path / "s" / "state.json").read_text())
    assert meta == {"format": "batchgate-local-state", "version": 1}
    (tmp_path / "s" / "state.json").write_text(json.dumps({**meta, "version": 2}))
    with pytest.raises(StateError, match="incompatible"):
        StateDir(tmp_path / "s").open()

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(StateError, match="not a batchgate local state folder"):
        StateDir(tmp_path / "mine").open()
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]   # not even a lock file


def test_state_of_a_resource_no_longer_deployed_is_kept(moto_url, tmp_path):
    state, table, _ = _open(tmp_path / "s", moto_url, "a")
    boto3.client("dynamodb", endpoint_url=moto_url, region_name=REGION).put_item(TableName=table, Item=_k("a", "1"))
    state.close()
    _reset(moto_url)
    state = StateDir(tmp_path / "s").open()
    state.restore({}, {}, ACCOUNT, REGION)   # a version without that table
    assert state.report.orphaned == {"StateTable": 1}
    state.close()
    state = StateDir(tmp_path / "s").open()
    assert len(state._items) == 1
    state.close()


def test_writes_after_close_fail_rather_than_go_unkept(moto_url, tmp_path):
    state, table, bucket = _open(tmp_path / "s", moto_url, "a")
    state._closed = True   # what close() sets first, while the hooks are still installed
    ddb = boto3.client("dynamodb", endpoint_url=moto_url, region_name=REGION,
                       config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError):
        ddb.put_item(TableName=table, Item=_k("a", "1"))
    state.close()


def test_partiql_writes_are_refused_and_reads_allowed(moto_url, tmp_path):
    state, table, _ = _open(tmp_path / "s", moto_url, "a")
    ddb = boto3.client("dynamodb", endpoint_url=moto_url, region_name=REGION)
    try:
        with pytest.raises(ClientError, match="does not keep PartiQL writes"):
            ddb.execute_statement(Statement=f"INSERT INTO \"{table}\" VALUE {{'pk': 'a', 'sk': '1'}}")
        assert _items(moto_url, table) == {}
        ddb.execute_statement(Statement=f"SELECT * FROM \"{table}\"")
    finally:
        state.close()
