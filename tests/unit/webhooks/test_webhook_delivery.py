"""Signed deliveries and their retries (domain/webhooks.py) with in-memory ports; the official SDK's
`client.webhooks.unwrap` is the judge of every signature."""
from __future__ import annotations

import json
import time

import openai
import pytest
from openai.types.webhooks import BatchCompletedWebhookEvent, BatchExpiredWebhookEvent
from standardwebhooks import Webhook
from support.logs import json_logs
from webhook_fakes import Queue

from batchgate.domain import webhooks
from batchgate.domain.webhooks import AttemptResult
from batchgate.models.webhooks import WebhookEndpointRecord

SDK = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")


class Endpoints:
    def __init__(self, *records: WebhookEndpointRecord):
        self.records = {(r.tenant, r.id): r for r in records}

    def get(self, tenant, endpoint_id):
        return self.records.get((tenant, endpoint_id))

    def list(self, tenant):
        return [r for (t, _), r in self.records.items() if t == tenant]

    # The breaker's writes, unconditional here (test_webhook_breaker.py runs the real ones on DynamoDB).
    def _set(self, tenant, endpoint_id, **changes):
        r = self.records.get((tenant, endpoint_id))
        if r is None:
            return None
        self.records[(tenant, endpoint_id)] = r.model_copy(update={"breaker": r.breaker.model_copy(update={
            k: v(r.breaker) if callable(v) else v for k, v in changes.items()})})
        return self.records[(tenant, endpoint_id)].breaker

    def count_failure(self, tenant, endpoint_id):
        return self._set(tenant, endpoint_id, failures=lambda b: b.failures + 1)

    def open_breaker(self, tenant, endpoint_id, *, until, opens, expect_opens):
        return self._set(tenant, endpoint_id, open_until=until, opens=opens) is not None

    def take_probe(self, tenant, endpoint_id, *, open_until, now, lease_until):
        return self._set(tenant, endpoint_id, probe_until=lease_until) is not None

    def close_breaker(self, tenant, endpoint_id):
        return self._set(tenant, endpoint_id, failures=0, open_until=0, opens=0, probe_until=0) is not None


class Sender:
    def __init__(self, *answers: bool):
        self.answers = list(answers)
        self.posts: list[tuple[str, dict, str]] = []

    def post(self, url, headers, body):
        self.posts.append((url, headers, body))
        ok = self.answers.pop(0)
        return AttemptResult(ok, "200" if ok else "500")


def endpoint(tenant="t1", events=None, **kw) -> WebhookEndpointRecord:
    return webhooks.new_endpoint(tenant, "https://hooks.example.com/h", events, now=int(time.time()),
                                 allow_loopback=False, **kw)


def test_a_delivery_is_what_the_official_sdk_unwraps_into_the_typed_event():
    ep = endpoint()
    (msg,) = webhooks.fan_out("t1", "batch_abc", "completed", 1_700_000_000, Endpoints(ep))
    sender = Sender(True)

    outcome = webhooks.deliver(msg, endpoints=Endpoints(ep), queue=Queue(), sender=sender,
                               schedule=(1, 2), now=int(time.time()))

    assert outcome == "delivered"
    url, headers, body = sender.posts[0]
    event = SDK.webhooks.unwrap(body, headers, secret=ep.secret)
    assert isinstance(event, BatchCompletedWebhookEvent)
    assert event.type == "batch.completed" and event.data.id == "batch_abc" and event.created_at == 1_700_000_000
    assert event.object == "event" and event.id.startswith("evt_")
    assert headers["webhook-id"] == msg.webhook_id and headers["content-type"] == "application/json"
    assert Webhook(ep.secret).verify(body, headers)["id"] == event.id   # the library agrees
    with pytest.raises(openai.InvalidWebhookSignatureError):
        SDK.webhooks.unwrap(body, headers, secret=webhooks.generate_secret())
    with pytest.raises(openai.InvalidWebhookSignatureError):
        SDK.webhooks.unwrap(body.replace("batch_abc", "batch_abd"), headers, secret=ep.secret)


def test_only_terminal_events_the_endpoint_chose_are_sent_and_ids_never_change():
    a, b = endpoint(events=["batch.expired"]), endpoint()
    eps = Endpoints(a, b, endpoint(tenant="other"))
    assert webhooks.fan_out("t1", "batch_1", "in_progress", 1, eps) == []
    completed = webhooks.fan_out("t1", "batch_1", "completed", 1, eps)
    assert [m.endpoint_id for m in completed] == [b.id]
    expired = webhooks.fan_out("t1", "batch_1", "expired", 1, eps)
    assert {m.endpoint_id for m in expired} == {a.id, b.id}
    assert isinstance(SDK.webhooks.unwrap(expired[0].body, webhooks.signed_headers(
        "wh_x", int(time.time()), expired[0].body, [a.secret]), secret=a.secret), BatchExpiredWebhookEvent)
    # A re-published event or a re-run fan-out makes the same ids (receivers dedupe on webhook-id).
    again = webhooks.fan_out("t1", "batch_1", "expired", 1, eps)
    assert [(m.webhook_id, m.body) for m in again] == [(m.webhook_id, m.body) for m in expired]
    assert len({m.webhook_id for m in expired}) == 2
    assert json.loads(expired[0].body)["id"] == json.loads(expired[1].body)["id"]


def test_failures_retry_on_the_schedule_with_the_same_id_then_dead_letter():
    ep = endpoint()
    (msg,) = webhooks.fan_out("t1", "batch_1", "failed", 1, Endpoints(ep))
    queue, sender, now = Queue(), Sender(False, False, False), int(time.time())
    schedule = (5, 1800)

    assert webhooks.deliver(msg, endpoints=Endpoints(ep), queue=queue, sender=sender, schedule=schedule,
                            now=now) == "retrying"
    retry, delay = queue.sent[-1]
    assert (retry.attempts, retry.not_before, delay, retry.webhook_id) == (1, now + 5, 5, msg.webhook_id)

    # The 30-minute wait goes in hops of at most 900 s: an early arrival only waits again.
    assert webhooks.deliver(retry, endpoints=Endpoints(ep), queue=queue, sender=sender, schedule=schedule,
                            now=now + 5) == "retrying"
    second, delay = queue.sent[-1]
    assert (second.attempts, second.not_before, delay) == (2, now + 5 + 1800, 900)
    assert webhooks.deliver(second, endpoints=Endpoints(ep), queue=queue, sender=sender, schedule=schedule,
                            now=now + 905) == "waiting"
    assert queue.sent[-1] == (second, 900) and len(sender.posts) == 2

    assert webhooks.deliver(second, endpoints=Endpoints(ep), queue=queue, sender=sender, schedule=schedule,
                            now=now + 1805) == "dead_lettered"
    (dead,) = queue.dead
    assert dead.attempts == 3 and dead.webhook_id == msg.webhook_id and dead.last_error == "500"
    assert {h["webhook-id"] for _, h, _ in sender.posts} == {msg.webhook_id}
    # Each attempt is signed with its own, fresh timestamp (verifiers refuse ones older than 5 minutes).
    assert [h["webhook-timestamp"] for _, h, _ in sender.posts] == [str(now), str(now + 5), str(now + 1805)]


def test_a_rotated_secret_signs_alongside_the_old_one_until_the_grace_period_ends():
    ep = endpoint()
    new = webhooks.generate_secret()
    now = int(time.time())
    rotated = ep.model_copy(update={"secret": new, "previous_secret": ep.secret,
                                    "previous_secret_expires_at": now + 60})
    (msg,) = webhooks.fan_out("t1", "batch_1", "cancelled", 1, Endpoints(rotated))
    sender = Sender(True, True)
    webhooks.deliver(msg, endpoints=Endpoints(rotated), queue=Queue(), sender=sender, schedule=(), now=now)
    _, headers, body = sender.posts[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, ep.secret):
        assert SDK.webhooks.unwrap(body, headers, secret=secret).type == "batch.cancelled"
    assert rotated.signing_secrets(now + 61) == [new]
    assert "secret" not in json.dumps(rotated.public()).replace('"rotating"', "")


def test_deleted_or_unsubscribed_endpoints_drop_their_pending_deliveries():
    ep = endpoint()
    (msg,) = webhooks.fan_out("t1", "batch_1", "completed", 1, Endpoints(ep))
    sender = Sender()
    assert webhooks.deliver(msg, endpoints=Endpoints(), queue=Queue(), sender=sender, schedule=(1,),
                            now=2) == "endpoint_deleted"
    narrowed = ep.model_copy(update={"events": ["batch.failed"]})
    assert webhooks.deliver(msg, endpoints=Endpoints(narrowed), queue=Queue(), sender=sender, schedule=(1,),
                            now=2) == "unsubscribed"
    assert sender.posts == []


@pytest.mark.parametrize("bad", ["", "whsec_", "whsec_!!!", "sk-abc", "whsec_" + "QUJD"])
def test_secrets_are_whsec_base64_of_enough_random_bytes(bad):
    with pytest.raises(ValueError):
        webhooks.check_secret(bad)
    assert webhooks.check_secret(webhooks.generate_secret()).startswith("whsec_")


@pytest.mark.parametrize(("tenant", "url", "events", "allow_loopback"), [
    ("bad tenant!", "https://hooks.example.com/", None, False),
    ("t1", "https://hooks.example.com/", ["batch.in_progress"], False),
    ("t1", "https://hooks.example.com/", ["nope"], False),
    ("t1", "http://127.0.0.1:8000/", None, False),
])
def test_endpoints_are_checked_when_created(tenant, url, events, allow_loopback):
    with pytest.raises(ValueError):
        webhooks.new_endpoint(tenant, url, events, now=1, allow_loopback=allow_loopback)


def test_a_new_endpoint_gets_all_four_events_and_its_own_secret_by_default():
    a = webhooks.new_endpoint("t1", "http://127.0.0.1:8000/", None, now=1, allow_loopback=True)
    b = webhooks.new_endpoint("t1", "https://hooks.example.com/", ["batch.failed"], now=1, allow_loopback=False)
    assert a.events == ["batch.completed", "batch.failed", "batch.cancelled", "batch.expired"]
    assert b.events == ["batch.failed"] and a.secret != b.secret and a.id != b.id


def test_a_secret_never_reaches_a_repr_or_a_validation_error():
    ep = endpoint()
    rotated = ep.model_copy(update={"previous_secret": webhooks.generate_secret()})
    assert ep.secret not in repr(rotated) and rotated.previous_secret not in repr(rotated)
    with pytest.raises(ValueError) as err:
        WebhookEndpointRecord.model_validate({**ep.model_dump(), "events": ["nope"]})
    assert ep.secret not in str(err.value)


def test_each_post_is_measured_under_the_names_the_dashboard_reads(capsys):
    from batchgate.handlers.webhook_deliver import attempt_metrics

    ep = endpoint()
    (msg,) = webhooks.fan_out("t1", "batch_1", "completed", 1, Endpoints(ep))
    seen: list[AttemptResult] = []
    webhooks.deliver(msg, endpoints=Endpoints(ep), queue=Queue(), sender=Sender(False), schedule=(1,), now=2,
                     on_attempt=seen.append)
    assert [r.ok for r in seen] == [False]

    capsys.readouterr()
    attempt_metrics(AttemptResult(False, "timeout", latency_ms=10_000))
    (doc,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Batchgate" and directive["Dimensions"] == [["service"]]
    assert (doc["WebhookDeliveries"], doc["WebhookFailures"], doc["WebhookLatency"]) == ([1.0], [1.0], [10000.0])


@pytest.fixture
def logs():
    """The JSON log lines as the functions write them (Powertools' formatter)."""
    with json_logs() as read:
        yield read


def test_each_attempt_is_logged_with_its_batch_and_tenant(monkeypatch, logs):
    """Issue 11: log lines carry batch_id and tenant (an operator filters the deliver function's logs by
    batch id, as every other function's)."""
    from types import SimpleNamespace

    from batchgate.handlers import webhook_deliver

    ep = endpoint()
    (msg,) = webhooks.fan_out("t1", "batch_abc", "completed", 1, Endpoints(ep))
    monkeypatch.setattr(webhook_deliver, "_ports", lambda: (Endpoints(ep), Queue(), Sender(False), (1,)))
    monkeypatch.setattr(webhook_deliver, "webhook_delivery", lambda **kw: None)
    monkeypatch.setattr(webhook_deliver, "count", lambda *a: None)

    assert webhook_deliver.record_handler(SimpleNamespace(body=msg.model_dump_json())) == "retrying"

    (line,) = [e for e in logs() if e["message"] == "webhook attempt"]
    assert (line["batch_id"], line["tenant"], line["webhook_id"], line["outcome"]) == (
        "batch_abc", "t1", msg.webhook_id, "retrying")
