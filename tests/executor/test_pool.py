"""Pools: ``PoolSpec`` and ``Autoscale`` (unit), and the executor creating, reusing,
waiting for, inspecting, resizing and deleting pools on the emulator (end to end).

The emulator runs a start task as a real process on this machine (``python3`` there is
this interpreter): the package install test builds a wheel with the standard library and
has the start task ``pip install --no-index`` it into a virtual environment in a
temporary directory, so nothing is installed into this test environment; the job
preparation task installs the client's own batchexecutor and cloudpickle beside it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import uuid
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient

from batchexecutor import (
    Autoscale,
    AzureBatchExecutor,
    BatchConfig,
    ContainerRegistry,
    PoolError,
    PoolSpec,
    PoolWarning,
    VmImage,
)
from batchexecutor._context import local_python_path
from batchexecutor._pool import UBUNTU_LTS, UBUNTU_LTS_CONTAINERS, _as_json
from batchexecutor.emulator import BatchEmulator
from tests.conftest import wait_for

PROBE = "bxprobe"

# --------------------------------------------------------------------------- PoolSpec


def test_defaults_a_current_ubuntu_lts_and_one_dedicated_node() -> None:
    spec = PoolSpec("p1", "Standard_D2s_v5")
    body = _as_json(spec.to_create_options())
    vm = body["virtualMachineConfiguration"]
    assert vm["imageReference"] == {
        "publisher": "canonical",
        "offer": "ubuntu-24_04-lts",
        "sku": "server",
        "version": "latest",
    }
    assert vm["nodeAgentSKUId"] == "batch.node.ubuntu 24.04"
    assert (body["targetDedicatedNodes"], body["targetLowPriorityNodes"]) == (1, 0)
    assert body["enableAutoScale"] is False
    assert "startTask" not in body  # nothing to set up
    metadata = {item["name"]: item["value"] for item in body["metadata"]}
    assert metadata["batchexecutor.kind"] == "pool"
    assert metadata["batchexecutor.python"] == "python3"
    assert spec.python == "python3"


def test_packages_make_a_start_task_that_waits_for_success() -> None:
    spec = PoolSpec(
        "p1",
        "Standard_D2s_v5",
        spot_nodes=3,
        packages=["numpy>=2", "--index-url https://pypi.example/simple"],
        start_task_commands=["echo hello"],
        venv="/opt/env",
    )
    assert spec.target_nodes == (0, 3)
    assert spec.python == "/opt/env/bin/python"
    task = spec.start_task()
    assert task is not None
    assert task.wait_for_success is True
    assert task.user_identity is not None and task.user_identity.auto_user is not None
    assert task.user_identity.auto_user.elevation_level == "admin"
    script = spec.start_task_script()
    assert script is not None
    assert script.index("echo hello") < script.index("python3 -m venv /opt/env")
    assert "numpy>=2\n--index-url https://pypi.example/simple\n" in script
    assert task.environment_settings is not None
    assert task.environment_settings[0].value == script


def test_images_and_containers() -> None:
    custom = VmImage(virtual_machine_image_id="/subscriptions/x/images/y", node_agent_sku_id="a")
    assert custom.image_reference().virtual_machine_image_id == "/subscriptions/x/images/y"
    spec = PoolSpec(
        "p1",
        "Standard_D2s_v5",
        container_image="myregistry.azurecr.io/worker:1",
        container_registry=ContainerRegistry("myregistry.azurecr.io", "puller", "s3cr3t-pw"),
    )
    assert spec.vm_image == UBUNTU_LTS_CONTAINERS
    assert PoolSpec("p1", "Standard_D2s_v5").vm_image == UBUNTU_LTS
    body = _as_json(spec.to_create_options())
    registry = body["virtualMachineConfiguration"]["containerConfiguration"]
    assert registry["type"] == "dockerCompatible"
    assert registry["containerRegistries"][0]["password"] == "s3cr3t-pw"  # sent, ...
    assert "s3cr3t-pw" not in repr(spec) and "s3cr3t-pw" not in str(spec)  # ... never shown
    digest = spec.environment_digest()
    other = PoolSpec(
        "p1",
        "Standard_D2s_v5",
        container_image="myregistry.azurecr.io/worker:1",
        container_registry=ContainerRegistry("myregistry.azurecr.io", "puller", "other"),
    )
    assert other.environment_digest() == digest  # the digest does not depend on it
    with pytest.raises(TypeError, match="cannot be pickled"):
        import pickle

        pickle.dumps(spec)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"pool_id": "bad id"}, "pool_id"),
        ({"vm_size": ""}, "vm_size"),
        ({"dedicated_nodes": 2, "autoscale": Autoscale.queue(0, 2)}, "exclude each other"),
        ({"packages": "numpy"}, "list of strings"),
        ({"packages": ["a\nb"]}, "several lines"),
        ({"packages": ["x"], "container_image": "python:3.12"}, "exclude each other"),
        ({"container_registry": ContainerRegistry("r.io")}, "needs a container_image"),
        ({"task_slots_per_node": 0}, "task_slots_per_node"),
        ({"venv": "relative/env"}, "absolute path"),
        ({"metadata": {"batchexecutor.kind": "x"}}, "reserved"),
        ({"spot_nodes": -1}, "non-negative"),
    ],
)
def test_spec_validation(kwargs: dict[str, Any], fragment: str) -> None:
    arguments: dict[str, Any] = {"pool_id": "p1", "vm_size": "Standard_D2s_v5", **kwargs}
    with pytest.raises((ValueError, TypeError), match=fragment):
        PoolSpec(**arguments)


# --------------------------------------------------------------------------- Autoscale


def test_autoscale_templates() -> None:
    queue = Autoscale.queue(1, 8, spot_max_nodes=4)
    assert queue.template == "queue"
    assert queue.evaluation_interval == timedelta(minutes=5)
    assert "$ActiveTasks" in queue.formula and "$TaskSlotsPerNode" in queue.formula
    assert "$TargetDedicatedNodes = $dedicated;" in queue.formula
    assert "max(1, min($targetVMs, 8))" in queue.formula
    assert "min($targetVMs - $dedicated, 4)" in queue.formula
    running = Autoscale.queue_and_running(0, 5)
    assert "$PendingTasks" in running.formula and "$ActiveTasks" not in running.formula
    workday = Autoscale.workday(0, 6, start_hour=7, end_hour=19)
    assert "$now.hour >= 7 && $now.hour < 19" in workday.formula
    assert "($workHours && $isWeekday) ? 6 : 0" in workday.formula
    weekend = Autoscale.weekend(1, 4)
    assert "$isWeekday ? 1 : 4" in weekend.formula and "$workHours" not in weekend.formula
    cpu = Autoscale.max_cpu(2, 20, scale_up_above=80)
    assert "> 80" in cpu.formula and "max(2, min($nodes, 20))" in cpu.formula
    custom = Autoscale.custom("$TargetDedicatedNodes = 2;", evaluation_interval=timedelta(hours=1))
    assert custom.formula == "$TargetDedicatedNodes = 2;" and custom.template == "custom"
    for template in (queue, running, workday, weekend, cpu):
        assert "$TargetDedicatedNodes" in template.formula


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: Autoscale.queue(5, 2), "exceeds"),
        (lambda: Autoscale.queue(0, 0), "could not grow"),
        (lambda: Autoscale.custom(""), "non-empty"),
        (lambda: Autoscale.custom("$x=1;", evaluation_interval=timedelta(minutes=1)), "5 min"),
        (lambda: Autoscale.workday(start_hour=18, end_hour=8), "before"),
        (lambda: Autoscale.max_cpu(scale_up_above=10, scale_down_below=50), "lower"),
    ],
)
def test_autoscale_validation(make: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        make()


# --------------------------------------------------------------------------- end to end


def build_wheel(directory: Path, name: str = PROBE, version: str = "1.0") -> Path:
    """A pure-Python wheel made with the standard library: ``name.double(x) == 2 * x``."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n\ndef double(x):\n    return 2 * x\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: batchexecutor-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


@pytest.fixture
def config(batch_service: BatchEmulator, tmp_path: Path) -> BatchConfig:
    return BatchConfig(
        batch_service.endpoint,
        batch_account_name=batch_service.account_name,
        batch_account_key=batch_service.account_key,
        storage_dir=tmp_path / "store",
        poll_interval_min=0.02,
        poll_interval_max=0.1,
        request_deadline=30.0,
    )


@pytest.fixture
def client(batch_client: BatchClient) -> BatchClient:
    return batch_client


@pytest.fixture
def pool_id(client: BatchClient) -> Iterator[str]:
    """A fresh pool ID, the pool deleted after the test (whoever created it)."""
    name = f"bx-test-{uuid.uuid4().hex[:10]}"
    yield name
    with contextlib.suppress(Exception):
        client._delete_pool_internal(name)


def executor(config: BatchConfig, **kwargs: Any) -> AzureBatchExecutor:
    kwargs.setdefault("node_environment", {"PYTHONPATH": local_python_path()})
    return AzureBatchExecutor(config, **kwargs)


def test_packages_from_a_local_wheel_on_a_new_pool(
    config: BatchConfig, client: BatchClient, pool_id: str, tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels)
    spec = PoolSpec(
        pool_id,
        "standard_d2s_v3",
        task_slots_per_node=4,
        packages=["--no-index", f"--find-links {wheels}", PROBE],
        venv=str(tmp_path / "venv"),
    )

    # Nothing of this test environment reaches the nodes: the pool's environment has the
    # probe package, and the job preparation task installs the client's batchexecutor and
    # cloudpickle (install_client); the function travels by value.
    def use_probe(x: int) -> tuple[int, str, str]:
        import bxprobe  # type: ignore[import-not-found]

        import batchexecutor

        return bxprobe.double(x), bxprobe.VERSION, batchexecutor.__file__ or ""

    with executor(
        config, pool=spec, max_workers=4, delete_pool_on_shutdown=True, node_environment={}
    ) as ex:
        assert ex.pool_created and ex.pool_id == pool_id
        # The first submission waits for a node whose start task succeeded.
        results = list(ex.map(use_probe, range(6), chunksize=2))
        assert [r[:2] for r in results] == [(2 * i, "1.0") for i in range(6)]
        assert all("jobpreparation/wd/batchexecutor-site/batchexecutor/" in r[2] for r in results)
        info = ex.pool_info()
        assert info.usable_nodes == 1 and info.failures == []
        assert info.created_by_batchexecutor and info.python == spec.python
        assert info.workers == 4
        assert f"pool {pool_id}:" in str(info)
    # The packages went to the pool's environment only, not to this interpreter's.
    assert list((tmp_path / "venv").glob(f"lib/python*/site-packages/{PROBE}/__init__.py"))
    with pytest.raises(ImportError):
        __import__(PROBE)
    # delete_pool_on_shutdown: deleted once the work was done.
    wait_for(lambda: pool_id not in {p.id for p in client.list_pools()}, timeout=60)


def in_container(x: int) -> tuple[int, str]:
    import os

    return x + 1, os.environ.get("AZ_BATCH_TASK_WORKING_DIR", "")


def test_tasks_run_in_the_pools_container_image(
    config: BatchConfig, client: BatchClient, pool_id: str
) -> None:
    """On a container pool, every task (and the job preparation task) runs in its image.

    The emulator runs containers on this host when no container runtime answers (its
    ``host`` mode, see docs/emulator.md), so this checks what Batch is asked for and that
    the work gets done; the container itself is Batch's (or docker's) business.
    """
    spec = PoolSpec(pool_id, "standard_d2s_v3", container_image="python:3.11-slim")
    with executor(config, pool=spec, max_workers=2, delete_pool_on_shutdown=True) as ex:
        results = list(ex.map(in_container, range(4), chunksize=2))
        assert [r[0] for r in results] == [1, 2, 3, 4]
        assert all(r[1].endswith("/wd") for r in results)  # the task's working directory
        job_id = ex.submit_job_id
        assert ex.submit(in_container, 9).result(timeout=60)[0] == 10
        job = client.get_job(job_id)
        prep = job.job_preparation_task
        assert prep is not None and prep.container_settings is not None
        assert prep.container_settings.image_name == "python:3.11-slim"
        task = client.get_task(job_id, "0")
        settings = task.container_settings
        assert settings is not None and settings.image_name == "python:3.11-slim"
        assert settings.working_directory == "taskWorkingDirectory"
        assert task.execution_info.container_info is not None  # Batch reports the container


def test_a_failed_install_raises_with_the_node_stderr(
    config: BatchConfig, pool_id: str, tmp_path: Path
) -> None:
    spec = PoolSpec(
        pool_id,
        "standard_d2s_v3",
        packages=["--no-index", "bxprobe-does-not-exist"],
        venv=str(tmp_path / "venv"),
    )
    with executor(config, pool=spec) as ex:
        with pytest.raises(PoolError) as raised:
            ex.submit(pow, 2, 3)
        error = raised.value
        message = str(error)
        assert error.pool_id == pool_id
        assert "starttaskfailed" in message
        assert "bxprobe-does-not-exist" in message  # pip's own words, from the node
        assert "No matching distribution" in message or "Could not find" in message
        (failure,) = error.failures
        assert failure.exit_code not in (None, 0)
        assert "bxprobe-does-not-exist" in failure.stderr
        info = ex.pool_info()
        assert info.node_states == {"starttaskfailed": 1}
        assert "bxprobe-does-not-exist" in info.failures[0].stderr
        # Waiting again fails again, at once: nothing is submitted meanwhile.
        with pytest.raises(PoolError):
            list(ex.map(abs, [-1]))


def test_reuse_warns_about_differences_then_resize(
    config: BatchConfig, client: BatchClient, pool_id: str
) -> None:
    with executor(config, pool=PoolSpec(pool_id, "standard_d2s_v3")) as first:
        assert first.pool_created
        first.wait_for_nodes(timeout=60)
    bigger = PoolSpec(pool_id, "standard_d2s_v3", dedicated_nodes=2)
    with pytest.warns(PoolWarning, match="target size is 1 dedicated and 0 spot nodes, not 2"):
        ex = executor(config, pool=bigger)
    with ex:
        assert not ex.pool_created
        ex.resize_pool(dedicated=2)
        assert ex.wait_for_nodes(timeout=60, min_nodes=2).usable_nodes == 2
        assert client.get_pool(pool_id).target_dedicated_nodes == 2
        ex.resize_pool(autoscale=Autoscale.queue(0, 3))
        pool = client.get_pool(pool_id)
        assert pool.enable_auto_scale and "$ActiveTasks" in (pool.auto_scale_formula or "")
        ex.resize_pool(dedicated=1)  # back to a fixed size: autoscale switched off
        assert not client.get_pool(pool_id).enable_auto_scale
        assert client.get_pool(pool_id).target_dedicated_nodes == 1
        assert ex.submit(pow, 2, 5).result(timeout=60) == 32
    # The same spec again: nothing to warn about.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", PoolWarning)
        executor(config, pool=PoolSpec(pool_id, "standard_d2s_v3")).shutdown()


def test_a_pool_being_deleted_is_awaited_then_created(
    config: BatchConfig, client: BatchClient, pool_id: str
) -> None:
    executor(config, pool=PoolSpec(pool_id, "standard_d2s_v3"), wait_for_nodes=False).shutdown()
    client._delete_pool_internal(pool_id)
    with executor(config, pool=PoolSpec(pool_id, "standard_d2s_v3", task_slots_per_node=2)) as ex:
        assert ex.pool_created
        assert client.get_pool(pool_id).task_slots_per_node == 2
        assert ex.submit(pow, 3, 2).result(timeout=60) == 9


def test_existing_pool_by_id_is_used_as_it_is(config: BatchConfig, pool_id: str) -> None:
    executor(config, pool=PoolSpec(pool_id, "standard_d2s_v3"), wait_for_nodes=False).shutdown()
    with executor(config, pool_id=pool_id) as ex:
        assert not ex.pool_created and ex._context.launcher.python == "python3"
        assert ex.wait_for_nodes(timeout=60).usable_nodes == 1
        assert ex.submit(pow, 2, 2).result(timeout=60) == 4
    with pytest.raises(ValueError, match="disagree"):
        AzureBatchExecutor(config, "other", pool=PoolSpec(pool_id, "standard_d2s_v3"))


# --------------------------------------------------------------------------- without a service


class _FakeClient:
    def __init__(self) -> None:
        self.created: list[Any] = []

    def create_pool(self, options: Any, **kwargs: Any) -> None:
        self.created.append(options)


def test_ensure_pool_waits_while_the_pool_is_being_deleted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from azure.batch import models as bm

    from batchexecutor import _pool

    deleting = bm.BatchPool({"id": "p1", "state": "deleting", "vmSize": "standard_d2s_v3"})
    answers: list[bm.BatchPool | None] = [deleting, deleting, None]
    monkeypatch.setattr(_pool, "_pool_or_none", lambda *args: answers.pop(0))
    slept: list[float] = []
    client = _FakeClient()
    created = _pool.ensure_pool(
        client,  # type: ignore[arg-type]
        PoolSpec("p1", "standard_d2s_v3"),
        deadline=5,
        interval=(1.0, 10.0),
        sleep=slept.append,
    )
    assert created and len(client.created) == 1 and answers == []
    assert slept == [1.0, 1.5]
    answers[:] = [deleting] * 3
    with pytest.raises(PoolError, match="still being deleted"):
        _pool.ensure_pool(
            client,  # type: ignore[arg-type]
            PoolSpec("p1", "standard_d2s_v3"),
            deadline=5,
            timeout=0,
            sleep=slept.append,
        )


def test_resize_errors_without_nodes_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.batch import models as bm

    from batchexecutor import _pool

    pool = bm.BatchPool(
        {
            "id": "p1",
            "state": "active",
            "allocationState": "steady",
            "vmSize": "standard_d2s_v3",
            "targetDedicatedNodes": 4,
            "resizeErrors": [
                {"code": "AccountCoreQuotaReached", "message": "The core quota is reached."}
            ],
        }
    )
    monkeypatch.setattr(_pool, "_get_pool", lambda *args: pool)
    monkeypatch.setattr(_pool, "_nodes", lambda *args: [])
    with pytest.raises(PoolError, match="could not get any node: AccountCoreQuotaReached"):
        _pool.wait_for_nodes(None, "p1", deadline=5)  # type: ignore[arg-type]
    pool.resize_errors = None
    pool.target_dedicated_nodes = 0  # autoscale at zero: nothing to wait for
    assert _pool.wait_for_nodes(None, "p1", deadline=5).usable_nodes == 0  # type: ignore[arg-type]
    pool.allocation_state = "resizing"
    with pytest.raises(TimeoutError, match="allocating"):
        _pool.wait_for_nodes(None, "p1", deadline=5, timeout=0)  # type: ignore[arg-type]
