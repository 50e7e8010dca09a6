"""Typed per-environment configuration. `cdk.json` context (`-c env=<name>`) only picks one of these.

The upstream settings reuse `batchgate.contract.UpstreamConfig`, so the JSON the CDK writes into
BATCHGATE_UPSTREAMS is exactly what the functions parse.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from pydantic import BaseModel, ConfigDict, Field, model_validator

from batchgate.contract import QuotaConfig, QuotaLimits, UpstreamConfig, UpstreamRoute, UpstreamSettings  # noqa: F401  (see README)

MIB = 1024 * 1024


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


LAMBDA_MAX_PAYLOAD = 6_291_456          # synchronous invoke request limit
EVENT_ENVELOPE_BYTES = 16 * 1024        # the proxy event's headers, context and fields (generously)
MULTIPART_FRAMING_BYTES = 1024          # boundaries and part headers around the file
MAX_DIRECT_UPLOAD_BYTES = (LAMBDA_MAX_PAYLOAD - EVENT_ENVELOPE_BYTES) * 3 // 4 - MULTIPART_FRAMING_BYTES


class LimitsConfig(_Frozen):
    completion_window_seconds: int = Field(86400, ge=1)
    # 2,000 lines: eight rounds of a worker's 256 requests in flight, so a chunk run's fixed AWS calls
    # (claim, ranged GET, segment PUTs, commit, next pointer) come to under 0.005 per line
    # (`python -m bench`, section 4; docs/performance.md). At most: Validate cuts a batch into even
    # chunks, as many as fill its lanes evenly.
    chunk_max_lines: int = Field(2000, ge=1)
    chunk_max_bytes: int = Field(8 * MIB, ge=1024)
    # base64 of a direct upload, with its multipart framing and the proxy event around it, must fit
    # Lambda's 6 MB synchronous payload.
    max_direct_upload_bytes: int = Field(4 * MIB, ge=1, le=MAX_DIRECT_UPLOAD_BYTES)
    content_redirect_bytes: int = Field(4 * MIB, ge=0)
    presign_seconds: int = Field(300, ge=1)


class WorkerConfig(_Frozen):
    # Sized by `python -m bench --only worker` (docs/performance.md): at 256 requests in flight
    # (UpstreamSettings.concurrency) a worker peaks near 155 MB and uses ~0.45 of the vCPU share 384 MB
    # buys at 1 s per request; a worker mostly waits on the model, so GB-s is the cost.
    memory_mb: int = 384
    timeout_seconds: int = Field(900, ge=30, le=900)
    batch_size: int = Field(1, ge=1, le=10)
    # The event source mapping's MaximumConcurrency (AWS accepts 2..1000); caps upstream load
    # without reserved concurrency, which would throttle valid messages into the DLQ.
    max_concurrency: int = Field(10, ge=2, le=1000)
    max_receive_count: int = Field(5, ge=1)
    # Workers no one batch may hold (fairness, issue 10): a batch runs on at most max_concurrency minus
    # these (its lanes, domain/dispatch.py), so another tenant's batch that arrives while a large one
    # runs finds a free worker at once instead of waiting for a chunk to finish. None: a tenth, at least 1.
    lane_reserve: int | None = Field(None, ge=0)

    @property
    def queue_visibility_seconds(self) -> int:
        return 6 * self.timeout_seconds

    @property
    def batch_lanes(self) -> int:
        reserve = max(1, self.max_concurrency // 10) if self.lane_reserve is None else self.lane_reserve
        return max(1, self.max_concurrency - reserve)


class FunctionsConfig(_Frozen):
    api_memory_mb: int = 512
    # API Gateway's integration timeout is 29 s; a longer Lambda timeout would only hide that.
    api_timeout_seconds: int = Field(29, le=29)
    workflow_memory_mb: int = 1024
    workflow_timeout_seconds: int = Field(900, le=900)


class WebhooksConfig(_Frozen):
    """Signed webhooks (infra/constructs/webhooks.py). Delays before each retry: 5 s, 5 min, 30 min, 2 h,
    5 h, 8 h, 8 h (eight attempts over 23.6 h; then the dead-letter queue). Local mode and tests shorten them."""
    retry_schedule_seconds: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 28800, 28800)
    timeout_seconds: float = Field(10.0, gt=0, le=60)       # one attempt: connect, send, wait for the status
    allow_loopback: bool = False                            # http://127.0.0.1 endpoints: local mode only
    max_concurrency: int = Field(20, ge=2, le=1000)
    max_receive_count: int = Field(5, ge=1)
    # Per-endpoint circuit breaker (domain/webhooks.py), so a dead endpoint with many deliveries due cannot
    # hold all `max_concurrency` attempts for `timeout_seconds` each. 5 consecutive failed attempts (no 2xx
    # in between, any delivery) open it: one or two failures are a blip a retry absorbs, five in a row with
    # nothing getting through is an endpoint that is down, and at most 5 x 10 s of slot time is spent
    # finding out. While open, its deliveries are re-queued without a POST (no attempt used; their 24 h
    # window still bounds them). The first cool-down is 60 s (a restart or deploy of the receiver is over
    # by then), doubling after each failed probe up to 900 s: SQS's longest delay, so a deferral is one hop,
    # and far below the schedule's later gaps, so a recovered endpoint is found within 15 min.
    breaker_failures: int = Field(5, ge=1, le=1000)
    breaker_cooldown_seconds: int = Field(60, ge=1, le=900)
    breaker_max_cooldown_seconds: int = Field(900, ge=1, le=86400)
    # A delivery the breaker keeps deferring is dead-lettered once this long has passed since its first
    # step (the "retried for up to 24 hours"); at least the schedule's total.
    delivery_window_seconds: int = Field(24 * 3600, ge=1, le=4 * 86400)

    @model_validator(mode="after")
    def _schedule(self) -> WebhooksConfig:
        if any(d < 0 for d in self.retry_schedule_seconds) or sum(self.retry_schedule_seconds) > 24 * 3600:
            raise ValueError("webhook retry delays are >= 0 s and add up to at most 24 h")
        if self.breaker_max_cooldown_seconds < self.breaker_cooldown_seconds:
            raise ValueError("the breaker's longest cool-down is at least its first")
        if self.delivery_window_seconds < sum(self.retry_schedule_seconds):
            raise ValueError("the webhook delivery window is at least the retry schedule's total")
        return self


class ApiConfig(_Frozen):
    throttling_rate_limit: float = 50.0
    throttling_burst_limit: int = 100
    authorizer_cache_seconds: int = Field(300, ge=0, le=3600)


class AlarmsConfig(_Frozen):
    enabled: bool = True
    # Subscribed to the alarm topic (AWS emails a confirmation link first).
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+$")
    api_5xx_threshold: int = Field(5, ge=1)  # per 5 minutes


class DomainConfig(_Frozen):
    """A custom domain for the API (optional): https://<name>/v1. The ACM certificate must cover
    `name` and live in the stack's region (a regional endpoint); the hosted zone holds the alias."""
    name: str = Field(max_length=253, pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
    certificate_arn: str = Field(pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$")
    hosted_zone_id: str = Field(pattern=r"^Z[A-Z0-9]{1,31}$")
    hosted_zone_name: str

    @model_validator(mode="after")
    def _name_in_zone(self) -> DomainConfig:
        zone = self.hosted_zone_name.rstrip(".").lower()
        if self.name != zone and not self.name.endswith("." + zone):
            raise ValueError(f"domain {self.name} is not in hosted zone {zone}")
        return self


class EnvironmentConfig(_Frozen):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,15}$")
    account: str | None = None
    region: str | None = None
    removal: Literal["destroy", "retain"] = "destroy"
    # With removal "destroy", `cdk destroy` empties the bucket first (CloudFormation cannot delete a
    # bucket that holds objects). Off for `local`: moto's state goes with the process.
    empty_bucket_on_destroy: bool = True
    log_retention: logs.RetentionDays = logs.RetentionDays.TWO_WEEKS
    point_in_time_recovery: bool = False
    # X-Ray, API access/execution logs, state machine logs. Off for `local`: moto's CloudFormation
    # cannot create the resources they need and nothing would read them.
    observability: bool = True
    upstreams: UpstreamConfig
    # Per-tenant limits (none by default): see docs/scale.md, "Quotas".
    quotas: QuotaConfig = QuotaConfig()
    limits: LimitsConfig = LimitsConfig()
    worker: WorkerConfig = WorkerConfig()
    functions: FunctionsConfig = FunctionsConfig()
    api: ApiConfig = ApiConfig()
    alarms: AlarmsConfig = AlarmsConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    domain: DomainConfig | None = None

    @model_validator(mode="after")
    def _default_upstream_exists(self) -> EnvironmentConfig:
        known = set(self.upstreams.upstreams)
        missing = {self.upstreams.default, *(r.upstream for r in self.upstreams.routes)} - known
        if missing:
            raise ValueError(f"upstreams not defined: {sorted(missing)}")
        return self

    @model_validator(mode="after")
    def _quotas_fit_the_environment(self) -> EnvironmentConfig:
        # Lambda allows 4 KB of environment variables per function, all of them together.
        size = len(self.quotas.model_dump_json(exclude_defaults=True))
        if size > QUOTAS_MAX_BYTES:
            raise ValueError(f"quotas take {size} bytes of JSON; at most {QUOTAS_MAX_BYTES} fit in the functions' "
                             "environment (Lambda's 4 KB): set a default and override only the tenants that differ")
        return self

    @property
    def removal_policy(self) -> RemovalPolicy:
        return RemovalPolicy.RETAIN if self.removal == "retain" else RemovalPolicy.DESTROY

    def stack_name(self, part: str) -> str:
        return f"batchgate-{self.name}-{part}"

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> EnvironmentConfig:
        """A copy with `overrides` applied (local mode, tests).

        Keys are field names (nested dicts merge) or these shortcuts: upstream_base_url,
        upstream_api_key_env (both act on the default upstream and drop its AWS key sources),
        completion_window_seconds, chunk_max_lines, chunk_max_bytes, max_direct_upload_bytes,
        content_redirect_bytes, presign_seconds, worker_max_concurrency, worker_batch_size,
        worker_timeout_seconds.
        """
        data = self.model_dump(mode="python")
        for key, value in (overrides or {}).items():
            if key in _SHORTCUTS:
                section, field = _SHORTCUTS[key]
                data[section][field] = value
            elif key in ("upstream_base_url", "upstream_api_key_env"):
                default = data["upstreams"]["upstreams"][data["upstreams"]["default"]]
                if key == "upstream_base_url":
                    default["base_url"] = value
                else:
                    default.update(api_key_env=value, api_key_ssm_parameter=None, api_key_secret_id=None)
            elif key in type(self).model_fields:
                data[key] = _merge(data[key], value)
            else:
                raise ValueError(f"unknown override {key!r}")
        return type(self).model_validate(data)


QUOTAS_MAX_BYTES = 2048

_SHORTCUTS = {
    **{f: ("limits", f) for f in LimitsConfig.model_fields},
    "worker_max_concurrency": ("worker", "max_concurrency"),
    "worker_batch_size": ("worker", "batch_size"),
    "worker_timeout_seconds": ("worker", "timeout_seconds"),
}


def _merge(base: Any, value: Any) -> Any:
    if isinstance(base, dict) and isinstance(value, Mapping):
        return {**base, **{k: _merge(base.get(k), v) for k, v in value.items()}}
    return value


def _openai_upstream(env: str) -> UpstreamConfig:
    # The key lives in an SSM SecureString the operator creates once per environment:
    #   aws ssm put-parameter --type SecureString --name /batchgate/<env>/upstream-api-key --value sk-...
    return UpstreamConfig(
        upstreams={
            "default": UpstreamSettings(
                base_url="https://api.openai.com/v1",
                api_key_ssm_parameter=f"/batchgate/{env}/upstream-api-key",
            )
        }
    )


ENVIRONMENTS: dict[str, EnvironmentConfig] = {
    "dev": EnvironmentConfig(
        name="dev",
        upstreams=_openai_upstream("dev"),
        worker=WorkerConfig(max_concurrency=5),
    ),
    "prod": EnvironmentConfig(
        name="prod",
        removal="retain",
        log_retention=logs.RetentionDays.THREE_MONTHS,
        point_in_time_recovery=True,
        upstreams=_openai_upstream("prod"),
        worker=WorkerConfig(max_concurrency=50, batch_size=1),
        api=ApiConfig(throttling_rate_limit=200.0, throttling_burst_limit=400),
    ),
    # What `batchgate local` deploys into moto: the built-in development model server, no key,
    # nothing moto's CloudFormation cannot create.
    "local": EnvironmentConfig(
        name="local",
        log_retention=logs.RetentionDays.ONE_DAY,
        empty_bucket_on_destroy=False,
        observability=False,
        alarms=AlarmsConfig(enabled=False),
        # 32 in flight, not the default 256: the dev upstream runs a thread per connection in the same
        # process as every function.
        upstreams=UpstreamConfig(upstreams={"default": UpstreamSettings(base_url="http://127.0.0.1:8001/v1",
                                                                       concurrency=32)}),
        # Three workers: one batch runs on two (its lanes), the third is kept for whoever comes next.
        worker=WorkerConfig(max_concurrency=3, batch_size=1),
        # Chunks as on AWS: Validate cuts even chunks, as many as fill the lanes evenly (a 3,000-line batch
        # runs as 1,500 lines on each lane; domain/validation.py).
        webhooks=WebhooksConfig(allow_loopback=True, max_concurrency=8),
    ),
}


def get_config(name: str, overrides: Mapping[str, Any] | None = None) -> EnvironmentConfig:
    try:
        config = ENVIRONMENTS[name]
    except KeyError:
        raise ValueError(f"unknown environment {name!r}; known: {sorted(ENVIRONMENTS)}") from None
    return config.with_overrides(overrides) if overrides else config
