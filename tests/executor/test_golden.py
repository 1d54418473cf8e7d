"""Golden files: the JSON batchexecutor would send to Azure Batch for a pool, a job, a
chunk task and the combine task, each validated strictly against the spec's schema.

The request bodies are built by the product code (``PoolSpec.to_create_options``,
``_jobs.create_job`` / ``chunk_task`` / ``combine_task``) and serialized as the SDK
serializes them (its JSON encoder, read-only fields left out). Values that change from
run to run or release to release (versions, the creation time, the SAS in the store
locator) are replaced by placeholders. To regenerate after a deliberate change::

    BATCHEXECUTOR_UPDATE_GOLDEN=1 python -m pytest tests/executor/test_golden.py

and review the diff of ``tests/executor/golden/``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.batch import models as bm

from batchexecutor import Autoscale, ContainerRegistry, PoolSpec
from batchexecutor._batch import _task_json
from batchexecutor._jobs import chunk_task, combine_task, create_job
from batchexecutor._mapjob import map_fields
from batchexecutor._pool import _as_json
from batchexecutor._retry import redact
from tests.contract.spec import request_validator, schema_errors

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("BATCHEXECUTOR_UPDATE_GOLDEN") == "1"
JOB_ID = "bx-map-20260101-120000-0123abcd"
# The interpreter of a pool with packages (its virtual environment on the nodes).
PYTHON = "/opt/batchexecutor/venv/bin/python"
SUBNET = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-group/providers/"
    "Microsoft.Network/virtualNetworks/my-vnet/subnets/batch"
)
# A made-up account key (base64 of zeros): only to sign a SAS whose signature is masked.
FAKE_KEY = "A" * 86 + "=="


def square(x: int) -> int:
    return x * x


class _Capture:
    """A stand-in BatchClient that keeps the request bodies instead of sending them."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def get_pool(self, pool_id: str, **kwargs: Any) -> bm.BatchPool:
        return bm.BatchPool({"id": pool_id})  # the pool exists

    def create_job(self, options: Any, **kwargs: Any) -> None:
        self.sent.append(options)


def _normalize(data: Any) -> Any:
    """Placeholders for what changes from run to run or release to release."""
    if isinstance(data, dict):
        if set(data) == {"name", "value"} and isinstance(data["name"], str):
            name = data["name"]
            versions = {
                "batchexecutor.version": "<batchexecutor version>",
                "batchexecutor.python": "<python version>",
                "batchexecutor.cloudpickle": "<cloudpickle version>",
            }
            if name in versions and re.match(r"\d+\.\d+", str(data["value"])):
                return {"name": name, "value": versions[name]}
            if name == "batchexecutor.created":
                return {"name": name, "value": "<creation time>"}
            if name == "BATCHEXECUTOR_STORE":
                # The SAS's service version follows azure-storage-blob's release.
                value = re.sub(r"sv=[0-9-]+", "sv=<storage service version>", data["value"])
                return {"name": name, "value": value}
        return {key: _normalize(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_normalize(item) for item in data]
    return data


def pool_request() -> dict[str, Any]:
    """A pool that autoscales on the queue and installs packages from PyPI."""
    spec = PoolSpec(
        "batchexecutor-pool",
        "Standard_D4s_v5",
        task_slots_per_node=4,
        autoscale=Autoscale.queue(0, 10, spot_max_nodes=20),
        packages=["numpy>=2", "scipy"],
        start_task_commands=["apt-get install -y -q libgomp1 || true"],
        subnet_id=SUBNET,
        metadata={"project": "demo"},
    )
    return _as_json(spec.to_create_options())


def container_pool_request() -> dict[str, Any]:
    """A fixed-size pool of spot nodes that pulls a private container image."""
    spec = PoolSpec(
        "batchexecutor-containers",
        "Standard_D2s_v5",
        dedicated_nodes=0,
        spot_nodes=4,
        container_image="myregistry.azurecr.io/batch/worker:1.0",
        container_registry=ContainerRegistry("myregistry.azurecr.io", "puller", "<password>"),
    )
    return _as_json(spec.to_create_options())


def _store_locator() -> str:
    from azure.storage.blob import ContainerClient

    from batchexecutor._storage import BlobStore

    connection = (
        f"DefaultEndpointsProtocol=https;AccountName=myaccount;AccountKey={FAKE_KEY};"
        "EndpointSuffix=core.windows.net"
    )
    container = ContainerClient.from_connection_string(connection, "batchexecutor")
    store = BlobStore(container)
    return redact(store.node_locator(JOB_ID, expiry=timedelta(days=30)))


def job_request() -> dict[str, Any]:
    """A map job with a cloud combine, as ``map_async`` creates it."""
    client = _Capture()
    fields = map_fields(
        square, [range(1000)], chunksize=10, combine=True, reduce=None, mode="raise"
    )
    create_job(
        client,  # type: ignore[arg-type]
        JOB_ID,
        pool_id="batchexecutor-pool",
        environment={"BATCHEXECUTOR_STORE": _store_locator()},
        fields=fields,
        max_parallel_tasks=None,
        dependencies=True,
        deadline=10.0,
    )
    (options,) = client.sent
    assert isinstance(options, bm.BatchJobCreateOptions)
    return _as_json(options)


def chunk_task_request() -> dict[str, Any]:
    task = chunk_task(JOB_ID, 7, python=PYTHON, pack=(0, 4096, 612), dependents=True)
    return json.loads(_task_json(task))  # type: ignore[no-any-return]


def combine_task_request() -> dict[str, Any]:
    task = combine_task(JOB_ID, 100, python=PYTHON, mode="raise", reduce=False)
    return json.loads(_task_json(task))  # type: ignore[no-any-return]


# (golden file, operation whose request body it is, builder, spec deviations allowed)
CASES: list[tuple[str, str, Callable[[], dict[str, Any]], frozenset[str]]] = [
    ("pool.json", "Pools_CreatePool", pool_request, frozenset()),
    # The spec declares registryServer as format "uri" while its own description gives
    # the default "docker.io" and Microsoft's documentation uses bare host names such as
    # "myregistry.azurecr.io": a host name is what Batch takes, so that one is accepted.
    (
        "pool-containers.json",
        "Pools_CreatePool",
        container_pool_request,
        frozenset(
            {
                "$.virtualMachineConfiguration.containerConfiguration.containerRegistries[0]"
                ".registryServer: 'myregistry.azurecr.io' is not a 'uri'"
            }
        ),
    ),
    ("job.json", "Jobs_CreateJob", job_request, frozenset()),
    ("chunk-task.json", "Tasks_CreateTask", chunk_task_request, frozenset()),
    ("combine-task.json", "Tasks_CreateTask", combine_task_request, frozenset()),
]


@pytest.mark.parametrize(
    ("name", "operation", "build", "allowed"), CASES, ids=[case[0] for case in CASES]
)
def test_golden_request(
    name: str,
    operation: str,
    build: Callable[[], dict[str, Any]],
    allowed: frozenset[str],
) -> None:
    body = _normalize(build())
    path = GOLDEN / name
    text = json.dumps(body, indent=2, ensure_ascii=False) + "\n"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with BATCHEXECUTOR_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, (
        f"{name} differs from what the code now sends; if the change is deliberate, "
        "regenerate with BATCHEXECUTOR_UPDATE_GOLDEN=1 and review the diff"
    )
    # The committed file itself must be a valid request body, strictly (no property the
    # spec lacks, no read-only one, formats and enums checked).
    validator = request_validator(operation)
    assert validator is not None
    problems = set(schema_errors(validator, json.loads(expected)))
    assert problems <= allowed, sorted(problems - allowed)


def test_tasks_go_in_add_collection_bodies_too() -> None:
    """The executor adds tasks with Tasks_CreateTaskCollection: a body of the same tasks."""
    body = {"value": [chunk_task_request(), combine_task_request()]}
    validator = request_validator("Tasks_CreateTaskCollection")
    assert validator is not None
    assert schema_errors(validator, body) == []


def test_golden_files_hold_no_secret() -> None:
    for path in GOLDEN.glob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert FAKE_KEY not in text
        assert "sig=***" in text or "BATCHEXECUTOR_STORE" not in text
        assert not re.search(r"sig=(?!\*\*\*)", text), path.name
