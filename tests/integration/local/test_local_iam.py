"""Local mode's IAM (issue 8): the policy evaluator, API calls as IAM requests, and the guard on a
client: a denied call fails as AWS fails it, and S3 answers a missing key 403 to a caller that may
not list the bucket, which the engine's segment store must still read as "missing"."""
from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from batchgate import aws
from batchgate.adapters.segments import SegmentStore
from batchgate_local import iam

WHERE = iam.Where("us-east-1", "123456789012", "arn:aws:states:us-east-1:123456789012:stateMachine:wf")


def allow(actions, resources, condition=None) -> dict:
    s = {"Effect": "Allow", "Action": actions, "Resource": resources}
    return {**s, "Condition": condition} if condition else s


# -- the evaluator ---------------------------------------------------------------------------------

def test_wildcards_case_and_explicit_deny():
    statements = [allow("s3:Get*", "arn:aws:s3:::bkt-local/files/*"),
                  {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bkt-local/files/secret"}]
    assert iam.evaluate(statements, iam.Request("s3:getobject", "arn:aws:s3:::bkt-local/files/t/1"))[0]
    assert not iam.evaluate(statements, iam.Request("s3:GetObject", "arn:aws:s3:::bkt-local/files/secret"))[0]
    assert not iam.evaluate(statements, iam.Request("s3:GetObject", "arn:aws:s3:::bkt-local/work/1"))[0]
    assert not iam.evaluate(statements, iam.Request("s3:PutObject", "arn:aws:s3:::bkt-local/files/t/1"))[0]
    # resources are case-sensitive
    assert not iam.evaluate(statements, iam.Request("s3:GetObject", "arn:aws:s3:::B/files/t/1"))[0]


@pytest.mark.parametrize("condition, context, expected", [
    ({"StringLike": {"s3:prefix": ["work/*"]}}, {"s3:prefix": "work/b/1"}, True),
    ({"StringLike": {"s3:prefix": ["work/*"]}}, {"s3:prefix": "files/t/1"}, False),
    ({"StringLike": {"s3:prefix": ["work/*"]}}, {}, False),                  # absent key: no match
    ({"StringLikeIfExists": {"s3:prefix": ["work/*"]}}, {}, True),
    ({"StringNotEquals": {"aws:SourceAccount": "1"}}, {}, True),               # negated, absent: true
    ({"StringNotEquals": {"aws:SourceAccount": "1"}}, {"aws:SourceAccount": "1"}, False),
    ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "False"}, True),
    ({"ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:*:1:alarm:*"}},
     {"aws:SourceArn": "arn:aws:cloudwatch:us-east-1:1:alarm:x"}, True),
])
def test_conditions(condition, context, expected):
    request = iam.Request("s3:ListBucket", "arn:aws:s3:::bkt-local", tuple(context.items()))
    assert iam.evaluate([allow("s3:ListBucket", "arn:aws:s3:::bkt-local", condition)], request)[0] is expected


def test_an_operator_it_does_not_know_is_an_error_not_a_silent_allow():
    with pytest.raises(NotImplementedError):
        iam.evaluate([allow("s3:ListBucket", "*", {"DateLessThan": {"aws:CurrentTime": "2030-01-01"}})],
                     iam.Request("s3:ListBucket", "arn:aws:s3:::bkt-local"))


# -- calls as requests -----------------------------------------------------------------------------

@pytest.mark.parametrize("service, operation, params, expected", [
    ("s3", "HeadObject", {"Bucket": "bkt-local", "Key": "files/t/1"},
     [("s3:GetObject", "arn:aws:s3:::bkt-local/files/t/1")]),
    ("s3", "ListObjectsV2", {"Bucket": "bkt-local", "Prefix": "work/x"}, [("s3:ListBucket", "arn:aws:s3:::bkt-local")]),
    ("s3", "UploadPart", {"Bucket": "bkt-local", "Key": "k"}, [("s3:PutObject", "arn:aws:s3:::bkt-local/k")]),
    ("s3", "DeleteObjects", {"Bucket": "bkt-local", "Delete": {"Objects": [{"Key": "a"}, {"Key": "c"}]}},
     [("s3:DeleteObject", "arn:aws:s3:::bkt-local/a"), ("s3:DeleteObject", "arn:aws:s3:::bkt-local/c")]),
    ("s3", "UploadPartCopy",
     {"Bucket": "bkt-local", "Key": "files/x", "CopySource": {"Bucket": "bkt-local", "Key": "uploads/p"}},
     [("s3:PutObject", "arn:aws:s3:::bkt-local/files/x"), ("s3:GetObject", "arn:aws:s3:::bkt-local/uploads/p")]),
    ("dynamodb", "Query", {"TableName": "t", "IndexName": "i"},
     [("dynamodb:Query", "arn:aws:dynamodb:us-east-1:123456789012:table/t/index/i")]),
    ("dynamodb", "TransactWriteItems", {"TransactItems": [{"ConditionCheck": {"TableName": "t"}},
                                                          {"Update": {"TableName": "t"}}]},
     [("dynamodb:ConditionCheckItem", "arn:aws:dynamodb:us-east-1:123456789012:table/t"),
      ("dynamodb:UpdateItem", "arn:aws:dynamodb:us-east-1:123456789012:table/t")]),
    ("sqs", "SendMessageBatch", {"QueueUrl": "http://127.0.0.1:5000/123456789012/q"},
     [("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:q")]),
    ("stepfunctions", "SendTaskSuccess", {"taskToken": "x"}, [("states:SendTaskSuccess", WHERE.state_machine_arn)]),
    ("events", "PutEvents", {"Entries": [{"EventBusName": "bus"}]},
     [("events:PutEvents", "arn:aws:events:us-east-1:123456789012:event-bus/bus")]),
])
def test_calls_become_the_requests_aws_authorizes(service, operation, params, expected):
    got = [(r.action, r.resource) for r in iam.requests_for(service, operation, params, WHERE)]
    assert got == expected


def test_a_service_it_does_not_know_is_an_error():
    with pytest.raises(NotImplementedError):
        iam.requests_for("kinesis", "PutRecord", {}, WHERE)


# -- the guard on real clients (moto) --------------------------------------------------------------

@pytest.fixture
def bucket():
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="bkt-local")
        yield "bkt-local"


def guarded(statements, log=None) -> tuple[iam.IamGuard, iam.CallLog]:
    log = log or iam.CallLog()
    role = iam.Role("Fn", "fn-role", statements, ["Policy"] * len(statements))
    guard = iam.IamGuard({"Fn": role}, WHERE, log=log)
    aws.add_client_hook(guard.register)
    return guard, log


@pytest.fixture
def hooks():
    added = []
    yield added
    for guard in added:
        aws.remove_client_hook(guard.register)


OBJECTS = allow(["s3:GetObject", "s3:PutObject"], "arn:aws:s3:::bkt-local/work/*")
LIST_WORK = allow("s3:ListBucket", "arn:aws:s3:::bkt-local", {"StringLike": {"s3:prefix": ["work/*"]}})


def test_a_denied_call_fails_as_on_aws_and_is_recorded(bucket, hooks):
    guard, log = guarded([OBJECTS])
    hooks.append(guard)
    with iam.as_function("Fn"):
        aws.client("s3").put_object(Bucket=bucket, Key="work/1", Body=b"x")
        with pytest.raises(ClientError) as denied:
            aws.client("s3").put_object(Bucket=bucket, Key="files/1", Body=b"x")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert log.denied == ["Fn: s3:PutObject on arn:aws:s3:::bkt-local/files/1"]
    assert ("Fn", "Policy", "s3:PutObject", "arn:aws:s3:::bkt-local/work/*") in log.used
    assert ("Fn", "Policy", "s3:GetObject", "arn:aws:s3:::bkt-local/work/*") in log.unused()
    # outside a function (the tests, local mode's set-up) nothing is checked
    aws.client("s3").put_object(Bucket=bucket, Key="files/1", Body=b"x")


@pytest.mark.parametrize("listing, code", [(None, "AccessDenied"), (LIST_WORK, "AccessDenied"),
                                           (allow("s3:ListBucket", "arn:aws:s3:::bkt-local"), "NoSuchKey")])
def test_s3_answers_a_missing_key_403_unless_the_caller_may_list_the_bucket(bucket, hooks, listing, code):
    # Issue 8, defect 1. S3 asks whether the caller may list the bucket, with no s3:prefix in that
    # question, so a grant conditioned on s3:prefix does not turn the 403 into a 404.
    guard, _ = guarded([OBJECTS, *([listing] if listing else [])])
    hooks.append(guard)
    with iam.as_function("Fn"), pytest.raises(ClientError) as missing:
        aws.client("s3").get_object(Bucket=bucket, Key="work/nothing")
    assert missing.value.response["Error"]["Code"] == code


def test_the_segment_store_reads_a_403_for_a_missing_key_as_missing(bucket, hooks):
    # Issue 8, defect 1: every chunk's first run reads a segment record that does not exist yet.
    guard, log = guarded([OBJECTS, LIST_WORK])
    hooks.append(guard)
    store = SegmentStore(bucket)
    with iam.as_function("Fn"):
        assert store.get_record("batch_1", 0, 0) is None
        assert store.get_ahead("batch_1", 0) == {}
    assert not log.denied


def test_the_segment_store_raises_a_real_denial(bucket, hooks):
    boto3.client("s3").put_object(Bucket=bucket, Key="work/batch_1/000000/000000.seg.json", Body=b"{}")
    guard, _ = guarded([allow("s3:PutObject", "arn:aws:s3:::bkt-local/work/*"), LIST_WORK])   # no GetObject
    hooks.append(guard)
    with iam.as_function("Fn"), pytest.raises(ClientError) as denied:
        SegmentStore(bucket).get_record("batch_1", 0, 0)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"


def test_tags_set_with_a_write_need_put_object_tagging():
    got = iam.requests_for("s3", "PutObject", {"Bucket": "b", "Key": "k", "Tagging": "retention=30"}, WHERE)
    assert [r.action for r in got] == ["s3:PutObject", "s3:PutObjectTagging"]
