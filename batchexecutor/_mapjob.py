"""The ``map`` path: one Batch job per call, chunk tasks, the combine task, results.

::

    map_async(fn, *iterables)            (in the caller: pickling errors raised there)
      1. pickle fn (and reduce) ─► J/function, J/reduce
      2. create job J (onAllTasksComplete=noaction, metadata: submitted=partial)
      3. for each window of up to 1,000 chunks of `chunksize` items:
            one input pack J/packs/P (the chunks' record streams back to back)
            add-collection requests of <= 100 chunk tasks
      4. the combine task, depending on chunks 0..n-1 by one taskIdRange
      5. J/manifest.json; one job update: metadata submitted=complete, terminatejob
    poller ─ completed tasks ─► MapJob.on_completed ─► chunk states; when the combine
                                (or, without it, the last chunk) completes, the whole-job
                                JobFuture is resolved on a resolver thread
    map() iterates: chunk k's outcome as soon as chunk k completes, until the combined
    result exists, then the rest from it (one read instead of one per chunk)

With ``resource_files`` / ``output_files`` every chunk task carries them (checked, and
local files stored under ``J/files/``, before the job is created or right after); the
combine task gets none. A chunk that ran but whose output files Batch could not upload
fails the whole-job future (and ``map()``'s iterator, where its items stand) with
:class:`~batchexecutor.OutputFilesError`, the values kept in the error.

Memory in the client stays at one window of inputs while submitting, and at one record
while iterating; a chunk's state is one byte.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import TimeoutError as FuturesTimeout
from itertools import islice
from typing import TYPE_CHECKING, Any

from . import _names
from ._batch import CompletedTask, TaskCounts, add_tasks, delete_job, terminate_job
from ._combine import Mode
from ._errors import BatchExecutorError, ObjectNotFoundError, TaskFailedError, job_ended
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
from ._jobs import COMBINE_TASK, chunk_task, combine_task, create_job, finish_submission
from ._poller import Watch
from ._progress import Progress, enabled
from ._results import chunk_records, combined_records, task_failure, values
from ._retry import describe
from ._serialize import NO_ITEM, Record, RecordWriter, dumps
from ._submitter import settle

if TYPE_CHECKING:
    from ._context import Context

__all__ = ["MapJob", "map_fields", "start_map", "submit_tasks"]

log = logging.getLogger("batchexecutor")

#: Chunks per input pack, and per round of add-collection requests.
PACK_CHUNKS = 1000
#: Bytes per input pack (a chunk larger than this gets a pack of its own).
PACK_BYTES = 16 << 20

_PENDING, _DONE = 0, 1


def _name(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    module = getattr(fn, "__module__", None)
    text = name if isinstance(name, str) else type(fn).__name__
    return f"{module}.{text}" if isinstance(module, str) else text


class MapJob(Watch):
    """A ``map`` job followed by the poller, and what its readers wait on."""

    def __init__(
        self,
        context: Context,
        job_id: str,
        *,
        chunksize: int,
        combine: bool,
        reduce: bool,
        mode: Mode,
        future: JobFuture[Any] | None,
    ) -> None:
        super().__init__(job_id)
        self.context = context
        self.chunksize = chunksize
        self.combine = combine
        self.reduce = reduce
        self.mode = mode
        self.future = future  # the whole-job future, until it is resolved
        self.whole = future
        self.cond = threading.Condition()
        self.chunks: int | None = None  # known once every task is added
        self.items: int | None = None
        self.states = bytearray()  # one byte per chunk: _PENDING or _DONE
        self.done_chunks = 0
        self.failed: dict[int, CompletedTask] = {}  # chunk tasks that did not succeed
        self.combined: CompletedTask | None = None
        self.files: TaskFiles | None = None  # the chunk tasks' resource and output files
        self.error: BaseException | None = None
        self.discarded = False
        self.progress = Progress(job_id) if enabled(context.progress) else None
        if future is not None and self.progress is not None:
            future._show = self.progress.showing

    # -- state ---------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """Every task has completed (the combine task, if there is one, included)."""
        if self.chunks is None:
            return False
        if self.combine:
            return self.combined is not None
        return self.done_chunks >= self.chunks

    @property
    def finished(self) -> bool:
        with self.cond:
            return self.discarded or self.error is not None or self.complete

    def on_completed(self, tasks: Sequence[CompletedTask]) -> None:
        with self.cond:
            for task in tasks:
                if task.id == COMBINE_TASK:
                    self.combined = task
                    continue
                chunk = int(task.id)
                if chunk >= len(self.states):
                    self.states.extend(bytes(chunk + 1 - len(self.states)))
                if self.states[chunk] == _PENDING:
                    self.states[chunk] = _DONE
                    self.done_chunks += 1
                if task.succeeded:
                    self.failed.pop(chunk, None)
                else:
                    self.failed[chunk] = task
            self._settled()

    def on_counts(self, counts: TaskCounts) -> None:
        if self.progress is not None:
            self.progress.update(counts)

    def on_lost(self, error: BaseException) -> None:
        with self.cond:
            if self.complete or self.discarded:
                return
            self.error = (
                error  # ours says why (e.g. a NodeEnvironmentError)
                if isinstance(error, BatchExecutorError)
                else BatchExecutorError(
                    f"job {self.job_id!r} can no longer be followed: {describe(error)}"
                )
            )
            self.cond.notify_all()
        if self.future is not None:
            settle(self.future, False, self.error)

    def on_ended(self, reason: str | None) -> None:
        with self.cond:
            if self.complete or self.discarded:
                return
            self.error = job_ended(self.job_id, reason, done=self.done_chunks)
            self.cond.notify_all()
        if self.future is not None:
            settle(self.future, False, self.error)

    def fail(self, error: BaseException) -> None:
        """Submission failed: readers get ``error``."""
        with self.cond:
            self.error = error
            self.cond.notify_all()

    def _settled(self) -> None:
        """Under ``cond``: wake readers; resolve the whole-job future once complete."""
        self.cond.notify_all()
        if self.complete and self.future is not None and not self.future.done():
            future, self.future = self.future, None
            self.context.background(functools.partial(self._resolve, future))

    def submitted(self, chunks: int, items: int) -> None:
        with self.cond:
            self.chunks, self.items = chunks, items
            self._settled()

    # -- reading -------------------------------------------------------------------------

    def missing(self, chunk: int) -> BaseException:
        """The error for the items of a chunk whose task stored no outcome."""
        task = self.failed.get(chunk)
        if task is None:  # not seen failing here (e.g. a job read back by ID): ask Batch
            found = _completed_task(self.context, self.job_id, str(chunk))
            if found is None:  # a terminated job's chunk that never ran
                return TaskFailedError(
                    job_id=self.job_id,
                    task_id=str(chunk),
                    chunk=chunk,
                    reason="it never completed: the job ended before it ran",
                )
            if found.succeeded:
                name = _names.chunk_outcome(self.job_id, chunk)
                return ObjectNotFoundError(
                    f"the {_names.describe(name)} is not in the store, though its task "
                    "succeeded (was it deleted?)",
                    name=name,
                )
            task = found
        return task_failure(
            self.context.client, self.job_id, task, chunk=chunk, deadline=self.context.deadline
        )

    def records(self, first_chunk: int = 0) -> Iterator[Record]:
        """Records from chunk ``first_chunk`` on: from the combined result if it was stored,
        else from the chunk outcomes. Only for a complete job."""
        assert self.chunks is not None
        store = self.context.store
        if self.combine:
            stream = combined_records(store, self.job_id)
            try:
                first = next(stream, None)
            except ObjectNotFoundError:
                if self.reduce:  # nothing to fall back on: the fold happens in the combine
                    raise self._combine_failure() from None
            else:
                threshold = first_chunk * self.chunksize
                if first is not None:
                    stream = itertools.chain([first], stream)
                for record in stream:
                    if record.item == NO_ITEM or record.item >= threshold:
                        yield record
                return
        yield from chunk_records(
            store, self.job_id, self.chunks, self.mode, missing=self.missing, first=first_chunk
        )

    def _combine_failure(self) -> BaseException:
        name = _names.result(self.job_id)
        if self.combined is None:  # a terminated job's combine task never ran
            return TaskFailedError(
                job_id=self.job_id,
                task_id=COMBINE_TASK,
                reason="it never completed: the job ended before it ran",
            )
        if self.combined.succeeded:
            return ObjectNotFoundError(
                f"the {_names.describe(name)} is not in the store, though the combine task "
                "succeeded (was it deleted?)",
                name=name,
            )
        return task_failure(
            self.context.client,
            self.job_id,
            self.combined,
            deadline=self.context.deadline,
            reason=f"the combine task stored no result ({name})",
        )

    def upload_failure(
        self, first_chunk: int = 0, last_chunk: int | None = None
    ) -> CompletedTask | None:
        """The first chunk task from ``first_chunk`` (to ``last_chunk``) that ran but whose
        output files Batch could not upload, or None."""
        last = float("inf") if last_chunk is None else last_chunk
        with self.cond:
            chunks = [
                chunk
                for chunk, task in self.failed.items()
                if first_chunk <= chunk <= last and upload_failed(task)
            ]
            return self.failed[min(chunks)] if chunks else None

    def _resolve(self, future: JobFuture[Any]) -> None:
        what = f"the result of job {self.job_id!r}"
        try:
            if self.reduce:
                outcome = list(values(self.records(), what=what, mode="raise"))
                ok, value = True, outcome[0] if outcome else None
            else:
                ok, value = True, list(values(self.records(), what=what, mode=self.mode))
        except Exception as error:
            ok, value = False, error
        uploads = self.upload_failure() if ok else None
        if uploads is not None:  # the files asked for are missing: not a silent success
            ok, value = False, output_upload_error(self.job_id, uploads, value)
        settle(future, ok, value)

    def iterate(self, deadline: float | None) -> Iterator[Any]:
        """``map()``'s results in order, as their chunks complete (see the module docstring)."""
        chunk = 0
        what = f"the outcomes of job {self.job_id!r}"
        while True:
            with self.cond:
                while True:
                    if self.error is not None:
                        raise self.error
                    if self.chunks is not None and chunk >= self.chunks:
                        return
                    if self.complete or (chunk < len(self.states) and self.states[chunk]):
                        break
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise FuturesTimeout()
                    self.cond.wait(left)
                complete = self.complete
            if complete and self.upload_failure(chunk) is None:
                yield from values(self.records(chunk), what=what, mode=self.mode)
                return
            records = chunk_records(
                self.context.store,
                self.job_id,
                chunk + 1,
                self.mode,
                missing=self.missing,
                first=chunk,
            )
            uploads = self.upload_failure(chunk, chunk)
            if uploads is not None:  # raised where its items stand, with their values
                chunk_values = list(values(records, what=what, mode=self.mode))
                raise output_upload_error(self.job_id, uploads, chunk_values)
            yield from values(records, what=what, mode=self.mode)
            chunk += 1

    # -- cancelling and cleaning up ------------------------------------------------------

    def cancel(self, future: JobFuture[Any]) -> bool:
        """The whole-job future's canceller: terminate the job unless it is complete."""
        with self.cond:
            if self.complete:
                return False
        try:
            terminate_job(
                self.context.client, self.job_id, "cancelled", deadline=self.context.deadline
            )
        except Exception as error:
            log.warning("batchexecutor: cannot cancel job %s: %s", self.job_id, describe(error))
            return False
        with self.cond:
            self.discarded = True
            self.future = None
            self.cond.notify_all()
        return True

    def discard(self) -> None:
        """``map()`` is done with the job: stop it if needed, delete it and its data."""
        with self.cond:
            self.discarded = True
            complete = self.complete
            self.cond.notify_all()
        context = self.context

        def clean() -> None:
            try:
                if not complete:
                    terminate_job(
                        context.client, self.job_id, "abandoned", deadline=context.deadline
                    )
                delete_job(context.client, self.job_id, deadline=context.deadline)
                context.store.delete_prefix(_names.job_prefix(self.job_id))
            except Exception as error:
                log.warning(
                    "batchexecutor: job %s not cleaned up: %s", self.job_id, describe(error)
                )

        context.background(clean)


def _completed_task(context: Context, job_id: str, task_id: str) -> CompletedTask | None:
    """One task's completion record (one request), or None if it is not completed."""
    from ._batch import completed_task

    try:
        return completed_task(context.client, job_id, task_id, deadline=context.deadline)
    except Exception as error:
        log.debug("task %s of job %s: %s", task_id, job_id, describe(error))
        return None


def _chunks(items: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    while True:
        chunk = list(islice(items, size))
        if not chunk:
            return
        yield chunk


def map_fields(
    fn: Callable[..., Any],
    iterables: Sequence[Iterable[Any]],
    *,
    chunksize: int,
    combine: bool,
    reduce: Callable[[Any, Any], Any] | None,
    mode: Mode,
    files: FileSpec | None = None,
) -> dict[str, Any]:
    """The job metadata of a ``map`` at its creation (``files``: how many resource and
    output files each task gets, never their URLs)."""
    lengths = [len(it) for it in iterables if hasattr(it, "__len__")]  # type: ignore[arg-type]
    return {
        "kind": "map",
        "function": _name(fn),
        "chunksize": chunksize,
        "combine": combine,
        "reduce": None if reduce is None else _name(reduce),
        "errors": mode,
        "planned": min(lengths) if iterables and len(lengths) == len(iterables) else None,
        "submitted": "partial",
        "resource_files": len(files.resource_files) if files and files.resource_files else None,
        "output_files": len(files.output_files) if files and files.output_files else None,
    }


def start_map(
    context: Context,
    fn: Callable[..., Any],
    iterables: Sequence[Iterable[Any]],
    *,
    job_id: str,
    chunksize: int,
    combine: bool,
    reduce: Callable[[Any, Any], Any] | None,
    mode: Mode,
    future: JobFuture[Any] | None,
    files: FileSpec | None = None,
) -> MapJob:
    """Submit the job (see the module docstring) and return its watch. ``files``: every
    chunk task's resource and output files (checked before anything is created)."""
    fields = map_fields(
        fn, iterables, chunksize=chunksize, combine=combine, reduce=reduce, mode=mode, files=files
    )
    cache = FileCache()
    task_files = None
    if files is not None:
        task_files = prepare_files(context, job_id, files, cache=cache)
        largest = chunk_task(
            job_id,
            999_999_999,
            launcher=context.launcher,
            pack=(999_999_999, 1 << 50, 1 << 40),
            dependents=combine,
            files=task_files,
        )
        check_task_size(largest, f"map job {job_id!r}")
    function_blob = dumps(fn, what=f"the function {_name(fn)} of a map", info={"job": job_id})
    reduce_blob = (
        None
        if reduce is None
        else dumps(reduce, what=f"the reduce function {_name(reduce)}", info={"job": job_id})
    )
    environment, preparation = context.job_setup(job_id)
    create_job(
        context.client,
        job_id,
        pool_id=context.pool_id,
        environment=environment,
        preparation=preparation,
        fields=fields,
        max_parallel_tasks=context.max_workers,
        dependencies=combine,
        deadline=context.deadline,
    )
    job = MapJob(
        context,
        job_id,
        chunksize=chunksize,
        combine=combine,
        reduce=reduce is not None,
        mode=mode,
        future=future,
    )
    job.prepared = preparation is not None
    job.files = task_files
    try:
        if task_files is not None:
            task_files.store_uploads(context, cache)
        if reduce_blob is not None:
            context.store.put(_names.reducer(job_id), reduce_blob)
        submit_tasks(context, job, function_blob, iterables, fields)
    except BaseException as error:
        job.fail(error)
        job.discard()  # nothing useful was started: remove the job and what it stored
        raise
    return job


def submit_tasks(
    context: Context,
    job: MapJob,
    function_blob: bytes,
    iterables: Sequence[Iterable[Any]],
    fields: dict[str, Any],
    *,
    existing: frozenset[str] = frozenset(),
    first_pack: int = 0,
) -> None:
    """Steps 1 and 3-5 of the module docstring; chunks whose task is in ``existing`` are
    skipped (a resumed submission), new packs are numbered from ``first_pack``."""
    client, store, deadline, job_id = context.client, context.store, context.deadline, job.job_id
    if job.files is None and (fields.get("resource_files") or fields.get("output_files")):
        raise ValueError(
            f"job {job_id!r} gives its tasks resource or output files, which a resumed "
            "submission cannot re-create (their URLs hold SAS tokens, kept out of the job's "
            "metadata): delete it (executor.delete_job(job_id)) and submit it again"
        )
    store.put(_names.function(job_id), function_blob)
    rows = zip(*iterables)  # noqa: B905 (map stops at the shortest iterable)
    chunks, items = _submit_chunks(
        context, job, rows, job.chunksize, job.combine, existing=existing, first_pack=first_pack
    )
    fields.update(items=items, chunks=chunks, submitted="complete")
    # Before the combine task exists: it reads the manifest to place a dead chunk's items.
    store.put(_names.manifest(job_id), json.dumps(fields, sort_keys=True).encode())
    if job.combine and COMBINE_TASK not in existing:
        task = combine_task(
            job_id, chunks, launcher=context.launcher, mode=job.mode, reduce=job.reduce
        )
        add_tasks(client, job_id, [task], deadline=deadline)
    finish_submission(client, job_id, fields, deadline=deadline)
    job.submitted(chunks, items)
    # Watched from now on: nobody reads the job before this call returns, and the first
    # tick lists every task completed so far (polling while adding only costs requests).
    context.poller.watch(job)


def _submit_chunks(
    context: Context,
    job: MapJob,
    items: Iterator[tuple[Any, ...]],
    chunksize: int,
    dependents: bool,
    *,
    existing: frozenset[str],
    first_pack: int,
) -> tuple[int, int]:
    """Pack and add every chunk not in ``existing``; ``(chunks, items)``."""
    job_id = job.job_id
    chunk = item = 0
    pack = first_pack
    window: list[tuple[int, bytes]] = []
    size = 0

    def flush() -> None:
        nonlocal pack, window, size
        if not window:
            return
        context.store.put(_names.input_pack(job_id, pack), b"".join(data for _, data in window))
        tasks, offset = [], 0
        for number, data in window:
            tasks.append(
                chunk_task(
                    job_id,
                    number,
                    launcher=context.launcher,
                    pack=(pack, offset, len(data)),
                    dependents=dependents,
                    files=job.files,
                )
            )
            offset += len(data)
        with job.cond:
            job.states.extend(bytes(max(0, window[-1][0] + 1 - len(job.states))))
        add_tasks(context.client, job_id, tasks, deadline=context.deadline)
        pack += 1
        window, size = [], 0

    for arguments in _chunks(items, chunksize):
        if str(chunk) in existing:  # added before the submission was cut short
            item += len(arguments)
            chunk += 1
            continue
        buffer = io.BytesIO()
        writer = RecordWriter(buffer, info={"kind": "input", "job": job_id, "chunk": chunk})
        for args in arguments:
            payload = context.call_payload(None, args, {}, what=f"item {item} of job {job_id!r}")
            writer.write(Record(item, "ok", payload))
            item += 1
        writer.close()
        data = buffer.getvalue()
        if window and (len(window) >= PACK_CHUNKS or size + len(data) > PACK_BYTES):
            flush()
        window.append((chunk, data))
        size += len(data)
        chunk += 1
    flush()
    return chunk, item
