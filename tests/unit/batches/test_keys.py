"""API keys: generation, hashing, display ids, bearer parsing."""
from __future__ import annotations

import hashlib

import pytest

from batchgate.domain import keys


def test_a_generated_key_is_long_random_and_only_its_hash_is_kept():
    a, b = keys.generate_key(), keys.generate_key()
    assert a.key.startswith("bg-") and len(a.key) >= 40 and a.key != b.key
    assert a.key_hash == hashlib.sha256(a.key.encode()).hexdigest()
    assert a.key_id.startswith("bgk_") and a.key_id.endswith(a.key[-4:])
    assert a.key[3:-4] not in a.key_id


@pytest.mark.parametrize(("header", "expected"), [
    ("Bearer bg-abc", "bg-abc"), ("bearer  bg-abc ", "bg-abc"), ("BEARER dev-key", "dev-key"),
    (None, None), ("", None), ("Basic abc", None), ("Bearer ", None), ("Bearer " + "x" * 500, None)])
def test_bearer_parsing(header, expected):
    assert keys.bearer_key(header) == expected


def test_revoked_or_tenantless_records_grant_nothing():
    assert keys.tenant_for({"tenant": "t1", "revoked": False}) == "t1"
    assert keys.tenant_for({"tenant": "t1", "revoked": True}) is None
    assert keys.tenant_for({"revoked": False}) is None
    assert keys.tenant_for(None) is None


@pytest.mark.parametrize("tenant", ["", "a#b", "a/b", "x" * 65, "-lead"])
def test_tenants_are_plain_names(tenant):
    with pytest.raises(ValueError):
        keys.check_tenant(tenant)


@pytest.mark.parametrize("key", ["k", "sk-1", "abcd", "short-dev-key-19chr"])
def test_a_key_id_never_shows_the_tail_of_a_short_key(key):
    # Issue 9, item 6: the last 4 characters of a 4-character key are the whole key.
    key_id = keys.key_id_for(key)
    assert not key_id.endswith(key[-4:]) or key[-4:] in keys.hash_key(key)[:12]
    assert key_id == keys.KEY_ID_PREFIX + keys.hash_key(key)[:12]


def test_a_long_key_id_ends_with_its_last_four_characters():
    key = keys.generate_key().key
    assert keys.key_id_for(key).endswith("_" + key[-4:])
