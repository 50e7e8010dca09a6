"""Runtime configuration of every function, read from the environment once per cold start.

Only handlers (and local mode) call `get_settings()`; the domain receives values, never os.environ.
"""
from __future__ import annotations

import functools
import os

from pydantic import BaseModel, Field

from batchgate.contract import Env, QuotaConfig, UpstreamConfig, UpstreamSettings


class Settings(BaseModel):
    environment: str = Field("dev", alias=Env.ENVIRONMENT)
    table: str = Field("", alias=Env.TABLE)
    keys_table: str = Field("", alias=Env.KEYS_TABLE)
    bucket: str = Field("", alias=Env.BUCKET)
    chunk_queue_url: str = Field("", alias=Env.CHUNK_QUEUE_URL)
    state_machine_arn: str = Field("", alias=Env.STATE_MACHINE_ARN)
    event_bus: str = Field("", alias=Env.EVENT_BUS)
    # The 24h window; local mode shortens it so expiry can be tried in seconds.
    completion_window_seconds: int = Field(86400, alias=Env.COMPLETION_WINDOW_SECONDS)
    chunk_max_lines: int = Field(500, alias=Env.CHUNK_MAX_LINES)
    chunk_max_bytes: int = Field(8 * 1024 * 1024, alias=Env.CHUNK_MAX_BYTES)
    # Largest decoded body POST /v1/files accepts through Lambda (base64 of it must fit 6 MB).
    max_direct_upload_bytes: int = Field(4 * 1024 * 1024, alias=Env.MAX_DIRECT_UPLOAD_BYTES)
    # File content above this size is served by a redirect to a presigned S3 URL.
    content_redirect_bytes: int = Field(4 * 1024 * 1024, alias=Env.CONTENT_REDIRECT_BYTES)
    presign_seconds: int = Field(300, alias=Env.PRESIGN_SECONDS)
    # The authorizer's in-memory key cache (infra: min(15, the environment's authorizer_cache_seconds)).
    key_cache_seconds: float = Field(15.0, ge=0, le=15, alias=Env.KEY_CACHE_SECONDS)
    upstreams_json: str = Field("", alias=Env.UPSTREAMS)
    # Chunk workers: stop starting lines when this much Lambda time is left, look at the batch status
    # (cancel/expiry) this often, commit the answered prefix this often.
    worker_stop_reserve_seconds: float = Field(90.0, alias=Env.WORKER_STOP_RESERVE_SECONDS)
    worker_status_poll_seconds: float = Field(2.0, alias=Env.WORKER_STATUS_POLL_SECONDS)
    worker_flush_seconds: float = Field(60.0, alias=Env.WORKER_FLUSH_SECONDS)
    # Finalize waits this long for live chunk leases before failing with Batch.ChunksBusy (retried).
    finalize_lease_wait_seconds: float = Field(60.0, alias=Env.FINALIZE_LEASE_WAIT_SECONDS)
    quotas_json: str = Field("", alias=Env.QUOTAS)
    # Chunks of one batch in the queue or running at once (0: all of them); the stack sets the workers'
    # maximum concurrency, so one batch alone still uses every worker (domain/dispatch.py).
    batch_lanes: int = Field(0, ge=0, alias=Env.BATCH_LANES)
    # Webhooks: endpoints, the delivery queue and its dead letters; the delays before each retry (comma
    # separated seconds), one attempt's timeout, and whether loopback http:// endpoints are allowed (local).
    webhooks_table: str = Field("", alias=Env.WEBHOOKS_TABLE)
    webhook_queue_url: str = Field("", alias=Env.WEBHOOK_QUEUE_URL)
    webhook_dlq_url: str = Field("", alias=Env.WEBHOOK_DLQ_URL)
    webhook_retry_schedule: str = Field("5,300,1800,7200,18000,28800,28800", alias=Env.WEBHOOK_RETRY_SCHEDULE)
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60, alias=Env.WEBHOOK_TIMEOUT_SECONDS)
    webhook_allow_loopback: bool = Field(False, alias=Env.WEBHOOK_ALLOW_LOOPBACK)
    # Per-endpoint circuit breaker: consecutive failures that open it, first and longest cool-down, and the
    # window after which a delivery it keeps deferring is dead-lettered (domain/webhooks.parse_breaker).
    webhook_breaker: str = Field("5,60,900,86400", alias=Env.WEBHOOK_BREAKER)

    @property
    def upstreams(self) -> UpstreamConfig:
        return _parse_upstreams(self.upstreams_json)

    @property
    def quotas(self) -> QuotaConfig:
        return _parse_quotas(self.quotas_json)


@functools.cache
def _parse_upstreams(raw: str) -> UpstreamConfig:
    if not raw:
        return UpstreamConfig(upstreams={"default": UpstreamSettings(base_url="http://127.0.0.1:8001/v1")})
    return UpstreamConfig.model_validate_json(raw)


@functools.cache
def _parse_quotas(raw: str) -> QuotaConfig:
    return QuotaConfig.model_validate_json(raw) if raw else QuotaConfig()


@functools.cache
def get_settings() -> Settings:
    return Settings.model_validate({k: v for k, v in os.environ.items() if k.startswith(Env.PREFIX)})


def reset_settings() -> None:
    """Tests and local mode change the environment; forget what was read."""
    get_settings.cache_clear()
