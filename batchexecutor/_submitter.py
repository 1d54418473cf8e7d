"""The executor's ``submit()`` path: one Batch job per executor, calls sent in batches.

::

    submit(fn, *args)  ─ pickled in the caller (errors raised there) ─► queue
                                                                         │
    sender thread ◄──────────────────────────────────────────────────────┘
       takes everything queued (up to a pack's worth), then
       1. creates the executor's job, once (its first batch)
       2. writes one input pack (each call's record stream back to back: one blob write)
       3. adds one task per call, add-collection requests of <= 100 tasks
       4. wakes the poller
    poller ── completed tasks ─► on_completed ─► resolver threads read each outcome
                                                 and settle its future

While one batch is on its way the next accumulates, so a burst of calls costs about one
blob write and one request per hundred calls. Task IDs are the calls' sequence numbers:
deterministic, so a retried add is idempotent.

A call made through ``executor.options(resource_files=..., output_files=...)`` has its
files bound to the job, checked (a task too large for any request is refused) and its
local files stored, all in the caller; its task carries them (:mod:`batchexecutor._files`).
A call that returned but whose output files Batch could not upload fails with
:class:`~batchexecutor.OutputFilesError`, its value kept in the error.

A call still in the queue is cancelled on the spot; a task added but not yet running is
terminated on Batch; a running one cannot be cancelled.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _names
from ._batch import (
    MAX_TASKS_PER_REQUEST,
    AddTasksError,
    CompletedTask,
    add_tasks,
    set_terminate_on_completion,
    terminate_task_if_active,
)
from ._errors import BatchExecutorError, ObjectNotFoundError, StorageError, job_ended
from ._files import (
    FileCache,
    FileSpec,
    TaskFiles,
    check_task_size,
    output_upload_error,
    prepare_files,
    upload_failed,
)
from ._future import JobFuture
from ._jobs import chunk_task, create_job, new_job_id
from ._poller import Watch
from ._results import submit_outcome, task_failure
from ._retry import describe
from ._serialize import Record, RecordWriter

if TYPE_CHECKING:
    from ._context import Context

__all__ = ["SubmitJob", "flush_all", "resolve_task", "settle"]

log = logging.getLogger("batchexecutor")

#: Calls per input pack (and per batch of adds: ten add-collection requests).
PACK_CALLS = 1000
#: Bytes per input pack; a call larger than this gets a pack of its own.
PACK_BYTES = 16 << 20
#: How long the sender waits for more calls before sending fewer than a full request.
LINGER = 0.005

_live: weakref.WeakSet[SubmitJob] = weakref.WeakSet()


@dataclass
class _Call:
    chunk: int
    stream: bytes  # the call's input record stream
    future: JobFuture[Any]
    files: TaskFiles | None = None  # its task's resource and output files


def settle(future: JobFuture[Any], ok: bool, value: Any) -> None:
    """Resolve ``future`` unless it was cancelled meanwhile."""
    try:
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    except InvalidStateError:
        pass


class SubmitJob(Watch):
    """The executor's ``submit()`` job and its sender thread (see the module docstring)."""

    def __init__(self, context: Context) -> None:
        super().__init__(new_job_id("submit"))
        self.context = context
        self._lock = threading.Condition()
        self._queue: deque[_Call] = deque()
        self._sending: list[_Call] = []
        self._in_flight: dict[str, JobFuture[Any]] = {}
        # Tasks being cancelled, and their completion if the poller saw it meanwhile.
        self._cancelling: dict[str, CompletedTask | None] = {}
        self._next_chunk = 0
        self._next_pack = 0
        self._created = False
        self._closing = False
        self._lost: BaseException | None = None  # why the job can run no more tasks
        self._file_cache = FileCache()  # the job's node SAS and the local files it stored
        self._thread: threading.Thread | None = None
        _live.add(self)

    # -- the caller's side -------------------------------------------------------------

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        files: FileSpec | None = None,
    ) -> JobFuture[Any]:
        context = self.context
        with self._lock:
            if self._closing:
                raise RuntimeError("cannot schedule new futures after shutdown")
        task_files = self._task_files(files) if files is not None else None
        with self._lock:
            if self._closing:
                raise RuntimeError("cannot schedule new futures after shutdown")
            chunk = self._next_chunk
            self._next_chunk += 1
        what = f"submit() call {chunk} ({_describe(fn)})"
        payload = context.call_payload(fn, args, kwargs, what=what)
        buffer = io.BytesIO()
        writer = RecordWriter(buffer, info={"kind": "input", "job": self.job_id, "chunk": chunk})
        writer.write(Record(chunk, "ok", payload))
        writer.close()
        future: JobFuture[Any] = JobFuture(
            self.job_id,
            str(chunk),
            endpoint=context.endpoint,
            store=context.store_reference,
            canceller=self.cancel,
        )
        with self._lock:
            if self._closing:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._queue.append(_Call(chunk, buffer.getvalue(), future, task_files))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="batchexecutor-submitter", daemon=True
                )
                self._thread.start()
            self._lock.notify_all()
        return future

    def _task_files(self, files: FileSpec) -> TaskFiles:
        """A call's files bound to this job, checked, its local files stored (in the
        caller: errors are raised there, before the call is queued)."""
        context = self.context
        task_files = prepare_files(context, self.job_id, files, cache=self._file_cache)
        largest = chunk_task(
            self.job_id,
            999_999_999,
            launcher=context.launcher,
            pack=(999_999_999, 1 << 50, 1 << 40),
            dependents=False,
            files=task_files,
        )
        check_task_size(largest, "submit()")
        task_files.store_uploads(context, self._file_cache)
        return task_files

    def cancel(self, future: JobFuture[Any]) -> bool:
        """The future's canceller: True if its work will not run."""
        with self._lock:
            for queued in self._queue:
                if queued.future is future:
                    self._queue.remove(queued)
                    return True
            while any(sent.future is future for sent in self._sending):
                self._lock.wait()
            if future.task_id not in self._in_flight:
                return False  # completed (being resolved) or failed to be added
        return self._terminate_if_active(future)

    def cancel_unstarted(self) -> None:
        """``shutdown(cancel_futures=True)``: cancel every call that has not started."""
        with self._lock:
            queued = [call.future for call in self._queue]
            self._queue.clear()
            while self._sending:
                self._lock.wait()
            sent = list(self._in_flight.values())
        for future in queued:
            # No longer queued, so never sent: cancelled on the spot (its canceller, which
            # looks for it in the queue, would call it started and leave it pending).
            Future.cancel(future)
        for future in sent:
            future.cancel()  # terminated on Batch unless it started

    def close(self) -> None:
        """No more calls; the sender sends what is queued, then ends the job's intake."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def outstanding(self) -> list[JobFuture[Any]]:
        with self._lock:
            return (
                [c.future for c in self._queue]
                + [c.future for c in self._sending]
                + list(self._in_flight.values())
            )

    # -- the sender thread -------------------------------------------------------------

    def _take(self) -> list[_Call]:
        batch: list[_Call] = []
        size = 0
        while self._queue and len(batch) < PACK_CALLS:
            call_ = self._queue[0]
            if batch and size + len(call_.stream) > PACK_BYTES:
                break
            batch.append(self._queue.popleft())
            size += len(call_.stream)
        return batch

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait()
                if not self._queue:
                    break
                if len(self._queue) < MAX_TASKS_PER_REQUEST and not self._closing:
                    # A burst arrives call by call: wait a moment for a fuller request.
                    self._lock.wait(LINGER)
                batch = self._take()
                self._sending = batch
                # The poller skips a job with nothing in flight; wake it when that changes
                # (not after every batch: a wake is a tick, and ticks cost requests).
                was_idle = not self._in_flight
            try:
                self._send(batch)
            except BaseException as error:  # every future of the batch learns why
                failure = _failure(f"could not submit to job {self.job_id!r}", error)
                for sent in batch:
                    self._in_flight.pop(str(sent.chunk), None)
                    settle(sent.future, False, failure)
            finally:
                with self._lock:
                    self._sending = []
                    self._lock.notify_all()
            if was_idle:
                self.context.poller.wake()
        if self._created:
            try:  # the job ends once its last task completes
                set_terminate_on_completion(
                    self.context.client, self.job_id, deadline=self.context.deadline
                )
            except Exception as error:
                log.warning("batchexecutor: job %s left open: %s", self.job_id, describe(error))

    def _send(self, batch: Sequence[_Call]) -> None:
        context = self.context
        if self._lost is not None:  # e.g. its nodes cannot run it: so are later calls
            raise self._lost
        if not self._created:
            environment, preparation = context.job_setup(self.job_id)
            create_job(
                context.client,
                self.job_id,
                pool_id=context.pool_id,
                environment=environment,
                preparation=preparation,
                fields={"kind": "submit"},
                max_parallel_tasks=context.max_workers,
                dependencies=False,
                deadline=context.deadline,
            )
            self._created = True
            self.prepared = preparation is not None
            context.poller.watch(self)
        pack = self._next_pack
        self._next_pack += 1
        blob = b"".join(sent.stream for sent in batch)
        context.store.put(_names.input_pack(self.job_id, pack), blob)
        tasks = []
        offset = 0
        for sent in batch:
            tasks.append(
                chunk_task(
                    self.job_id,
                    sent.chunk,
                    launcher=context.launcher,
                    pack=(pack, offset, len(sent.stream)),
                    dependents=False,
                    files=sent.files,
                )
            )
            offset += len(sent.stream)
        with self._lock:
            for sent in batch:
                self._in_flight[str(sent.chunk)] = sent.future
        try:
            add_tasks(context.client, self.job_id, tasks, deadline=context.deadline)
        except AddTasksError as error:
            for sent in batch:
                reason = error.failures.get(str(sent.chunk))
                if reason is not None:
                    self._in_flight.pop(str(sent.chunk), None)
                    settle(
                        sent.future,
                        False,
                        BatchExecutorError(
                            f"task {sent.chunk} could not be added to job {self.job_id!r}: {reason}"
                        ),
                    )

    def _terminate_if_active(self, future: JobFuture[Any]) -> bool:
        """Terminate the future's task if it has not started; whether it was.

        Meanwhile a completion of the task (the termination's own, above all) is held
        back from the resolver, so that the future ends cancelled, not failed.
        """
        task_id = future.task_id
        assert task_id is not None
        with self._lock:
            self._cancelling[task_id] = None
        terminated = False
        try:
            terminated = self._terminate(task_id)
        finally:
            with self._lock:
                completed = self._cancelling.pop(task_id, None)
                if terminated or completed is not None:
                    self._in_flight.pop(task_id, None)
            if completed is not None and not terminated:
                self.context.background(functools.partial(self._resolve, future, completed))
        return terminated

    def _terminate(self, task_id: str) -> bool:
        try:
            return terminate_task_if_active(
                self.context.client, self.job_id, task_id, deadline=self.context.deadline
            )
        except Exception as error:
            log.warning("batchexecutor: cannot cancel task %s: %s", task_id, describe(error))
            return False

    # -- the poller's side -------------------------------------------------------------

    @property
    def idle(self) -> bool:
        with self._lock:
            return not self._in_flight

    @property
    def finished(self) -> bool:
        with self._lock:
            return self._closing and not (self._queue or self._sending or self._in_flight)

    def on_completed(self, tasks: Sequence[CompletedTask]) -> None:
        for task in tasks:
            with self._lock:
                if task.id in self._cancelling:  # its cancel() settles it
                    self._cancelling[task.id] = task
                    continue
                future = self._in_flight.pop(task.id, None)
            if future is not None and not future.done():
                self.context.background(functools.partial(self._resolve, future, task))

    def _resolve(self, future: JobFuture[Any], task: CompletedTask) -> None:
        resolve_task(self.context, self.job_id, future, task)

    def on_ended(self, reason: str | None) -> None:
        self.on_lost(job_ended(self.job_id, reason))

    def on_lost(self, error: BaseException) -> None:
        failure = _failure(f"job {self.job_id!r} can no longer be followed", error)
        with self._lock:
            self._lost = failure
            futures = list(self._in_flight.values())
            self._in_flight.clear()
        for future in futures:
            settle(future, False, failure)


def resolve_task(
    context: Context, job_id: str, future: JobFuture[Any], task: CompletedTask
) -> None:
    """Settle the future of a ``submit()`` task from its stored outcome (a resolver thread)."""
    if future.done():
        return
    try:
        ok, value = submit_outcome(context.store, job_id, int(task.id))
        if ok and upload_failed(task):  # the files asked for are missing: not a success
            ok, value = False, output_upload_error(job_id, task, value)
    except ObjectNotFoundError:
        ok, value = False, task_failure(context.client, job_id, task, deadline=context.deadline)
    except (StorageError, BatchExecutorError) as error:
        ok, value = False, error
    except Exception as error:  # never leave the future hanging
        ok, value = False, _failure(f"could not read the outcome of task {task.id!r}", error)
    settle(future, ok, value)


def _describe(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else type(fn).__name__


def _failure(context: str, error: BaseException) -> BaseException:
    """``error`` itself when it is ours, else a BatchExecutorError saying what failed.

    Service errors are described (:func:`describe` masks secrets), not chained: their
    text may quote a request URL.
    """
    if isinstance(error, (BatchExecutorError, ValueError, TypeError)):
        return error
    return BatchExecutorError(f"{context}: {describe(error)}")


def flush_all() -> None:
    """At interpreter exit: send every queued call (results are collected by attaching)."""
    for job in list(_live):
        job.close()
        job.join()
