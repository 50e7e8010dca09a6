"""Fixtures for the batches unit tests."""
from __future__ import annotations

import pytest
from batch_fakes import MemoryBatches, MemoryFiles, MemoryWorkflow


@pytest.fixture
def files():
    return MemoryFiles()


@pytest.fixture
def batches():
    return MemoryBatches()


@pytest.fixture
def workflow():
    return MemoryWorkflow()
