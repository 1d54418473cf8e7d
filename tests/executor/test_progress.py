"""The progress bar shown while waiting on a job, drawn from the poller's task counts."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from batchexecutor import AzureBatchExecutor
from batchexecutor._progress import enabled
from tests.executor.dataplane import square

TIMEOUT = 60.0


def test_waiting_on_a_job_draws_its_task_counts(
    make_executor: Callable[..., AzureBatchExecutor], capsys: pytest.CaptureFixture[str]
) -> None:
    executor = make_executor(max_workers=2, progress=True)
    future = executor.map_async(square, range(6), chunksize=2)
    assert future.result(timeout=TIMEOUT) == [x * x for x in range(6)]
    drawn = capsys.readouterr().err
    last = drawn.replace("\r", "\n").strip().splitlines()[-1]
    # 3 chunk tasks and the combine task, all completed; the counts Batch reported.
    assert future.job_id in last
    assert "4/4" in last
    assert "failed=0" in last and "queued=0" in last and "running=0" in last


def test_iterating_map_draws_progress_too(
    make_executor: Callable[..., AzureBatchExecutor], capsys: pytest.CaptureFixture[str]
) -> None:
    executor = make_executor(max_workers=2, progress=True)
    assert list(executor.map(square, range(4), chunksize=2)) == [0, 1, 4, 9]
    assert "task" in capsys.readouterr().err


def test_no_progress_when_disabled(
    make_executor: Callable[..., AzureBatchExecutor], capsys: pytest.CaptureFixture[str]
) -> None:
    executor = make_executor(max_workers=2, progress=False)
    assert executor.map_async(square, range(3)).result(timeout=TIMEOUT) == [0, 1, 4]
    assert capsys.readouterr().err == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_default_is_on_only_for_a_terminal() -> None:
    assert enabled(None, _Terminal()) is True
    assert enabled(None, io.StringIO()) is False
    assert enabled(True, io.StringIO()) is True
    assert enabled(False, _Terminal()) is False
