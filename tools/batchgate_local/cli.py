"""`batchgate local`: run the whole service on this machine, offline, until Ctrl-C.

stdout gets exactly one line, `ready: http://127.0.0.1:PORT/v1`, once requests are accepted (scripts
wait for it); everything else (the development key, diagnostics, logs) goes to stderr.

Files, uploads, batches and keys are kept in a state folder (`.batchgate/` here, or --state-dir) and
unfinished batches resume on the next start (state.py); --ephemeral keeps nothing.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from batchgate_local.service import REGION, UPSTREAM_KEY_ENV
from batchgate_local.state import DEFAULT_DIR, NOT_KEPT

# After Ctrl-C, in-flight work (a worker waiting on a slow upstream) gets this long to finish; then the
# process exits anyway. Nothing is lost: every acknowledged write is already in the state folder, and
# unfinished batches resume on the next start.
STOP_GRACE_SECONDS = 5.0


def _key_pair(value: str) -> tuple[str, str]:
    key, sep, tenant = value.partition("=")
    if not sep or not key or not tenant:
        raise argparse.ArgumentTypeError(f"expected KEY=TENANT, got {value!r}")
    return key, tenant


def _webhook_pair(value: str) -> tuple[str, str]:
    tenant, sep, url = value.partition("=")
    if not sep or not tenant or not url:
        raise argparse.ArgumentTypeError(f"expected TENANT=URL, got {value!r}")
    return tenant, url


def _schedule(value: str) -> list[int]:
    try:
        delays = [int(d) for d in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds like 1,2,4, got {value!r}") from None
    if any(d < 0 for d in delays):
        raise argparse.ArgumentTypeError("delays are >= 0 seconds")
    return delays


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="batchgate local",
        description="Run Batchgate locally on an in-process AWS emulation (moto): no AWS account, no Docker.",
        epilog=f"With --upstream-url, the upstream's API key (if it needs one) is read from ${UPSTREAM_KEY_ENV}.")
    p.add_argument("--port", type=int, default=8000, help="port of the API on 127.0.0.1 (default 8000; 0 = any free)")
    p.add_argument("--api-key", dest="api_keys", action="append", type=_key_pair, default=[], metavar="KEY=TENANT",
                   help="accept KEY for TENANT (repeatable; kept in the state folder); without any, a "
                        "development key is created and printed on the first start")
    p.add_argument("--upstream-url", help="OpenAI-compatible base URL including /v1 (default: the built-in "
                                          "development model server on a free loopback port)")
    p.add_argument("--completion-window-seconds", type=int, default=None,
                   help="how long a batch may run before it expires (the API still says '24h'; default 86400)")
    p.add_argument("--webhook", dest="webhooks", action="append", type=_webhook_pair, default=[],
                   metavar="TENANT=URL", help="send TENANT's terminal batch events to URL, signed (repeatable; "
                                              "http://127.0.0.1 allowed)")
    p.add_argument("--webhook-secret", help="whsec_... secret the webhooks are signed with (default: a new one, "
                                            "printed on stderr)")
    p.add_argument("--webhook-retry-schedule", type=_schedule, metavar="SECONDS,...",
                   help="seconds before each webhook retry (default 5,300,1800,7200,18000,28800,28800)")
    p.add_argument("--log-level", default="WARNING", help="log level of the functions (to stderr; default WARNING)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--state-dir", default=DEFAULT_DIR, metavar="DIR",
                       help=f"keep files, uploads, batches and keys in DIR across restarts (default {DEFAULT_DIR}/ "
                            "in the working directory); unfinished batches resume on the next start")
    where.add_argument("--ephemeral", action="store_true",
                       help="keep nothing: everything is in memory and gone when the service stops")
    return p


def _dev_key(api_keys: dict[str, str], state) -> None:
    """Without --api-key: a new development key on a first (or ephemeral) start, printed once. Only its
    hash is stored, so a later start cannot show it again; it says the earlier one still works."""
    from batchgate.domain import keys

    if api_keys:
        return
    if state is not None and state.meta.get("dev_key_id"):
        print(f"development API key (tenant 'dev'): the key printed on the first start still works "
              f"(key id {state.meta['dev_key_id']}; only its hash is kept, so it cannot be shown again; "
              "add another with --api-key KEY=TENANT)", file=sys.stderr, flush=True)
        return
    new = keys.generate_key()
    api_keys[new.key] = "dev"
    print(f"development API key (tenant 'dev'): {new.key}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from batchgate.domain import keys, webhooks
    from batchgate_local.service import LocalService, quiet_logs
    from batchgate_local.state import StateDir, StateError

    webhook_secret = args.webhook_secret
    try:  # --webhook endpoints and secret are checked before anything starts
        for tenant, url in args.webhooks:
            keys.check_tenant(tenant)
            webhooks.check_url(url, allow_loopback=True)
        if webhook_secret:
            webhooks.check_secret(webhook_secret)
    except ValueError as exc:
        print(f"batchgate local: {exc}", file=sys.stderr, flush=True)
        return 2

    quiet_logs(args.log_level.upper())
    api_keys = dict(args.api_keys)
    state = None
    if not args.ephemeral:
        try:   # locked and checked before anything else: a second instance fails at once
            state = StateDir(args.state_dir).open()
        except StateError as exc:
            print(f"batchgate local: {exc}", file=sys.stderr, flush=True)
            return 1
    _dev_key(api_keys, state)

    if args.webhooks and not webhook_secret:
        webhook_secret = webhooks.generate_secret()
        print(f"webhook signing secret: {webhook_secret}", file=sys.stderr, flush=True)
    overrides = {}
    if args.webhook_retry_schedule is not None:
        overrides["webhooks"] = {"retry_schedule_seconds": args.webhook_retry_schedule}

    stop = threading.Event()

    def _on_signal(signum, frame):
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    service = LocalService(port=args.port, api_keys=api_keys, upstream_url=args.upstream_url,
                           completion_window_seconds=args.completion_window_seconds, state_dir=state,
                           overrides=overrides, webhooks=args.webhooks, webhook_secret=webhook_secret)
    try:
        try:
            service.start()
        except (OSError, StateError, ValueError) as exc:
            print(f"batchgate local: cannot start: {exc}", file=sys.stderr, flush=True)
            return 1
        if state is not None:
            if not args.api_keys and not state.meta.get("dev_key_id"):
                state.note(dev_key_id=next(iter(_key_ids(api_keys))))
            _print_state(state)
        else:
            print("ephemeral: nothing is kept after this process stops", file=sys.stderr, flush=True)
        if stop.is_set():
            return 0
        print(f"started in {service.timings['total']:.1f} s", file=sys.stderr, flush=True)
        print(f"aws: {service.moto_endpoint} (for the operations commands, e.g. AWS_ENDPOINT_URL="
              f"{service.moto_endpoint} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
              f"AWS_DEFAULT_REGION={REGION} batchgate batches inspect BATCH_ID --stack batchgate-local)",
              file=sys.stderr, flush=True)
        print(f"ready: {service.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping", file=sys.stderr, flush=True)
        if state is not None:
            _exit_after_grace(state)
        return 0
    finally:
        service.stop()
        for s, h in previous.items():
            signal.signal(s, h)


def _key_ids(api_keys: dict[str, str]) -> list[str]:
    from batchgate.domain import keys

    return [keys.key_id_for(k) for k in api_keys]


def _print_state(state) -> None:
    r = state.report
    print(f"state: {state.path} ({r.summary()}); not kept: {NOT_KEPT}", file=sys.stderr, flush=True)
    if r.dropped_tail:
        print("state: dropped the journal's last line, cut off when the process was killed (a write that was "
              "never acknowledged)", file=sys.stderr, flush=True)
    if r.orphaned:
        print(f"state: WARNING: kept data of resources this version no longer deploys, left untouched in the "
              f"journal: {r.orphaned}", file=sys.stderr, flush=True)


def _exit_after_grace(state) -> None:
    """A worker blocked on a slow upstream must not hold the stop: after the grace period the process
    exits as a kill would, which loses nothing (the journal has every acknowledged write)."""
    def _force() -> None:
        print(f"stopping: in-flight work did not end within {STOP_GRACE_SECONDS:.0f} s; leaving it to resume "
              "on the next start", file=sys.stderr, flush=True)
        state.close()   # waits for a journal line being written, then refuses later writes
        os._exit(0)

    timer = threading.Timer(STOP_GRACE_SECONDS, _force)
    timer.daemon = True
    timer.start()
