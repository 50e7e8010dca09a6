"""The contract between the CDK app (`infra/`) and the function code: the only module `infra/` imports.

Everything both sides must agree on lives here and nowhere else: the environment variables the stacks
set and `settings.Settings` reads, the error names the state machine catches and the functions raise,
the S3 key prefixes the grants and lifecycle rules name and the adapters write, the retention tag, the
upstream configuration schema, the Uploads hint the API gateway's 413 answer repeats, and OpenAI's error
envelope, which the functions and the API gateway's own answers both build. It imports
nothing from the rest of the package (an import-linter contract in `pyproject.toml` keeps it so).
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Env:
    """The BATCHGATE_* variables: `infra/stacks/service.py` sets them, `settings.Settings` reads them."""
    ENVIRONMENT = "BATCHGATE_ENV"
    TABLE = "BATCHGATE_TABLE"
    KEYS_TABLE = "BATCHGATE_KEYS_TABLE"
    BUCKET = "BATCHGATE_BUCKET"
    CHUNK_QUEUE_URL = "BATCHGATE_CHUNK_QUEUE_URL"
    STATE_MACHINE_ARN = "BATCHGATE_STATE_MACHINE_ARN"
    EVENT_BUS = "BATCHGATE_EVENT_BUS"
    COMPLETION_WINDOW_SECONDS = "BATCHGATE_COMPLETION_WINDOW_SECONDS"
    CHUNK_MAX_LINES = "BATCHGATE_CHUNK_MAX_LINES"
    CHUNK_MAX_BYTES = "BATCHGATE_CHUNK_MAX_BYTES"
    MAX_DIRECT_UPLOAD_BYTES = "BATCHGATE_MAX_DIRECT_UPLOAD_BYTES"
    CONTENT_REDIRECT_BYTES = "BATCHGATE_CONTENT_REDIRECT_BYTES"
    PRESIGN_SECONDS = "BATCHGATE_PRESIGN_SECONDS"
    KEY_CACHE_SECONDS = "BATCHGATE_KEY_CACHE_SECONDS"
    UPSTREAMS = "BATCHGATE_UPSTREAMS"
    WORKER_STOP_RESERVE_SECONDS = "BATCHGATE_WORKER_STOP_RESERVE_SECONDS"
    WORKER_STATUS_POLL_SECONDS = "BATCHGATE_WORKER_STATUS_POLL_SECONDS"
    WORKER_FLUSH_SECONDS = "BATCHGATE_WORKER_FLUSH_SECONDS"
    FINALIZE_LEASE_WAIT_SECONDS = "BATCHGATE_FINALIZE_LEASE_WAIT_SECONDS"
    QUOTAS = "BATCHGATE_QUOTAS"
    BATCH_LANES = "BATCHGATE_BATCH_LANES"
    WEBHOOKS_TABLE = "BATCHGATE_WEBHOOKS_TABLE"
    WEBHOOK_QUEUE_URL = "BATCHGATE_WEBHOOK_QUEUE_URL"
    WEBHOOK_DLQ_URL = "BATCHGATE_WEBHOOK_DLQ_URL"
    WEBHOOK_RETRY_SCHEDULE = "BATCHGATE_WEBHOOK_RETRY_SCHEDULE"
    WEBHOOK_TIMEOUT_SECONDS = "BATCHGATE_WEBHOOK_TIMEOUT_SECONDS"
    WEBHOOK_ALLOW_LOOPBACK = "BATCHGATE_WEBHOOK_ALLOW_LOOPBACK"
    WEBHOOK_BREAKER = "BATCHGATE_WEBHOOK_BREAKER"   # "failures,cooldown_s,max_cooldown_s,window_s"

    PREFIX = "BATCHGATE_"


class WorkflowError:
    """Error names shared by the state machine's Catch/Retry rules and the functions that raise them."""
    CANCELLED = "Batch.Cancelled"      # Dispatch fails its own task token: the batch was cancelled meanwhile
    CHUNKS_BUSY = "Batch.ChunksBusy"   # Finalize: workers still hold chunk leases (retried)
    STRANDED = "Batch.Stranded"        # the workflow's last resort: the batch could not be ended


class Prefix:
    """S3 key prefixes: the grants and lifecycle rules name them, the adapters write under them."""
    FILES = "files/"      # file objects: files/{tenant}/{file_id}
    UPLOADS = "uploads/"  # Uploads API parts: uploads/{tenant}/{upload_id}/{part_id}
    WORK = "work/"        # engine segments: work/{batch_id}/{chunk}/...


class Metric:
    """CloudWatch metrics (embedded metric format) the functions emit and the dashboard and alarms read.
    Every metric carries the `service` dimension; the ones below name their others."""
    NAMESPACE = "Batchgate"
    SERVICE = "batchgate"
    # per chunk run, dimensions (service, upstream, model): emitted once per run, summed over its lines
    LINES_SENT = "LinesSent"            # lines a run sent upstream (first attempts)
    LINES_ANSWERED = "LinesAnswered"    # ... answered 2xx (output file)
    LINES_FAILED = "LinesFailed"        # ... answered otherwise, or failed at the transport (error file)
    LINES_DEFERRED = "LinesDeferred"    # ... left for a later run (no time left for a retry)
    REQUESTS_RETRIED = "RequestsRetried"  # retries of any line (408/409/429/5xx, transport errors)
    UPSTREAM_THROTTLED = "UpstreamThrottled"  # 429 answers, retried or not
    UPSTREAM_LATENCY = "UpstreamLatency"  # milliseconds per upstream request (a sample of <=100 per run)
    INPUT_TOKENS = "InputTokens"
    OUTPUT_TOKENS = "OutputTokens"
    CHUNK_DIMENSIONS = ("service", "upstream", "model")
    # per chunk run, dimensions (service, outcome)
    CHUNK_RUNS = "ChunkRuns"
    # per batch that ends, dimensions (service, status)
    BATCHES_ENDED = "BatchesEnded"
    BATCH_DURATION = "BatchDuration"    # seconds from created_at to the terminal status
    # per webhook delivery attempt, dimensions (service): observability.webhook_delivery
    WEBHOOK_DELIVERIES = "WebhookDeliveries"
    WEBHOOK_FAILURES = "WebhookFailures"
    WEBHOOK_LATENCY = "WebhookLatency"  # milliseconds per delivery attempt
    # per delivery message handled, dimensions (service, outcome): delivered, waiting, retry, deferred...
    WEBHOOK_OUTCOMES = "WebhookOutcomes"
    # per change of an endpoint's circuit breaker, dimensions (service, event): opened, reopened, closed
    WEBHOOK_BREAKER = "WebhookBreaker"


# File objects are tagged `retention-days=N`; the bucket has one lifecycle rule per N in 1..31.
RETENTION_TAG_KEY = "retention-days"
MAX_RETENTION_DAYS = 31


def error_envelope(message: str, *, type: str = "invalid_request_error", param: str | None = None,
                   code: str | None = None) -> dict[str, dict[str, str | None]]:
    """OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`, all four keys always
    present (the SDK reads them; absent ones are null). The one place it is shaped."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def size_words(nbytes: int) -> str:
    """A byte count any reader understands: '4 MiB (4194304 bytes)'."""
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if nbytes >= size and nbytes % size == 0:
            return f"{nbytes // size} {unit} ({nbytes} bytes)"
    return f"{nbytes} bytes"


def uploads_hint(part_bytes: int) -> str:
    """How to send a big file, in HTTP terms every client (any SDK, curl) can follow."""
    return ("Upload larger files with the Uploads API: POST /v1/uploads with the file's bytes, filename, "
            "mime_type and purpose; then POST /v1/uploads/{upload_id}/parts once per part, in parts of "
            f"at most {size_words(part_bytes)}; then POST /v1/uploads/{{upload_id}}/complete with the "
            "part ids in order. OpenAI SDKs expose these as uploads.create, uploads.parts.create and "
            "uploads.complete; choose a part size no larger than this.")


class UpstreamSettings(BaseModel):
    """One OpenAI-compatible server. `base_url` includes the `/v1` suffix."""
    base_url: str
    # Where the key comes from: an env var name (local), an SSM SecureString parameter name or a
    # Secrets Manager secret id (AWS). All optional: servers such as vLLM may need no key.
    api_key_env: str | None = None
    api_key_ssm_parameter: str | None = None
    api_key_secret_id: str | None = None
    timeout_seconds: float = 600.0
    connect_timeout_seconds: float = 10.0
    concurrency: int = 256     # requests in flight per chunk run (per worker)
    max_attempts: int = 6
    # The upstream's cap across every worker (None: no global cap): slots in blocks of
    # `global_block_size` (default `concurrency`) leased by chunk runs (adapters/upstream_cap.py);
    # a run waits up to `global_wait_seconds` for a block, then hands its chunk back.
    global_concurrency: int | None = Field(None, ge=1, le=100_000)
    global_block_size: int | None = Field(None, ge=1, le=10_000)
    global_wait_seconds: float = Field(10.0, ge=0, le=300)
    max_answer_bytes: int = Field(
        128 * 1024, ge=1024, le=64 * 1024 * 1024,
        description=(
            "The largest answer body a worker reads from this upstream, in bytes (after content decoding). "
            "A longer one (by its Content-Length, or counted as it streams in) fails its line with "
            "`response_too_large` in the error file, is not retried, and its connection is closed unread. "
            "Default 128 KiB, from what a worker holds: the answers in flight, each read, parsed and "
            "turned into a result line (a few copies of each, `concurrency` of them at once), and the "
            "answers kept until a segment commits them, at most WorkerLimits.held_bytes_max (32 MiB) "
            "whatever the chunk's size. Measured (`bench.sections.worker` peak RSS of a fresh worker "
            "process, a 2,000-line chunk, 256 in flight, an instant upstream answering every line at the "
            "same size): 139 MB at 1 KB answers, 275 MB at 128 KiB with almost nothing held, 336 MB at "
            "128 KiB with the default held bound, against the worker's 384 MB. Real answers fit: a chat "
            "completion weighs a few KB (~25k tokens of output stay under 128 KiB), an embeddings answer "
            "of 3,072 floats ~60-70 KB. A long completion with logprobs can reach a few MB: raise the cap "
            "for that upstream and lower its `concurrency`, or give the worker more memory (about 4 x the "
            "cap per request in flight: ~130 MB more at 256 in flight per 128 KiB)."))


class UpstreamRoute(BaseModel):
    """Route models to a named upstream: exact model name or prefix."""
    model: str
    match: str = "exact"  # "exact" | "prefix"
    upstream: str


class UpstreamConfig(BaseModel):
    """The value of BATCHGATE_UPSTREAMS (JSON): named upstreams, model routes and the default."""
    upstreams: dict[str, UpstreamSettings] = Field(default_factory=dict)
    routes: list[UpstreamRoute] = Field(default_factory=list)
    default: str = "default"

    def for_model(self, model: str | None) -> tuple[str, UpstreamSettings]:
        name = self.default
        if model:
            for route in self.routes:
                if route.match == "exact" and route.model == model:
                    name = route.upstream
                    break
            else:
                prefixes = [r for r in self.routes if r.match == "prefix" and model.startswith(r.model)]
                if prefixes:
                    name = max(prefixes, key=lambda r: len(r.model)).upstream
        return name, self.upstreams[name]


class QuotaLimits(BaseModel):
    """A tenant's limits; None = no limit. As OpenAI's: enqueued prompt tokens per model (a batch over
    it fails with `token_limit_exceeded`) and, ours, batches not yet ended (create answers 429)."""
    model_config = ConfigDict(extra="forbid")

    active_batches: int | None = Field(None, ge=1)
    enqueued_tokens_per_model: int | None = Field(None, ge=1)        # every model...
    enqueued_tokens_by_model: dict[str, int] = Field(default_factory=dict)  # ...unless named here


class QuotaConfig(BaseModel):
    """The value of BATCHGATE_QUOTAS (JSON): the environment's limits and per-tenant overrides (a field
    an override sets replaces the default's; per-model token limits merge)."""
    model_config = ConfigDict(extra="forbid")

    default: QuotaLimits = Field(default_factory=QuotaLimits)
    tenants: dict[str, QuotaLimits] = Field(default_factory=dict)

    def for_tenant(self, tenant: str) -> QuotaLimits:
        override = self.tenants.get(tenant)
        if override is None:
            return self.default
        merged = {**self.default.model_dump(), **override.model_dump(exclude_unset=True)}
        merged["enqueued_tokens_by_model"] = {**self.default.enqueued_tokens_by_model,
                                              **override.enqueued_tokens_by_model}
        return QuotaLimits.model_validate(merged)

    def active_batches(self, tenant: str) -> int | None:
        return self.for_tenant(tenant).active_batches

    def enqueued_tokens(self, tenant: str, model: str | None) -> int | None:
        limits = self.for_tenant(tenant)
        return limits.enqueued_tokens_by_model.get(model or "", limits.enqueued_tokens_per_model)
