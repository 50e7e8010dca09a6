"""Step Functions task `Dispatch` (lambda:invoke.waitForTaskToken): {"batch_id","tenant","task_token"}.
Parks the token on the batch and sends one pointer message per chunk; the workflow waits until the
last chunk's worker (or cancel, or the timeout) resumes it."""
from __future__ import annotations

from batchgate.domain.dispatch import dispatch_batch
from batchgate.handlers import engine_deps
from batchgate.models.engine import DispatchStepInput
from batchgate.observability import logger


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    step = DispatchStepInput.model_validate(event)
    out = dispatch_batch(step.tenant, step.batch_id, step.task_token, batches=engine_deps.batches(),
                         workflow=engine_deps.workflow(), queue=engine_deps.queue())
    logger.info("dispatched", extra=out.model_dump())
    return out.model_dump()
