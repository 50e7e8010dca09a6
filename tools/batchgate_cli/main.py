"""The `batchgate` console script: `batchgate keys ...`, `batchgate local ...` and `batchgate smoke ...`."""
from __future__ import annotations

import argparse
import sys


def create_key(table_name: str, tenant: str) -> str:
    """For local mode's development keys: store a new key for `tenant`, return it (shown once)."""
    from batchgate_cli.keys import create_key as _create

    return _create(table_name, tenant)


def _parser() -> argparse.ArgumentParser:
    from batchgate_cli import keys as keys_cli

    parser = argparse.ArgumentParser(prog="batchgate", description="Batchgate administration")
    sub = parser.add_subparsers(dest="command", required=True)
    keys_cli.add_arguments(sub.add_parser("keys", help="create, list and revoke API keys"))
    sub.add_parser("local", help="run the whole service locally on moto (see `batchgate local -h`)",
                   add_help=False)
    sub.add_parser("smoke", help="check a deployment end to end (see `batchgate smoke -h`)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "local":
        # Local mode owns its own arguments; imported only here (it pulls in moto).
        from batchgate_local.cli import main as local_main

        return local_main(argv[1:]) or 0
    if argv and argv[0] == "smoke":
        # Client-side code (tools/batchgate_cli), never part of the Lambda package.
        from batchgate_cli.smoke import main as smoke_main

        return smoke_main(argv[1:])
    args = _parser().parse_args(argv)
    from batchgate_cli import keys as keys_cli

    return keys_cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
