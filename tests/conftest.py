"""Shared fixtures: the Azure Batch emulator, an SDK client for it, and Azurite."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm

from batchexecutor.emulator import BatchEmulator

pytest_plugins = ["tests.fixtures.azurite"]


@pytest.fixture
def emulator() -> Iterator[BatchEmulator]:
    """A fresh emulator (own account, own temporary directory) for one test."""
    with BatchEmulator(max_processes=4) as emu:
        yield emu


@pytest.fixture
def client(emulator: BatchEmulator) -> Iterator[BatchClient]:
    """The unmodified azure-batch SDK client, pointed at the emulator."""
    batch = BatchClient(emulator.endpoint, emulator.credential)
    yield batch
    batch.close()


@pytest.fixture
def pool(client: BatchClient) -> str:
    """A ready pool of one node with 4 task slots."""
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id="pool", vm_size="standard_d2s_v3", target_dedicated_nodes=1, task_slots_per_node=4
        )
    )
    wait_for(lambda: client.get_pool("pool").allocation_state == "steady")
    return "pool"


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02) -> Any:
    """Poll until ``condition()`` is truthy; fail the test with a clear message otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)


def wait_task_completed(
    client: BatchClient, job_id: str, task_id: str, timeout: float = 30.0
) -> bm.BatchTask:
    return wait_for(
        lambda: (t := client.get_task(job_id, task_id)).state == "completed" and t, timeout
    )
