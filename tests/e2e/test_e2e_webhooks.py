"""Signed webhooks as a receiver sees them: local mode (retries shortened to 1 s, 1 s by the package's
overrides) posts every terminal batch event to a test-owned HTTP server on 127.0.0.1, and the official
SDK's `client.webhooks.unwrap` accepts every delivery. The receiver's application dedupes by
`webhook-id`, as the Standard Webhooks spec tells receivers to."""
from __future__ import annotations

import io
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

import boto3
import openai
import pytest
from support.loopback import PostServer
from support.sdk import stop_process, wait_for_batch

from batchgate.adapters.webhook_queue import WebhookQueue
from batchgate.domain.webhooks import fan_out, generate_secret
from batchgate_cli import webhooks as webhooks_cli

from .conftest import TENANT_A, TENANT_B

pytestmark = pytest.mark.e2e
SDK = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")


class Receiver:
    """Paths: /ok and /up answer 200; /flaky 500 twice per webhook-id, then 200; /fail 500 until
    `healed`, /down until `down_healed`; /dead never answers (it notes when the sender gives up). 2xx
    deliveries reach the "application" once per webhook-id, after `client.webhooks.unwrap` accepted them."""

    def __init__(self):
        self.secrets: dict[str, str] = {}
        self.requests: list[dict] = []        # every request: path, webhook-id, event id, status answered
        self.app: dict[str, list] = {}        # path -> events the application processed (deduped)
        self.dead_gave_up: dict[str, float] = {}   # event id -> when the sender closed the /dead connection
        self.healed = threading.Event()
        self.down_healed = threading.Event()
        self.release = threading.Event()
        self.changed = threading.Condition()
        self._seen: set[str] = set()
        self.http = PostServer(self.handle)
        self.url = self.http.url

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        path, headers = request.path, dict(request.headers.items())
        wid, evt = headers.get("webhook-id"), json.loads(body)["id"]
        with self.changed:
            tries = sum(1 for r in self.requests if r["webhook_id"] == wid)
        if path == "/dead":
            self._record(path, wid, evt, None)
            self._hang(request, evt)
            return
        status = {"/ok": 200, "/up": 200, "/flaky": 500 if tries < 2 else 200,
                  "/fail": 200 if self.healed.is_set() else 500,
                  "/down": 200 if self.down_healed.is_set() else 500}[path]
        if status == 200:
            event = SDK.webhooks.unwrap(body, headers, secret=self.secrets[path])  # raises if not signed right
        request.send_response(status)
        request.end_headers()
        with self.changed:
            if status == 200 and wid not in self._seen:
                self._seen.add(wid)
                self.app.setdefault(path, []).append(event)
        self._record(path, wid, evt, status)

    def _hang(self, request, evt: str) -> None:
        conn = request.connection
        while not self.release.is_set():
            readable, _, _ = select.select([conn], [], [], 0.1)
            if readable and conn.recv(1, socket.MSG_PEEK) == b"":
                with self.changed:
                    self.dead_gave_up.setdefault(evt, time.monotonic())
                    self.changed.notify_all()
                return

    def _record(self, path, wid, evt, status) -> None:
        with self.changed:
            self.requests.append({"path": path, "webhook_id": wid, "event": evt, "status": status,
                                  "at": time.monotonic()})
            self.changed.notify_all()

    def wait(self, predicate, timeout: float = 90) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self), timeout), (self.requests, self.app)

    def of(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    def stop(self) -> None:
        self.release.set()
        self.http.stop()


@pytest.fixture(scope="module")
def receiver(local_service):
    """Tenant A: /ok (created with the CLI, as an operator would) and /dead (as `--webhook` registers it,
    with `--webhook-secret`'s secret). Tenant B: /flaky and /fail, batch.completed only."""
    r = Receiver()
    shared = generate_secret()
    endpoints = [local_service.add_webhook(TENANT_A, r.url + "/dead", secret=shared)]
    for tenant, path, events in ((TENANT_B, "/flaky", ["batch.completed"]), (TENANT_B, "/fail", ["batch.completed"])):
        endpoints.append(local_service.add_webhook(tenant, r.url + path, events=events))
    for ep in endpoints:
        r.secrets[ep.url.removeprefix(r.url)] = ep.secret
    yield r
    # Pending deliveries of deleted endpoints are dropped: nothing reaches the next test module.
    for ep in webhooks_cli.WebhookStore(os.environ["BATCHGATE_WEBHOOKS_TABLE"]).list_all():
        if ep.url.startswith(r.url):
            assert webhooks_cli.main(["delete", "--env", "local", "--tenant", ep.tenant, ep.id]) == 0
    r.stop()


@pytest.fixture(scope="module")
def ok_endpoint(receiver, capsys_module):
    out = capsys_module(["create", "--env", "local", "--tenant", TENANT_A, "--url", receiver.url + "/ok", "--json"])
    created = json.loads(out)
    receiver.secrets["/ok"] = created["secret"]
    return created


@pytest.fixture(scope="module")
def capsys_module():
    """`batchgate webhooks ...` in-process, its stdout returned (module-scoped fixtures cannot use capsys)."""
    import contextlib

    def run(argv: list[str]) -> str:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):   # every thread's stdout: the service's log lines too
            assert webhooks_cli.main(argv) == 0
        return "".join(line for line in buf.getvalue().splitlines(keepends=True)
                       if not line.startswith(('{"level"', '{"_aws"')))
    return run


def _lines(n: int, content: str = "hello", prefix: str = "wh") -> bytes:
    return b"".join(json.dumps({
        "custom_id": f"{prefix}-{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "dev-model", "messages": [{"role": "user", "content": f"{content} {i}"}]}}).encode() + b"\n"
        for i in range(n))


def _start(client, data: bytes):
    f = client.files.create(file=("in.jsonl", io.BytesIO(data), "application/jsonl"), purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")


def test_every_terminal_event_is_delivered_signed_and_a_dead_endpoint_delays_nothing(
        client_a, receiver, ok_endpoint):
    # Given batches of tenant A that end in each of the four terminal statuses (the package's window is 60 s)
    expiring = _start(client_a, _lines(2, "__sleep_ms:120000__", prefix="exp"))
    completed = _start(client_a, _lines(3))
    failed = _start(client_a, b"{not json\n")
    cancelled = _start(client_a, _lines(3, "__sleep_ms:5000__", prefix="can"))
    client_a.batches.cancel(cancelled.id)
    expected = {completed.id: "batch.completed", failed.id: "batch.failed", cancelled.id: "batch.cancelled",
                expiring.id: "batch.expired"}

    # When they end
    for batch_id, event_type in expected.items():
        batch = wait_for_batch(client_a, batch_id, timeout=150, poll=0.3)
        assert f"batch.{batch.status}" == event_type, batch

    # Then /ok's application got each event once, typed by the SDK, with the batch's id
    receiver.wait(lambda r: len(r.app.get("/ok", [])) == 4)
    events = {e.data.id: e for e in receiver.app["/ok"]}
    assert {k: e.type for k, e in events.items()} == expected
    assert all(e.object == "event" and e.id.startswith("evt_") for e in events.values())
    assert type(events[completed.id]).__name__ == "BatchCompletedWebhookEvent"
    assert type(events[expiring.id]).__name__ == "BatchExpiredWebhookEvent"
    # ... while the dead endpoint was sent the same events and held each attempt open: every /ok delivery
    # arrived before the sender gave up on the dead endpoint's attempt of that event. (Once 3 attempts to
    # /dead have failed its breaker opens: later events wait for a probe instead of holding a slot.)
    receiver.wait(lambda r: {q["event"] for q in r.of("/dead")} & {e.id for e in events.values()})
    ok_at = {q["event"]: q["at"] for q in receiver.of("/ok")}
    for evt in {q["event"] for q in receiver.of("/dead")} & set(ok_at):
        gave_up = receiver.dead_gave_up.get(evt, float("inf"))
        assert ok_at[evt] < gave_up, evt


@pytest.fixture(scope="module")
def tenant_b_batch(client_b, receiver):
    """A completed batch of tenant B: its event goes to /flaky and /fail."""
    batch = _start(client_b, _lines(2, prefix="tb"))
    assert wait_for_batch(client_b, batch.id, timeout=60).status == "completed"
    return batch


def test_retries_carry_the_same_webhook_id_and_the_application_sees_the_event_once(receiver, tenant_b_batch):
    # Given tenant B's /flaky endpoint, which answers 500, 500, then 200
    batch = tenant_b_batch

    receiver.wait(lambda r: len(r.app.get("/flaky", [])) == 1)

    attempts = receiver.of("/flaky")
    assert [a["status"] for a in attempts] == [500, 500, 200]
    assert len({a["webhook_id"] for a in attempts}) == 1
    (event,) = receiver.app["/flaky"]
    assert event.type == "batch.completed" and event.data.id == batch.id


def test_a_delivery_that_used_up_its_attempts_is_dead_lettered_and_redriven(receiver, tenant_b_batch):
    # Given /fail, which answered 500 to every attempt (1 + 2 retries) of the batch's event
    receiver.wait(lambda r: len(r.of("/fail")) == 3)
    sqs = boto3.client("sqs", region_name=os.environ["AWS_DEFAULT_REGION"])
    dlq = os.environ["BATCHGATE_WEBHOOK_DLQ_URL"]
    fail_id = {q["webhook_id"] for q in receiver.of("/fail")}.pop()

    def dead_lettered() -> list[dict]:
        """The DLQ's deliveries of /fail, read without taking them (the dead endpoint's may be there too)."""
        got = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
        return [b for b in (json.loads(m["Body"]) for m in got) if b.get("webhook_id") == fail_id]
    deadline = time.monotonic() + 60
    while not dead_lettered() and time.monotonic() < deadline:
        time.sleep(0.2)
    (letter,) = dead_lettered()
    assert letter["attempts"] == 3 and letter["last_error"] == "500"
    assert "/fail" not in receiver.app

    # When the endpoint is fixed and the operator redrives the dead letters
    receiver.healed.set()
    assert webhooks_cli.main(["redrive", "--env", "local"]) == 0

    # Then the same delivery (same webhook-id) arrives and the application gets it once
    receiver.wait(lambda r: len(r.app.get("/fail", [])) == 1)
    assert dead_lettered() == []
    attempts = receiver.of("/fail")
    assert [a["status"] for a in attempts] == [500, 500, 500, 200]
    assert len({a["webhook_id"] for a in attempts}) == 1
    assert receiver.app["/fail"][0].data.id == tenant_b_batch.id


def test_the_cli_lists_rotates_and_deletes_without_ever_showing_a_secret_again(receiver, ok_endpoint, capsys_module):
    listed = [json.loads(x) for x in capsys_module(["list", "--env", "local", "--tenant", TENANT_A, "--json"])
              .splitlines()]
    mine = {e["id"]: e for e in listed}
    assert ok_endpoint["id"] in mine and ok_endpoint["secret"] not in json.dumps(listed)
    assert all("secret" not in e for e in listed)

    new = capsys_module(["rotate-secret", "--env", "local", "--tenant", TENANT_A, ok_endpoint["id"]]).strip()
    assert new.startswith("whsec_") and new != ok_endpoint["secret"]
    listed = capsys_module(["list", "--env", "local", "--tenant", TENANT_A])
    assert "(rotating)" in listed and new not in listed and ok_endpoint["secret"] not in listed
    # Another tenant's endpoint cannot be deleted through this tenant's name.
    assert webhooks_cli.main(["delete", "--env", "local", "--tenant", TENANT_B, ok_endpoint["id"]]) == 1


def test_the_cli_finds_the_webhook_resources_through_the_stack_outputs(ok_endpoint, capsys_module, monkeypatch):
    # Given no environment variables naming the resources (a deployed environment, seen from a laptop)
    for name in webhooks_cli._OUTPUTS.values():
        monkeypatch.delenv(name[1], raising=False)
    # Then --stack (either stack, or their prefix) finds them, as the other operations commands do
    for stack in ("batchgate-local", "batchgate-local-stateful", "batchgate-local-service"):
        assert ok_endpoint["id"] in capsys_module(["list", "--stack", stack, "--tenant", TENANT_A, "--json"])
    with pytest.raises(SystemExit, match="cannot read the deployment's stacks"):
        webhooks_cli.main(["list", "--env", "nowhere"])


def _until(predicate, timeout: float = 90) -> None:
    """Polls a condition the service reaches (a breaker's state in the webhooks table)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def test_a_dead_endpoints_breaker_opens_others_are_served_and_its_deliveries_follow_when_it_recovers(
        local_service, receiver):
    """Issue 11: many deliveries due at once for a dead endpoint (500) open its circuit breaker after 3
    failed attempts; another tenant's endpoint gets its deliveries meanwhile; once the endpoint answers
    again, the probe closes the breaker and every delivery arrives with its own webhook-id, accepted by
    the official SDK (the deliver function's UpdateItems pass local mode's IAM from the template)."""
    store = webhooks_cli.WebhookStore(os.environ["BATCHGATE_WEBHOOKS_TABLE"])
    down = local_service.add_webhook("brk-down", receiver.url + "/down", events=["batch.completed"])
    up = local_service.add_webhook("brk-up", receiver.url + "/up", events=["batch.completed"])
    receiver.secrets["/down"], receiver.secrets["/up"] = down.secret, up.secret
    now = int(time.time())
    # Given 8 deliveries due at once for /down and 3 for another tenant's /up (as the fan-out makes them)
    due = [m for i in range(8) for m in fan_out("brk-down", f"batch_brk{i}", "completed", now, store)]
    healthy = [m for i in range(3) for m in fan_out("brk-up", f"batch_up{i}", "completed", now, store)]
    WebhookQueue(os.environ["BATCHGATE_WEBHOOK_QUEUE_URL"], os.environ["BATCHGATE_WEBHOOK_DLQ_URL"]).send(
        due + healthy)

    # Then /down's breaker opens and /up's application gets its three events
    _until(lambda: store.get("brk-down", down.id).breaker.opens >= 1)
    receiver.wait(lambda r: len(r.app.get("/up", [])) == 3)
    assert all(q["status"] == 500 for q in receiver.of("/down"))

    # When /down answers again: after the cool-down a probe closes the breaker and every delivery arrives
    receiver.down_healed.set()
    receiver.wait(lambda r: len(r.app.get("/down", [])) == 8, timeout=150)
    assert sorted(e.data.id for e in receiver.app["/down"]) == sorted(f"batch_brk{i}" for i in range(8))
    assert {q["webhook_id"] for q in receiver.of("/down")} == {m.webhook_id for m in due}
    _until(lambda: store.get("brk-down", down.id).breaker.open_until == 0)
    assert store.get("brk-up", up.id).breaker.opens == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_mode_flags_register_webhooks_signed_with_the_printed_secret(upstream):
    """`batchgate local --webhook TENANT=URL` as a user runs it (a subprocess: one LocalService per process);
    without --webhook-secret a secret is generated and printed on stderr."""
    receiver = Receiver()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BATCHGATE_", "MOTO_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchgate_cli.main", "local", "--ephemeral", "--port", str(_free_port()),
         "--api-key", "sk-wh=wh",
         "--upstream-url", upstream, "--webhook", f"wh={receiver.url}/ok", "--webhook-retry-schedule", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**env, "PYTHONUNBUFFERED": "1"})
    stderr: list[str] = []
    drain = threading.Thread(target=lambda: stderr.extend(iter(proc.stderr.readline, "")), daemon=True)
    drain.start()
    try:
        ready = proc.stdout.readline()
        assert ready.startswith("ready: "), (ready, stderr[-20:])
        (secret,) = [line.split(": ", 1)[1].strip() for line in stderr if line.startswith("webhook signing secret")]
        receiver.secrets["/ok"] = secret
        client = openai.OpenAI(base_url=ready.split(" ", 1)[1].strip(), api_key="sk-wh", max_retries=0, timeout=60)
        batch = _start(client, _lines(2, prefix="flag"))
        assert wait_for_batch(client, batch.id, timeout=60).status == "completed"

        receiver.wait(lambda r: len(r.app.get("/ok", [])) == 1)   # unwrapped with the printed secret

        assert receiver.app["/ok"][0].data.id == batch.id
    finally:
        stop_process(proc)
        receiver.stop()


@pytest.mark.parametrize(("flags", "message"), [
    (["--webhook", "t=https://10.0.0.1/hook"], "not a public address"),
    (["--webhook", "t=http://hooks.example.com/hook"], "must be https"),
    (["--webhook", "t=http://127.0.0.1:9/h", "--webhook-secret", "not-a-secret"], "whsec_"),
])
def test_local_mode_refuses_bad_webhook_flags_before_starting(flags, message, capsys):
    from batchgate_local import cli

    assert cli.main(["--port", "0", *flags]) == 2
    assert message in capsys.readouterr().err


def test_a_restart_on_a_kept_state_folder_reuses_its_webhook_endpoint(local_service, monkeypatch):
    """`--webhook T=URL` on every start of a kept folder: one endpoint, signed with this start's secret."""
    store = webhooks_cli.WebhookStore(os.environ["BATCHGATE_WEBHOOKS_TABLE"])
    url = "http://127.0.0.1:9/restart-hook"
    monkeypatch.setattr(local_service, "webhooks", [("restart-tenant", url)])
    monkeypatch.setattr(local_service, "webhook_secret", "whsec_" + "A" * 32)
    local_service._register_webhooks()
    monkeypatch.setattr(local_service, "webhook_secret", "whsec_" + "B" * 32)
    local_service._register_webhooks()   # the next start, with a newly printed secret
    [endpoint] = [e for e in store.list("restart-tenant") if e.url == url]
    assert endpoint.secret == "whsec_" + "B" * 32
    assert store.delete("restart-tenant", endpoint.id)
