"""The keys table: pk = sha256 hex of an API key; `tenant`, `key_id`, `created_at`, `revoked`."""
from __future__ import annotations

import time

from boto3.dynamodb.conditions import Attr

from batchgate import aws
from batchgate.adapters.batch_store import plain

_PUBLIC = ("key_id", "tenant", "created_at", "revoked")


class KeyStore:
    def __init__(self, table_name: str):
        self.table_name = table_name

    @property
    def table(self):
        return aws.resource("dynamodb").Table(self.table_name)

    def get(self, key_hash: str) -> dict | None:
        item = self.table.get_item(Key={"pk": key_hash}).get("Item")
        return plain(item) if item else None

    def put(self, key_hash: str, tenant: str, key_id: str, created_at: int | None = None) -> dict:
        item = {"pk": key_hash, "tenant": tenant, "key_id": key_id,
                "created_at": int(time.time()) if created_at is None else created_at, "revoked": False}
        self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        return item

    def list(self) -> list[dict]:
        """Every key's public fields (never the hash). The table holds one item per key: a scan is fine."""
        items: list[dict] = []
        kwargs: dict = {}
        while True:
            resp = self.table.scan(**kwargs)
            items.extend({k: plain(i.get(k)) for k in _PUBLIC} for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return sorted(items, key=lambda i: (i["created_at"] or 0, i["key_id"] or ""))
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def revoke(self, key_id: str) -> dict | None:
        """Mark the key with this key_id revoked; None when no key has that id."""
        kwargs: dict = {"FilterExpression": Attr("key_id").eq(key_id)}
        while True:
            resp = self.table.scan(**kwargs)
            for item in resp.get("Items", []):
                self.table.update_item(Key={"pk": item["pk"]}, UpdateExpression="SET revoked = :t",
                                       ExpressionAttributeValues={":t": True})
                return {k: plain(item.get(k)) for k in _PUBLIC} | {"revoked": True}
            if "LastEvaluatedKey" not in resp:
                return None
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
