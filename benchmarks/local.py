"""Local mode against process pools on this machine: ``local.wall_s`` and ratios.

``AzureBatchExecutor.local(W)`` (the emulator daemon in its own process, storage in a
directory; a fresh home, so the daemon is started for this benchmark and stopped after
it) runs ``map`` side by side with ``concurrent.futures.ProcessPoolExecutor``, loky's
reusable executor and a ``dask.distributed.LocalCluster`` (W worker processes of one
thread), all with the same W workers, on the same items:

* ``work_10ms``: 10 ms of CPU per item; ``noop``: nothing;
* chunked: ``chunksize = ceil(n / (4 W))`` (``multiprocessing.Pool``'s default; dask has
  no chunksize, so it maps a function over the same chunks); unchunked: chunksize 1.

Every executor is created and warmed up (its workers started) before anything is timed;
a timing is one ``list(executor.map(...))``. Executors take turns, the order rotated
each repeat; ratios are taken per side-by-side repeat.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from . import _tasks
from ._registry import Figure, Settings, benchmark

Runner = Callable[[Callable[[Any], Any], list[int], int], list[Any]]


def _executor_runner(executor: Executor) -> Runner:
    def run(fn: Callable[[Any], Any], items: list[int], chunksize: int) -> list[Any]:
        return list(executor.map(fn, items, chunksize=chunksize))

    return run


@contextlib.contextmanager
def _batchexecutor(workers: int) -> Iterator[tuple[Runner, dict[str, Any]]]:
    from batchexecutor import AzureBatchExecutor
    from batchexecutor._daemon import stop_daemon

    home = Path(tempfile.mkdtemp(prefix="bench-local-"))
    start = time.perf_counter()
    try:
        executor = AzureBatchExecutor.local(workers, home=home)
        try:
            list(executor.map(_tasks.noop, range(2 * workers)))
            info = {"start_and_warm_up_s": time.perf_counter() - start, "home": str(home)}
            yield _executor_runner(executor), info
        finally:
            executor.shutdown(wait=True)
    finally:
        stop_daemon(home)
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def _processpool(workers: int) -> Iterator[tuple[Runner, dict[str, Any]]]:
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as executor:
        list(executor.map(_tasks.noop, range(4 * workers)))
        yield _executor_runner(executor), {"start_and_warm_up_s": time.perf_counter() - start}


@contextlib.contextmanager
def _loky(workers: int) -> Iterator[tuple[Runner, dict[str, Any]]]:
    from loky import get_reusable_executor  # type: ignore[import-untyped,unused-ignore]

    start = time.perf_counter()
    executor = get_reusable_executor(max_workers=workers, timeout=600)
    try:
        list(executor.map(_tasks.noop, range(4 * workers)))
        yield _executor_runner(executor), {"start_and_warm_up_s": time.perf_counter() - start}
    finally:
        executor.shutdown(wait=True, kill_workers=True)


@contextlib.contextmanager
def _dask(workers: int) -> Iterator[tuple[Runner, dict[str, Any]]]:
    import logging

    from dask.distributed import Client, LocalCluster

    # A worker's last heartbeat may race the scheduler's shutdown: nothing worth a traceback.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    start = time.perf_counter()
    with (
        LocalCluster(  # type: ignore[no-untyped-call,unused-ignore]
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call,unused-ignore]
    ):
        client.gather(client.map(_tasks.noop, range(4 * workers), pure=False))

        def run(fn: Callable[[Any], Any], items: list[int], chunksize: int) -> list[Any]:
            if chunksize == 1:
                return list(client.gather(client.map(fn, items, pure=False)))
            chunks = [items[i : i + chunksize] for i in range(0, len(items), chunksize)]
            done = client.gather(client.map(_tasks.run_chunk, [fn] * len(chunks), chunks))
            return [value for chunk in done for value in chunk]

        yield run, {"start_and_warm_up_s": time.perf_counter() - start}


EXECUTORS = {
    "batchexecutor": _batchexecutor,
    "processpool": _processpool,
    "loky": _loky,
    "dask": _dask,
}
WORKLOADS: dict[str, Callable[[Any], Any]] = {"work_10ms": _tasks.work_10ms, "noop": _tasks.noop}


@benchmark(
    "local.vs_pools",
    figures=(
        "local.wall_s",
        "local.ratio_vs_processpool",
        "local.ratio_vs_loky",
        "local.ratio_vs_dask",
        "local.wall_s_unchunked",
        "local.ratio_vs_processpool_unchunked",
        "local.ratio_vs_loky_unchunked",
        "local.ratio_vs_dask_unchunked",
        "local.noop_wall_s",
        "local.noop_ratio_vs_processpool",
        "local.noop_wall_s_unchunked",
        "local.noop_ratio_vs_processpool_unchunked",
        "local.processpool_wall_s",
        "local.loky_wall_s",
        "local.dask_wall_s",
    ),
)
def vs_pools(settings: Settings) -> list[Figure]:
    """AzureBatchExecutor.local() vs ProcessPoolExecutor, loky and dask, same workers."""
    workers = os.cpu_count() or 1
    sizes = {
        "chunked": settings.pick(2_000, 80),
        "unchunked": settings.pick(2_000, 8),
    }
    # A full unchunked run is 2,000 worker processes: minutes each, so one repeat.
    repeats = {"work_10ms.chunked": settings.pick(3, 2), "noop.chunked": settings.pick(3, 1)}
    cases = [(w, mode) for w in WORKLOADS for mode in sizes]
    seconds: dict[str, dict[str, list[float]]] = {
        f"{w}.{m}": {name: [] for name in EXECUTORS} for w, m in cases
    }
    infos: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        runners: dict[str, Runner] = {}
        for name, make in EXECUTORS.items():
            runners[name], infos[name] = stack.enter_context(make(workers))
        names = list(EXECUTORS)
        for workload, mode in cases:
            count = sizes[mode]
            items = list(range(count))
            chunksize = math.ceil(count / (4 * workers)) if mode == "chunked" else 1
            key = f"{workload}.{mode}"
            for repeat in range(repeats.get(key, 1)):
                for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                    start = time.perf_counter()
                    got = runners[name](WORKLOADS[workload], items, chunksize)
                    seconds[key][name].append(time.perf_counter() - start)
                    if got != items:
                        raise RuntimeError(f"{name} returned wrong results for {key}")
                settings.log(
                    f"{key} ({count} items, chunksize {chunksize}) repeat {repeat + 1}: "
                    + ", ".join(f"{n} {v[-1]:.2f} s" for n, v in seconds[key].items())
                )

    def ratio(key: str, other: str) -> list[float]:
        mine = seconds[key]["batchexecutor"]
        return [a / b for a, b in zip(mine, seconds[key][other], strict=True)]

    details = {
        "workers": workers,
        "sizes": sizes,
        "chunksize": {
            m: (math.ceil(n / (4 * workers)) if m == "chunked" else 1) for m, n in sizes.items()
        },
        "repeats": repeats,
        "seconds": seconds,
        "executors": infos,
    }

    def load(workload: str, mode: str) -> str:
        count = sizes[mode]
        chunk = math.ceil(count / (4 * workers)) if mode == "chunked" else 1
        what = "10 ms of CPU each" if workload == "work_10ms" else "no-op"
        return f"map of {count:,} items ({what}), chunksize {chunk}, {workers} workers"

    bx = (
        "AzureBatchExecutor.local() (emulator daemon, directory store): wall time of "
        "list(map(...)), warm executor"
    )
    versus = "its wall / the other's, per side-by-side repeat (same items, same workers)"
    overhead = (
        "every task of local mode is a new Python process (`python3 -m batchexecutor.worker`, "
        "~0.15-0.2 s of CPU here: interpreter start, imports, reading the input, writing the "
        "outcome) where a pool reuses its workers; chunked, that cost is paid once per chunk "
        "(4 per worker plus the combine task), unchunked once per item"
    )
    figures = [
        Figure(
            "local.wall_s",
            "s",
            f"{bx}; {load('work_10ms', 'chunked')}",
            seconds["work_10ms.chunked"]["batchexecutor"],
            details,
            notes=overhead,
        ),
        Figure(
            "local.ratio_vs_processpool",
            "x",
            f"{versus}: ProcessPoolExecutor; {load('work_10ms', 'chunked')}",
            ratio("work_10ms.chunked", "processpool"),
            details,
            aim=("<=", 1.5),
            notes=overhead,
        ),
        Figure(
            "local.ratio_vs_loky",
            "x",
            f"{versus}: loky; {load('work_10ms', 'chunked')}",
            ratio("work_10ms.chunked", "loky"),
            details,
            notes=overhead,
        ),
        Figure(
            "local.ratio_vs_dask",
            "x",
            f"{versus}: dask.distributed LocalCluster; {load('work_10ms', 'chunked')}",
            ratio("work_10ms.chunked", "dask"),
            details,
            notes=overhead,
        ),
        Figure(
            "local.wall_s_unchunked",
            "s",
            f"{bx}; {load('work_10ms', 'unchunked')}",
            seconds["work_10ms.unchunked"]["batchexecutor"],
            details,
            notes=overhead,
        ),
        Figure(
            "local.ratio_vs_processpool_unchunked",
            "x",
            f"{versus}: ProcessPoolExecutor; {load('work_10ms', 'unchunked')}",
            ratio("work_10ms.unchunked", "processpool"),
            details,
            notes=overhead,
        ),
        Figure(
            "local.ratio_vs_loky_unchunked",
            "x",
            f"{versus}: loky; {load('work_10ms', 'unchunked')}",
            ratio("work_10ms.unchunked", "loky"),
            details,
            notes=overhead,
        ),
        Figure(
            "local.ratio_vs_dask_unchunked",
            "x",
            f"{versus}: dask; {load('work_10ms', 'unchunked')}",
            ratio("work_10ms.unchunked", "dask"),
            details,
            notes=overhead,
        ),
        Figure(
            "local.noop_wall_s",
            "s",
            f"{bx}; {load('noop', 'chunked')}",
            seconds["noop.chunked"]["batchexecutor"],
            details,
            notes=overhead,
        ),
        Figure(
            "local.noop_ratio_vs_processpool",
            "x",
            f"{versus}: ProcessPoolExecutor; {load('noop', 'chunked')}",
            ratio("noop.chunked", "processpool"),
            details,
            notes=overhead,
        ),
        Figure(
            "local.noop_wall_s_unchunked",
            "s",
            f"{bx}; {load('noop', 'unchunked')}",
            seconds["noop.unchunked"]["batchexecutor"],
            details,
            notes=overhead,
        ),
        Figure(
            "local.noop_ratio_vs_processpool_unchunked",
            "x",
            f"{versus}: ProcessPoolExecutor; {load('noop', 'unchunked')}",
            ratio("noop.unchunked", "processpool"),
            details,
            notes=overhead,
        ),
        Figure(
            "local.processpool_wall_s",
            "s",
            f"ProcessPoolExecutor; {load('work_10ms', 'chunked')}",
            seconds["work_10ms.chunked"]["processpool"],
            details,
        ),
        Figure(
            "local.loky_wall_s",
            "s",
            f"loky; {load('work_10ms', 'chunked')}",
            seconds["work_10ms.chunked"]["loky"],
            details,
        ),
        Figure(
            "local.dask_wall_s",
            "s",
            f"dask LocalCluster; {load('work_10ms', 'chunked')}",
            seconds["work_10ms.chunked"]["dask"],
            details,
        ),
    ]
    return figures
