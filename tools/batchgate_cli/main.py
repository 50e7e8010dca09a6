"""The `batchgate` console script. Each subcommand is a module with `main(argv) -> int` that owns its
own arguments; it is imported only when used (local mode pulls in moto, the client commands the SDK)."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# subcommand -> (module with `main(argv) -> int`, one-line help). Add a command by adding a line.
COMMANDS: dict[str, tuple[str, str]] = {
    "batches": ("batchgate_cli.batches", "list, show, watch, cancel and inspect batches"),
    "chunks": ("batchgate_cli.chunks", "move dead-lettered chunk messages back (chunks redrive)"),
    "files": ("batchgate_cli.files", "list, upload, download and delete files"),
    "keys": ("batchgate_cli.keys", "create, list and revoke API keys"),
    "local": ("batchgate_local.cli", "run the whole service locally on moto"),
    "run": ("batchgate_cli.run", "run a batch from a JSONL file: upload, follow, download the results"),
    "smoke": ("batchgate_cli.smoke", "check a deployment end to end"),
    "usage": ("batchgate_cli.usage", "tokens and lines per tenant and model since a date (chargeback)"),
    "webhooks": ("batchgate_cli.webhooks", "create, list, delete and rotate tenants' webhook endpoints; redrive"),
}


def create_key(table_name: str, tenant: str) -> str:
    """For local mode's development keys: store a new key for `tenant`, return it (shown once)."""
    from batchgate_cli.keys import create_key as _create

    return _create(table_name, tenant)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchgate", description="Batchgate: OpenAI-compatible Batch API on AWS",
                                     epilog="`batchgate COMMAND -h` shows a command's own options.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        _parser().parse_args(argv)  # usage, -h, or an error naming the commands (exits)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    try:
        return module.main(argv[1:]) or 0
    except BrokenPipeError:  # `batchgate ... | head`: the reader has gone; stop without a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
