# Adapted from CPython 3.13.0 Lib/test/test_concurrent_futures/test_shutdown.py
# (ExecutorShutdownTest, and the ThreadPoolShutdownTest / ProcessPoolShutdownTest tests
# whose behaviour is not specific to threads or processes).
# Copyright (c) 2001-2024 Python Software Foundation; All Rights Reserved.
# Licensed under the Python Software Foundation License Version 2 (PSF-2.0).
# Changes: unittest assertions became pytest ones; the tests run against
# AzureBatchExecutor.local() (see util.ExecutorMixin); scripts run with sys.executable
# and check a file the task writes instead of its stdout (a Batch task's stdout goes to
# its task files); joins of ``_threads``/``_processes`` became checks that the threads
# the executor started have ended; see __init__.py for each test's status.
"""``ExecutorShutdownTest``: shutdown with and without waiting, cancel_futures, exit."""

from __future__ import annotations

import threading
import time
import weakref
from pathlib import Path

import pytest

from tests.conftest import wait_for

from .helpers import mark_and_sleep
from .util import TIMEOUT, ExecutorMixin, assert_python_ok, gc_collect


def new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Threads alive now that were not in ``before``."""
    return [thread for thread in threading.enumerate() if thread not in before]


def wait_threads_end(before: set[threading.Thread], *, collect: bool = False) -> None:
    """Wait until every thread started since ``before`` has ended (upstream joins them);
    ``collect``: run the garbage collector meanwhile (what a dropped executor leaves may
    be in reference cycles, e.g. through an exception's traceback)."""
    deadline = time.monotonic() + TIMEOUT
    while left := new_threads(before):
        if time.monotonic() > deadline:
            pytest.fail(f"threads still alive after {TIMEOUT} s: {[t.name for t in left]}")
        if collect:
            gc_collect()
        time.sleep(0.05)


def read_when_written(path: Path) -> str:
    """The text of ``path`` once a task has written it (tasks write atomically)."""
    wait_for(path.exists, timeout=TIMEOUT)
    return path.read_text()


class ExecutorShutdownTest(ExecutorMixin):
    def test_run_after_shutdown(self) -> None:
        self.executor.shutdown()
        with pytest.raises(RuntimeError):
            self.executor.submit(pow, 2, 5)
        # Executor.map submits too.
        with pytest.raises(RuntimeError):
            self.executor.map(pow, [2], [5])

    def test_interpreter_shutdown(self, tmp_path: Path) -> None:
        # Test the atexit hook for shutdown of worker threads and processes. Here: the
        # script exits right after submit(); the queued call is sent at exit, and the
        # task (on the emulator's node, which outlives the script) writes the file.
        apple = tmp_path / "apple.txt"
        _rc, out, err = assert_python_ok(
            """if 1:
            import sys
            from batchexecutor import AzureBatchExecutor
            from tests.executor.conformance.helpers import sleep_and_write
            if __name__ == "__main__":
                t = AzureBatchExecutor.local(5, home=sys.argv[1])
                t.submit(sleep_and_write, 1.0, sys.argv[2], "apple")
            """,
            str(self.home),
            str(apple),
        )
        # Errors in atexit hooks don't change the process exit code, check
        # stderr manually.
        assert not err, err.decode(errors="replace")
        assert out.strip() == b""  # the task's stdout is not the client's
        assert read_when_written(apple) == "apple"

    @pytest.mark.parametrize("used", [False, True], ids=["idle", "after-result"])
    def test_submit_after_interpreter_shutdown(self, used: bool) -> None:
        # Test the atexit hook for shutdown of worker threads and processes.
        # (Upstream runs the ``used`` variant for process pools, the idle one for
        # thread pools.)
        _rc, out, err = assert_python_ok(
            """if 1:
            import atexit
            import sys
            @atexit.register
            def run_last():
                try:
                    t.submit(id, None)
                except RuntimeError:
                    print("runtime-error")
                    raise
            from batchexecutor import AzureBatchExecutor
            if __name__ == "__main__":
                t = AzureBatchExecutor.local(5, home=sys.argv[1])
                if sys.argv[2] == "used":
                    t.submit(id, 42).result(60)
            """,
            str(self.home),
            "used" if used else "idle",
        )
        # Errors in atexit hooks don't change the process exit code, check
        # stderr manually.
        assert "RuntimeError: cannot schedule new futures" in err.decode()
        assert out.strip() == b"runtime-error"

    def test_hang_issue12364(self) -> None:
        # Upstream: 50 calls. Each Batch task is a process; 20 keep the test short.
        fs = [self.executor.submit(time.sleep, 0.1) for _ in range(20)]
        self.executor.shutdown()
        for f in fs:
            # shutdown(wait=True) returns once every pending future is done.
            f.result(timeout=0)

    def test_cancel_futures(self, tmp_path: Path) -> None:
        assert self.worker_count <= 5, "test needs few workers"
        started = tmp_path / "started"
        started.mkdir()
        fs = [self.executor.submit(mark_and_sleep, str(started), i, 0.1) for i in range(50)]
        # A thread pool starts its first calls at once; a Batch task starts a round trip
        # later. Upstream counts on some call having started (see ``others`` below), so
        # wait until one has.
        wait_for(lambda: any(started.iterdir()), timeout=TIMEOUT)
        self.executor.shutdown(cancel_futures=True)
        # We can't guarantee the exact number of cancellations, but we can
        # guarantee that *some* were cancelled. With few workers, many of
        # the submitted futures should have been cancelled.
        cancelled = [fut for fut in fs if fut.cancelled()]
        assert len(cancelled) > 20

        # Ensure the other futures were able to finish.
        # Use "not fut.cancelled()" instead of "fut.done()" to include futures
        # that may have been left in a pending state.
        others = [fut for fut in fs if not fut.cancelled()]
        for fut in others:
            assert fut.done(), f"{fut._state=}"
            assert fut.exception() is None
            # ...and they really ran.
            assert (started / f"{fut.result()}.started").exists()

        # Similar to the number of cancelled futures, we can't guarantee the
        # exact number that completed. But, we can guarantee that at least
        # one finished.
        assert len(others) > 0

    def test_hang_gh83386(self, tmp_path: Path) -> None:
        """shutdown(wait=False) doesn't hang at exit with running futures.

        See https://github.com/python/cpython/issues/83386.
        """
        apple = tmp_path / "apple.txt"
        _rc, out, err = assert_python_ok(
            """if True:
            import sys
            from batchexecutor import AzureBatchExecutor
            from tests.executor.conformance.helpers import sleep_and_write
            if __name__ == "__main__":
                t = AzureBatchExecutor.local(max_workers=3, home=sys.argv[1])
                t.submit(sleep_and_write, 1.0, sys.argv[2], "apple")
                t.shutdown(wait=False)
            """,
            str(self.home),
            str(apple),
        )
        assert not err, err.decode(errors="replace")
        assert out.strip() == b""
        assert read_when_written(apple) == "apple"

    def test_hang_gh94440(self) -> None:
        """shutdown(wait=True) doesn't hang when a future was submitted and
        quickly canceled right before shutdown.

        See https://github.com/python/cpython/issues/94440.
        """
        # Upstream bounds this with signal.alarm(5); pytest-timeout owns SIGALRM here,
        # so the shutdown runs on a thread joined with the same 5 s bound.
        executor = self.executor_type(max_workers=1)
        executor.submit(int).result(TIMEOUT)
        executor.submit(int).cancel()
        shutdown = threading.Thread(target=executor.shutdown, kwargs={"wait": True})
        shutdown.start()
        shutdown.join(5)
        assert not shutdown.is_alive(), "timed out waiting for shutdown"

    # -- from ThreadPoolShutdownTest and ProcessPoolShutdownTest -------------------------

    def test_threads_terminate(self) -> None:
        # Upstream (test_threads_terminate / test_processes_terminate): three calls
        # blocked on a semaphore; len(executor._threads) (or _processes) is 3; after
        # shutdown() each thread (process) is joined. Batch tasks cannot share a
        # semaphore and the executor has no workers of its own: here shutdown() must
        # leave none of the threads the executor started alive.
        before = set(threading.enumerate())
        fs = [self.executor.submit(time.sleep, 0.1) for _ in range(3)]
        self.executor.shutdown()
        assert all(f.done() for f in fs)
        assert new_threads(before) == []

    def test_context_manager_shutdown(self) -> None:
        before = set(threading.enumerate())
        with self.executor_type(max_workers=5) as e:
            executor = e
            assert list(e.map(abs, range(-5, 5), timeout=TIMEOUT)) == [
                5,
                4,
                3,
                2,
                1,
                0,
                1,
                2,
                3,
                4,
            ]

        # Upstream joins e._threads / e._processes.
        assert new_threads(before) == []
        with pytest.raises(RuntimeError):
            executor.submit(pow, 2, 5)

    def test_del_shutdown(self) -> None:
        before = set(threading.enumerate())
        executor = self.executor_type(max_workers=5)
        res = executor.map(abs, range(-5, 5), timeout=TIMEOUT)
        dropped = weakref.ref(executor)
        del executor
        gc_collect()  # For PyPy or other GCs.
        assert dropped() is None

        # Make sure the results were all computed before the
        # executor got shutdown.
        assert list(res) == [abs(v) for v in range(-5, 5)]

        # Make sure that all the executor resources were properly cleaned by
        # the shutdown process (upstream joins the executor's threads/processes).
        del res
        gc_collect()
        wait_threads_end(before, collect=True)

    def test_shutdown_no_wait(self) -> None:
        # Ensure that the executor cleans up the threads when calling
        # shutdown with wait=False
        before = set(threading.enumerate())
        executor = self.executor_type(max_workers=5)
        res = executor.map(abs, range(-5, 5), timeout=TIMEOUT)
        executor.shutdown(wait=False)

        # Make sure the results were all computed before the executor got
        # shutdown.
        assert list(res) == [abs(v) for v in range(-5, 5)]

        # Make sure that all the executor resources were properly cleaned by
        # the shutdown process (upstream joins the executor's threads/processes).
        wait_threads_end(before)

    def test_cancel_futures_wait_false(self, tmp_path: Path) -> None:
        # Upstream: a ThreadPoolExecutor test ("can only be reliably tested for TPE,
        # since PPE often hangs with wait=False"); the promise is the executor's.
        apple = tmp_path / "apple.txt"
        _rc, out, err = assert_python_ok(
            """if True:
            import sys
            from batchexecutor import AzureBatchExecutor
            from tests.executor.conformance.helpers import sleep_and_write
            if __name__ == "__main__":
                t = AzureBatchExecutor.local(home=sys.argv[1])
                t.submit(sleep_and_write, .1, sys.argv[2], "apple")
                t.shutdown(wait=False, cancel_futures=True)
            """,
            str(self.home),
            str(apple),
        )
        # Errors in atexit hooks don't change the process exit code, check
        # stderr manually.
        assert not err, err.decode(errors="replace")
        assert out.strip() == b""
        # gh-116682: the call may have been cancelled before it started: if it ran,
        # it wrote "apple".
        if apple.exists():
            assert apple.read_text() == "apple"

    # -- not upstream ------------------------------------------------------------------

    def test_submit_after_map_then_shutdown(self) -> None:
        # Not in CPython's suite: shutdown(wait=True) must wait for a submit() that
        # follows a map() whose job is over (the poller had nothing left to follow when
        # shutdown() closed it, before the submit's job was created).
        assert list(self.executor.map(abs, [-1], timeout=TIMEOUT)) == [1]
        future = self.executor.submit(pow, 2, 3)
        self.executor.shutdown()
        assert future.result(timeout=0) == 8


class TestLocalShutdown(ExecutorShutdownTest):
    """ExecutorShutdownTest against ``AzureBatchExecutor.local()``."""
