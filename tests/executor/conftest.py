"""Executor fixtures on both stacks: the emulator with a local directory store, and the
emulator with Azurite (real azure-storage-blob).

``stack`` is parametrised (``"dir"``, ``"azurite"``): a test that takes ``executor`` or
``make_executor`` runs once per stack. The emulator and its pool are shared by the
session (each executor has its own jobs); executors are shut down after each test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm

from batchexecutor import AzureBatchExecutor, BatchConfig
from batchexecutor._context import local_python_path
from batchexecutor.emulator import BatchEmulator
from tests.conftest import wait_for
from tests.fixtures.azurite import Azurite

POOL = "pool"
SLOTS = 16


@pytest.fixture(scope="session")
def batch_service() -> Iterator[BatchEmulator]:
    """One emulator for the executor tests, with a ready pool ``pool`` of 16 slots."""
    with BatchEmulator(max_processes=8) as emulator:
        client = BatchClient(emulator.endpoint, emulator.credential)
        client.create_pool(
            bm.BatchPoolCreateOptions(
                id=POOL,
                vm_size="standard_d8s_v3",
                target_dedicated_nodes=1,
                task_slots_per_node=SLOTS,
            )
        )
        wait_for(lambda: client.get_pool(POOL).allocation_state == "steady")
        client.close()
        yield emulator


@pytest.fixture
def batch_client(batch_service: BatchEmulator) -> Iterator[BatchClient]:
    """The plain azure-batch client on the session emulator (for what tests check on Batch)."""
    client = BatchClient(batch_service.endpoint, batch_service.credential)
    yield client
    client.close()


@pytest.fixture(params=["dir", "azurite"])
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def executor_config(
    stack: str, batch_service: BatchEmulator, tmp_path: Path, request: pytest.FixtureRequest
) -> BatchConfig:
    """A configuration for the shared emulator, with storage on ``stack``."""
    base: dict[str, Any] = {
        "batch_account_name": batch_service.account_name,
        "batch_account_key": batch_service.account_key,
        "pool_id": POOL,
        "poll_interval_min": 0.02,
        "poll_interval_max": 0.1,
        "request_deadline": 30.0,
    }
    if stack == "dir":
        return BatchConfig(batch_service.endpoint, storage_dir=tmp_path / "store", **base)
    azurite: Azurite = request.getfixturevalue("azurite")
    return BatchConfig(
        batch_service.endpoint,
        storage_connection_string=azurite.connection_string,
        storage_container=f"bx-{uuid.uuid4().hex[:12]}",
        **base,
    )


@pytest.fixture
def make_executor(
    executor_config: BatchConfig, stack: str
) -> Iterator[Callable[..., AzureBatchExecutor]]:
    """A factory of executors on this test's stack; each is shut down after the test.

    Nodes get the test process's ``sys.path``, so functions of test modules (pickled by
    reference) import on the node as they do in ``AzureBatchExecutor.local()``. On the
    Azurite stack, as on Azure, each job also installs the client's build on its nodes
    (``install_client``); on the directory stack, as in local mode, it does not.
    """
    made: list[AzureBatchExecutor] = []

    def make(**kwargs: Any) -> AzureBatchExecutor:
        kwargs.setdefault("node_environment", {"PYTHONPATH": local_python_path()})
        kwargs.setdefault("install_client", stack == "azurite")
        config = kwargs.pop("config", executor_config)
        executor = AzureBatchExecutor(config, **kwargs)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def executor(make_executor: Callable[..., AzureBatchExecutor]) -> AzureBatchExecutor:
    """An executor with max_workers=4 on this test's stack."""
    return make_executor(max_workers=4)
