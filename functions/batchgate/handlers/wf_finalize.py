"""Step Functions task `Finalize`: {"batch_id","tenant","reason"} -> {"batch_id","tenant","status"}.
Raises `Batch.ChunksBusy` while workers still hold chunk leases (the state machine retries it)."""
from __future__ import annotations

from batchgate.contract import Env, Metric
from batchgate.domain.finalize import finalize_batch
from batchgate.handlers import engine_deps
from batchgate.models.engine import FinalizeStepInput
from batchgate.observability import count, lambda_handler, log_keys, logger


@lambda_handler(requires=(Env.TABLE, Env.BUCKET, Env.EVENT_BUS))
def handler(event: dict, context) -> dict:
    step = FinalizeStepInput.model_validate(event)
    log_keys(batch_id=step.batch_id, tenant=step.tenant)
    out = finalize_batch(step.tenant, step.batch_id, step.reason, engine_deps.finalize_ports(),
                         engine_deps.finalize_limits(), error=step.error)
    logger.info("finalized", extra=out.model_dump())
    count(Metric.BATCHES_ENDED, "status", out.status)
    return out.model_dump()
