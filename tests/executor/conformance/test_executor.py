# Adapted from CPython 3.13.0 Lib/test/test_concurrent_futures/executor.py (ExecutorTest).
# Copyright (c) 2001-2024 Python Software Foundation; All Rights Reserved.
# Licensed under the Python Software Foundation License Version 2 (PSF-2.0).
# Changes: unittest assertions became pytest ones; the tests run against
# AzureBatchExecutor.local() (see util.ExecutorMixin); result() calls and sleeps are
# sized for Batch tasks that are processes; see __init__.py for each test's status.
"""``ExecutorTest``: submit, map, exceptions, timeouts and references."""

from __future__ import annotations

import threading
import time
import weakref
from concurrent import futures

import pytest

from batchexecutor import AzureBatchExecutor, BatchConfig

from .helpers import MyObject, capture, make_dummy_object, mul
from .util import SHORT_TIMEOUT, TIMEOUT, ExecutorMixin, gc_collect


class ExecutorTest(ExecutorMixin):
    # Executor.shutdown() and context manager usage is tested by
    # ExecutorShutdownTest.
    def test_submit(self) -> None:
        future = self.executor.submit(pow, 2, 8)
        assert future.result(TIMEOUT) == 256

    def test_submit_keyword(self) -> None:
        future = self.executor.submit(mul, 2, y=8)
        assert future.result(TIMEOUT) == 16
        future2 = self.executor.submit(capture, 1, self=2, fn=3)
        assert future2.result(TIMEOUT) == ((1,), {"self": 2, "fn": 3})
        with pytest.raises(TypeError):
            self.executor.submit(fn=capture, arg=1)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            self.executor.submit(arg=1)  # type: ignore[call-arg]

    def test_map(self) -> None:
        assert list(self.executor.map(pow, range(10), range(10), timeout=TIMEOUT)) == list(
            map(pow, range(10), range(10))
        )

        assert list(
            self.executor.map(pow, range(10), range(10), chunksize=3, timeout=TIMEOUT)
        ) == list(map(pow, range(10), range(10)))

    def test_map_exception(self) -> None:
        i = self.executor.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5], timeout=TIMEOUT)
        assert i.__next__() == (0, 1)
        assert i.__next__() == (0, 1)
        with pytest.raises(ZeroDivisionError):
            i.__next__()

    def test_map_timeout(self) -> None:
        # Upstream: time.sleep over [0, 0, 6] with timeout=5. Here the first two items
        # must come back within the timeout and the third cannot.
        results: list[None] = []
        try:
            for i in self.executor.map(time.sleep, [0, 0, 20], timeout=4):
                results.append(i)
        except futures.TimeoutError:
            pass
        else:
            pytest.fail("expected TimeoutError")

        assert results == [None, None]

    def test_shutdown_race_issue12456(self) -> None:
        # Issue #12456: race condition at shutdown where trying to post a
        # sentinel in the call queue blocks (the queue is full while processes
        # have exited).
        self.executor.map(str, [2] * (self.worker_count + 1))
        self.executor.shutdown()

    def test_no_stale_references(self) -> None:
        # Issue #16284: check that the executors don't unnecessarily hang onto
        # references.
        my_object = MyObject()
        my_object_collected = threading.Event()
        my_object_callback = weakref.ref(  # noqa: F841 - kept alive for its callback
            my_object, lambda obj: my_object_collected.set()
        )
        # Deliberately discarding the future.
        self.executor.submit(my_object.my_method)
        del my_object

        collected = my_object_collected.wait(timeout=SHORT_TIMEOUT)
        assert collected, "Stale reference not collected within timeout."

    def test_max_workers_negative(self) -> None:
        for number in (0, -1):
            with pytest.raises(ValueError, match="max_workers must be greater than 0"):
                self.executor_type(max_workers=number)
        # The same promise from the constructor (local() checks before starting
        # anything; the constructor is what Azure users call).
        config = self.executor.config
        assert isinstance(config, BatchConfig)
        for number in (0, -1):
            with pytest.raises(ValueError, match="max_workers must be greater than 0"):
                AzureBatchExecutor(config, self.executor.pool_id, max_workers=number)

    def test_free_reference(self) -> None:
        # Issue #14406: Result iterator should not keep an internal
        # reference to result objects.
        for obj in self.executor.map(make_dummy_object, range(10), timeout=TIMEOUT):
            wr = weakref.ref(obj)
            del obj
            gc_collect()  # For PyPy or other GCs.
            assert wr() is None


class TestLocalExecutor(ExecutorTest):
    """ExecutorTest against ``AzureBatchExecutor.local()``."""
