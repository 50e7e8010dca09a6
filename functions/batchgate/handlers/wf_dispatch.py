"""Step Functions task `Dispatch` (lambda:invoke.waitForTaskToken): {"batch_id","tenant","task_token"}.
Parks the token on the batch and sends one pointer message per chunk; the workflow waits until the
last chunk's worker (or cancel, or the timeout) resumes it."""
from __future__ import annotations

from batchgate.contract import Env
from batchgate.domain.dispatch import dispatch_batch
from batchgate.handlers import engine_deps
from batchgate.models.engine import DispatchStepInput
from batchgate.observability import lambda_handler, log_keys, logger
from batchgate.settings import get_settings


@lambda_handler(requires=(Env.TABLE, Env.CHUNK_QUEUE_URL, Env.EVENT_BUS))
def handler(event: dict, context) -> dict:
    step = DispatchStepInput.model_validate(event)
    log_keys(batch_id=step.batch_id, tenant=step.tenant)
    out = dispatch_batch(step.tenant, step.batch_id, step.task_token, batches=engine_deps.batches(),
                         workflow=engine_deps.workflow(), queue=engine_deps.queue(),
                         lanes=get_settings().batch_lanes)
    logger.info("dispatched", extra=out.model_dump())
    return out.model_dump()
