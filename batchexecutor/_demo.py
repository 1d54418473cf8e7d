"""``python -m batchexecutor demo``: a real Monte-Carlo job on the embedded emulator.

It starts a local Azure Batch emulator, creates a pool and a job of chunk tasks that
each throw random darts, plus a combine task that depends on every chunk (by task ID
range) and merges their counts into an estimate of pi. Everything goes through the
azure-batch SDK, exactly as it would against Azure.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone

_CHUNK = (
    "import json, os, random\n"
    "rng = random.Random(int(os.environ['AZ_BATCH_TASK_ID']))\n"
    "n = int(os.environ['DARTS'])\n"
    "hits = sum(rng.random() ** 2 + rng.random() ** 2 <= 1.0 for _ in range(n))\n"
    "out = os.path.join(os.environ['AZ_BATCH_NODE_SHARED_DIR'], os.environ['AZ_BATCH_JOB_ID'])\n"
    "os.makedirs(out, exist_ok=True)\n"
    "tmp = os.path.join(out, os.environ['AZ_BATCH_TASK_ID'] + '.tmp')\n"
    "json.dump({'hits': hits, 'darts': n}, open(tmp, 'w'))\n"
    "os.replace(tmp, tmp[:-4] + '.json')\n"
)
_COMBINE = (
    "import glob, json, os\n"
    "folder = os.path.join(os.environ['AZ_BATCH_NODE_SHARED_DIR'], os.environ['AZ_BATCH_JOB_ID'])\n"
    "parts = [json.load(open(p)) for p in glob.glob(os.path.join(folder, '*.json'))]\n"
    "hits = sum(p['hits'] for p in parts); darts = sum(p['darts'] for p in parts)\n"
    "print(json.dumps({'chunks': len(parts), 'darts': darts, 'pi': 4 * hits / darts}))\n"
)


def run_demo(tasks: int = 20, darts_per_task: int = 200_000) -> int:
    from azure.batch import BatchClient
    from azure.batch import models as bm

    from .emulator import BatchEmulator

    if not 1 <= tasks <= 10_000:
        print("demo: --tasks must be between 1 and 10000")
        return 2
    job_id = "demo-" + datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    with BatchEmulator() as emulator:
        client = BatchClient(emulator.endpoint, emulator.credential)
        slots = os.cpu_count() or 1
        client.create_pool(
            bm.BatchPoolCreateOptions(
                id="demo-pool",
                vm_size="standard_d2s_v3",
                target_dedicated_nodes=1,
                task_slots_per_node=slots,
            )
        )
        client.create_job(
            bm.BatchJobCreateOptions(
                id=job_id,
                pool_info=bm.BatchPoolInfo(pool_id="demo-pool"),
                uses_task_dependencies=True,
                common_environment_settings=[
                    bm.EnvironmentSetting(name="DARTS", value=str(darts_per_task))
                ],
            )
        )
        chunks = [
            bm.BatchTaskCreateOptions(id=str(i), command_line=f"python3 -c {_quote(_CHUNK)}")
            for i in range(tasks)
        ]
        combine = bm.BatchTaskCreateOptions(
            id="combine",
            command_line=f"python3 -c {_quote(_COMBINE)}",
            depends_on=bm.BatchTaskDependencies(
                task_id_ranges=[bm.BatchTaskIdRange(start=0, end=tasks - 1)]
            ),
        )
        started = time.monotonic()
        for first in range(0, tasks, 100):
            client.create_task_collection(
                job_id, bm.BatchTaskGroup(task_values=chunks[first : first + 100])
            )
        client.create_task(job_id, combine)
        client.update_job(job_id, bm.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
        print(f"job {job_id}: {tasks} chunk tasks + 1 combine task on {emulator.endpoint}")
        while client.get_job(job_id).state != "completed":
            time.sleep(0.1)
        counts = client.get_job_task_counts(job_id).task_counts
        result = client.get_task(job_id, "combine").execution_info
        output = b"".join(client.download_task_file(job_id, "combine", "stdout.txt")).decode()
        client.close()
    elapsed = time.monotonic() - started
    print(f"tasks: {counts.succeeded} succeeded, {counts.failed} failed, in {elapsed:.1f} s")
    if result is None or result.exit_code != 0 or counts.failed:
        print("demo: the job failed")
        return 1
    estimate = json.loads(output)
    print(
        f"result: pi ~= {estimate['pi']:.5f} from {estimate['darts']:,} darts "
        f"in {estimate['chunks']} chunks"
    )
    return 0


def _quote(code: str) -> str:
    import shlex

    return shlex.quote(code)
