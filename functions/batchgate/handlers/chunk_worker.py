"""SQS chunk queue consumer (ReportBatchItemFailures): each record is a ChunkMessage; a failed record
comes back after the visibility timeout, every other outcome (done, handed back, busy...) is acked
(a busy chunk's pointer was re-sent, delayed to the end of the live lease)."""
from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import Json

from batchgate.contract import Env, Metric
from batchgate.domain.worker import process_chunk
from batchgate.handlers import engine_deps
from batchgate.models.engine import ChunkMessage
from batchgate.observability import count, lambda_handler, log_keys, logger
from batchgate.worker_loop import run_on_worker_loop


class ChunkQueueRecord(SqsRecordModel):
    body: Json[ChunkMessage]


def record_handler(record: ChunkQueueRecord, lambda_context) -> str:
    msg = record.body
    log_keys(batch_id=msg.batch_id, tenant=msg.tenant, chunk=msg.chunk)
    outcome = run_on_worker_loop(process_chunk(
        msg, engine_deps.worker_ports(), engine_deps.worker_limits(),
        lambda: lambda_context.get_remaining_time_in_millis() / 1000))
    logger.info("chunk run", extra={"batch_id": msg.batch_id, "chunk": msg.chunk, "outcome": outcome})
    count(Metric.CHUNK_RUNS, "outcome", outcome)
    return outcome


@lambda_handler(requires=(Env.TABLE, Env.BUCKET, Env.CHUNK_QUEUE_URL, Env.EVENT_BUS))
def handler(event: dict, context) -> PartialItemFailureResponse:
    # A processor per invocation: it holds the invocation's records and failures, so it must not be
    # shared by invocations that overlap (as local mode runs them, in threads of one process).
    processor = BatchProcessor(event_type=EventType.SQS, model=ChunkQueueRecord)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
