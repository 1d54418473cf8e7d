"""The poller: one thread per executor that watches all of its jobs.

::

    Batch service ──► Poller thread ─── per tick, per watched job ───────────────────────
                        1. task counts (one request)
                        2. if counts moved (or every few ticks, as Batch's counts lag):
                           tasks completed since the cursor ($filter + $select, paged)
                        3. watch.on_completed(new tasks)  → the executor resolves futures
                                                            (outcome reads run elsewhere)
                      interval: min while tasks complete, x1.5 per idle tick up to max,
                      back to min when work is added (wake()).

A :class:`Watch` is whatever the executor wants to follow (its ``submit`` job, each
``map`` job). The poller never sends one request per task: a tick costs one counts
request per job, plus one list request per page of *new* completions.

Counts and lists may disagree (Batch computes counts with a delay; a reactivated task
leaves the completed set): when the counts report more completed tasks than the watch
has seen for two list rounds in a row, the cursor is reset and the job rescanned once
(duplicates are dropped by the watch).

When the counts have not moved for a few ticks while tasks are queued, one more request
asks for the job's state: a job terminated by someone keeps its never-run tasks active
for ever, and its watch must learn that it ended (``on_ended``); for a job with a job
preparation task, one more asks whether that failed, leaving the tasks unable to run
anywhere (:func:`batchexecutor._nodeenv.preparation_failure`: the job is terminated and
its watch lost with the reason). A job that disappears
(deleted by someone) ends its watch with the service's error; a
job the poller cannot reach for ``failures_allowed`` ticks in a row (each request
already retried up to its deadline) ends with the last error, so no future waits
forever on a service that is gone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from ._batch import (
    CompletedTask,
    CompletionCursor,
    TaskCounts,
    completed_tasks_since,
    job_state,
    task_counts,
    terminate_job,
)
from ._nodeenv import preparation_failure
from ._retry import describe

if TYPE_CHECKING:
    from azure.batch import BatchClient

__all__ = ["Poller", "Watch"]

log = logging.getLogger("batchexecutor")

_BACKOFF = 1.5
_LIST_EVERY = 4  # list even when the counts did not move, every this many ticks
_RESCAN_AFTER = 2  # list rounds with counts ahead of what was seen, before a full rescan
_STATE_EVERY = 5  # ticks with unmoved counts and queued tasks before asking the job's state


class Watch:
    """A job followed by the poller. Subclasses resolve futures from completed tasks.

    ``on_completed`` and ``on_counts`` run on the poller thread and must not block on
    the network: they hand slow work (reading outcomes) to another thread.
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.cursor = CompletionCursor()
        self.seen: set[str] = set()  # IDs of tasks seen completed
        self.counts: TaskCounts | None = None
        self._ticks_since_list = 0
        self._lagging_lists = 0
        self._failures = 0
        self._still = 0  # ticks since the counts last moved
        self.prepared = False  # the job has a job preparation task (it may fail)

    def on_completed(self, tasks: Sequence[CompletedTask]) -> None:
        """New completions (each task once per completion)."""

    def on_counts(self, counts: TaskCounts) -> None:
        """The job's task counts of this tick."""

    def on_lost(self, error: BaseException) -> None:
        """The job cannot be followed any more (deleted, or the service unreachable)."""

    def on_ended(self, reason: str | None) -> None:
        """The job ended (e.g. terminated) with tasks that will now never run."""

    @property
    def idle(self) -> bool:
        """True while nothing is waiting on the job: no request is made for it."""
        return False

    @property
    def finished(self) -> bool:
        """True once the watch needs no more ticks."""
        return False


class Poller:
    """The thread that ticks every :class:`Watch`; see the module docstring."""

    def __init__(
        self,
        client: BatchClient,
        *,
        interval_min: float,
        interval_max: float,
        deadline: float,
        failures_allowed: int = 3,
        name: str = "batchexecutor-poller",
    ) -> None:
        self._client = client
        self._min = interval_min
        self._max = interval_max
        self._deadline = deadline
        self._failures_allowed = failures_allowed
        self._watches: list[Watch] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False  # end once no watch is left
        self._stopped = False  # end now
        self._name = name
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self._ended = False  # the thread ended (closing, no watch left)
        self.ticks = 0
        self.requests = 0

    def watch(self, watch: Watch) -> None:
        """Follow ``watch`` from the next tick on (which comes at once)."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("the poller has stopped")
            self._watches.append(watch)
            if self._ended:  # closed with no watch left, and now one more: a new thread
                self._ended = False
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif not self._started:
                self._started = True
                self._thread.start()
        self.wake()

    def unwatch(self, watch: Watch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)

    def wake(self) -> None:
        """Tick now, at the shortest interval: work was just added."""
        self._wake.set()

    def close(self, *, wait: bool = False) -> None:
        """End the thread once every watch has finished; ``wait`` for that."""
        with self._lock:
            self._closing = True
        self.wake()
        if wait:
            self.join()

    def stop(self) -> None:
        """End the thread after the current tick, watches or not."""
        with self._lock:
            self._stopped = True
            self._closing = True
        self.wake()

    def join(self, timeout: float | None = None) -> None:
        if self._started and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        interval = self._min
        while True:
            self._wake.clear()  # before looking: a wake() from now on is not lost
            with self._lock:
                self._watches = [w for w in self._watches if not w.finished]
                watches = list(self._watches)
                if self._stopped or (self._closing and not watches):
                    self._ended = True
                    return
            active = False
            for watch in watches:
                if watch.idle:
                    continue
                try:
                    active |= self._tick(watch)
                except Exception as error:  # a bug must not kill every future's hope
                    log.exception("batchexecutor poller: job %s", watch.job_id)
                    self._lose(watch, error)
            self.ticks += 1
            busy = any(not watch.idle for watch in watches)
            interval = self._min if active else min(interval * _BACKOFF, self._max)
            with self._lock:
                closing = self._closing
            if closing and any(watch.finished for watch in watches):
                continue  # the tick finished a watch of a closing poller: look again now
            # Closing, never sleep for good: a watch may finish without a tick or wake().
            if self._wake.wait(interval if busy or closing else None):
                interval = self._min

    def _lose(self, watch: Watch, error: BaseException) -> None:
        self.unwatch(watch)
        try:
            watch.on_lost(error)
        except Exception:
            log.exception("batchexecutor poller: job %s", watch.job_id)

    def _tick(self, watch: Watch) -> bool:
        """One tick of ``watch``; True if something completed."""
        try:
            counts = task_counts(self._client, watch.job_id, deadline=self._deadline)
            self.requests += 1
            watch.on_counts(counts)
            moved = watch.counts is None or counts != watch.counts
            # Only new completions are worth a list request; tasks being added are not.
            completions = counts.completed != (watch.counts.completed if watch.counts else 0)
            watch.counts = counts
            watch._ticks_since_list += 1
            behind = counts.completed > len(watch.seen)
            watch._still = 0 if moved else watch._still + 1
            if watch._still >= _STATE_EVERY and counts.active:
                # Queued tasks and nothing moving: a terminated job leaves its tasks that
                # never ran active for ever, and only the job's state tells.
                watch._still = 0
                state, reason = job_state(self._client, watch.job_id, deadline=self._deadline)
                self.requests += 1
                if state == "completed":
                    watch.on_ended(reason)
                    return False
                if watch.prepared and self._unpreparable(watch):
                    return False
            if not (completions or (behind and watch._ticks_since_list >= _LIST_EVERY)):
                watch._failures = 0
                return False
            watch._ticks_since_list = 0
            found = completed_tasks_since(
                self._client, watch.job_id, watch.cursor, deadline=self._deadline
            )
            self.requests += found.pages
            watch._failures = 0
        except ResourceNotFoundError as error:
            self._lose(watch, error)
            return False
        except HttpResponseError as error:
            if 400 <= (error.status_code or 0) < 500 and error.status_code != 429:
                self._lose(watch, error)  # not transient: it will not get better
                return False
            return self._failed(watch, error)
        except Exception as error:
            return self._failed(watch, error)
        watch.cursor = found.cursor
        watch.seen.update(task.id for task in found.tasks)
        if found.tasks:
            watch._lagging_lists = 0
            watch.on_completed(found.tasks)
        elif counts.completed > len(watch.seen):
            watch._lagging_lists += 1
            if watch._lagging_lists >= _RESCAN_AFTER:  # the list missed something: rescan
                watch._lagging_lists = 0
                watch.cursor = CompletionCursor()
        return bool(found.tasks)

    def _unpreparable(self, watch: Watch) -> bool:
        """Whether the job's preparation task failed so that its tasks cannot run: then
        the job is terminated (its tasks would wait for ever, and keep an autoscaled
        pool up) and the watch lost with the reason."""
        failure = preparation_failure(self._client, watch.job_id, deadline=self._deadline)
        self.requests += 1
        if failure is None:
            return False
        try:
            terminate_job(self._client, watch.job_id, "NodeEnvironment", deadline=self._deadline)
        except Exception as error:  # the futures must learn why all the same
            log.warning("batchexecutor: job %s left active: %s", watch.job_id, describe(error))
        self._lose(watch, failure)
        return True

    def _failed(self, watch: Watch, error: BaseException) -> bool:
        watch._failures += 1
        log.warning(
            "batchexecutor poller: job %s: %s (%d of %d)",
            watch.job_id,
            describe(error),
            watch._failures,
            self._failures_allowed,
        )
        if watch._failures >= self._failures_allowed:
            self._lose(watch, error)
        return False
