"""The functions' JSON log lines as Powertools writes them, captured for a test."""
from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def json_logs() -> Iterator[Callable[[], list[dict]]]:
    """Yields `read()`: the lines logged (INFO and up) since the last read. Afterwards the logger's level
    is restored and its appended keys are cleared."""
    from batchgate.observability import logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger._logger.addHandler(handler)
    level = logger._logger.level
    logger._logger.setLevel(logging.INFO)

    def read() -> list[dict]:
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        stream.seek(0)
        stream.truncate()
        return lines
    try:
        yield read
    finally:
        logger._logger.setLevel(level)
        logger._logger.removeHandler(handler)
        logger.thread_safe_clear_keys()
