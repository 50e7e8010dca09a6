"""Signed webhooks for terminal batch events (functions/batchgate/domain/webhooks.py).

Stateful (`WebhookStorage`, in the stateful stack): the endpoints table, the webhook queue, its
dead-letter queue, and the EventBridge rule that puts the four terminal `batch.*` events of the bus on the
queue. Stateless (`WebhookDelivery`, in the service stack): the deliver function on the queue, its grants,
and the alarm on dead-lettered deliveries.

bus --rule (batch.completed|failed|cancelled|expired)--> webhook queue --> deliver function
  event: one delivery message per subscribed endpoint, back onto the queue (each its own invocation,
         so a slow or dead endpoint holds up no other);
  delivery: one signed POST; a failure is re-sent with the next delay (hops of <= 900 s), the last one
         goes to the dead-letter queue (alarm; `batchgate webhooks redrive` moves them back); while the
         endpoint's circuit breaker is open (breaker_* attributes on its item in the table, conditional
         UpdateItem) the delivery is re-sent with a delay and no POST (WebhooksConfig.breaker_*).
"""
from __future__ import annotations

from aws_cdk import CfnOutput, CfnResource, Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from batchgate.contract import Env
from infra.config import EnvironmentConfig
from infra.constructs.alarms import runbook
from infra.constructs.function import BatchgateFunction, FunctionDefaults
from infra.constructs.nag import acknowledge

HANDLER = "batchgate.handlers.webhook_deliver.handler"
TERMINAL_DETAIL_TYPES = ["batch.completed", "batch.failed", "batch.cancelled", "batch.expired"]
# Each invocation handles one record: one delivery waits on one endpoint at most.
FUNCTION_TIMEOUT_SECONDS = 90
PERIOD = Duration.minutes(5)


def _pin(construct: Construct, logical_id: str) -> None:
    resource = construct.node.default_child
    assert isinstance(resource, CfnResource)
    resource.override_logical_id(logical_id)


class WebhookStorage(Construct):
    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig, event_bus: events.IEventBus,
                 event_bus_name: str) -> None:
        super().__init__(scope, id)
        removal = config.removal_policy
        # Secrets are kept in clear here (Standard Webhooks signs with the secret itself): encrypted at rest,
        # read only by the deliver function and the operator's CLI, never logged or returned after create.
        self.table = dynamodb.Table(
            self, "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=config.point_in_time_recovery),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=removal,
            deletion_protection=removal == RemovalPolicy.RETAIN,
        )
        _pin(self.table, "WebhooksTable")
        self.dead_letter_queue = sqs.Queue(
            self, "DeadLetterQueue", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
            retention_period=Duration.days(14), removal_policy=removal)
        _pin(self.dead_letter_queue, "WebhookDeadLetterQueue")
        self.queue = sqs.Queue(
            self, "Queue", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
            visibility_timeout=Duration.seconds(6 * FUNCTION_TIMEOUT_SECONDS),
            retention_period=Duration.days(4),
            # Records the function keeps failing on (not deliveries: those dead-letter themselves).
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=config.webhooks.max_receive_count,
                                                  queue=self.dead_letter_queue),
            removal_policy=removal)
        _pin(self.queue, "WebhookQueue")
        self.rule = events.Rule(
            self, "TerminalEvents", event_bus=event_bus,
            description="Terminal batch status events, for webhook delivery",
            event_pattern=events.EventPattern(source=["batchgate"], detail_type=TERMINAL_DETAIL_TYPES),
            targets=[targets.SqsQueue(self.queue)])
        _pin(self.rule, "WebhookRule")
        # The bus's Name attribute rather than its Ref (same value on AWS; moto's CloudFormation resolves it).
        cfn_rule = self.rule.node.default_child
        assert isinstance(cfn_rule, events.CfnRule)
        cfn_rule.add_property_override("EventBusName", event_bus_name)

        for name, value, description in [
            ("WebhooksTableName", self.table.table_name, "DynamoDB table of webhook endpoints (holds secrets)"),
            ("WebhookQueueUrl", self.queue.queue_url, "SQS queue of webhook events and deliveries"),
            ("WebhookDeadLetterQueueUrl", self.dead_letter_queue.queue_url,
             "Webhook deliveries that used up their attempts (batchgate webhooks redrive)"),
        ]:
            CfnOutput(scope, name, value=value, description=description)
        acknowledge(self.dead_letter_queue, "This queue is the dead-letter queue of the webhook queue.",
                    "AwsSolutions-SQS3")
        if not config.point_in_time_recovery:
            acknowledge(self.table, f"Point-in-time recovery is on in prod only; {config.name} holds no data "
                        "worth it.", "AwsSolutions-DDB3")


class WebhookDelivery(Construct):
    def __init__(self, scope: Construct, id: str, *, defaults: FunctionDefaults, storage: WebhookStorage) -> None:
        super().__init__(scope, id)
        cfg = defaults.config.webhooks
        self.function = BatchgateFunction(
            self, "Deliver", defaults=defaults, handler=HANDLER, memory_mb=256,
            timeout_seconds=FUNCTION_TIMEOUT_SECONDS,
            extra_environment={
                Env.WEBHOOKS_TABLE: storage.table.table_name,
                Env.WEBHOOK_QUEUE_URL: storage.queue.queue_url,
                Env.WEBHOOK_DLQ_URL: storage.dead_letter_queue.queue_url,
                Env.WEBHOOK_RETRY_SCHEDULE: ",".join(str(d) for d in cfg.retry_schedule_seconds),
                Env.WEBHOOK_TIMEOUT_SECONDS: str(cfg.timeout_seconds),
                Env.WEBHOOK_ALLOW_LOOPBACK: "true" if cfg.allow_loopback else "false",
                Env.WEBHOOK_BREAKER: f"{cfg.breaker_failures},{cfg.breaker_cooldown_seconds},"
                                     f"{cfg.breaker_max_cooldown_seconds},{cfg.delivery_window_seconds}",
            })
        fn = self.function.function
        self.event_source_mapping = lambda_.EventSourceMapping(
            self, "QueueMapping", target=fn, event_source_arn=storage.queue.queue_arn, batch_size=1,
            report_batch_item_failures=True, max_concurrency=cfg.max_concurrency)
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
            resources=[storage.queue.queue_arn]))
        # UpdateItem: the per-endpoint circuit breaker's conditional writes on the endpoint's item
        # (without it AWS answers AccessDeniedException and the record is retried, then the queue's DLQ).
        storage.table.grant(fn, "dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem")
        storage.queue.grant(fn, "sqs:SendMessage")              # fan-out and retries
        storage.dead_letter_queue.grant(fn, "sqs:SendMessage")  # the last failed attempt

        self.storage = storage

    def add_alarm(self, topic: sns.ITopic) -> cloudwatch.Alarm:
        """Dead-lettered deliveries notify the operations topic (environments with alarms on)."""
        alarm = cloudwatch.Alarm(
            self, "DeadLettered",
            metric=self.storage.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=PERIOD, statistic="Maximum"),
            threshold=1, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="Webhook deliveries used up their attempts (about 24 h of retries) and wait in the "
                              "dead-letter queue: fix the endpoint, then `batchgate webhooks redrive`. "
                              + runbook("WebhooksDeadLettered"))
        alarm.add_alarm_action(actions.SnsAction(topic))
        return alarm
