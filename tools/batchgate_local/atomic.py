"""DynamoDB's and S3's atomic writes, for moto's server.

DynamoDB applies each write (a conditional Put/Update/Delete, an `ADD`, a TransactWriteItems) as one
atomic step, and S3 a conditional PutObject (`If-None-Match: *`, `If-Match`) likewise. moto's server
handles requests on threads and reads, checks and writes without a lock, so two concurrent
`ADD chunks_done :1` can leave 1, and two create-only puts of one key can both succeed. The engine
relies on those guarantees, so local mode restores them: `install()` runs every DynamoDB action, and
every conditional S3 PutObject, under a lock (process-wide; undone by `uninstall`).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_lock = threading.RLock()
_originals: dict[tuple[type, str], Callable[..., Any]] = {}


def _serialize(cls: type, method: str, when: Callable[[Any], bool] = lambda _: True) -> None:
    if (cls, method) in _originals:
        return
    original = _originals[(cls, method)] = getattr(cls, method)

    def locked(self, *args, **kwargs):
        if not when(self):
            return original(self, *args, **kwargs)
        with _lock:
            return original(self, *args, **kwargs)

    setattr(cls, method, locked)


def _conditional(response: Any) -> bool:
    return bool(response.headers.get("If-None-Match") or response.headers.get("If-Match"))


def install() -> None:
    from moto.dynamodb.responses import DynamoHandler
    from moto.s3.responses import S3Response

    _serialize(DynamoHandler, "call_action")
    _serialize(S3Response, "put_object", when=_conditional)


def uninstall() -> None:
    for (cls, method), original in _originals.items():
        setattr(cls, method, original)
    _originals.clear()
