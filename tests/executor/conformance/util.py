# Adapted from CPython 3.13.0 Lib/test/test_concurrent_futures/util.py.
# Copyright (c) 2001-2024 Python Software Foundation; All Rights Reserved.
# Licensed under the Python Software Foundation License Version 2 (PSF-2.0).
# Changes: unittest's BaseTestCase/ExecutorMixin became a pytest mixin in the loky style
# (an autouse fixture builds ``self.executor``, an ``AzureBatchExecutor.local()`` on the
# suite's shared emulator home, and shuts it down after the test); the thread and
# process pool mixins and create_executor_tests() are gone (there is one executor
# type); test.support helpers (gc_collect, assert_python_ok) are re-implemented here.
"""Shared pieces of the conformance suite: pre-made futures and the executor mixin."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
    Future,
)
from pathlib import Path
from typing import Any

import pytest

from batchexecutor import AzureBatchExecutor

#: Generous bound for one result: tasks are processes on a small, shared machine.
TIMEOUT = 60.0
#: test.support.SHORT_TIMEOUT
SHORT_TIMEOUT = 30.0


def create_future(
    state: str = PENDING, exception: BaseException | None = None, result: Any = None
) -> Future[Any]:
    f: Future[Any] = Future()
    f._state = state
    f._exception = exception
    f._result = result
    return f


PENDING_FUTURE = create_future(state=PENDING)
RUNNING_FUTURE = create_future(state=RUNNING)
CANCELLED_FUTURE = create_future(state=CANCELLED)
CANCELLED_AND_NOTIFIED_FUTURE = create_future(state=CANCELLED_AND_NOTIFIED)
EXCEPTION_FUTURE = create_future(state=FINISHED, exception=OSError())
SUCCESSFUL_FUTURE = create_future(state=FINISHED, result=42)


def gc_collect() -> None:
    """test.support.gc_collect()."""
    gc.collect()
    gc.collect()
    gc.collect()


def python_path() -> str:
    """This process's ``sys.path`` as ``PYTHONPATH``, for scripts run with it."""
    entries = [os.getcwd() if entry == "" else entry for entry in sys.path]
    return os.pathsep.join(entry for entry in entries if os.path.exists(entry))


def assert_python_ok(script: str, *args: str, timeout: float = 120.0) -> tuple[int, bytes, bytes]:
    """test.support.script_helper.assert_python_ok('-c', script): run ``script`` with this
    interpreter (and this ``sys.path``), check it exited with 0, return (rc, out, err)."""
    env = {**os.environ, "PYTHONPATH": python_path()}
    process = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", script, *args],
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert process.returncode == 0, (
        f"the script exited with {process.returncode}\n"
        f"stdout:\n{process.stdout.decode(errors='replace')}\n"
        f"stderr:\n{process.stderr.decode(errors='replace')}"
    )
    return process.returncode, process.stdout, process.stderr


class ExecutorMixin:
    """The executor a test runs against, as ``self.executor`` (upstream ExecutorMixin)."""

    worker_count = 5
    executor_kwargs: dict[str, Any] = {}  # read-only, as upstream
    executor: AzureBatchExecutor
    home: Path

    @pytest.fixture(autouse=True)
    def _executor_mixin(self, conformance_home: Path) -> Iterator[None]:
        self.home = conformance_home
        t1 = time.monotonic()
        self.executor = self.executor_type(max_workers=self.worker_count, **self.executor_kwargs)
        yield
        self.executor.shutdown(wait=True)
        dt = time.monotonic() - t1
        assert dt < 300, "synchronization issue: test lasted too long"

    def executor_type(self, max_workers: int | None = None, **kwargs: Any) -> AzureBatchExecutor:
        """``AzureBatchExecutor.local`` on the suite's shared home (one emulator daemon)."""
        return AzureBatchExecutor.local(max_workers, home=self.home, **kwargs)
