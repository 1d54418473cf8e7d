"""The Batch operations the executor needs: thin, well named, each under a retry policy.

Each function takes an azure-batch ``BatchClient`` (built with the SDK's retries off, see
``BatchConfig.batch_client``) and a ``deadline`` in seconds (the whole operation, retries
included; see :mod:`batchexecutor._retry`). Non-transient service errors surface
unchanged (``ResourceNotFoundError`` for ``JobNotFound`` ...); transient ones persisting
past the deadline surface as :class:`~batchexecutor._retry.DeadlineExceeded`.

* :func:`add_tasks` -- add-collection requests of at most 100 tasks and under 1 MB each,
  several in parallel, idempotent (``TaskExists`` counts as added), retrying only what
  failed, with its own deadline and an :class:`AddTasksError` naming every task that could
  not be added and why. (The SDK's ``create_tasks`` re-queues a chunk that keeps failing
  with 5xx forever; it is not used.)
* :func:`task_counts` -- one request per job per poll.
* :func:`completed_tasks_since` -- the tasks completed since a :class:`CompletionCursor`,
  filtered and ``$select``-ed on the service, paged, de-duplicated.
* :func:`terminate_job`, :func:`set_terminate_on_completion`, :func:`pool_exists` -- with
  the SDK's quirks worked around.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from azure.batch import BatchClient
from azure.batch import models as bm

# Not exported by azure.batch.models in 15.1, yet the terminate request's body.
from azure.batch.models._models import BatchJobTerminateOptions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from ._retry import (
    DEFAULT_DEADLINE,
    DeadlineExceeded,
    TransientError,
    call,
    describe,
    error_code,
    redact,
    status_code,
)

__all__ = [
    "DEFAULT_PARALLELISM",
    "MAX_REQUEST_BYTES",
    "MAX_TASKS_PER_REQUEST",
    "AddTasksError",
    "AddTasksResult",
    "CompletedTask",
    "CompletedTasks",
    "CompletionCursor",
    "TaskCounts",
    "add_tasks",
    "completed_filter",
    "completed_task",
    "completed_tasks_since",
    "delete_job",
    "job_state",
    "pool_exists",
    "read_node_file_tail",
    "serialized_size",
    "set_terminate_on_completion",
    "state_text",
    "task_counts",
    "terminate_job",
    "terminate_task_if_active",
]

#: Batch's limit on tasks in one add-collection request.
MAX_TASKS_PER_REQUEST = 100
#: Our budget for one add-collection request body. Batch rejects bodies of 1 MB and more
#: (``RequestBodyTooLarge``); this stays under both 10^6 and 2^20 bytes.
MAX_REQUEST_BYTES = 1_000_000
#: Add-collection requests in flight at once.
DEFAULT_PARALLELISM = 4
#: Largest page Batch serves for task lists.
MAX_PAGE_SIZE = 1000
#: Longest ``terminateReason`` Batch takes.
MAX_TERMINATE_REASON = 64

# The body of an add-collection request is ``{"value": [task, task, ...]}`` as the SDK
# writes it (json.dumps with default separators).
_BODY_OVERHEAD = len('{"value": []}')
_SEPARATOR = len(", ")
_COMPLETED_FIELDS = ["id", "executionInfo", "stateTransitionTime", "nodeInfo"]
_ALREADY_TERMINATED = frozenset({"JobCompleted", "JobTerminating", "JobBeingTerminated"})


# --------------------------------------------------------------------------- sizes

try:  # The encoder the SDK serializes request bodies with: measure exactly what it sends.
    from azure.batch._utils.model_base import SdkJSONEncoder as _SdkJSONEncoder

    def _task_json(task: bm.BatchTaskCreateOptions) -> str:
        return json.dumps(task, cls=_SdkJSONEncoder, exclude_readonly=True)

except ImportError:  # pragma: no cover - a future SDK layout; as_dict gives the same JSON

    def _task_json(task: bm.BatchTaskCreateOptions) -> str:
        return json.dumps(task.as_dict(exclude_readonly=True), default=str)


def serialized_size(task: bm.BatchTaskCreateOptions) -> int:
    """Bytes ``task`` takes in an add-collection request body (as the SDK sends it)."""
    return len(_task_json(task).encode("utf-8"))


def _chunks(
    items: Sequence[tuple[bm.BatchTaskCreateOptions, int]], max_tasks: int, max_bytes: int
) -> Iterator[list[tuple[bm.BatchTaskCreateOptions, int]]]:
    """Consecutive runs of at most ``max_tasks`` tasks whose request body fits ``max_bytes``."""
    chunk: list[tuple[bm.BatchTaskCreateOptions, int]] = []
    size = _BODY_OVERHEAD
    for item in items:
        extra = item[1] + (_SEPARATOR if chunk else 0)
        if chunk and (len(chunk) >= max_tasks or size + extra > max_bytes):
            yield chunk
            chunk, size, extra = [], _BODY_OVERHEAD, item[1]
        chunk.append(item)
        size += extra
    if chunk:
        yield chunk


# --------------------------------------------------------------------------- add tasks


@dataclass(frozen=True)
class AddTasksResult:
    """What :func:`add_tasks` did."""

    added: int
    """Tasks now in the job: those added by this call and those that already existed."""
    existed: frozenset[str] = frozenset()
    """IDs the service answered ``TaskExists`` for (an earlier attempt had added them)."""
    requests: int = 0
    """Add-collection requests sent, retries and splits included."""


class AddTasksError(Exception):
    """Some tasks could not be added; ``failures`` maps each such task ID to the reason."""

    def __init__(
        self,
        job_id: str,
        failures: Mapping[str, str],
        *,
        total: int,
        added: int,
        elapsed: float,
        requests: int,
    ) -> None:
        self.job_id = job_id
        self.failures = dict(failures)
        self.total = total
        self.added = added
        self.elapsed = elapsed
        self.requests = requests
        by_reason: dict[str, list[str]] = {}
        for task_id, reason in self.failures.items():
            by_reason.setdefault(reason, []).append(task_id)
        lines = [
            f"add tasks to job {job_id!r} (Tasks_CreateTaskCollection): {len(self.failures)} of "
            f"{total} tasks could not be added after {elapsed:.1f} s and {requests} requests"
        ]
        for reason, ids in by_reason.items():
            lines.append(f"  {len(ids)} task{'s' if len(ids) != 1 else ''}: {reason}")
            lines.append(f"    IDs: {_preview(ids)}")
        super().__init__("\n".join(lines))


def _preview(ids: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(ids[:limit])
    return shown if len(ids) <= limit else f"{shown} ... and {len(ids) - limit} more"


def _error_text(error: bm.BatchError | None, status: str) -> str:
    """``Code: message`` of a per-task error in an add-collection response."""
    if error is None:
        return status
    message = error.message.value if error.message is not None else None
    details = [f"{d.key}={d.value}" for d in (error.error_values or []) if d.key]
    text = f"{error.code or status}: {message}" if message else str(error.code or status)
    return f"{text} ({', '.join(details)})" if details else text


class _BodyTooLarge(Exception):
    """The service rejected a request body as too large (split it, don't retry it)."""


class _Adder:
    """State shared by the parallel add-collection requests of one :func:`add_tasks`."""

    def __init__(self, client: BatchClient, job_id: str, end: float) -> None:
        self.client = client
        self.job_id = job_id
        self.end = end
        self.operation = f"add tasks to job {job_id!r}"
        self.lock = threading.Lock()
        self.added = 0
        self.existed: set[str] = set()
        self.failures: dict[str, str] = {}
        self.requests = 0
        self.fatal: BaseException | None = None
        self.timed_out: DeadlineExceeded | None = None

    def fail(self, tasks: Iterable[bm.BatchTaskCreateOptions], reason: str) -> None:
        with self.lock:
            for task in tasks:
                self.failures[task.id] = reason

    def send(
        self, chunk: list[tuple[bm.BatchTaskCreateOptions, int]]
    ) -> list[list[tuple[bm.BatchTaskCreateOptions, int]]]:
        """Add one chunk, retrying what failed transiently; halves to send if too large."""
        if self.fatal is not None:
            self.fail(
                (t for t, _ in chunk),
                f"not sent: an earlier request failed with {describe(self.fatal)}",
            )
            return []
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            reason = "not sent: the deadline passed before its turn"
            if self.timed_out is not None:
                reason += f" (last error: {describe(self.timed_out.last_error)})"
            self.fail((t for t, _ in chunk), reason)
            return []
        pending = {task.id.lower(): (task, size) for task, size in chunk}
        try:
            call(self.operation, self._attempt, pending, deadline=remaining)
        except _BodyTooLarge as error:
            left = list(pending.values())
            if len(left) > 1:
                middle = len(left) // 2
                return [left[:middle], left[middle:]]
            reason = (
                f"the service rejected the task as too large for one request "
                f"({describe(error.__cause__ or error)}; its JSON is {left[0][1]} bytes)"
            )
            self.fail([left[0][0]], reason)
        except DeadlineExceeded as error:
            with self.lock:
                self.timed_out = error
            self.fail(
                (t for t, _ in pending.values()),
                f"not added within the deadline; last error: {describe(error.last_error)}",
            )
        except Exception as error:  # non-transient: the job is gone, auth failed, ...
            with self.lock:
                if self.fatal is None:
                    self.fatal = error
            self.fail((t for t, _ in pending.values()), describe(error))
        return []

    def _attempt(self, pending: dict[str, tuple[bm.BatchTaskCreateOptions, int]]) -> None:
        """One add-collection request for the tasks still pending (drops what got settled)."""
        with self.lock:
            self.requests += 1
        group = bm.BatchTaskGroup(task_values=[task for task, _ in pending.values()])
        try:
            response = self.client.create_task_collection(self.job_id, group)
        except HttpResponseError as error:
            if status_code(error) == 413 or error_code(error) == "RequestBodyTooLarge":
                raise _BodyTooLarge(describe(error)) from error
            raise
        results = {str(r.task_id).lower(): r for r in (response.result_values or []) if r.task_id}
        retry: list[str] = []
        with self.lock:
            for key, (task, _) in list(pending.items()):
                result = results.get(key)
                if result is None:
                    retry.append("no result for the task in the response")
                    continue
                code = result.error.code if result.error is not None else None
                if result.status == bm.BatchTaskAddStatus.SUCCESS:
                    self.added += 1
                elif result.status == bm.BatchTaskAddStatus.CLIENT_ERROR:
                    if code == "TaskExists":
                        self.added += 1
                        self.existed.add(task.id)
                    else:
                        self.failures[task.id] = _error_text(result.error, "clienterror")
                else:  # servererror: worth another attempt, alone
                    retry.append(_error_text(result.error, "servererror"))
                    continue
                del pending[key]
        if pending:
            raise TransientError(f"{len(pending)} tasks not added yet: {retry[0]}")


def add_tasks(
    client: BatchClient,
    job_id: str,
    tasks: Iterable[bm.BatchTaskCreateOptions],
    *,
    deadline: float = DEFAULT_DEADLINE,
    parallelism: int = DEFAULT_PARALLELISM,
    max_tasks_per_request: int = MAX_TASKS_PER_REQUEST,
    max_request_bytes: int = MAX_REQUEST_BYTES,
) -> AddTasksResult:
    """Add ``tasks`` to job ``job_id``; raise :class:`AddTasksError` for any left out.

    Tasks go in add-collection requests of at most ``max_tasks_per_request`` tasks whose
    body (measured as the SDK serializes it) stays within ``max_request_bytes``,
    ``parallelism`` requests at a time. Task IDs must be unique (case-insensitively, as
    in Batch) and should be deterministic: a retried request is then idempotent, and a
    task answered ``TaskExists`` counts as added (its earlier attempt had added it).

    A request failing transiently (429, 5xx, connection lost) is retried with only the
    tasks it has not settled, as are tasks answered ``servererror``; a request the
    service rejects as too large is split in two. The whole call is bounded by
    ``deadline`` seconds. Tasks answered with another client error (e.g.
    ``InvalidPropertyValue``), a task too large for any request, and everything left
    when the deadline passes or a request fails for good (``JobNotFound``, ...) end up
    in the :class:`AddTasksError`, with the reason for each; the other tasks are added.
    """
    if not 1 <= max_tasks_per_request <= MAX_TASKS_PER_REQUEST:
        raise ValueError(
            f"max_tasks_per_request must be between 1 and {MAX_TASKS_PER_REQUEST}, "
            f"got {max_tasks_per_request}"
        )
    if parallelism < 1:
        raise ValueError(f"parallelism must be at least 1, got {parallelism}")
    if deadline < 0:
        raise ValueError(f"deadline must not be negative, got {deadline}")
    items: list[tuple[bm.BatchTaskCreateOptions, int]] = []
    seen: dict[str, str] = {}
    for task in tasks:
        task_id = getattr(task, "id", None)
        if not isinstance(task_id, str) or not task_id:
            raise ValueError(f"every task needs an ID, got {task!r}")
        if task_id.lower() in seen:
            raise ValueError(
                f"task IDs must be unique (case-insensitively): {seen[task_id.lower()]!r} "
                f"and {task_id!r}"
            )
        seen[task_id.lower()] = task_id
        items.append((task, serialized_size(task)))
    if not items:
        return AddTasksResult(added=0)
    start = time.monotonic()
    adder = _Adder(client, job_id, start + deadline)
    sendable = []
    for task, size in items:
        if _BODY_OVERHEAD + size > max_request_bytes:
            adder.fail(
                [task],
                f"the task's JSON is {size} bytes: more than one add-collection request may "
                f"carry ({max_request_bytes} bytes)",
            )
        else:
            sendable.append((task, size))
    chunks = list(_chunks(sendable, max_tasks_per_request, max_request_bytes))
    if parallelism == 1 or len(chunks) == 1:
        queue = chunks
        while queue:
            queue = adder.send(queue[0]) + queue[1:]
    else:
        with ThreadPoolExecutor(
            max_workers=min(parallelism, len(chunks)), thread_name_prefix="batchexecutor-add"
        ) as pool:
            running: set[Future[list[list[tuple[bm.BatchTaskCreateOptions, int]]]]] = {
                pool.submit(adder.send, chunk) for chunk in chunks
            }
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    for half in future.result():
                        running.add(pool.submit(adder.send, half))
    if adder.failures:
        failures = {
            task.id: adder.failures[task.id] for task, _ in items if task.id in adder.failures
        }
        error = AddTasksError(
            job_id,
            failures,
            total=len(items),
            added=adder.added,
            elapsed=time.monotonic() - start,
            requests=adder.requests,
        )
        raise error from adder.fatal or adder.timed_out
    return AddTasksResult(
        added=adder.added, existed=frozenset(adder.existed), requests=adder.requests
    )


# --------------------------------------------------------------------------- task counts


@dataclass(frozen=True)
class TaskCounts:
    """A job's tasks by state (Batch computes these with a delay of a few seconds)."""

    active: int
    running: int
    completed: int
    succeeded: int
    failed: int

    @property
    def total(self) -> int:
        return self.active + self.running + self.completed

    @property
    def unfinished(self) -> int:
        return self.active + self.running


def task_counts(
    client: BatchClient, job_id: str, *, deadline: float = DEFAULT_DEADLINE
) -> TaskCounts:
    """The job's task counts: one request (``Jobs_GetJobTaskCounts``)."""
    result = call(
        f"get task counts of job {job_id!r}", client.get_job_task_counts, job_id, deadline=deadline
    )
    counts = result.task_counts
    return TaskCounts(
        active=counts.active,
        running=counts.running,
        completed=counts.completed,
        succeeded=counts.succeeded,
        failed=counts.failed,
    )


# --------------------------------------------------------------------------- completed tasks


@dataclass(frozen=True)
class CompletedTask:
    """What a poller needs to resolve a future from a completed task."""

    id: str
    completed_at: datetime
    """The task's ``stateTransitionTime`` (when it entered ``completed``)."""
    result: str | None
    """``"success"`` or ``"failure"`` (Batch's ``executionInfo.result``)."""
    exit_code: int | None
    """The process's exit code; ``None`` if it never ran (e.g. a resource file failed)."""
    failure_category: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    retry_count: int = 0
    requeue_count: int = 0
    start_time: datetime | None = None
    end_time: datetime | None = None
    pool_id: str | None = None
    node_id: str | None = None
    node_url: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.result == "success"


@dataclass(frozen=True)
class CompletionCursor:
    """Where :func:`completed_tasks_since` left off, for the next call.

    ``since`` is the latest ``stateTransitionTime`` seen; ``seen`` holds the
    ``(task ID, stateTransitionTime)`` pairs already returned at or after
    ``since - overlap``, so the next (``ge``) query's overlap is not returned twice.
    Start from ``CompletionCursor()`` (everything completed so far), or from
    ``CompletionCursor(since=moment)``.
    """

    since: datetime | None = None
    seen: frozenset[tuple[str, datetime]] = frozenset()
    overlap: timedelta = field(default=timedelta(0))
    """Also re-read this far back (de-duplicated), for tasks whose completion becomes
    visible after a later one's; ``0`` re-reads only the tasks at ``since`` itself."""

    def __post_init__(self) -> None:
        if self.since is not None and self.since.tzinfo is None:
            raise ValueError("CompletionCursor.since must be timezone-aware (UTC)")
        if self.overlap < timedelta(0):
            raise ValueError("CompletionCursor.overlap must not be negative")


@dataclass(frozen=True)
class CompletedTasks:
    """One :func:`completed_tasks_since` result: the new completions and the next cursor."""

    tasks: tuple[CompletedTask, ...]
    cursor: CompletionCursor
    pages: int
    """List requests made (one per page)."""
    listed: int
    """Tasks the service returned, duplicates of earlier calls included."""


def _odata_datetime(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("datetime'%Y-%m-%dT%H:%M:%S.%fZ'")


def completed_filter(since: datetime | None) -> str:
    """The ``$filter`` for tasks completed at or after ``since`` (all, for ``None``)."""
    if since is None:
        return "state eq 'completed'"
    return f"state eq 'completed' and stateTransitionTime ge {_odata_datetime(since)}"


def _completed(task: bm.BatchTask) -> CompletedTask:
    info = task.execution_info
    node = task.node_info
    failure = info.failure_info if info is not None else None
    moment = task.state_transition_time
    assert moment is not None, "the list $select-s stateTransitionTime"
    return CompletedTask(
        id=str(task.id),
        completed_at=moment,
        result=str(info.result.value if hasattr(info.result, "value") else info.result)
        if info is not None and info.result is not None
        else None,
        exit_code=info.exit_code if info is not None else None,
        failure_category=str(getattr(failure.category, "value", failure.category))
        if failure is not None and failure.category is not None
        else None,
        failure_code=failure.code if failure is not None else None,
        failure_message=failure.message if failure is not None else None,
        retry_count=(info.retry_count or 0) if info is not None else 0,
        requeue_count=(info.requeue_count or 0) if info is not None else 0,
        start_time=info.start_time if info is not None else None,
        end_time=info.end_time if info is not None else None,
        pool_id=node.pool_id if node is not None else None,
        node_id=node.node_id if node is not None else None,
        node_url=node.node_url if node is not None else None,
    )


def _next_page(pages: Iterator[Iterator[bm.BatchTask]]) -> list[bm.BatchTask] | None:
    # A failed request leaves the page iterator where it was: calling again re-requests
    # the same page (same continuation token), which is what a retry needs.
    page = next(pages, None)
    return None if page is None else list(page)


def completed_tasks_since(
    client: BatchClient,
    job_id: str,
    since: CompletionCursor | datetime | None = None,
    *,
    page_size: int = MAX_PAGE_SIZE,
    deadline: float = DEFAULT_DEADLINE,
) -> CompletedTasks:
    """The tasks of ``job_id`` completed since ``since``, and the cursor for next time.

    One filtered, ``$select``-ed list (``state eq 'completed' and stateTransitionTime ge
    datetime'...'``; fields ``id, executionInfo, stateTransitionTime, nodeInfo``), read
    page by page (``page_size`` tasks each, at most 1000), so a poll tick costs one
    request per page of *new* completions, never one per task.

    **Overlap.** The query uses ``ge``, not ``gt``: several tasks can complete with the
    same timestamp (Batch's clock has 100 ns ticks, Python's datetimes keep microseconds,
    and a task completing at time T can become visible after another task at T was
    already listed), and ``gt`` would lose the late ones for good. So each call re-reads
    the tasks at the cursor's own timestamp (and ``overlap`` further back) and drops the
    ``(ID, stateTransitionTime)`` pairs the cursor says were already returned. A task
    that is reactivated and completes again has a new timestamp and is returned again.

    ``since`` may be a :class:`CompletionCursor`, an aware ``datetime`` (tasks completed
    at or after it), or ``None`` (every completed task). Paging retries a failed page
    request (same continuation token) within the one ``deadline``.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
    cursor = since if isinstance(since, CompletionCursor) else CompletionCursor(since=since)
    lower = None if cursor.since is None else cursor.since - cursor.overlap
    operation = f"list tasks completed in job {job_id!r}"
    end = time.monotonic() + deadline
    pages = client.list_tasks(
        job_id,
        filter=completed_filter(lower),
        select=_COMPLETED_FIELDS,
        max_results=page_size,
    ).by_page()
    fresh: list[CompletedTask] = []
    listed: list[tuple[str, datetime]] = []
    count = 0
    while True:
        page = call(operation, _next_page, pages, deadline=max(0.0, end - time.monotonic()))
        if page is None:
            break
        count += 1
        for task in page:
            done = _completed(task)
            key = (done.id, done.completed_at)
            listed.append(key)
            if key not in cursor.seen:
                fresh.append(done)
    if not listed:
        return CompletedTasks(tasks=(), cursor=cursor, pages=count, listed=0)
    latest = max(moment for _, moment in listed)
    if cursor.since is not None:
        latest = max(latest, cursor.since)
    keep_from = latest - cursor.overlap
    seen = frozenset(key for key in (*cursor.seen, *listed) if key[1] >= keep_from)
    return CompletedTasks(
        tasks=tuple(fresh),
        cursor=CompletionCursor(since=latest, seen=seen, overlap=cursor.overlap),
        pages=count,
        listed=len(listed),
    )


# --------------------------------------------------------------------------- jobs and pools


def terminate_job(
    client: BatchClient,
    job_id: str,
    reason: str = "UserTerminate",
    *,
    deadline: float = DEFAULT_DEADLINE,
) -> bool:
    """Terminate the job (one request); ``False`` if it was already terminating or done.

    Works around two quirks of ``begin_terminate_job`` in azure-batch 15.1: without an
    options body it raises ``ValueError`` before sending anything, and with one it starts
    a thread polling ``get_job`` every 5 s until the job completes. This sends the
    terminate request alone (``reason`` as ``terminateReason``, at most 64 characters)
    and returns; the job then goes through ``terminating`` to ``completed``. A retry
    after a lost response finds the job completed and returns ``False``.
    """
    if not reason or len(reason) > MAX_TERMINATE_REASON:
        raise ValueError(
            f"reason must be 1 to {MAX_TERMINATE_REASON} characters, got {len(reason)}"
        )
    options = BatchJobTerminateOptions(termination_reason=reason)
    return _unless_ended(
        f"terminate job {job_id!r}", client._terminate_job_internal, job_id, options, deadline
    )


def set_terminate_on_completion(
    client: BatchClient, job_id: str, *, deadline: float = DEFAULT_DEADLINE
) -> bool:
    """Set the job's ``onAllTasksComplete`` to ``terminatejob`` (once all tasks are added).

    Returns ``False`` if the job had already completed or is terminating (nothing left to
    end), ``True`` otherwise. A job whose tasks have all completed terminates at once.
    """
    options = bm.BatchJobUpdateOptions(
        all_tasks_complete_mode=bm.BatchAllTasksCompleteMode.TERMINATE_JOB
    )
    return _unless_ended(
        f"set job {job_id!r} to terminate when its tasks complete",
        client.update_job,
        job_id,
        options,
        deadline,
    )


def _unless_ended(
    operation: str, fn: Callable[..., object], job_id: str, options: object, deadline: float
) -> bool:
    """Run a job update; ``False`` (not an error) when the job is completed or terminating."""
    try:
        call(operation, fn, job_id, options, deadline=deadline)
    except HttpResponseError as error:
        if status_code(error) == 409 and error_code(error) in _ALREADY_TERMINATED:
            return False
        raise
    return True


def _pool_exists(client: BatchClient, pool_id: str) -> bool:
    try:
        client.get_pool(pool_id, select=["id"])
    except ResourceNotFoundError as error:
        if error_code(error) == "PoolNotFound":
            return False
        raise
    return True


def pool_exists(client: BatchClient, pool_id: str, *, deadline: float = DEFAULT_DEADLINE) -> bool:
    """Whether the pool exists: one ``GET`` of the pool with ``$select=id``.

    ``client.pool_exists`` (a ``HEAD``) in azure-batch 15.1 raises
    ``ResourceNotFoundError`` on the 404 it should report as ``False``, and logs a
    deserialization traceback for the empty body on the way; a ``GET`` gets Batch's
    ``PoolNotFound`` error body, which tells a missing pool from any other 404.
    """
    return call(
        f"check whether pool {pool_id!r} exists", _pool_exists, client, pool_id, deadline=deadline
    )


def _delete_job(client: BatchClient, job_id: str) -> bool:
    try:
        client._delete_job_internal(job_id)
    except ResourceNotFoundError as error:
        if error_code(error) == "JobNotFound":
            return False
        raise
    return True


def delete_job(client: BatchClient, job_id: str, *, deadline: float = DEFAULT_DEADLINE) -> bool:
    """Ask Batch to delete the job (one request); ``False`` if there is no such job.

    ``begin_delete_job`` in azure-batch 15.1 polls ``get_job`` every 5 s until the job is
    gone; the deletion itself proceeds on the service without anyone waiting for it.
    """
    return call(f"delete job {job_id!r}", _delete_job, client, job_id, deadline=deadline)


def completed_task(
    client: BatchClient, job_id: str, task_id: str, *, deadline: float = DEFAULT_DEADLINE
) -> CompletedTask | None:
    """The task's completion record (one request), or ``None`` while it is not completed."""
    task = call(
        f"get task {task_id!r} of job {job_id!r}",
        client.get_task,
        job_id,
        task_id,
        select=[*_COMPLETED_FIELDS, "state"],
        deadline=deadline,
    )
    if state_text(task.state) != "completed":
        return None
    return _completed(task)


def job_state(
    client: BatchClient, job_id: str, *, deadline: float = DEFAULT_DEADLINE
) -> tuple[str, str | None]:
    """The job's state and, once it ended, why (``terminateReason``): one request."""
    job = call(
        f"get the state of job {job_id!r}",
        client.get_job,
        job_id,
        select=["id", "state", "executionInfo"],
        deadline=deadline,
    )
    info = job.execution_info
    reason = getattr(info, "termination_reason", None) if info is not None else None
    return state_text(job.state), reason


def state_text(value: object) -> str:
    """An SDK state (an enum, or a plain string for values the SDK does not know) as text."""
    return str(getattr(value, "value", value))


def terminate_task_if_active(
    client: BatchClient, job_id: str, task_id: str, *, deadline: float = DEFAULT_DEADLINE
) -> bool:
    """Terminate the task if it has not started (two requests); whether it was.

    A task that is already running or completed is left alone: ``False``. Batch has no
    conditional terminate on the state, so a task starting between the two requests is
    terminated anyway (as a cancelled future's task should be).
    """
    task = call(
        f"get task {task_id!r} of job {job_id!r}",
        client.get_task,
        job_id,
        task_id,
        select=["id", "state"],
        deadline=deadline,
    )
    if state_text(task.state) != "active":
        return False
    call(
        f"terminate task {task_id!r} of job {job_id!r}",
        client.terminate_task,
        job_id,
        task_id,
        deadline=deadline,
    )
    return True


def read_node_file_tail(
    client: BatchClient,
    pool_id: str,
    node_id: str,
    path: str,
    *,
    limit: int = 4096,
    deadline: float = DEFAULT_DEADLINE,
) -> str:
    """The last ``limit`` bytes of a file on a node (e.g. a start task's stderr), as text
    with secrets masked; ``""`` if it does not exist, and a note in parentheses if it
    cannot be read (the node left, access denied ...): callers are reporting a failure
    already, and go on."""

    def fetch() -> str:
        try:
            size = client.get_node_file_properties(pool_id, node_id, path).content_length or 0
            if not size:
                return ""
            start = max(0, size - limit)
            data = b"".join(
                client.download_node_file(
                    pool_id, node_id, path, ocp_range=f"bytes={start}-{size - 1}"
                )
            )
        except ResourceNotFoundError:
            return ""
        return data.decode("utf-8", "replace")

    try:
        text = call(f"read {path} of node {node_id!r}", fetch, deadline=deadline)
    except HttpResponseError as error:
        return f"(it could not be read: {error_code(error) or error.status_code})"
    return redact(text)
