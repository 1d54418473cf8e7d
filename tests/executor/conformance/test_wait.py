# Adapted from CPython 3.13.0 Lib/test/test_concurrent_futures/test_wait.py (WaitTests).
# Copyright (c) 2001-2024 Python Software Foundation; All Rights Reserved.
# Licensed under the Python Software Foundation License Version 2 (PSF-2.0).
# Changes: unittest assertions became pytest ones; the tests run against
# AzureBatchExecutor.local() (see util.ExecutorMixin); test_pending_calls_race (a
# ThreadPoolExecutor test) is adapted; see __init__.py for each test's status.
"""``WaitTests``: ``concurrent.futures.wait`` over Batch task futures."""

from __future__ import annotations

import time
from concurrent import futures

from .helpers import mul, sleep_and_raise
from .util import (
    CANCELLED_AND_NOTIFIED_FUTURE,
    CANCELLED_FUTURE,
    EXCEPTION_FUTURE,
    SUCCESSFUL_FUTURE,
    TIMEOUT,
    ExecutorMixin,
)


class WaitTests(ExecutorMixin):
    def test_20369(self) -> None:
        # See https://bugs.python.org/issue20369
        future = self.executor.submit(time.sleep, 1.5)
        done, not_done = futures.wait([future, future], return_when=futures.ALL_COMPLETED)
        assert done == {future}
        assert not_done == set()

    def test_first_completed(self) -> None:
        future1 = self.executor.submit(mul, 21, 2)
        future2 = self.executor.submit(time.sleep, 1.5)

        done, not_done = futures.wait(
            [CANCELLED_FUTURE, future1, future2], return_when=futures.FIRST_COMPLETED
        )

        assert done == {future1}
        assert not_done == {CANCELLED_FUTURE, future2}

    def test_first_completed_some_already_completed(self) -> None:
        future1 = self.executor.submit(time.sleep, 1.5)

        finished, pending = futures.wait(
            [CANCELLED_AND_NOTIFIED_FUTURE, SUCCESSFUL_FUTURE, future1],
            return_when=futures.FIRST_COMPLETED,
        )

        assert finished == {CANCELLED_AND_NOTIFIED_FUTURE, SUCCESSFUL_FUTURE}
        assert pending == {future1}

    def test_first_exception(self) -> None:
        future1 = self.executor.submit(mul, 2, 21)
        future2 = self.executor.submit(sleep_and_raise, 1.5)
        future3 = self.executor.submit(time.sleep, 3)

        finished, pending = futures.wait(
            [future1, future2, future3], return_when=futures.FIRST_EXCEPTION
        )

        assert finished == {future1, future2}
        assert pending == {future3}

    def test_first_exception_some_already_complete(self) -> None:
        future1 = self.executor.submit(divmod, 21, 0)
        future2 = self.executor.submit(time.sleep, 1.5)

        finished, pending = futures.wait(
            [
                SUCCESSFUL_FUTURE,
                CANCELLED_FUTURE,
                CANCELLED_AND_NOTIFIED_FUTURE,
                future1,
                future2,
            ],
            return_when=futures.FIRST_EXCEPTION,
        )

        assert finished == {SUCCESSFUL_FUTURE, CANCELLED_AND_NOTIFIED_FUTURE, future1}
        assert pending == {CANCELLED_FUTURE, future2}

    def test_first_exception_one_already_failed(self) -> None:
        future1 = self.executor.submit(time.sleep, 2)

        finished, pending = futures.wait(
            [EXCEPTION_FUTURE, future1], return_when=futures.FIRST_EXCEPTION
        )

        assert finished == {EXCEPTION_FUTURE}
        assert pending == {future1}

    def test_all_completed(self) -> None:
        future1 = self.executor.submit(divmod, 2, 0)
        future2 = self.executor.submit(mul, 2, 21)

        finished, pending = futures.wait(
            [
                SUCCESSFUL_FUTURE,
                CANCELLED_AND_NOTIFIED_FUTURE,
                EXCEPTION_FUTURE,
                future1,
                future2,
            ],
            return_when=futures.ALL_COMPLETED,
        )

        assert finished == {
            SUCCESSFUL_FUTURE,
            CANCELLED_AND_NOTIFIED_FUTURE,
            EXCEPTION_FUTURE,
            future1,
            future2,
        }
        assert pending == set()

    def test_timeout(self) -> None:
        short_timeout = 0.050
        long_timeout = short_timeout * 10

        future = self.executor.submit(time.sleep, long_timeout)

        finished, pending = futures.wait(
            [CANCELLED_AND_NOTIFIED_FUTURE, EXCEPTION_FUTURE, SUCCESSFUL_FUTURE, future],
            timeout=short_timeout,
            return_when=futures.ALL_COMPLETED,
        )

        assert finished == {CANCELLED_AND_NOTIFIED_FUTURE, EXCEPTION_FUTURE, SUCCESSFUL_FUTURE}
        assert pending == {future}

    def test_pending_calls_race(self) -> None:
        # Issue #14406: multi-threaded race condition when waiting on all
        # futures. (Upstream: a ThreadPoolExecutor test; 100 calls blocked on a
        # threading.Event, released together. Batch tasks are processes that cannot
        # share an Event, so here 20 calls complete as fast as the node runs them,
        # settled concurrently by the executor's resolver threads.)
        fs = {self.executor.submit(mul, i, 2) for i in range(20)}
        done, not_done = futures.wait(fs, timeout=TIMEOUT, return_when=futures.ALL_COMPLETED)
        assert done == fs
        assert not_done == set()
        assert sorted(f.result() for f in fs) == [2 * i for i in range(20)]


class TestLocalWait(WaitTests):
    """WaitTests against ``AzureBatchExecutor.local()``."""
