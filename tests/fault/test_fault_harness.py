"""The harness's own parts, without the service: the injected AWS errors are ones botocore's standard
mode retries (and parses into the right code), and the transition and custom_id checks can fail."""
from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from . import harness

RETRYING = Config(retries={"mode": "standard", "total_max_attempts": 5}, region_name="us-east-1")
CALLS = {
    "dynamodb": lambda c: c.get_item(TableName="t", Key={"pk": {"S": "x"}}),
    "s3": lambda c: c.put_object(Bucket="b", Key="k", Body=b"x"),
    "sqs": lambda c: c.send_message(QueueUrl="http://127.0.0.1:9/123456789012/q", MessageBody="x"),
}


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, ctx: 0)


@pytest.mark.parametrize("service", sorted(CALLS))
def test_every_injected_error_is_retried_by_botocore_and_then_surfaces(service):
    # Given faults on every attempt (nothing reaches the unreachable endpoint)
    faults = harness.AwsFaults(seed=3, rate=1.0, max_per_call=5)
    faults.enabled = True
    client = boto3.session.Session().client(service, endpoint_url="http://127.0.0.1:9", config=RETRYING,
                                            aws_access_key_id="t", aws_secret_access_key="t")
    faults.register(service, client)

    # When one call is made, Then botocore retried all 5 attempts and raised the injected AWS error
    with pytest.raises(ClientError) as info:
        CALLS[service](client)
    assert sum(faults.injected.values()) == 5
    code = info.value.response["Error"]["Code"]
    assert code in {"ProvisionedThroughputExceededException", "ThrottlingException", "InternalServerError",
                    "SlowDown", "InternalError", "ServiceUnavailable", "InternalFailure"}


def test_faults_stop_before_a_call_runs_out_of_attempts():
    faults = harness.AwsFaults(seed=3, rate=1.0, max_per_call=2)
    faults.enabled = True
    client = boto3.session.Session().client("dynamodb", endpoint_url="http://127.0.0.1:9", config=RETRYING,
                                            aws_access_key_id="t", aws_secret_access_key="t")
    faults.register("dynamodb", client)
    seen = []
    client.meta.events.register("before-send.dynamodb.*", lambda request, **kw: seen.append(1) or
                                _ok_response(request))

    client.get_item(TableName="t", Key={"pk": {"S": "x"}})

    assert sum(faults.injected.values()) == 2  # the third attempt got through


def _ok_response(request):
    from botocore.awsrequest import AWSResponse
    return AWSResponse(request.url, 200, {"content-type": "application/x-amz-json-1.0"}, harness.RawBody(b"{}"))


def test_illegal_and_missing_transitions_are_reported():
    assert harness.bad_transitions(["in_progress", "finalizing", "completed"], "completed") == []
    assert harness.bad_transitions(["cancelling", "cancelled"], "cancelled") == []
    assert harness.bad_transitions(["in_progress", "completed"], "completed") == ["in_progress->completed"]
    assert harness.bad_transitions(["in_progress", "in_progress"], None) == ["in_progress->in_progress"]
    assert harness.bad_transitions(["in_progress"], "completed") == ["last event in_progress but status completed"]


def test_plans_are_reproducible_from_their_seed():
    a, b = harness.plan_run(42), harness.plan_run(42)
    assert a == b
    assert harness.input_bytes(a) == harness.input_bytes(b)
    assert harness.plan_run(43) != a
