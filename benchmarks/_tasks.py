"""Functions that benchmark tasks run (imported on the emulator's nodes and in process pools).

Kept free of heavy imports: a task process imports this module (and ``benchmarks``'s
``__init__``) before it calls anything.
"""

from __future__ import annotations

import time
from typing import Any


def noop(x: Any) -> Any:
    """Nothing: the task's cost is the executor's own."""
    return x


def work_10ms(x: Any) -> Any:
    """10 ms of CPU (a busy loop, so it is work on any executor, not a sleep)."""
    end = time.perf_counter() + 0.010
    while time.perf_counter() < end:
        pass
    return x


def run_chunk(fn: Any, chunk: list[Any]) -> list[Any]:
    """``[fn(x) for x in chunk]``: chunking for executors without a chunksize (dask)."""
    return [fn(x) for x in chunk]
