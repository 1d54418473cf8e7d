"""The node side: ``python3 -m batchexecutor.worker``, the command line of every task.

::

    python3 -m batchexecutor.worker run --job JOB_ID --chunk N [--pack P --offset O --length L]
    python3 -m batchexecutor.worker combine --job JOB_ID --chunks N [--mode raise|skip|return]
                                            [--reduce]

Both take ``--store LOCATOR`` or, better, read it from ``$BATCHEXECUTOR_STORE``: a blob
locator holds a SAS, which the environment keeps out of ``ps`` listings, and a job's
``commonEnvironmentSettings`` sets it once for all its tasks.

``run`` reads chunk N's input (:func:`batchexecutor._names.chunk_input`, or ``LENGTH``
bytes at ``OFFSET`` of input pack P), calls each item's function (its own, or the job's
:func:`~batchexecutor._names.function`) and writes the chunk's outcome atomically: for
each item, its result, or its exception with the traceback text. An exception that
cannot be pickled travels as a :class:`~batchexecutor._errors.RemoteError` carrying that
text; a result that cannot be pickled becomes a
:class:`~batchexecutor._errors.SerializationError` for its item; an input written by
other versions fails every item with a
:class:`~batchexecutor._errors.VersionMismatchError`.

``combine`` runs :func:`batchexecutor._combine.combine`.

Exit codes: 0 success (``run``: every item succeeded; ``combine``: reading the result
will not raise), 1 failures recorded in the stored outcome or result, 2 bad usage, 74
the store failed (nothing stored; the task may be retried). A task that dies before
storing its outcome (``os._exit``, killed, out of memory) stores nothing at all, so an
outcome is always complete.

This module knows nothing of the emulator, and imports no Azure package unless the
store is a blob container.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final, NamedTuple

from . import _names
from ._combine import MODES, combine
from ._errors import ObjectNotFoundError, SerializationError, StorageError
from ._serialize import (
    NO_ITEM,
    Record,
    RecordReader,
    RecordWriter,
    error_payload,
    load_call,
    loads,
    pickle_payload,
)
from ._storage import Store, open_store

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_STORAGE",
    "EXIT_USAGE",
    "STORE_ENV",
    "InputPack",
    "main",
    "run_chunk",
]

#: The environment variable holding the store locator when ``--store`` is not given.
STORE_ENV: Final = "BATCHEXECUTOR_STORE"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_STORAGE: Final = 74  # EX_IOERR
_SHOWN_FAILURES = 3  # tracebacks echoed to stderr, for whoever reads the task's files


class InputPack(NamedTuple):
    """Where a chunk's input sits inside a pack of several chunks' inputs."""

    pack: int
    offset: int
    length: int


@dataclass
class _Chunk:
    """One run: where things are, and what happened."""

    store: Store
    job_id: str
    chunk: int
    task_id: str | None
    items: int = 0
    failed: int = 0
    _function: Callable[..., Any] | BaseException | None = None

    def job_function(self) -> Callable[..., Any] | BaseException:
        """The job's function, loaded on first use, or why it cannot be (kept for every item)."""
        if self._function is None:
            name = _names.function(self.job_id)
            try:
                self._function = loads(self.store.get(name), what=_names.describe(name))
            except (ObjectNotFoundError, SerializationError) as error:
                self._function = error
        return self._function

    def failure(self, index: int, error: BaseException, *, bare: bool = False) -> Record:
        """An error record; ``bare`` for errors of ours, whose traceback is noise."""
        self.failed += 1
        text: str | None = None
        if bare:
            text = "".join(traceback.format_exception_only(type(error), error))
        else:
            tb = error.__traceback__
            if tb is not None and tb.tb_next is not None:
                tb = tb.tb_next  # drop the worker's own frame: the traceback starts in user code
            text = "".join(traceback.format_exception(type(error), error, tb))
        if self.failed <= _SHOWN_FAILURES:
            subject = f"chunk {self.chunk}" if index == NO_ITEM else f"item {index}"
            print(f"{subject} failed:\n{text}", file=sys.stderr, end="")
        item = None if index == NO_ITEM else index
        return Record(
            index,
            "error",
            error_payload(error, item=item, task_id=self.task_id, traceback_text=text),
        )

    def run(self, record: Record) -> Record:
        """The outcome of one input record."""
        index = record.item
        self.items += 1
        try:
            fn, args, kwargs = load_call(record.payload, what=f"the call of item {index}")
        except SerializationError as error:
            return self.failure(index, error, bare=True)
        function = self.job_function() if fn is None else fn
        if isinstance(function, BaseException):
            return self.failure(index, function, bare=True)
        try:
            result = function(*args, **kwargs)
        except BaseException as error:  # as ProcessPoolExecutor: SystemExit is an outcome too
            return self.failure(index, error)
        try:
            what = f"the result of item {index} (a {type(result).__name__})"
            return Record(index, "ok", pickle_payload(result, what=what))
        except SerializationError as error:  # its message has the reason; the rest is noise
            return self.failure(index, error, bare=True)


def run_chunk(
    store: Store,
    job_id: str,
    chunk: int,
    *,
    pack: InputPack | None = None,
    task_id: str | None = None,
) -> tuple[int, int]:
    """Run chunk ``chunk`` of ``job_id`` and store its outcome: ``(items, failed)``.

    Raises :class:`StorageError` when the store fails (no outcome is stored then).
    """
    state = _Chunk(store, job_id, chunk, task_id)
    info = {"kind": "outcome", "job": job_id, "chunk": chunk, "task": task_id}
    with store.writer(_names.chunk_outcome(job_id, chunk)) as file:
        writer = RecordWriter(file, info=info)
        try:
            source, what = _open_input(store, job_id, chunk, pack)
        except ObjectNotFoundError as error:  # a broken job: say so in the outcome
            writer.write(state.failure(NO_ITEM, error, bare=True))
        else:
            with source:
                _run_all(state, source, what, writer)
        writer.close({"items": state.items, "failed": state.failed})
    return state.items, state.failed


def _open_input(
    store: Store, job_id: str, chunk: int, pack: InputPack | None
) -> tuple[IO[bytes], str]:
    """The chunk's input as a stream, and its description."""
    if pack is None:
        name = _names.chunk_input(job_id, chunk)
        return store.open(name), _names.describe(name)
    name = _names.input_pack(job_id, pack.pack)
    what = f"input of chunk {chunk} (bytes {pack.offset}+{pack.length} of {_names.describe(name)})"
    return io.BytesIO(store.get_range(name, pack.offset, pack.length)), what


def _run_all(state: _Chunk, source: IO[bytes], what: str, writer: RecordWriter) -> None:
    """Run every input record of ``source`` into ``writer``, as it is read."""
    try:
        reader = RecordReader(source, what=what)
        mismatch = reader.mismatch()
        for record in reader:
            if mismatch is not None:
                state.items += 1
                writer.write(state.failure(record.item, mismatch, bare=True))
            else:
                writer.write(state.run(record))
    except SerializationError as error:
        # The input is unreadable from here on: the items run so far keep their
        # outcomes, and one record without an item stands for the rest.
        writer.write(state.failure(NO_ITEM, error, bare=True))


# --------------------------------------------------------------------------- command line


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m batchexecutor.worker",
        description="Run a batchexecutor chunk or combine on a node.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser("run", help="run one chunk of a job and store its outcome")
    merge = commands.add_parser("combine", help="merge a job's chunk outcomes into its result")
    for command in (run, merge):
        command.add_argument(
            "--store",
            metavar="LOCATOR",
            help=f"the job's store (default: ${STORE_ENV}; prefer it, a locator may hold a SAS)",
        )
        command.add_argument("--job", required=True, metavar="JOB_ID", help="the job's ID")
    run.add_argument("--chunk", required=True, type=_non_negative, metavar="N")
    pack = run.add_argument_group("input inside a pack (all three, or none)")
    pack.add_argument("--pack", type=_non_negative, metavar="P", help="input pack number")
    pack.add_argument("--offset", type=_non_negative, metavar="O", help="byte offset in the pack")
    pack.add_argument("--length", type=_non_negative, metavar="L", help="bytes of input")
    merge.add_argument("--chunks", required=True, type=_non_negative, metavar="N")
    merge.add_argument("--mode", choices=MODES, default="raise", help="error mode")
    merge.add_argument("--reduce", action="store_true", help="fold with the job's reduce function")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    locator = args.store or os.environ.get(STORE_ENV)
    if not locator:
        parser.error(f"--store or ${STORE_ENV} is required")
    try:
        _names.check_job_id(args.job)
    except ValueError as error:
        parser.error(str(error))
    task_id = os.environ.get("AZ_BATCH_TASK_ID") or None
    try:
        store = open_store(locator)
        if args.command == "run":
            pack_args = (args.pack, args.offset, args.length)
            if any(value is not None for value in pack_args):
                if any(value is None for value in pack_args):
                    parser.error("--pack, --offset and --length go together")
                pack = InputPack(args.pack, args.offset, args.length)
            else:
                pack = None
            items, failed = run_chunk(store, args.job, args.chunk, pack=pack, task_id=task_id)
            print(f"chunk {args.chunk} of job {args.job}: {items} items, {failed} failed")
            return EXIT_FAILED if failed else EXIT_OK
        summary = combine(
            store, args.job, args.chunks, mode=args.mode, reduce=args.reduce, task_id=task_id
        )
        print(
            f"job {args.job}: combined {args.chunks} chunks into {summary.records} records "
            f"({summary.failed_items} failed items, {summary.dropped} dropped, "
            f"{len(summary.broken_chunks)} broken chunks)"
        )
        return EXIT_FAILED if summary.failed else EXIT_OK
    except ValueError as error:  # a malformed locator
        print(f"batchexecutor.worker: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (StorageError, OSError) as error:
        print(f"batchexecutor.worker: {error}", file=sys.stderr)
        return EXIT_STORAGE


if __name__ == "__main__":
    sys.exit(main())
