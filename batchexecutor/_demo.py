"""``python -m batchexecutor demo``: a real Monte-Carlo job on the embedded default.

``AzureBatchExecutor.local()`` starts (or reuses) the local Azure Batch emulator daemon;
``map_async`` submits one Batch job of chunk tasks that each throw random darts, plus
the cloud combine task, which sums the chunks' counts with ``reduce`` so the client
downloads one small object. Everything goes through the azure-batch SDK, as on Azure.
"""

from __future__ import annotations

import random
import time

ITERATIONS_PER_ITEM = 50_000


def darts(seed: int, throws: int = ITERATIONS_PER_ITEM) -> tuple[int, int]:
    """``(hits inside the quarter circle, throws)`` for one item."""
    rng = random.Random(seed)
    hits = sum(rng.random() ** 2 + rng.random() ** 2 <= 1.0 for _ in range(throws))
    return hits, throws


def add_pairs(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] + b[0], a[1] + b[1]


def run_demo(tasks: int = 20, items_per_task: int = 10) -> int:
    from ._executor import AzureBatchExecutor

    if not 1 <= tasks <= 10_000:
        print("demo: --tasks must be between 1 and 10000")
        return 2
    items = tasks * items_per_task
    started = time.monotonic()
    with AzureBatchExecutor.local(progress=False) as executor:
        job = executor.map_async(darts, range(items), chunksize=items_per_task, reduce=add_pairs)
        print(
            f"job {job.job_id}: {items:,} items in {tasks} chunk tasks + 1 combine task, "
            f"on {executor.config.batch_endpoint} (local emulator daemon)"
        )
        hits, throws = job.result(timeout=600)
        info = executor.get_job(job.job_id)
    elapsed = time.monotonic() - started
    counts = info.counts
    print(f"tasks: {counts.succeeded} succeeded, {counts.failed} failed, in {elapsed:.1f} s")
    print(f"result: pi ~= {4 * hits / throws:.5f} from {throws:,} darts")
    print(
        "(the emulator daemon keeps running; stop it with: python -m batchexecutor emulator stop)"
    )
    return 0 if not counts.failed else 1


__all__ = ["add_pairs", "darts", "run_demo"]
