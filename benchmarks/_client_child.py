"""The client side of ``benchmarks.client``, run in a process of its own.

``python -m benchmarks._client_child '<json>'`` connects an executor to an emulator that
runs in the parent (whose memory is not this process's), warms up, submits the workload
into a pool without nodes (every task stays pending), lets the poller tick for a while,
and prints one JSON line: resident memory before and after, the peak (``VmHWM``, reset
after the warm-up), and, with
``tracemalloc``, the Python heap's growth.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
import tracemalloc
from typing import Any


def _rss() -> int:
    """Current resident set size, bytes."""
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm() -> int:
    """Peak resident set size of this process's memory since the last reset, bytes.

    ``VmHWM``, not ``ru_maxrss``: Linux keeps ``ru_maxrss`` across ``exec``, so a child
    forked from a big parent (the benchmark, with its emulator) starts at the parent's
    size; ``VmHWM`` belongs to the new address space, and writing ``5`` to
    ``/proc/self/clear_refs`` resets it to the current RSS.
    """
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")
    except OSError:
        return False
    return True


def _maxrss() -> int:
    """``ru_maxrss`` in bytes (KiB on Linux), for comparison."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    args: dict[str, Any] = json.loads(sys.argv[1])
    from batchexecutor import AzureBatchExecutor, BatchConfig
    from batchexecutor._context import local_python_path

    from . import _tasks

    config = BatchConfig(
        args["endpoint"],
        batch_account_name=args["account"],
        batch_account_key=args["key"],
        storage_dir=args["storage_dir"],
        poll_interval_min=0.02,
        poll_interval_max=0.1,
        request_deadline=120.0,
    )
    executor = AzureBatchExecutor(
        config, args["pool"], None, node_environment={"PYTHONPATH": local_python_path()}
    )
    count, kind = int(args["items"]), args["kind"]
    # Warm up the same path (imports, caches, thread pools) with a small workload.
    warm = executor.map_async(_tasks.noop, range(200))
    warm_futures = [executor.submit(_tasks.noop, i) for i in range(200)]
    time.sleep(0.5)
    gc.collect()
    reset = _reset_hwm()
    started_at = _rss()
    peak_before = _hwm()
    if args.get("tracemalloc"):
        tracemalloc.start()
    start = time.perf_counter()
    if kind == "map":
        held: Any = executor.map_async(_tasks.noop, range(count))
    else:
        held = [executor.submit(_tasks.noop, i) for i in range(count)]
        executor._submits.close()  # wait until the sender has added every task
        executor._submits.join()
    submitted = time.perf_counter() - start
    time.sleep(float(args.get("settle", 1.0)))  # the poller ticks over the pending job
    traced = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else None
    result = {
        "kind": kind,
        "items": count,
        "rss_baseline": started_at,
        "peak_before": peak_before,
        "rss_after": _rss(),
        "peak": _hwm(),
        "hwm_reset": reset,
        "ru_maxrss": _maxrss(),
        "submit_seconds": submitted,
        "poller_ticks": executor._context.poller.ticks,
        "traced_current": traced[0] if traced else None,
        "traced_peak": traced[1] if traced else None,
        "held": type(held).__name__,
        "warm": [type(warm).__name__, len(warm_futures)],
    }
    print(json.dumps(result), flush=True)
    os._exit(0)  # no shutdown: the pending jobs die with the parent's emulator


if __name__ == "__main__":
    main()
