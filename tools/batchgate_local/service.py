"""`LocalService`: the whole of Batchgate in one process, offline, on moto.

start():
  1. moto's server on a free loopback port, Step Functions execution and no-docker Lambda switched on,
     each DynamoDB action and conditional S3 put made atomic as AWS's are (atomic.py); this process's
     environment points boto3 at it (fake credentials, us-east-1).
  2. the real CDK app synthesized for the `local` environment (cached under .local/ by a hash of its
     inputs) and deployed into moto's CloudFormation (deploy.py).
  3. every function runs in-process (lambdas.py); the functions' environment becomes this process's.
  4. SQS event source mappings run on local pollers (pollers.py).
  5. the HTTP front door (apigw/: routes, gateway, server) serves the template's REST API at http://127.0.0.1:PORT/v1.
With `state_dir`, the tables and buckets are restored from that folder before the functions start,
every write to them is journaled there, and unfinished batches get their workflow back (state.py);
without it (the default) everything is in memory and gone on stop.
moto's state is process-global: run one LocalService per process at a time.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from batchgate.observability import logger

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
ENV_NAME = "local"
# Upstream key for a real server given with --upstream-url (the functions read it from this variable).
UPSTREAM_KEY_ENV = "BATCHGATE_UPSTREAM_API_KEY"
# Failed SQS records come back after this long locally (the deployed queue waits 6x the worker timeout).
RETRY_VISIBILITY_SECONDS = 5
UPSTREAM_PLACEHOLDER = "http://batchgate-local-upstream.invalid/v1"


def repo_root() -> Path:
    from infra.paths import ROOT
    return ROOT


def _hash_inputs(overrides: dict) -> str:
    """Everything the synthesized template depends on, except the Lambda code (which runs in-process
    from the source tree, so a stale asset hash in a cached template does not matter)."""
    from importlib.metadata import version

    root = repo_root()
    h = hashlib.sha256(json.dumps({"overrides": overrides, "cdk": version("aws-cdk-lib")},
                                  sort_keys=True).encode())
    files = sorted((root / "infra").rglob("*.py")) + [root / "cdk.json", root / "functions/batchgate/settings.py"]
    for f in files:
        if f.is_file():
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:32]


def synthesize(overrides: dict, cache: bool = True) -> dict[str, dict]:
    """The templates for `overrides`. The upstream URL (a new free port on every start) is synthesized
    as a placeholder and substituted afterwards, so the cache hits whatever the port."""
    upstream = overrides.get("upstream_base_url")
    if upstream:
        if any(c in upstream for c in '"\\'):
            raise ValueError(f"unsupported upstream URL {upstream!r}")
        overrides = {**overrides, "upstream_base_url": UPSTREAM_PLACEHOLDER}
    templates = _synthesize_cached(overrides, cache)
    if not upstream:
        return templates
    return json.loads(json.dumps(templates).replace(UPSTREAM_PLACEHOLDER, upstream))


def _synthesize_cached(overrides: dict, cache: bool) -> dict[str, dict]:
    path = repo_root() / ".local" / "templates" / f"{_hash_inputs(overrides)}.json"
    if cache and path.is_file():
        return json.loads(path.read_text())
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")
    from infra.synth import synthesize as cdk_synthesize

    templates = cdk_synthesize(ENV_NAME, overrides)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(templates))
        tmp.replace(path)
    return templates


class LocalService:
    """Context manager running Batchgate locally. `base_url` is http://127.0.0.1:PORT/v1 once started."""

    def __init__(self, port: int = 0, api_keys: dict[str, str] | None = None, upstream_url: str | None = None,
                 completion_window_seconds: int | None = None, overrides: dict[str, Any] | None = None,
                 host: str = "127.0.0.1", templates: dict[str, dict] | None = None, cache_templates: bool = True,
                 state_dir: str | os.PathLike | Any = None,
                 webhooks: list[tuple[str, str]] | None = None, webhook_secret: str | None = None):
        self.port = port
        self.host = host
        self.api_keys = dict(api_keys or {})
        self.upstream_url = upstream_url
        self.completion_window_seconds = completion_window_seconds
        self.overrides = dict(overrides or {})
        self.templates = templates  # pre-synthesized templates skip the CDK synth (tests of the platform)
        self.cache_templates = cache_templates
        self.base_url: str | None = None
        self.moto_endpoint: str | None = None
        self.deployment = None
        self.lambdas = None
        self.timings: dict[str, float] = {}
        self._moto = None
        self.dev_upstream = None   # the built-in upstream, when no upstream_url was given
        self._front_door = None
        self._pollers: list = []
        self._saved_env: dict[str, str | None] = {}
        self._saved_moto_config: dict | None = None
        self._started = False
        self._iam = None   # local/iam.py's IamGuard while started
        self.state_dir = state_dir   # None: ephemeral (nothing kept after stop)
        self.state = None            # state.StateDir while started with a state_dir
        # (tenant, url) endpoints registered at start, all signed with `webhook_secret` (--webhook, --webhook-secret)
        self.webhooks = list(webhooks or [])
        self.webhook_secret = webhook_secret

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LocalService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> LocalService:
        t0 = time.monotonic()
        try:
            self._open_state()   # first: a locked or incompatible folder fails before any work
            self._start_moto()
            self.timings["moto"] = time.monotonic() - t0
            upstream = self._start_upstream()
            t1 = time.monotonic()
            templates = self.templates or synthesize(self._synth_overrides(upstream), cache=self.cache_templates)
            self.timings["synth"] = time.monotonic() - t1
            t2 = time.monotonic()
            self._deploy(templates)
            self.timings["deploy"] = time.monotonic() - t2  # includes importing the handlers
            self._restore_state()
            self._seed_keys()
            self._register_webhooks()
            self._start_pollers()
            self._resume_batches()
            self._start_front_door()
        except BaseException:
            self.stop()
            raise
        self._started = True
        self.timings["total"] = time.monotonic() - t0
        logger.info("batchgate local started", extra={"timings": self.timings})
        return self

    def stop(self) -> None:
        """Stop everything this service started, in reverse order, and restore the process state."""
        if self._front_door:
            self._front_door.stop()
            self._front_door = None
        for poller in self._pollers:
            poller.stop()
        self._pollers = []
        if self.state is not None:   # before moto forgets: later writes fail rather than go unkept
            self.state.close()
            self.state = None
        if self.dev_upstream:
            self.dev_upstream.shutdown()
            self.dev_upstream = None
        if self._moto:
            try:
                # Forget all state (and stop nothing else): the backends are process-global.
                urllib.request.urlopen(urllib.request.Request(f"{self.moto_endpoint}/moto-api/reset", method="POST"),
                                       timeout=10).read()
            except Exception:
                logger.warning("could not reset moto", exc_info=True)
            self._moto.stop()
            self._moto = None
        from batchgate_local import atomic, lambdas
        if self._iam is not None:
            from batchgate import aws
            self._iam.active = False
            aws.remove_client_hook(self._iam.register)
            self._iam = None
        lambdas.uninstall()
        atomic.uninstall()
        _untrack_moto_models(undo=True)
        if self._saved_moto_config is not None:
            from moto.core.config import default_user_config
            default_user_config.clear()
            default_user_config.update(self._saved_moto_config)
            self._saved_moto_config = None
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._saved_env = {}
        self._reset_caches()
        self._started = False

    # -- steps -----------------------------------------------------------------------------------

    def _setenv(self, key: str, value: str) -> None:
        if key not in self._saved_env:
            self._saved_env[key] = os.environ.get(key)
        os.environ[key] = value

    def _start_moto(self) -> None:
        import copy

        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        from batchgate_local import atomic

        self._saved_moto_config = copy.deepcopy(default_user_config)
        _quiet_moto()
        atomic.install()
        _untrack_moto_models()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.moto_endpoint = f"http://{host}:{port}"
        for k, v in {"MOTO_PORT": str(port), "AWS_ENDPOINT_URL": self.moto_endpoint,
                     "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}.items():
            self._setenv(k, v)
        # A profile or config file of the user must not redirect the fake credentials or region.
        for k in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            if k in os.environ:
                self._saved_env.setdefault(k, os.environ[k])
                os.environ.pop(k)
        config = json.dumps({"stepfunctions": {"execute_state_machine": True},
                             "lambda": {"use_docker": False}}).encode()
        urllib.request.urlopen(urllib.request.Request(
            f"{self.moto_endpoint}/moto-api/config", data=config, method="POST",
            headers={"Content-Type": "application/json"}), timeout=10).read()
        self._reset_caches()

    def _start_upstream(self) -> str:
        if self.upstream_url:
            return self.upstream_url.rstrip("/")
        from batchgate_local.dev_upstream import start_dev_upstream

        self.dev_upstream, base_url = start_dev_upstream(host="127.0.0.1", port=0)
        return base_url.rstrip("/")

    def _synth_overrides(self, upstream_url: str) -> dict:
        overrides = {"upstream_base_url": upstream_url, **self.overrides}
        if self.upstream_url:  # a real server may want a key; the dev upstream needs none
            overrides.setdefault("upstream_api_key_env", UPSTREAM_KEY_ENV)
        if self.completion_window_seconds is not None:
            overrides["completion_window_seconds"] = int(self.completion_window_seconds)
        return overrides

    def _deploy(self, templates: dict[str, dict]) -> None:
        import boto3

        from batchgate_local import deploy, lambdas

        self.lambdas = lambdas.InProcessLambdas()
        lambdas.install(self.lambdas)
        self.deployment = deploy.deploy(templates, region=REGION, account=ACCOUNT)
        lam = boto3.client("lambda", region_name=REGION)
        env: dict[str, str] = {}
        for lid, physical in self.deployment.physical_ids.items():
            if self.deployment.resource_types.get(lid) != "AWS::Lambda::Function":
                continue
            cfg = lam.get_function_configuration(FunctionName=physical)
            variables = (cfg.get("Environment") or {}).get("Variables") or {}
            env.update(variables)
            self.lambdas.register(lambdas.FunctionSpec(
                logical_id=lid, name=cfg["FunctionName"], arn=cfg["FunctionArn"], handler=cfg["Handler"],
                timeout_seconds=int(cfg.get("Timeout") or 3), memory_mb=int(cfg.get("MemorySize") or 128),
                environment=variables))
        # Every function shares one process, so they share one environment: the union of theirs.
        for k, v in env.items():
            self._setenv(k, str(v))
        self._install_iam()
        self._reset_caches()
        self.lambdas.preload()

    def _install_iam(self) -> None:
        """Each function's AWS calls are checked against its own role, as AWS would (local/iam.py)."""
        from batchgate import aws
        from batchgate_local import iam

        roles = iam.load_roles({s.logical_id: s.name for s in self.lambdas.specs}, REGION)
        names: dict[str, str] = {}
        for lid, physical in self.deployment.physical_ids.items():
            if len(physical) >= 8:   # names, ARNs and queue URLs (whose last part is the name)
                names[physical] = lid
                names.setdefault(physical.rstrip("/").rsplit("/", 1)[-1], lid)
        where = iam.Where(REGION, ACCOUNT, os.environ.get("BATCHGATE_STATE_MACHINE_ARN", ""))
        self._iam = iam.IamGuard(roles, where, normalize=names)
        self.lambdas.guard = self._iam
        aws.add_client_hook(self._iam.register)

    def _open_state(self) -> None:
        if self.state_dir is None:
            return
        from batchgate_local.state import StateDir

        given = self.state_dir
        self.state = given if isinstance(given, StateDir) and given.is_open else StateDir(given).open()

    def _restore_state(self) -> None:
        if self.state is None:
            return
        d = self.deployment
        tables = {lid: p for lid, p in d.physical_ids.items() if d.resource_types.get(lid) == "AWS::DynamoDB::Table"}
        buckets = {lid: p for lid, p in d.physical_ids.items() if d.resource_types.get(lid) == "AWS::S3::Bucket"}
        self.state.restore(tables, buckets, ACCOUNT, REGION)
        self.state.install(ACCOUNT, REGION)

    def _resume_batches(self) -> None:
        if self.state is None:
            return
        from batchgate.settings import get_settings

        s = get_settings()
        self.state.resume_batches(s.table, s.state_machine_arn)

    def _seed_keys(self) -> None:
        from batchgate.adapters.key_store import KeyStore
        from batchgate.domain import keys
        from batchgate.settings import get_settings

        store = KeyStore(get_settings().keys_table)
        for key, tenant in self.api_keys.items():
            keys.check_tenant(tenant)
            kept = store.get(keys.hash_key(key))   # kept from an earlier start (state_dir)
            if kept is not None:
                if kept.get("tenant") != tenant:
                    raise ValueError(f"API key {keys.key_id_for(key)} already belongs to tenant "
                                     f"{kept.get('tenant')!r}, not {tenant!r}")
                continue
            store.put(keys.hash_key(key), tenant, keys.key_id_for(key))

    @property
    def invocations_timed_out(self) -> int:
        """Invocations (of any SQS-driven function) that outlived their timeout: Lambda kills those,
        so their messages count a receive towards the queue's DLQ."""
        return sum(p.timed_out for p in self._pollers)

    def add_webhook(self, tenant: str, url: str, secret: str | None = None, events: list[str] | None = None):
        """Register a webhook endpoint for `tenant` (http://127.0.0.1 allowed locally); returns its record,
        secret included (as `batchgate webhooks create` would print it)."""
        import time as _time

        from batchgate.adapters.webhook_store import WebhookStore
        from batchgate.domain import webhooks
        from batchgate.settings import get_settings

        record = webhooks.new_endpoint(tenant, url, events, now=int(_time.time()), allow_loopback=True,
                                       secret=secret)
        WebhookStore(get_settings().webhooks_table).put(record)
        return record

    def _register_webhooks(self) -> None:
        """The --webhook endpoints, signed with this start's secret. A kept state folder may hold one for
        the same tenant and URL from an earlier start: it is reused (and its secret replaced), never
        registered twice, so a restart does not double every delivery."""
        import time as _time

        from batchgate.adapters.webhook_store import WebhookStore
        from batchgate.settings import get_settings

        store = WebhookStore(get_settings().webhooks_table) if self.webhooks else None
        for tenant, url in self.webhooks:
            kept = [r for r in store.list(tenant) if r.url == url] if store else []
            if not kept:
                self.add_webhook(tenant, url, secret=self.webhook_secret)
            elif self.webhook_secret and kept[0].secret != self.webhook_secret:
                store.rotate(tenant, kept[0].id, self.webhook_secret, previous_until=int(_time.time()))

    def _start_pollers(self) -> None:
        from batchgate_local.pollers import SqsPoller

        for mapping in self.deployment.event_source_mappings:
            poller = SqsPoller(mapping, self.lambdas, REGION, retry_visibility_seconds=RETRY_VISIBILITY_SECONDS)
            poller.start()
            self._pollers.append(poller)

    def _start_front_door(self) -> None:
        from batchgate_local.apigw import ApiModel, FrontDoor

        resources = {lid: res for tpl in self.deployment.templates.values()
                     for lid, res in tpl.get("Resources", {}).items()}
        self._front_door = FrontDoor(ApiModel(resources), self.lambdas, host=self.host, port=self.port,
                                     account=ACCOUNT, region=REGION)
        self._front_door.start()
        self.port = self._front_door.port
        self.base_url = f"http://{self.host}:{self.port}/v1"

    @property
    def iam(self):
        """The IamGuard checking every function's AWS calls against its role (local/iam.py)."""
        return self._iam

    @staticmethod
    def _reset_caches() -> None:
        """Settings and boto3 clients are cached per cold start; the environment just changed."""
        from batchgate import aws, settings
        settings.reset_settings()
        aws.reset_clients()


_tracked_new = None


def _untrack_moto_models(undo: bool = False) -> None:
    """moto keeps every model object it ever made in a class-level list, for its dashboard: each
    DynamoDB item version and query result copy, each S3 object version. A long sweep or a long-lived
    local service then grows by tens of MB per batch. Local mode needs no dashboard: stop tracking
    (and forget what was tracked) while it runs."""
    global _tracked_new
    from moto.core.common_models import BaseModel
    from moto.core.model_instances import reset_model_data

    if undo:
        if _tracked_new is not None:
            BaseModel.__new__, _tracked_new = _tracked_new, None
        return
    if _tracked_new is None:
        _tracked_new = BaseModel.__dict__["__new__"]
        BaseModel.__new__ = staticmethod(lambda cls, *args, **kwargs: object.__new__(cls))
    reset_model_data()


class _SkippedResourceFilter:
    def filter(self, record) -> bool:
        return not str(record.msg).startswith("No Moto CloudFormation support")


def _quiet_moto() -> None:
    """moto logs every request and warns about each template resource type its CloudFormation skips
    (API Gateway authorizers, stages, gateway responses: the front door reads those from the template)."""
    import logging
    import warnings

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto_logger = logging.getLogger("moto")
    if not any(isinstance(f, _SkippedResourceFilter) for f in moto_logger.filters):
        moto_logger.addFilter(_SkippedResourceFilter())
    warnings.filterwarnings("ignore", message=r"Tried to parse .* not supported by moto", category=UserWarning)


def quiet_logs(level: str = "WARNING") -> None:
    """The functions log JSON and print their metrics (embedded metric format) to stdout in Lambda;
    locally stdout belongs to the CLI's `ready:` line: logs go to stderr, and metrics, which nothing
    reads here, are not printed (Powertools' own switch)."""
    handler = getattr(logger, "registered_handler", None)
    if handler is not None and hasattr(handler, "setStream"):
        handler.setStream(sys.stderr)
    logger.setLevel(level)
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
