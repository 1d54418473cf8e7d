"""Container tasks on the emulator (``containerSettings``), through the azure-batch SDK.

Three runtimes are exercised:

- ``host``: the command line runs on this host as the container's stand-in; these tests
  check the Batch semantics (pairing of task and pool, environment, working directory,
  ``containerInfo``, failures, secrets).
- A *fake* docker CLI (a script written by :func:`fake_docker`): it records every
  invocation (argv, the environment values it was asked to pass, what came on stdin), keeps
  a list of "pulled" images, and runs ``run``'s command on the host. It shows exactly what the
  emulator asks a docker-compatible CLI to do, without a daemon.
- Real docker, only where ``docker info`` succeeds (in addition to the tests above).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest

from batchexecutor.emulator import BatchEmulator
from batchexecutor.emulator._containers import bind_mounts, docker_run_argv
from tests.conftest import wait_for, wait_task_completed
from tests.emulator.support import GATED, VM_SIZE, details, env, open_gate, python, running

API_VERSION = "2025-06-01"
IMAGE = "myregistry.azurecr.io/tools/worker:1.0"
REGISTRY = "myregistry.azurecr.io"
PASSWORD = "pa55-w0rd-of-the-registry"
SECRET = "value-of-a-secret-variable"
HEX64 = re.compile(r"^[0-9a-f]{64}$")

# Prints the working directory and the environment (host mode: python3 is the emulator's).
PROBE = python("import json, os; print(json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ)}))")

BATCH_VARIABLES = {
    "AZ_BATCH_ACCOUNT_NAME",
    "AZ_BATCH_ACCOUNT_URL",
    "AZ_BATCH_POOL_ID",
    "AZ_BATCH_NODE_ID",
    "AZ_BATCH_NODE_IS_DEDICATED",
    "AZ_BATCH_NODE_ROOT_DIR",
    "AZ_BATCH_NODE_SHARED_DIR",
    "AZ_BATCH_NODE_STARTUP_DIR",
    "AZ_BATCH_NODE_STARTUP_WORKING_DIR",
    "AZ_BATCH_NODE_MOUNTS_DIR",
    "AZ_BATCH_TASK_DIR",
    "AZ_BATCH_TASK_WORKING_DIR",
    "AZ_BATCH_TASK_USER",
}


# --------------------------------------------------------------------------- fixtures, helpers


@pytest.fixture
def emulator() -> Iterator[BatchEmulator]:
    """Overrides the shared fixture: container tasks run on the host, whatever this machine has."""
    with BatchEmulator(max_processes=4, container_runtime="host") as emu:
        yield emu


def vm_configuration(
    container: bm.BatchContainerConfiguration | None,
) -> bm.VirtualMachineConfiguration:
    return bm.VirtualMachineConfiguration(
        image_reference=bm.BatchVmImageReference(
            publisher="microsoft-dsvm", offer="ubuntu-hpc", sku="2204"
        ),
        node_agent_sku_id="batch.node.ubuntu 22.04",
        container_configuration=container,
    )


def make_pool(
    client: BatchClient,
    pool_id: str,
    *,
    containers: bool = True,
    registries: list[bm.ContainerRegistryReference] | None = None,
    start_task: bm.BatchStartTask | None = None,
) -> str:
    """A pool of one node with 4 slots; a container pool unless ``containers`` is false."""
    config = (
        bm.BatchContainerConfiguration(
            type="dockerCompatible", container_image_names=[IMAGE], container_registries=registries
        )
        if containers
        else None
    )
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id,
            vm_size=VM_SIZE,
            target_dedicated_nodes=1,
            task_slots_per_node=4,
            virtual_machine_configuration=vm_configuration(config),
            start_task=start_task,
        )
    )
    wait_for(lambda: client.get_pool(pool_id).allocation_state == "steady")
    return pool_id


def settings(**options: Any) -> bm.BatchTaskContainerSettings:
    options.setdefault("image_name", IMAGE)
    return bm.BatchTaskContainerSettings(**options)


def make_job(client: BatchClient, job_id: str, pool_id: str, **options: Any) -> None:
    client.create_job(
        bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id), **options)
    )


def add_task(client: BatchClient, job_id: str, task_id: str, command: str, **options: Any) -> None:
    client.create_task(
        job_id, bm.BatchTaskCreateOptions(id=task_id, command_line=command, **options)
    )


def stdout(client: BatchClient, job_id: str, task_id: str) -> str:
    return b"".join(client.download_task_file(job_id, task_id, "stdout.txt")).decode()


def probe_of(client: BatchClient, job_id: str, task_id: str) -> dict[str, Any]:
    probed: dict[str, Any] = json.loads(stdout(client, job_id, task_id))
    return probed


def info_of(task: bm.BatchTask) -> bm.BatchTaskExecutionInfo:
    assert task.execution_info is not None
    return task.execution_info


def failure_of(info: Any) -> tuple[str | None, str | None, dict[str, str]]:
    """(category, code, details) of a failureInfo."""
    failure = info.failure_info
    assert failure is not None, "expected a failure"
    found = {str(d.name): str(d.value) for d in failure.details or []}
    return failure.category, failure.code, found


def only_node(client: BatchClient, pool_id: str) -> bm.BatchNode:
    nodes = list(client.list_nodes(pool_id))
    assert len(nodes) == 1
    return nodes[0]


def raw_post(client: BatchClient, path: str, body: dict[str, Any]) -> HttpResponseError:
    """POST a body the SDK's models would not produce; it must be refused."""
    with pytest.raises(HttpResponseError) as caught:
        client.send_request(
            HttpRequest(
                "POST",
                path,
                params={"api-version": API_VERSION},
                content=json.dumps(body).encode(),
                headers={"Content-Type": "application/json; odata=minimalmetadata"},
            )
        )
    return caught.value


# --------------------------------------------------------------------------- host mode


def test_container_task_runs_with_batch_environment_and_directories(
    emulator: BatchEmulator, client: BatchClient
) -> None:
    make_pool(client, "cpool")
    make_job(client, "job", "cpool", common_environment_settings=env(COMMON="shared"))
    add_task(
        client,
        "job",
        "probe",
        PROBE,
        container_settings=settings(container_run_options="--memory 1g"),
        environment_settings=env(GREETING="hello"),
    )
    task = wait_task_completed(client, "job", "probe")
    info = info_of(task)
    assert info.result == "success" and info.exit_code == 0
    probed = probe_of(client, "job", "probe")
    variables = probed["env"]
    assert set(variables) >= BATCH_VARIABLES
    assert variables["AZ_BATCH_TASK_ID"] == "probe" and variables["AZ_BATCH_JOB_ID"] == "job"
    assert (variables["COMMON"], variables["GREETING"]) == ("shared", "hello")
    # workingDirectory defaults to taskWorkingDirectory.
    assert probed["cwd"] == variables["AZ_BATCH_TASK_WORKING_DIR"]
    assert variables["AZ_BATCH_TASK_WORKING_DIR"] == variables["AZ_BATCH_TASK_DIR"] + "/wd"
    # The settings come back as given, and the task ran in a (stand-in) container.
    stored = task.container_settings
    assert stored is not None
    assert (stored.image_name, stored.container_run_options) == (IMAGE, "--memory 1g")
    assert info.container_info is not None
    assert HEX64.match(str(info.container_info.container_id))
    assert info.container_info.state == "exited"
    assert info.container_info.error is None


def test_container_info_follows_the_running_container(
    emulator: BatchEmulator, client: BatchClient, gate: Path
) -> None:
    make_pool(client, "cpool")
    make_job(client, "job", "cpool")
    add_task(
        client,
        "job",
        "held",
        python(GATED),
        container_settings=settings(),
        environment_settings=env(GATE_DIR=str(gate)),
    )
    wait_for(lambda: running(gate) == {"held"})
    live = client.get_task("job", "held")
    assert live.state == "running"
    live_info = info_of(live).container_info
    assert live_info is not None and live_info.state == "running"
    assert HEX64.match(str(live_info.container_id))
    open_gate(gate)
    done = info_of(wait_task_completed(client, "job", "held")).container_info
    assert done is not None
    assert (done.container_id, done.state) == (live_info.container_id, "exited")


def test_image_default_working_directory_is_the_images_on_the_host(
    emulator: BatchEmulator, client: BatchClient
) -> None:
    make_pool(client, "cpool")
    make_job(client, "job", "cpool")
    add_task(
        client,
        "job",
        "probe",
        PROBE,
        container_settings=settings(working_directory="containerImageDefault"),
    )
    info = info_of(wait_task_completed(client, "job", "probe"))
    assert info.result == "success"
    # Docker's default WORKDIR; Batch: "this directory will not contain the Resource Files".
    assert probe_of(client, "job", "probe")["cwd"] == "/"


def test_start_task_and_job_preparation_task_in_containers(
    emulator: BatchEmulator, client: BatchClient
) -> None:
    start = bm.BatchStartTask(
        command_line=python(
            "import os, pathlib; shared = os.environ['AZ_BATCH_NODE_SHARED_DIR']; "
            "pathlib.Path(shared, 'started').write_text(os.getcwd())"
        ),
        container_settings=settings(),
        wait_for_success=True,
    )
    make_pool(client, "cpool", start_task=start)
    node = only_node(client, "cpool")
    start_info = wait_for(
        lambda: (
            (n := client.get_node("cpool", node.id)).start_task_info
            and n.start_task_info.state == "completed"
            and n.start_task_info
        )
    )
    assert start_info.result == "success"
    assert start_info.container_info is not None
    assert HEX64.match(str(start_info.container_info.container_id))
    assert start_info.container_info.state == "exited"
    assert some_node_start_task(client, "cpool").container_settings is not None

    make_job(
        client,
        "job",
        "cpool",
        job_preparation_task=bm.BatchJobPreparationTask(
            command_line=python(
                "import os, pathlib; pathlib.Path('prepared').write_text(os.getcwd())"
            ),
            container_settings=settings(),
        ),
    )
    add_task(
        client,
        "job",
        "after-prep",
        python(
            "import os, pathlib; prep = os.environ['AZ_BATCH_JOB_PREP_WORKING_DIR']; "
            "shared = os.environ['AZ_BATCH_NODE_SHARED_DIR']; "
            "print(pathlib.Path(prep, 'prepared').read_text()); "
            "print(pathlib.Path(shared, 'started').read_text())"
        ),
        container_settings=settings(),
    )
    task = wait_task_completed(client, "job", "after-prep")
    assert info_of(task).result == "success"
    prep_cwd, start_cwd = stdout(client, "job", "after-prep").splitlines()
    assert prep_cwd.endswith("/workitems/job/job-1/jobpreparation/wd")
    assert start_cwd.endswith("/startup/wd")
    [status] = list(client.list_job_preparation_and_release_task_status("job"))
    prep = status.job_preparation_task_execution_info
    assert prep is not None and prep.result == "success"
    assert prep.container_info is not None and prep.container_info.state == "exited"
    assert HEX64.match(str(prep.container_info.container_id))


def some_node_start_task(client: BatchClient, pool_id: str) -> bm.BatchStartTask:
    start = only_node(client, pool_id).start_task
    assert start is not None
    return start


def test_start_and_preparation_tasks_may_run_on_a_container_pools_host(
    emulator: BatchEmulator, client: BatchClient
) -> None:
    # Spec: on a container pool "all other Tasks may specify" containerSettings.
    start = bm.BatchStartTask(command_line="/bin/sh -c 'echo started'", wait_for_success=True)
    make_pool(client, "cpool", start_task=start)
    node = only_node(client, "cpool")
    start_info = wait_for(
        lambda: (n := client.get_node("cpool", node.id)).state == "idle" and n.start_task_info
    )
    assert (start_info.result, start_info.container_info) == ("success", None)
    make_job(
        client,
        "job",
        "cpool",
        job_preparation_task=bm.BatchJobPreparationTask(command_line="/bin/sh -c 'echo prep'"),
    )
    add_task(client, "job", "t", "/bin/sh -c 'echo task'", container_settings=settings())
    assert info_of(wait_task_completed(client, "job", "t")).result == "success"
    [status] = list(client.list_job_preparation_and_release_task_status("job"))
    prep = status.job_preparation_task_execution_info
    assert prep is not None and (prep.result, prep.container_info) == ("success", None)


# --------------------------------------------------------------------------- pairing rules


def test_container_task_on_a_pool_without_containers_fails_on_the_node(
    emulator: BatchEmulator, client: BatchClient, tmp_path: Path
) -> None:
    make_pool(client, "plain", containers=False)
    make_job(client, "job", "plain")
    marker = tmp_path / "ran"
    # Accepted when added (the pool that runs it is known only when it is scheduled) ...
    add_task(
        client,
        "job",
        "boxed",
        f"/bin/sh -c 'touch {marker}'",
        container_settings=settings(),
        constraints=bm.BatchTaskConstraints(max_task_retry_count=3),
    )
    task = wait_task_completed(client, "job", "boxed")
    info = info_of(task)
    # ... and fails there before it starts: a pre-processing error, not retried.
    category, code, found = failure_of(info)
    assert (category, code) == ("usererror", "ContainerInvalidSettings")
    assert "containerConfiguration" in found["Message"]
    assert info.result == "failure" and info.exit_code is None and info.retry_count == 0
    assert info.container_info is None
    assert not marker.exists()
    assert client.get_job_task_counts("job").task_counts.failed == 1


def test_plain_task_on_a_container_pool_fails_on_the_node(
    emulator: BatchEmulator, client: BatchClient, tmp_path: Path
) -> None:
    make_pool(client, "cpool")
    make_job(client, "job", "cpool")
    marker = tmp_path / "ran"
    add_task(client, "job", "bare", f"/bin/sh -c 'touch {marker}'")
    info = info_of(wait_task_completed(client, "job", "bare"))
    category, code, _ = failure_of(info)
    assert (category, code) == ("usererror", "ContainerTaskSettingsNotFound")
    assert info.failure_info is not None
    message = "Container-enabled compute node requires task container settings"
    assert info.failure_info.message == message
    assert info.exit_code is None and not marker.exists()
    # The same job's container tasks run on that node as usual.
    add_task(client, "job", "boxed", "/bin/sh -c 'exit 0'", container_settings=settings())
    assert info_of(wait_task_completed(client, "job", "boxed")).result == "success"


def test_pre_processing_exit_options_apply_to_container_failures(
    emulator: BatchEmulator, client: BatchClient
) -> None:
    make_pool(client, "plain", containers=False)
    make_job(client, "job", "plain", uses_task_dependencies=True)
    add_task(
        client,
        "job",
        "boxed",
        "/bin/sh -c 'exit 0'",
        container_settings=settings(),
        exit_conditions=bm.ExitConditions(
            pre_processing_error=bm.ExitOptions(dependency_action="satisfy")
        ),
    )
    add_task(
        client,
        "job",
        "child",
        "/bin/sh -c 'exit 0'",
        depends_on=bm.BatchTaskDependencies(task_ids=["boxed"]),
    )
    assert info_of(wait_task_completed(client, "job", "child")).result == "success"
    assert failure_of(info_of(client.get_task("job", "boxed")))[1] == "ContainerInvalidSettings"


def test_container_start_task_on_a_pool_without_containers_fails_the_node(
    emulator: BatchEmulator, client: BatchClient
) -> None:
    start = bm.BatchStartTask(
        command_line="/bin/sh -c 'echo never'",
        container_settings=settings(),
        wait_for_success=True,
    )
    make_pool(client, "plain", containers=False, start_task=start)
    node = wait_for(lambda: (n := only_node(client, "plain")).state == "starttaskfailed" and n)
    assert node.start_task_info is not None
    category, code, _ = failure_of(node.start_task_info)
    assert (category, code) == ("usererror", "ContainerInvalidSettings")
    assert node.start_task_info.exit_code is None


# --------------------------------------------------------------------------- validation


def test_container_settings_are_validated_when_added(client: BatchClient) -> None:
    make_pool(client, "cpool")
    make_job(client, "job", "cpool")
    missing = raw_post(
        client,
        "/jobs/job/tasks",
        {"id": "t", "commandLine": "true", "containerSettings": {"containerRunOptions": "-t"}},
    )
    assert (missing.status_code, missing.error.code) == (400, "MissingRequiredProperty")
    assert details(missing)["PropertyName"] == "containerSettings.imageName"
    for body, prop in (
        ({"imageName": IMAGE, "workingDirectory": "somewhere"}, "workingDirectory"),
        (
            {"imageName": IMAGE, "containerHostBatchBindMounts": [{"source": "Everything"}]},
            "containerHostBatchBindMounts[0].source",
        ),
        (
            {
                "imageName": IMAGE,
                "containerHostBatchBindMounts": [{"source": "Task", "isReadOnly": "yes"}],
            },
            "containerHostBatchBindMounts[0].isReadOnly",
        ),
        ({"imageName": IMAGE, "registry": {"username": 7}}, "registry.username"),
        ({"imageName": 42}, "imageName"),
    ):
        error = raw_post(
            client,
            "/jobs/job/tasks",
            {"id": "t", "commandLine": "true", "containerSettings": body},
        )
        assert (error.status_code, error.error.code) == (400, "InvalidPropertyValue"), body
        assert details(error)["PropertyName"] == f"containerSettings.{prop}"
    assert list(client.list_tasks("job")) == []


def test_container_settings_enums_are_returned_as_the_spec_spells_them(
    client: BatchClient,
) -> None:
    make_pool(client, "cpool")
    make_job(client, "job", "cpool")
    client.send_request(
        HttpRequest(
            "POST",
            "/jobs/job/tasks",
            params={"api-version": API_VERSION},
            content=json.dumps(
                {
                    "id": "t",
                    "commandLine": "/bin/sh -c 'exit 0'",
                    "containerSettings": {
                        "imageName": IMAGE,
                        "workingDirectory": "TASKWORKINGDIRECTORY",
                        # Microsoft's own example adds a task with a duplicate source.
                        "containerHostBatchBindMounts": [
                            {"source": "task", "isReadOnly": True},
                            {"source": "Task", "isReadOnly": True},
                            {"source": "SHARED"},
                        ],
                    },
                }
            ).encode(),
            headers={"Content-Type": "application/json; odata=minimalmetadata"},
        )
    ).raise_for_status()
    stored = client.get_task("job", "t").container_settings
    assert stored is not None
    assert stored.working_directory == "taskWorkingDirectory"
    mounts = [(m.source, m.is_read_only) for m in stored.container_host_batch_bind_mounts or []]
    assert mounts == [("Task", True), ("Task", True), ("Shared", None)]


def test_pool_container_configuration_is_validated(client: BatchClient) -> None:
    error = raw_post(
        client,
        "/pools",
        {
            "id": "p",
            "vmSize": VM_SIZE,
            "virtualMachineConfiguration": {
                "imageReference": {"publisher": "a", "offer": "b", "sku": "c"},
                "nodeAgentSKUId": "batch.node.ubuntu 22.04",
                "containerConfiguration": {"containerImageNames": [IMAGE]},
            },
        },
    )
    assert (error.status_code, error.error.code) == (400, "MissingRequiredProperty")
    assert (
        details(error)["PropertyName"] == "virtualMachineConfiguration.containerConfiguration.type"
    )
    error = raw_post(
        client,
        "/pools",
        {
            "id": "p",
            "vmSize": VM_SIZE,
            "virtualMachineConfiguration": {
                "imageReference": {"publisher": "a", "offer": "b", "sku": "c"},
                "nodeAgentSKUId": "batch.node.ubuntu 22.04",
                "containerConfiguration": {"type": "lxc"},
            },
        },
    )
    assert (error.status_code, error.error.code) == (400, "InvalidPropertyValue")
    assert (
        details(error)["PropertyName"] == "virtualMachineConfiguration.containerConfiguration.type"
    )
    with pytest.raises(HttpResponseError):
        client.get_pool("p")


def test_registry_passwords_are_never_returned(
    emulator: BatchEmulator, client: BatchClient
) -> None:
    registry = bm.ContainerRegistryReference(
        username="puller", password=PASSWORD, registry_server=REGISTRY
    )
    start = bm.BatchStartTask(
        command_line="/bin/sh -c 'exit 0'", container_settings=settings(registry=registry)
    )
    make_pool(client, "cpool", registries=[registry], start_task=start)
    make_job(
        client,
        "job",
        "cpool",
        job_preparation_task=bm.BatchJobPreparationTask(
            command_line="/bin/sh -c 'exit 0'", container_settings=settings(registry=registry)
        ),
        job_release_task=bm.BatchJobReleaseTask(
            command_line="/bin/sh -c 'exit 0'", container_settings=settings(registry=registry)
        ),
    )
    add_task(
        client, "job", "t", "/bin/sh -c 'exit 0'", container_settings=settings(registry=registry)
    )
    wait_task_completed(client, "job", "t")
    bodies = [
        client.get_pool("cpool").as_dict(),
        client.get_job("job").as_dict(),
        client.get_task("job", "t").as_dict(),
        only_node(client, "cpool").as_dict(),
        [t.as_dict() for t in client.list_tasks("job")],
    ]
    text = json.dumps(bodies)
    assert PASSWORD not in text
    # x-ms-secret: the password is taken, the rest of the registry is returned.
    pool_registry = bodies[0]["virtualMachineConfiguration"]["containerConfiguration"][
        "containerRegistries"
    ][0]
    assert pool_registry == {"username": "puller", "registryServer": REGISTRY}
    assert bodies[2]["containerSettings"]["registry"] == pool_registry
    assert bodies[1]["jobPreparationTask"]["containerSettings"]["registry"] == pool_registry
    assert PASSWORD not in repr(emulator)


# --------------------------------------------------------------------------- docker argv


def test_docker_run_argv_is_exact() -> None:
    argv = docker_run_argv(
        "/usr/bin/docker",
        name="batch-t-0123456789abcdef",
        cidfile=Path("/data/containers/cid/batch-t-0123456789abcdef.cid"),
        image=IMAGE,
        mounts=[("/n/shared", False), ("/n/workitems/j/job-1/t", True)],
        env=["AZ_BATCH_TASK_ID", "TOKEN", "HOME=/home/task"],
        workdir="/n/workitems/j/job-1/t/wd",
        run_options=["--memory", "1g", "--network", "none"],
        command=["python3", "-c", "print('hi there')"],
    )
    assert argv == [
        "/usr/bin/docker",
        "run",
        "--rm",
        "--name",
        "batch-t-0123456789abcdef",
        "--cidfile",
        "/data/containers/cid/batch-t-0123456789abcdef.cid",
        "-v",
        "/n/shared:/n/shared",
        "-v",
        "/n/workitems/j/job-1/t:/n/workitems/j/job-1/t:ro",
        "-e",
        "AZ_BATCH_TASK_ID",
        "-e",
        "TOKEN",
        "-e",
        "HOME=/home/task",
        "-w",
        "/n/workitems/j/job-1/t/wd",
        "--memory",
        "1g",
        "--network",
        "none",
        IMAGE,
        "python3",
        "-c",
        "print('hi there')",
    ]
    no_workdir = docker_run_argv(
        "docker",
        name="n",
        cidfile=Path("/c"),
        image="busybox",
        mounts=[],
        env=[],
        workdir=None,
        run_options=[],
        command=[],
    )
    assert no_workdir == ["docker", "run", "--rm", "--name", "n", "--cidfile", "/c", "busybox"]


def test_bind_mounts_follow_container_host_batch_bind_mounts() -> None:
    node = "/nodes/p/n1"
    variables = {
        "AZ_BATCH_NODE_ROOT_DIR": node,
        "AZ_BATCH_NODE_SHARED_DIR": f"{node}/shared",
        "AZ_BATCH_NODE_STARTUP_DIR": f"{node}/startup",
        "AZ_BATCH_NODE_MOUNTS_DIR": f"{node}/fsmounts",
        "AZ_BATCH_TASK_DIR": f"{node}/workitems/j/job-1/t",
    }
    # Not given: all of AZ_BATCH_NODE_ROOT_DIR, read-write. Empty: nothing.
    assert bind_mounts({"imageName": IMAGE}, variables) == [(node, False)]
    assert bind_mounts({"imageName": IMAGE, "containerHostBatchBindMounts": []}, variables) == []
    chosen = {
        "imageName": IMAGE,
        "containerHostBatchBindMounts": [
            {"source": "Task"},
            {"source": "Shared", "isReadOnly": True},
            {"source": "Task", "isReadOnly": True},  # a duplicate: once, read-only
            {"source": "JobPrep"},  # this job has no preparation task
            {"source": "Startup", "isReadOnly": False},
            {"source": "VfsMounts"},
            {"source": "Applications", "isReadOnly": True},
        ],
    }
    assert bind_mounts(chosen, variables) == [
        (f"{node}/workitems/j/job-1/t", True),
        (f"{node}/shared", True),
        (f"{node}/startup", False),
        (f"{node}/fsmounts", False),
        (f"{node}/applications", True),
    ]
    with_prep = {**variables, "AZ_BATCH_JOB_PREP_DIR": f"{node}/workitems/j/job-1/jobpreparation"}
    assert bind_mounts(
        {"imageName": IMAGE, "containerHostBatchBindMounts": [{"source": "JobPrep"}]}, with_prep
    ) == [(f"{node}/workitems/j/job-1/jobpreparation", False)]


# --------------------------------------------------------------------------- a fake docker CLI

FAKE_DOCKER = r"""#!{python}
import json, os, pathlib, secrets, subprocess, sys

LOG = pathlib.Path(os.environ["FAKE_DOCKER_LOG"])
IMAGES = pathlib.Path(os.environ["FAKE_DOCKER_IMAGES"])
WITH_VALUE = {"--name", "--cidfile", "-v", "-e", "-w", "--memory", "--network", "--user"}


def record(**extra):
    with LOG.open("a") as log:
        log.write(json.dumps({"argv": sys.argv[1:], **extra}) + "\n")


def fail(message, code):
    print(message, file=sys.stderr)
    sys.exit(code)


args = sys.argv[1:]
config = None
if args[:1] == ["--config"]:
    config, args = args[1], args[2:]
command = args[0]
images = set(IMAGES.read_text().split()) if IMAGES.exists() else set()
if command == "info":
    record()
    if os.environ.get("FAKE_DOCKER_DAEMON") != "1":
        fail("Cannot connect to the Docker daemon. Is the docker daemon running?", 1)
    print("28.2.2")
elif command == "image":
    record()
    if args[-1] not in images:
        fail(f"Error: No such image: {args[-1]}", 1)
    print("sha256:" + "0" * 64)
elif command == "login":
    password = sys.stdin.read()
    record(stdin=password, config_exists=os.path.isdir(config or ""))
    if password != os.environ.get("FAKE_DOCKER_PASSWORD"):
        fail("Error response from daemon: unauthorized: incorrect username or password", 1)
elif command == "pull":
    record()
    if args[-1].startswith("missing/"):
        fail(f"Error response from daemon: pull access denied for {args[-1]}", 1)
    with IMAGES.open("a") as known:
        known.write(args[-1] + "\n")
elif command == "rm":
    record()
elif command == "run":
    options = {}
    i = 1
    while args[i].startswith("-"):
        if args[i] == "--rm":
            i += 1
            continue
        if args[i] not in WITH_VALUE:
            record()
            fail(f"docker: unknown flag: {args[i]}", 125)
        options.setdefault(args[i], []).append(args[i + 1])
        i += 2
    image, argv = args[i], args[i + 1 :]
    if image not in images:
        fail(f"docker: image {image} was not pulled first", 125)
    environment = {}
    for entry in options.get("-e", []):
        name, given, value = entry.partition("=")
        if given:
            environment[name] = value
        elif name in os.environ:
            environment[name] = os.environ[name]
    container_id = secrets.token_hex(32)
    pathlib.Path(options["--cidfile"][0]).write_text(container_id)
    record(env=environment, cid=container_id, cli_home=os.environ.get("HOME"))
    environment.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    try:
        done = subprocess.run(argv, env=environment, cwd=options.get("-w", ["/"])[0])
    except (FileNotFoundError, IndexError):
        fail(
            'docker: Error response from daemon: failed to create task for container: exec: '
            f'"{argv[0] if argv else ""}": executable file not found in $PATH: unknown.',
            127,
        )
    sys.exit(done.returncode)
else:
    record()
    sys.exit(2)
"""


@dataclass
class FakeDocker:
    path: Path
    log: Path

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def runs(self) -> list[dict[str, Any]]:
        return [c for c in self.calls() if c["argv"][0] == "run"]

    def commands(self) -> list[str]:
        """Each call's command (``image inspect``, ``login``, ...), global options left out."""
        found = []
        for call in self.calls():
            argv = call["argv"][2:] if call["argv"][0] == "--config" else call["argv"]
            found.append(" ".join(argv[:2]) if argv[0] == "image" else argv[0])
        return found

    def logins(self) -> list[dict[str, Any]]:
        return [c for c in self.calls() if c["argv"][2:3] == ["login"]]


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    """A docker CLI stand-in (see FAKE_DOCKER), on PATH as ``docker`` too."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    path = bin_dir / "docker"
    path.write_text(FAKE_DOCKER.replace("{python}", sys.executable, 1))
    path.chmod(0o755)
    log = tmp_path / "docker-calls.jsonl"
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    monkeypatch.setenv("FAKE_DOCKER_IMAGES", str(tmp_path / "docker-images.txt"))
    monkeypatch.setenv("FAKE_DOCKER_PASSWORD", PASSWORD)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return FakeDocker(path, log)


@pytest.fixture
def docker_client(fake_docker: FakeDocker) -> Iterator[BatchClient]:
    with BatchEmulator(max_processes=4, container_runtime=str(fake_docker.path)) as emu:
        batch = BatchClient(emu.endpoint, emu.credential)
        yield batch
        batch.close()


def test_docker_mode_runs_the_exact_command_without_secrets_on_it(
    fake_docker: FakeDocker, docker_client: BatchClient
) -> None:
    client = docker_client
    registry = bm.ContainerRegistryReference(
        username="puller", password=PASSWORD, registry_server=REGISTRY
    )
    make_pool(client, "cpool", registries=[registry])
    make_job(client, "job", "cpool", common_environment_settings=env(COMMON="shared"))
    script = 'echo "$SECRET_TOKEN $COMMON $HOME"; pwd'
    add_task(
        client,
        "job",
        "t1",
        f"/bin/sh -c '{script}'",
        container_settings=settings(container_run_options="--memory 1g --network none"),
        environment_settings=env(SECRET_TOKEN=SECRET, HOME="/home/task"),
    )
    task = wait_task_completed(client, "job", "t1")
    info = info_of(task)
    assert info.result == "success", info.failure_info

    # Image check, login (password on stdin, into the emulator's own config), pull, run.
    assert fake_docker.commands() == ["image inspect", "login", "pull", "run"]
    calls = fake_docker.calls()
    login = calls[1]
    assert login["stdin"] == PASSWORD and login["config_exists"]
    config_dir = login["argv"][login["argv"].index("--config") + 1]
    assert login["argv"] == [
        "--config",
        config_dir,
        "login",
        "--username",
        "puller",
        "--password-stdin",
        REGISTRY,
    ]
    assert calls[0]["argv"] == ["image", "inspect", "--format", "{{.Id}}", IMAGE]
    assert calls[2]["argv"] == ["--config", config_dir, "pull", IMAGE]
    for call in calls:
        assert PASSWORD not in json.dumps(call["argv"]) and SECRET not in json.dumps(call["argv"])

    [run] = fake_docker.runs()
    argv, values = run["argv"], run["env"]
    names = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-e"]
    # Exactly the task's variables; by name only, but for one the CLI itself reads (HOME),
    # which goes in with its value while the CLI keeps the emulator's own.
    assert set(names) == BATCH_VARIABLES | {
        "AZ_BATCH_JOB_ID",
        "AZ_BATCH_TASK_ID",
        "COMMON",
        "SECRET_TOKEN",
        "HOME=/home/task",
    }
    assert (values["SECRET_TOKEN"], values["COMMON"]) == (SECRET, "shared")
    assert (values["HOME"], run["cli_home"]) == ("/home/task", os.environ.get("HOME"))
    root, workdir = values["AZ_BATCH_NODE_ROOT_DIR"], values["AZ_BATCH_TASK_WORKING_DIR"]
    name = argv[3]
    assert re.fullmatch(r"batch-t1-[0-9a-f]{16}", name)
    cidfile = argv[5]
    assert Path(cidfile).name == f"{name}.cid"
    assert [str(fake_docker.path), *argv] == [
        str(fake_docker.path),
        "run",
        "--rm",
        "--name",
        name,
        "--cidfile",
        cidfile,
        "-v",
        f"{root}:{root}",  # all of AZ_BATCH_NODE_ROOT_DIR, at the same path
        *[part for n in names for part in ("-e", n)],
        "-w",
        workdir,
        "--memory",
        "1g",
        "--network",
        "none",
        IMAGE,
        "/bin/sh",
        "-c",
        script,
    ]
    assert stdout(client, "job", "t1").splitlines() == [f"{SECRET} shared /home/task", workdir]
    assert info.container_info is not None
    assert (info.container_info.container_id, info.container_info.state) == (run["cid"], "exited")
    assert not Path(cidfile).exists()

    # The image is there now, and the login is remembered: no second login or pull.
    add_task(client, "job", "t2", "/bin/sh -c 'exit 0'", container_settings=settings())
    assert info_of(wait_task_completed(client, "job", "t2")).result == "success"
    assert fake_docker.commands()[4:] == ["image inspect", "run"]


def test_docker_mode_bind_mounts_and_image_working_directory(
    fake_docker: FakeDocker, docker_client: BatchClient
) -> None:
    client = docker_client
    make_pool(client, "cpool")
    make_job(
        client,
        "job",
        "cpool",
        job_preparation_task=bm.BatchJobPreparationTask(
            command_line="/bin/sh -c 'exit 0'", container_settings=settings()
        ),
    )
    mounts = [
        bm.ContainerHostBatchBindMountEntry(source="Task", is_read_only=False),
        bm.ContainerHostBatchBindMountEntry(source="JobPrep", is_read_only=True),
    ]
    add_task(
        client,
        "job",
        "t",
        "/bin/sh -c pwd",
        container_settings=settings(
            working_directory="containerImageDefault", container_host_batch_bind_mounts=mounts
        ),
    )
    assert info_of(wait_task_completed(client, "job", "t")).result == "success"
    prep_run, task_run = fake_docker.runs()
    assert prep_run["env"]["AZ_BATCH_TASK_ID"] == "jobpreparation"
    argv, values = task_run["argv"], task_run["env"]
    volumes = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-v"]
    task_dir, prep_dir = values["AZ_BATCH_TASK_DIR"], values["AZ_BATCH_JOB_PREP_DIR"]
    assert volumes == [f"{task_dir}:{task_dir}", f"{prep_dir}:{prep_dir}:ro"]
    assert "-w" not in argv
    assert stdout(client, "job", "t").strip() == "/"  # the image's own working directory


def test_docker_mode_pull_failure_is_container_invalid_image(
    fake_docker: FakeDocker, docker_client: BatchClient
) -> None:
    client = docker_client
    make_pool(client, "cpool")
    make_job(client, "job", "cpool")
    add_task(
        client,
        "job",
        "t",
        "/bin/sh -c 'exit 0'",
        container_settings=settings(image_name="missing/image"),
        constraints=bm.BatchTaskConstraints(max_task_retry_count=2),
    )
    info = info_of(wait_task_completed(client, "job", "t"))
    category, code, found = failure_of(info)
    assert (category, code) == ("usererror", "ContainerInvalidImage")
    assert info.failure_info is not None
    assert info.failure_info.message == "One or more container images specified are invalid"
    assert "pull access denied for missing/image" in found["Message"]
    assert (info.exit_code, info.retry_count, info.container_info) == (None, 0, None)
    assert fake_docker.runs() == []


def test_docker_mode_login_failure_hides_the_password(
    fake_docker: FakeDocker, docker_client: BatchClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = docker_client
    monkeypatch.setenv("FAKE_DOCKER_PASSWORD", "the-right-one")
    registry = bm.ContainerRegistryReference(
        username="puller", password=PASSWORD, registry_server=f"https://{REGISTRY}/"
    )
    make_pool(client, "cpool")
    make_job(client, "job", "cpool")
    add_task(
        client, "job", "t", "/bin/sh -c 'exit 0'", container_settings=settings(registry=registry)
    )
    info = info_of(wait_task_completed(client, "job", "t"))
    _, code, found = failure_of(info)
    assert code == "ContainerInvalidImage"
    assert "incorrect username or password" in found["Message"]
    assert PASSWORD not in json.dumps(client.get_task("job", "t").as_dict())
    [login] = fake_docker.logins()
    assert login["stdin"] == PASSWORD and login["argv"][-1] == f"https://{REGISTRY}/"
    assert fake_docker.runs() == []


def test_docker_mode_unknown_run_option_is_container_invalid_settings(
    fake_docker: FakeDocker, docker_client: BatchClient
) -> None:
    client = docker_client
    make_pool(client, "cpool")
    make_job(client, "job", "cpool")
    add_task(
        client,
        "job",
        "t",
        "/bin/sh -c 'exit 0'",
        container_settings=settings(container_run_options="--no-such-option"),
    )
    info = info_of(wait_task_completed(client, "job", "t"))
    category, code, found = failure_of(info)
    assert (category, code) == ("usererror", "ContainerInvalidSettings")
    assert found["Message"] == "docker: unknown flag: --no-such-option"
    assert (info.exit_code, info.container_info) == (None, None)


def test_docker_mode_unparsable_run_options_fail_before_the_runtime(
    fake_docker: FakeDocker, docker_client: BatchClient
) -> None:
    client = docker_client
    make_pool(client, "cpool")
    make_job(client, "job", "cpool")
    add_task(
        client,
        "job",
        "t",
        "/bin/sh -c 'exit 0'",
        container_settings=settings(container_run_options="--label 'unclosed"),
    )
    _, code, found = failure_of(info_of(wait_task_completed(client, "job", "t")))
    assert code == "ContainerInvalidSettings"
    assert "containerRunOptions" in found["Message"]
    assert fake_docker.calls() == []


def test_docker_mode_command_missing_in_the_image(
    fake_docker: FakeDocker, docker_client: BatchClient
) -> None:
    client = docker_client
    make_pool(client, "cpool")
    make_job(client, "job", "cpool")
    add_task(client, "job", "t", "no-such-program --flag", container_settings=settings())
    info = info_of(wait_task_completed(client, "job", "t"))
    assert info.exit_code == 127
    assert info.container_info is not None
    assert info.container_info.state == "created"
    assert 'exec: "no-such-program": executable file not found' in str(info.container_info.error)


def test_docker_mode_terminated_task_removes_its_container(
    fake_docker: FakeDocker, docker_client: BatchClient
) -> None:
    client = docker_client
    make_pool(client, "cpool")
    make_job(client, "job", "cpool")
    add_task(client, "job", "t", "/bin/sh -c 'sleep 60'", container_settings=settings())
    live = wait_for(
        lambda: (
            (info := client.get_task("job", "t").execution_info)
            and info.container_info
            and info.container_info
        )
    )
    assert live.state == "running"
    client.terminate_task("job", "t")
    done = info_of(wait_task_completed(client, "job", "t"))
    assert failure_of(done)[1] == "TaskEnded"
    [run] = fake_docker.runs()
    assert live.container_id == run["cid"]
    name = run["argv"][3]
    wait_for(lambda: ["rm", "--force", name] in [c["argv"] for c in fake_docker.calls()])


def test_registry_passwords_survive_a_restart(fake_docker: FakeDocker, tmp_path: Path) -> None:
    registry = bm.ContainerRegistryReference(
        username="puller", password=PASSWORD, registry_server=REGISTRY
    )
    data = tmp_path / "data"
    runtime = str(fake_docker.path)
    with (
        BatchEmulator(data_dir=data, container_runtime=runtime) as emu,
        BatchClient(emu.endpoint, emu.credential) as client,
    ):
        make_pool(client, "cpool", registries=[registry])
        make_job(client, "job", "cpool")
    with (
        BatchEmulator(data_dir=data, container_runtime=runtime) as emu,
        BatchClient(emu.endpoint, emu.credential) as client,
    ):
        add_task(client, "job", "t", "/bin/sh -c 'exit 0'", container_settings=settings())
        assert info_of(wait_task_completed(client, "job", "t")).result == "success"
    [login] = fake_docker.logins()  # with the password given before the restart
    assert login["stdin"] == PASSWORD


# --------------------------------------------------------------------------- choosing a runtime


def test_auto_without_a_daemon_runs_on_the_host_with_one_warning_per_pool(
    fake_docker: FakeDocker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="batchexecutor.emulator")
    with BatchEmulator(max_processes=4, container_runtime="auto") as emu:
        assert emu.container_runtime == "auto"
        with BatchClient(emu.endpoint, emu.credential) as client:
            for pool_id in ("p1", "p2"):
                make_pool(client, pool_id)
                make_job(client, f"job-{pool_id}", pool_id)
                for i in range(2):
                    add_task(
                        client,
                        f"job-{pool_id}",
                        f"t{i}",
                        "/bin/sh -c 'exit 0'",
                        container_settings=settings(),
                    )
                    task = wait_task_completed(client, f"job-{pool_id}", f"t{i}")
                    assert info_of(task).result == "success"
    assert fake_docker.commands() == ["info"]  # asked once, then never used
    warnings = [r.getMessage() for r in caplog.records if "no container runtime" in r.getMessage()]
    assert len(warnings) == 2
    assert warnings[0].startswith("pool p1:") and warnings[1].startswith("pool p2:")


def test_auto_with_a_daemon_uses_docker(
    fake_docker: FakeDocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BATCHEXECUTOR_CONTAINER_RUNTIME", raising=False)  # so: auto
    monkeypatch.setenv("FAKE_DOCKER_DAEMON", "1")
    with BatchEmulator(max_processes=4) as emu, BatchClient(emu.endpoint, emu.credential) as client:
        make_pool(client, "cpool")
        make_job(client, "job", "cpool")
        add_task(client, "job", "t", "/bin/sh -c 'exit 0'", container_settings=settings())
        assert info_of(wait_task_completed(client, "job", "t")).result == "success"
    assert fake_docker.commands() == ["info", "image inspect", "pull", "run"]
    assert fake_docker.runs()[0]["argv"][0:2] == ["run", "--rm"]


def test_runtime_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATCHEXECUTOR_CONTAINER_RUNTIME", raising=False)
    assert BatchEmulator().container_runtime == "auto"
    monkeypatch.setenv("BATCHEXECUTOR_CONTAINER_RUNTIME", "host")
    assert BatchEmulator().container_runtime == "host"
    assert BatchEmulator(container_runtime="auto").container_runtime == "auto"
    with pytest.raises(ValueError, match="no-such-container-cli"):
        BatchEmulator(container_runtime="no-such-container-cli")


# --------------------------------------------------------------------------- real docker


def _docker_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        return (
            subprocess.run(
                [docker, "info"], capture_output=True, timeout=15, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _docker_answers(), reason="no docker daemon answers `docker info`")
def test_real_docker_runs_a_container_task(tmp_path: Path) -> None:
    image = os.environ.get("BATCHEXECUTOR_TEST_IMAGE", "busybox:1.36")
    with (
        BatchEmulator(max_processes=2, container_runtime="docker") as emu,
        BatchClient(emu.endpoint, emu.credential) as client,
    ):
        make_pool(client, "cpool")
        make_job(client, "job", "cpool")
        add_task(
            client,
            "job",
            "t",
            "/bin/sh -c 'echo \"$GREETING\" > greeting.txt; cat /etc/hostname'",
            container_settings=settings(
                image_name=image,
                container_run_options="--user " + f"{os.getuid()}:{os.getgid()}",
            ),
            environment_settings=env(GREETING="from a container"),
        )
        task = wait_task_completed(client, "job", "t", timeout=300)
        info = info_of(task)
        assert info.result == "success", info.failure_info
        assert info.container_info is not None
        assert HEX64.match(str(info.container_info.container_id))
        greeting = b"".join(client.download_task_file("job", "t", "wd/greeting.txt"))
        assert greeting == b"from a container\n"
        # The container's hostname is its short ID: the command ran in it.
        assert stdout(client, "job", "t").strip() == str(info.container_info.container_id)[:12]
