"""Runs the emulated account: sizes pools, runs start tasks, schedules and runs tasks.

One scheduler thread wakes whenever state changes (or every ``TICK`` seconds) and, under
the state lock, (1) carries out pending pool resizes, (2) finishes job terminations and
deletions, and (3) assigns ready tasks to free node slots, highest job priority first,
bounded by node slots, the job's ``maxParallelTasks`` and the host's ``max_processes``.
Each assigned attempt runs in its own thread (download resource files, run the process,
enforce ``maxWallClockTime``, upload output files), then reports back under the lock.
Tasks with ``containerSettings`` (and any task on a pool with a ``containerConfiguration``)
go through ``_containers``: the pool/task pairing is checked on the node, then the command
line runs in a container (or on the host, as its stand-in) and ``containerInfo`` follows it.

Node directories follow a Linux Batch node's layout (``$AZ_BATCH_NODE_ROOT_DIR``)::

    <node root>/shared/                         AZ_BATCH_NODE_SHARED_DIR
    <node root>/startup/{stdout.txt,stderr.txt,wd/}      the start task
    <node root>/workitems/<job>/job-1/<task>/{stdout.txt,stderr.txt,wd/}
    <node root>/workitems/<job>/job-1/jobpreparation/    the job preparation task
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._containers import ContainerError, ContainerRuntime, Launch, container_name, placement_error
from ._faults import FaultInjector
from ._state import (
    Job,
    Node,
    Pool,
    State,
    Task,
    Wire,
    job_action,
    set_node_state,
    set_state,
    stamp,
)
from ._transfer import TransferError, download_resource_files, upload_output_files
from ._wire import iso, parse_duration, parse_iso, utcnow

TICK = 0.25
RESIZE_DELAY = 0.05
_KILL_EXIT_CODE = 128 + signal.SIGKILL
_PASSTHROUGH_ENV = ("HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "SYSTEMROOT")


@dataclass(frozen=True)
class Host:
    """What the scheduler needs to know about the emulator it runs in."""

    account_name: str
    account_url: str
    nodes_dir: Path
    bin_dir: Path
    max_processes: int
    containers: ContainerRuntime


class Scheduler:
    def __init__(self, state: State, host: Host, faults: FaultInjector) -> None:
        self.state = state
        self.host = host
        self.faults = faults
        self.busy = 0  # processes running on this host (tasks, start and prep tasks)
        self._stopping = False
        self._thread = threading.Thread(
            target=self._loop, name="batch-emulator-scheduler", daemon=True
        )
        self._workers: set[threading.Thread] = set()
        self._running: set[_Running] = set()
        #: attempts assigned to a node and not yet picked up by a runner thread
        self._launched: deque[tuple[Task, Node, int]] = deque()

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self.state.lock:
            self._stopping = True
            for run in list(self._running):
                run.kill()
            self.state.wake()
        self._thread.join()
        for worker in list(self._workers):
            worker.join(timeout=10)
        self.host.containers.close()

    def _loop(self) -> None:
        state = self.state
        with state.lock:
            while not self._stopping:
                self.tick()
                # Sleep until the next change, tick, pending resize or process deadline.
                due = [p.resize_due for p in state.pools.values() if p.resize_due is not None]
                due += [d for run in self._running for d in run.deadlines()]
                wait = min([TICK, *(d - time.monotonic() for d in due)])
                state.changed.wait(max(wait, 0.001))

    def tick(self) -> None:
        """One scheduling pass; the caller holds the state lock."""
        now = time.monotonic()
        self._police(now)
        for pool in list(self.state.pools.values()):
            if pool.resize_due is not None and pool.resize_due <= now:
                self._reconcile(pool)
        for job in list(self.state.jobs.values()):
            self._advance_job(job)
        self._assign()
        self._dispatch()

    # -- pools and nodes ---------------------------------------------------------------

    def _reconcile(self, pool: Pool) -> None:
        """Finish a resize: add or remove nodes until the pool has its target size."""
        wire = pool.wire
        pool.resize_due = None
        if wire.get("state") == "deleting":
            for node in list(pool.nodes.values()):
                self._remove_node(pool, node, "requeue")
            self.state.pools.pop(pool.key, None)
            self.state.store.put("pool", pool.key, None)
            shutil.rmtree(self.host.nodes_dir / _safe(pool.id), ignore_errors=True)
            return
        option, pool.deallocation = pool.deallocation, "requeue"
        for dedicated, target_key in (
            (True, "targetDedicatedNodes"),
            (False, "targetLowPriorityNodes"),
        ):
            target = int(wire.get(target_key) or 0)
            members = [n for n in pool.nodes.values() if n.dedicated == dedicated]
            while len(members) < target:
                members.append(self._add_node(pool, dedicated))
            surplus = len(members) - target
            if surplus > 0:
                # Idle nodes go first, as on Batch.
                members.sort(key=lambda n: (bool(n.running), n.id))
                for node in members[:surplus]:
                    self._remove_node(pool, node, option)
        wire["currentDedicatedNodes"] = sum(1 for n in pool.nodes.values() if n.dedicated)
        wire["currentLowPriorityNodes"] = sum(1 for n in pool.nodes.values() if not n.dedicated)
        now = utcnow()
        wire["allocationState"] = "steady"
        wire["allocationStateTransitionTime"] = iso(now)
        stamp(wire, now)
        self.state.save_pool(pool)

    def _add_node(self, pool: Pool, dedicated: bool) -> Node:
        index = pool.next_node
        pool.next_node += 1
        digest = hashlib.sha256(f"{pool.id}/{index}".encode()).hexdigest()[:40]
        node_id = f"tvmps_{digest}_{'d' if dedicated else 'p'}"
        root = self.host.nodes_dir / _safe(pool.id) / node_id
        for sub in ("shared", "startup", "workitems"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        now = iso(utcnow())
        start_task = pool.wire.get("startTask")
        wire: Wire = {
            "id": node_id,
            "url": f"{self.host.account_url}/pools/{pool.id}/nodes/{node_id}",
            "state": "starting",
            "schedulingState": "enabled",
            "stateTransitionTime": now,
            "lastBootTime": now,
            "allocationTime": now,
            "ipAddress": "127.0.0.1",
            "affinityId": f"TVM:{node_id}",
            "vmSize": pool.wire.get("vmSize", ""),
            "totalTasksRun": 0,
            "runningTasksCount": 0,
            "runningTaskSlotsCount": 0,
            "totalTasksSucceeded": 0,
            "isDedicated": dedicated,
        }
        node = Node(
            pool=pool,
            wire=wire,
            root=root,
            slots=int(pool.wire.get("taskSlotsPerNode", 1)),
            dedicated=dedicated,
        )
        pool.nodes[node_id] = node
        if start_task:
            wire["startTask"] = start_task
            wait = start_task.get("waitForSuccess", True)
            # waitingforstarttask means "the StartTask has started running": say so at once.
            wire["startTaskInfo"] = {"state": "running", "startTime": now, "retryCount": 0}
            set_node_state(wire, "waitingforstarttask" if wait else "idle")
            self._spawn(self._run_start_task, node)
        else:
            set_node_state(wire, "idle")
        return node

    def _remove_node(self, pool: Pool, node: Node, option: str) -> None:
        """Take a node out of the pool; its running tasks are requeued or ended."""
        node.removed = True
        for task in list(node.running):
            task.stop_reason = "requeue" if option in ("requeue", "retaineddata") else "terminate"
            if option == "taskcompletion":
                task.stop_reason = None  # let it finish; the node goes once it is idle
                continue
            self._signal(task)
        pool.nodes.pop(node.id, None)

    def _run_start_task(self, node: Node) -> None:
        spec = node.wire["startTask"]
        limit = int(spec.get("maxTaskRetryCount", 0))
        wait = spec.get("waitForSuccess", True)
        task_dir = node.root / "startup"
        retries = 0
        while True:
            with self.state.lock:
                # A start task is a process on this host too: it waits for a free one.
                while self.busy >= self.host.max_processes and not (node.removed or self._stopping):
                    self.state.changed.wait(TICK)
                if node.removed or self._stopping:
                    return
                self.busy += 1
                started = iso(utcnow())
                info: Wire = {"state": "running", "startTime": started, "retryCount": retries}
                if retries:
                    info["lastRetryTime"] = started
                node.wire["startTaskInfo"] = info
                self.state.save_pool(node.pool)
            batch_env = self._batch_env(node, spec.get("environmentSettings"), task_dir, {})
            outcome = self._run_process(
                spec,
                task_dir,
                batch_env,
                stop=lambda: node.removed or self._stopping,
                node=node,
                registries=self._registries(node.pool, spec, node.pool.secrets, "startTask."),
                publish=lambda info: self._publish_start_task(node, info),
            )
            with self.state.lock:
                self.busy -= 1
                self.state.wake()
                info = dict(node.wire["startTaskInfo"])
                info.update(_finished(outcome))
                node.wire["startTaskInfo"] = info
                failed = info["result"] == "failure"
                if failed and (limit == -1 or retries < limit) and not node.removed:
                    retries += 1
                    continue
                if not node.removed:
                    if failed and wait:
                        set_node_state(node.wire, "starttaskfailed")
                    elif node.wire["state"] == "waitingforstarttask":
                        set_node_state(node.wire, "idle")
                self.state.save_pool(node.pool)
                self.state.wake()
                return

    # -- jobs --------------------------------------------------------------------------

    def _advance_job(self, job: Job) -> None:
        state = job.state
        if state in ("active", "disabling", "disabled", "enabling") and _job_expired(job):
            # constraints.maxWallClockTime, measured from the job's creation (spec).
            self.end_job(job, "MaxWallClockTimeExpiry")
            state = job.state
        if state == "terminating" and job.running == 0:
            now = utcnow()
            set_state(job.wire, "completed", now)
            job.wire.setdefault("executionInfo", {})["endTime"] = iso(now)
            self.state.save_job(job)
        elif state == "deleting" and job.running == 0 and not self._preparing(job):
            self.state.jobs.pop(job.key, None)
            for task in job.tasks.values():
                self.state.store.put("task", f"{job.key}/{task.key}", None)
            self.state.store.put("job", job.key, None)
            for pool in self.state.pools.values():
                for node in pool.nodes.values():
                    node.job_prep.pop(job.key, None)
                    shutil.rmtree(node.root / "workitems" / _safe(job.id), ignore_errors=True)
        elif state == "disabling" and job.running == 0:
            set_state(job.wire, "disabled")
            self.state.save_job(job)
        elif state == "enabling":
            set_state(job.wire, "active")
            self.state.save_job(job)

    def _preparing(self, job: Job) -> bool:
        """Whether a job preparation task of ``job`` still runs on a node: its directory
        is removed only once it has ended (a deleted job's ends at once, see
        :meth:`_run_job_prep`)."""
        return any(
            (node.job_prep.get(job.key) or {}).get("state") == "running"
            for pool in self.state.pools.values()
            for node in pool.nodes.values()
        )

    def end_job(self, job: Job, reason: str) -> None:
        """Terminate a job: running tasks are ended, then the job completes."""
        if job.state in ("completed", "terminating", "deleting"):
            return
        set_state(job.wire, "terminating")
        job.wire.setdefault("executionInfo", {})["terminateReason"] = reason
        for task in job.tasks.values():
            if task.state in ("preparing", "running"):
                task.stop_reason = "terminate"
                self._signal(task)
        self.state.save_job(job)
        self.state.wake()

    def check_all_complete(self, job: Job) -> None:
        """onAllTasksComplete=terminatejob: the job ends once no task is left to run."""
        if (
            job.state == "active"
            and str(job.wire.get("onAllTasksComplete", "noaction")).lower() == "terminatejob"
            and job.counts.active == 0
            and job.counts.running == 0
        ):
            self.end_job(job, "AllTasksComplete")

    # -- task assignment ---------------------------------------------------------------

    def _assign(self) -> None:
        host_cap = self.host.max_processes
        for pool in self.state.pools.values():
            if pool.wire.get("state") != "active":
                continue
            nodes = [n for n in pool.nodes.values() if n.usable]
            if not nodes:
                continue
            spread = (
                str(
                    (pool.wire.get("taskSchedulingPolicy") or {}).get("nodeFillType", "spread")
                ).lower()
                != "pack"
            )
            for job in self.state.jobs_on_pool(pool.id):
                while job.ready and self.busy < host_cap and job.running < job.max_parallel:
                    task = job.ready[0]
                    if not task.queued or task.state != "active":
                        job.ready.popleft()
                        continue
                    node = self._pick_node(job, task, nodes, spread)
                    if node is None:
                        break
                    job.ready.popleft()
                    task.queued = False
                    self._launch(task, node)
                if self.busy >= host_cap:
                    return

    def _pick_node(self, job: Job, task: Task, nodes: list[Node], spread: bool) -> Node | None:
        prep = job.wire.get("jobPreparationTask")
        best: Node | None = None
        for node in nodes:
            free = node.slots - node.used_slots
            if free < task.slots:
                continue
            if prep is not None:
                status = node.job_prep.get(job.key)
                if status is None:
                    if self.busy >= self.host.max_processes:
                        continue
                    self._start_job_prep(job, node)
                    status = node.job_prep[job.key]
                if (
                    prep.get("waitForSuccess", True)
                    and status.get("result") != "success"
                    and status.get("state") != "running"
                ):
                    continue  # its job preparation task failed on this node
            if best is None or (spread and free > best.slots - best.used_slots):
                best = node
            if not spread:
                break
        return best

    def _launch(self, task: Task, node: Node) -> None:
        job = task.job
        task.node = node
        task.attempt += 1
        task.stop_reason = None
        task.failure_kind = None
        node.used_slots += task.slots
        node.running.add(task)
        node.refresh_state()
        job.running += 1
        self.busy += 1
        now = utcnow()
        info = task.wire.setdefault("executionInfo", {"retryCount": 0, "requeueCount": 0})
        # startTime is set when the task enters running (spec: BatchTaskExecutionInfo).
        for stale in ("endTime", "exitCode", "failureInfo", "result", "startTime", "containerInfo"):
            info.pop(stale, None)
        task.wire["nodeInfo"] = {
            "affinityId": node.wire["affinityId"],
            "nodeUrl": node.wire["url"],
            "poolId": node.pool.id,
            "nodeId": node.id,
            "taskRootDirectory": f"workitems/{job.id}/job-1/{task.id}",
            "taskRootDirectoryUrl": f"{node.wire['url']}/files/workitems/{job.id}/job-1/{task.id}",
        }
        self.state.move_task(task, "preparing", now)
        self.state.save_task(task)
        self._launched.append((task, node, task.attempt))

    # -- running tasks ---------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start a runner thread for every launched attempt (caller holds the lock)."""
        while self._launched:
            self._spawn(self._runner, self._launched.popleft())

    def _runner(self, item: tuple[Task, Node, int] | None) -> None:
        """Run attempts until none is left for this thread.

        A runner whose task just ended assigns the freed slot itself and runs the next
        attempt in the same thread: no hand-off to the scheduler thread, no new thread.
        """
        while item is not None:
            self._run_task(*item)
            with self.state.lock:
                if self._stopping:
                    return
                self._assign()
                item = self._launched.popleft() if self._launched else None
                self._dispatch()

    def _run_task(self, task: Task, node: Node, attempt: int) -> None:
        job = task.job
        task_dir = node.root / "workitems" / _safe(job.id) / "job-1" / _safe(task.id)
        wire = task.wire
        if not self._await_job_prep(task, node):
            return
        delay = self.faults.plan.task_start_delay
        if delay:
            time.sleep(delay)
        preempt_at = None
        if self.faults.preempt():
            preempt_at = time.monotonic() + self.faults.plan.preempt_after
        with self.state.lock:
            env_settings = list(job.wire.get("commonEnvironmentSettings") or [])
            env_settings += list(wire.get("environmentSettings") or [])
            extra = {"AZ_BATCH_JOB_ID": job.id, "AZ_BATCH_TASK_ID": task.id}
            if job.wire.get("jobPreparationTask") is not None:
                prep_dir = node.root / "workitems" / _safe(job.id) / "job-1" / "jobpreparation"
                extra["AZ_BATCH_JOB_PREP_DIR"] = str(prep_dir)
                extra["AZ_BATCH_JOB_PREP_WORKING_DIR"] = str(prep_dir / "wd")
            if task.stop_reason is None and not self._stopping:
                started = utcnow()
                info = wire["executionInfo"]
                info["startTime"] = iso(started)
                if info.get("retryCount"):
                    info["lastRetryTime"] = iso(started)
                self.state.move_task(task, "running", started)
                self.state.save_task(task)
        batch_env = self._batch_env(node, env_settings, task_dir, extra)
        limit = parse_duration(
            (wire.get("constraints") or {}).get("maxWallClockTime"), "constraints.maxWallClockTime"
        )
        outcome = self._run_process(
            wire,
            task_dir,
            batch_env,
            stop=lambda: task.stop_reason is not None or self._stopping,
            node=node,
            regular=True,
            registries=self._registries(node.pool, wire, task.secrets, ""),
            publish=lambda info: self._publish_task(task, attempt, info),
            wall_clock=limit.total_seconds() if limit else None,
            preempt_at=preempt_at,
            output_files=wire.get("outputFiles") or [],
        )
        with self.state.lock:
            self._finish_task(task, node, outcome)

    def _await_job_prep(self, task: Task, node: Node) -> bool:
        """Hold a preparing task until the job preparation task on its node has succeeded.

        Spec (BatchTaskState.preparing): the task is assigned to the node but waits for a
        required job preparation task there; if that fails, the task returns to active and
        may be assigned to another node. Returns whether the attempt goes on.
        """
        job = task.job
        with self.state.lock:
            while True:
                prep = job.wire.get("jobPreparationTask")
                status = node.job_prep.get(job.key) or {}
                if (
                    prep is None
                    or not prep.get("waitForSuccess", True)
                    or status.get("state") != "running"
                    or task.stop_reason is not None
                    or self._stopping
                ):
                    break
                self.state.changed.wait(TICK)
            if (
                prep is None
                or not prep.get("waitForSuccess", True)
                or status.get("result") != "failure"
                or task.stop_reason is not None
                or self._stopping
            ):
                return True
            # Back to active, without counting a retry or a requeue.
            node.used_slots -= task.slots
            node.running.discard(task)
            job.running -= 1
            self.busy -= 1
            node.refresh_state()
            task.wire.pop("nodeInfo", None)
            self.state.move_task(task, "active")
            self.state.save_task(task)
            self.state._maybe_ready(task)
            self.state.wake()
            return False

    def _finish_task(self, task: Task, node: Node, outcome: Outcome) -> None:
        job = task.job
        state = self.state
        node.used_slots -= task.slots
        node.running.discard(task)
        job.running -= 1
        self.busy -= 1
        node.refresh_state()
        info = task.wire["executionInfo"]
        now = utcnow()
        reason = task.stop_reason or outcome.stop_reason
        if self._stopping and reason is None:
            reason = "shutdown"
        if reason == "shutdown" or task.key not in job.tasks or job.state == "deleting":
            # The emulator is stopping: a restart requeues the task (see _service.load).
            state.wake()
            return
        if reason in ("requeue", "preempt"):
            info["requeueCount"] = int(info.get("requeueCount", 0)) + 1
            info["lastRequeueTime"] = iso(now)
            for stale in ("startTime", "containerInfo"):
                info.pop(stale, None)
            task.wire.pop("nodeInfo", None)
            state.move_task(task, "active", now)
            state.save_task(task)
            state._maybe_ready(task)
            state.wake()
            return
        info.update({k: v for k, v in _finished(outcome).items() if k != "state"})
        task.failure_kind = outcome.failure_kind
        node.wire["totalTasksRun"] = int(node.wire.get("totalTasksRun", 0)) + 1
        if info["result"] == "success":
            node.wire["totalTasksSucceeded"] = int(node.wire.get("totalTasksSucceeded", 0)) + 1
        retryable = outcome.failure_kind is None and reason is None and info["result"] == "failure"
        limit = state.task_retry_limit(task)
        if retryable and (limit == -1 or int(info.get("retryCount", 0)) < limit):
            info["retryCount"] = int(info.get("retryCount", 0)) + 1
            state.move_task(task, "active", now)
            state.save_task(task)
            state._maybe_ready(task)
            state.wake()
            return
        info["endTime"] = iso(now)
        state.move_task(task, "completed", now)
        state.save_task(task)
        state.release_dependents(task)
        if (
            info["result"] == "failure"
            and str(job.wire.get("onTaskFailure", "noaction")).lower()
            == "performexitoptionsjobaction"
        ):
            action = job_action(task)
            if action == "terminate":
                self.end_job(job, "TaskFailed")
            elif action == "disable" and job.state == "active":
                set_state(job.wire, "disabled")
                state.save_job(job)
        self.check_all_complete(job)
        state.save_pool(node.pool)
        state.wake()

    def _start_job_prep(self, job: Job, node: Node) -> None:
        spec = job.wire["jobPreparationTask"]
        node.job_prep[job.key] = {"state": "running", "startTime": iso(utcnow()), "retryCount": 0}
        self.busy += 1
        self._spawn(self._run_job_prep, job, node, spec)

    def _run_job_prep(self, job: Job, node: Node, spec: Wire) -> None:
        task_dir = node.root / "workitems" / _safe(job.id) / "job-1" / "jobpreparation"
        limit = int((spec.get("constraints") or {}).get("maxTaskRetryCount", 0))
        wall = parse_duration(
            (spec.get("constraints") or {}).get("maxWallClockTime"),
            "jobPreparationTask.constraints.maxWallClockTime",
        )
        settings = list(job.wire.get("commonEnvironmentSettings") or [])
        settings += list(spec.get("environmentSettings") or [])
        extra = {
            "AZ_BATCH_JOB_ID": job.id,
            "AZ_BATCH_TASK_ID": spec.get("id", "jobpreparation"),
            "AZ_BATCH_JOB_PREP_DIR": str(task_dir),
            "AZ_BATCH_JOB_PREP_WORKING_DIR": str(task_dir / "wd"),
        }
        batch_env = self._batch_env(node, settings, task_dir, extra)
        registries = self._registries(node.pool, spec, job.secrets, "jobPreparationTask.")
        retries = 0
        try:
            while True:
                outcome = self._run_process(
                    spec,
                    task_dir,
                    batch_env,
                    stop=lambda: self._stopping or node.removed or job.state == "deleting",
                    node=node,
                    registries=registries,
                    publish=lambda info: self._publish_job_prep(job, node, info),
                    wall_clock=wall.total_seconds() if wall else None,
                )
                with self.state.lock:
                    if job.key not in node.job_prep:
                        return  # the job was deleted meanwhile: its status went with it
                    info = dict(node.job_prep[job.key])
                    info.update(_finished(outcome))
                    info["taskRootDirectory"] = f"workitems/{job.id}/job-1/jobpreparation"
                    info["taskRootDirectoryUrl"] = (
                        f"{node.wire['url']}/files/workitems/{job.id}/job-1/jobpreparation"
                    )
                    retry = limit == -1 or retries < limit
                    if info["result"] == "failure" and retry and job.state != "deleting":
                        retries += 1
                        now = iso(utcnow())
                        node.job_prep[job.key] = {
                            "state": "running",
                            "startTime": now,
                            "retryCount": retries,
                            "lastRetryTime": now,
                        }
                        continue
                    node.job_prep[job.key] = info
                    self.state.save_pool(node.pool)
                    return
        finally:
            with self.state.lock:
                self.busy -= 1
                self.state.wake()

    # -- processes ---------------------------------------------------------------------

    def _batch_env(
        self, node: Node, settings: Any, task_dir: Path, extra: dict[str, str]
    ) -> dict[str, str]:
        """The task's environment as Batch defines it: the AZ_BATCH_* variables of a Linux
        node and the task's settings. A container gets exactly these."""
        root = node.root
        env: dict[str, str] = {}
        env.update(
            {
                "AZ_BATCH_ACCOUNT_NAME": self.host.account_name,
                "AZ_BATCH_ACCOUNT_URL": self.host.account_url,
                "AZ_BATCH_POOL_ID": node.pool.id,
                "AZ_BATCH_NODE_ID": node.id,
                "AZ_BATCH_NODE_IS_DEDICATED": "true" if node.dedicated else "false",
                "AZ_BATCH_NODE_ROOT_DIR": str(root),
                "AZ_BATCH_NODE_SHARED_DIR": str(root / "shared"),
                "AZ_BATCH_NODE_STARTUP_DIR": str(root / "startup"),
                "AZ_BATCH_NODE_STARTUP_WORKING_DIR": str(root / "startup" / "wd"),
                "AZ_BATCH_NODE_MOUNTS_DIR": str(root / "fsmounts"),
                "AZ_BATCH_TASK_DIR": str(task_dir),
                "AZ_BATCH_TASK_WORKING_DIR": str(task_dir / "wd"),
                "AZ_BATCH_TASK_USER": "_azbatch",
            }
        )
        env.update(extra)
        for item in settings or []:
            env[str(item["name"])] = str(item.get("value") or "")
        return env

    def _host_env(self, batch_env: dict[str, str]) -> dict[str, str]:
        """A process on this host also gets a few of the emulator's own variables, and the
        ``python3`` shim first on its PATH (unless the task sets PATH itself)."""
        env = {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}
        env["PATH"] = os.pathsep.join([str(self.host.bin_dir), os.environ.get("PATH", "")])
        env.update(batch_env)
        return env

    def _registries(
        self, pool: Pool, spec: Wire, secrets: dict[str, str], prefix: str
    ) -> list[tuple[Wire, str | None]]:
        """Registries that may hold a task's image, with their passwords: the task's own
        (``prefix`` + ``containerSettings.registry`` in its owner's secrets), then the pool's."""
        found: list[tuple[Wire, str | None]] = []
        own = (spec.get("containerSettings") or {}).get("registry")
        if isinstance(own, dict):
            found.append((own, secrets.get(f"{prefix}containerSettings.registry")))
        path = "virtualMachineConfiguration.containerConfiguration.containerRegistries"
        config = (pool.wire.get("virtualMachineConfiguration") or {}).get(
            "containerConfiguration"
        ) or {}
        for i, registry in enumerate(config.get("containerRegistries") or []):
            found.append((registry, pool.secrets.get(f"{path}[{i}]")))
        return found

    # -- containerInfo, live ---------------------------------------------------------

    def _publish_task(self, task: Task, attempt: int, info: Wire) -> None:
        with self.state.lock:
            if task.attempt == attempt and task.state == "running":
                task.wire.setdefault("executionInfo", {})["containerInfo"] = info
                self.state.save_task(task)

    def _publish_start_task(self, node: Node, info: Wire) -> None:
        with self.state.lock:
            current = node.wire.get("startTaskInfo")
            if isinstance(current, dict) and current.get("state") == "running":
                current["containerInfo"] = info
                self.state.save_pool(node.pool)

    def _publish_job_prep(self, job: Job, node: Node, info: Wire) -> None:
        with self.state.lock:
            current = node.job_prep.get(job.key)
            if current is not None and current.get("state") == "running":
                current["containerInfo"] = info
                self.state.save_pool(node.pool)

    def _run_process(
        self,
        spec: Wire,
        task_dir: Path,
        batch_env: dict[str, str],
        *,
        stop: Callable[[], bool],
        node: Node,
        registries: list[tuple[Wire, str | None]],
        publish: Callable[[Wire], None],
        regular: bool = False,
        wall_clock: float | None = None,
        preempt_at: float | None = None,
        output_files: list[Wire] | None = None,
    ) -> Outcome:
        """Download resource files, run the command line, upload output files.

        ``batch_env`` is the task's Batch environment; ``regular``: a job's task (not a start
        or job preparation task). A task with ``containerSettings`` runs through the
        container runtime; ``publish`` receives its ``containerInfo`` while it runs.
        """
        working_dir = task_dir / "wd"
        working_dir.mkdir(parents=True, exist_ok=True)
        env = self._host_env(batch_env)
        settings = spec.get("containerSettings")
        mismatch = placement_error(node.pool.wire, settings, regular=regular)
        if mismatch is not None:
            return Outcome(failure=mismatch.failure_info(), failure_kind="preprocessing")
        try:
            download_resource_files(spec.get("resourceFiles") or [], working_dir)
        except TransferError as error:
            return Outcome(failure=error.to_failure_info(), failure_kind="preprocessing")
        try:
            argv = shlex.split(str(spec["commandLine"]))
        except ValueError as error:
            return Outcome(
                failure=_user_error("CommandLineParseError", str(error)),
                failure_kind="preprocessing",
            )
        if not argv and settings is None:  # a container's may be empty: its entrypoint runs
            return Outcome(
                failure=_user_error("CommandLineParseError", "empty command line"),
                failure_kind="preprocessing",
            )
        launch: Launch | None = None
        cwd, proc_env = working_dir, env
        if settings is not None:
            try:
                launch = self.host.containers.prepare(
                    settings,
                    argv,
                    pool_id=node.pool.id,
                    name=container_name(node.id, batch_env.get("AZ_BATCH_TASK_ID", "start")),
                    host_env=env,
                    batch_env=batch_env,
                    registries=registries,
                    stop=lambda: stop() or self._stopping,
                )
            except ContainerError as error:
                return Outcome(failure=error.failure_info(), failure_kind="preprocessing")
            argv, proc_env = launch.argv, launch.env
            cwd = launch.cwd or working_dir
        with self.state.lock:
            if stop():  # ended before its process started (e.g. while preparing)
                return Outcome(failure=_user_error("TaskEnded", "Task Was Ended by User Request"))
        with open(task_dir / "stdout.txt", "wb") as out, open(task_dir / "stderr.txt", "wb") as err:
            try:
                # Outside the state lock: process starts must not queue behind each other.
                proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=proc_env,
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError as error:
                return Outcome(
                    failure=_user_error("CommandProgramNotFound", str(error)),
                    failure_kind="preprocessing",
                )
        now = time.monotonic()
        run = _Running(
            proc,
            stop,
            now + wall_clock if wall_clock is not None else None,
            preempt_at,
            on_kill=launch.kill if launch is not None else None,
        )
        with self.state.lock:
            self._running.add(run)
            if run.deadlines() or stop() or self._stopping:
                self.state.wake()  # the watchdog (tick) must see it now
        try:
            if launch is not None:
                info = launch.started(proc)
                if info is not None and proc.poll() is None:
                    publish(info)
            proc.wait()  # blocks; the watchdog kills the process group when it must stop
        finally:
            with self.state.lock:
                self._running.discard(run)
        reason = run.killed_for
        code = proc.returncode
        exit_code = (
            _KILL_EXIT_CODE if code == -signal.SIGKILL else (128 - code if code < 0 else code)
        )
        container_info, unstarted = None, None
        if launch is not None:
            container_info, unstarted = launch.finished(exit_code, task_dir / "stderr.txt")
        if reason == "preempt":
            return Outcome(stop_reason="preempt")
        failure = None
        if reason == "walltime":
            failure = _user_error("TaskEnded", "Task Max Wall Clock Time Exceeded")
        elif stop() or self._stopping:
            failure = _user_error("TaskEnded", "Task Was Ended by User Request")
        elif unstarted is not None:  # the runtime could not create the container
            return Outcome(failure=unstarted.failure_info(), failure_kind="preprocessing")
        elif exit_code != 0:
            failure = _user_error(
                "FailureExitCode",
                "The task process exited with an unexpected exit code",
                [("Message", "The task process exited with an unexpected exit code")],
            )
        outcome = Outcome(
            exit_code=exit_code,
            failure=failure,
            stop_reason="walltime" if reason == "walltime" else None,
            container_info=container_info,
        )
        if output_files:
            try:
                upload_output_files(
                    output_files, task_dir, working_dir, succeeded=failure is None, environment=env
                )
            except TransferError as error:
                if outcome.failure is None:
                    outcome.failure = error.to_failure_info()
                outcome.failure_kind = "upload"
        return outcome

    def _signal(self, task: Task) -> None:
        """Ask a task's attempt to stop: the next tick's watchdog kills its process."""
        self.state.wake()

    def _police(self, now: float) -> None:
        """Kill processes whose attempt must end: stop requested, wall clock, preemption."""
        for run in self._running:
            if run.killed_for is not None or run.proc.returncode is not None:
                continue
            if run.stop() or self._stopping:
                run.killed_for = "stop"
            elif run.wall_clock_due is not None and now >= run.wall_clock_due:
                run.killed_for = "walltime"
            elif run.preempt_due is not None and now >= run.preempt_due:
                run.killed_for = "preempt"
            else:
                continue
            run.kill()

    def _spawn(self, target: Any, *args: Any) -> None:
        def run() -> None:
            try:
                target(*args)
            finally:
                self._workers.discard(thread)

        thread = threading.Thread(target=run, name="batch-emulator-worker", daemon=True)
        self._workers.add(thread)
        thread.start()


@dataclass(eq=False)
class _Running:
    """A process in flight, watched by the scheduler thread."""

    proc: subprocess.Popen[bytes]
    stop: Any
    wall_clock_due: float | None
    preempt_due: float | None
    killed_for: str | None = None  # "stop", "walltime" or "preempt"
    #: also stops what the process started elsewhere (a container task's container)
    on_kill: Callable[[subprocess.Popen[bytes]], None] | None = None

    def kill(self) -> None:
        running = self.proc.returncode is None
        _kill(self.proc)
        if running and self.on_kill is not None:
            self.on_kill(self.proc)

    def deadlines(self) -> list[float]:
        if self.killed_for is not None:
            return []
        return [d for d in (self.wall_clock_due, self.preempt_due) if d is not None]


@dataclass
class Outcome:
    exit_code: int | None = None
    failure: Wire | None = None
    failure_kind: str | None = None
    stop_reason: str | None = None
    #: the attempt's containerInfo (container tasks)
    container_info: Wire | None = None


def _job_expired(job: Job) -> bool:
    """Whether the job has outlived its ``constraints.maxWallClockTime``."""
    limit = (job.wire.get("constraints") or {}).get("maxWallClockTime")
    duration = parse_duration(limit, "constraints.maxWallClockTime")  # validated when stored
    if duration is None:
        return False
    return utcnow() - parse_iso(str(job.wire["creationTime"])) >= duration


def _finished(outcome: Outcome) -> Wire:
    """executionInfo fields of a finished attempt."""
    info: Wire = {"state": "completed", "endTime": iso(utcnow())}
    if outcome.exit_code is not None:
        info["exitCode"] = outcome.exit_code
    if outcome.container_info is not None:
        info["containerInfo"] = outcome.container_info
    if outcome.failure is not None:
        info["failureInfo"] = outcome.failure
        info["result"] = "failure"
    else:
        info["result"] = "success"
    return info


def _user_error(code: str, message: str, details: list[tuple[str, str]] | None = None) -> Wire:
    failure: Wire = {"category": "usererror", "code": code, "message": message}
    if details:
        failure["details"] = [{"name": n, "value": v} for n, v in details]
    return failure


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the task's whole process group (its shell and everything it started)."""
    if proc.returncode is not None:
        return  # reaped: its process group ID may already belong to someone else
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _safe(ident: str) -> str:
    """Directory name for an ID (Batch IDs are already path-safe; be defensive)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in ident)


def python_shim(bin_dir: Path) -> None:
    """``python3`` on a task's PATH is this interpreter (a script, so venvs keep working)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("python3", "python"):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        shim.chmod(0o755)
