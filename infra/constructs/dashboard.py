"""One CloudWatch dashboard per environment: the batches, their lines and tokens per upstream and model,
the chunk queue and workers, the workflow, the API, webhooks, and the state of every alarm.

The service's own metrics are embedded-metric-format documents in the `Batchgate` namespace (names in
`batchgate.contract.Metric`). Their `upstream` and `model` dimensions are only known at run time, so
widgets read them with SEARCH expressions: a line per upstream and model that has sent anything.
docs/runbook.md says what to read here when an alarm fires.
"""
from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from batchgate.contract import Metric

PERIOD = Duration.minutes(5)
# CloudWatch dynamic labels: each series of a SEARCH named by its dimensions.
BY_CHUNK = "${PROP('Dim.upstream')} ${PROP('Dim.model')}"
BY_STATUS = "${PROP('Dim.status')}"
BY_OUTCOME = "${PROP('Dim.outcome')}"
WIDTH, HEIGHT = 8, 6  # three widgets per row (a dashboard is 24 units wide)


def search(metric: str, dimensions: tuple[str, ...], statistic: str, label: str,
           total: bool = False) -> cloudwatch.MathExpression:
    """Every series of `metric` in the Batchgate namespace with exactly these dimensions (one line each),
    or their sum (`total`)."""
    schema = ",".join((Metric.NAMESPACE, *dimensions))
    expression = (f"SEARCH('{{{schema}}} MetricName=\"{metric}\"', '{statistic}', {int(PERIOD.to_seconds())})")
    if total:
        expression = f"SUM({expression})"
    return cloudwatch.MathExpression(expression=expression, using_metrics={}, label=label, period=PERIOD)


def own(metric: str, statistic: str = "Sum", label: str | None = None, **dimensions: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(namespace=Metric.NAMESPACE, metric_name=metric, statistic=statistic,
                             period=PERIOD, label=label or metric,
                             dimensions_map={"service": Metric.SERVICE, **dimensions})


class OperationsDashboard(Construct):
    def __init__(self, scope: Construct, id: str, *, environment: str, functions: dict[str, lambda_.IFunction],
                 chunk_queue: sqs.IQueue, dead_letter_queue: sqs.IQueue, state_machine: sfn.IStateMachine,
                 rest_api: apigw.RestApi, alarms: list[cloudwatch.IAlarm]) -> None:
        super().__init__(scope, id)
        chunk = Metric.CHUNK_DIMENSIONS
        status = ("service", "status")

        def graph(title: str, left: list[cloudwatch.IMetric], right: list[cloudwatch.IMetric] | None = None,
                  stacked: bool = False) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(title=title, left=left, right=right or [], width=WIDTH, height=HEIGHT,
                                          stacked=stacked)

        rows: list[list[cloudwatch.IWidget]] = [
            [cloudwatch.TextWidget(
                markdown=f"# Batchgate `{environment}`\nBatches, lines and tokens per upstream and model, "
                         "the chunk queue, the workflow and the API. What to do when an alarm fires: "
                         "`docs/runbook.md`.", width=24, height=2)],
            [graph("Batches ended, by status", [search(Metric.BATCH_DURATION, status, "SampleCount", BY_STATUS)],
                   stacked=True),
             graph("Batch duration (s), by status",
                   [search(Metric.BATCH_DURATION, status, "p50", f"p50 {BY_STATUS}"),
                    search(Metric.BATCH_DURATION, status, "Maximum", f"max {BY_STATUS}")]),
             graph("Chunk runs, by outcome", [search(Metric.CHUNK_RUNS, ("service", "outcome"), "Sum", BY_OUTCOME)],
                   stacked=True)],
            [graph("Lines sent, by upstream and model", [search(Metric.LINES_SENT, chunk, "Sum", BY_CHUNK)]),
             graph("Lines answered / failed / deferred",
                   [search(Metric.LINES_ANSWERED, chunk, "Sum", "answered", total=True),
                    search(Metric.LINES_FAILED, chunk, "Sum", "failed", total=True),
                    search(Metric.LINES_DEFERRED, chunk, "Sum", "deferred", total=True)]),
             graph("Upstream retries and 429s, by upstream and model",
                   [search(Metric.REQUESTS_RETRIED, chunk, "Sum", f"retried {BY_CHUNK}"),
                    search(Metric.UPSTREAM_THROTTLED, chunk, "Sum", f"429 {BY_CHUNK}")])],
            [graph("Upstream latency (ms), p50 and p99",
                   [search(Metric.UPSTREAM_LATENCY, chunk, "p50", f"p50 {BY_CHUNK}"),
                    search(Metric.UPSTREAM_LATENCY, chunk, "p99", f"p99 {BY_CHUNK}")]),
             graph("Input tokens, by upstream and model", [search(Metric.INPUT_TOKENS, chunk, "Sum", BY_CHUNK)]),
             graph("Output tokens, by upstream and model", [search(Metric.OUTPUT_TOKENS, chunk, "Sum", BY_CHUNK)])],
            [graph("Chunk queue", [chunk_queue.metric_approximate_number_of_messages_visible(period=PERIOD,
                                                                                              label="waiting"),
                                   dead_letter_queue.metric_approximate_number_of_messages_visible(
                                       period=PERIOD, label="dead-lettered")],
                   [chunk_queue.metric_approximate_age_of_oldest_message(period=PERIOD, label="oldest (s)")]),
             graph("Workflow executions", [state_machine.metric_started(period=PERIOD, label="started"),
                                           state_machine.metric_succeeded(period=PERIOD, label="succeeded"),
                                           state_machine.metric_failed(period=PERIOD, label="failed"),
                                           state_machine.metric_timed_out(period=PERIOD, label="timed out")]),
             graph("API", [rest_api.metric_count(period=PERIOD, label="requests"),
                           rest_api.metric_client_error(period=PERIOD, label="4xx"),
                           rest_api.metric_server_error(period=PERIOD, label="5xx")],
                   [rest_api.metric_latency(period=PERIOD, statistic="p99", label="latency p99 (ms)")])],
            [graph("Function errors", [fn.metric_errors(period=PERIOD, label=name) for name, fn in functions.items()]),
             graph("Function duration p99 (ms)", [fn.metric_duration(period=PERIOD, statistic="p99", label=name)
                                                  for name, fn in functions.items()]),
             graph("Webhook deliveries",
                   [own(Metric.WEBHOOK_DELIVERIES, label="delivered"), own(Metric.WEBHOOK_FAILURES, label="failed")],
                   [own(Metric.WEBHOOK_LATENCY, "p99", label="latency p99 (ms)")])],
            [graph("Webhook delivery messages, by outcome (deferred: the endpoint's breaker is open)",
                   [search(Metric.WEBHOOK_OUTCOMES, ("service", "outcome"), "Sum", BY_OUTCOME)], stacked=True),
             graph("Webhook endpoint breakers, by change",
                   [search(Metric.WEBHOOK_BREAKER, ("service", "event"), "Sum", "${PROP('Dim.event')}")])],
        ]
        if alarms:
            rows.append([cloudwatch.AlarmStatusWidget(title="Alarms", alarms=alarms, width=24,
                                                      height=max(2, (len(alarms) + 3) // 4 + 1))])
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", widgets=rows,
                                              default_interval=Duration.hours(3))
        CfnOutput(self, "DashboardUrl",
                  value=f"https://console.aws.amazon.com/cloudwatch/home?region={Stack.of(self).region}"
                        f"#dashboards:name={self.dashboard.dashboard_name}",
                  description="CloudWatch dashboard of this environment (docs/runbook.md)")
