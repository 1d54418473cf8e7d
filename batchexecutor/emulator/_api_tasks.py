"""Task operations, task files and compute node files."""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Collection, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _validate as v
from ._api_jobs import writable
from ._errors import BatchServiceError, conflict, invalid_property, not_found
from ._http import Request, Response, Route, route
from ._odata import (
    FILE_FILTERABLE,
    TASK_FILTERABLE,
    TASK_SELECTABLE,
)
from ._state import Job, Node, Task, Wire, stamp
from ._wire import UNBOUNDED, check_id, iso, utcnow

if TYPE_CHECKING:
    from ._api import Service

MAX_TASKS_PER_COLLECTION = 100
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def routes(service: Service) -> list[Route]:
    from ._api import check_conditions, page, resource_headers, single

    state = service.state
    scheduler = service.scheduler

    def find_job(request: Request) -> Job:
        job_id = request.path_params["jobId"]
        job = state.jobs.get(job_id.lower())
        if job is None:
            raise not_found("Job", job_id)
        return job

    def find(request: Request) -> Task:
        job = find_job(request)
        task_id = request.path_params["taskId"]
        task = job.tasks.get(task_id.lower())
        if task is None:
            raise not_found("Task", task_id)
        return task

    def build(
        job: Job, body: Any, batch: dict[str, Wire], named: Collection[str] | None = None
    ) -> tuple[Wire, dict[str, str]]:
        """Validate one task body; ``batch`` holds the tasks of the same request so far,
        ``named`` the (lower-case) IDs of all tasks in the request, which may be parents.

        Returns the task's wire and its registry passwords (kept out of the wire).
        ``containerSettings`` are checked here for themselves only: whether the task may
        have them depends on the pool that will run it, checked on the node (``_containers``).
        """
        if not isinstance(body, dict):
            raise invalid_property("value", body, "Each task must be a JSON object.")
        fields = v.task_like(body, "", v.TASK, required=("id", "commandLine"))
        task_id = check_id(fields["id"])
        prep = job.wire.get("jobPreparationTask")
        if prep is not None and prep.get("id", "jobpreparation").lower() == task_id.lower():
            raise conflict(
                "TaskIdSameAsJobPreparationTask",
                "The task ID is the same as the job preparation task's ID.",
            )
        if task_id.lower() in job.tasks or task_id.lower() in batch:
            raise conflict("TaskExists", "The specified task already exists.")
        for unsupported in ("multiInstanceSettings", "applicationPackageReferences"):
            if unsupported in fields:
                raise invalid_property(
                    unsupported, "...", f"{unsupported} is not supported by the local emulator."
                )
        if "dependsOn" in fields:
            if not job.wire.get("usesTaskDependencies"):
                raise conflict(
                    "TaskDependenciesNotSpecifiedOnJob",
                    "The Task has dependencies, but the Job does not allow Task "
                    "dependencies (usesTaskDependencies is false).",
                )
            fields["dependsOn"] = _dependencies(
                task_id, fields["dependsOn"], job, batch if named is None else named
            )
        if "exitConditions" in fields:
            _check_exit_conditions(fields["exitConditions"], job)
        now = utcnow()
        constraints = {
            "maxWallClockTime": UNBOUNDED,
            "retentionTime": "P7D",
            "maxTaskRetryCount": int(
                (job.wire.get("constraints") or {}).get("maxTaskRetryCount", 0)
            ),
        }
        constraints.update(fields.pop("constraints", {}))
        wire: Wire = {
            "id": task_id,
            "url": service.url("jobs", job.id, "tasks", task_id),
            "creationTime": iso(now),
            "state": "active",
            "stateTransitionTime": iso(now),
            "constraints": constraints,
            "requiredSlots": 1,
            "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}},
            "executionInfo": {"retryCount": 0, "requeueCount": 0},
        }
        for key, value in fields.items():
            if key != "id":
                wire[key] = value
        if "exitConditions" in wire:
            wire["exitConditions"] = _normalize_exit_conditions(wire["exitConditions"])
        secrets = v.take_registry_passwords(wire)
        stamp(wire, now)
        return wire, secrets

    def create(request: Request) -> Response:
        job = find_job(request)
        writable(job, terminating_ok=False)
        wire, secrets = build(job, request.json_object(), {})
        state.add_task(job, wire, secrets)
        state.wake()
        location = service.url("jobs", job.id, "tasks", wire["id"])
        return Response(201, None, resource_headers(wire, location))

    def add_collection(request: Request) -> Response:
        job = find_job(request)
        body = request.json_object()
        tasks = body.get("value")
        if tasks is None:
            raise BatchServiceError(
                400,
                "MissingRequiredProperty",
                "A required property was not specified in the request body.",
                [("PropertyName", "value")],
            )
        if not isinstance(tasks, list):
            raise invalid_property("value", tasks, "Expected a JSON array of tasks.")
        if len(tasks) > MAX_TASKS_PER_COLLECTION:
            raise invalid_property(
                "value",
                f"{len(tasks)} tasks",
                f"A task collection may hold at most {MAX_TASKS_PER_COLLECTION} tasks.",
            )
        writable(job, terminating_ok=False)
        results: list[Wire] = []
        accepted: dict[str, Wire] = {}
        passwords: dict[str, dict[str, str]] = {}
        position: dict[str, int] = {}
        # A parent may come anywhere in the request, before or after its dependents.
        named = {
            item["id"].lower()
            for item in tasks
            if isinstance(item, dict) and isinstance(item.get("id"), str)
        }
        for item in tasks:
            task_id = item.get("id") if isinstance(item, dict) else None
            try:
                wire, secrets = build(job, item, accepted, named)
            except BatchServiceError as error:
                results.append(
                    {
                        "status": "servererror" if error.status >= 500 else "clienterror",
                        "taskId": task_id if isinstance(task_id, str) else "",
                        "error": _error_body(error),
                    }
                )
                continue
            accepted[wire["id"].lower()] = wire
            passwords[wire["id"].lower()] = secrets
            position[wire["id"].lower()] = len(results)
            results.append(
                {
                    "status": "success",
                    "taskId": wire["id"],
                    "eTag": wire["eTag"],
                    "lastModified": wire["lastModified"],
                    "location": service.url("jobs", job.id, "tasks", wire["id"]),
                }
            )
        # Parents named in the request must have been accepted themselves (transitively).
        pruned = True
        while pruned:
            pruned = False
            for key, wire in list(accepted.items()):
                parents = (wire.get("dependsOn") or {}).get("taskIds") or []
                gone = [
                    p for p in parents if p.lower() not in job.tasks and p.lower() not in accepted
                ]
                if gone:
                    del accepted[key]
                    pruned = True
                    results[position[key]] = {
                        "status": "clienterror",
                        "taskId": wire["id"],
                        "error": _error_body(
                            invalid_property(
                                "dependsOn.taskIds",
                                gone[0],
                                "The task depends on a task of this request that was not added.",
                            )
                        ),
                    }
        _check_cycles(accepted)
        for key, wire in accepted.items():
            state.add_task(job, wire, passwords[key])
        state.wake()
        return Response(200, {"value": results})

    def list_(request: Request) -> Response:
        job = find_job(request)
        return page(
            service,
            request,
            ((t.seq, t.wire) for t in job.tasks.values()),
            filterable=TASK_FILTERABLE,
            selectable=TASK_SELECTABLE,
        )

    def get(request: Request) -> Response:
        return single(request, find(request).wire, TASK_SELECTABLE)

    def replace(request: Request) -> Response:
        task = find(request)
        check_conditions(request, task.wire)
        body = request.json_object()
        if "constraints" in body:
            checked = v.task_like({"constraints": body["constraints"]}, "", v.TASK, required=())
            constraints = {
                "maxWallClockTime": UNBOUNDED,
                "retentionTime": "P7D",
                "maxTaskRetryCount": 0,
            }
            constraints.update(checked["constraints"])
            task.wire["constraints"] = constraints
        stamp(task.wire)
        state.save_task(task)
        return Response(200, None, resource_headers(task.wire))

    def delete(request: Request) -> Response:
        task = find(request)
        check_conditions(request, task.wire)
        if task.state in ("preparing", "running"):
            task.stop_reason = "deleted"
        state.remove_task(task)
        scheduler.check_all_complete(task.job)
        state.wake()
        return Response(200)

    def terminate(request: Request) -> Response:
        task = find(request)
        check_conditions(request, task.wire)
        if task.state in ("preparing", "running"):
            task.stop_reason = "terminate"
        elif task.state == "active":
            now = utcnow()
            task.queued = False
            info = task.wire.setdefault("executionInfo", {"retryCount": 0, "requeueCount": 0})
            info.update(
                {
                    "result": "failure",
                    "endTime": iso(now),
                    "failureInfo": {
                        "category": "usererror",
                        "code": "TaskEnded",
                        "message": "Task Was Ended by User Request",
                    },
                }
            )
            state.move_task(task, "completed", now)
            state.save_task(task)
            state.release_dependents(task)
            scheduler.check_all_complete(task.job)
        state.wake()
        return Response(204)

    def reactivate(request: Request) -> Response:
        task = find(request)
        check_conditions(request, task.wire)
        job = task.job
        info = task.wire.get("executionInfo") or {}
        if job.state in ("completed", "terminating", "deleting"):
            raise conflict(
                "JobCompleted" if job.state == "completed" else "JobNotActive",
                "Tasks of a job that is completed, terminating or being deleted "
                "cannot be reactivated.",
            )
        if task.state != "completed" or info.get("result") != "failure":
            raise conflict(
                "OperationInvalidForCurrentState",
                "Only a task that completed with a failure can be reactivated.",
            )
        for stale in ("endTime", "exitCode", "failureInfo", "result", "startTime", "containerInfo"):
            info.pop(stale, None)
        info["retryCount"] = 0
        task.wire.pop("nodeInfo", None)
        task.failure_kind = None
        state.move_task(task, "active")
        state.save_task(task)
        state.reopen_dependents(task)
        state._maybe_ready(task)
        state.wake()
        return Response(204)

    def subtasks(request: Request) -> Response:
        find(request)
        return Response(200, {"value": []})

    # -- files ---------------------------------------------------------------------

    def task_root(request: Request) -> tuple[Path, str]:
        task = find(request)
        node_info = task.wire.get("nodeInfo")
        if not node_info:
            raise conflict(
                "TaskNotScheduled" if task.state == "active" else "FileNotFound",
                "The task has not been scheduled on a compute node yet.",
            )
        # The directory outlives a removed node (retention), as task files do on Azure.
        root = _task_dir(service, node_info, task)
        base = service.url("jobs", task.job.id, "tasks", task.id, "files")
        return root, base

    def node_root(request: Request) -> tuple[Path, str]:
        node = _node(service, request.path_params["poolId"], request.path_params["nodeId"])
        if node is None:
            raise not_found("Node", request.path_params["nodeId"])
        return node.root, service.url("pools", node.pool.id, "nodes", node.id, "files")

    def list_files(request: Request, where: tuple[Path, str]) -> Response:
        root, base = where
        entries = (_file_entry(path, root, base) for path in _walk(root, _recursive(request)))
        return page(service, request, enumerate(entries), filterable=FILE_FILTERABLE, selectable=())

    def get_file(request: Request, where: tuple[Path, str]) -> Response:
        root, base = where
        rel, path = _file_path(request, root)
        stat = path.stat()
        headers = _file_headers(path, stat, f"{base}/{rel}")
        if path.is_dir():
            return Response(200, b"", headers)
        size = stat.st_size
        start, end = 0, size - 1
        wanted = request.header("ocp-range")
        if wanted:
            found = _RANGE_RE.match(wanted.strip())
            if not found or (not found.group(1) and not found.group(2)):
                raise BatchServiceError(
                    400,
                    "InvalidHeaderValue",
                    "The value for one of the HTTP headers is not in the correct format.",
                    [("HeaderName", "ocp-range")],
                )
            if found.group(1):
                start = int(found.group(1))
                end = int(found.group(2)) if found.group(2) else size - 1
            else:
                start = max(0, size - int(found.group(2)))
            end = min(end, size - 1)
        if request.method == "HEAD":
            headers["Content-Length"] = str(size)
            return Response(200, b"", headers)
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read(max(0, end - start + 1))
        return Response(200, data, headers)

    def delete_file(request: Request, where: tuple[Path, str]) -> Response:
        _, path = _file_path(request, where[0])
        if path.is_dir():
            if any(path.iterdir()) and not _recursive(request):
                raise conflict(
                    "DirectoryNotEmpty",
                    "The directory is not empty; use recursive=true to delete it.",
                )
            import shutil

            shutil.rmtree(path)
        else:
            path.unlink()
        return Response(200)

    return [
        route("POST", "/jobs/{jobId}/tasks", "Tasks_CreateTask", create),
        route("GET", "/jobs/{jobId}/tasks", "Tasks_ListTasks", list_),
        route(
            "POST", "/jobs/{jobId}/addtaskcollection", "Tasks_CreateTaskCollection", add_collection
        ),
        route("GET", "/jobs/{jobId}/tasks/{taskId}", "Tasks_GetTask", get),
        route("PUT", "/jobs/{jobId}/tasks/{taskId}", "Tasks_ReplaceTask", replace),
        route("DELETE", "/jobs/{jobId}/tasks/{taskId}", "Tasks_DeleteTask", delete),
        route("POST", "/jobs/{jobId}/tasks/{taskId}/terminate", "Tasks_TerminateTask", terminate),
        route(
            "POST", "/jobs/{jobId}/tasks/{taskId}/reactivate", "Tasks_ReactivateTask", reactivate
        ),
        route("GET", "/jobs/{jobId}/tasks/{taskId}/subtasksinfo", "Tasks_ListSubTasks", subtasks),
        route(
            "GET",
            "/jobs/{jobId}/tasks/{taskId}/files",
            "Tasks_ListTaskFiles",
            lambda r: list_files(r, task_root(r)),
        ),
        route(
            "GET",
            "/jobs/{jobId}/tasks/{taskId}/files/{filePath}",
            "Tasks_GetTaskFile",
            lambda r: get_file(r, task_root(r)),
        ),
        route(
            "HEAD",
            "/jobs/{jobId}/tasks/{taskId}/files/{filePath}",
            "Tasks_GetTaskFileProperties",
            lambda r: get_file(r, task_root(r)),
        ),
        route(
            "DELETE",
            "/jobs/{jobId}/tasks/{taskId}/files/{filePath}",
            "Tasks_DeleteTaskFile",
            lambda r: delete_file(r, task_root(r)),
        ),
        route(
            "GET",
            "/pools/{poolId}/nodes/{nodeId}/files",
            "Nodes_ListNodeFiles",
            lambda r: list_files(r, node_root(r)),
        ),
        route(
            "GET",
            "/pools/{poolId}/nodes/{nodeId}/files/{filePath}",
            "Nodes_GetNodeFile",
            lambda r: get_file(r, node_root(r)),
        ),
        route(
            "HEAD",
            "/pools/{poolId}/nodes/{nodeId}/files/{filePath}",
            "Nodes_GetNodeFileProperties",
            lambda r: get_file(r, node_root(r)),
        ),
    ]


def _file_path(request: Request, root: Path) -> tuple[str, Path]:
    """The requested file under ``root``; 404 for anything outside it, or the root itself.

    ``is_relative_to``, not a string prefix: ``../<task>2`` must not reach a sibling task,
    and ``../<task>`` (the task's own directory) is not one of its files.
    """
    rel = request.path_params["filePath"].replace("\\", "/")
    base = root.resolve()
    path = (root / rel).resolve()
    if path == base or not path.is_relative_to(base) or not path.exists():
        raise not_found("File", rel)
    return rel, path


def _recursive(request: Request) -> bool:
    return request.params.get("recursive", "false").lower() == "true"


def _node(service: Service, pool_id: str, node_id: str) -> Node | None:
    pool = service.state.pools.get(pool_id.lower())
    return None if pool is None else pool.nodes.get(node_id)


def _task_dir(service: Service, node_info: Wire, task: Task) -> Path:
    from ._scheduler import _safe

    nodes_dir: Path = service.scheduler.host.nodes_dir
    return (
        nodes_dir
        / _safe(str(node_info["poolId"]))
        / str(node_info["nodeId"])
        / "workitems"
        / _safe(task.job.id)
        / "job-1"
        / _safe(task.id)
    )


def _walk(root: Path, recursive: bool) -> Iterator[Path]:
    if not root.exists():
        return
    paths = root.rglob("*") if recursive else root.iterdir()
    yield from sorted(paths)


def _file_entry(path: Path, root: Path, base: str) -> Wire:
    rel = path.relative_to(root).as_posix()
    stat = path.stat()
    entry: Wire = {"name": rel, "url": f"{base}/{rel}", "isDirectory": path.is_dir()}
    if not path.is_dir():
        entry["properties"] = {
            "creationTime": iso(_time(stat.st_ctime)),
            "lastModified": iso(_time(stat.st_mtime)),
            "contentLength": str(stat.st_size),
            "contentType": _content_type(path),
            "fileMode": oct(stat.st_mode & 0o777777)[2:],
        }
    return entry


def _file_headers(path: Path, stat: Any, url: str) -> dict[str, str]:
    from ._wire import http_date

    return {
        "ocp-creation-time": http_date(_time(stat.st_ctime)),
        "ocp-batch-file-isdirectory": "true" if path.is_dir() else "false",
        "ocp-batch-file-url": url,
        "ocp-batch-file-mode": oct(stat.st_mode & 0o777777)[2:],
        "Last-Modified": http_date(_time(stat.st_mtime)),
        "Content-Type": _content_type(path),
    }


def _content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _error_body(error: BatchServiceError) -> Wire:
    body: Wire = {"code": error.code, "message": {"lang": "en-US", "value": error.message}}
    if error.values:
        body["values"] = [{"key": k, "value": val} for k, val in error.values]
    return body


def _dependencies(task_id: str, value: Any, job: Job, batch: Collection[str]) -> Wire:
    depends = v.obj(value, "dependsOn", {"taskIds": "array", "taskIdRanges": "array"})
    ids = depends.get("taskIds") or []
    if sum(len(str(i)) for i in ids) > 64000:
        raise BatchServiceError(
            400,
            "TaskDependencyListTooLong",
            "The taskIds collection of the dependsOn property exceeds "
            "64000 characters; use taskIdRanges instead.",
        )
    for i, parent in enumerate(ids):
        if not isinstance(parent, str):
            raise invalid_property(f"dependsOn.taskIds[{i}]", parent, "Expected a task ID.")
        if parent.lower() == task_id.lower():
            raise invalid_property(
                f"dependsOn.taskIds[{i}]", parent, "A task cannot depend on itself."
            )
        if parent.lower() not in job.tasks and parent.lower() not in batch:
            raise invalid_property(
                f"dependsOn.taskIds[{i}]",
                parent,
                "The task depends on a task that does not exist in the job "
                "(add parents before, or in the same collection as, their "
                "dependents).",
            )
    ranges = []
    for i, item in enumerate(depends.get("taskIdRanges") or []):
        entry = v.obj(
            item,
            f"dependsOn.taskIdRanges[{i}]",
            {"start": "integer", "end": "integer"},
            ("start", "end"),
        )
        if entry["start"] < 0 or entry["end"] < entry["start"]:
            raise invalid_property(
                f"dependsOn.taskIdRanges[{i}]",
                json.dumps(entry),
                "A range needs 0 <= start <= end.",
            )
        if task_id.isdigit() and entry["start"] <= int(task_id) <= entry["end"]:
            raise invalid_property(
                f"dependsOn.taskIdRanges[{i}]",
                json.dumps(entry),
                "A task cannot depend on a range that contains itself.",
            )
        ranges.append(entry)
    out: Wire = {}
    if ids:
        out["taskIds"] = list(ids)
    if ranges:
        out["taskIdRanges"] = ranges
    return out


def _check_cycles(batch: dict[str, Wire]) -> None:
    """Tasks of one collection may reference each other; they must not form a cycle."""
    edges: dict[str, list[str]] = {}
    numbered = {int(k): k for k in batch if k.isdigit()}
    for key, wire in batch.items():
        depends = wire.get("dependsOn") or {}
        parents = [str(p).lower() for p in depends.get("taskIds") or [] if str(p).lower() in batch]
        for r in depends.get("taskIdRanges") or []:
            parents += [k for n, k in numbered.items() if r["start"] <= n <= r["end"]]
        edges[key] = parents
    visiting: set[str] = set()
    done: set[str] = set()
    for start in edges:
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(edges[start]))]
        if start in done:
            continue
        visiting.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                visiting.discard(node)
                done.add(node)
            elif child in visiting:
                raise invalid_property(
                    "dependsOn",
                    batch[child]["id"],
                    "The task dependencies in the collection form a cycle.",
                )
            elif child not in done:
                visiting.add(child)
                stack.append((child, iter(edges[child])))


def _check_exit_conditions(value: Any, job: Job) -> None:
    conditions = v.obj(
        value,
        "exitConditions",
        {
            "exitCodes": "array",
            "exitCodeRanges": "array",
            "preProcessingError": "object",
            "fileUploadError": "object",
            "default": "object",
        },
    )
    options: list[tuple[str, Any]] = []
    for i, item in enumerate(conditions.get("exitCodes") or []):
        entry = v.obj(
            item,
            f"exitConditions.exitCodes[{i}]",
            {"code": "integer", "exitOptions": "object"},
            ("code", "exitOptions"),
        )
        options.append((f"exitConditions.exitCodes[{i}].exitOptions", entry["exitOptions"]))
    for i, item in enumerate(conditions.get("exitCodeRanges") or []):
        entry = v.obj(
            item,
            f"exitConditions.exitCodeRanges[{i}]",
            {"start": "integer", "end": "integer", "exitOptions": "object"},
            ("start", "end", "exitOptions"),
        )
        options.append((f"exitConditions.exitCodeRanges[{i}].exitOptions", entry["exitOptions"]))
    for key in ("preProcessingError", "fileUploadError", "default"):
        if key in conditions:
            options.append((f"exitConditions.{key}", conditions[key]))
    performs = str(job.wire.get("onTaskFailure", "noaction")).lower() != "noaction"
    for prop, item in options:
        entry = v.obj(item, prop, {"jobAction": "string", "dependencyAction": "string"})
        if "jobAction" in entry:
            v.enum(entry["jobAction"], prop + ".jobAction", ("none", "disable", "terminate"))
            if not performs:
                raise invalid_property(
                    prop + ".jobAction",
                    entry["jobAction"],
                    "jobAction requires the job's onTaskFailure to be performExitOptionsJobAction.",
                )
        if "dependencyAction" in entry:
            v.enum(entry["dependencyAction"], prop + ".dependencyAction", ("satisfy", "block"))


def _normalize_exit_conditions(conditions: Wire) -> Wire:
    """Enum values come back in lower case, as the service returns them."""

    def fix(options: Any) -> Any:
        if isinstance(options, dict):
            return {k: (val.lower() if isinstance(val, str) else val) for k, val in options.items()}
        return options

    out: Wire = {}
    for key, value in conditions.items():
        if key in ("exitCodes", "exitCodeRanges"):
            out[key] = [dict(item, exitOptions=fix(item.get("exitOptions"))) for item in value]
        elif key in ("preProcessingError", "fileUploadError", "default"):
            out[key] = fix(value)
    return out
