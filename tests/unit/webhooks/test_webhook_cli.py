"""`batchgate webhooks` arguments, with the endpoints table replaced by a fake (no AWS)."""
from __future__ import annotations

import pytest

from batchgate.contract import Env
from batchgate_cli import webhooks as cli


class FakeStore:
    def __init__(self, table_name: str):
        self.table_name = table_name
        FakeStore.calls = []

    def put(self, record):
        FakeStore.calls.append(("put", record.url))

    def rotate(self, tenant, endpoint_id, secret, until):
        FakeStore.calls.append(("rotate", until))
        return True


@pytest.fixture
def store(monkeypatch):
    monkeypatch.setenv(Env.WEBHOOKS_TABLE, "webhooks")
    monkeypatch.setattr(cli, "WebhookStore", FakeStore)
    FakeStore.calls = []
    return FakeStore


@pytest.mark.parametrize("where", [["--env", "local"], ["--stack", "batchgate-local"],
                                   ["--stack", "batchgate-local-stateful"]])
def test_the_local_environment_takes_loopback_urls_however_it_is_named(store, where, capsys):
    url = "http://127.0.0.1:8123/hook"
    assert cli.main(["create", *where, "--tenant", "t1", "--url", url]) == 0
    assert store.calls == [("put", url)] and capsys.readouterr().out.startswith("whsec_")


@pytest.mark.parametrize("where", [[], ["--env", "prod"], ["--stack", "batchgate-dev-stateful"],
                                   ["--stack", "batchgate-localx"]])
def test_deployed_environments_refuse_loopback_urls(store, where, capsys):
    for url in ("http://127.0.0.1:8123/hook", "https://localhost/hook"):
        assert cli.main(["create", *where, "--tenant", "t1", "--url", url]) == 2
    assert store.calls == [] and "error:" in capsys.readouterr().err


@pytest.mark.parametrize("grace", ["-1", str(10 ** 40), "31536000", "ten"])
def test_a_grace_period_is_zero_to_thirty_days(store, grace, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["rotate-secret", "--env", "local", "--tenant", "t1", "we_x", "--grace-seconds", grace])
    assert exit_.value.code == 2 and store.calls == []
    assert cli.main(["rotate-secret", "--env", "local", "--tenant", "t1", "we_x", "--grace-seconds",
                     str(30 * 86400)]) == 0
    assert [c[0] for c in store.calls] == ["rotate"]
