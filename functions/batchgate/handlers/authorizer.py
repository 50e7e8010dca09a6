"""API Gateway REQUEST authorizer: `Authorization: Bearer <key>` -> the key's tenant.

A good key gets an Allow policy for the whole API (API Gateway caches it per Authorization header, so it
must cover every route) and `context.tenant`. Anything else raises Exception("Unauthorized"), the one
signal API Gateway turns into a 401 (its gateway response carries the OpenAI envelope).
"""
from __future__ import annotations

import time

from batchgate.adapters.key_store import KeyStore
from batchgate.contract import Env
from batchgate.domain import keys
from batchgate.observability import lambda_handler
from batchgate.settings import get_settings

# Warm containers skip the GetItem for keys seen in the last few seconds (settings.key_cache_seconds,
# at most 15, 0 with an environment's authorizer_cache_seconds=0); a revocation therefore takes effect
# within that plus API Gateway's own authorizer cache TTL (authorizer_cache_seconds).
_cache: dict[str, tuple[float, str, str]] = {}


def clear_cache() -> None:
    _cache.clear()


def _lookup(key_hash: str) -> tuple[str, str] | None:
    hit = _cache.get(key_hash)
    cache_seconds = get_settings().key_cache_seconds
    if hit and hit[0] > time.monotonic() and cache_seconds > 0:
        return hit[1], hit[2]
    record = KeyStore(get_settings().keys_table).get(key_hash)
    tenant = keys.tenant_for(record)
    if tenant is None or record is None:
        _cache.pop(key_hash, None)
        return None
    if len(_cache) > 1000:  # bounded memory whatever the traffic
        _cache.clear()
    _cache[key_hash] = (time.monotonic() + cache_seconds, tenant, record.get("key_id") or "")
    return tenant, record.get("key_id") or ""


def _header(event: dict, name: str) -> str | None:
    for k, v in (event.get("headers") or {}).items():
        if k.lower() == name:
            return v
    return None


def api_wildcard(method_arn: str) -> str:
    """arn:aws:execute-api:region:account:api/stage/METHOD/path -> .../api/stage/*/*"""
    arn, _, path = method_arn.partition("/")
    stage = path.split("/", 1)[0] if path else "*"
    return f"{arn}/{stage}/*/*"


@lambda_handler(requires=(Env.KEYS_TABLE,))
def handler(event, context):
    key = keys.bearer_key(_header(event, "authorization"))
    found = _lookup(keys.hash_key(key)) if key else None
    if found is None:
        raise Exception("Unauthorized")
    tenant, key_id = found
    return {
        "principalId": key_id or tenant,
        "policyDocument": {"Version": "2012-10-17", "Statement": [{
            "Action": "execute-api:Invoke", "Effect": "Allow",
            "Resource": api_wildcard(event["methodArn"])}]},
        "context": {"tenant": tenant, "key_id": key_id},
    }
