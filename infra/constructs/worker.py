"""Chunk workers: the SQS chunk queue drives the worker function, capped by the mapping's concurrency."""
from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.function import BatchgateFunction, FunctionDefaults

HANDLER = "batchgate.handlers.chunk_worker.handler"


class ChunkWorkerConstruct(Construct):
    def __init__(self, scope: Construct, id: str, *, defaults: FunctionDefaults, queue: sqs.IQueue) -> None:
        super().__init__(scope, id)
        worker = defaults.config.worker
        self.worker_function = BatchgateFunction(
            self, "Worker", defaults=defaults, handler=HANDLER,
            memory_mb=worker.memory_mb, timeout_seconds=worker.timeout_seconds,
        )
        fn = self.worker_function.function
        self.event_source_mapping = lambda_.EventSourceMapping(
            self, "ChunkQueueMapping", target=fn, event_source_arn=queue.queue_arn,
            batch_size=worker.batch_size,
            report_batch_item_failures=True,
            # Not reserved concurrency: that would throttle valid messages into the DLQ.
            max_concurrency=worker.max_concurrency,
        )
        # What Lambda's poller does with the function's role (the CDK's SqsEventSource would also
        # grant ChangeMessageVisibility and GetQueueUrl, which nothing calls).
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
            resources=[queue.queue_arn]))
