"""The progress bar shown while a caller waits on a job, driven by the poller's counts.

The poller already fetches each job's task counts every tick; :class:`Progress` only
draws them (tqdm, on stderr): completed/total, and running, queued and failed tasks. No
request is made for it. It is shown while someone waits (``result()`` of a whole-job
future, iterating ``map()``), and only when enabled: ``progress=True``, or ``None``
(the default) when stderr is a terminal.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from ._batch import TaskCounts

__all__ = ["Progress", "enabled"]


def enabled(setting: bool | None, stream: IO[str] | None = None) -> bool:
    """Whether to show progress: ``setting``, or for ``None`` whether stderr is a terminal."""
    if setting is not None:
        return setting
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """A job's progress; :meth:`showing` draws it while the caller waits."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._lock = threading.Lock()
        self._bar: Any = None
        self._counts: TaskCounts | None = None

    def update(self, counts: TaskCounts) -> None:
        """The poller's latest counts (called on the poller thread)."""
        with self._lock:
            changed, self._counts = counts != self._counts, counts
            if changed and self._bar is not None:
                self._draw(counts)

    def _draw(self, counts: TaskCounts) -> None:
        bar = self._bar
        bar.total = counts.total
        bar.n = counts.completed
        bar.set_postfix(
            running=counts.running, queued=counts.active, failed=counts.failed, refresh=False
        )
        bar.refresh()

    @contextmanager
    def showing(self, stream: IO[str] | None = None) -> Iterator[None]:
        from tqdm import tqdm

        with self._lock:
            if self._bar is not None:  # someone else is already showing it
                nested = True
            else:
                nested = False
                self._bar = tqdm(
                    total=0,
                    desc=self.job_id,
                    unit="task",
                    file=stream if stream is not None else sys.stderr,
                    leave=True,
                    dynamic_ncols=True,
                )
                if self._counts is not None:
                    self._draw(self._counts)
        try:
            yield
        finally:
            if not nested:
                with self._lock:
                    bar, self._bar = self._bar, None
                    if self._counts is not None:
                        self._draw_final(bar, self._counts)
                    bar.close()

    @staticmethod
    def _draw_final(bar: Any, counts: TaskCounts) -> None:
        bar.total = counts.total
        bar.n = counts.completed
        bar.set_postfix(
            running=counts.running, queued=counts.active, failed=counts.failed, refresh=False
        )
