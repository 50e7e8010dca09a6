"""Chunk workers: the SQS chunk queue drives the worker function, capped by the mapping's concurrency."""
from __future__ import annotations

from aws_cdk import aws_lambda_event_sources as sources
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
        self.event_source = sources.SqsEventSource(
            queue,
            batch_size=worker.batch_size,
            report_batch_item_failures=True,
            # Not reserved concurrency: that would throttle valid messages into the DLQ.
            max_concurrency=worker.max_concurrency,
        )
        self.worker_function.function.add_event_source(self.event_source)
