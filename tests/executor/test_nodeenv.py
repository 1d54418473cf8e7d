"""The node environment: the client's build shipped to a job's storage, the job
preparation task that checks the node's Python and installs the build, and the tasks
that then run it (see :mod:`batchexecutor._nodeenv`).

The preparation script is run here directly (as a node would run it) for its outcomes,
and end to end on the emulator, where the job preparation task is a real process on this
machine: tasks must import batchexecutor and cloudpickle from the job's copy, and a node
whose Python differs from the client's must fail the job's futures, naming both
versions, before any task runs.
"""

from __future__ import annotations

import glob
import io
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from azure.batch import BatchClient

from batchexecutor import AzureBatchExecutor, NodeEnvironmentError
from batchexecutor._nodeenv import (
    EXIT_DEPENDENCY,
    EXIT_VERSION,
    PREPARE,
    SITE_DIR,
    NodeLauncher,
    client_build,
    preparation_failure,
)
from batchexecutor._storage import LocalStore
from tests.conftest import wait_for

CLIENT_PYTHON = "{}.{}".format(*sys.version_info[:2])


def run_prepare(
    tmp_path: Path,
    *arguments: str,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the preparation script as a node runs it, in ``tmp_path/wd``."""
    workdir = tmp_path / "wd"
    workdir.mkdir(exist_ok=True)
    bootstrap = "import os; exec(compile(os.environ['BATCHEXECUTOR_PREPARE'], 'prepare', 'exec'))"
    environment = {**(env or os.environ), "BATCHEXECUTOR_PREPARE": PREPARE}
    return subprocess.run(
        [python, "-c", bootstrap, *arguments],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def build_file(tmp_path: Path) -> Path:
    path = tmp_path / "build.zip"
    path.write_bytes(client_build().data)
    return path


def other_python(tmp_path: Path) -> tuple[str, str]:
    """An interpreter whose minor version differs from this one's, and that version:
    one installed beside this one (pyenv, python3.X on PATH), else this interpreter
    made to report Python 3.99 (a ``sitecustomize`` on its path)."""
    candidates = sorted(
        glob.glob(
            os.path.expanduser(os.environ.get("PYENV_ROOT", "~/.pyenv"))
            + "/versions/3.*/bin/python3"
        )
    )
    candidates += [found for m in range(8, 15) if (found := shutil.which(f"python3.{m}"))]
    for candidate in candidates:
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        version = probe.stdout.strip()
        if probe.returncode == 0 and version and version != CLIENT_PYTHON:
            return candidate, version
    fake = tmp_path / "fake-python"
    (fake / "lib").mkdir(parents=True)
    (fake / "lib" / "sitecustomize.py").write_text(
        "import sys\nsys.version_info = (3, 99, 0, 'final', 0)\n"
    )
    script = fake / "python"
    script.write_text(
        f'#!/bin/sh\nPYTHONPATH="{fake / "lib"}${{PYTHONPATH:+:$PYTHONPATH}}" '
        f'exec {sys.executable} "$@"\n'
    )
    script.chmod(0o755)
    return str(script), "3.99"


# --------------------------------------------------------------------------- the build


def test_the_build_holds_the_clients_own_packages_and_is_named_by_content() -> None:
    import cloudpickle

    import batchexecutor

    build = client_build()
    assert client_build() is build  # computed once per process
    with zipfile.ZipFile(io.BytesIO(build.data)) as archive:
        names = set(archive.namelist())
        worker = archive.read("batchexecutor/worker.py")
    assert "batchexecutor/worker.py" in names and "batchexecutor/py.typed" in names
    assert "cloudpickle/__init__.py" in names
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    # Only the packages' own files: no tool caches or hidden files of a checkout.
    assert not any(part.startswith(".") for name in names for part in name.split("/"))
    assert worker == Path(batchexecutor.__file__).with_name("worker.py").read_bytes()
    # cloudpickle is this process's exact copy (its version travels with it).
    shipped = {n for n in names if n.startswith("cloudpickle/")}
    local = Path(cloudpickle.__file__).parent
    assert shipped == {
        "cloudpickle/" + p.relative_to(local).as_posix()
        for p in local.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert build.name.startswith("client.builds/batchexecutor-") and build.digest in build.name


def test_the_build_is_stored_once_per_store(tmp_path: Path) -> None:
    writes: list[str] = []

    class CountingStore(LocalStore):
        def put(self, name: str, data: bytes, *, overwrite: bool = True) -> None:
            writes.append(name)
            super().put(name, data, overwrite=overwrite)

    store = CountingStore(tmp_path)
    build = client_build()
    assert build.ensure_stored(store) == build.name
    assert build.ensure_stored(store) == build.name
    assert writes == [build.name]
    assert store.get(build.name) == build.data


def test_task_command_lines() -> None:
    plain = NodeLauncher("python3").command(["run", "--job", "J"])
    assert plain == "python3 -m batchexecutor.worker run --job J"
    shipped = NodeLauncher("/opt/venv/bin/python", install_client=True).command(["run"])
    assert shipped.startswith("/bin/sh -c ")
    assert "$AZ_BATCH_JOB_PREP_WORKING_DIR/batchexecutor-site" in shipped
    assert "exec /opt/venv/bin/python -m batchexecutor.worker run" in shipped
    assert NodeLauncher("python3").preparation("n", "/store") is None


# --------------------------------------------------------------------------- the script


def test_prepare_installs_the_build_for_a_directory_store(tmp_path: Path) -> None:
    done = run_prepare(tmp_path, CLIENT_PYTHON, str(build_file(tmp_path)), "directory")
    assert done.returncode == 0, done.stderr
    site = tmp_path / "wd" / SITE_DIR
    assert (site / "batchexecutor" / "worker.py").is_file()
    assert (site / "cloudpickle" / "__init__.py").is_file()
    assert "installed the client's build" in done.stdout
    # A rerun (a node rebooted) starts from a clean copy.
    (site / "batchexecutor" / "stale.py").write_text("")
    again = run_prepare(tmp_path, CLIENT_PYTHON, str(build_file(tmp_path)), "directory")
    assert again.returncode == 0 and not (site / "batchexecutor" / "stale.py").exists()


def test_prepare_refuses_another_python_naming_both_versions(tmp_path: Path) -> None:
    done = run_prepare(tmp_path, "3.0", str(build_file(tmp_path)), "directory")
    assert done.returncode == EXIT_VERSION
    assert "the client runs Python 3.0" in done.stderr
    assert f"is Python {CLIENT_PYTHON}" in done.stderr
    assert not (tmp_path / "wd" / SITE_DIR).exists()  # nothing installed


def test_prepare_on_an_old_interpreter_still_names_both_versions(tmp_path: Path) -> None:
    python, version = other_python(tmp_path)
    done = run_prepare(
        tmp_path, CLIENT_PYTHON, str(build_file(tmp_path)), "directory", python=python
    )
    assert done.returncode == EXIT_VERSION, done.stderr
    assert f"the client runs Python {CLIENT_PYTHON}" in done.stderr
    assert f"is Python {version}" in done.stderr


def test_prepare_without_the_blob_sdk_or_pip_says_what_to_install(tmp_path: Path) -> None:
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = run_prepare(
        tmp_path,
        CLIENT_PYTHON,
        str(build_file(tmp_path)),
        "blob",
        "azure-storage-blob==12.0.0@azure.storage.blob",
        "tenacity==9.0.0@tenacity",
        python=str(venv / "bin" / "python"),
        env=env,
    )
    assert done.returncode == EXIT_DEPENDENCY, done.stderr
    assert "lacks azure-storage-blob==12.0.0, tenacity==9.0.0" in done.stderr
    assert "add 'azure-storage-blob', 'tenacity' to the pool's packages" in done.stderr


# --------------------------------------------------------------------------- end to end


def where_imported(x: int) -> tuple[int, str, str]:
    import cloudpickle

    import batchexecutor

    return x * x, batchexecutor.__file__ or "", cloudpickle.__file__ or ""


def test_tasks_run_the_shipped_build(
    make_executor: Callable[..., AzureBatchExecutor], batch_client: BatchClient, stack: str
) -> None:
    ex = make_executor(max_workers=2, install_client=True)
    results = list(ex.map(where_imported, range(5), chunksize=2))
    assert [r[0] for r in results] == [x * x for x in range(5)]
    for _, package, pickler in results:
        assert f"jobpreparation/wd/{SITE_DIR}/batchexecutor/" in package
        assert f"jobpreparation/wd/{SITE_DIR}/cloudpickle/" in pickler
    assert (
        ex.submit(where_imported, 3).result()[1].endswith(f"{SITE_DIR}/batchexecutor/__init__.py")
    )
    job = batch_client.get_job(ex.submit_job_id)
    prep = job.job_preparation_task
    assert prep is not None and prep.wait_for_success
    if stack == "azurite":  # Batch downloads the build from the job's container
        (resource,) = prep.resource_files or []
        assert resource.http_url and client_build().name in resource.http_url
        assert "sig=" in resource.http_url  # a SAS, for the node (never shown to users)
    else:  # a directory store: the nodes read it from this file system
        assert not prep.resource_files
        assert client_build().name.split("/")[-1] in prep.command_line


def test_a_node_with_another_python_fails_the_job_before_any_task_runs(
    make_executor: Callable[..., AzureBatchExecutor],
    batch_client: BatchClient,
    tmp_path: Path,
) -> None:
    python, version = other_python(tmp_path)
    # No PYTHONPATH of this interpreter's (its standard library would break another).
    ex = make_executor(python=python, install_client=True, node_environment={})
    future = ex.map_async(abs, [-1, -2, -3])
    with pytest.raises(NodeEnvironmentError) as raised:
        future.result(timeout=60)
    error = raised.value
    assert f"the client runs Python {CLIENT_PYTHON}" in str(error)
    assert f"is Python {version}" in str(error)
    assert error.exit_code == EXIT_VERSION and error.job_id == future.job_id
    # No task ran, and the job was terminated (its tasks would otherwise wait for ever).
    job = wait_for(
        lambda: (j := batch_client.get_job(future.job_id)).state == "completed" and j, timeout=30
    )
    assert job.execution_info.termination_reason == "NodeEnvironment"
    counts = batch_client.get_job_task_counts(future.job_id).task_counts
    assert counts.running == 0 and counts.succeeded == 0 and counts.failed == 0
    # submit() futures learn it too, and so do later ones.
    with pytest.raises(NodeEnvironmentError, match=f"is Python {version}"):
        ex.submit(abs, -1).result(timeout=60)
    with pytest.raises(NodeEnvironmentError):
        ex.submit(abs, -2).result(timeout=60)


def test_a_failing_preparation_names_the_node_and_its_stderr(
    make_executor: Callable[..., AzureBatchExecutor], tmp_path: Path
) -> None:
    broken = tmp_path / "broken-python"
    broken.write_text("#!/bin/sh\necho 'no interpreter here' >&2\nexit 3\n")
    broken.chmod(0o755)
    ex = make_executor(python=str(broken), install_client=True)
    with pytest.raises(NodeEnvironmentError) as raised:
        ex.map_async(abs, [1]).result(timeout=60)
    error = raised.value
    assert error.exit_code == 3
    assert "no interpreter here" in error.stderr and "no interpreter here" in str(error)
    assert "job preparation task failed on node" in str(error)


def test_the_error_pickles(tmp_path: Path) -> None:
    import pickle

    error = NodeEnvironmentError("m", job_id="j", node_id="n", exit_code=65, stderr="s")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.job_id, copy.node_id, copy.exit_code, copy.stderr, str(copy)) == (
        "j",
        "n",
        65,
        "s",
        "m",
    )


class _Statuses:
    """A stand-in BatchClient answering the preparation status list and the node files."""

    def __init__(self, *nodes: tuple[str, str | None, int | None]) -> None:
        # (node, state: running/completed, exit code); stderr says why for completed ones
        self.nodes = nodes

    def list_job_preparation_and_release_task_status(self, job_id: str) -> list[Any]:
        from azure.batch import models as bm

        statuses = []
        for node, state, code in self.nodes:
            info = bm.BatchJobPreparationTaskExecutionInfo(
                start_time=datetime(2026, 1, 1, tzinfo=timezone.utc),
                state=state,
                task_root_directory=f"workitems/{job_id}/job-1/jobpreparation",
                retry_count=0,
                exit_code=code,
                result=None if state == "running" else ("success" if code == 0 else "failure"),
            )
            statuses.append(
                bm.BatchJobPreparationAndReleaseTaskStatus(
                    pool_id="p", node_id=node, job_preparation_task_execution_info=info
                )
            )
        return statuses

    def get_node_file_properties(self, pool_id: str, node_id: str, path: str) -> Any:
        return SimpleNamespace(content_length=len(self._stderr(node_id)))

    def download_node_file(self, pool_id: str, node_id: str, path: str, **kwargs: Any) -> Any:
        return iter([self._stderr(node_id)])

    def _stderr(self, node_id: str) -> bytes:
        return f"batchexecutor: it failed on {node_id}\n".encode()


@pytest.mark.parametrize(
    ("nodes", "failing"),
    [
        ([("n1", "running", None)], None),
        ([("n1", "completed", 0)], None),
        # Failed on one node while it still runs, or succeeded, on another: tasks may run.
        ([("n1", "completed", 1), ("n2", "running", None)], None),
        ([("n1", "completed", 1), ("n2", "completed", 0)], None),
        # Failed everywhere it ran: nothing can run.
        ([("n1", "completed", 1), ("n2", "completed", 3)], "n1"),
        # Another Python on one node: every node of a pool runs the same image.
        ([("n1", "completed", 0), ("n2", "completed", EXIT_VERSION)], "n2"),
    ],
)
def test_when_a_failed_preparation_fails_the_job(
    nodes: list[tuple[str, str, int | None]], failing: str | None
) -> None:
    failure = preparation_failure(_Statuses(*nodes), "job", deadline=5.0)  # type: ignore[arg-type]
    if failing is None:
        assert failure is None
    else:
        assert failure is not None and failure.node_id == failing
        assert f"it failed on {failing}" in str(failure)
