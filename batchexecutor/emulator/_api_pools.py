"""Pool and compute node operations."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from . import _validate as v
from ._errors import BatchServiceError, conflict, exists, invalid_property, not_found
from ._http import Request, Response, Route, route
from ._odata import NODE_FILTERABLE, NODE_SELECTABLE, POOL_FILTERABLE, POOL_SELECTABLE
from ._scheduler import RESIZE_DELAY
from ._state import Node, Pool, Wire, stamp
from ._wire import check_id, iso, name_value_list, parse_duration, utcnow

if TYPE_CHECKING:
    from ._api import Service

_TARGET_RE = re.compile(r"\$(TargetDedicatedNodes|TargetLowPriorityNodes)\s*=\s*(\d+)\s*;?")


def routes(service: Service) -> list[Route]:
    from ._api import check_conditions, page, resource_headers, single

    state = service.state

    def find(request: Request) -> Pool:
        pool_id = request.path_params["poolId"]
        pool = state.pools.get(pool_id.lower())
        if pool is None:
            raise not_found("Pool", pool_id)
        return pool

    def find_node(request: Request) -> Node:
        pool = find(request)
        node = pool.nodes.get(request.path_params["nodeId"])
        if node is None:
            raise not_found("Node", request.path_params["nodeId"])
        return node

    def create(request: Request) -> Response:
        body = request.json_object()
        fields = v.read(body, v.POOL, required=("id", "vmSize"))
        pool_id = check_id(fields["id"])
        if pool_id.lower() in state.pools:
            raise exists("Pool")
        now = utcnow()
        wire: Wire = {
            "id": pool_id,
            "url": service.url("pools", pool_id),
            "creationTime": iso(now),
            "state": "active",
            "stateTransitionTime": iso(now),
            "allocationState": "resizing",
            "allocationStateTransitionTime": iso(now),
            "vmSize": fields["vmSize"],
            "resizeTimeout": "PT15M",
            "currentDedicatedNodes": 0,
            "currentLowPriorityNodes": 0,
            "targetDedicatedNodes": 0,
            "targetLowPriorityNodes": 0,
            "enableAutoScale": False,
            "enableInterNodeCommunication": False,
            "taskSlotsPerNode": 1,
            "taskSchedulingPolicy": {"nodeFillType": "spread"},
            "currentNodeCommunicationMode": "default",
            "targetNodeCommunicationMode": "default",
        }
        for key in (
            "displayName",
            "resourceTags",
            "enableInterNodeCommunication",
            "networkConfiguration",
            "certificateReferences",
            "applicationPackageReferences",
            "userAccounts",
            "mountConfiguration",
            "upgradePolicy",
        ):
            if key in fields:
                wire[key] = fields[key]
        if "virtualMachineConfiguration" in fields:
            wire["virtualMachineConfiguration"] = _vm_configuration(
                fields["virtualMachineConfiguration"]
            )
        if "resizeTimeout" in fields:
            parse_duration(fields["resizeTimeout"], "resizeTimeout")
            wire["resizeTimeout"] = fields["resizeTimeout"]
        if "targetNodeCommunicationMode" in fields:
            wire["targetNodeCommunicationMode"] = v.enum(
                fields["targetNodeCommunicationMode"],
                "targetNodeCommunicationMode",
                ("default", "classic", "simplified"),
            )
        if "taskSlotsPerNode" in fields:
            wire["taskSlotsPerNode"] = v.integer(
                fields["taskSlotsPerNode"], "taskSlotsPerNode", 1, 256
            )
        if "taskSchedulingPolicy" in fields:
            fill = fields["taskSchedulingPolicy"].get("nodeFillType")
            wire["taskSchedulingPolicy"] = {
                "nodeFillType": v.enum(
                    fill, "taskSchedulingPolicy.nodeFillType", ("spread", "pack")
                )
            }
        if "startTask" in fields:
            wire["startTask"] = _start_task(fields["startTask"])
        if "metadata" in fields:
            wire["metadata"] = name_value_list(fields["metadata"], "metadata")
        if fields.get("enableAutoScale"):
            for key in ("targetDedicatedNodes", "targetLowPriorityNodes"):
                if key in fields:
                    raise invalid_property(
                        key, fields[key], "Cannot be specified when enableAutoScale is true."
                    )
            formula = fields.get("autoScaleFormula")
            if not formula:
                raise BatchServiceError(
                    400,
                    "MissingRequiredProperty",
                    "A required property was not specified in the request body.",
                    [("PropertyName", "autoScaleFormula")],
                )
            _set_autoscale(wire, formula, fields.get("autoScaleEvaluationInterval"), now)
        else:
            if "autoScaleFormula" in fields:
                raise invalid_property(
                    "autoScaleFormula",
                    fields["autoScaleFormula"],
                    "Requires enableAutoScale to be true.",
                )
            wire["targetDedicatedNodes"] = v.integer(
                fields.get("targetDedicatedNodes", 0), "targetDedicatedNodes", 0
            )
            wire["targetLowPriorityNodes"] = v.integer(
                fields.get("targetLowPriorityNodes", 0), "targetLowPriorityNodes", 0
            )
        secrets = v.take_registry_passwords(wire)
        stamp(wire, now)
        pool = Pool(wire=wire, secrets=secrets)
        pool.resize_due = time.monotonic() + RESIZE_DELAY
        state.pools[pool.key] = pool
        state.save_pool(pool)
        state.wake()
        location = service.url("pools", pool_id)
        return Response(201, None, resource_headers(wire, location))

    def get(request: Request) -> Response:
        return single(request, find(request).wire, POOL_SELECTABLE)

    def exists_(request: Request) -> Response:
        pool = state.pools.get(request.path_params["poolId"].lower())
        if pool is None:
            return Response(404)
        check_conditions(request, pool.wire)
        return Response(200, None, resource_headers(pool.wire))

    def list_(request: Request) -> Response:
        pools = sorted(state.pools.values(), key=lambda p: p.seq)
        return page(
            service,
            request,
            ((p.seq, p.wire) for p in pools),
            filterable=POOL_FILTERABLE,
            selectable=POOL_SELECTABLE,
        )

    def delete(request: Request) -> Response:
        pool = find(request)
        check_conditions(request, pool.wire)
        if pool.wire["state"] != "deleting":
            now = utcnow()
            pool.wire["state"] = "deleting"
            pool.wire["stateTransitionTime"] = iso(now)
            pool.wire["allocationState"] = "resizing"
            pool.wire["allocationStateTransitionTime"] = iso(now)
            stamp(pool.wire, now)
            pool.resize_due = time.monotonic() + RESIZE_DELAY
            state.save_pool(pool)
            state.wake()
        return Response(202, None, {"DataServiceId": service.url("pools", pool.id)})

    def update(request: Request) -> Response:
        pool = find(request)
        check_conditions(request, pool.wire)
        _writable(pool)
        fields = v.read(request.json_object(), v.POOL_UPDATE)
        if "startTask" in fields:
            start_task = _start_task(fields["startTask"])
            # A new start task brings its own registry password (or none).
            kept = {p: s for p, s in pool.secrets.items() if not p.startswith("startTask.")}
            pool.secrets = kept
            pool.secrets.update(v.take_registry_passwords({"startTask": start_task}))
            pool.wire["startTask"] = start_task
        if "metadata" in fields:
            pool.wire["metadata"] = name_value_list(fields["metadata"], "metadata")
        for key in (
            "displayName",
            "applicationPackageReferences",
            "resourceTags",
            "targetNodeCommunicationMode",
        ):
            if key in fields:
                pool.wire[key] = fields[key]
        stamp(pool.wire)
        state.save_pool(pool)
        return Response(200, None, resource_headers(pool.wire, service.url("pools", pool.id)))

    def resize(request: Request) -> Response:
        pool = find(request)
        check_conditions(request, pool.wire)
        _writable(pool)
        if pool.wire.get("enableAutoScale"):
            raise conflict(
                "AutoScalingEnabled",
                "The specified pool has autoscale enabled; disable it to resize.",
            )
        if pool.wire["allocationState"] != "steady":
            raise conflict("PoolBeingResized", "The specified pool is being resized.")
        fields = v.read(request.json_object(), v.RESIZE)
        for key in ("targetDedicatedNodes", "targetLowPriorityNodes"):
            if key in fields:
                pool.wire[key] = v.integer(fields[key], key, 0)
        if "resizeTimeout" in fields:
            parse_duration(fields["resizeTimeout"], "resizeTimeout")
            pool.wire["resizeTimeout"] = fields["resizeTimeout"]
        if "nodeDeallocationOption" in fields:
            pool.deallocation = v.enum(
                fields["nodeDeallocationOption"],
                "nodeDeallocationOption",
                ("requeue", "terminate", "taskcompletion", "retaineddata"),
            )
        _start_resize(pool)
        state.save_pool(pool)
        state.wake()
        return Response(202, None, {"DataServiceId": service.url("pools", pool.id)})

    def stop_resize(request: Request) -> Response:
        pool = find(request)
        check_conditions(request, pool.wire)
        if pool.wire["allocationState"] == "resizing":
            pool.resize_due = None
            pool.wire["targetDedicatedNodes"] = pool.wire["currentDedicatedNodes"]
            pool.wire["targetLowPriorityNodes"] = pool.wire["currentLowPriorityNodes"]
            pool.wire["allocationState"] = "steady"
            pool.wire["allocationStateTransitionTime"] = iso(utcnow())
            stamp(pool.wire)
            state.save_pool(pool)
        return Response(202, None, {"DataServiceId": service.url("pools", pool.id)})

    def enable_autoscale(request: Request) -> Response:
        pool = find(request)
        check_conditions(request, pool.wire)
        _writable(pool)
        # "You cannot enable automatic scaling on a Pool if a resize operation is in progress."
        if pool.wire["allocationState"] != "steady" and not pool.wire.get("enableAutoScale"):
            raise conflict("PoolBeingResized", "The specified pool is being resized.")
        body = request.json_object()
        formula = body.get("autoScaleFormula") or pool.wire.get("autoScaleFormula")
        if not isinstance(formula, str) or not formula:
            raise BatchServiceError(
                400,
                "MissingRequiredProperty",
                "A required property was not specified in the request body.",
                [("PropertyName", "autoScaleFormula")],
            )
        _set_autoscale(pool.wire, formula, body.get("autoScaleEvaluationInterval"), utcnow())
        _start_resize(pool)
        stamp(pool.wire)
        state.save_pool(pool)
        state.wake()
        return Response(200, None, {"DataServiceId": service.url("pools", pool.id)})

    def disable_autoscale(request: Request) -> Response:
        pool = find(request)
        _writable(pool)
        pool.wire["enableAutoScale"] = False
        for key in ("autoScaleFormula", "autoScaleEvaluationInterval", "autoScaleRun"):
            pool.wire.pop(key, None)
        stamp(pool.wire)
        state.save_pool(pool)
        return Response(200, None, {"DataServiceId": service.url("pools", pool.id)})

    def list_nodes(request: Request) -> Response:
        pool = find(request)
        nodes = sorted(pool.nodes.values(), key=lambda n: n.seq)
        return page(
            service,
            request,
            ((n.seq, n.wire) for n in nodes),
            filterable=NODE_FILTERABLE,
            selectable=NODE_SELECTABLE,
        )

    def get_node(request: Request) -> Response:
        node = find_node(request)
        from ._api import select_of
        from ._odata import apply_select

        return Response(200, apply_select(node.wire, select_of(request, NODE_SELECTABLE)))

    return [
        route("GET", "/pools", "Pools_ListPools", list_),
        route("POST", "/pools", "Pools_CreatePool", create),
        route("GET", "/pools/{poolId}", "Pools_GetPool", get),
        route("HEAD", "/pools/{poolId}", "Pools_PoolExists", exists_),
        route("DELETE", "/pools/{poolId}", "Pools_DeletePool", delete),
        route("PATCH", "/pools/{poolId}", "Pools_UpdatePool", update),
        route("POST", "/pools/{poolId}/resize", "Pools_ResizePool", resize),
        route("POST", "/pools/{poolId}/stopresize", "Pools_StopPoolResize", stop_resize),
        route(
            "POST", "/pools/{poolId}/enableautoscale", "Pools_EnablePoolAutoScale", enable_autoscale
        ),
        route(
            "POST",
            "/pools/{poolId}/disableautoscale",
            "Pools_DisablePoolAutoScale",
            disable_autoscale,
        ),
        route("GET", "/pools/{poolId}/nodes", "Nodes_ListNodes", list_nodes),
        route("GET", "/pools/{poolId}/nodes/{nodeId}", "Nodes_GetNode", get_node),
    ]


def _writable(pool: Pool) -> None:
    if pool.wire["state"] == "deleting":
        raise conflict(
            "PoolBeingDeleted",
            "The specified pool has been marked for deletion and is being reclaimed.",
        )


def _start_resize(pool: Pool) -> None:
    now = utcnow()
    pool.wire["allocationState"] = "resizing"
    pool.wire["allocationStateTransitionTime"] = iso(now)
    stamp(pool.wire, now)
    pool.resize_due = time.monotonic() + RESIZE_DELAY


def _start_task(value: Any) -> Wire:
    if not isinstance(value, dict):
        raise invalid_property("startTask", value, "Expected a JSON object.")
    task = v.task_like(value, "startTask.", v.START_TASK)
    task.setdefault("maxTaskRetryCount", 0)
    task.setdefault("waitForSuccess", True)
    return task


def _vm_configuration(value: dict[str, Any]) -> Wire:
    """Stored as given (no VMs here), except ``containerConfiguration``, which decides where
    the pool's tasks run: checked, its enums as the spec spells them."""
    config = dict(value)
    if config.get("containerConfiguration") is not None:
        config["containerConfiguration"] = v.container_configuration(
            config["containerConfiguration"], "virtualMachineConfiguration.containerConfiguration"
        )
    return config


def _set_autoscale(wire: Wire, formula: str, interval: Any, now: Any) -> None:
    """Store the formula. It is not evaluated: literal ``$TargetDedicatedNodes = N``
    assignments set the target (the last one wins), otherwise the pool gets one node."""
    if interval is not None:
        parse_duration(interval, "autoScaleEvaluationInterval")
    wire["enableAutoScale"] = True
    wire["autoScaleFormula"] = formula
    wire["autoScaleEvaluationInterval"] = interval or wire.get(
        "autoScaleEvaluationInterval", "PT15M"
    )
    targets: dict[str, int | None] = {"TargetDedicatedNodes": None, "TargetLowPriorityNodes": None}
    for name, number in _TARGET_RE.findall(formula):
        targets[name] = int(number)
    dedicated = targets["TargetDedicatedNodes"]
    low = targets["TargetLowPriorityNodes"] or 0
    if dedicated is None:
        dedicated = 0 if low else 1
    wire["targetDedicatedNodes"] = dedicated
    wire["targetLowPriorityNodes"] = low
    wire["autoScaleRun"] = {
        "timestamp": iso(now),
        "results": f"$TargetDedicatedNodes={dedicated};$TargetLowPriorityNodes={low};"
        "$NodeDeallocationOption=requeue",
    }
