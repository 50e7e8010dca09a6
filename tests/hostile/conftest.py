"""Hostile-input suites: one moto world per test module."""
from __future__ import annotations

import pytest
from hostile_helpers import BUCKET, BUS, KEYS_TABLE, STATE_MACHINE, TABLE
from support.aws_world import aws_world


@pytest.fixture(scope="module")
def world():
    """Tables, bucket, bus and a do-nothing state machine under moto, shared by one module's tests
    (hypothesis examples accumulate in it on purpose: a rejected request must not change it)."""
    with pytest.MonkeyPatch.context() as mp, aws_world(
            mp, table=TABLE, keys_table=KEYS_TABLE, bucket=BUCKET, event_bus=BUS, state_machine=STATE_MACHINE,
            env={"BATCHGATE_MAX_DIRECT_UPLOAD_BYTES": str(64 * 1024)}):
        yield
