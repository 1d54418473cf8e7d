"""Long-running jobs, step by step: doAzureParallel's guide in Python, in local mode.

    python docs/long_running_job.py

It uses the local Azure Batch emulator daemon of ``$BATCHEXECUTOR_HOME`` (default: a
per-user cache directory), which is started on first use and keeps running afterwards
(``batchexecutor emulator stop`` stops it). On Azure, only the first line of each part
changes: ``AzureBatchExecutor(BatchConfig.from_env())`` instead of ``.local()``.
See docs/long-running-jobs.md.
"""

from __future__ import annotations

import random

from batchexecutor import AzureBatchExecutor, format_jobs


def simulate(seed: int) -> float:
    """One Monte-Carlo estimate (a stand-in for hours of work)."""
    rng = random.Random(seed)
    return round(sum(rng.random() for _ in range(200_000)) / 200_000, 4)


def main() -> None:
    # 1. Start the job asynchronously, then detach from it.
    executor = AzureBatchExecutor.local(progress=False)
    future = executor.map_async(simulate, range(12), chunksize=3)
    job_id = future.job_id
    print(f"job ID: {job_id}")
    executor.shutdown(wait=False)  # this process may exit now: the job runs on

    # Later, from this or any other process: an executor on the same account and storage.
    executor = AzureBatchExecutor.local(progress=False)

    # 2. Get the job's status: its metadata and task counts.
    print(executor.get_job(job_id))
    print()

    # 3. List the jobs (here: active and completed ones).
    print(format_jobs(executor.list_jobs(state=["active", "completed"])))
    print()

    # While it runs: the results finished so far, (item index, value) pairs.
    done = dict(executor.partial_results(job_id))
    print(f"finished so far: {len(done)} of 12 items")

    # 4. Retrieve the result: wait for it, or read it once the job has completed.
    results = executor.attach(job_id).result()
    print(results)
    assert executor.job_result(job_id) == results
    print(executor.get_job(job_id).counts)

    # 5. Clean up: delete the Batch job and everything it stored.
    executor.delete_job(job_id)
    print(f"deleted {job_id}")
    executor.shutdown()


if __name__ == "__main__":
    main()
