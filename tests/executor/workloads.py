"""Functions the executor tests run as Batch tasks.

They are pickled by reference: a task imports this module through the ``PYTHONPATH``
the ``make_executor`` fixture gives its nodes. Keep them quick; the slow ones wait on a
:class:`Gate` (a directory the test controls) rather than on a clock, with a generous
timeout so an abandoned task ends by itself.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from batchexecutor import _names
from batchexecutor._storage import open_store
from batchexecutor.worker import STORE_ENV

#: How long a gated task waits for its gate before giving up (and failing).
GATE_TIMEOUT = 90.0


class Gate:
    """A directory shared by a test and its tasks: tasks mark that they started, then
    wait until the test opens the gate."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def open(self) -> None:
        (self.path / "open").touch()

    def started(self, key: object) -> bool:
        return (self.path / f"started-{key}").exists()


def gated(gate_dir: str, x: Any) -> Any:
    """Mark ``x`` started, wait for the gate, return ``x``."""
    gate = Path(gate_dir)
    (gate / f"started-{x}").touch()
    deadline = time.monotonic() + GATE_TIMEOUT
    while not (gate / "open").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate_dir} never opened")
        time.sleep(0.02)
    return x


def gated_square(gate_dir: str, x: int) -> int:
    """:func:`gated` for item ``x`` of a map, then ``x * x``."""
    value: int = gated(gate_dir, x)
    return value * value


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def identity(x: Any) -> Any:
    return x


def add3(a: int, b: int, c: int) -> int:
    return a + b + c


def describe_call(a: Any, b: Any = "b-default", *, c: Any = "c-default") -> tuple[Any, Any, Any]:
    return a, b, c


def explode_on_negative(x: int) -> int:
    """Raises for negative items, from a frame named after this function."""
    if x < 0:
        raise KeyError(f"negative item {x}")
    return x * 10


def die_with_stderr(code: int, message: str) -> None:
    """Print ``message`` to stderr and kill the process: no outcome is stored."""
    print(message, file=sys.stderr, flush=True)
    os._exit(code)


def die_on_three(x: int) -> int:
    if x == 3:
        print(f"dying on item {x}", file=sys.stderr, flush=True)
        os._exit(3)
    return x


def return_lock() -> Any:
    return threading.Lock()


def return_generator(n: int) -> Iterator[int]:
    return (i for i in range(n))


def mangle_first_chunk(x: int, how: str) -> int:
    """Item 0 returns 0; any other item mangles the stored outcome of chunk 0 of this
    task's own job (``how``: ``"truncate"`` or ``"garbage"``) and returns ``x``.

    With ``max_workers=1`` and ``combine=False`` chunk 0 has completed before, and the
    client reads its outcome only once the whole job is done: it then reads an outcome
    that storage mangled.
    """
    if x == 0:
        return 0
    store = open_store(os.environ[STORE_ENV])
    name = _names.chunk_outcome(os.environ["AZ_BATCH_JOB_ID"], 0)
    data = store.get(name)
    store.put(name, data[: len(data) // 2] if how == "truncate" else b"garbage" * 10)
    return x
