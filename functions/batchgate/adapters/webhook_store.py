"""The webhooks table: one item per endpoint, pk `TENANT#<tenant>`, sk `WEBHOOK#<endpoint id>`.

Items hold the signing secrets in clear (Standard Webhooks signs with the secret itself, so it cannot be
hashed); the table is encrypted at rest and only the delivery function and the operator's CLI can read it.
"""
from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from batchgate import aws
from batchgate.adapters.batch_store import plain
from batchgate.models.webhooks import EndpointBreaker, WebhookEndpointRecord

_PK, _SK = "TENANT#", "WEBHOOK#"
Records = list[WebhookEndpointRecord]   # (the store's own `list` method shadows the builtin in its body)


def _key(tenant: str, endpoint_id: str) -> dict[str, str]:
    return {"pk": _PK + tenant, "sk": _SK + endpoint_id}


_BREAKER = "breaker_"   # the circuit breaker's attributes on the endpoint's item: breaker_failures, ...


def _record(item: dict[str, Any]) -> WebhookEndpointRecord:
    fields = {k: plain(v) for k, v in item.items() if k not in ("pk", "sk") and not k.startswith(_BREAKER)}
    breaker = EndpointBreaker.model_validate({k.removeprefix(_BREAKER): plain(v) for k, v in item.items()
                                              if k.startswith(_BREAKER)})
    return WebhookEndpointRecord.model_validate({**fields, "breaker": breaker})


def _conditional(update) -> bool:
    """False when the update's condition did not hold (ConditionalCheckFailedException)."""
    try:
        update()
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


class WebhookStore:
    def __init__(self, table_name: str):
        if not table_name:
            raise ValueError("WebhookStore needs the webhooks table name (BATCHGATE_WEBHOOKS_TABLE)")
        self.table_name = table_name

    @property
    def table(self):
        return aws.resource("dynamodb").Table(self.table_name)

    def put(self, record: WebhookEndpointRecord) -> None:
        self.table.put_item(Item={**_key(record.tenant, record.id), **record.model_dump(exclude_none=True)},
                            ConditionExpression="attribute_not_exists(pk)")

    def get(self, tenant: str, endpoint_id: str) -> WebhookEndpointRecord | None:
        item = self.table.get_item(Key=_key(tenant, endpoint_id), ConsistentRead=True).get("Item")
        return _record(item) if item else None

    def list(self, tenant: str) -> Records:
        records: Records = []
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(_PK + tenant)}
        while True:
            resp = self.table.query(**kwargs)
            records.extend(_record(i) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return records
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def list_all(self) -> Records:
        """Every endpoint of every tenant (the operator's `webhooks list`; one small item per endpoint)."""
        records: Records = []
        kwargs: dict[str, Any] = {}
        while True:
            resp = self.table.scan(**kwargs)
            records.extend(_record(i) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return sorted(records, key=lambda r: (r.tenant, r.created_at, r.id))
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def delete(self, tenant: str, endpoint_id: str) -> bool:
        try:
            self.table.delete_item(Key=_key(tenant, endpoint_id), ConditionExpression="attribute_exists(pk)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def rotate(self, tenant: str, endpoint_id: str, new_secret: str, previous_until: int) -> bool:
        """The new secret signs from now on; the current one still signs (alongside) until `previous_until`."""
        try:
            self.table.update_item(
                Key=_key(tenant, endpoint_id), ConditionExpression="attribute_exists(pk)",
                UpdateExpression="SET previous_secret = secret, previous_secret_expires_at = :until, secret = :new",
                ExpressionAttributeValues={":until": previous_until, ":new": new_secret})
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # -- the circuit breaker (domain/webhooks.deliver): UpdateItem on the endpoint's item, each conditional
    # on the endpoint still existing (a deleted endpoint is not brought back as a bare breaker item).

    def count_failure(self, tenant: str, endpoint_id: str) -> EndpointBreaker | None:
        """One more consecutive failure; the breaker as it is now (None: the endpoint is gone)."""
        try:
            resp = self.table.update_item(
                Key=_key(tenant, endpoint_id), ConditionExpression="attribute_exists(pk)",
                UpdateExpression="ADD breaker_failures :one", ExpressionAttributeValues={":one": 1},
                ReturnValues="ALL_NEW")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return _record(resp["Attributes"]).breaker

    def open_breaker(self, tenant: str, endpoint_id: str, *, until: int, opens: int, expect_opens: int) -> bool:
        """Open (or reopen after a failed probe) until `until`, if nobody else did since `expect_opens` was
        read: concurrent failures open it once."""
        condition = "attribute_exists(pk) AND " + (
            "(attribute_not_exists(breaker_opens) OR breaker_opens = :expect)" if expect_opens == 0
            else "breaker_opens = :expect")
        return _conditional(lambda: self.table.update_item(
            Key=_key(tenant, endpoint_id), ConditionExpression=condition,
            UpdateExpression="SET breaker_open_until = :until, breaker_opens = :opens, breaker_probe_until = :zero",
            ExpressionAttributeValues={":until": until, ":opens": opens, ":expect": expect_opens, ":zero": 0}))

    def take_probe(self, tenant: str, endpoint_id: str, *, open_until: int, now: int, lease_until: int) -> bool:
        """The one probe of a half-open breaker: only while it is still the cool-down that was read and no
        other probe holds a live lease (a probe whose function died frees it when the lease ends)."""
        return _conditional(lambda: self.table.update_item(
            Key=_key(tenant, endpoint_id),
            ConditionExpression="breaker_open_until = :seen AND breaker_open_until <= :now AND "
                                "(attribute_not_exists(breaker_probe_until) OR breaker_probe_until <= :now)",
            UpdateExpression="SET breaker_probe_until = :lease",
            ExpressionAttributeValues={":seen": open_until, ":now": now, ":lease": lease_until}))

    def close_breaker(self, tenant: str, endpoint_id: str) -> bool:
        """A 2xx: back to closed, counts cleared."""
        return _conditional(lambda: self.table.update_item(
            Key=_key(tenant, endpoint_id), ConditionExpression="attribute_exists(pk)",
            UpdateExpression="SET breaker_failures = :zero, breaker_open_until = :zero, breaker_opens = :zero, "
                             "breaker_probe_until = :zero",
            ExpressionAttributeValues={":zero": 0}))
