"""Job operations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _validate as v
from ._errors import BatchServiceError, conflict, exists, invalid_property, not_found
from ._http import Request, Response, Route, route
from ._odata import JOB_FILTERABLE, JOB_SELECTABLE
from ._state import Job, Wire, set_state, stamp
from ._wire import UNBOUNDED, check_id, iso, name_value_list, parse_duration, utcnow

if TYPE_CHECKING:
    from ._api import Service

_COMPLETE_MODES = ("noaction", "terminatejob")
_FAILURE_MODES = ("noaction", "performexitoptionsjobaction")


def routes(service: Service) -> list[Route]:
    from ._api import check_conditions, page, resource_headers, single

    state = service.state
    scheduler = service.scheduler

    def find(request: Request) -> Job:
        job_id = request.path_params["jobId"]
        job = state.jobs.get(job_id.lower())
        if job is None:
            raise not_found("Job", job_id)
        return job

    def create(request: Request) -> Response:
        fields = v.read(request.json_object(), v.JOB, required=("id", "poolInfo"))
        job_id = check_id(fields["id"])
        if job_id.lower() in state.jobs:
            raise exists("Job")
        pool_info = v.obj(
            fields["poolInfo"], "poolInfo", {"poolId": "string", "autoPoolSpecification": "object"}
        )
        if "autoPoolSpecification" in pool_info:
            raise invalid_property(
                "poolInfo.autoPoolSpecification",
                "...",
                "Auto pools are not supported by the local emulator; "
                "create a pool and give its poolId.",
            )
        if "poolId" not in pool_info:
            raise BatchServiceError(
                400,
                "MissingRequiredProperty",
                "A required property was not specified in the request body.",
                [("PropertyName", "poolInfo.poolId")],
            )
        if "jobManagerTask" in fields:
            raise invalid_property(
                "jobManagerTask",
                "...",
                "Job manager tasks are not supported by the local emulator.",
            )
        now = utcnow()
        wire: Wire = {
            "id": job_id,
            "url": service.url("jobs", job_id),
            "creationTime": iso(now),
            "state": "active",
            "stateTransitionTime": iso(now),
            "priority": 0,
            "allowTaskPreemption": False,
            "maxParallelTasks": -1,
            "usesTaskDependencies": False,
            "constraints": {"maxWallClockTime": UNBOUNDED, "maxTaskRetryCount": 0},
            "poolInfo": {"poolId": pool_info["poolId"]},
            "onAllTasksComplete": "noaction",
            "onTaskFailure": "noaction",
            "executionInfo": {"startTime": iso(now), "poolId": pool_info["poolId"]},
        }
        for key in (
            "displayName",
            "usesTaskDependencies",
            "networkConfiguration",
            "allowTaskPreemption",
        ):
            if key in fields:
                wire[key] = fields[key]
        _apply_common(wire, fields)
        if "commonEnvironmentSettings" in fields:
            wire["commonEnvironmentSettings"] = name_value_list(
                fields["commonEnvironmentSettings"], "commonEnvironmentSettings"
            )
        if "onTaskFailure" in fields:
            wire["onTaskFailure"] = v.enum(fields["onTaskFailure"], "onTaskFailure", _FAILURE_MODES)
        if "jobPreparationTask" in fields:
            wire["jobPreparationTask"] = _prep_task(fields["jobPreparationTask"])
        if "jobReleaseTask" in fields:
            release = fields["jobReleaseTask"]
            if not isinstance(release, dict):
                raise invalid_property("jobReleaseTask", release, "Expected a JSON object.")
            wire["jobReleaseTask"] = v.task_like(release, "jobReleaseTask.", v.JOB_RELEASE_TASK)
            wire["jobReleaseTask"].setdefault("id", "jobrelease")
        secrets = v.take_registry_passwords(wire)  # of the job preparation and release tasks
        stamp(wire, now)
        job = Job(wire=wire, secrets=secrets)
        state.jobs[job.key] = job
        scheduler.check_all_complete(job)
        state.save_job(job)
        state.wake()
        location = service.url("jobs", job_id)
        return Response(201, None, resource_headers(wire, location))

    def get(request: Request) -> Response:
        return single(request, find(request).wire, JOB_SELECTABLE)

    def list_(request: Request) -> Response:
        jobs = sorted(state.jobs.values(), key=lambda j: j.seq)
        return page(
            service,
            request,
            ((j.seq, j.wire) for j in jobs),
            filterable=JOB_FILTERABLE,
            selectable=JOB_SELECTABLE,
        )

    def update(request: Request) -> Response:
        job = find(request)
        check_conditions(request, job.wire)
        writable(job)
        fields = v.read(request.json_object(), v.JOB_UPDATE)
        if request.method == "PUT":
            # Replace: properties not given go back to their defaults.
            job.wire.update(
                {
                    "priority": 0,
                    "maxParallelTasks": -1,
                    "allowTaskPreemption": False,
                    "constraints": {"maxWallClockTime": UNBOUNDED, "maxTaskRetryCount": 0},
                }
            )
            job.wire.pop("metadata", None)
            if "poolInfo" not in fields:
                raise BatchServiceError(
                    400,
                    "MissingRequiredProperty",
                    "A required property was not specified in the request body.",
                    [("PropertyName", "poolInfo")],
                )
        if "poolInfo" in fields:
            pool_info = v.obj(fields["poolInfo"], "poolInfo", {"poolId": "string"})
            if "poolId" in pool_info:
                job.wire["poolInfo"] = {"poolId": pool_info["poolId"]}
                job.wire["executionInfo"]["poolId"] = pool_info["poolId"]
        if "allowTaskPreemption" in fields:
            job.wire["allowTaskPreemption"] = fields["allowTaskPreemption"]
        _apply_common(job.wire, fields)
        stamp(job.wire)
        scheduler.check_all_complete(job)
        state.save_job(job)
        state.wake()
        return Response(200, None, resource_headers(job.wire, service.url("jobs", job.id)))

    def delete(request: Request) -> Response:
        job = find(request)
        check_conditions(request, job.wire)
        if job.state != "deleting":
            set_state(job.wire, "deleting")
            for task in job.tasks.values():
                if task.state in ("preparing", "running"):
                    task.stop_reason = "deleted"
            state.save_job(job)
            state.wake()
        return Response(202, None, {"DataServiceId": service.url("jobs", job.id)})

    def terminate(request: Request) -> Response:
        job = find(request)
        check_conditions(request, job.wire)
        reason = "UserTerminate"
        if request.body:
            body = request.json_object()
            given = body.get("terminateReason")
            if given is not None:
                if not isinstance(given, str) or len(given) > 64:
                    raise invalid_property(
                        "terminateReason", given, "Expected a string of at most 64 characters."
                    )
                reason = given
        writable(job)
        scheduler.end_job(job, reason)
        return Response(202, None, {"DataServiceId": service.url("jobs", job.id)})

    def disable(request: Request) -> Response:
        job = find(request)
        check_conditions(request, job.wire)
        body = request.json_object()
        option = v.enum(body.get("disableTasks"), "disableTasks", ("requeue", "terminate", "wait"))
        if job.state not in ("active", "disabling", "disabled"):
            raise conflict("JobNotActive", "The specified job is not active.")
        if job.state == "active":
            set_state(job.wire, "disabling")
            for task in job.tasks.values():
                if task.state in ("preparing", "running") and option != "wait":
                    task.stop_reason = "requeue" if option == "requeue" else "terminate"
            state.save_job(job)
            state.wake()
        return Response(202, None, {"DataServiceId": service.url("jobs", job.id)})

    def enable(request: Request) -> Response:
        job = find(request)
        check_conditions(request, job.wire)
        if job.state not in ("disabled", "disabling", "enabling", "active"):
            raise conflict("JobNotDisabled", "The specified job is not disabled.")
        if job.state in ("disabled", "disabling"):
            set_state(job.wire, "enabling")
            state.save_job(job)
            state.wake()
        return Response(202, None, {"DataServiceId": service.url("jobs", job.id)})

    def task_counts(request: Request) -> Response:
        job = find(request)
        return Response(
            200, {"taskCounts": job.counts.wire(), "taskSlotCounts": job.slot_counts.wire()}
        )

    def prep_status(request: Request) -> Response:
        job = find(request)
        entries: list[tuple[int, Wire]] = []
        for pool in state.pools.values():
            for node in pool.nodes.values():
                info = node.job_prep.get(job.key)
                if info is not None:
                    entries.append(
                        (
                            node.seq,
                            {
                                "poolId": pool.id,
                                "nodeId": node.id,
                                "nodeUrl": node.wire["url"],
                                "jobPreparationTaskExecutionInfo": info,
                            },
                        )
                    )
        entries.sort(key=lambda entry: entry[0])
        return page(
            service,
            request,
            entries,
            filterable=("nodeId", "poolId"),
            selectable=(
                "poolId",
                "nodeId",
                "nodeUrl",
                "jobPreparationTaskExecutionInfo",
                "jobReleaseTaskExecutionInfo",
            ),
        )

    return [
        route("GET", "/jobs", "Jobs_ListJobs", list_),
        route("POST", "/jobs", "Jobs_CreateJob", create),
        route("GET", "/jobs/{jobId}", "Jobs_GetJob", get),
        route("PATCH", "/jobs/{jobId}", "Jobs_UpdateJob", update),
        route("PUT", "/jobs/{jobId}", "Jobs_ReplaceJob", update),
        route("DELETE", "/jobs/{jobId}", "Jobs_DeleteJob", delete),
        route("POST", "/jobs/{jobId}/terminate", "Jobs_TerminateJob", terminate),
        route("POST", "/jobs/{jobId}/disable", "Jobs_DisableJob", disable),
        route("POST", "/jobs/{jobId}/enable", "Jobs_EnableJob", enable),
        route("GET", "/jobs/{jobId}/taskcounts", "Jobs_GetJobTaskCounts", task_counts),
        route(
            "GET",
            "/jobs/{jobId}/jobpreparationandreleasetaskstatus",
            "Jobs_ListJobPreparationAndReleaseTaskStatus",
            prep_status,
        ),
    ]


def writable(job: Job, *, terminating_ok: bool = True) -> None:
    """409 for a job that no longer takes changes (and, optionally, a terminating one)."""
    if job.state == "completed":
        raise conflict("JobCompleted", "The specified job is already in a completed state.")
    if job.state == "deleting":
        raise conflict(
            "JobBeingDeleted",
            "The specified job has been marked for deletion and is being garbage collected.",
        )
    if job.state == "terminating" and not terminating_ok:
        raise conflict("JobBeingTerminated", "The specified job is being terminated.")


def _apply_common(wire: Wire, fields: dict[str, Any]) -> None:
    """Properties that create, update and replace share."""
    if "priority" in fields:
        wire["priority"] = v.integer(fields["priority"], "priority", -1000, 1000)
    if "maxParallelTasks" in fields:
        value = v.integer(fields["maxParallelTasks"], "maxParallelTasks", -1)
        if value == 0:
            raise invalid_property("maxParallelTasks", value, "Must be -1 or greater than 0.")
        wire["maxParallelTasks"] = value
    if "constraints" in fields:
        constraints = v.obj(fields["constraints"], "constraints", v.JOB_CONSTRAINTS)
        parse_duration(constraints.get("maxWallClockTime"), "constraints.maxWallClockTime")
        merged = {"maxWallClockTime": UNBOUNDED, "maxTaskRetryCount": 0}
        merged.update(constraints)
        v.integer(merged["maxTaskRetryCount"], "constraints.maxTaskRetryCount", -1)
        wire["constraints"] = merged
    if "onAllTasksComplete" in fields:
        wire["onAllTasksComplete"] = v.enum(
            fields["onAllTasksComplete"], "onAllTasksComplete", _COMPLETE_MODES
        )
    if "metadata" in fields:
        wire["metadata"] = name_value_list(fields["metadata"], "metadata")


def _prep_task(value: Any) -> Wire:
    if not isinstance(value, dict):
        raise invalid_property("jobPreparationTask", value, "Expected a JSON object.")
    task = v.task_like(value, "jobPreparationTask.", v.JOB_PREPARATION_TASK)
    task.setdefault("id", "jobpreparation")
    task.setdefault("waitForSuccess", True)
    task.setdefault("rerunOnNodeRebootAfterSuccess", True)
    constraints = {"maxWallClockTime": UNBOUNDED, "retentionTime": "P7D", "maxTaskRetryCount": 0}
    constraints.update(task.get("constraints") or {})
    task["constraints"] = constraints
    return task
