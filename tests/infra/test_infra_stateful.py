"""The stateful stack: tables, bucket, chunk queue + DLQ, event bus, pinned ids, removal policies."""
import json

import pytest
from aws_cdk.assertions import Match, Template
from infra_helpers import functions_by_handler, resources
from support.aws_world import KEYS_TABLE_KEYS, STATE_TABLE_KEYS, STATE_TABLE_TTL_ATTRIBUTE

from infra.config import get_config

STATEFUL = "batchgate-{}-stateful"
SERVICE = "batchgate-{}-service"


@pytest.fixture(scope="module")
def dev(synth):
    return synth("dev").templates[STATEFUL.format("dev")]


@pytest.fixture(scope="module")
def prod(synth):
    return synth("prod").templates[STATEFUL.format("prod")]


def test_stacks_are_named_per_environment(synth):
    assert set(synth("dev").templates) == {"batchgate-dev-stateful", "batchgate-dev-service"}


def test_state_table_is_a_plain_table_with_pk_sk_ttl_and_encryption(dev):
    assert not resources(dev, "AWS::DynamoDB::GlobalTable")  # moto's CloudFormation lacks it
    table = dev["Resources"]["StateTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                  {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert {"AttributeName": "pk", "AttributeType": "S"} in props["AttributeDefinitions"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert "TableName" not in props  # no physical names


def test_the_tables_tests_create_are_the_ones_the_stack_declares(dev):
    # support/aws_world.py creates every test's state and keys table: with the deployed schema.
    for name, keys in (("StateTable", STATE_TABLE_KEYS), ("KeysTable", KEYS_TABLE_KEYS)):
        props = dev["Resources"][name]["Properties"]
        assert props["KeySchema"] == keys["KeySchema"], name
        assert sorted(props["AttributeDefinitions"], key=str) == sorted(keys["AttributeDefinitions"], key=str), name
    assert dev["Resources"]["StateTable"]["Properties"]["TimeToLiveSpecification"] == \
        {"AttributeName": STATE_TABLE_TTL_ATTRIBUTE, "Enabled": True}


def test_keys_table_is_keyed_by_hash(dev):
    props = dev["Resources"]["KeysTable"]["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert props["BillingMode"] == "PAY_PER_REQUEST"


def test_point_in_time_recovery_in_prod_only(dev, prod):
    def pitr(t, name):
        return t["Resources"][name]["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
    assert pitr(prod, "StateTable") and pitr(prod, "KeysTable")
    assert not pitr(dev, "StateTable")


def test_prod_tables_are_protected_from_deletion(dev, prod):
    # Issue 8, defect 10: a retained table can still be deleted by hand or by a stack mistake.
    for name in ("StateTable", "KeysTable"):
        assert prod["Resources"][name]["Properties"]["DeletionProtectionEnabled"] is True
        assert not dev["Resources"][name]["Properties"].get("DeletionProtectionEnabled")


def test_a_direct_upload_limit_whose_event_would_pass_lambdas_6_mb_is_refused():
    from pydantic import ValidationError

    from infra.config import LAMBDA_MAX_PAYLOAD, MAX_DIRECT_UPLOAD_BYTES, LimitsConfig
    LimitsConfig(max_direct_upload_bytes=4 * 1024 * 1024)
    # the old bound, 4.5 MiB, is exactly 6 MB once base64-encoded: no room for the event around it
    with pytest.raises(ValidationError):
        LimitsConfig(max_direct_upload_bytes=4 * 1024 * 1024 + 512 * 1024)
    assert (MAX_DIRECT_UPLOAD_BYTES + 1024) * 4 / 3 + 16 * 1024 <= LAMBDA_MAX_PAYLOAD


def test_bucket_is_private_encrypted_ssl_only_with_lifecycle(dev):
    template = Template.from_json(dev)
    template.has_resource_properties("AWS::S3::Bucket", {
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
    })
    rules = {r["Id"]: r for r in dev["Resources"]["Bucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["abort-incomplete-multipart"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert (rules["expire-upload-parts"]["Prefix"], rules["expire-upload-parts"]["ExpirationInDays"]) == ("uploads/", 2)
    assert (rules["expire-work"]["Prefix"], rules["expire-work"]["ExpirationInDays"]) == ("work/", 7)
    template.has_resource_properties("AWS::S3::BucketPolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})


def test_chunk_queue_has_dlq_sse_and_visibility_six_times_the_worker_timeout(synth, dev):
    queue = dev["Resources"]["ChunkQueue"]["Properties"]
    dlq = dev["Resources"]["ChunkDeadLetterQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["ChunkDeadLetterQueue", "Arn"]}
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    assert queue["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True
    service = synth("dev").templates[SERVICE.format("dev")]
    worker = functions_by_handler(service)["batchgate.handlers.chunk_worker.handler"]
    assert worker["Properties"]["Timeout"] == get_config("dev").worker.timeout_seconds
    assert queue["VisibilityTimeout"] >= 6 * worker["Properties"]["Timeout"]


def test_event_bus_and_outputs(dev):
    assert dev["Resources"]["EventBus"]["Type"] == "AWS::Events::EventBus"
    assert {"StateTableName", "KeysTableName", "BucketName", "ChunkQueueUrl", "EventBusName"} <= set(dev["Outputs"])


def test_logical_ids_are_pinned(dev):
    expected = {"StateTable", "KeysTable", "Bucket", "ChunkQueue", "ChunkDeadLetterQueue", "EventBus"}
    assert expected <= set(dev["Resources"])


def test_prod_retains_stateful_resources_and_dev_destroys_them(dev, prod):
    for name in ("StateTable", "KeysTable", "Bucket", "ChunkQueue", "ChunkDeadLetterQueue"):
        assert prod["Resources"][name]["DeletionPolicy"] == "Retain", name
        assert dev["Resources"][name]["DeletionPolicy"] == "Delete", name


def test_a_destroyed_bucket_is_emptied_first(dev, prod, synth):
    # Issue 8, defect 10: with DESTROY alone, `cdk destroy` fails once the dev bucket holds a file.
    def emptiers(template):
        return [r for r in resources(template, "Custom::S3AutoDeleteObjects").values()
                if r["Properties"]["BucketName"] == {"Ref": "Bucket"}]
    assert len(emptiers(dev)) == 1
    assert emptiers(prod) == []                                                   # prod retains
    assert emptiers(synth("local").templates[STATEFUL.format("local")]) == []   # moto: gone with the process


def test_file_objects_expire_by_their_retention_tag(dev):
    rules = dev["Resources"]["Bucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    retention = {r["Id"]: r for r in rules if r["Id"].startswith("expire-files-")}
    assert len(retention) == 31 and len(rules) <= 1000  # S3's limit on lifecycle rules
    for n in range(1, 32):
        rule = retention[f"expire-files-{n}d"]
        assert rule["Status"] == "Enabled" and rule["Prefix"] == "files/"
        assert rule["TagFilters"] == [{"Key": "retention-days", "Value": str(n)}]
        # a day past the record's expiry, so the bytes never vanish while the file is still readable
        assert rule["ExpirationInDays"] == n + 1
    # nothing ever deletes untagged files/ objects (files without expiry)
    assert all(r.get("TagFilters") for r in rules if r.get("Prefix") == "files/")
    others = {r["Id"] for r in rules} - set(retention)
    assert others == {"abort-incomplete-multipart", "expire-upload-parts", "expire-work"}


def test_file_writers_may_tag_the_objects_they_write(synth):
    # files/ objects are written with their retention tag (S3 authorizes that as s3:PutObjectTagging);
    # work/ and uploads/ objects carry none, and their writers may not tag.
    service = synth("dev").templates[SERVICE.format("dev")]
    writers = [s for s in _statements(service) if "s3:PutObject" in _actions(s)]
    files = [s for s in writers if "/files/*" in json.dumps(s["Resource"])]
    assert files and all("s3:PutObjectTagging" in _actions(s) for s in files)
    assert all("s3:PutObjectTagging" not in _actions(s) for s in writers if s not in files)


def _statements(template: dict) -> list[dict]:
    return [s for p in resources(template, "AWS::IAM::Policy").values()
            for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _actions(statement: dict) -> list[str]:
    a = statement["Action"]
    return [a] if isinstance(a, str) else a
