"""The REQUEST authorizer and `batchgate keys` against a moto keys table."""
from __future__ import annotations

import boto3
import pytest
from batches_helpers import KEYS_TABLE, FakeContext

from batchgate.adapters.key_store import KeyStore
from batchgate.domain import keys
from batchgate.handlers import authorizer
from batchgate_cli import main as cli

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/POST/v1/batches/batch_1/cancel"


@pytest.fixture(autouse=True)
def _fresh_cache():
    authorizer.clear_cache()
    yield
    authorizer.clear_cache()


def authorize(header: str | None, header_name: str = "Authorization"):
    event = {"type": "REQUEST", "methodArn": METHOD_ARN, "httpMethod": "POST",
             "headers": {header_name: header} if header is not None else {}}
    return authorizer.handler(event, FakeContext())


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- authorizer ------------------------------------------------------------------------------------
def test_a_good_key_is_allowed_on_the_whole_api_with_its_tenant(aws_env):
    key = cli.create_key(KEYS_TABLE, "acme")
    result = authorize(f"Bearer {key}")
    assert result["context"]["tenant"] == "acme"
    assert result["principalId"] == keys.key_id_for(key)
    (statement,) = result["policyDocument"]["Statement"]
    assert statement == {"Action": "execute-api:Invoke", "Effect": "Allow",
                         "Resource": "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*/*"}
    assert key not in str(result)


def test_the_header_name_is_case_insensitive(aws_env):
    key = cli.create_key(KEYS_TABLE, "acme")
    assert authorize(f"bearer {key}", header_name="authorization")["context"]["tenant"] == "acme"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic Zm9vOmJhcg==", "Bearer bg-unknown-key"])
def test_missing_or_unknown_keys_are_unauthorized(aws_env, header):
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorize(header)


def test_a_revoked_key_is_unauthorized(aws_env, capsys):
    key = cli.create_key(KEYS_TABLE, "acme")
    assert authorize(f"Bearer {key}")["context"]["tenant"] == "acme"
    assert run_cli(capsys, "keys", "revoke", keys.key_id_for(key), "--table", KEYS_TABLE)[0] == 0
    authorizer.clear_cache()  # a warm container forgets within key_cache_seconds
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorize(f"Bearer {key}")


def test_with_no_key_cache_a_revocation_takes_effect_at_once(aws_env, capsys, monkeypatch):
    # An environment with authorizer_cache_seconds=0 deploys BATCHGATE_KEY_CACHE_SECONDS=0.
    from batchgate.settings import get_settings
    monkeypatch.setenv("BATCHGATE_KEY_CACHE_SECONDS", "0")
    get_settings.cache_clear()
    key = cli.create_key(KEYS_TABLE, "acme")
    assert authorize(f"Bearer {key}")["context"]["tenant"] == "acme"
    assert run_cli(capsys, "keys", "revoke", keys.key_id_for(key), "--table", KEYS_TABLE)[0] == 0
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorize(f"Bearer {key}")
    monkeypatch.delenv("BATCHGATE_KEY_CACHE_SECONDS")
    get_settings.cache_clear()


def test_a_warm_authorizer_answers_repeat_keys_without_reading_the_table(aws_env):
    key = cli.create_key(KEYS_TABLE, "acme")
    authorize(f"Bearer {key}")
    boto3.client("dynamodb").delete_table(TableName=KEYS_TABLE)
    assert authorize(f"Bearer {key}")["context"]["tenant"] == "acme"


def test_only_the_hash_is_stored(aws_env):
    key = cli.create_key(KEYS_TABLE, "acme")
    (item,) = boto3.resource("dynamodb").Table(KEYS_TABLE).scan()["Items"]
    assert item["pk"] == keys.hash_key(key) and key not in str(item)
    assert item["revoked"] is False and item["tenant"] == "acme"


# -- keys CLI --------------------------------------------------------------------------------------
def test_keys_create_list_revoke(aws_env, capsys):
    code, out, err = run_cli(capsys, "keys", "create", "--tenant", "acme", "--table", KEYS_TABLE)
    assert code == 0
    key = out.strip()
    assert key.startswith("bg-") and "shown only this once" in err
    assert authorize(f"Bearer {key}")["context"]["tenant"] == "acme"

    run_cli(capsys, "keys", "create", "--tenant", "beta", "--table", KEYS_TABLE)
    code, out, _ = run_cli(capsys, "keys", "list", "--table", KEYS_TABLE)
    assert code == 0 and keys.key_id_for(key) in out and "acme" in out and "beta" in out
    assert key not in out and keys.hash_key(key) not in out

    code, out, _ = run_cli(capsys, "keys", "revoke", keys.key_id_for(key), "--table", KEYS_TABLE)
    assert code == 0 and "revoked" in out
    rows = KeyStore(KEYS_TABLE).list()
    assert {(r["tenant"], r["revoked"]) for r in rows} == {("acme", True), ("beta", False)}
    assert set(rows[0]) == {"key_id", "tenant", "created_at", "revoked"}


def test_keys_revoke_of_an_unknown_id_fails(aws_env, capsys):
    code, _, err = run_cli(capsys, "keys", "revoke", "bgk_nope", "--table", KEYS_TABLE)
    assert code == 1 and "no key" in err


def test_keys_create_refuses_odd_tenants(aws_env, capsys):
    code, out, err = run_cli(capsys, "keys", "create", "--tenant", "a#b", "--table", KEYS_TABLE)
    assert code == 2 and out == "" and "invalid tenant" in err


def test_the_table_comes_from_the_stack_output_or_the_environment(aws_env, capsys, monkeypatch):
    monkeypatch.delenv("BATCHGATE_KEYS_TABLE")
    template = ('{"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}, "Outputs": {"KeysTableName": '
                f'{{"Value": "{KEYS_TABLE}"}}}}}}')
    boto3.client("cloudformation").create_stack(StackName="batchgate-test-stateful", TemplateBody=template)
    code, out, _ = run_cli(capsys, "keys", "create", "--tenant", "acme", "--env", "test")
    assert code == 0 and KeyStore(KEYS_TABLE).get(keys.hash_key(out.strip()))["tenant"] == "acme"

    monkeypatch.setenv("BATCHGATE_KEYS_TABLE", KEYS_TABLE)
    code, out, _ = run_cli(capsys, "keys", "list", "--stack", "does-not-exist")
    assert code == 0 and "acme" in out

    monkeypatch.delenv("BATCHGATE_KEYS_TABLE")
    with pytest.raises(SystemExit, match="pass --table"):
        cli.main(["keys", "list", "--stack", "does-not-exist"])
