"""The cloud combine: a job's chunk outcomes merged, in item order, into one stored result.

:func:`combine` (run on a node by ``python -m batchexecutor.worker combine``) reads the
outcome of chunk 0, 1, 2, ... in turn and copies their record frames into the job's
result object (:func:`batchexecutor._names.result`), applying the error mode:

``"raise"``   results up to the first failure, then that failure; nothing after it.
``"skip"``    failed items dropped.
``"return"``  failures kept in place, as error records.

Frames are copied, never unpickled (except to reduce), so memory stays at one record
whatever the job's size; the result is written through the store's atomic writer.

A chunk whose outcome is missing (its task died) or unreadable (truncated, garbled, other
versions) does not stop the combine: each of its items not already copied gets an error
record naming the chunk (a :class:`TaskFailedError`, :class:`CorruptObjectError` or
:class:`VersionMismatchError`); the items come from the chunk's input. If the input is
unreadable too, a single :data:`~batchexecutor._serialize.NO_ITEM` error record stands
for the chunk, and a reader must raise it. Other storage errors do fail the combine
(exit code 74): the task may be retried, the outcomes stay where they are.

With ``reduce=True`` the job's reduce function (:func:`batchexecutor._names.reducer`)
folds the results in order, ``acc = reduce(acc, item)`` starting from the first, and
the result holds one record: the value (index ``NO_ITEM``) or the failure. In
``"return"`` mode failed items reach the reduce function as exception objects.

Chunks must hold increasing item indices, every index of chunk k below those of chunk
k + 1 (the executor numbers them so); a violation is reported as a corrupt chunk.
The result's end frame carries a summary: records, items, failed items, dropped items,
broken chunks, and ``failed`` (whether reading the result raises).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from . import _names
from ._errors import (
    CorruptObjectError,
    ObjectNotFoundError,
    SerializationError,
    StorageError,
    TaskFailedError,
    VersionMismatchError,
)
from ._serialize import (
    NO_ITEM,
    Record,
    RecordReader,
    RecordWriter,
    error_payload,
    iter_records,
    load_record,
    loads,
    pickle_payload,
)
from ._storage import Store

__all__ = ["MODES", "CombineSummary", "Mode", "combine", "merge"]

Mode = Literal["raise", "skip", "return"]
MODES: Final[tuple[str, ...]] = get_args(Mode)
_MAX_LISTED_CHUNKS = 1000  # broken chunks named in the summary; the count is always exact


@dataclass
class CombineSummary:
    """What a combine did; also stored, as JSON, in the result's end frame."""

    records: int = 0
    items: int = 0
    failed_items: int = 0
    dropped: int = 0
    broken_chunks: list[int] = field(default_factory=list)
    failed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "items": self.items,
            "failed_items": self.failed_items,
            "dropped": self.dropped,
            "broken_chunk_count": len(self.broken_chunks),
            "broken_chunks": self.broken_chunks[:_MAX_LISTED_CHUNKS],
            "failed": self.failed,
        }


def combine(
    store: Store,
    job_id: str,
    chunks: int,
    *,
    mode: Mode = "raise",
    reduce: bool = False,
    task_id: str | None = None,
) -> CombineSummary:
    """Merge the outcomes of chunks ``0 .. chunks - 1`` of ``job_id`` into its result.

    ``task_id`` (the combine's own Batch task) goes into errors raised by the reduce
    function. Returns the summary; :class:`StorageError` if the store fails.
    """
    _names.check_job_id(job_id)
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 0:
        raise ValueError(f"chunks must be a non-negative int, got {chunks!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    summary = CombineSummary()
    merged = merge(store, job_id, chunks, mode, summary)
    info = {"kind": "result", "job": job_id, "chunks": chunks, "mode": mode, "reduced": reduce}
    with closing(merged), store.writer(_names.result(job_id)) as file:
        writer = RecordWriter(file, info=info)
        if reduce:
            _reduce(store, job_id, merged, writer, mode, summary, task_id)
        else:
            for record in merged:
                writer.write(record)
        summary.records = writer.count
        writer.close(summary.to_json())
    return summary


# --------------------------------------------------------------------------- merging


def merge(
    store: Store,
    job_id: str,
    chunks: int,
    mode: Mode,
    summary: CombineSummary,
    *,
    missing: Callable[[int], BaseException] | None = None,
    first: int = 0,
) -> Generator[Record, None, None]:
    """The records of chunks ``first .. chunks - 1`` in order, with the error mode applied.

    ``missing(chunk)`` is the error standing for the items of a chunk whose outcome is
    not stored (default: a :class:`TaskFailedError` naming the chunk). The client reads
    jobs without a combined result through this very function.
    """
    last = NO_ITEM
    for chunk in range(first, chunks):
        for record in _chunk_records(store, job_id, chunk, last, summary, missing):
            if record.item != NO_ITEM:
                last = record.item
            summary.items += 1
            if record.status == "error":
                summary.failed_items += 1
                if mode == "skip":
                    summary.dropped += 1
                    continue
                # A failure without an item cannot be placed: reading the result raises it.
                if mode == "raise" or record.item == NO_ITEM:
                    summary.failed = True
                if mode == "raise":
                    yield record
                    return
            yield record


def _chunk_records(
    store: Store,
    job_id: str,
    chunk: int,
    after: int,
    summary: CombineSummary,
    missing: Callable[[int], BaseException] | None,
) -> Iterator[Record]:
    """Chunk ``chunk``'s records; error records for the items it lost, if it is broken."""
    name = _names.chunk_outcome(job_id, chunk)
    what = _names.describe(name)
    problem: BaseException
    try:
        with store.open(name) as stream:
            reader = iter_records(stream, what=what)
            info = reader.info
            if info.get("job", job_id) != job_id or info.get("chunk", chunk) != chunk:
                raise CorruptObjectError(what, "it holds another chunk's outcome")
            for record in reader:
                if record.item != NO_ITEM:
                    if record.item <= after:
                        # Its other items can no longer be placed in order: the chunk
                        # fails as a whole, and reading the result raises.
                        disorder = CorruptObjectError(what, f"item {record.item} is out of order")
                        summary.broken_chunks.append(chunk)
                        yield _unplaceable(disorder)
                        return
                    after = record.item
                yield record
        return
    except ObjectNotFoundError:
        problem = (
            missing(chunk)
            if missing is not None
            else TaskFailedError(
                job_id=job_id, chunk=chunk, reason="no outcome object is in the store"
            )
        )
    except (CorruptObjectError, VersionMismatchError) as error:
        problem = error
    summary.broken_chunks.append(chunk)
    yield from _lost_items(store, job_id, chunk, after, problem)


def _lost_items(
    store: Store, job_id: str, chunk: int, after: int, problem: BaseException
) -> Iterator[Record]:
    """An error record for each item of ``chunk`` past ``after``, per the chunk's input."""
    text = _bare_text(problem)
    name = _names.chunk_input(job_id, chunk)
    indices: Iterable[int]
    try:
        with store.open(name) as stream:
            # Only the frames' indices are needed: no payload is unpickled, so the
            # writer's versions do not matter here.
            indices = [r.item for r in RecordReader(stream, what=_names.describe(name))]
    except (StorageError, SerializationError):
        planned = _planned_items(store, job_id, chunk)
        if planned is None:
            yield _unplaceable(problem)
            return
        indices = planned
    for index in indices:
        if index > after:
            yield Record(index, "error", error_payload(problem, item=index, traceback_text=text))


def _planned_items(store: Store, job_id: str, chunk: int) -> range | None:
    """The items of ``chunk`` per the job's manifest, or None if it cannot tell.

    The executor packs the chunks' inputs (no chunk has an input object of its own) and
    numbers items in order, ``chunksize`` to a chunk: chunk k holds items
    ``k * chunksize`` up to the job's item count.
    """
    try:
        manifest = json.loads(store.get(_names.manifest(job_id)))
        chunksize, items = manifest["chunksize"], manifest["items"]
    except (StorageError, ValueError, TypeError, KeyError):
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (chunksize, items)):
        return None
    start = chunk * chunksize
    if chunksize < 1 or start >= items:
        return None
    return range(start, min(start + chunksize, items))


def _bare_text(error: BaseException) -> str:
    """An error of ours as text: its type and message (its traceback is the combine's)."""
    return "".join(traceback.format_exception_only(type(error), error))


def _unplaceable(problem: BaseException) -> Record:
    """A failure that belongs to no single item."""
    return Record(
        NO_ITEM, "error", error_payload(problem, item=None, traceback_text=_bare_text(problem))
    )


# --------------------------------------------------------------------------- reducing

_NOTHING: Final = object()


def _reduce(
    store: Store,
    job_id: str,
    merged: Iterator[Record],
    writer: RecordWriter,
    mode: Mode,
    summary: CombineSummary,
    task_id: str | None,
) -> None:
    """Fold the merged records with the job's reduce function; write one record."""

    def fail(index: int, error: BaseException, text: str | None = None) -> None:
        item = None if index == NO_ITEM else index
        payload = error_payload(error, item=item, task_id=task_id, traceback_text=text)
        writer.write(Record(index, "error", payload))
        summary.failed = True

    name = _names.reducer(job_id)
    try:
        function: Callable[[Any, Any], Any] = loads(store.get(name), what=_names.describe(name))
    except (ObjectNotFoundError, SerializationError) as error:
        fail(NO_ITEM, error, _bare_text(error))
        return
    what = _names.describe(_names.result(job_id))
    accumulated: Any = _NOTHING
    for record in merged:
        if record.status == "error" and (mode == "raise" or record.item == NO_ITEM):
            writer.write(record)  # the failure, as the chunk recorded it
            summary.failed = True
            return
        try:
            value = load_record(record, what=what)
        except SerializationError as error:
            if mode == "skip":
                summary.dropped += 1
                continue
            if mode == "raise":
                fail(record.item, error)
                return
            value = error
        try:
            accumulated = value if accumulated is _NOTHING else function(accumulated, value)
        except BaseException as error:  # the user's reduce failed: that is the result
            fail(record.item, error)
            return
    if accumulated is _NOTHING:
        fail(NO_ITEM, TypeError("nothing to reduce: no item produced a result"))
        return
    try:
        payload = pickle_payload(accumulated, what="the reduced value")
    except SerializationError as error:
        fail(NO_ITEM, error)
        return
    writer.write(Record(NO_ITEM, "ok", payload))
