"""The emulated account's state: pools, nodes, jobs and tasks, and their transitions.

Every resource keeps its REST representation (``wire``, camelCase, exactly what GET
returns) plus the bookkeeping the scheduler needs. All mutation happens under
``State.lock``; ``State.changed`` wakes the scheduler. With a data directory, every
changed resource is written behind to SQLite (see ``_store``) so a restarted emulator
finds its pools, jobs, tasks and their outcomes again.

Task life cycle (Batch's)::

    active ──schedule──▶ preparing ──process starts──▶ running ──exit──▶ completed
      ▲                                              │  non-zero exit, retries left
      └──────────── retry / requeue (preemption) ────┘
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ._store import Store
from ._wire import iso, new_etag, parse_iso, utcnow

Wire = dict[str, Any]

# Microseconds since the epoch: keys stay unique and ordered across emulator restarts.
_seq = itertools.count(time.time_ns() // 1000)


def stamp(wire: Wire, moment: datetime | None = None) -> None:
    """New ETag and lastModified, as every change on Azure gives."""
    wire["eTag"] = new_etag()
    wire["lastModified"] = iso(moment or utcnow())


def set_state(wire: Wire, state: str, moment: datetime | None = None) -> None:
    """Move a resource to ``state``, recording the previous one as Batch does."""
    now = moment or utcnow()
    if wire.get("state") == state:
        return
    if "state" in wire:
        wire["previousState"] = wire["state"]
        wire["previousStateTransitionTime"] = wire["stateTransitionTime"]
    wire["state"] = state
    wire["stateTransitionTime"] = iso(now)
    stamp(wire, now)


def set_node_state(wire: Wire, state: str, moment: datetime | None = None) -> None:
    """A compute node's state change. Unlike pools, jobs and tasks, ``BatchNode`` has no
    eTag, lastModified or previousState (spec), so only the state and its time change."""
    if wire.get("state") != state:
        wire["state"] = state
        wire["stateTransitionTime"] = iso(moment or utcnow())


@dataclass(eq=False)
class Node:
    """A compute node: a directory on this host and a number of task slots."""

    pool: Pool
    wire: Wire
    root: Path
    slots: int
    dedicated: bool
    #: list order and continuation key (stable while a resize removes other nodes)
    seq: int = field(default_factory=lambda: next(_seq))
    used_slots: int = 0
    running: set[Task] = field(default_factory=set)
    #: job key -> job preparation task execution info (wire) on this node
    job_prep: dict[str, Wire] = field(default_factory=dict)
    removed: bool = False

    @property
    def id(self) -> str:
        return str(self.wire["id"])

    @property
    def usable(self) -> bool:
        return not self.removed and self.wire["state"] in ("idle", "running")

    def refresh_state(self) -> None:
        """idle <-> running follows whether tasks run here (Batch's node states)."""
        if self.wire["state"] in ("idle", "running"):
            set_node_state(self.wire, "running" if self.running else "idle")
        self.wire["runningTasksCount"] = len(self.running)
        self.wire["runningTaskSlotsCount"] = self.used_slots


@dataclass(eq=False)
class Pool:
    wire: Wire
    #: list order and continuation key (stable while other pools come and go)
    seq: int = field(default_factory=lambda: next(_seq))
    nodes: dict[str, Node] = field(default_factory=dict)
    next_node: int = 0
    #: when a pending resize completes (monotonic seconds)
    resize_due: float | None = None
    #: nodeDeallocationOption of the pending resize (not part of the pool's REST shape)
    deallocation: str = "requeue"
    #: registry passwords by path (x-ms-secret: never in the wire, see take_registry_passwords)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return str(self.wire["id"])

    @property
    def key(self) -> str:
        return self.id.lower()


@dataclass(eq=False)
class Task:
    job: Job
    wire: Wire
    seq: int = field(default_factory=lambda: next(_seq))
    node: Node | None = None
    #: keys of parents not yet completed with "satisfy"
    waiting_on: set[str] = field(default_factory=set)
    #: keys of parents that completed with "block"
    blocked_by: set[str] = field(default_factory=set)
    #: set while a process attempt is in flight; the runner checks it to stop
    stop_reason: str | None = None
    attempt: int = 0
    #: in the job's ready queue (entries whose flag is off are stale and skipped)
    queued: bool = False
    #: why the last attempt failed before or after its process: "preprocessing" or "upload"
    failure_kind: str | None = None
    #: registry passwords by path (x-ms-secret: never in the wire)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return str(self.wire["id"])

    @property
    def key(self) -> str:
        return self.id.lower()

    @property
    def state(self) -> str:
        return str(self.wire["state"])

    @property
    def slots(self) -> int:
        return int(self.wire.get("requiredSlots", 1))

    @property
    def int_id(self) -> int | None:
        """The task's ID as an integer, for dependency ranges (leading zeros ignored)."""
        ident = self.id
        return int(ident) if ident.isdigit() else None

    @property
    def dependency_ranges(self) -> list[tuple[int, int]]:
        ranges = (self.wire.get("dependsOn") or {}).get("taskIdRanges") or []
        return [(int(r["start"]), int(r["end"])) for r in ranges]


@dataclass
class Counts:
    active: int = 0
    running: int = 0
    completed: int = 0
    succeeded: int = 0
    failed: int = 0

    def wire(self) -> Wire:
        return {
            "active": self.active,
            "running": self.running,
            "completed": self.completed,
            "succeeded": self.succeeded,
            "failed": self.failed,
        }


@dataclass(eq=False)
class Job:
    wire: Wire
    seq: int = field(default_factory=lambda: next(_seq))
    tasks: dict[str, Task] = field(default_factory=dict)
    #: tasks whose dependencies are met, in the order they became runnable
    ready: deque[Task] = field(default_factory=deque)
    #: parent key -> tasks waiting on it
    dependents: dict[str, list[Task]] = field(default_factory=dict)
    #: tasks with taskIdRanges not yet started (a later task may fall in their range)
    range_waiters: list[Task] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
    slot_counts: Counts = field(default_factory=Counts)
    running: int = 0
    #: registry passwords by path (x-ms-secret: never in the wire)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return str(self.wire["id"])

    @property
    def key(self) -> str:
        return self.id.lower()

    @property
    def pool_id(self) -> str:
        return str((self.wire.get("poolInfo") or {}).get("poolId", ""))

    @property
    def state(self) -> str:
        return str(self.wire["state"])

    @property
    def max_parallel(self) -> int:
        value = int(self.wire.get("maxParallelTasks", -1))
        return value if value > 0 else 1 << 30


_COUNTED = {"active": "active", "preparing": "running", "running": "running"}


class State:
    """All resources of the emulated account, guarded by one lock."""

    def __init__(self, store: Store) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.store = store
        self.pools: dict[str, Pool] = {}
        self.jobs: dict[str, Job] = {}

    # -- persistence -----------------------------------------------------------------

    def save_task(self, task: Task) -> None:
        self.store.put(
            "task",
            f"{task.job.key}/{task.key}",
            {
                "job": task.job.key,
                "seq": task.seq,
                "wire": task.wire,
                "failureKind": task.failure_kind,
                "secrets": task.secrets,
            },
        )

    def save_job(self, job: Job) -> None:
        self.store.put("job", job.key, {"seq": job.seq, "wire": job.wire, "secrets": job.secrets})

    def save_pool(self, pool: Pool) -> None:
        nodes = [
            {
                "wire": n.wire,
                "root": str(n.root),
                "slots": n.slots,
                "dedicated": n.dedicated,
                "seq": n.seq,
                "jobPrep": n.job_prep,
            }
            for n in pool.nodes.values()
        ]
        self.store.put(
            "pool",
            pool.key,
            {
                "seq": pool.seq,
                "wire": pool.wire,
                "next": pool.next_node,
                "nodes": nodes,
                "secrets": pool.secrets,
            },
        )

    def wake(self) -> None:
        self.changed.notify_all()

    # -- task counts -----------------------------------------------------------------

    def _count(self, task: Task, sign: int) -> None:
        job = task.job
        state = task.state
        slots = task.slots
        for counts, amount in ((job.counts, sign), (job.slot_counts, sign * slots)):
            if state == "completed":
                counts.completed += amount
                info = task.wire.get("executionInfo") or {}
                if info.get("result") == "failure":
                    counts.failed += amount
                else:
                    counts.succeeded += amount
            else:
                name = _COUNTED[state]
                setattr(counts, name, getattr(counts, name) + amount)

    def move_task(self, task: Task, state: str, moment: datetime | None = None) -> None:
        """Change a task's state, keeping the job's counts exact."""
        self._count(task, -1)
        set_state(task.wire, state, moment)
        self._count(task, +1)

    # -- adding tasks ----------------------------------------------------------------

    def add_task(self, job: Job, wire: Wire, secrets: dict[str, str] | None = None) -> Task:
        task = Task(job=job, wire=wire, secrets=secrets or {})
        job.tasks[task.key] = task
        self._count(task, +1)
        self._link_dependencies(task)
        if task.int_id is not None:
            for waiter in job.range_waiters:
                if (
                    waiter.state == "active"
                    and waiter is not task
                    and any(lo <= task.int_id <= hi for lo, hi in waiter.dependency_ranges)
                ):
                    self._wait_for(waiter, task.key)
        self._maybe_ready(task)
        self.save_task(task)
        return task

    def _link_dependencies(self, task: Task) -> None:
        depends = task.wire.get("dependsOn") or {}
        job = task.job
        for parent_id in depends.get("taskIds") or []:
            self._wait_for(task, str(parent_id).lower())
        ranges = task.dependency_ranges
        if ranges:
            job.range_waiters.append(task)
            for other in job.tasks.values():
                number = other.int_id
                if (
                    other is not task
                    and number is not None
                    and any(lo <= number <= hi for lo, hi in ranges)
                ):
                    self._wait_for(task, other.key)

    def _wait_for(self, task: Task, parent_key: str) -> None:
        if parent_key in task.waiting_on or parent_key in task.blocked_by:
            return
        job = task.job
        parent = job.tasks.get(parent_key)
        if parent is not None and parent.state == "completed":
            if dependency_action(parent) == "block":
                task.blocked_by.add(parent_key)
            return
        task.waiting_on.add(parent_key)
        job.dependents.setdefault(parent_key, []).append(task)
        task.queued = False

    def _maybe_ready(self, task: Task) -> None:
        if task.state == "active" and not task.waiting_on and not task.blocked_by:
            job = task.job
            if task in job.range_waiters:
                job.range_waiters.remove(task)
            if not task.queued:
                task.queued = True
                job.ready.append(task)

    def release_dependents(self, parent: Task) -> None:
        """A parent completed: satisfy or block the tasks waiting on it."""
        job = parent.job
        action = dependency_action(parent)
        for child in job.dependents.pop(parent.key, []):
            child.waiting_on.discard(parent.key)
            if action == "block":
                child.blocked_by.add(parent.key)
            self._maybe_ready(child)

    def reopen_dependents(self, parent: Task) -> None:
        """A completed parent was reactivated: its dependents wait for it again."""
        job = parent.job
        for child in list(job.tasks.values()):
            if child.state != "active":
                continue
            was_blocked = parent.key in child.blocked_by
            child.blocked_by.discard(parent.key)
            depends = child.wire.get("dependsOn") or {}
            ids = {str(i).lower() for i in depends.get("taskIds") or []}
            number = parent.int_id
            in_range = number is not None and any(
                lo <= number <= hi for lo, hi in child.dependency_ranges
            )
            if was_blocked or parent.key in ids or in_range:
                self._wait_for(child, parent.key)

    def remove_task(self, task: Task) -> None:
        job = task.job
        self._count(task, -1)
        job.tasks.pop(task.key, None)
        task.queued = False
        if task in job.range_waiters:
            job.range_waiters.remove(task)
        for waiters in job.dependents.values():
            if task in waiters:
                waiters.remove(task)
        # A deleted parent no longer holds anyone back.
        for child in job.dependents.pop(task.key, []):
            child.waiting_on.discard(task.key)
            self._maybe_ready(child)
        self.store.put("task", f"{job.key}/{task.key}", None)

    # -- queries ---------------------------------------------------------------------

    def jobs_on_pool(self, pool_id: str) -> list[Job]:
        key = pool_id.lower()
        found = [j for j in self.jobs.values() if j.pool_id.lower() == key and j.state == "active"]
        found.sort(key=lambda j: (-int(j.wire.get("priority", 0)), j.seq))
        return found

    def task_retry_limit(self, task: Task) -> int:
        constraints = task.wire.get("constraints") or {}
        if "maxTaskRetryCount" in constraints:
            return int(constraints["maxTaskRetryCount"])
        job_constraints = task.job.wire.get("constraints") or {}
        return int(job_constraints.get("maxTaskRetryCount", 0))


def exit_options(task: Task) -> Wire:
    """The ExitOptions that apply to a completed task (spec: ExitConditions)."""
    wire = task.wire
    conditions = wire.get("exitConditions") or {}
    info = wire.get("executionInfo") or {}
    code = info.get("exitCode")
    if code is not None:
        for mapping in conditions.get("exitCodes") or []:
            if int(mapping["code"]) == code:
                return dict(mapping.get("exitOptions") or {})
        for mapping in conditions.get("exitCodeRanges") or []:
            if int(mapping["start"]) <= code <= int(mapping["end"]):
                return dict(mapping.get("exitOptions") or {})
    kind = task.failure_kind
    if kind == "preprocessing" and conditions.get("preProcessingError"):
        return dict(conditions["preProcessingError"])
    if kind == "upload" and conditions.get("fileUploadError"):
        return dict(conditions["fileUploadError"])
    if code == 0 and info.get("result") == "success":
        return {}
    return dict(conditions.get("default") or {})


def _succeeded(wire: Wire) -> bool:
    return (wire.get("executionInfo") or {}).get("result") == "success"


def dependency_action(task: Task) -> str:
    """satisfy or block: explicit in the exit options, else satisfy only on success."""
    action = exit_options(task).get("dependencyAction")
    if action:
        return str(action).lower()
    return "satisfy" if _succeeded(task.wire) else "block"


def job_action(task: Task) -> str:
    """none, disable or terminate (applies when the job's onTaskFailure says so)."""
    action = exit_options(task).get("jobAction")
    if action:
        return str(action).lower()
    return "none" if _succeeded(task.wire) else "terminate"


def later_than(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return parse_iso(a) > parse_iso(b)
