"""Webhooks in the synthesized templates: the rule from the bus to the webhook queue (and the queue policy
that lets EventBridge in), the queue's DLQ, the endpoints table, the deliver function's mapping and narrow
grants, and the alarm on dead-lettered deliveries."""
from __future__ import annotations

import pytest
from infra_helpers import actions_of, functions_by_handler, policy_statements, render, render_policy, resources, role_of

from batchgate.contract import Env
from batchgate_local import iam
from infra.config import get_config

HANDLER = "batchgate.handlers.webhook_deliver.handler"
TERMINAL = ["batch.completed", "batch.failed", "batch.cancelled", "batch.expired"]


@pytest.fixture(scope="module")
def dev(synth):
    return synth("dev").templates


def test_terminal_events_of_the_bus_reach_the_webhook_queue_and_only_from_that_rule(dev):
    stateful = dev["batchgate-dev-stateful"]
    rule = stateful["Resources"]["WebhookRule"]["Properties"]
    assert rule["EventPattern"] == {"source": ["batchgate"], "detail-type": TERMINAL}
    assert render(rule["EventBusName"]) == "<EventBus.Name>"
    assert [render(t["Arn"]) for t in rule["Targets"]] == ["<WebhookQueue.Arn>"]
    (policy,) = [r for r in resources(stateful, "AWS::SQS::QueuePolicy").values()
                 if r["Properties"]["Queues"] == [{"Ref": "WebhookQueue"}]]
    statements = render_policy(policy["Properties"]["PolicyDocument"]["Statement"])

    def allowed(source_arn: str, tls: bool = True) -> bool:
        ctx = (("aws:SecureTransport", "true" if tls else "false"), ("aws:SourceArn", source_arn))
        return iam.evaluate(statements, iam.Request("sqs:SendMessage", "<WebhookQueue.Arn>", ctx),
                            "events.amazonaws.com")[0]
    assert allowed("<WebhookRule.Arn>")
    assert not allowed("arn:aws:events:us-east-1:123456789012:rule/someone-else")
    assert not allowed("<WebhookRule.Arn>", tls=False)


def test_the_webhook_queue_dead_letters_into_its_own_queue_and_keeps_the_table_encrypted(dev):
    stateful = dev["batchgate-dev-stateful"]["Resources"]
    queue, dlq = stateful["WebhookQueue"]["Properties"], stateful["WebhookDeadLetterQueue"]["Properties"]
    assert render(queue["RedrivePolicy"]["deadLetterTargetArn"]) == "<WebhookDeadLetterQueue.Arn>"
    assert queue["SqsManagedSseEnabled"] and dlq["SqsManagedSseEnabled"]
    assert dlq["MessageRetentionPeriod"] == 14 * 86400
    table = stateful["WebhooksTable"]["Properties"]
    assert table["SSESpecification"]["SSEEnabled"] is True   # the signing secrets are kept encrypted at rest
    assert {k["AttributeName"] for k in table["KeySchema"]} == {"pk", "sk"}
    outputs = dev["batchgate-dev-stateful"]["Outputs"]
    assert {"WebhooksTableName", "WebhookQueueUrl", "WebhookDeadLetterQueueUrl"} <= set(outputs)


def test_the_deliver_function_reads_endpoints_sends_deliveries_and_nothing_else(dev):
    service = dev["batchgate-dev-service"]
    fn = functions_by_handler(service)[HANDLER]
    variables = fn["Properties"]["Environment"]["Variables"]
    config = get_config("dev").webhooks
    assert variables[Env.WEBHOOK_RETRY_SCHEDULE] == ",".join(map(str, config.retry_schedule_seconds))
    assert sum(config.retry_schedule_seconds) <= 24 * 3600 and variables[Env.WEBHOOK_ALLOW_LOOPBACK] == "false"
    assert float(variables[Env.WEBHOOK_TIMEOUT_SECONDS]) * 3 < fn["Properties"]["Timeout"]
    statements = policy_statements(service, role_of(fn))
    xray = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    assert actions_of(statements) - xray == {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem",
                                             "sqs:SendMessage",
                                             "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                             "logs:CreateLogStream", "logs:PutLogEvents"}
    sends = [render(s["Resource"]) for s in statements if "sqs:SendMessage" in actions_of([s])]
    assert len(sends) == 2 and any("WebhookQueue" in r for r in sends) and \
        any("WebhookDeadLetterQueue" in r for r in sends), sends
    reads = [render(s["Resource"]) for s in statements if "dynamodb:GetItem" in actions_of([s])]
    assert reads and all("WebhooksTable" in r for r in reads), reads
    (mapping,) = [m["Properties"] for m in resources(service, "AWS::Lambda::EventSourceMapping").values()
                  if "Webhook" in render(m["Properties"]["EventSourceArn"])]
    assert mapping["BatchSize"] == 1   # one delivery per invocation: one endpoint's wait holds up no other
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == config.max_concurrency


def test_dead_lettered_deliveries_raise_an_alarm(dev):
    service = dev["batchgate-dev-service"]
    (alarm,) = [r["Properties"] for lid, r in resources(service, "AWS::CloudWatch::Alarm").items()
                if lid.startswith("WebhooksDeadLettered")]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Threshold"]) == (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", 1)
    assert "WebhookDeadLetterQueue" in render(alarm["Dimensions"])
    (topic,) = resources(service, "AWS::SNS::Topic")
    assert alarm["AlarmActions"] == [{"Ref": topic}]


def test_local_mode_allows_loopback_endpoints_and_deployed_environments_do_not(synth):
    for env, allowed in (("local", "true"), ("dev", "false"), ("prod", "false")):
        fn = functions_by_handler(synth(env).templates[f"batchgate-{env}-service"])[HANDLER]
        assert fn["Properties"]["Environment"]["Variables"][Env.WEBHOOK_ALLOW_LOOPBACK] == allowed, env


def test_the_circuit_breaker_writes_only_the_webhooks_table_with_the_configured_thresholds(dev):
    """The breaker's conditional UpdateItems (adapters/webhook_store.py) are granted on the webhooks table
    and nowhere else (without the grant AWS answers AccessDeniedException; local mode enforces the same)."""
    service = dev["batchgate-dev-service"]
    fn = functions_by_handler(service)[HANDLER]
    statements = render_policy(policy_statements(service, role_of(fn)))

    def may_update(table_arn: str) -> bool:
        return iam.evaluate(statements, iam.Request("dynamodb:UpdateItem", table_arn, ()))[0]
    (granted,) = [s["Resource"] for s in statements if "dynamodb:UpdateItem" in actions_of([s])]
    assert "WebhooksTable" in granted and may_update(granted)   # the stateful stack's export of its ARN
    assert not may_update("arn:aws:dynamodb:us-east-1:123456789012:table/batchgate-dev-state")
    config = get_config("dev").webhooks
    assert fn["Properties"]["Environment"]["Variables"][Env.WEBHOOK_BREAKER] == (
        f"{config.breaker_failures},{config.breaker_cooldown_seconds},{config.breaker_max_cooldown_seconds},"
        f"{config.delivery_window_seconds}") == "5,60,900,86400"


@pytest.mark.parametrize("bad", [{"breaker_cooldown_seconds": 120, "breaker_max_cooldown_seconds": 60},
                                 {"delivery_window_seconds": 60}, {"breaker_failures": 0}])
def test_breaker_settings_that_make_no_sense_are_refused(bad):
    from pydantic import ValidationError

    from infra.config import WebhooksConfig
    with pytest.raises(ValidationError):
        WebhooksConfig(**bad)
