"""API keys: generated here, shown once, stored only as a sha256 hash (docs/design.md, keys table)."""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

KEY_PREFIX = "bg-"
KEY_ID_PREFIX = "bgk_"
_BEARER = "bearer "
# Longer than any key we issue; anything beyond is not worth hashing.
_MAX_KEY_CHARS = 200
# Tenants end up inside DynamoDB keys and S3 prefixes: keep them plain.
TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class NewKey:
    key: str        # the secret: shown once, never stored
    key_hash: str   # what the keys table stores as pk
    key_id: str     # public handle for list/revoke


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# A key id shows the key's last 4 characters only when they are a small part of it: for a short
# (hand-made, development) key they would be much or all of the secret.
TAIL_SHOWN_FROM_CHARS = 20


def key_id_for(key: str) -> str:
    """`bgk_` + 12 hex of the hash (unique handle) + `_` + the key's last 4 chars (recognisable),
    the last part only for keys of 20 characters or more (issued keys have 46)."""
    handle = f"{KEY_ID_PREFIX}{hash_key(key)[:12]}"
    return f"{handle}_{key[-4:]}" if len(key) >= TAIL_SHOWN_FROM_CHARS else handle


def check_tenant(tenant: str) -> str:
    if not TENANT.match(tenant):
        raise ValueError(f"invalid tenant {tenant!r}: use 1-64 letters, digits, '_', '.', '-'")
    return tenant


def generate_key() -> NewKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(key=key, key_hash=hash_key(key), key_id=key_id_for(key))


def bearer_key(authorization: str | None) -> str | None:
    """The key from an `Authorization: Bearer <key>` header, or None when there is none. Any
    string may be a key (local mode can seed fixed development keys); the hash lookup decides."""
    if not authorization or not authorization[:len(_BEARER)].lower() == _BEARER:
        return None
    key = authorization[len(_BEARER):].strip()
    if not key or len(key) > _MAX_KEY_CHARS:
        return None
    return key


def tenant_for(record: dict[str, Any] | None) -> str | None:
    """The tenant a stored key record grants, or None when the key is unknown or revoked."""
    if not record or record.get("revoked") or not record.get("tenant"):
        return None
    return str(record["tenant"])
