# Adapted from CPython 3.13.0 Lib/test/test_concurrent_futures/test_as_completed.py
# (AsCompletedTests).
# Copyright (c) 2001-2024 Python Software Foundation; All Rights Reserved.
# Licensed under the Python Software Foundation License Version 2 (PSF-2.0).
# Changes: unittest assertions became pytest ones (subTest became a loop); the tests
# run against AzureBatchExecutor.local() (see util.ExecutorMixin); see __init__.py for
# each test's status.
"""``AsCompletedTests``: ``concurrent.futures.as_completed`` over Batch task futures."""

from __future__ import annotations

import itertools
import time
import weakref
from concurrent import futures
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, FINISHED, Future
from typing import Any

import pytest

from .helpers import mul
from .util import (
    CANCELLED_AND_NOTIFIED_FUTURE,
    EXCEPTION_FUTURE,
    PENDING_FUTURE,
    RUNNING_FUTURE,
    SUCCESSFUL_FUTURE,
    TIMEOUT,
    ExecutorMixin,
    create_future,
    gc_collect,
)


class AsCompletedTests(ExecutorMixin):
    def test_no_timeout(self) -> None:
        future1 = self.executor.submit(mul, 2, 21)
        future2 = self.executor.submit(mul, 7, 6)

        completed = set(
            futures.as_completed(
                [
                    CANCELLED_AND_NOTIFIED_FUTURE,
                    EXCEPTION_FUTURE,
                    SUCCESSFUL_FUTURE,
                    future1,
                    future2,
                ],
                timeout=TIMEOUT,
            )
        )
        assert completed == {
            CANCELLED_AND_NOTIFIED_FUTURE,
            EXCEPTION_FUTURE,
            SUCCESSFUL_FUTURE,
            future1,
            future2,
        }

    def test_future_times_out(self) -> None:
        """Test ``futures.as_completed`` timing out before
        completing it's final future."""
        already_completed = {CANCELLED_AND_NOTIFIED_FUTURE, EXCEPTION_FUTURE, SUCCESSFUL_FUTURE}

        # Windows clock resolution is around 15.6 ms
        short_timeout = 0.100
        for timeout in (0, short_timeout):
            completed_futures = set()
            future = self.executor.submit(time.sleep, short_timeout * 10)

            try:
                for f in futures.as_completed(already_completed | {future}, timeout):
                    completed_futures.add(f)
            except futures.TimeoutError:
                pass

            # Check that ``future`` wasn't completed.
            assert completed_futures == already_completed, f"timeout={timeout}"

    def test_duplicate_futures(self) -> None:
        # Issue 20367. Duplicate futures should not raise exceptions or give
        # duplicate responses.
        # Issue #31641: accept arbitrary iterables.
        future1 = self.executor.submit(time.sleep, 2)
        completed = list(futures.as_completed(itertools.repeat(future1, 3), timeout=TIMEOUT))
        assert len(completed) == 1

    def test_free_reference_yielded_future(self) -> None:
        # Issue #14406: Generator should not keep references
        # to finished futures.
        futures_list: list[Future[Any]] = [Future() for _ in range(8)]
        futures_list.append(create_future(state=CANCELLED_AND_NOTIFIED))
        futures_list.append(create_future(state=FINISHED, result=42))

        with pytest.raises(futures.TimeoutError):
            for future in futures.as_completed(futures_list, timeout=0):
                futures_list.remove(future)
                wr = weakref.ref(future)
                del future
                gc_collect()  # For PyPy or other GCs.
                assert wr() is None

        futures_list[0].set_result("test")
        for future in futures.as_completed(futures_list):
            futures_list.remove(future)
            wr = weakref.ref(future)
            del future
            gc_collect()  # For PyPy or other GCs.
            assert wr() is None
            if futures_list:
                futures_list[0].set_result("test")

    def test_correct_timeout_exception_msg(self) -> None:
        futures_list = [
            CANCELLED_AND_NOTIFIED_FUTURE,
            PENDING_FUTURE,
            RUNNING_FUTURE,
            SUCCESSFUL_FUTURE,
        ]

        with pytest.raises(futures.TimeoutError) as cm:
            list(futures.as_completed(futures_list, timeout=0))

        assert str(cm.value) == "2 (of 4) futures unfinished"


class TestLocalAsCompleted(AsCompletedTests):
    """AsCompletedTests against ``AzureBatchExecutor.local()``."""
