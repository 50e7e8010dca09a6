"""Typed environments: the context only picks one; overrides are checked."""
import json
import tomllib

import pytest
from pydantic import ValidationError

from batchgate.contract import UpstreamConfig
from infra.config import ENVIRONMENTS, get_config
from infra.paths import LAYERS_DIR, ROOT


def test_layer_pins_exactly_the_runtime_dependencies():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = (LAYERS_DIR / "requirements.txt").read_text().splitlines()
    pinned = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert sorted(pinned) == sorted(declared)
    assert all("==" in p for p in pinned)


def test_dev_prod_and_local_exist_with_their_policies():
    assert {"dev", "prod", "local"} <= set(ENVIRONMENTS)
    assert get_config("prod").removal == "retain" and get_config("prod").point_in_time_recovery
    assert get_config("dev").removal == "destroy"
    assert get_config("local").removal == "destroy" and not get_config("local").observability


def test_unknown_environment_is_refused():
    with pytest.raises(ValueError, match="unknown environment"):
        get_config("staging-typo")


def test_overrides_shortcuts_reach_the_right_fields():
    config = get_config("dev", {
        "upstream_base_url": "http://127.0.0.1:1/v1",
        "upstream_api_key_env": "MY_KEY",
        "completion_window_seconds": 3,
        "chunk_max_bytes": 4096,
        "worker_max_concurrency": 4,
        "worker_batch_size": 5,
    })
    upstream = config.upstreams.upstreams["default"]
    assert upstream.base_url == "http://127.0.0.1:1/v1"
    assert upstream.api_key_env == "MY_KEY" and upstream.api_key_ssm_parameter is None
    assert config.limits.completion_window_seconds == 3 and config.limits.chunk_max_bytes == 4096
    assert (config.worker.max_concurrency, config.worker.batch_size) == (4, 5)
    # The base config is untouched.
    assert get_config("dev").limits.completion_window_seconds == 86400


def test_nested_overrides_merge():
    config = get_config("local", {"limits": {"presign_seconds": 60}, "api": {"authorizer_cache_seconds": 0},
                                  "webhooks": {"max_concurrency": 3}})
    assert config.limits.presign_seconds == 60
    assert config.webhooks.max_concurrency == 3
    assert config.webhooks.allow_loopback is True   # local mode's own, kept by the merge
    assert config.api.authorizer_cache_seconds == 0


@pytest.mark.parametrize("overrides", [
    {"worker_max_concurrency": 1},  # AWS minimum is 2
    {"worker_batch_size": 11},
    {"worker_timeout_seconds": 901},
    {"no_such_setting": 1},
    {"upstreams": {"routes": [{"model": "x", "upstream": "missing"}]}},
])
def test_invalid_overrides_are_refused(overrides):
    with pytest.raises((ValueError, ValidationError)):
        get_config("local", overrides)


def test_upstreams_round_trip_through_the_functions_model():
    config = get_config("prod")
    parsed = UpstreamConfig.model_validate_json(config.upstreams.model_dump_json(exclude_none=True))
    assert parsed == config.upstreams
    assert json.loads(config.upstreams.model_dump_json())["upstreams"]["default"]["api_key_ssm_parameter"]


def test_quotas_that_would_not_fit_the_functions_environment_are_refused():
    from infra.config import get_config

    tenants = {f"tenant-{i:04d}": {"active_batches": i + 1} for i in range(200)}
    with pytest.raises(ValueError, match="Lambda's 4 KB"):
        get_config("dev", {"quotas": {"tenants": tenants}})


def test_a_batch_never_takes_every_worker():
    """Lanes per batch: the workers' maximum concurrency less a reserve (a tenth, at least one), so a
    batch that arrives while a large one runs finds a free worker (issue 10, fairness)."""
    from infra.config import WorkerConfig
    assert [WorkerConfig(max_concurrency=n).batch_lanes for n in (2, 3, 10, 19, 20, 50, 1000)] == \
        [1, 2, 9, 18, 18, 45, 900]
    assert WorkerConfig(max_concurrency=10, lane_reserve=0).batch_lanes == 10
    assert WorkerConfig(max_concurrency=10, lane_reserve=10).batch_lanes == 1
    assert get_config("local").worker.batch_lanes == 2 and get_config("prod").worker.batch_lanes == 45


def test_chunks_are_at_most_2000_lines_on_aws_and_in_local_mode():
    """Eight rounds of a worker's 256 in flight per chunk on AWS (issue 10: calls per line). Local mode
    deploys the same: Validate's even chunks spread a batch over its lanes (a 3,000-line batch, 1,500 a
    lane), and a chunk run's fixed steps are paid once a lane (bench section 4b)."""
    assert {get_config(e).limits.chunk_max_lines for e in ("prod", "dev", "local")} == {2000}
