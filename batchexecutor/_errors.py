"""The exceptions batchexecutor raises, in one tree::

    BatchExecutorError               base of everything below
    ├── SerializationError           an object cannot be pickled or unpickled (what, why)
    │   ├── VersionMismatchError     written by other python/cloudpickle/batchexecutor versions
    │   └── CorruptObjectError       a stored object is truncated or garbled
    ├── RemoteError                  an exception raised on a node: its type name, message
    │                                and traceback text, the item index and the task ID;
    │                                the ``__cause__`` of the exception re-raised locally
    ├── TaskFailedError              a task ended without an outcome (exit code, failure
    │                                information, the tail of its stderr)
    ├── OutputFilesError             a task ran, but Batch could not upload its output
    │                                files (its result is kept in the error)
    ├── StorageError                 the store failed (access denied, unreachable, ...)
    │   ├── ObjectNotFoundError      a stored object does not exist
    │   └── ObjectExistsError        a create-only write found the object already there
    └── JobError                     a job cannot be used as asked
        ├── JobNotFoundError         no such job (also a LookupError)
        ├── ForeignJobError          the job was not created by batchexecutor
        ├── IncompleteJobError       its submission was cut short (resume or delete it)
        ├── JobNotDoneError          its result was asked for while it still runs
        └── NodeEnvironmentError     the nodes cannot run its tasks: the job preparation
                                     task failed (a Python version other than the
                                     client's, a missing dependency ...)

    JobExistsError (a ValueError, from batchexecutor._jobs): the job ID is taken.

Every exception pickles with its message and attributes (they travel from nodes to the
client inside outcome objects), including subclasses whose ``__init__`` takes keyword-only
arguments, which plain ``BaseException`` pickling cannot rebuild.

Messages never contain secrets: stores describe objects by name and errors by
:func:`batchexecutor._retry.describe`, which masks SAS signatures and keys; text that
comes from a node (failure information, stderr) is masked here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "BatchExecutorError",
    "CorruptObjectError",
    "ForeignJobError",
    "IncompleteJobError",
    "JobError",
    "JobNotDoneError",
    "JobNotFoundError",
    "NodeEnvironmentError",
    "ObjectExistsError",
    "ObjectNotFoundError",
    "OutputFilesError",
    "RemoteError",
    "SerializationError",
    "StorageError",
    "TaskFailedError",
    "VersionMismatchError",
]


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    # BaseException.__new__ sets ``args`` without running the subclass's __init__, whose
    # signature differs from ``args``; the attributes come back from ``state``.
    error = cls.__new__(cls, *args)
    error.__dict__.update(state)
    return error


class BatchExecutorError(Exception):
    """Base class of batchexecutor's exceptions."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


# --------------------------------------------------------------------------- serialization


class SerializationError(BatchExecutorError):
    """``what`` could not be pickled (``action="pickle"``) or unpickled, because ``reason``.

    Raised in the caller for an unpicklable callable, argument or result, and for a
    stored object that cannot be loaded.
    """

    def __init__(
        self, what: str, reason: str, *, action: Literal["pickle", "unpickle"] = "pickle"
    ) -> None:
        self.what = what
        self.reason = reason
        self.action = action
        super().__init__(self._message())

    def _message(self) -> str:
        return f"cannot {self.action} {self.what}: {self.reason}"


class VersionMismatchError(SerializationError):
    """``what`` was written by other versions than the reader's.

    ``writer`` and ``reader`` map ``python`` (major.minor), ``cloudpickle`` and
    ``batchexecutor`` (or ``format``, the envelope's format number) to versions.
    cloudpickle payloads load only under the Python minor version and cloudpickle version
    that wrote them, so any difference is an error rather than a garbled unpickling.
    """

    def __init__(self, what: str, *, writer: Mapping[str, str], reader: Mapping[str, str]) -> None:
        self.writer = dict(writer)
        self.reader = dict(reader)
        differing = [key for key in reader if writer.get(key) != reader[key]]
        self.differing = differing
        super().__init__(what, ", ".join(differing) or "versions differ", action="unpickle")

    def _message(self) -> str:
        def show(versions: Mapping[str, str]) -> str:
            return ", ".join(f"{key} {versions.get(key, '?')}" for key in self.reader)

        return (
            f"cannot unpickle {self.what}: it was written by {show(self.writer)} but is read "
            f"by {show(self.reader)} ({self.reason} differ); install the same Python "
            "minor version, cloudpickle and batchexecutor on the client and on the pool's "
            "nodes (e.g. in the pool's start task)"
        )


class CorruptObjectError(SerializationError):
    """The stored object ``what`` is truncated or garbled (``reason`` says how)."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(what, reason, action="unpickle")

    def _message(self) -> str:
        return f"{self.what} is corrupt: {self.reason}"


# --------------------------------------------------------------------------- remote failures


class RemoteError(BatchExecutorError):
    """An exception raised on a node, as text: it survives any pickling trouble.

    ``type_name`` is the remote exception's qualified class name, ``message`` its
    ``str()``, ``traceback`` the formatted traceback; ``item`` is the item's index in the
    job (``None`` when the failure concerns no single item) and ``task_id`` the Batch
    task it ran in (``None`` outside Batch). ``unpicklable`` is set when the exception
    itself could not be carried over, and says why; this error then stands in for it.

    Like ``concurrent.futures.process._RemoteTraceback`` it becomes the ``__cause__`` of
    the exception re-raised locally, so the remote traceback prints with it.
    """

    def __init__(
        self,
        type_name: str,
        message: str,
        traceback: str,
        *,
        item: int | None = None,
        task_id: str | None = None,
        unpicklable: str | None = None,
    ) -> None:
        self.type_name = type_name
        self.message = message
        self.traceback = traceback
        self.item = item
        self.task_id = task_id
        self.unpicklable = unpicklable
        where = []
        if item is not None:
            where.append(f"item {item}")
        if task_id is not None:
            where.append(f"task {task_id!r}")
        head = f"{type_name} raised remotely" + (f" by {' in '.join(where)}" if where else "")
        if unpicklable is not None:
            head += f" (the exception itself could not be carried over: {unpicklable})"
        super().__init__(f'{head}\n"""\n{traceback.rstrip()}\n"""')


class TaskFailedError(BatchExecutorError):
    """A task ended without an outcome: killed, out of memory, ``os._exit``, timed out.

    ``exit_code``, ``failure_info`` (Batch's failure category, code and message) and
    ``stderr_tail`` (the last lines of its stderr) say what is known; ``chunk`` is the
    chunk the task ran, ``reason`` a short explanation when the cause is known.
    """

    def __init__(
        self,
        *,
        job_id: str | None = None,
        task_id: str | None = None,
        chunk: int | None = None,
        exit_code: int | None = None,
        failure_info: str | None = None,
        stderr_tail: str | None = None,
        reason: str | None = None,
    ) -> None:
        if failure_info or stderr_tail:
            # Node output may echo a command line or environment, so mask secrets in it.
            # Imported here: _retry pulls in azure-core, which a node's worker must not
            # need for a local store (and never gets here without such text).
            from ._retry import redact

            failure_info = redact(failure_info) if failure_info else failure_info
            stderr_tail = redact(stderr_tail) if stderr_tail else stderr_tail
        self.job_id = job_id
        self.task_id = task_id
        self.chunk = chunk
        self.exit_code = exit_code
        self.failure_info = failure_info
        self.stderr_tail = stderr_tail
        self.reason = reason
        if task_id is not None:
            subject = f"task {task_id!r}" + (f" (chunk {chunk})" if chunk is not None else "")
        else:
            subject = f"the task of chunk {chunk}" if chunk is not None else "a task"
        if job_id is not None:
            subject += f" of job {job_id!r}"
        parts = [f"{subject} ended without an outcome"]
        if reason:
            parts[0] += f" ({reason})"
        if exit_code is not None:
            parts.append(f"exit code {exit_code}")
        if failure_info:
            parts.append(f"failure: {failure_info}")
        message = "; ".join(parts)
        if stderr_tail:
            message += "\nstderr (last lines):\n" + _indent(stderr_tail.rstrip())
        super().__init__(message)


class OutputFilesError(BatchExecutorError):
    """A task ran, but Batch could not upload its output files (``OutputFile``): e.g. a
    destination whose SAS lacks write permission or expired, or a container that does not
    exist. ``failure_info`` is Batch's failure (category, code such as
    ``FileUploadAccessDenied``, message); the node's ``fileuploaderr.txt`` in the task's
    directory says more. Nothing is lost: ``result`` holds what the future would have
    returned had the uploads succeeded."""

    def __init__(
        self,
        *,
        job_id: str,
        task_id: str,
        failure_info: str,
        result: Any = None,
    ) -> None:
        from ._retry import redact  # as in TaskFailedError: node text, masked

        self.job_id = job_id
        self.task_id = task_id
        self.failure_info = redact(failure_info)
        self.result = result
        super().__init__(
            f"task {task_id!r} of job {job_id!r} ran, but Batch could not upload its output "
            f"files: {self.failure_info}. Its result is this error's .result; the node's "
            "fileuploaderr.txt (in the task's directory) says more"
        )


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


# --------------------------------------------------------------------------- storage


class StorageError(BatchExecutorError):
    """A store operation failed. ``name`` is the stored object concerned, if any.

    The message describes the object by name and the failure without secrets.
    """

    def __init__(self, message: str, *, name: str | None = None) -> None:
        self.name = name
        super().__init__(message)


class ObjectNotFoundError(StorageError):
    """The stored object ``name`` does not exist."""


class ObjectExistsError(StorageError):
    """A write with ``overwrite=False`` found ``name`` already stored."""


# --------------------------------------------------------------------------- jobs


class JobError(BatchExecutorError):
    """A job cannot be used as asked. ``job_id`` names it."""

    def __init__(self, message: str, *, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(message)


class JobNotFoundError(JobError, LookupError):
    """No job with this ID exists (in Batch, nor in storage)."""


class ForeignJobError(JobError):
    """The job exists but was not created by batchexecutor (it has no such metadata)."""


class IncompleteJobError(JobError):
    """The job's submission was cut short: not every task was added.

    ``added`` tasks are in the job; ``planned`` is the item count recorded at submission
    (``None`` when the iterables had no length). Resume it with the same function and
    iterables (``AzureBatchExecutor.resume``), or delete it.
    """

    def __init__(
        self, message: str, *, job_id: str, added: int = 0, planned: int | None = None
    ) -> None:
        self.added = added
        self.planned = planned
        super().__init__(message, job_id=job_id)


class JobNotDoneError(JobError):
    """The job's result was asked for while some of its tasks have not completed."""


def job_ended(job_id: str, reason: str | None, *, done: int | None = None) -> JobError:
    """The error of work whose job ended (was terminated) before it ran."""
    why = f" ({reason})" if reason else ""
    so_far = f"; {done} of its tasks had completed" if done is not None else ""
    return JobError(
        f"job {job_id!r} ended{why} before this work ran{so_far}. The results of its "
        "finished tasks stay readable: executor.partial_results(job_id)",
        job_id=job_id,
    )


class NodeEnvironmentError(JobError):
    """The pool's nodes cannot run the job's tasks: its job preparation task, which checks
    the node's Python version and installs the client's build, failed on ``node_id``
    (``exit_code``; ``stderr``, the end of its standard error, says why). Raised before
    any of the job's tasks ran there; the job is terminated."""

    def __init__(
        self, message: str, *, job_id: str, node_id: str, exit_code: int | None, stderr: str
    ) -> None:
        self.node_id = node_id
        self.exit_code = exit_code
        self.stderr = stderr
        super().__init__(message, job_id=job_id)
