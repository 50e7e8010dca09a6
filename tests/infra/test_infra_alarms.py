"""Operators hear about what the engine cannot finish by itself: dead-lettered chunks, failed workflow
executions, API 5xx, all on one SNS topic."""
from __future__ import annotations

import pytest
from infra_helpers import one, render, render_policy, resources

from batchgate_local import iam


@pytest.fixture(scope="module")
def dev(synth):
    return synth("dev").templates["batchgate-dev-service"]


def _alarms(template) -> dict[str, dict]:
    return {lid: r["Properties"] for lid, r in resources(template, "AWS::CloudWatch::Alarm").items()}


def test_every_alarm_notifies_the_topic(dev):
    topic_id, _ = one(dev, "AWS::SNS::Topic")
    alarms = _alarms(dev)
    assert len(alarms) == 4 + 1 + 2 * 10   # + dead-lettered webhooks (test_infra_webhooks.py); 10 functions
    for props in alarms.values():
        assert props["AlarmActions"] == [{"Ref": topic_id}]
        assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert props["TreatMissingData"] == "notBreaching" and props["EvaluationPeriods"] == 1
    watched = {(p["Namespace"], p["MetricName"]): p for lid, p in alarms.items() if not lid.startswith("Webhooks")}
    assert set(watched) == {("AWS/SQS", "ApproximateNumberOfMessagesVisible"), ("AWS/States", "ExecutionsFailed"),
                            ("AWS/ApiGateway", "5XXError"), ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
                            ("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles")}
    # Each watches this stack's own resources: the chunk DLQ, the batch workflow, the REST API.
    dims = {key: render(p["Dimensions"]) for key, p in watched.items()}
    assert "ChunkDeadLetterQueue" in dims[("AWS/SQS", "ApproximateNumberOfMessagesVisible")]
    assert "WorkflowStateMachine" in dims[("AWS/States", "ExecutionsFailed")]
    assert "batchgate-dev" in dims[("AWS/ApiGateway", "5XXError")]  # the REST API's name
    assert watched[("AWS/SQS", "ApproximateNumberOfMessagesVisible")]["Threshold"] == 1
    assert watched[("AWS/States", "ExecutionsFailed")]["Threshold"] == 1


def test_operators_hear_of_a_failing_worker_within_minutes_not_hours(dev):
    # Issue 8, defect 9: the DLQ alarm alone fires ~7.5 h after a systematic worker failure.
    alarms = list(_alarms(dev).values())
    functions = {lid for lid, r in resources(dev, "AWS::Lambda::Function").items()
                 if r["Properties"].get("Handler", "").startswith("batchgate.")}
    for metric in ("Errors", "Throttles"):
        watched = [a for a in alarms if a["Namespace"] == "AWS/Lambda" and a["MetricName"] == metric]
        assert {render(a["Dimensions"][0]["Value"]).strip("<>").split(".")[0] for a in watched} == functions
        assert all(a["Period"] == 60 and a["Threshold"] == 1 for a in watched)
    (age,) = [a for a in alarms if a["MetricName"] == "ApproximateAgeOfOldestMessage"]
    assert "ChunkQueue" in render(age["Dimensions"]) and "DeadLetter" not in render(age["Dimensions"])
    assert age["Period"] == 60 and age["Threshold"] == 1800


def test_the_topic_refuses_plain_http_and_is_an_output(dev):
    _, policy = one(dev, "AWS::SNS::TopicPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in statements)
    assert any(k.startswith("AlarmsAlarmTopicArn") for k in dev["Outputs"])


def _allowed(statements: list[dict], *, service: str, action: str, resource: str, context: dict) -> bool:
    """IAM's answer for a service principal's call under a resource policy (local mode's evaluator)."""
    request = iam.Request(action, resource, tuple(context.items()))
    return iam.evaluate(render_policy(statements), request, principal=service)[0]


def test_cloudwatch_alarms_may_publish_to_the_topic_over_tls_only(dev):
    # Issue 8, defect 2: enforce_ssl=True left a policy that only denies; CloudWatch could not publish.
    topic_id, _ = one(dev, "AWS::SNS::Topic")
    _, policy = one(dev, "AWS::SNS::TopicPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    topic = render({"Ref": topic_id})
    alarm = "arn:<AWS::Partition>:cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:batchgate-dlq"
    context = {"aws:SecureTransport": "true", "aws:SourceAccount": render({"Ref": "AWS::AccountId"}),
               "aws:SourceArn": alarm}

    assert _allowed(statements, service="cloudwatch.amazonaws.com", action="sns:Publish", resource=topic,
                    context=context)
    assert not _allowed(statements, service="cloudwatch.amazonaws.com", action="sns:Publish", resource=topic,
                        context={**context, "aws:SecureTransport": "false"})
    assert not _allowed(statements, service="cloudwatch.amazonaws.com", action="sns:Publish", resource=topic,
                        context={**context, "aws:SourceAccount": "999999999999"})
    assert not _allowed(statements, service="events.amazonaws.com", action="sns:Publish", resource=topic,
                        context=context)


def test_an_email_subscribes_to_the_topic(synth):
    template = synth("dev", {"alarms": {"email": "ops@example.com"}}).templates["batchgate-dev-service"]
    _, sub = one(template, "AWS::SNS::Subscription")
    assert sub["Properties"]["Protocol"] == "email" and sub["Properties"]["Endpoint"] == "ops@example.com"
    assert not resources(synth("dev").templates["batchgate-dev-service"], "AWS::SNS::Subscription")


def test_local_mode_has_no_alarms(synth):
    local = synth("local").templates["batchgate-local-service"]
    assert not resources(local, "AWS::CloudWatch::Alarm") and not resources(local, "AWS::SNS::Topic")
