"""The per-endpoint circuit breaker (domain/webhooks.deliver) with its real conditional writes on the
webhooks table (moto) and real POSTs to a loopback receiver; time is the `now` each step is given, so
nothing here waits for a clock. The official SDK's `client.webhooks.unwrap` judges every delivery."""
from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import boto3
import openai
import pytest
from moto import mock_aws
from openai.lib import _webhooks as sdk_webhooks
from support.loopback import PostServer
from webhook_fakes import Queue

from batchgate import aws
from batchgate.adapters.webhook_sender import WebhookSender
from batchgate.adapters.webhook_store import WebhookStore
from batchgate.domain import webhooks

SDK = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")
POLICY = webhooks.BreakerPolicy(failures=3, cooldown=60, max_cooldown=120, probe_lease=15, window=24 * 3600)
SCHEDULE = (5, 300, 1800)
T0 = 1_800_000_000


class Receiver:
    """/down answers 500 until `healed`; /up answers 200. Every request is kept (path, webhook-id, status)."""

    def __init__(self):
        self.requests: list[tuple[str, str, int]] = []
        self.bodies: list[tuple[str, dict, bytes]] = []
        self.healed = threading.Event()
        self.http = PostServer(self._post)
        self.url = self.http.url

    def _post(self, request, body: bytes) -> None:
        status = 200 if request.path == "/up" or self.healed.is_set() else 500
        request.send_response(status)
        request.end_headers()
        self.requests.append((request.path, request.headers["webhook-id"], status))
        self.bodies.append((request.path, dict(request.headers.items()), body))

    def posts(self, path: str) -> list[tuple[str, str, int]]:
        return [r for r in self.requests if r[0] == path]


@pytest.fixture
def world(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    receiver = Receiver()
    with mock_aws():
        aws.reset_clients()
        boto3.client("dynamodb").create_table(
            TableName="webhooks", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])
        store = WebhookStore("webhooks")
        down = webhooks.new_endpoint("tenant-down", receiver.url + "/down", None, now=T0, allow_loopback=True)
        up = webhooks.new_endpoint("tenant-up", receiver.url + "/up", None, now=T0, allow_loopback=True)
        store.put(down)
        store.put(up)
        yield store, receiver, down, up
    aws.reset_clients()
    receiver.http.stop()


def _step(store, queue, message, now, changes=None):
    return webhooks.deliver(message, endpoints=store, queue=queue, sender=WebhookSender(10, True),
                            schedule=SCHEDULE, now=now, breakers=store, breaker=POLICY,
                            on_breaker=(changes.append if changes is not None else None))


def test_a_dead_endpoint_opens_its_breaker_and_its_deliveries_wait_without_a_post_then_all_arrive(
        world, monkeypatch):
    store, receiver, down, up = world
    queue, changes = Queue(), []
    # Given 10 deliveries due at once for a dead endpoint (500) and 3 for another tenant's healthy one
    due = [m for i in range(10) for m in webhooks.fan_out("tenant-down", f"batch_d{i}", "completed", T0, store)]
    healthy = [m for i in range(3) for m in webhooks.fan_out("tenant-up", f"batch_u{i}", "failed", T0, store)]
    ids = {m.webhook_id for m in due}
    assert len(ids) == 10

    # When the deliver function takes them, the dead endpoint's interleaved with the healthy one's
    outcomes = [_step(store, queue, m, T0, changes) for m in due[:5] + healthy + due[5:]]

    # Then the breaker opened at the 3rd failed attempt: 3 POSTs to /down, the other 7 deferred unposted
    assert [o for o in outcomes if o != "delivered"] == ["retrying"] * 3 + ["deferred"] * 7
    assert len(receiver.posts("/down")) == 3 and changes == ["opened"]
    assert [s for _, _, s in receiver.posts("/up")] == [200, 200, 200]   # the healthy tenant got every one
    breaker = store.get("tenant-down", down.id).breaker
    assert (breaker.failures, breaker.open_until, breaker.opens) == (3, T0 + 60, 1)
    assert store.get("tenant-up", up.id).breaker.failures == 0
    sent = queue.take()
    deferred = [(m, d) for m, d in sent if m.attempts == 0]
    # ... deferred until the cool-down ends, no attempt used, same webhook-id, its 24 h window set
    assert len(deferred) == 7 and all(d == 60 and m.not_before == T0 + 60 for m, d in deferred)
    assert all(m.window_ends_at == T0 + 24 * 3600 for m, _ in sent)

    # When the cool-down is over, the endpoint still dead: one probe goes through and fails
    back = [m for m, _ in sent]
    now = T0 + 60
    outcomes = [_step(store, queue, m, now, changes) for m in back]
    assert outcomes.count("deferred") == len(back) - 1 and len(receiver.posts("/down")) == 4
    assert changes == ["opened", "reopened"]
    assert store.get("tenant-down", down.id).breaker.open_until == now + 120   # doubled cool-down (capped)

    # When it has recovered and the next cool-down is over: the probe closes the breaker...
    receiver.healed.set()
    pending = [m for m, _ in queue.take()]
    now += 120
    probe = next(m for m in pending if m.not_before <= now)   # a deferred one (the failed probe's retry waits)
    assert _step(store, queue, probe, now, changes) == "delivered" and changes[-1] == "closed"
    assert store.get("tenant-down", down.id).breaker.model_dump() == {
        "failures": 0, "open_until": 0, "opens": 0, "probe_until": 0}
    # ... and every other delivery arrives once it is due (retries keep their schedule's delays)
    pending = [m for m in pending if m is not probe] + [m for m, _ in queue.take()]
    while pending:
        now = max([now] + [m.not_before for m in pending])
        for m in pending:
            assert _step(store, queue, m, now, changes) in ("delivered", "waiting")
        pending = [m for m, _ in queue.take()]
    delivered = {wid for path, wid, status in receiver.requests if path == "/down" and status == 200}
    assert delivered == ids and queue.dead == []
    for path, headers, body in receiver.bodies:
        if path == "/down" and headers["webhook-id"] in ids:
            # the verifier's clock at the step's `now` (it refuses timestamps 5 minutes off its own)
            signed_at = int(headers["webhook-timestamp"])
            monkeypatch.setattr(sdk_webhooks, "time", SimpleNamespace(time=lambda at=signed_at: at))
            event = SDK.webhooks.unwrap(body, headers, secret=down.secret)
            assert event.type == "batch.completed" and json.loads(body)["data"]["id"].startswith("batch_d")


def test_a_deferred_delivery_is_dead_lettered_only_when_its_window_is_over(world):
    store, receiver, down, _ = world
    queue = Queue()
    store.open_breaker("tenant-down", down.id, until=T0 + 10 ** 6, opens=1, expect_opens=0)
    (msg,) = webhooks.fan_out("tenant-down", "batch_w", "completed", T0, store)

    assert _step(store, queue, msg, T0) == "deferred"
    ((later, delay),) = queue.take()
    assert (later.attempts, delay, later.not_before, later.window_ends_at) == (0, 900, T0 + 24 * 3600,
                                                                               T0 + 24 * 3600)
    assert _step(store, queue, later, T0 + 24 * 3600) == "dead_lettered"
    (dead,) = queue.dead
    assert dead.webhook_id == msg.webhook_id and dead.last_error == "circuit open" and receiver.requests == []


def test_concurrent_failures_open_the_breaker_once_and_one_probe_at_a_time(world):
    store, _, down, _ = world
    key = ("tenant-down", down.id)
    for _ in range(5):
        store.count_failure(*key)
    assert store.open_breaker(*key, until=T0 + 60, opens=1, expect_opens=0)
    assert not store.open_breaker(*key, until=T0 + 61, opens=1, expect_opens=0)   # someone else's, later
    assert not store.take_probe(*key, open_until=T0 + 60, now=T0 + 59, lease_until=T0 + 74)   # still open
    assert store.take_probe(*key, open_until=T0 + 60, now=T0 + 60, lease_until=T0 + 75)
    assert not store.take_probe(*key, open_until=T0 + 60, now=T0 + 61, lease_until=T0 + 76)  # probe in flight
    assert store.take_probe(*key, open_until=T0 + 60, now=T0 + 75, lease_until=T0 + 90)      # its lease ran out
    # A deleted endpoint is not brought back by its breaker.
    assert store.delete(*key)
    assert store.count_failure(*key) is None and not store.close_breaker(*key)
    assert not store.open_breaker(*key, until=1, opens=1, expect_opens=0)
    assert store.get(*key) is None


def test_the_breaker_never_reaches_the_records_the_cli_shows(world):
    store, _, down, _ = world
    store.count_failure("tenant-down", down.id)
    (listed,) = [e for e in store.list_all() if e.id == down.id]
    assert "breaker" not in listed.model_dump() and set(listed.public()) == {
        "id", "tenant", "url", "events", "created_at", "rotating"}
    assert listed.breaker.failures == 1
    json.dumps(listed.public())


def test_breaker_changes_are_counted_under_the_name_the_runbook_gives(capsys):
    from batchgate.handlers.webhook_deliver import breaker_metrics

    capsys.readouterr()
    breaker_metrics("opened")
    (doc,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert (doc["event"], doc["WebhookBreaker"]) == ("opened", [1.0])


@pytest.mark.parametrize("raw", ["0,60,900,86400", "5,0,900,86400", "5,60,30,86400", "5,60,900,0", "5,60,900", "x"])
def test_a_breaker_setting_out_of_bounds_is_refused(raw):
    with pytest.raises(ValueError):
        webhooks.parse_breaker(raw, 10)
    assert webhooks.parse_breaker("5,60,900,86400", 10) == webhooks.BreakerPolicy(5, 60, 900, 15, 86400)
    assert [webhooks.BreakerPolicy().cooldown_after(n) for n in (1, 2, 3, 4, 5, 60)] == [60, 120, 240, 480, 900, 900]
