"""End to end: a pool made from a ``PoolSpec`` whose start task installs packages, jobs
whose preparation task installs the client's build, and work and job management on it.

One test body, two targets:

* **the local emulator** (the default, run by ``nox -s tests``): an in-process emulator
  and a directory store; the pool's package is a wheel built here and installed with
  ``pip --no-index`` into a virtual environment, so nothing is downloaded;
* **a real Azure Batch account** (``nox -s azure``, which sets ``BATCHEXECUTOR_E2E=azure``):
  the account and storage come from the environment (``BatchConfig.load()``, see
  docs/azure.md). The test creates pool ``bx-e2e-<random>`` with one dedicated node of
  ``BATCHEXECUTOR_E2E_VM_SIZE`` (default ``Standard_D2s_v5``) on Ubuntu 24.04, whose
  ``python3`` is 3.12 (so the session runs Python 3.12), installs a small PyPI package
  on it, and deletes the pool and the jobs at the end. It bills a few minutes of one VM.

Functions of this module travel by value (cloudpickle), as a user's script's do: the
nodes have neither this repository nor the test environment.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from azure.batch import BatchClient

from batchexecutor import AzureBatchExecutor, BatchConfig, JobFuture, PoolSpec
from batchexecutor._batch import delete_job, state_text
from batchexecutor.emulator import BatchEmulator
from tests.executor.test_pool import PROBE, build_wheel

cloudpickle.register_pickle_by_value(sys.modules[__name__])

AZURE = os.environ.get("BATCHEXECUTOR_E2E") == "azure"


@dataclass
class Target:
    """Where the test runs, and what its pool installs."""

    config: BatchConfig
    vm_size: str
    packages: list[str]
    distribution: str  # installed by the packages, checked on the nodes
    version: str
    timeout: float  # for nodes to come up, and for each result
    spec_options: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    if AZURE:
        yield Target(
            config=BatchConfig.load(),
            vm_size=os.environ.get("BATCHEXECUTOR_E2E_VM_SIZE", "Standard_D2s_v5"),
            packages=["azure-storage-blob", "tenacity", "tomli==2.2.1"],
            distribution="tomli",
            version="2.2.1",
            timeout=1800.0,
        )
        return
    wheels = tmp_path / "wheels"
    build_wheel(wheels)
    with BatchEmulator(max_processes=4) as emulator:
        yield Target(
            config=BatchConfig(
                emulator.endpoint,
                batch_account_name=emulator.account_name,
                batch_account_key=emulator.account_key,
                storage_dir=tmp_path / "store",
                poll_interval_min=0.02,
                poll_interval_max=0.2,
                request_deadline=30.0,
            ),
            vm_size="standard_d2s_v3",
            packages=["--no-index", f"--find-links {wheels}", PROBE],
            distribution=PROBE,
            version="1.0",
            timeout=120.0,
            spec_options={"venv": str(tmp_path / "venv")},
        )


def probe(distribution: str, x: int) -> tuple[int, str, str]:
    """On a node: the pool's package, and where batchexecutor comes from."""
    import importlib.metadata

    import batchexecutor

    return x * x, importlib.metadata.version(distribution), batchexecutor.__file__ or ""


def square(x: int) -> int:
    return x * x


def test_a_new_pool_runs_maps_and_submits_and_jobs_are_managed(target: Target) -> None:
    pool_id = f"bx-e2e-{uuid.uuid4().hex[:8]}"
    spec = PoolSpec(
        pool_id,
        target.vm_size,
        task_slots_per_node=2,
        packages=target.packages,
        **target.spec_options,
    )
    jobs: list[str] = []
    try:
        with AzureBatchExecutor(
            target.config,
            pool=spec,
            max_workers=4,
            wait_for_nodes=target.timeout,
            delete_pool_on_shutdown=True,
            node_environment={},  # nothing of this machine's Python reaches the nodes
        ) as ex:
            assert ex.pool_created
            # The pool's package (start task) and the client's build (job preparation).
            results = list(
                ex.map(
                    functools.partial(probe, target.distribution),
                    range(6),
                    chunksize=2,
                    timeout=target.timeout,
                )
            )
            assert [r[0] for r in results] == [x * x for x in range(6)]
            assert {r[1] for r in results} == {target.version}
            assert all("/batchexecutor-site/batchexecutor/" in r[2] for r in results)
            assert ex.submit(pow, 2, 10).result(timeout=target.timeout) == 1024
            jobs.append(ex.submit_job_id)

            # Detach, then reattach from another executor by the serialized handle.
            future = ex.map_async(square, range(20), chunksize=5)
            jobs.append(future.job_id)
            handle = future.to_json()
            with AzureBatchExecutor(target.config, pool_id=pool_id) as other:
                again = JobFuture.from_json(handle, executor=other)
                assert again.result(timeout=target.timeout) == [x * x for x in range(20)]
                info = other.get_job(future.job_id)
                assert (
                    info.counts.failed == 0 and info.counts.succeeded == 4 + 1
                )  # 4 chunks + combine
                assert future.job_id in {job.job_id for job in other.list_jobs()}
                assert other.job_result(future.job_id) == [x * x for x in range(20)]
                assert other.delete_job(future.job_id)
                jobs.remove(future.job_id)
            print(ex.pool_info())
        # delete_pool_on_shutdown: the pool is being deleted, or gone.
        client: BatchClient = target.config.batch_client()
        with client:
            pools = {pool.id: state_text(pool.state) for pool in client.list_pools()}
            assert pools.get(pool_id, "deleting") == "deleting"
    finally:
        cleanup = target.config.batch_client()
        for job_id in jobs:
            with contextlib.suppress(Exception):
                delete_job(cleanup, job_id)
        with contextlib.suppress(Exception):
            cleanup._delete_pool_internal(pool_id)
        cleanup.close()
