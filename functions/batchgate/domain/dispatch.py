"""The Dispatch step: park the workflow's task token on the batch, then send the first chunk of each
of the batch's lanes (or every chunk, without lanes).

Lanes keep a batch from filling the chunk queue and from holding every worker: `lanes` is the workers'
maximum concurrency less a reserve (infra/config.py WorkerConfig.batch_lanes), so one batch alone keeps
all but the reserved workers busy, another tenant's batch finds a free worker at once, and each next
chunk of a lane joins the queue only when the one before it finishes, behind whatever other tenants
sent meanwhile (issue 10, fairness)."""
from __future__ import annotations

from batchgate.domain.batches import CANCEL_ERROR
from batchgate.domain.ports import BatchRepository, ChunkQueuePort, WorkflowPort
from batchgate.models.engine import ChunkMessage, DispatchStepOutput


def dispatch_batch(tenant: str, batch_id: str, task_token: str, *, batches: BatchRepository,
                   workflow: WorkflowPort, queue: ChunkQueuePort, lanes: int = 0) -> DispatchStepOutput:
    """Only an in_progress batch takes the token; a batch cancelled before this point fails the token
    itself (the cancel API found no token to fail)."""
    if not batches.update_fields(tenant, batch_id, {"task_token": task_token}, require_status=["in_progress"]):
        workflow.fail_task(task_token, error=CANCEL_ERROR, cause="The batch is no longer in progress.")
        return DispatchStepOutput(batch_id=batch_id, tenant=tenant, chunks_sent=0)
    batch = batches.get(tenant, batch_id, consistent=True)
    count = (batch.chunk_count or 0) if batch else 0
    stride = lanes if 0 < lanes < count else None
    if stride:  # on the batch, before any pointer: every copy of any pointer continues its lane from it
        batches.update_fields(tenant, batch_id, {"chunk_lanes": stride})
    sent = queue.send_all(ChunkMessage(tenant=tenant, batch_id=batch_id, chunk=n) for n in range(stride or count))
    return DispatchStepOutput(batch_id=batch_id, tenant=tenant, chunks_sent=sent)
