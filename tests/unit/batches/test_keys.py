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
