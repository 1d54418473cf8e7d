"""Managing jobs from any process: attach, resume, inspect, list, results, logs, delete.

Everything is read back from Batch (job metadata, task states, task files) and storage
(outcomes, results): no local state file, so a job submitted by one process, on one
machine, is managed from another, days later (doAzureParallel's "long running job"
guide, in Python). Each function takes the executor's :class:`Context`.

* :func:`job_info` -- metadata and task counts (two requests).
* :func:`list_jobs` -- one paged list of jobs, plus one task-counts request per job.
* :func:`attach` -- a live JobFuture for a job (or one ``submit()`` task).
* :func:`resume` -- finish a submission cut short (the same function and iterables).
* :func:`job_result`, :func:`partial_results` -- results, complete or so far.
* :func:`job_logs`, :func:`terminate`, :func:`delete` -- the rest of the guide.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from azure.core.exceptions import ResourceNotFoundError

from . import _names
from ._batch import (
    CompletedTask,
    TaskCounts,
    delete_job,
    state_text,
    task_counts,
    terminate_job,
    terminate_task_if_active,
)
from ._combine import MODES, Mode
from ._errors import (
    ForeignJobError,
    IncompleteJobError,
    JobNotDoneError,
    JobNotFoundError,
    ObjectNotFoundError,
)
from ._future import JobFuture
from ._jobs import COMBINE_TASK, METADATA_PREFIX
from ._mapjob import MapJob, submit_tasks
from ._poller import Watch
from ._results import submit_outcome, task_failure, values
from ._retry import call, error_code
from ._serialize import dumps, load_record
from ._submitter import resolve_task

if TYPE_CHECKING:
    from ._context import Context

__all__ = [
    "JobInfo",
    "JobSummary",
    "TaskLog",
    "attach",
    "delete",
    "format_jobs",
    "job_info",
    "job_logs",
    "job_result",
    "list_jobs",
    "partial_results",
    "resume",
    "terminate",
]

_JOB_FIELDS = ["id", "state", "metadata", "creationTime", "executionInfo"]
_LOG_TAIL = 1 << 20  # bytes of each task file job_logs reads at most


@dataclass(frozen=True)
class JobInfo:
    """A job as ``get_job`` describes it: its metadata and its task counts."""

    job_id: str
    state: str
    created: datetime | None
    metadata: Mapping[str, str]
    """The ``batchexecutor.*`` metadata, without the prefix (empty for a foreign job)."""
    counts: TaskCounts
    terminate_reason: str | None = None

    @property
    def kind(self) -> str | None:
        """``"map"``, ``"submit"``, or ``None`` for a job batchexecutor did not create."""
        return self.metadata.get("kind")

    @property
    def chunksize(self) -> int | None:
        return _int(self.metadata.get("chunksize"))

    @property
    def combine(self) -> bool:
        return self.metadata.get("combine") == "true"

    @property
    def reduce(self) -> str | None:
        return self.metadata.get("reduce")

    @property
    def errors(self) -> Mode:
        mode = self.metadata.get("errors", "raise")
        return cast(Mode, mode if mode in MODES else "raise")

    @property
    def function(self) -> str | None:
        return self.metadata.get("function")

    @property
    def items(self) -> int | None:
        return _int(self.metadata.get("items"))

    @property
    def chunks(self) -> int | None:
        return _int(self.metadata.get("chunks"))

    @property
    def planned(self) -> int | None:
        return _int(self.metadata.get("planned"))

    @property
    def submitted(self) -> bool:
        """Whether every task was added (``False``: the submission was cut short)."""
        return self.kind == "submit" or self.metadata.get("submitted") == "complete"

    @property
    def versions(self) -> dict[str, str]:
        return {
            name: self.metadata[key]
            for name, key in (
                ("batchexecutor", "version"),
                ("python", "python"),
                ("cloudpickle", "cloudpickle"),
            )
            if key in self.metadata
        }

    def __str__(self) -> str:
        counts = self.counts
        lines = [f"job {self.job_id} ({self.state})", "job metadata:"]
        if self.kind is None:
            lines.append("    (not a batchexecutor job)")
        else:
            shown = {
                "kind": self.kind,
                "function": self.function,
                "chunkSize": self.chunksize,
                "enableCloudCombine": "TRUE" if self.combine else "FALSE",
                "reduce": self.reduce,
                "errors": self.errors,
                "items": self.items if self.submitted else "? (submission incomplete)",
                "created": self.created.isoformat(timespec="seconds") if self.created else None,
                "versions": ", ".join(f"{k} {v}" for k, v in self.versions.items()),
            }
            lines += [f"    {name}: {value}" for name, value in shown.items() if value is not None]
        lines += [
            "",
            "tasks:",
            f"    active: {counts.active}",
            f"    running: {counts.running}",
            f"    completed: {counts.completed}",
            f"        succeeded: {counts.succeeded}",
            f"        failed: {counts.failed}",
            f"    total: {counts.total}",
        ]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        counts = self.counts
        return {
            "id": self.job_id,
            "state": self.state,
            "created": self.created.isoformat() if self.created else None,
            "metadata": dict(self.metadata),
            "submitted": self.submitted,
            "tasks": {
                "active": counts.active,
                "running": counts.running,
                "completed": counts.completed,
                "succeeded": counts.succeeded,
                "failed": counts.failed,
                "total": counts.total,
            },
        }


@dataclass(frozen=True)
class JobSummary:
    """One row of :func:`list_jobs`: the guide's Id, State, Status, FailedTasks, TotalTasks."""

    job_id: str
    state: str
    kind: str | None
    created: datetime | None
    failed_tasks: int
    total_tasks: int
    completed_tasks: int

    @property
    def status(self) -> str:
        if not self.total_tasks:
            return "No tasks in the job"
        return f"{self.completed_tasks * 100 // self.total_tasks} %"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.job_id,
            "state": self.state,
            "kind": self.kind,
            "created": self.created.isoformat() if self.created else None,
            "status": self.status,
            "failed_tasks": self.failed_tasks,
            "total_tasks": self.total_tasks,
            "completed_tasks": self.completed_tasks,
        }


def format_jobs(jobs: Sequence[JobSummary]) -> str:
    """The guide's ``getJobList()`` table."""
    rows = [("", "Id", "State", "Status", "FailedTasks", "TotalTasks")]
    for number, job in enumerate(jobs, 1):
        rows.append(
            (
                str(number),
                job.job_id,
                job.state,
                job.status,
                str(job.failed_tasks),
                str(job.total_tasks),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        " ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows
    )


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _metadata(items: Iterable[Any] | None) -> dict[str, str]:
    return {
        item.name[len(METADATA_PREFIX) :]: item.value
        for item in items or ()
        if item.name.startswith(METADATA_PREFIX)
    }


def _get_job(context: Context, job_id: str) -> Any:
    _names.check_job_id(job_id)
    try:
        return call(
            f"get job {job_id!r}",
            context.client.get_job,
            job_id,
            select=_JOB_FIELDS,
            deadline=context.deadline,
        )
    except ResourceNotFoundError as error:
        if error_code(error) in ("JobNotFound", None):
            raise JobNotFoundError(
                f"no job {job_id!r} in the Batch account at {context.endpoint}", job_id=job_id
            ) from None
        raise


def job_info(context: Context, job_id: str) -> JobInfo:
    """The job's metadata and task counts (two requests)."""
    job = _get_job(context, job_id)
    counts = task_counts(context.client, job_id, deadline=context.deadline)
    info = job.execution_info
    return JobInfo(
        job_id=job_id,
        state=state_text(job.state),
        created=job.creation_time,
        metadata=_metadata(job.metadata),
        counts=counts,
        terminate_reason=getattr(info, "termination_reason", None) if info else None,
    )


def list_jobs(
    context: Context, states: Sequence[str] = ("active", "completed")
) -> list[JobSummary]:
    """The account's jobs in ``states``, oldest first: one paged list, one counts request each."""
    known = {"active", "disabling", "disabled", "enabling", "terminating", "completed", "deleting"}
    for state in states:
        if state not in known:
            raise ValueError(f"unknown job state {state!r}: use some of {', '.join(sorted(known))}")
    query = " or ".join(f"state eq '{state}'" for state in states)
    jobs = call(
        "list jobs",
        lambda: list(
            context.client.list_jobs(
                filter=query or None, select=["id", "state", "metadata", "creationTime"]
            )
        ),
        deadline=context.deadline,
    )
    summaries = []
    for job in jobs:
        try:
            counts = task_counts(context.client, job.id, deadline=context.deadline)
        except ResourceNotFoundError:  # deleted meanwhile
            continue
        summaries.append(
            JobSummary(
                job_id=job.id,
                state=state_text(job.state),
                kind=_metadata(job.metadata).get("kind"),
                created=job.creation_time,
                failed_tasks=counts.failed,
                total_tasks=counts.total,
                completed_tasks=counts.completed,
            )
        )
    summaries.sort(key=lambda s: (s.created.timestamp() if s.created else 0.0, s.job_id))
    return summaries


def _batchexecutor_job(context: Context, job_id: str) -> JobInfo:
    info = job_info(context, job_id)
    if info.kind not in ("map", "submit"):
        raise ForeignJobError(
            f"job {job_id!r} was not created by batchexecutor (it has no batchexecutor.* "
            "metadata): manage it with the Azure tools instead",
            job_id=job_id,
        )
    return info


def _incomplete(info: JobInfo) -> IncompleteJobError:
    planned = f" of {info.planned} planned items" if info.planned is not None else ""
    return IncompleteJobError(
        f"the submission of job {info.job_id!r} was cut short: {info.counts.total} tasks were "
        f"added{planned}, and its result would miss items. Resume it with "
        "executor.resume(job_id, fn, *iterables) (the same function and iterables), or "
        "delete it with executor.delete_job(job_id)",
        job_id=info.job_id,
        added=info.counts.total,
        planned=info.planned,
    )


def _map_job(context: Context, info: JobInfo, future: JobFuture[Any] | None) -> MapJob:
    assert info.chunksize is not None
    job = MapJob(
        context,
        info.job_id,
        chunksize=info.chunksize,
        combine=info.combine,
        reduce=info.reduce is not None,
        mode=info.errors,
        future=future,
    )
    job.prepared = True  # it may have a job preparation task: check it if tasks stall
    if future is not None:
        future._canceller = job.cancel
    return job


# --------------------------------------------------------------------------- attach


class AttachedTasks(Watch):
    """Futures of ``submit()`` tasks attached in this process, one watch per job."""

    def __init__(self, context: Context, job_id: str) -> None:
        super().__init__(job_id)
        self.context = context
        self.lock = threading.Lock()
        self.futures: dict[str, JobFuture[Any]] = {}

    def add(self, future: JobFuture[Any]) -> None:
        assert future.task_id is not None
        with self.lock:
            self.futures[future.task_id] = future

    @property
    def finished(self) -> bool:
        with self.lock:
            return not self.futures

    def on_completed(self, tasks: Sequence[CompletedTask]) -> None:
        for task in tasks:
            with self.lock:
                future = self.futures.pop(task.id, None)
            if future is not None:
                self.context.background(
                    functools.partial(resolve_task, self.context, self.job_id, future, task)
                )

    def on_ended(self, reason: str | None) -> None:
        from ._errors import job_ended

        self.on_lost(job_ended(self.job_id, reason))

    def on_lost(self, error: BaseException) -> None:
        from ._submitter import _failure, settle

        with self.lock:
            futures = list(self.futures.values())
            self.futures.clear()
        for future in futures:
            settle(future, False, _failure(f"job {self.job_id!r} can no longer be followed", error))


def _cancel_task(context: Context, job_id: str) -> Callable[[JobFuture[Any]], bool]:
    def cancel(future: JobFuture[Any]) -> bool:
        assert future.task_id is not None
        return terminate_task_if_active(
            context.client, job_id, future.task_id, deadline=context.deadline
        )

    return cancel


def attach(
    context: Context, job_id: str, task_id: str | None, watches: dict[str, AttachedTasks]
) -> JobFuture[Any]:
    """A live future for job ``job_id`` (a ``map``), or for its task ``task_id`` (``submit``)."""
    info = _batchexecutor_job(context, job_id)
    future: JobFuture[Any] = JobFuture(
        job_id, task_id, endpoint=context.endpoint, store=context.store_reference
    )
    if task_id is None:
        if info.kind == "submit":
            raise ValueError(
                f"job {job_id!r} holds submit() calls, one task each: attach one of them "
                "with attach(job_id, task_id)"
            )
        if not info.submitted:
            raise _incomplete(info)
        job = _map_job(context, info, future)
        assert info.chunks is not None and info.items is not None
        job.submitted(info.chunks, info.items)
        context.poller.watch(job)
        return future
    if info.kind != "submit":
        raise ValueError(
            f"job {job_id!r} is a map: attach the whole job with attach(job_id), without a task ID"
        )
    try:
        call(
            f"get task {task_id!r} of job {job_id!r}",
            context.client.get_task,
            job_id,
            task_id,
            select=["id"],
            deadline=context.deadline,
        )
    except ResourceNotFoundError:
        raise JobNotFoundError(f"job {job_id!r} has no task {task_id!r}", job_id=job_id) from None
    future._canceller = _cancel_task(context, job_id)
    watch = watches.get(job_id)
    if watch is None or watch.finished:
        watch = watches[job_id] = AttachedTasks(context, job_id)
        watch.prepared = True  # as in _map_job
        watch.add(future)
        context.poller.watch(watch)
    else:
        watch.add(future)
        watch.cursor = type(watch.cursor)()  # rescan: the task may have completed already
        context.poller.wake()
    return future


def resume(
    context: Context, job_id: str, fn: Callable[..., Any], iterables: Sequence[Iterable[Any]]
) -> JobFuture[Any]:
    """Add the tasks a cut-short submission left out, then follow the job.

    ``fn`` and ``iterables`` must be those of the original call: chunks are numbered in
    item order, so the chunks already added are skipped and the rest are added now.
    """
    info = _batchexecutor_job(context, job_id)
    if info.kind != "map":
        raise ValueError(f"job {job_id!r} is not a map job: only a map's submission resumes")
    if info.submitted:
        raise ValueError(f"job {job_id!r} was submitted completely: attach it instead")
    existing = frozenset(
        task.id
        for task in call(
            f"list the tasks of job {job_id!r}",
            lambda: list(context.client.list_tasks(job_id, select=["id"])),
            deadline=context.deadline,
        )
    )
    packs = context.store.list_names(_names.job_prefix(job_id) + "packs/")
    first_pack = 1 + max((int(name.rsplit("/", 1)[1]) for name in packs), default=-1)
    future: JobFuture[Any] = JobFuture(
        job_id, None, endpoint=context.endpoint, store=context.store_reference
    )
    job = _map_job(context, info, future)
    fields = dict(info.metadata)
    function_blob = dumps(fn, what="the function of the resumed map", info={"job": job_id})
    submit_tasks(
        context, job, function_blob, iterables, fields, existing=existing, first_pack=first_pack
    )
    return future


# --------------------------------------------------------------------------- results


def _check_done(context: Context, info: JobInfo) -> None:
    """Raise :class:`JobNotDoneError` unless every task is completed (listed, not counted:
    Batch's counts may lag) or the job has ended (terminated: its tasks that never ran
    stay active for ever, and stand for failures)."""
    if info.state == "completed":
        return
    unfinished = call(
        f"list the unfinished tasks of job {info.job_id!r}",
        lambda: next(
            iter(
                context.client.list_tasks(
                    info.job_id, filter="state ne 'completed'", select=["id"], max_results=1
                )
            ),
            None,
        ),
        deadline=context.deadline,
    )
    if unfinished is not None:
        counts = info.counts
        raise JobNotDoneError(
            f"job {info.job_id!r} is still running: {counts.completed} of {counts.total} tasks "
            "completed. Wait for it (executor.attach(job_id).result()) or read what is done "
            "with executor.partial_results(job_id)",
            job_id=info.job_id,
        )


def job_result(context: Context, job_id: str, errors: Mode | None = None) -> Any:
    """The job's result: a map's list (or reduced value); a submit job's outcomes in order."""
    if errors is not None and errors not in MODES:
        raise ValueError(f"errors must be one of {', '.join(map(repr, MODES))}, got {errors!r}")
    info = _batchexecutor_job(context, job_id)
    if not info.submitted:
        raise _incomplete(info)
    _check_done(context, info)
    if info.kind == "submit":
        return list(_submit_values(context, info, errors or "return"))
    job = _map_job(context, info, None)
    assert info.chunks is not None and info.items is not None
    job.chunks, job.items = info.chunks, info.items
    if job.combine:
        from ._batch import completed_task

        job.combined = completed_task(
            context.client, job_id, COMBINE_TASK, deadline=context.deadline
        )
    mode = errors or info.errors
    what = f"the result of job {job_id!r}"
    if job.reduce:
        if errors is not None and errors != info.errors:
            raise ValueError(
                f"job {job_id!r} was reduced in the cloud with errors={info.errors!r}; "
                "its result cannot be read with another error mode"
            )
        outcome = list(values(job.records(), what=what, mode="raise"))
        return outcome[0] if outcome else None
    if job.combine and mode != info.errors:
        job.combine = False  # the combined result applied another mode: read the chunks
    job.mode = mode
    return list(values(job.records(), what=what, mode=mode))


def _submit_values(context: Context, info: JobInfo, mode: Mode) -> Iterator[Any]:
    tasks = call(
        f"list the tasks of job {info.job_id!r}",
        lambda: list(context.client.list_tasks(info.job_id, select=["id"])),
        deadline=context.deadline,
    )
    for task_id in sorted((t.id for t in tasks if t.id.isdigit()), key=int):
        try:
            ok, value = submit_outcome(context.store, info.job_id, int(task_id))
        except ObjectNotFoundError:
            from ._batch import completed_task

            done = completed_task(context.client, info.job_id, task_id, deadline=context.deadline)
            assert done is not None
            ok, value = (
                False,
                task_failure(context.client, info.job_id, done, deadline=context.deadline),
            )
        if ok or mode == "return":
            yield value
        elif mode == "raise":
            raise value


def partial_results(context: Context, job_id: str) -> Iterator[tuple[int, Any]]:
    """``(item index, value or exception)`` of every item whose chunk has completed so far,
    in item order; the job may still run."""
    info = _batchexecutor_job(context, job_id)
    done = call(
        f"list the completed tasks of job {job_id!r}",
        lambda: list(
            context.client.list_tasks(job_id, filter="state eq 'completed'", select=["id"])
        ),
        deadline=context.deadline,
    )
    chunks = sorted(int(task.id) for task in done if task.id.isdigit())
    for chunk in chunks:
        name = _names.chunk_outcome(job_id, chunk)
        try:
            with context.store.open(name) as stream:
                from ._serialize import iter_records

                for record in iter_records(stream, what=_names.describe(name)):
                    if record.item >= 0:
                        yield record.item, load_record(record, what=_names.describe(name))
        except ObjectNotFoundError:
            continue  # died without an outcome: its items are not results
    del info


# --------------------------------------------------------------------------- the rest


@dataclass(frozen=True)
class TaskLog:
    """A task's state, exit code and output files (the last MiB of each)."""

    task_id: str
    state: str
    exit_code: int | None
    stdout: str
    stderr: str
    failure: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        head = f"task {self.task_id} ({self.state}, exit code {self.exit_code})"
        if self.failure:
            head += f": {self.failure}"
        return f"{head}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


def _read_file(context: Context, job_id: str, task_id: str, name: str) -> str:
    client = context.client

    def fetch() -> str:
        try:
            size = client.get_task_file_properties(job_id, task_id, name).content_length or 0
        except ResourceNotFoundError:
            return ""
        if not size:
            return ""
        start = max(0, size - _LOG_TAIL)
        data = b"".join(
            client.download_task_file(job_id, task_id, name, ocp_range=f"bytes={start}-{size - 1}")
        )
        return data.decode("utf-8", "replace")

    from ._retry import redact

    return redact(call(f"read {name} of task {task_id!r}", fetch, deadline=context.deadline))


def job_logs(context: Context, job_id: str, task_id: str | None = None) -> list[TaskLog]:
    """The output of ``task_id``; without it, of the job's failed tasks (none: empty)."""
    _get_job(context, job_id)
    if task_id is not None:
        try:
            tasks = [
                call(
                    f"get task {task_id!r}",
                    context.client.get_task,
                    job_id,
                    task_id,
                    select=["id", "state", "executionInfo"],
                    deadline=context.deadline,
                )
            ]
        except ResourceNotFoundError:
            raise JobNotFoundError(
                f"job {job_id!r} has no task {task_id!r}", job_id=job_id
            ) from None
    else:
        tasks = call(
            f"list the failed tasks of job {job_id!r}",
            lambda: list(
                context.client.list_tasks(
                    job_id,
                    filter="executionInfo/result eq 'failure'",
                    select=["id", "state", "executionInfo"],
                )
            ),
            deadline=context.deadline,
        )
    logs = []
    for task in tasks:
        info = task.execution_info
        failure = info.failure_info if info is not None else None
        logs.append(
            TaskLog(
                task_id=task.id,
                state=state_text(task.state),
                exit_code=info.exit_code if info is not None else None,
                stdout=_read_file(context, job_id, task.id, "stdout.txt"),
                stderr=_read_file(context, job_id, task.id, "stderr.txt"),
                failure=f"{failure.code}: {failure.message}" if failure is not None else None,
            )
        )
    return logs


def terminate(context: Context, job_id: str) -> bool:
    """Terminate the job: its running tasks are stopped; False if it had already ended."""
    _get_job(context, job_id)
    return terminate_job(context.client, job_id, "UserTerminate", deadline=context.deadline)


def delete(context: Context, job_id: str) -> bool:
    """Delete the Batch job and every object it stored. Finishes an interrupted deletion;
    :class:`JobNotFoundError` when neither the job nor any of its data exists."""
    _names.check_job_id(job_id)
    batch = delete_job(context.client, job_id, deadline=context.deadline)
    stored = context.store.delete_prefix(_names.job_prefix(job_id))
    if not batch and not stored:
        raise JobNotFoundError(
            f"no job {job_id!r}: neither the Batch account at {context.endpoint} nor the "
            "store holds it",
            job_id=job_id,
        )
    return True
