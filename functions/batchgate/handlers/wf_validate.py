"""Step Functions task `Validate`: {"batch_id","tenant"} -> {"batch_id","tenant","outcome","seconds_left"}."""
from __future__ import annotations

import time

from batchgate.contract import Env
from batchgate.domain.validation import validate_batch
from batchgate.handlers import engine_deps
from batchgate.models.engine import ValidateStepInput
from batchgate.observability import lambda_handler, log_keys, logger
from batchgate.settings import get_settings


@lambda_handler(requires=(Env.TABLE, Env.BUCKET, Env.EVENT_BUS))
def handler(event: dict, context) -> dict:
    step = ValidateStepInput.model_validate(event)
    log_keys(batch_id=step.batch_id, tenant=step.tenant)
    s = get_settings()
    out = validate_batch(step.tenant, step.batch_id, batches=engine_deps.batches(), files=engine_deps.files(),
                         chunks=engine_deps.chunks(), chunk_max_lines=s.chunk_max_lines,
                         chunk_max_bytes=s.chunk_max_bytes, now=time.time(), quotas=s.quotas,
                         lanes=s.batch_lanes)
    logger.info("validated", extra=out.model_dump())
    return out.model_dump()
