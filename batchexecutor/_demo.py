"""``python -m batchexecutor demo``: a real Monte-Carlo job on the embedded default.

``AzureBatchExecutor.local()`` starts (or reuses) the local Azure Batch emulator daemon;
``map_async`` submits one Batch job of chunk tasks that each throw random darts, plus
the cloud combine task, which sums the chunks' counts with ``reduce`` so the client
downloads one small object. Everything goes through the azure-batch SDK, as on Azure.

``--azure`` runs the same job on a real Batch account (configured as docs/azure.md says),
on the configured pool or a one-node pool it creates and then deletes.
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

ITERATIONS_PER_ITEM = 50_000


def darts(seed: int, throws: int = ITERATIONS_PER_ITEM) -> tuple[int, int]:
    """``(hits inside the quarter circle, throws)`` for one item."""
    rng = random.Random(seed)
    hits = sum(rng.random() ** 2 + rng.random() ** 2 <= 1.0 for _ in range(throws))
    return hits, throws


def add_pairs(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] + b[0], a[1] + b[1]


#: The pool ``demo --azure`` creates when no pool is configured (and deletes afterwards).
DEMO_POOL = "batchexecutor-demo"
DEMO_VM_SIZE = "Standard_D2s_v5"


def _azure_executor(pool_id: str | None, vm_size: str, keep_pool: bool) -> Any:
    """An executor on the configured Azure account (``BatchConfig.load()``): on
    ``pool_id`` or the configured pool as it is, else on a new one-node pool."""
    from ._config import BatchConfig
    from ._executor import AzureBatchExecutor
    from ._pool import PoolSpec

    config = BatchConfig.load()
    pool_id = pool_id or config.pool_id
    if pool_id:
        return AzureBatchExecutor(config, pool_id, progress=False)
    # The worker needs azure-storage-blob and tenacity on the node; the job preparation task
    # installs the client's batchexecutor and cloudpickle.
    spec = PoolSpec(
        DEMO_POOL, vm_size, task_slots_per_node=2, packages=["azure-storage-blob", "tenacity"]
    )
    print(
        f"creating pool {DEMO_POOL} (1 x {vm_size}, Ubuntu 24.04 with Python 3.12) or "
        "reusing it; its node takes a few minutes to start"
    )
    return AzureBatchExecutor(
        config, pool=spec, progress=False, delete_pool_on_shutdown=not keep_pool
    )


def run_demo(
    tasks: int = 20,
    items_per_task: int = 10,
    *,
    azure: bool = False,
    pool_id: str | None = None,
    vm_size: str = DEMO_VM_SIZE,
    keep_pool: bool = False,
) -> int:
    """The demo on the local emulator daemon, or with ``azure`` on the Azure Batch account
    and storage that ``BatchConfig.load()`` finds (environment or config file)."""
    from ._errors import BatchExecutorError
    from ._executor import AzureBatchExecutor

    if not 1 <= tasks <= 10_000:
        print("demo: --tasks must be between 1 and 10000")
        return 2
    items = tasks * items_per_task
    started = time.monotonic()
    try:
        executor = (
            _azure_executor(pool_id, vm_size, keep_pool)
            if azure
            else AzureBatchExecutor.local(progress=False)
        )
        where = "Azure Batch" if azure else "local emulator daemon"
        with executor:
            job = executor.map_async(
                darts, range(items), chunksize=items_per_task, reduce=add_pairs
            )
            print(
                f"job {job.job_id}: {items:,} items in {tasks} chunk tasks + 1 combine task, "
                f"on {executor.config.batch_endpoint} ({where}, pool {executor.pool_id})"
            )
            hits, throws = job.result(timeout=3600 if azure else 600)
            info = executor.get_job(job.job_id)
            if azure:
                executor.delete_job(job.job_id)
    except (BatchExecutorError, ValueError) as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    counts = info.counts
    print(f"tasks: {counts.succeeded} succeeded, {counts.failed} failed, in {elapsed:.1f} s")
    print(f"result: pi ~= {4 * hits / throws:.5f} from {throws:,} darts")
    if not azure:
        print(
            "(the emulator daemon keeps running; stop it with: "
            "python -m batchexecutor emulator stop)"
        )
    return 0 if not counts.failed else 1


__all__ = ["add_pairs", "darts", "run_demo"]
