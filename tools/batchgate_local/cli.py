"""`batchgate local`: run the whole service on this machine, offline, until Ctrl-C.

stdout gets exactly one line, `ready: http://127.0.0.1:PORT/v1`, once requests are accepted (scripts
wait for it); everything else (the development key, diagnostics, logs) goes to stderr.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from batchgate_local.service import UPSTREAM_KEY_ENV


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
                   help="accept KEY for TENANT (repeatable); without any, one development key is created and printed")
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from batchgate.domain import keys, webhooks
    from batchgate_local.service import LocalService, quiet_logs

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
    if not api_keys:
        new = keys.generate_key()
        api_keys[new.key] = "dev"
        print(f"development API key (tenant 'dev'): {new.key}", file=sys.stderr, flush=True)

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
                           completion_window_seconds=args.completion_window_seconds, overrides=overrides,
                           webhooks=args.webhooks, webhook_secret=webhook_secret)
    try:
        try:
            service.start()
        except OSError as exc:
            print(f"batchgate local: cannot start: {exc}", file=sys.stderr, flush=True)
            return 1
        if stop.is_set():
            return 0
        print(f"started in {service.timings['total']:.1f} s", file=sys.stderr, flush=True)
        print(f"ready: {service.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping", file=sys.stderr, flush=True)
        return 0
    finally:
        service.stop()
        for s, h in previous.items():
            signal.signal(s, h)
