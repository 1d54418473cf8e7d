"""Pools, compute nodes and start tasks of the emulator, through the azure-batch SDK.

Concurrency is observed without wall-clock thresholds: tasks hold at a *gate* (they
create ``<gate>/running/<task id>``, wait until the test creates ``<gate>/open``, then
remove their marker and exit), so the test sees exactly which tasks run at once.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from batchexecutor.emulator import BatchEmulator, _api_pools
from tests.conftest import wait_for, wait_task_completed
from tests.emulator.support import GATED, VM_SIZE, details, open_gate, python, running

T = TypeVar("T")


# A start task that records each run, holds at the gate, then leaves its environment
# (and working directory) in the node's shared directory for tasks and the test to read.
START_TASK = """
import json, os, pathlib, sys, time
gate = pathlib.Path(os.environ["GATE_DIR"])
with open(gate / "starts.log", "a") as log:
    log.write(os.environ["AZ_BATCH_NODE_ID"] + "\\n")
deadline = time.monotonic() + 60
while not (gate / "open").exists():
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.01)
seen = {k: v for k, v in os.environ.items() if k.startswith("AZ_BATCH_")}
seen["cwd"] = os.getcwd()
shared = pathlib.Path(os.environ["AZ_BATCH_NODE_SHARED_DIR"])
(shared / "start.json").write_text(json.dumps(seen))
print("start task done")
"""

# A task that fails unless the start task of *its* node has already run.
NEEDS_START_TASK = """
import json, os, pathlib, sys
marker = pathlib.Path(os.environ["AZ_BATCH_NODE_SHARED_DIR"]) / "start.json"
if not marker.exists():
    sys.exit(1)
seen = json.loads(marker.read_text())
sys.exit(0 if seen["AZ_BATCH_NODE_ID"] == os.environ["AZ_BATCH_NODE_ID"] else 2)
"""


# --------------------------------------------------------------------------- helpers


def some(value: T | None) -> T:
    """``value``, which the service must have returned."""
    assert value is not None
    return value


def code(error: HttpResponseError) -> str | None:
    """The Batch error code of a failed request."""
    return some(error.error).code


def make_pool(
    client: BatchClient,
    pool_id: str,
    *,
    nodes: int = 1,
    slots: int = 1,
    start_task: bm.BatchStartTask | None = None,
    wait: bool = True,
) -> None:
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id,
            vm_size=VM_SIZE,
            target_dedicated_nodes=nodes,
            task_slots_per_node=slots,
            start_task=start_task,
        )
    )
    if wait:
        wait_steady(client, pool_id)


def wait_steady(client: BatchClient, pool_id: str) -> bm.BatchPool:
    pool: bm.BatchPool = wait_for(
        lambda: (p := client.get_pool(pool_id)).allocation_state == "steady" and p
    )
    return pool


def wait_node(client: BatchClient, pool_id: str, node_id: str, state: str) -> bm.BatchNode:
    node: bm.BatchNode = wait_for(
        lambda: (n := client.get_node(pool_id, node_id)).state == state and n
    )
    return node


def start_task_info(client: BatchClient, pool_id: str, node_id: str) -> bm.BatchStartTaskInfo:
    return some(client.get_node(pool_id, node_id).start_task_info)


def make_job(client: BatchClient, job_id: str, pool_id: str) -> None:
    client.create_job(
        bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id))
    )


def gate_env(gate: Path) -> list[bm.EnvironmentSetting]:
    return [bm.EnvironmentSetting(name="GATE_DIR", value=str(gate))]


def add_gated_tasks(
    client: BatchClient, job_id: str, gate: Path, count: int, required_slots: int | None = None
) -> list[str]:
    ids = [f"t{i}" for i in range(count)]
    client.create_tasks(
        job_id,
        [
            bm.BatchTaskCreateOptions(
                id=i,
                command_line=python(GATED),
                environment_settings=gate_env(gate),
                required_slots=required_slots,
            )
            for i in ids
        ],
    )
    return ids


def max_overlap(intervals: Iterable[tuple[datetime, datetime]]) -> int:
    """Most intervals containing one instant (an interval ending as another starts: 1)."""
    events = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
        key=lambda e: (e[0], e[1]),
    )
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def execution_intervals(client: BatchClient, job_id: str) -> list[tuple[datetime, datetime]]:
    out = []
    for task in client.list_tasks(job_id):
        info = task.execution_info
        assert info is not None and info.start_time is not None and info.end_time is not None
        out.append((info.start_time, info.end_time))
    return out


def node_ids(client: BatchClient, pool_id: str) -> list[str]:
    return [n.id for n in client.list_nodes(pool_id)]


def download(client: BatchClient, pool_id: str, node_id: str, path: str) -> bytes:
    return b"".join(client.download_node_file(pool_id, node_id, path))


def check_capacity(
    client: BatchClient, job_id: str, gate: Path, ids: list[str], capacity: int
) -> None:
    """``capacity`` gated tasks run at once and no more; all finish once the gate opens."""
    wait_for(lambda: len(running(gate)) == capacity)
    # Give the scheduler every chance to over-commit before looking again.
    time.sleep(0.3)
    assert len(running(gate)) == capacity
    counts = client.get_job_task_counts(job_id).task_counts
    assert (counts.running, counts.active) == (capacity, len(ids) - capacity)
    open_gate(gate)
    for task_id in ids:
        info = some(wait_task_completed(client, job_id, task_id).execution_info)
        assert info.result == "success", info.failure_info
    # The service's own record agrees: never more than `capacity` tasks overlapped, and
    # the gated ones did overlap (they all ran when the gate opened).
    assert max_overlap(execution_intervals(client, job_id)) == capacity


# ------------------------------------------------------------------- create and get


def test_create_pool_stores_and_returns_properties(client: BatchClient) -> None:
    start = bm.BatchStartTask(
        command_line="/bin/sh -c 'echo ready'",
        max_task_retry_count=2,
        wait_for_success=True,
        environment_settings=[bm.EnvironmentSetting(name="STAGE", value="boot")],
    )
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id="full",
            vm_size=VM_SIZE,
            target_dedicated_nodes=2,
            target_low_priority_nodes=1,
            task_slots_per_node=3,
            start_task=start,
            metadata=[bm.BatchMetadataItem(name="owner", value="tests")],
        )
    )

    pool = client.get_pool("full")
    assert pool.id == "full"
    assert pool.state == "active"
    assert pool.vm_size == VM_SIZE
    assert (pool.target_dedicated_nodes, pool.target_low_priority_nodes) == (2, 1)
    assert pool.task_slots_per_node == 3
    assert pool.enable_auto_scale is False
    assert pool.auto_scale_formula is None
    assert [(m.name, m.value) for m in some(pool.metadata)] == [("owner", "tests")]
    stored = some(pool.start_task)
    assert stored.command_line == "/bin/sh -c 'echo ready'"
    assert stored.max_task_retry_count == 2
    assert stored.wait_for_success is True
    assert [(e.name, e.value) for e in some(stored.environment_settings)] == [("STAGE", "boot")]
    assert pool.url.endswith("/pools/full")
    assert pool.etag and pool.creation_time and pool.last_modified

    pool = wait_steady(client, "full")
    assert (pool.current_dedicated_nodes, pool.current_low_priority_nodes) == (2, 1)
    nodes = list(client.list_nodes("full"))
    assert Counter(n.is_dedicated for n in nodes) == {True: 2, False: 1}
    assert {n.vm_size for n in nodes} == {VM_SIZE}


def test_create_autoscale_pool_stores_formula(client: BatchClient) -> None:
    formula = "$TargetDedicatedNodes = 2;"
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id="auto",
            vm_size=VM_SIZE,
            enable_auto_scale=True,
            auto_scale_formula=formula,
            auto_scale_evaluation_interval=timedelta(minutes=5),
        )
    )

    pool = client.get_pool("auto")
    assert pool.enable_auto_scale is True
    assert pool.auto_scale_formula == formula
    assert pool.auto_scale_evaluation_interval == timedelta(minutes=5)
    pool = wait_steady(client, "auto")
    assert pool.current_dedicated_nodes == 2
    assert some(pool.auto_scale_run).timestamp is not None
    assert len(node_ids(client, "auto")) == 2


def test_pool_exists(client: BatchClient, pool: str) -> None:
    assert client.pool_exists(pool) is True
    # Pool IDs are case-insensitive on Batch.
    assert client.pool_exists(pool.upper()) is True
    # SDK 15.1: pool_exists is generated to return False on 404, but BatchClient's
    # BatchExceptionPolicy raises for every non-2xx response first, so a missing pool
    # surfaces as ResourceNotFoundError rather than False.
    with pytest.raises(ResourceNotFoundError) as caught:
        client.pool_exists("no-such-pool")
    assert caught.value.status_code == 404


def test_get_missing_pool_is_pool_not_found(client: BatchClient) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        client.get_pool("no-such-pool")
    assert code(caught.value) == "PoolNotFound"


def test_duplicate_pool_id_is_pool_exists(client: BatchClient, pool: str) -> None:
    for same in (pool, pool.upper()):
        with pytest.raises(ResourceExistsError) as caught:
            client.create_pool(bm.BatchPoolCreateOptions(id=same, vm_size=VM_SIZE))
        assert caught.value.status_code == 409
        assert code(caught.value) == "PoolExists"
    # The original is untouched.
    assert client.get_pool(pool).task_slots_per_node == 4


@pytest.mark.parametrize("bad_id", ["p" * 65, "has space", "dot.ted", "slash/ed", "ünï"])
def test_invalid_pool_id_is_invalid_property_value(client: BatchClient, bad_id: str) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.create_pool(bm.BatchPoolCreateOptions(id=bad_id, vm_size=VM_SIZE))
    assert caught.value.status_code == 400
    assert code(caught.value) == "InvalidPropertyValue"
    assert details(caught.value)["PropertyName"] == "id"
    assert list(client.list_pools()) == []


def test_longest_valid_pool_id_is_accepted(client: BatchClient) -> None:
    longest = "a-_9" * 16
    client.create_pool(bm.BatchPoolCreateOptions(id=longest, vm_size=VM_SIZE))
    assert client.get_pool(longest).id == longest


def test_missing_vm_size_is_missing_required_property(client: BatchClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.create_pool(bm.BatchPoolCreateOptions({"id": "novm", "targetDedicatedNodes": 1}))
    assert caught.value.status_code == 400
    assert code(caught.value) == "MissingRequiredProperty"
    assert details(caught.value)["PropertyName"] == "vmSize"
    with pytest.raises(ResourceNotFoundError):
        client.get_pool("novm")


# ------------------------------------------------------------------------------ list


def test_list_pools_pages_survive_a_deleted_pool(client: BatchClient) -> None:
    """A continuation token names the last pool served, not a position: deleting a pool
    already served must not make the next page skip one."""
    ids = ["p-a", "p-b", "p-c", "p-d"]
    for pool_id in ids:
        client.create_pool(bm.BatchPoolCreateOptions(id=pool_id, vm_size=VM_SIZE))
    pages = client.list_pools(max_results=1).by_page()
    seen = [pool.id for pool in next(pages)]
    client.begin_delete_pool(seen[0], polling_interval=0).result()
    seen += [pool.id for page in pages for pool in page]
    assert seen == ids


def test_list_pools_filter_and_select(client: BatchClient) -> None:
    for pool_id in ("alpha", "beta"):
        make_pool(client, pool_id, wait=False)
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id="gamma",
            vm_size="standard_a1",
            enable_auto_scale=True,
            auto_scale_formula="$TargetDedicatedNodes = 1;",
        )
    )

    assert sorted(p.id for p in client.list_pools()) == ["alpha", "beta", "gamma"]
    assert [p.id for p in client.list_pools(filter="id eq 'beta'")] == ["beta"]
    assert [p.id for p in client.list_pools(filter="enableAutoScale eq true")] == ["gamma"]
    assert sorted(p.id for p in client.list_pools(filter=f"vmSize eq '{VM_SIZE}'")) == [
        "alpha",
        "beta",
    ]

    selected = list(client.list_pools(filter="id eq 'gamma'", select=["id", "vmSize"]))
    assert [p.as_dict() for p in selected] == [{"id": "gamma", "vmSize": "standard_a1"}]


def test_list_pools_bad_filter_is_rejected(client: BatchClient, pool: str) -> None:
    with pytest.raises(HttpResponseError) as caught:
        list(client.list_pools(filter="id eq"))
    assert caught.value.status_code == 400
    assert code(caught.value) == "InvalidQueryParameterValue"


# ---------------------------------------------------------------------------- resize


def test_resize_up_and_down(
    client: BatchClient, pool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A resize that takes a moment, so its "resizing" state can be seen.
    monkeypatch.setattr(_api_pools, "RESIZE_DELAY", 1.0)
    before = client.get_pool(pool)
    growing = client.begin_resize_pool(
        pool,
        bm.BatchPoolResizeOptions(target_dedicated_nodes=3, target_low_priority_nodes=1),
        polling_interval=1,
    )
    resizing = client.get_pool(pool)
    assert resizing.allocation_state == "resizing"
    assert (resizing.target_dedicated_nodes, resizing.target_low_priority_nodes) == (3, 1)
    assert resizing.current_dedicated_nodes == 1
    assert resizing.etag != before.etag
    # Batch refuses a second resize, or enabling autoscale, while one is in progress.
    with pytest.raises(ResourceExistsError) as caught:
        client.begin_resize_pool(pool, bm.BatchPoolResizeOptions(target_dedicated_nodes=5))
    assert caught.value.status_code == 409
    assert code(caught.value) == "PoolBeingResized"
    with pytest.raises(ResourceExistsError) as caught:
        client.enable_pool_auto_scale(
            pool,
            bm.BatchPoolEnableAutoScaleOptions(auto_scale_formula="$TargetDedicatedNodes = 5;"),
        )
    assert code(caught.value) == "PoolBeingResized"
    assert client.get_pool(pool).enable_auto_scale is False

    growing.result(timeout=30)
    grown = client.get_pool(pool)
    assert grown.allocation_state == "steady"
    assert (grown.current_dedicated_nodes, grown.current_low_priority_nodes) == (3, 1)
    assert grown.target_dedicated_nodes == 3
    assert some(grown.allocation_state_transition_time) > some(
        resizing.allocation_state_transition_time
    )
    nodes = list(client.list_nodes(pool))
    assert Counter(n.is_dedicated for n in nodes) == {True: 3, False: 1}

    monkeypatch.setattr(_api_pools, "RESIZE_DELAY", 0.05)
    poller = client.begin_resize_pool(
        pool,
        bm.BatchPoolResizeOptions(target_dedicated_nodes=1, target_low_priority_nodes=0),
        polling_interval=0,
    )
    poller.result(timeout=30)
    assert poller.done()
    shrunk = client.get_pool(pool)
    assert shrunk.allocation_state == "steady"
    assert (shrunk.current_dedicated_nodes, shrunk.current_low_priority_nodes) == (1, 0)
    remaining = node_ids(client, pool)
    assert len(remaining) == 1
    for gone in {n.id for n in nodes} - set(remaining):
        with pytest.raises(ResourceNotFoundError) as missing:
            client.get_node(pool, gone)
        assert code(missing.value) == "NodeNotFound"


def test_resize_lro_completes(client: BatchClient, pool: str) -> None:
    poller = client.begin_resize_pool(
        pool, bm.BatchPoolResizeOptions(target_dedicated_nodes=2), polling_interval=0
    )
    assert poller.result(timeout=30) is None
    pool_now = client.get_pool(pool)
    assert pool_now.allocation_state == "steady"
    assert pool_now.current_dedicated_nodes == 2
    assert len(node_ids(client, pool)) == 2


def test_stop_resize_keeps_current_size(
    client: BatchClient, pool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_api_pools, "RESIZE_DELAY", 0.5)
    growing = client.begin_resize_pool(
        pool, bm.BatchPoolResizeOptions(target_dedicated_nodes=3), polling_interval=1
    )
    assert client.get_pool(pool).allocation_state == "resizing"
    client.begin_stop_pool_resize(pool, polling_interval=0).result(timeout=30)

    stopped = client.get_pool(pool)
    assert stopped.allocation_state == "steady"
    assert stopped.current_dedicated_nodes == 1
    # The pool stays at the size it had when stopped: no node arrives later.
    time.sleep(0.8)
    assert client.get_pool(pool).current_dedicated_nodes == 1
    assert len(node_ids(client, pool)) == 1
    growing.result(timeout=30)  # the resize's own poller sees it end too
    # A steady pool can be resized again.
    monkeypatch.setattr(_api_pools, "RESIZE_DELAY", 0.05)
    client.begin_resize_pool(
        pool, bm.BatchPoolResizeOptions(target_dedicated_nodes=2), polling_interval=0
    ).result(timeout=30)
    assert client.get_pool(pool).current_dedicated_nodes == 2


# ------------------------------------------------------------------------- autoscale


def test_enable_and_disable_autoscale(client: BatchClient, pool: str) -> None:
    formula = "$TargetDedicatedNodes = 3;"
    client.enable_pool_auto_scale(
        pool,
        bm.BatchPoolEnableAutoScaleOptions(
            auto_scale_formula=formula, auto_scale_evaluation_interval=timedelta(minutes=5)
        ),
    )
    enabled = client.get_pool(pool)
    assert enabled.enable_auto_scale is True
    assert enabled.auto_scale_formula == formula
    assert enabled.auto_scale_evaluation_interval == timedelta(minutes=5)
    scaled = wait_steady(client, pool)
    assert scaled.current_dedicated_nodes == 3
    assert scaled.auto_scale_run is not None

    # An autoscaling pool cannot be resized by hand.
    with pytest.raises(ResourceExistsError) as caught:
        client.begin_resize_pool(pool, bm.BatchPoolResizeOptions(target_dedicated_nodes=1))
    assert caught.value.status_code == 409
    assert client.get_pool(pool).current_dedicated_nodes == 3
    assert client.get_pool(pool).enable_auto_scale is True

    client.disable_pool_auto_scale(pool)
    disabled = client.get_pool(pool)
    assert disabled.enable_auto_scale is False
    assert disabled.auto_scale_formula is None
    assert disabled.current_dedicated_nodes == 3  # disabling keeps the current size
    client.begin_resize_pool(
        pool, bm.BatchPoolResizeOptions(target_dedicated_nodes=1), polling_interval=0
    ).result(timeout=30)
    assert client.get_pool(pool).current_dedicated_nodes == 1


def test_enable_autoscale_without_formula_is_missing_property(
    client: BatchClient, pool: str
) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.enable_pool_auto_scale(
            pool,
            bm.BatchPoolEnableAutoScaleOptions(auto_scale_evaluation_interval=timedelta(minutes=5)),
        )
    assert caught.value.status_code == 400
    assert code(caught.value) == "MissingRequiredProperty"
    assert client.get_pool(pool).enable_auto_scale is False


# ---------------------------------------------------------------------------- delete


def test_delete_pool(client: BatchClient, pool: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_api_pools, "RESIZE_DELAY", 0.5)
    node = node_ids(client, pool)[0]
    poller = client.begin_delete_pool(pool, polling_interval=1)
    # While it is being deleted the pool is still visible and refuses changes.
    assert client.get_pool(pool).state == "deleting"
    with pytest.raises(ResourceExistsError) as caught:
        client.update_pool(
            pool, bm.BatchPoolUpdateOptions(metadata=[bm.BatchMetadataItem(name="k", value="v")])
        )
    assert code(caught.value) == "PoolBeingDeleted"

    poller.result(timeout=30)
    assert poller.done()
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_pool(pool)
    assert code(missing.value) == "PoolNotFound"
    with pytest.raises(ResourceNotFoundError):
        client.pool_exists(pool)
    with pytest.raises(ResourceNotFoundError):
        client.get_node(pool, node)
    assert list(client.list_pools()) == []
    # The ID can be used again.
    make_pool(client, pool)
    assert client.get_pool(pool).current_dedicated_nodes == 1


def test_delete_missing_pool_is_pool_not_found(client: BatchClient) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        client.begin_delete_pool("no-such-pool", polling_interval=0)
    assert code(caught.value) == "PoolNotFound"


# ---------------------------------------------------------------------------- update


def test_update_pool_metadata_and_start_task(client: BatchClient, pool: str) -> None:
    before = client.get_pool(pool)
    client.update_pool(
        pool,
        bm.BatchPoolUpdateOptions(
            metadata=[
                bm.BatchMetadataItem(name="a", value="1"),
                bm.BatchMetadataItem(name="b", value="2"),
            ]
        ),
    )
    updated = client.get_pool(pool)
    assert [(m.name, m.value) for m in some(updated.metadata)] == [("a", "1"), ("b", "2")]
    assert updated.etag != before.etag
    assert updated.start_task is None
    assert updated.task_slots_per_node == 4  # PATCH leaves other properties alone

    client.update_pool(
        pool, bm.BatchPoolUpdateOptions(start_task=bm.BatchStartTask(command_line="/bin/true"))
    )
    updated = client.get_pool(pool)
    assert some(updated.start_task).command_line == "/bin/true"
    assert [(m.name, m.value) for m in some(updated.metadata)] == [("a", "1"), ("b", "2")]

    # An empty list removes all metadata.
    client.update_pool(pool, bm.BatchPoolUpdateOptions(metadata=[]))
    updated = client.get_pool(pool)
    assert not updated.metadata
    assert some(updated.start_task).command_line == "/bin/true"


def test_update_missing_pool_is_pool_not_found(client: BatchClient) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        client.update_pool("no-such-pool", bm.BatchPoolUpdateOptions(metadata=[]))
    assert code(caught.value) == "PoolNotFound"


# -------------------------------------------------------------------------- capacity


@pytest.mark.parametrize(("nodes", "slots"), [(1, 3), (3, 1)])
def test_pool_capacity_bounds_running_tasks(
    client: BatchClient, gate: Path, nodes: int, slots: int
) -> None:
    """nodes x taskSlotsPerNode tasks run at once (below the host's cap of 4)."""
    make_pool(client, "cap", nodes=nodes, slots=slots)
    make_job(client, "job", "cap")
    ids = add_gated_tasks(client, "job", gate, nodes * slots + 2)
    check_capacity(client, "job", gate, ids, nodes * slots)
    used = {some(client.get_task("job", i).node_info).node_id for i in ids}
    assert used == set(node_ids(client, "cap"))


def test_host_max_processes_bounds_running_tasks(client: BatchClient, gate: Path) -> None:
    """A pool of 2 nodes x 4 slots on an emulator with max_processes=4 runs 4 at once."""
    make_pool(client, "big", nodes=2, slots=4)
    make_job(client, "job", "big")
    ids = add_gated_tasks(client, "job", gate, 6)
    check_capacity(client, "job", gate, ids, 4)


def test_required_slots_are_honoured(client: BatchClient, pool: str, gate: Path) -> None:
    """Tasks needing 2 slots each: two of them fill the fixture's 4-slot node."""
    make_job(client, "job", pool)
    ids = add_gated_tasks(client, "job", gate, 4, required_slots=2)
    wait_for(lambda: len(running(gate)) == 2)
    node = client.get_node(pool, node_ids(client, pool)[0])
    assert (node.running_tasks_count, node.running_task_slots_count) == (2, 4)
    slot_counts = client.get_job_task_counts("job").task_slot_counts
    assert (slot_counts.running, slot_counts.active) == (4, 4)
    check_capacity(client, "job", gate, ids, 2)
    assert {client.get_task("job", i).required_slots for i in ids} == {2}


def test_task_needing_more_slots_than_free_waits(
    client: BatchClient, pool: str, gate: Path
) -> None:
    """A 3-slot task cannot start beside a 2-slot one on a 4-slot node; it starts later."""
    make_job(client, "job", pool)
    client.create_task(
        "job",
        bm.BatchTaskCreateOptions(
            id="small",
            command_line=python(GATED),
            environment_settings=gate_env(gate),
            required_slots=2,
        ),
    )
    wait_for(lambda: running(gate) == {"small"})
    client.create_task(
        "job", bm.BatchTaskCreateOptions(id="big", command_line="/bin/true", required_slots=3)
    )
    time.sleep(0.3)
    assert client.get_task("job", "big").state == "active"
    open_gate(gate)
    big = some(wait_task_completed(client, "job", "big").execution_info)
    assert big.result == "success"
    small = some(client.get_task("job", "small").execution_info)
    assert some(big.start_time) > some(small.end_time)


# ------------------------------------------------------------------------ start task


def test_start_task_runs_once_per_node_before_tasks(
    emulator: BatchEmulator, client: BatchClient, gate: Path
) -> None:
    start = bm.BatchStartTask(
        command_line=python(START_TASK), environment_settings=gate_env(gate), wait_for_success=True
    )
    make_pool(client, "boot", nodes=2, slots=2, start_task=start, wait=False)
    make_job(client, "job", "boot")
    ids = [f"t{i}" for i in range(6)]
    client.create_tasks(
        "job", [bm.BatchTaskCreateOptions(id=i, command_line=python(NEEDS_START_TASK)) for i in ids]
    )

    # Both nodes wait for their start task, and no task is scheduled meanwhile.
    def waiting() -> list[bm.BatchNode]:
        nodes = list(client.list_nodes("boot"))
        ok = len(nodes) == 2 and all(n.state == "waitingforstarttask" for n in nodes)
        return nodes if ok else []

    nodes = wait_for(waiting)
    for node in nodes:
        assert some(node.start_task_info).state == "running"
        assert some(node.start_task).command_line == start.command_line
    log = gate / "starts.log"
    wait_for(lambda: log.exists() and len(log.read_text().split()) == 2)
    time.sleep(0.2)
    assert {client.get_task("job", i).state for i in ids} == {"active"}

    open_gate(gate)
    for task_id in ids:
        done = some(wait_task_completed(client, "job", task_id).execution_info)
        assert (done.result, done.exit_code) == ("success", 0)

    # Once per node, whatever the number of tasks.
    node_set = set(node_ids(client, "boot"))
    assert sorted(log.read_text().split()) == sorted(node_set)
    for node_id in node_set:
        node = wait_node(client, "boot", node_id, "idle")
        info = some(node.start_task_info)
        assert (info.state, info.result, info.exit_code) == ("completed", "success", 0)
        assert info.retry_count == 0 and info.failure_info is None
        assert some(info.end_time) >= info.start_time
        assert some(node.total_tasks_run) >= 1


def test_start_task_environment(emulator: BatchEmulator, client: BatchClient, gate: Path) -> None:
    open_gate(gate)
    start = bm.BatchStartTask(command_line=python(START_TASK), environment_settings=gate_env(gate))
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id="envpool",
            vm_size=VM_SIZE,
            target_dedicated_nodes=1,
            target_low_priority_nodes=1,
            start_task=start,
        )
    )
    wait_steady(client, "envpool")
    nodes: list[bm.BatchNode] = wait_for(
        lambda: (
            (ns := list(client.list_nodes("envpool")))
            and all(n.start_task_info and n.start_task_info.state == "completed" for n in ns)
            and ns
        )
    )
    assert len(nodes) == 2
    for node in nodes:
        seen = json.loads(download(client, "envpool", node.id, "shared/start.json"))
        assert seen["AZ_BATCH_NODE_ID"] == node.id
        assert seen["AZ_BATCH_POOL_ID"] == "envpool"
        assert seen["AZ_BATCH_NODE_IS_DEDICATED"] == ("true" if node.is_dedicated else "false")
        assert seen["AZ_BATCH_ACCOUNT_NAME"] == emulator.account_name
        assert seen["AZ_BATCH_ACCOUNT_URL"].rstrip("/") == emulator.endpoint
        root = Path(seen["AZ_BATCH_NODE_ROOT_DIR"])
        assert Path(seen["AZ_BATCH_NODE_SHARED_DIR"]) == root / "shared"
        assert Path(seen["AZ_BATCH_NODE_STARTUP_DIR"]) == root / "startup"
        # The start task's own directories are the node's startup directory.
        assert seen["AZ_BATCH_TASK_DIR"] == seen["AZ_BATCH_NODE_STARTUP_DIR"]
        assert seen["AZ_BATCH_TASK_WORKING_DIR"] == seen["AZ_BATCH_NODE_STARTUP_WORKING_DIR"]
        assert (
            Path(seen["cwd"]).resolve() == Path(seen["AZ_BATCH_NODE_STARTUP_WORKING_DIR"]).resolve()
        )
        # Not defined for a start task (Microsoft: "All tasks except start task").
        assert "AZ_BATCH_JOB_ID" not in seen
    assert (
        len(
            {
                json.loads(download(client, "envpool", n.id, "shared/start.json"))[
                    "AZ_BATCH_NODE_ROOT_DIR"
                ]
                for n in nodes
            }
        )
        == 2
    )


def test_failing_start_task_makes_node_unusable(client: BatchClient, gate: Path) -> None:
    fail = python(
        "import os\n"
        "with open(os.path.join(os.environ['AZ_BATCH_NODE_SHARED_DIR'], 'runs'), 'a') as f:\n"
        "    f.write('run\\n')\n"
        "print('giving up', flush=True)\n"
        "raise SystemExit(7)\n"
    )
    start = bm.BatchStartTask(command_line=fail, max_task_retry_count=2, wait_for_success=True)
    make_pool(client, "broken", start_task=start)
    make_job(client, "job", "broken")
    client.create_task("job", bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))

    node_id = node_ids(client, "broken")[0]
    node = wait_node(client, "broken", node_id, "starttaskfailed")
    info = some(node.start_task_info)
    assert (info.state, info.result, info.exit_code) == ("completed", "failure", 7)
    assert info.retry_count == 2  # one try plus maxTaskRetryCount retries
    assert info.last_retry_time is not None
    failure = some(info.failure_info)
    assert (failure.category, failure.code) == ("usererror", "FailureExitCode")
    assert download(client, "broken", node_id, "shared/runs").decode().split() == ["run"] * 3
    assert b"giving up" in download(client, "broken", node_id, "startup/stdout.txt")
    listed = list(client.list_nodes("broken", filter="state eq 'starttaskfailed'"))
    assert [n.id for n in listed] == [node_id]

    # No task is ever scheduled on the failed node.
    time.sleep(0.3)
    task = client.get_task("job", "t")
    assert task.state == "active" and task.node_info is None
    assert client.get_node("broken", node_id).total_tasks_run == 0

    # A working start task applies to nodes joining afterwards: the task runs there.
    client.update_pool(
        "broken", bm.BatchPoolUpdateOptions(start_task=bm.BatchStartTask(command_line="/bin/true"))
    )
    client.begin_resize_pool(
        "broken", bm.BatchPoolResizeOptions(target_dedicated_nodes=2), polling_interval=0
    ).result(timeout=30)
    task = wait_task_completed(client, "job", "t")
    assert some(task.execution_info).result == "success"
    assert some(task.node_info).node_id != node_id
    assert client.get_node("broken", node_id).state == "starttaskfailed"


def test_start_task_not_waited_for(client: BatchClient, gate: Path) -> None:
    """waitForSuccess=false: tasks run on the node while its start task still runs."""
    start = bm.BatchStartTask(
        command_line=python(START_TASK), environment_settings=gate_env(gate), wait_for_success=False
    )
    make_pool(client, "eager", start_task=start)
    node_id = node_ids(client, "eager")[0]
    make_job(client, "job", "eager")
    client.create_task("job", bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))

    task = wait_task_completed(client, "job", "t")
    assert some(task.execution_info).result == "success"
    node = client.get_node("eager", node_id)
    assert some(node.start_task_info).state == "running"  # still held at the gate
    assert node.state == "idle"
    assert node.total_tasks_run == 1

    open_gate(gate)
    wait_for(lambda: start_task_info(client, "eager", node_id).state == "completed")
    info = start_task_info(client, "eager", node_id)
    assert (info.result, info.exit_code) == ("success", 0)


def test_failing_start_task_not_waited_for_keeps_node_usable(client: BatchClient) -> None:
    start = bm.BatchStartTask(command_line="/bin/false", wait_for_success=False)
    make_pool(client, "lenient", start_task=start)
    node_id = node_ids(client, "lenient")[0]
    wait_for(lambda: start_task_info(client, "lenient", node_id).state == "completed")
    node = client.get_node("lenient", node_id)
    assert (some(node.start_task_info).result, some(node.start_task_info).exit_code) == (
        "failure",
        1,
    )
    assert node.state == "idle"
    make_job(client, "job", "lenient")
    client.create_task("job", bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    task = wait_task_completed(client, "job", "t")
    assert some(task.execution_info).result == "success"
    assert some(task.node_info).node_id == node_id


# ----------------------------------------------------------------------------- nodes


def test_node_states_follow_running_tasks(client: BatchClient, pool: str, gate: Path) -> None:
    node_id = node_ids(client, pool)[0]
    node = client.get_node(pool, node_id)
    assert node.state == "idle"
    assert node.scheduling_state == "enabled"
    assert (node.running_tasks_count, node.total_tasks_run) == (0, 0)
    assert some(node.url).endswith(f"/pools/{pool}/nodes/{node_id}")

    make_job(client, "job", pool)
    add_gated_tasks(client, "job", gate, 1)
    wait_for(lambda: running(gate) == {"t0"})
    node = wait_node(client, pool, node_id, "running")
    assert node.running_tasks_count == 1
    assert [n.state for n in client.list_nodes(pool, filter="state eq 'running'")] == ["running"]
    assert some(client.get_task("job", "t0").node_info).node_id == node_id

    open_gate(gate)
    wait_task_completed(client, "job", "t0")
    node = wait_node(client, pool, node_id, "idle")
    assert node.running_tasks_count == 0
    assert (node.total_tasks_run, node.total_tasks_succeeded) == (1, 1)
    selected = client.get_node(pool, node_id, select=["id", "state"])
    assert selected.as_dict() == {"id": node_id, "state": "idle"}


def test_missing_node_is_node_not_found(client: BatchClient, pool: str) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        client.get_node(pool, "tvmps_nope")
    assert code(caught.value) == "NodeNotFound"
    with pytest.raises(ResourceNotFoundError) as caught:
        list(client.list_nodes("no-such-pool"))
    assert code(caught.value) == "PoolNotFound"


def test_node_files(client: BatchClient) -> None:
    start = bm.BatchStartTask(command_line="/bin/sh -c 'echo hello from start'")
    make_pool(client, "files", start_task=start)
    node_id = node_ids(client, "files")[0]
    wait_for(lambda: start_task_info(client, "files", node_id).state == "completed")
    make_job(client, "job", "files")
    client.create_task(
        "job", bm.BatchTaskCreateOptions(id="t", command_line="/bin/sh -c 'echo task output'")
    )
    wait_task_completed(client, "job", "t")

    top = {some(f.name): f for f in client.list_node_files("files", node_id)}
    assert {"shared", "startup", "workitems"} <= set(top)
    assert all(f.is_directory for f in top.values())
    assert not any("/" in name for name in top)

    everything = {some(f.name): f for f in client.list_node_files("files", node_id, recursive=True)}
    stdout = everything["startup/stdout.txt"]
    assert stdout.is_directory is False
    assert int(some(stdout.properties).content_length) == len(b"hello from start\n")
    assert some(stdout.url).endswith(f"/pools/files/nodes/{node_id}/files/startup/stdout.txt")
    assert "workitems/job/job-1/t/stdout.txt" in everything
    assert everything["startup"].is_directory is True

    assert download(client, "files", node_id, "startup/stdout.txt") == b"hello from start\n"
    assert (
        download(client, "files", node_id, "workitems/job/job-1/t/stdout.txt") == b"task output\n"
    )
    props = client.get_node_file_properties("files", node_id, "startup/stdout.txt")
    assert int(props.content_length) == len(b"hello from start\n")
    assert some(props.url).endswith("/files/startup/stdout.txt")
    assert str(props.is_directory).lower() == "false"

    with pytest.raises(ResourceNotFoundError) as caught:
        download(client, "files", node_id, "startup/nope.txt")
    # The SDK streams downloads and does not read an error body, so only the status shows.
    assert caught.value.status_code == 404


def test_list_nodes_select_and_filter(client: BatchClient) -> None:
    make_pool(client, "sel", nodes=3)
    ids = sorted(n.id for n in client.list_nodes("sel"))
    assert len(ids) == 3
    selected = list(client.list_nodes("sel", select=["id"]))
    assert sorted(n.id for n in selected) == ids
    assert all(n.as_dict() == {"id": n.id} for n in selected)
    idle = wait_for(
        lambda: len(x := list(client.list_nodes("sel", filter="state eq 'idle'"))) == 3 and x
    )
    assert sorted(n.id for n in idle) == ids
    assert list(client.list_nodes("sel", filter="state eq 'running'")) == []
