"""What both of the service's queues (chunks, webhooks) send with: batches of entries, and the
MessageGroupId that makes a standard queue an SQS fair queue."""
from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence

from batchgate import aws

_ATTEMPTS = 5
# MessageGroupId: 1-128 characters, alphanumerics and punctuation (the SQS API reference).
_GROUP_ID = re.compile(r"[A-Za-z0-9!-/:-@\[-`{-~]{1,128}")


def group_id(key: str) -> str:
    """A message group (a tenant, an endpoint): the key itself, or a digest of it when SQS would refuse it."""
    return key if _GROUP_ID.fullmatch(key) else hashlib.sha256(key.encode()).hexdigest()


def send_batches(queue_url: str, entries: Sequence[dict], what: str) -> None:
    """Send `entries` (SendMessageBatch entries without their Id), 10 per call, re-sending the ones SQS
    reports as failed with a short backoff; RuntimeError naming `what` if some are still refused."""
    for start in range(0, len(entries), 10):
        pending = {str(i): e for i, e in enumerate(entries[start:start + 10])}
        for attempt in range(_ATTEMPTS):
            resp = aws.client("sqs").send_message_batch(
                QueueUrl=queue_url, Entries=[{"Id": k, **e} for k, e in pending.items()])
            pending = {f["Id"]: pending[f["Id"]] for f in resp.get("Failed", [])}
            if not pending:
                break
            time.sleep(0.2 * 2 ** attempt)
        else:
            raise RuntimeError(f"SQS refused {len(pending)} {what}")
