"""Test support for the data plane: workloads, and a stand-in for the executor's side.

The functions here are pickled by reference, so a worker process imports this module
(its working directory is the repository); tests that need by-value pickling use
closures instead. ``stage_map`` writes what the executor will write for a ``map``, and
``read_records`` reads what a node wrote.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from batchexecutor import _names
from batchexecutor._serialize import (
    Record,
    call_payload,
    dumps,
    iter_records,
    load_record,
    write_records,
)
from batchexecutor._storage import Store

# --------------------------------------------------------------------------- workloads


def square(x: int) -> int:
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"three is right out (got {x})")
    return x


def exit_on_three(x: int) -> int:
    if x == 3:
        sys.stdout.flush()
        os._exit(3)
    return x


def lock_on_three(x: int) -> object:
    return threading.Lock() if x == 3 else x


class HoldsALock(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def raise_unpicklable(x: int) -> int:
    raise HoldsALock(f"locked {x}")


def call_sys_exit(x: int) -> int:
    sys.exit(x)


def add(a: Any, b: Any) -> Any:
    return a + b


def count_failures(acc: Any, item: Any) -> Any:
    """A reduce for "return" mode: (sum of results, number of exceptions)."""
    total, failures = acc if isinstance(acc, tuple) else _as_pair(acc)
    more, extra = _as_pair(item)
    return total + more, failures + extra


def _as_pair(value: Any) -> tuple[int, int]:
    return (0, 1) if isinstance(value, BaseException) else (value, 0)


def reduce_fails(acc: Any, item: Any) -> Any:
    if item == 4:
        raise ArithmeticError("cannot add four")
    return acc + item


# --------------------------------------------------------------------------- executor stand-in


def stage_map(
    store: Store,
    job_id: str,
    fn: Callable[..., Any],
    items: Sequence[tuple[Any, ...]],
    chunksize: int,
    *,
    reducer: Callable[[Any, Any], Any] | None = None,
) -> int:
    """Store a map job's function, chunk inputs and reducer; returns the chunk count."""
    store.put(_names.function(job_id), dumps(fn, what="the function"))
    if reducer is not None:
        store.put(_names.reducer(job_id), dumps(reducer, what="the reduce function"))
    chunks = 0
    for chunk, start in enumerate(range(0, len(items), chunksize)):
        indices = range(start, min(start + chunksize, len(items)))
        records = [
            Record(i, "ok", call_payload(None, items[i], {}, what=f"item {i}")) for i in indices
        ]
        with store.writer(_names.chunk_input(job_id, chunk)) as file:
            write_records(file, records, info={"kind": "input", "job": job_id, "chunk": chunk})
        chunks = chunk + 1
    return chunks


@dataclass
class Stream:
    info: dict[str, Any]
    values: list[tuple[int, str, Any]]  # (item, status, result or exception)
    summary: dict[str, Any] | None

    @property
    def results(self) -> list[Any]:
        return [value for _, _, value in self.values]


def read_records(store: Store, name: str) -> Stream:
    what = _names.describe(name)
    with store.open(name) as file:
        reader = iter_records(file, what=what)
        values = [(record.item, record.status, load_record(record, what=what)) for record in reader]
    return Stream(reader.info, values, reader.summary)
