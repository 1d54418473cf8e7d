"""Request-body checks with Batch's error codes.

Each create/update body is read through a field table (property -> JSON type), so wrong
types get ``InvalidPropertyValue`` naming the property, missing ones
``MissingRequiredProperty``, and properties the spec does not define for that body are
ignored, never stored (so responses only ever carry the spec's properties).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._errors import invalid_property, missing_property
from ._wire import check_id, name_value_list, parse_duration

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}

Fields = Mapping[str, str]

RESOURCE_FILE: Fields = {
    "autoStorageContainerName": "string",
    "storageContainerUrl": "string",
    "httpUrl": "string",
    "blobPrefix": "string",
    "filePath": "string",
    "fileMode": "string",
    "identityReference": "object",
}
OUTPUT_FILE: Fields = {"filePattern": "string", "destination": "object", "uploadOptions": "object"}
TASK_CONSTRAINTS: Fields = {
    "maxWallClockTime": "string",
    "retentionTime": "string",
    "maxTaskRetryCount": "integer",
}
JOB_CONSTRAINTS: Fields = {"maxWallClockTime": "string", "maxTaskRetryCount": "integer"}
TASK: Fields = {
    "id": "string",
    "displayName": "string",
    "exitConditions": "object",
    "commandLine": "string",
    "containerSettings": "object",
    "resourceFiles": "array",
    "outputFiles": "array",
    "environmentSettings": "array",
    "affinityInfo": "object",
    "constraints": "object",
    "requiredSlots": "integer",
    "userIdentity": "object",
    "multiInstanceSettings": "object",
    "dependsOn": "object",
    "applicationPackageReferences": "array",
    "authenticationTokenSettings": "object",
}
START_TASK: Fields = {
    "commandLine": "string",
    "containerSettings": "object",
    "resourceFiles": "array",
    "environmentSettings": "array",
    "userIdentity": "object",
    "maxTaskRetryCount": "integer",
    "waitForSuccess": "boolean",
}
JOB_PREPARATION_TASK: Fields = {
    "id": "string",
    "commandLine": "string",
    "containerSettings": "object",
    "resourceFiles": "array",
    "environmentSettings": "array",
    "constraints": "object",
    "waitForSuccess": "boolean",
    "userIdentity": "object",
    "rerunOnNodeRebootAfterSuccess": "boolean",
}
JOB_RELEASE_TASK: Fields = {
    "id": "string",
    "commandLine": "string",
    "containerSettings": "object",
    "resourceFiles": "array",
    "environmentSettings": "array",
    "maxWallClockTime": "string",
    "retentionTime": "string",
    "userIdentity": "object",
}
JOB: Fields = {
    "id": "string",
    "displayName": "string",
    "usesTaskDependencies": "boolean",
    "priority": "integer",
    "allowTaskPreemption": "boolean",
    "maxParallelTasks": "integer",
    "constraints": "object",
    "jobManagerTask": "object",
    "jobPreparationTask": "object",
    "jobReleaseTask": "object",
    "commonEnvironmentSettings": "array",
    "poolInfo": "object",
    "onAllTasksComplete": "string",
    "onTaskFailure": "string",
    "networkConfiguration": "object",
    "metadata": "array",
}
JOB_UPDATE: Fields = {
    "priority": "integer",
    "allowTaskPreemption": "boolean",
    "maxParallelTasks": "integer",
    "constraints": "object",
    "poolInfo": "object",
    "onAllTasksComplete": "string",
    "metadata": "array",
    "networkConfiguration": "object",
}
POOL: Fields = {
    "id": "string",
    "displayName": "string",
    "vmSize": "string",
    "virtualMachineConfiguration": "object",
    "resizeTimeout": "string",
    "resourceTags": "object",
    "targetDedicatedNodes": "integer",
    "targetLowPriorityNodes": "integer",
    "enableAutoScale": "boolean",
    "autoScaleFormula": "string",
    "autoScaleEvaluationInterval": "string",
    "enableInterNodeCommunication": "boolean",
    "networkConfiguration": "object",
    "startTask": "object",
    "certificateReferences": "array",
    "applicationPackageReferences": "array",
    "taskSlotsPerNode": "integer",
    "taskSchedulingPolicy": "object",
    "userAccounts": "array",
    "metadata": "array",
    "mountConfiguration": "array",
    "targetNodeCommunicationMode": "string",
    "upgradePolicy": "object",
}
POOL_UPDATE: Fields = {
    "displayName": "string",
    "vmSize": "string",
    "enableInterNodeCommunication": "boolean",
    "startTask": "object",
    "applicationPackageReferences": "array",
    "metadata": "array",
    "virtualMachineConfiguration": "object",
    "targetNodeCommunicationMode": "string",
    "taskSlotsPerNode": "integer",
    "taskSchedulingPolicy": "object",
    "networkConfiguration": "object",
    "resourceTags": "object",
    "userAccounts": "array",
    "mountConfiguration": "array",
    "upgradePolicy": "object",
}
RESIZE: Fields = {
    "targetDedicatedNodes": "integer",
    "targetLowPriorityNodes": "integer",
    "resizeTimeout": "string",
    "nodeDeallocationOption": "string",
}


def read(
    body: Mapping[str, Any], fields: Fields, prefix: str = "", required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The known properties of ``body``, type-checked; unknown ones are dropped."""
    for name in required:
        if body.get(name) is None:
            raise missing_property(prefix + name)
    out: dict[str, Any] = {}
    for name, kind in fields.items():
        if name not in body or body[name] is None:
            continue
        value = body[name]
        allowed = _TYPES[kind]
        if not isinstance(value, allowed) or (kind == "integer" and isinstance(value, bool)):
            raise invalid_property(prefix + name, value, f"Expected a JSON {kind}.")
        out[name] = value
    return out


def obj(value: Any, prop: str, fields: Fields, required: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_property(prop, value, "Expected a JSON object.")
    return read(value, fields, prop + ".", required)


def enum(value: Any, prop: str, allowed: tuple[str, ...]) -> str:
    """Batch accepts enum values case-insensitively and returns them in lower case."""
    if not isinstance(value, str) or value.lower() not in allowed:
        raise invalid_property(prop, value, f"Expected one of: {', '.join(allowed)}.")
    return value.lower()


def integer(value: Any, prop: str, low: int | None = None, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_property(prop, value, "Expected an integer.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise invalid_property(prop, value, f"Expected an integer from {low} to {high}.")
    return value


def task_like(
    body: Mapping[str, Any], prop: str, fields: Fields, required: tuple[str, ...] = ("commandLine",)
) -> dict[str, Any]:
    """A task, start task or job preparation task body, with its nested parts checked."""
    out = read(body, fields, prop, required)
    if "id" in out:
        check_id(out["id"], prop + "id")
    if "environmentSettings" in out:
        out["environmentSettings"] = name_value_list(
            out["environmentSettings"], prop + "environmentSettings"
        )
    if "resourceFiles" in out:
        files = []
        for i, item in enumerate(out["resourceFiles"]):
            name = f"{prop}resourceFiles[{i}]"
            entry = obj(item, name, RESOURCE_FILE)
            sources = [
                k
                for k in ("autoStorageContainerName", "storageContainerUrl", "httpUrl")
                if k in entry
            ]
            if len(sources) != 1:
                raise invalid_property(
                    name,
                    item,
                    "Exactly one of autoStorageContainerName, storageContainerUrl and httpUrl "
                    "must be specified.",
                )
            if "httpUrl" in entry and "filePath" not in entry:
                raise missing_property(name + ".filePath")
            files.append(entry)
        out["resourceFiles"] = files
    if "outputFiles" in out:
        outputs = []
        for i, item in enumerate(out["outputFiles"]):
            name = f"{prop}outputFiles[{i}]"
            entry = obj(item, name, OUTPUT_FILE, ("filePattern", "destination", "uploadOptions"))
            container = entry["destination"].get("container")
            if not isinstance(container, dict) or not isinstance(
                container.get("containerUrl"), str
            ):
                raise missing_property(name + ".destination.container.containerUrl")
            condition = entry["uploadOptions"].get("uploadCondition")
            entry["uploadOptions"] = {
                "uploadCondition": enum(
                    condition,
                    name + ".uploadOptions.uploadCondition",
                    ("tasksuccess", "taskfailure", "taskcompletion"),
                )
            }
            outputs.append(entry)
        out["outputFiles"] = outputs
    if "constraints" in out:
        constraints = obj(out["constraints"], prop + "constraints", TASK_CONSTRAINTS)
        for key in ("maxWallClockTime", "retentionTime"):
            parse_duration(constraints.get(key), f"{prop}constraints.{key}")
        if "maxTaskRetryCount" in constraints:
            integer(constraints["maxTaskRetryCount"], prop + "constraints.maxTaskRetryCount", -1)
        out["constraints"] = constraints
    if "maxTaskRetryCount" in out:
        integer(out["maxTaskRetryCount"], prop + "maxTaskRetryCount", -1)
    if "requiredSlots" in out:
        integer(out["requiredSlots"], prop + "requiredSlots", 1)
    return out
