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
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from azure.batch import models as bm

from batchexecutor import Autoscale, ContainerRegistry, OutputFile, PoolSpec, ResourceFile
from batchexecutor._batch import _task_json
from batchexecutor._files import file_spec, prepare_files
from batchexecutor._jobs import chunk_task, combine_task, create_job
from batchexecutor._mapjob import map_fields
from batchexecutor._nodeenv import NodeLauncher, client_build
from batchexecutor._pool import _as_json
from batchexecutor._retry import redact
from tests.contract.spec import request_validator, schema_errors

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("BATCHEXECUTOR_UPDATE_GOLDEN") == "1"
JOB_ID = "bx-map-20260101-120000-0123abcd"
# The interpreter of a pool with packages (its virtual environment on the nodes), with
# the client's build installed by each job's preparation task (the default on Azure).
PYTHON = NodeLauncher("/opt/batchexecutor/venv/bin/python", install_client=True)
# A container pool's tasks run python3 in its image.
CONTAINER = NodeLauncher(
    "python3", install_client=True, container_image="myregistry.azurecr.io/batch/worker:1.0"
)
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
    if isinstance(data, str):
        # The client build's name holds its version and digest; the preparation task's
        # arguments, the client's Python version and its node requirements' versions.
        data = re.sub(
            r"batchexecutor-[A-Za-z0-9_.-]+-[0-9a-f]{20}\.zip",
            "batchexecutor-VERSION-DIGEST.zip",
            data,
        )
        data = re.sub(
            r"' \d+\.\d+ batchexecutor-build", "' PYTHON-VERSION batchexecutor-build", data
        )
        data = re.sub(r"(azure-storage-blob|tenacity)==[^@]+@", r"\1==VERSION@", data)
    if isinstance(data, str) and "sig=" in data:  # a SAS URL (resource and output files),
        # still a valid URI: the spec checks these fields' format
        return re.sub(r"sv=[0-9-]+", "sv=STORAGE-SERVICE-VERSION", redact(data))
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


def _blob_store() -> Any:
    from azure.storage.blob import ContainerClient

    from batchexecutor._storage import BlobStore

    connection = (
        f"DefaultEndpointsProtocol=https;AccountName=myaccount;AccountKey={FAKE_KEY};"
        "EndpointSuffix=core.windows.net"
    )
    container = ContainerClient.from_connection_string(connection, "batchexecutor")
    return BlobStore(container)


def _user_sas(container: str, permission: str, blob: str | None = None) -> str:
    """A SAS URL of another account's container (or blob), as a user would pass it."""
    from azure.storage.blob import generate_blob_sas, generate_container_sas

    expiry = datetime(2030, 1, 1, tzinfo=timezone.utc)
    base = f"https://theirdata.blob.core.windows.net/{container}"
    if blob is None:
        token = generate_container_sas(
            "theirdata", container, account_key=FAKE_KEY, permission=permission, expiry=expiry
        )
        return f"{base}?{token}"
    token = generate_blob_sas(
        "theirdata", container, blob, account_key=FAKE_KEY, permission=permission, expiry=expiry
    )
    return f"{base}/{blob}?{token}"


def job_request() -> dict[str, Any]:
    """A map job with a cloud combine, as ``map_async`` creates it."""
    client = _Capture()
    fields = map_fields(
        square, [range(1000)], chunksize=10, combine=True, reduce=None, mode="raise"
    )
    locator = _blob_store().node_locator(JOB_ID, expiry=timedelta(days=30))
    create_job(
        client,  # type: ignore[arg-type]
        JOB_ID,
        pool_id="batchexecutor-pool",
        environment={"BATCHEXECUTOR_STORE": redact(locator)},
        preparation=PYTHON.preparation(client_build().name, locator),
        fields=fields,
        max_parallel_tasks=None,
        dependencies=True,
        deadline=10.0,
    )
    (options,) = client.sent
    assert isinstance(options, bm.BatchJobCreateOptions)
    return _as_json(options)


def chunk_task_request() -> dict[str, Any]:
    task = chunk_task(JOB_ID, 7, launcher=PYTHON, pack=(0, 4096, 612), dependents=True)
    return json.loads(_task_json(task))  # type: ignore[no-any-return]


def chunk_task_files_request() -> dict[str, Any]:
    """A chunk task with resource files of each kind and output files of each kind, as
    ``map_async(..., resource_files=[...], output_files=[...])`` sends it."""
    with tempfile.TemporaryDirectory() as directory:
        local = Path(directory) / "params.json"
        local.write_text('{"iterations": 1000}\n')
        spec = file_spec(
            [
                ResourceFile(_user_sas("inputs", "r", "matrix.csv"), "data/matrix.csv"),
                ResourceFile.from_container(
                    _user_sas("references", "rl"), "refs", blob_prefix="genome/", file_mode=0o640
                ),
                ResourceFile.from_path(local, "conf/params.json"),
            ],
            [
                OutputFile("out/**/*.csv"),
                OutputFile("../stderr.txt", path="logs", upload_condition="failure"),
                OutputFile("plots/*.png", _user_sas("results", "w"), upload_condition="success"),
            ],
        )
        assert spec is not None
        context = SimpleNamespace(store=_blob_store(), config=SimpleNamespace(retention=None))
        files = prepare_files(context, JOB_ID, spec)  # type: ignore[arg-type]
    task = chunk_task(JOB_ID, 7, launcher=PYTHON, pack=(0, 4096, 612), dependents=True, files=files)
    return json.loads(_task_json(task))  # type: ignore[no-any-return]


def chunk_task_container_request() -> dict[str, Any]:
    """A chunk task on a container pool: it runs in the pool's image."""
    task = chunk_task(JOB_ID, 7, launcher=CONTAINER, pack=(0, 4096, 612), dependents=True)
    return json.loads(_task_json(task))  # type: ignore[no-any-return]


def combine_task_request() -> dict[str, Any]:
    task = combine_task(JOB_ID, 100, launcher=PYTHON, mode="raise", reduce=False)
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
    ("chunk-task-files.json", "Tasks_CreateTask", chunk_task_files_request, frozenset()),
    ("chunk-task-container.json", "Tasks_CreateTask", chunk_task_container_request, frozenset()),
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
    tasks = [chunk_task_request(), chunk_task_files_request(), chunk_task_container_request()]
    body = {"value": [*tasks, combine_task_request()]}
    validator = request_validator("Tasks_CreateTaskCollection")
    assert validator is not None
    assert schema_errors(validator, body) == []


def test_golden_files_hold_no_secret() -> None:
    for path in GOLDEN.glob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert FAKE_KEY not in text
        assert "sig=***" in text or "BATCHEXECUTOR_STORE" not in text
        assert not re.search(r"sig=(?!\*\*\*)", text), path.name
