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
CONTAINER_SETTINGS: Fields = {
    "containerRunOptions": "string",
    "imageName": "string",
    "registry": "object",
    "workingDirectory": "string",
    "containerHostBatchBindMounts": "array",
}
CONTAINER_REGISTRY: Fields = {
    "username": "string",
    "password": "string",
    "registryServer": "string",
    "identityReference": "object",
}
BIND_MOUNT: Fields = {"source": "string", "isReadOnly": "boolean"}
CONTAINER_CONFIGURATION: Fields = {
    "type": "string",
    "containerImageNames": "array",
    "containerRegistries": "array",
}
#: The spec's ContainerWorkingDirectory, ContainerHostDataPath and ContainerType values.
WORKING_DIRECTORIES = ("taskWorkingDirectory", "containerImageDefault")
HOST_DATA_PATHS = ("Shared", "Startup", "VfsMounts", "Task", "JobPrep", "Applications")
CONTAINER_TYPES = ("dockerCompatible", "criCompatible")
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


def spelled(value: Any, prop: str, allowed: tuple[str, ...]) -> str:
    """An enum the spec spells in camel or Pascal case (``taskWorkingDirectory``, ``Task``):
    accepted in any case, returned as the spec spells it."""
    if isinstance(value, str):
        for name in allowed:
            if name.lower() == value.lower():
                return name
    raise invalid_property(prop, value, f"Expected one of: {', '.join(allowed)}.")


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
    if "containerSettings" in out:
        out["containerSettings"] = container_settings(
            out["containerSettings"], prop + "containerSettings"
        )
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


def container_registry(value: Any, prop: str) -> dict[str, Any]:
    """A ``ContainerRegistryReference`` (its password is taken out later: see
    :func:`take_registry_passwords`)."""
    out = obj(value, prop, CONTAINER_REGISTRY)
    if "identityReference" in out:
        out["identityReference"] = obj(
            out["identityReference"], prop + ".identityReference", {"resourceId": "string"}
        )
    return out


def container_settings(value: Any, prop: str) -> dict[str, Any]:
    """A task's ``BatchTaskContainerSettings``: ``imageName`` required, enums as the spec
    spells them. Whether the task may have them depends on the pool that runs it, which is
    known only then (see ``_containers``)."""
    out = obj(value, prop, CONTAINER_SETTINGS, ("imageName",))
    if "registry" in out:
        out["registry"] = container_registry(out["registry"], prop + ".registry")
    if "workingDirectory" in out:
        out["workingDirectory"] = spelled(
            out["workingDirectory"], prop + ".workingDirectory", WORKING_DIRECTORIES
        )
    if "containerHostBatchBindMounts" in out:
        mounts = []
        for i, item in enumerate(out["containerHostBatchBindMounts"]):
            name = f"{prop}.containerHostBatchBindMounts[{i}]"
            entry = obj(item, name, BIND_MOUNT)
            if "source" in entry:
                entry["source"] = spelled(entry["source"], name + ".source", HOST_DATA_PATHS)
            mounts.append(entry)
        out["containerHostBatchBindMounts"] = mounts
    return out


def container_configuration(value: Any, prop: str) -> dict[str, Any]:
    """A pool's ``BatchContainerConfiguration``: ``type`` required."""
    out = obj(value, prop, CONTAINER_CONFIGURATION, ("type",))
    out["type"] = spelled(out["type"], prop + ".type", CONTAINER_TYPES)
    for i, image in enumerate(out.get("containerImageNames") or []):
        if not isinstance(image, str):
            raise invalid_property(f"{prop}.containerImageNames[{i}]", image, "Expected a string.")
    if "containerRegistries" in out:
        out["containerRegistries"] = [
            container_registry(item, f"{prop}.containerRegistries[{i}]")
            for i, item in enumerate(out["containerRegistries"])
        ]
    return out


def take_registry_passwords(wire: dict[str, Any]) -> dict[str, str]:
    """Remove every container registry password from a resource's wire and return them by
    the registry's path (``containerSettings.registry``,
    ``virtualMachineConfiguration.containerConfiguration.containerRegistries[0]``, ...).

    The spec marks ``ContainerRegistryReference.password`` ``x-ms-secret``: the service takes
    it but never returns it, so it is kept beside the wire, never in it.
    """
    found: dict[str, str] = {}

    def walk(node: Any, path: str, registry: bool) -> None:
        if isinstance(node, dict):
            if registry and isinstance(node.get("password"), str):
                found[path] = node.pop("password")
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else key, key == "registry")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]", path.endswith("containerRegistries"))

    walk(wire, "", False)
    return found
