"""From a task's end to its future resolving: ``latency.completion_to_resolution_ms``.

A task's end is Batch's ``executionInfo.endTime`` as the emulator records it (read back
through the SDK after the run); the future's resolution is the wall-clock time in its
``add_done_callback``. Both clocks are this machine's. Between them: the poller's next
tick (task counts, then the list of completed tasks), a resolver thread reading the
outcome object, and ``set_result``.

* idle: one ``submit()`` at a time, the next only after the previous resolved and the
  poller has backed off to its longest interval (nothing else running);
* busy: a burst of ``submit()`` calls on two slots, so tasks complete continuously and
  the poller stays at its shortest interval.

Each task is a real Python worker (~0.2 s here); the executor uses the local emulator's
interval bounds (20 ms to 0.1 s). Against Azure (1 s to 15 s) latency scales with them.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, wait
from typing import Any

from . import _tasks
from ._registry import Figure, Settings, benchmark
from ._stack import POLL_MAX, POLL_MIN, Stack, percentile

#: Long enough for the poller to reach its longest interval (x1.5 a tick from 20 ms to 0.1 s).
BACK_OFF = 0.3


def _run(idle: int, busy: int) -> dict[str, list[float]]:
    """Latencies (ms) of ``idle`` lone tasks and of a burst of ``busy`` tasks."""
    with Stack("dir", max_processes=2) as stack:
        pool = stack.pool("run", nodes=1, slots=2)
        executor = stack.executor(pool, max_workers=2)
        resolved: dict[str, float] = {}
        lock = threading.Lock()

        def stamp(future: Future[Any]) -> None:
            now = time.time()
            with lock:
                resolved[future.task_id] = now  # type: ignore[attr-defined]

        def submit(i: int) -> Future[Any]:
            future = executor.submit(_tasks.noop, i)
            future.add_done_callback(stamp)
            return future

        submit(-1).result(timeout=120)  # warm-up: the job exists, the worker is cached
        phases: dict[str, list[str]] = {"idle": [], "busy": []}
        for i in range(idle):
            time.sleep(BACK_OFF)  # the poller backs off to its longest interval
            future = submit(i)
            future.result(timeout=120)
            phases["idle"].append(future.task_id)  # type: ignore[attr-defined]
        time.sleep(BACK_OFF)
        burst = [submit(i) for i in range(busy)]
        wait(burst, timeout=600)
        phases["busy"] = [f.task_id for f in burst]  # type: ignore[attr-defined]
        ends = {
            task.id: task.execution_info.end_time.timestamp()
            for task in stack.admin.list_tasks(
                executor.submit_job_id, select=["id", "executionInfo"]
            )
            if task.execution_info is not None and task.execution_info.end_time is not None
        }
        with lock:
            return {
                phase: [(resolved[t] - ends[t]) * 1000 for t in ids]
                for phase, ids in phases.items()
            }


@benchmark(
    "latency.resolution",
    figures=(
        "latency.completion_to_resolution_ms",
        "latency.completion_to_resolution_busy_p95_ms",
        "latency.completion_to_resolution_idle_p50_ms",
        "latency.completion_to_resolution_idle_p95_ms",
    ),
)
def resolution(settings: Settings) -> list[Figure]:
    """Task end (emulator's endTime) to future resolved (done callback), busy and idle."""
    idle, busy = settings.pick(12, 3), settings.pick(60, 12)
    repeats = settings.pick(3, 1)
    runs = [_run(idle, busy) for _ in range(repeats)]
    pooled = {phase: [v for run in runs for v in run[phase]] for phase in ("idle", "busy")}
    stats = {
        phase: {
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "min": min(values),
            "max": max(values),
            "n": len(values),
        }
        for phase, values in pooled.items()
    }
    settings.log(
        "; ".join(f"{p}: p50 {s['p50']:.0f} ms, p95 {s['p95']:.0f} ms" for p, s in stats.items())
    )
    details = {"stats": stats, "latencies_ms": pooled, "poll_interval_s": [POLL_MIN, POLL_MAX]}
    busy_load = (
        f"{busy} submit() calls in a burst of real tasks on 2 slots ({repeats} run"
        f"{'s' if repeats > 1 else ''}), poll interval {POLL_MIN}-{POLL_MAX} s"
    )
    idle_load = (
        f"{idle} lone submit() calls, each after the previous resolved and the poller backed "
        f"off ({repeats} run{'s' if repeats > 1 else ''})"
    )
    note = (
        "bounded by the poll interval: a completion waits for the next tick (the shortest "
        "interval while tasks complete, the longest once the poller has backed off), then one "
        "task-counts request, one list page and one outcome read; on Azure the interval is "
        "1-15 s, so an idle executor may take up to 15 s to see a lone completion"
    )
    return [
        Figure(
            "latency.completion_to_resolution_ms",
            "ms",
            f"p50 (median of every task's latency), busy: {busy_load}",
            pooled["busy"],
            details,
            notes=note,
        ),
        Figure(
            "latency.completion_to_resolution_busy_p95_ms",
            "ms",
            f"p95, busy: {busy_load}",
            [percentile(run["busy"], 95) for run in runs],
            details,
            notes=note,
        ),
        Figure(
            "latency.completion_to_resolution_idle_p50_ms",
            "ms",
            f"p50, idle: {idle_load}",
            pooled["idle"],
            details,
            notes=note,
        ),
        Figure(
            "latency.completion_to_resolution_idle_p95_ms",
            "ms",
            f"p95, idle: {idle_load}",
            [percentile(run["idle"], 95) for run in runs],
            details,
            notes=note,
        ),
    ]
