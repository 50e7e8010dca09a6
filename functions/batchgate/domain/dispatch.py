"""The Dispatch step: park the workflow's task token on the batch, then send one pointer per chunk."""
from __future__ import annotations

from batchgate.domain.batches import CANCEL_ERROR
from batchgate.domain.ports import BatchRepository, ChunkQueuePort, WorkflowPort
from batchgate.models.engine import ChunkMessage, DispatchStepOutput


def dispatch_batch(tenant: str, batch_id: str, task_token: str, *, batches: BatchRepository,
                   workflow: WorkflowPort, queue: ChunkQueuePort) -> DispatchStepOutput:
    """Only an in_progress batch takes the token; a batch cancelled before this point fails the token
    itself (the cancel API found no token to fail)."""
    if not batches.update_fields(tenant, batch_id, {"task_token": task_token}, require_status=["in_progress"]):
        workflow.fail_task(task_token, error=CANCEL_ERROR, cause="The batch is no longer in progress.")
        return DispatchStepOutput(batch_id=batch_id, tenant=tenant, chunks_sent=0)
    batch = batches.get(tenant, batch_id, consistent=True)
    count = (batch.chunk_count or 0) if batch else 0
    sent = queue.send_all(ChunkMessage(tenant=tenant, batch_id=batch_id, chunk=n) for n in range(count))
    return DispatchStepOutput(batch_id=batch_id, tenant=tenant, chunks_sent=sent)
