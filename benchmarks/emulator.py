"""Figures of the local Azure Batch emulator, driven through the unmodified azure-batch SDK.

Every repeat uses a fresh emulator (own temporary directory), so repeats share no state.
The client runs in the emulator's process, as in the project's tests.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
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
TMPFS = "/dev/shm"  # a memory file system, where there is one
TIMEOUT = 600.0


@contextmanager
def _emulator(
    temp_root: str | None = None, **options: Any
) -> Iterator[tuple[BatchEmulator, BatchClient]]:
    """A started emulator and an SDK client; its files under ``temp_root`` if given."""
    saved = tempfile.tempdir
    if temp_root is not None:
        tempfile.tempdir = temp_root  # BatchEmulator makes its directory with mkdtemp()
    try:
        with BatchEmulator(**options) as emulator:
            client = BatchClient(emulator.endpoint, emulator.credential)
            try:
                yield emulator, client
            finally:
                client.close()
    finally:
        tempfile.tempdir = saved


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
        results = client.create_task_collection(job_id, group).result_values or []
        failed = [r for r in results if r.status != "success"]
        if failed:
            raise RuntimeError(f"{len(failed)} tasks were not added: {failed[0]}")
        return len(results)

    _expect(sum(threads.map(add, groups)), sum(len(g.task_values) for g in groups), "added tasks")


def _wait(condition: Callable[[], Any], what: str, interval: float = POLL_INTERVAL) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {TIMEOUT} s")
        time.sleep(interval)
    return value


def _list_ids(client: BatchClient, job_id: str, options: dict[str, Any]) -> list[str]:
    """Every task's ID, page by page through the SDK pager."""
    return [task.id for task in client.list_tasks(job_id, max_results=PAGE_SIZE, **options)]


def _expect(actual: int, expected: int, what: str) -> None:
    """The workload is what we think it is (a check of counts, never of timings)."""
    if actual != expected:
        raise RuntimeError(f"{what}: got {actual}, expected {expected}")


# -- adding and listing tasks -----------------------------------------------------------


@benchmark(
    "emulator.add_and_list",
    figures=(
        "emulator.add_collection_tasks_per_s",
        "emulator.list_tasks_per_s",
        "emulator.list_tasks_filtered_per_s",
        "emulator.list_tasks_selected_per_s",
    ),
)
def add_and_list(settings: Settings) -> list[Figure]:
    """Add tasks by add-collection to a job whose pool has no nodes, then list them back."""
    count = settings.pick(10_000, 2_000)
    repeats = settings.pick(5, 2)
    seconds: dict[str, list[float]] = {"add": [], "list": [], "filtered": [], "selected": []}
    requests: dict[str, int] = {}
    listings: dict[str, dict[str, Any]] = {
        "list": {},
        "filtered": {"filter": "state eq 'active'"},
        "selected": {"filter": "state eq 'active'", "select": ["id", "state"]},
    }
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
            took, _ = timed(partial(_add_all, client, "job", groups, threads))
            seconds["add"].append(took)
            for name, options in listings.items():
                took, ids = timed(partial(_list_ids, client, "job", options))
                _expect(len(ids), count, f"tasks listed ({name})")
                seconds[name].append(took)
            requests = {k: v for k, v in emulator.request_counts.items() if k.startswith("Tasks_")}
        settings.log(
            f"repeat {repeat + 1}/{repeats}: "
            + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in seconds.items())
        )
    pages = -(-count // PAGE_SIZE)
    details = {
        "tasks": count,
        "tasks_per_collection": PER_COLLECTION,
        "submit_threads": SUBMIT_THREADS,
        "page_size": PAGE_SIZE,
        "seconds": seconds,
        "requests_per_repeat": requests,
    }
    listed = f"list_tasks of those {count:,} tasks through the SDK pager, max_results={PAGE_SIZE}"

    def rate(name: str) -> list[float]:
        return [count / s for s in seconds[name]]

    return [
        Figure(
            "emulator.add_collection_tasks_per_s",
            "tasks/s",
            f"{count:,} tasks added in {count // PER_COLLECTION} add-collection calls of "
            f"{PER_COLLECTION}, {SUBMIT_THREADS} calls in flight (SDK, one client), to a job "
            "whose pool has no nodes",
            rate("add"),
            details,
        ),
        Figure(
            "emulator.list_tasks_per_s",
            "tasks/s",
            f"{listed} ({pages} pages), full task objects",
            rate("list"),
            details,
        ),
        Figure(
            "emulator.list_tasks_filtered_per_s",
            "tasks/s",
            f"{listed}, filter=\"state eq 'active'\" (all match), full task objects",
            rate("filtered"),
            details,
        ),
        Figure(
            "emulator.list_tasks_selected_per_s",
            "tasks/s",
            f"{listed}, filter=\"state eq 'active'\", select=[id, state]",
            rate("selected"),
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
        "emulator.task_files_ms",
        "emulator.trivial_tasks_per_s_tmpfs",
        "emulator.trivial_overhead_ratio_tmpfs",
    ),
)
def trivial_tasks(settings: Settings) -> list[Figure]:
    """Run /bin/true tasks to completion, side by side with starting the same processes bare."""
    count = settings.pick(1_000, 150)
    repeats = settings.pick(5, 2)
    parallelism = os.cpu_count() or 1
    tmpfs = TMPFS if os.path.isdir(TMPFS) and os.access(TMPFS, os.W_OK) else None
    runs: dict[str, Callable[[], float]] = {
        "bare": lambda: _bare_processes(count, parallelism, per_process_ms),
        "emulator": lambda: _run_trivial_tasks(count, parallelism, submit_s, requests),
        "files": lambda: _task_files(count),
    }
    if tmpfs is not None:
        runs["tmpfs"] = lambda: _run_trivial_tasks(count, parallelism, [], {}, temp_root=tmpfs)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    per_process_ms: list[float] = []
    submit_s: list[float] = []
    requests: dict[str, int] = {}
    # Warm up every path (imports, page cache of /bin/true) before anything is timed.
    _bare_processes(50, parallelism, [])
    _run_trivial_tasks(50, parallelism, [], {})
    order = list(runs)
    for repeat in range(repeats):
        # Rotate which goes first, so drift in the machine's load hits all alike.
        for name in order[repeat % len(order) :] + order[: repeat % len(order)]:
            seconds[name].append(runs[name]())
        settings.log(
            f"repeat {repeat + 1}/{repeats}: "
            + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in seconds.items())
            + f"; ratio {seconds['emulator'][-1] / seconds['bare'][-1]:.2f}"
        )
    details = {
        "tasks": count,
        "parallelism": parallelism,
        "command": TRIVIAL_COMMAND,
        "poll_interval_s": POLL_INTERVAL,
        "temp_dir": tempfile.gettempdir(),
        "tmpfs": tmpfs,
        "seconds": seconds,
        "emulator_submit_seconds": submit_s,
        "requests_last_repeat": requests,
    }
    workload = (
        f"{count:,} `{TRIVIAL_COMMAND}` tasks, 1 node with {parallelism} slots, "
        f"max_processes={parallelism}; wall time from the first add-collection call until "
        f"taskcounts (polled every {POLL_INTERVAL * 1000:.0f} ms) says all completed"
    )
    bare = (
        f"the same {count:,} `{TRIVIAL_COMMAND}` processes started bare "
        f"(subprocess.run, {parallelism} at a time)"
    )

    def pairs(name: str) -> list[float]:
        """Per side-by-side pair: ``name`` wall / bare wall."""
        return [e / b for e, b in zip(seconds[name], seconds["bare"], strict=True)]

    figures = [
        Figure(
            "emulator.trivial_tasks_per_s",
            "tasks/s",
            workload,
            [count / s for s in seconds["emulator"]],
            details,
        ),
        Figure(
            "emulator.process_start_ms",
            "ms",
            f"{bare}: mean time of one subprocess.run, start to reaped",
            per_process_ms,
            details,
        ),
        Figure(
            "emulator.bare_processes_per_s",
            "processes/s",
            bare,
            [count / s for s in seconds["bare"]],
            details,
        ),
        Figure(
            "emulator.trivial_overhead_ratio",
            "x",
            "emulator wall / bare wall, per side-by-side pair (1 = bounded by process start-up)",
            pairs("emulator"),
            details,
        ),
        Figure(
            "emulator.task_overhead_ms",
            "ms",
            f"(emulator wall - bare wall) x {parallelism} / {count:,}: what a slot spends per "
            "task beyond starting its process",
            [
                (e - b) * parallelism / count * 1000
                for e, b in zip(seconds["emulator"], seconds["bare"], strict=True)
            ],
            details,
        ),
        Figure(
            "emulator.task_files_ms",
            "ms",
            f"creating one task's files as the emulator does (<task>/, wd/, stdout.txt, "
            f"stderr.txt) {count:,} times in a fresh directory under {tempfile.gettempdir()}, "
            "one at a time",
            [s / count * 1000 for s in seconds["files"]],
            details,
        ),
    ]
    if tmpfs is not None:
        figures += [
            Figure(
                "emulator.trivial_tasks_per_s_tmpfs",
                "tasks/s",
                f"as emulator.trivial_tasks_per_s, the emulator's directory on {tmpfs}",
                [count / s for s in seconds["tmpfs"]],
                details,
            ),
            Figure(
                "emulator.trivial_overhead_ratio_tmpfs",
                "x",
                f"as emulator.trivial_overhead_ratio, the emulator's directory on {tmpfs}",
                pairs("tmpfs"),
                details,
            ),
        ]
    return figures


def _bare_processes(count: int, parallelism: int, per_process_ms: list[float]) -> float:
    """Wall seconds for ``count`` processes, ``parallelism`` at a time (mean ms each appended)."""

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
    per_process_ms.append(statistics.fmean(each) * 1000)
    return wall


def _run_trivial_tasks(
    count: int,
    parallelism: int,
    submit_s: list[float],
    requests: dict[str, int],
    temp_root: str | None = None,
) -> float:
    """Wall seconds until ``count`` trivial tasks completed (submit seconds appended)."""
    groups = _task_groups(count, TRIVIAL_COMMAND)
    with (
        _emulator(temp_root, max_processes=parallelism) as (emulator, client),
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
        submit_s.append(submitted)
        requests.clear()
        requests.update(emulator.request_counts)
        return wall


def _task_files(count: int) -> float:
    """Seconds to create ``count`` task directory layouts like the emulator's, one by one."""
    root = Path(tempfile.mkdtemp(prefix="batch-bench-files-"))
    try:
        start = time.perf_counter()
        for i in range(count):
            task_dir = root / "workitems" / "job" / "job-1" / f"task-{i:06d}"
            (task_dir / "wd").mkdir(parents=True)
            with open(task_dir / "stdout.txt", "wb"), open(task_dir / "stderr.txt", "wb"):
                pass
        return time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)
