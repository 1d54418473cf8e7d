"""Reading what tasks stored, on the client: outcomes, combined results, failures.

* :func:`submit_outcome` -- the value (or exception) of one ``submit()`` task.
* :func:`job_values` -- a ``map`` job's values in item order, streamed, from its combined
  result when there is one, else from its chunk outcomes (the same merge the cloud
  combine runs), with the error mode applied.
* :func:`task_failure` -- a :class:`TaskFailedError` for a task that stored nothing:
  exit code, Batch's failure information and the tail of its stderr.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import _names
from ._batch import CompletedTask
from ._combine import CombineSummary, Mode, merge
from ._errors import SerializationError, TaskFailedError
from ._retry import call
from ._serialize import NO_ITEM, Record, iter_records, load_record
from ._storage import Store

if TYPE_CHECKING:
    from azure.batch import BatchClient

__all__ = ["STDERR_TAIL", "job_values", "submit_outcome", "task_failure", "values"]

log = logging.getLogger("batchexecutor")

#: Bytes of a failed task's stderr carried by its TaskFailedError.
STDERR_TAIL = 4096


def _tail(client: BatchClient, job_id: str, task_id: str, deadline: float) -> str | None:
    """The last :data:`STDERR_TAIL` bytes of the task's stderr.txt (two requests)."""

    def fetch() -> str | None:
        size = client.get_task_file_properties(job_id, task_id, "stderr.txt").content_length
        if not size:
            return None
        start = max(0, size - STDERR_TAIL)
        data = b"".join(
            client.download_task_file(
                job_id, task_id, "stderr.txt", ocp_range=f"bytes={start}-{size - 1}"
            )
        )
        text = data.decode("utf-8", "replace")
        if start:  # drop the partial first line
            text = text.partition("\n")[2] or text
        return text

    try:
        return call(
            f"read the stderr of task {task_id!r} of job {job_id!r}", fetch, deadline=deadline
        )
    except Exception as error:  # the failure is reported anyway, with what is known
        log.debug("no stderr for task %s of job %s: %s", task_id, job_id, error)
        return None


def task_failure(
    client: BatchClient,
    job_id: str,
    task: CompletedTask,
    *,
    chunk: int | None = None,
    deadline: float,
    reason: str | None = None,
) -> TaskFailedError:
    """The error for a task that ended without storing its outcome."""
    info = None
    if task.failure_code or task.failure_message:
        category, code = task.failure_category or "error", task.failure_code or ""
        info = f"{category} {code}: {task.failure_message or ''}"
    if reason is None:
        if task.exit_code is None:
            reason = "it did not run"
        elif task.failure_code == "TaskEnded":
            reason = "it was terminated"
        else:
            reason = "no outcome object is in the store"
    return TaskFailedError(
        job_id=job_id,
        task_id=task.id,
        chunk=chunk,
        exit_code=task.exit_code,
        failure_info=info,
        stderr_tail=_tail(client, job_id, task.id, deadline),
        reason=reason,
    )


def submit_outcome(store: Store, job_id: str, chunk: int) -> tuple[bool, Any]:
    """``(ok, value)`` of the one item of a ``submit()`` chunk; ``value`` is the exception
    when ``ok`` is False. Raises ``ObjectNotFoundError`` when nothing was stored, and
    :class:`SerializationError` when the outcome is unreadable (naming the chunk)."""
    name = _names.chunk_outcome(job_id, chunk)
    what = _names.describe(name)
    data = store.get(name)
    first: Record | None = None
    for record in iter_records(io.BytesIO(data), what=what):  # to its end marker, which
        if first is None:  # tells a whole outcome from a truncated or garbled one
            first = record
    if first is None:
        raise SerializationError(what, "it holds no record")
    return first.status == "ok", load_record(first, what=what)


def values(records: Iterator[Record], *, what: str, mode: Mode) -> Iterator[Any]:
    """The values of ``records`` under ``mode``: results, exceptions in place
    (``"return"``), or the first failure raised (``"raise"``, and always for a failure
    that belongs to no item).

    A value is handed on without being kept in a local variable: once its reader drops
    it, it is gone (``ProcessPoolExecutor.map`` promises as much).
    """
    box: list[Any] = []
    for record in records:
        try:
            box.append(load_record(record, what=what))
        except SerializationError as error:  # a result that cannot be unpickled here
            failed = True
            box.append(error)
        else:
            failed = record.status == "error"
        if not failed:
            yield box.pop()
        elif mode == "skip" and record.item != NO_ITEM:
            box.clear()
        elif mode == "return" and record.item != NO_ITEM:
            yield box.pop()
        else:
            raise box.pop()


def combined_records(store: Store, job_id: str, *, skip: int = 0) -> Iterator[Record]:
    """The records of the job's combined result, streamed; the first ``skip`` dropped."""
    name = _names.result(job_id)
    with store.open(name) as stream:
        for position, record in enumerate(iter_records(stream, what=_names.describe(name))):
            if position >= skip:
                yield record


def chunk_records(
    store: Store,
    job_id: str,
    chunks: int,
    mode: Mode,
    *,
    missing: Callable[[int], BaseException] | None = None,
    first: int = 0,
) -> Iterator[Record]:
    """The records of chunks ``first ..`` read one outcome at a time (no combined result)."""
    return merge(store, job_id, chunks, mode, CombineSummary(), missing=missing, first=first)


def job_values(
    store: Store,
    job_id: str,
    *,
    chunks: int,
    mode: Mode,
    combined: bool,
    missing: Callable[[int], BaseException] | None = None,
) -> Iterator[Any]:
    """A ``map`` job's values in item order (see the module docstring)."""
    if combined:
        what = _names.describe(_names.result(job_id))
        return values(combined_records(store, job_id), what=what, mode=mode)
    records = chunk_records(store, job_id, chunks, mode, missing=missing)
    return values(records, what=f"the outcomes of job {job_id!r}", mode=mode)
