"""What operators must hear about: work the engine could not finish by itself.

- a chunk message in the dead-letter queue (a chunk that kept failing: its lines wait for expiry);
- a failed workflow execution (a step that failed past its retries: the batch is left non-terminal);
- server errors from the API;
- within minutes (issue 8, defect 9): any function's errors or throttles, and a chunk message waiting
  longer than a chunk run can take (workers not consuming), instead of the DLQ hours later.
Every alarm notifies one SNS topic (output `AlarmTopicArn`; `AlarmsConfig.email` subscribes an address).
"""
from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import AlarmsConfig
from infra.constructs.nag import acknowledge

PERIOD = Duration.minutes(5)
FAST_PERIOD = Duration.minutes(1)
# Older than any one chunk run (15 min) plus a re-send's delay: nobody is working the queue.
CHUNK_AGE_ALARM_SECONDS = 30 * 60


def runbook(section: str) -> str:
    """Where an alarm's notification sends the operator: its section of docs/runbook.md."""
    return f"Runbook: docs/runbook.md, {section}."


class OperationsAlarms(Construct):
    def __init__(self, scope: Construct, id: str, *, config: AlarmsConfig, dead_letter_queue: sqs.IQueue,
                 chunk_queue: sqs.IQueue, functions: dict[str, lambda_.IFunction],
                 state_machine: sfn.IStateMachine, rest_api: apigw.RestApi) -> None:
        super().__init__(scope, id)
        self.topic = sns.Topic(self, "Topic", enforce_ssl=True)
        # enforce_ssl replaces the default topic policy with one that only denies plain HTTP: without
        # this statement CloudWatch could not publish, and no alarm would ever notify anyone.
        stack = Stack.of(self)
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchAlarmsPublish", principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"], resources=[self.topic.topic_arn],
            conditions={"StringEquals": {"aws:SourceAccount": stack.account},
                        "ArnLike": {"aws:SourceArn": f"arn:{stack.partition}:cloudwatch:{stack.region}:"
                                                     f"{stack.account}:alarm:*"}}))
        acknowledge(self.topic, "Alarm notifications carry no data, and CloudWatch cannot publish to a topic "
                    "encrypted with the AWS managed SNS key.", "AwsSolutions-SNS2")
        if config.email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.email))
        CfnOutput(self, "AlarmTopicArn", value=self.topic.topic_arn,
                  description="Subscribe here to hear about dead-lettered chunks, failed workflows, API 5xx")

        specs = {
            "ChunksDeadLettered": (
                dead_letter_queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
                1, "Chunk messages reached the dead-letter queue: their lines run no more and will expire. "
                   "Read the worker's logs, then redrive the DLQ to the chunk queue."),
            "WorkflowExecutionsFailed": (
                state_machine.metric_failed(period=PERIOD, statistic="Sum"),
                1, "A batch workflow failed past its retries: its batch is left in a non-terminal status."),
            "ApiServerErrors": (
                rest_api.metric_server_error(period=PERIOD, statistic="Sum"),
                config.api_5xx_threshold, "The API answered 5xx."),
            "ChunksWaiting": (
                chunk_queue.metric_approximate_age_of_oldest_message(period=FAST_PERIOD, statistic="Maximum"),
                CHUNK_AGE_ALARM_SECONDS, "A chunk message has waited 30 minutes: workers are not consuming the "
                                         "chunk queue (throttled, failing or disabled)."),
        }
        for name, fn in functions.items():
            specs[f"{name}Errors"] = (fn.metric_errors(period=FAST_PERIOD, statistic="Sum"), 1,
                                      f"The {name} function failed (an unhandled error or a timeout).")
            specs[f"{name}Throttles"] = (fn.metric_throttles(period=FAST_PERIOD, statistic="Sum"), 1,
                                         f"The {name} function was throttled (account or reserved concurrency).")
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for name, (metric, threshold, description) in specs.items():
            section = next((f"<Function>{name[len(fn):]}" for fn in functions
                            if name in (f"{fn}Errors", f"{fn}Throttles")), name)
            alarm = self.alarms[name] = cloudwatch.Alarm(
                self, name, metric=metric, threshold=threshold, evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=f"{description} {runbook(section)}",
            )
            alarm.add_alarm_action(actions.SnsAction(self.topic))
