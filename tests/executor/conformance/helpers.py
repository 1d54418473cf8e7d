# Adapted from CPython 3.13.0 Lib/test/test_concurrent_futures/executor.py,
# test_wait.py, test_as_completed.py and test_shutdown.py (their module-level task
# functions). Copyright (c) 2001-2024 Python Software Foundation; All Rights Reserved.
# Licensed under the Python Software Foundation License Version 2 (PSF-2.0).
# Changes: functions gathered into one importable module (tasks run in other processes
# and import them by reference); sleep_and_print() became sleep_and_write(), since a
# Batch task's stdout goes to its task files, not the client's stdout; mark_and_sleep()
# added.
"""The module-level functions the conformance suite's Batch tasks run.

Tasks are separate processes started by the local emulator; they import this module
through the ``PYTHONPATH`` that ``AzureBatchExecutor.local()`` passes on (the client's
``sys.path``), so it must stay importable without pytest and without side effects.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def mul(x: Any, y: Any) -> Any:
    return x * y


def capture(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


class MyObject:
    def my_method(self) -> None:
        pass


def make_dummy_object(_: object) -> MyObject:
    return MyObject()


def sleep_and_raise(t: float) -> None:
    time.sleep(t)
    raise Exception("this is an exception")


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so that a reader never sees it half written."""
    target = Path(path)
    partial = target.with_name(target.name + f".{os.getpid()}.partial")
    partial.write_text(text)
    os.replace(partial, target)


def sleep_and_write(t: float, path: str, msg: str) -> None:
    """``sleep_and_print`` of upstream, writing ``msg`` to ``path`` instead of stdout."""
    time.sleep(t)
    write_atomically(path, msg)


def mark_and_sleep(directory: str, number: int, t: float) -> int:
    """Leave ``<directory>/<number>.started`` (the task has started), then sleep."""
    write_atomically(Path(directory) / f"{number}.started", "")
    time.sleep(t)
    return number
