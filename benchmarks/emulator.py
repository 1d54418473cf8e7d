"""Figures of the local Azure Batch emulator, driven through the unmodified azure-batch SDK.

Every repeat uses a fresh emulator (own temporary directory), so repeats do not share state.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

from azure.batch import BatchClient
from azure.batch import models as bm

from batchexecutor.emulator import BatchEmulator

from ._registry import Figure, Settings, benchmark, timed

PER_COLLECTION = 100  # Batch's maximum tasks per add-collection call
SUBMIT_THREADS = 4  # add-collection calls in flight at once
PAGE_SIZE = 1000  # Batch's maximum maxresults
POLL_INTERVAL = 0.02  # task counts polling while tasks run
TRIVIAL_COMMAND = "/bin/true"
TIMEOUT = 600.0


@contextmanager
def _emulator(**options: Any) -> Iterator[tuple[BatchEmulator, BatchClient]]:
    with BatchEmulator(**options) as emulator:
        client = BatchClient(emulator.endpoint, emulator.credential)
        try:
            yield emulator, client
        finally:
            client.close()


def _task_groups(count: int, command: str) -> list[bm.BatchTaskGroup]:
    """``count`` tasks in collections of 100, built before any timing starts."""
    tasks = [
        bm.BatchTaskCreateOptions(id=f"task-{i:06d}", command_line=command) for i in range(count)
    ]
    return [
        bm.BatchTaskGroup(task_values=tasks[i : i + PER_COLLECTION])
        for i in range(0, count, PER_COLLECTION)
    ]


def _add_all(
    client: BatchClient, job_id: str, groups: list[bm.BatchTaskGroup], threads: ThreadPoolExecutor
) -> None:
    """Add the collections, ``SUBMIT_THREADS`` calls at a time; every task must be added."""

    def add(group: bm.BatchTaskGroup) -> int:
        result = client.create_task_collection(job_id, group)
        failed = [r for r in result.result_values or [] if r.status != "success"]
        if failed:
            raise RuntimeError(f"{len(failed)} tasks were not added: {failed[0]}")
        return len(result.result_values or [])

    added = sum(threads.map(add, groups))
    expected = sum(len(g.task_values) for g in groups)
    if added != expected:
        raise RuntimeError(f"added {added} tasks, expected {expected}")


def _wait(condition: Callable[[], Any], what: str, interval: float = POLL_INTERVAL) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {TIMEOUT} s")
        time.sleep(interval)
    return value


# -- adding and listing tasks -----------------------------------------------------------


@benchmark(
    "emulator.add_and_list",
    figures=(
        "emulator.add_collection_tasks_per_s",
        "emulator.list_tasks_per_s",
        "emulator.list_tasks_filtered_per_s",
    ),
)
def add_and_list(settings: Settings) -> list[Figure]:
    """Add tasks by add-collection to a job whose pool has no nodes, then list them back."""
    count = settings.pick(10_000, 2_000)
    repeats = settings.pick(5, 3)
    add_s: list[float] = []
    list_s: list[float] = []
    filtered_s: list[float] = []
    requests: dict[str, int] = {}
    for repeat in range(repeats):
        groups = _task_groups(count, TRIVIAL_COMMAND)
        with _emulator() as (emulator, client), ThreadPoolExecutor(SUBMIT_THREADS) as threads:
            client.create_pool(
                bm.BatchPoolCreateOptions(
                    id="empty", vm_size="standard_d2s_v3", target_dedicated_nodes=0
                )
            )
            client.create_job(
                bm.BatchJobCreateOptions(id="job", pool_info=bm.BatchPoolInfo(pool_id="empty"))
            )
            seconds, _ = timed(partial(_add_all, client, "job", groups, threads))
            add_s.append(seconds)

            seconds, listed = timed(
                lambda: [t.id for t in client.list_tasks("job", max_results=PAGE_SIZE)]
            )
            _expect(len(listed), count, "listed tasks")
            list_s.append(seconds)

            seconds, listed = timed(
                lambda: [
                    t.id
                    for t in client.list_tasks(
                        "job", filter="state eq 'active'", max_results=PAGE_SIZE
                    )
                ]
            )
            _expect(len(listed), count, "listed active tasks")
            filtered_s.append(seconds)
            requests = {k: v for k, v in emulator.request_counts.items() if k.startswith("Tasks_")}
        settings.log(
            f"repeat {repeat + 1}/{repeats}: add {add_s[-1]:.2f} s, "
            f"list {list_s[-1]:.2f} s, filtered list {filtered_s[-1]:.2f} s"
        )
    pages = -(-count // PAGE_SIZE)
    details = {
        "tasks": count,
        "tasks_per_collection": PER_COLLECTION,
        "submit_threads": SUBMIT_THREADS,
        "page_size": PAGE_SIZE,
        "seconds": {"add": add_s, "list": list_s, "list_filtered": filtered_s},
        "requests_per_repeat": requests,
    }
    return [
        Figure(
            "emulator.add_collection_tasks_per_s",
            "tasks/s",
            f"{count:,} tasks added in {count // PER_COLLECTION} add-collection calls of "
            f"{PER_COLLECTION}, {SUBMIT_THREADS} calls in flight (SDK, one client), to a job "
            "whose pool has no nodes",
            [count / s for s in add_s],
            details,
        ),
        Figure(
            "emulator.list_tasks_per_s",
            "tasks/s",
            f"list_tasks of those {count:,} tasks through the SDK pager, "
            f"max_results={PAGE_SIZE} ({pages} pages), full task objects",
            [count / s for s in list_s],
            details,
        ),
        Figure(
            "emulator.list_tasks_filtered_per_s",
            "tasks/s",
            f"as above with filter=\"state eq 'active'\" (all {count:,} match)",
            [count / s for s in filtered_s],
            details,
        ),
    ]


# -- running trivial tasks vs starting the same processes bare ---------------------------


@benchmark(
    "emulator.trivial_tasks",
    figures=(
        "emulator.trivial_tasks_per_s",
        "emulator.process_start_ms",
        "emulator.bare_processes_per_s",
        "emulator.trivial_overhead_ratio",
        "emulator.task_overhead_ms",
    ),
)
def trivial_tasks(settings: Settings) -> list[Figure]:
    """Run /bin/true tasks to completion, side by side with starting the same processes bare."""
    count = settings.pick(1_000, 200)
    repeats = settings.pick(5, 3)
    parallelism = os.cpu_count() or 1
    emulator_s: list[float] = []
    submit_s: list[float] = []
    bare_s: list[float] = []
    start_ms: list[float] = []
    ratios: list[float] = []
    requests: dict[str, int] = {}
    # Warm up both paths (imports, page cache of /bin/true) before anything is timed.
    _bare_processes(min(count, 50), parallelism)
    _run_trivial_tasks(min(count, 50), parallelism)
    for repeat in range(repeats):
        # Alternate which goes first, so drift in the machine's load hits both alike.
        if repeat % 2 == 0:
            bare, per_process = _bare_processes(count, parallelism)
            wall, submit, requests = _run_trivial_tasks(count, parallelism)
        else:
            wall, submit, requests = _run_trivial_tasks(count, parallelism)
            bare, per_process = _bare_processes(count, parallelism)
        emulator_s.append(wall)
        submit_s.append(submit)
        bare_s.append(bare)
        start_ms.append(per_process * 1000)
        ratios.append(wall / bare)
        settings.log(
            f"repeat {repeat + 1}/{repeats}: emulator {wall:.2f} s (submit "
            f"{submit:.2f} s), bare processes {bare:.2f} s, ratio {wall / bare:.2f}"
        )
    details = {
        "tasks": count,
        "parallelism": parallelism,
        "command": TRIVIAL_COMMAND,
        "poll_interval_s": POLL_INTERVAL,
        "seconds": {"emulator": emulator_s, "emulator_submit": submit_s, "bare": bare_s},
        "requests_last_repeat": requests,
    }
    workload = (
        f"{count:,} `{TRIVIAL_COMMAND}` tasks, 1 node with {parallelism} slots, "
        f"max_processes={parallelism}; wall time from the first add-collection call "
        f"until taskcounts (polled every {POLL_INTERVAL * 1000:.0f} ms) says all "
        "completed"
    )
    bare_workload = (
        f"the same {count:,} `{TRIVIAL_COMMAND}` processes started bare "
        f"(subprocess.run, {parallelism} at a time), in the same run"
    )
    return [
        Figure(
            "emulator.trivial_tasks_per_s",
            "tasks/s",
            workload,
            [count / s for s in emulator_s],
            details,
        ),
        Figure(
            "emulator.process_start_ms",
            "ms",
            bare_workload + ": mean time of one subprocess.run (start to reaped)",
            start_ms,
            details,
        ),
        Figure(
            "emulator.bare_processes_per_s",
            "processes/s",
            bare_workload,
            [count / s for s in bare_s],
            details,
        ),
        Figure(
            "emulator.trivial_overhead_ratio",
            "x",
            "emulator wall / bare wall, per side-by-side pair (1.0 = bounded by process start-up)",
            ratios,
            details,
        ),
        Figure(
            "emulator.task_overhead_ms",
            "ms",
            f"(emulator wall - bare wall) x {parallelism} / {count:,}: time a slot spends "
            "per task beyond starting its process",
            [(e - b) * parallelism / count * 1000 for e, b in zip(emulator_s, bare_s, strict=True)],
            details,
        ),
    ]


def _bare_processes(count: int, parallelism: int) -> tuple[float, float]:
    """Wall seconds for ``count`` processes, ``parallelism`` at a time; mean seconds each."""

    def run(_: int) -> float:
        start = time.perf_counter()
        subprocess.run(
            [TRIVIAL_COMMAND],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        return time.perf_counter() - start

    with ThreadPoolExecutor(parallelism) as threads:
        wall, each = timed(lambda: list(threads.map(run, range(count))))
    return wall, statistics.fmean(each)


def _run_trivial_tasks(count: int, parallelism: int) -> tuple[float, float, dict[str, int]]:
    """Wall seconds until ``count`` trivial tasks completed; seconds to submit them."""
    groups = _task_groups(count, TRIVIAL_COMMAND)
    with (
        _emulator(max_processes=parallelism) as (emulator, client),
        ThreadPoolExecutor(SUBMIT_THREADS) as threads,
    ):
        client.create_pool(
            bm.BatchPoolCreateOptions(
                id="pool",
                vm_size="standard_d2s_v3",
                target_dedicated_nodes=1,
                task_slots_per_node=parallelism,
            )
        )
        _wait(
            lambda: any(n.state == "idle" for n in client.list_nodes("pool")),
            "node ready",
            interval=0.05,
        )
        client.create_job(
            bm.BatchJobCreateOptions(id="job", pool_info=bm.BatchPoolInfo(pool_id="pool"))
        )

        def all_done() -> bool:
            counts = client.get_job_task_counts("job").task_counts
            if counts.failed:
                raise RuntimeError(f"{counts.failed} trivial tasks failed")
            return bool(counts.completed == count)

        start = time.perf_counter()
        _add_all(client, "job", groups, threads)
        submitted = time.perf_counter() - start
        _wait(all_done, f"{count} trivial tasks completing")
        wall = time.perf_counter() - start
        return wall, submitted, emulator.request_counts


def _expect(actual: int, expected: int, what: str) -> None:
    if actual != expected:
        raise RuntimeError(f"{what}: got {actual}, expected {expected}")
