"""Readable tables (rich) and JSON lines for the `batches` and `files` commands."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table


def console() -> Console:
    """stdout; wide when it is not a terminal, so piped tables do not wrap ids."""
    return Console() if sys.stdout.isatty() else Console(width=400, no_color=True)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "(none)") -> None:
    table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    for header in headers:
        table.add_column(header, no_wrap=True, overflow="fold")
    count = 0
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
        count += 1
    out = console()
    if count:
        out.print(table, highlight=False)
    else:
        out.print(empty, highlight=False)


def print_pairs(pairs: Sequence[tuple[str, Any]]) -> None:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in pairs:
        if value not in (None, ""):
            table.add_row(key, str(value))
    console().print(table, highlight=False)


def print_json(obj: Any) -> None:
    """One object as one JSON line (SDK models through model_dump)."""
    data = obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj
    print(json.dumps(data, separators=(",", ":")), flush=True)
