"""How tasks start on a node: the client's own build, installed by a job preparation task.

A node must run the very batchexecutor and cloudpickle the client runs (the outcome
format and cloudpickle's payloads are only guaranteed between equal versions) under the
same Python minor version, without batchexecutor being published anywhere. So::

    client                          store (once per build)          each node, once per job
    client_build(): a zip of the ─► client.builds/                  job preparation task
    batchexecutor and cloudpickle     batchexecutor-V-D.zip ──────►  (PREPARE, run by the
    packages this process imports                                    task interpreter)
    (pure Python, deterministic,   Blob store: a resource file        1. Python minor version
    named by its digest D)         (SAS URL) Batch downloads;            == the client's?
                                   directory store: its path             else exit 65
                                                                      2. unzip it into
                                                                         batchexecutor-site
                                                                      3. Blob store: import
                                                                         azure-storage-blob and
                                                                         tenacity, else pip
                                                                         install the client's
                                                                         versions into
                                                                         batchexecutor-deps;
                                                                         no pip: exit 66
                                                                      4. import the worker
                                                                         from there
    tasks:  /bin/sh -c 'PYTHONPATH=<prep dir>/batchexecutor-site:<prep dir>/batchexecutor-deps
            ${PYTHONPATH:+:$PYTHONPATH} exec <python> -m batchexecutor.worker ...'

Both directories are in the job preparation task's working directory
(``$AZ_BATCH_JOB_PREP_WORKING_DIR``, which Batch gives every task of the job), so each
job has its own copy, removed with the job; the packages of the pool's interpreter (its
``PoolSpec.packages``) stay importable after them. The preparation task waits for
success (``waitForSuccess``): no task of the job starts on a node where it failed. When
it fails, the poller, which asks for the preparation tasks' state when a job's queued
tasks stop moving, fails the job's futures with :class:`NodeEnvironmentError` (carrying
the node's stderr, e.g. ``the client runs Python 3.11, this node's python3 is Python
3.12``) and terminates the job, whose tasks would otherwise wait for ever.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import io
import os
import shlex
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from azure.batch import models as bm

from . import _names
from ._batch import read_node_file_tail, state_text
from ._errors import NodeEnvironmentError
from ._retry import call
from ._serialize import versions
from ._version import __version__

if TYPE_CHECKING:
    from azure.batch import BatchClient

    from ._storage import Store

__all__ = [
    "EXIT_DEPENDENCY",
    "EXIT_VERSION",
    "PREPARATION_TASK",
    "ClientBuild",
    "NodeLauncher",
    "client_build",
    "preparation_failure",
]

#: The job preparation task's ID (Batch's default).
PREPARATION_TASK: Final = "jobpreparation"
#: Its exit codes: the node's Python minor version differs from the client's; a
#: dependency of the worker is missing and cannot be installed.
EXIT_VERSION: Final = 65
EXIT_DEPENDENCY: Final = 66
#: Packages shipped to nodes: the ones whose versions must equal the client's.
SHIPPED: Final = ("batchexecutor", "cloudpickle")
#: The preparation script's environment setting.
SCRIPT_VARIABLE: Final = "BATCHEXECUTOR_PREPARE"
#: Names in the job preparation task's working directory.
BUILD_FILE: Final = "batchexecutor-build.zip"
SITE_DIR: Final = "batchexecutor-site"
DEPS_DIR: Final = "batchexecutor-deps"
_PREP_DIR = "$AZ_BATCH_JOB_PREP_WORKING_DIR"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so equal sources make equal bytes and digests

# Runs under the *node's* interpreter, whatever its version: old syntax only (no
# f-strings), so that a Python 3.5 still prints the mismatch instead of a SyntaxError.
PREPARE: Final = r"""
import os, shutil, subprocess, sys, zipfile
want, build, store = sys.argv[1:4]
needed = [spec.split("@") for spec in sys.argv[4:]]  # distribution==version@module
have = "%d.%d" % sys.version_info[:2]
if have != want:
    sys.stderr.write(
        "batchexecutor: Python version mismatch: the client runs Python %s, this node's "
        "%s is Python %s; cloudpickle payloads do not cross Python minor versions. Run "
        "the client on Python %s, or give the pool a Python %s interpreter (an image or "
        "container image with it, or the executor's python=...)\n"
        % (want, sys.executable, have, have, want)
    )
    sys.exit(65)
site = os.path.abspath("batchexecutor-site")
deps = os.path.abspath("batchexecutor-deps")
shutil.rmtree(site, ignore_errors=True)  # a rerun (after a reboot) starts clean
with zipfile.ZipFile(build) as archive:
    archive.extractall(site)
missing = []
for requirement, module in needed:
    try:
        __import__(module)
    except ImportError:
        missing.append(requirement)
if missing:
    advice = (
        "add %s to the pool's packages (PoolSpec(packages=[...])) or use an image that "
        "has them" % ", ".join(repr(r.split("==")[0]) for r in missing)
    )
    if subprocess.call([sys.executable, "-m", "pip", "--version"]) != 0:
        sys.stderr.write(
            "batchexecutor: this node's %s lacks %s, which the worker needs to reach the "
            "store, and has no pip to install them: %s\n"
            % (sys.executable, ", ".join(missing), advice)
        )
        sys.exit(66)
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
               "--no-input", "--target", deps] + missing
    if subprocess.call(command) != 0:
        sys.stderr.write(
            "batchexecutor: could not install %s for this node's %s (see pip's output "
            "above): %s\n" % (", ".join(missing), sys.executable, advice)
        )
        sys.exit(66)
# Import what the tasks will import, from where they will (their PYTHONPATH).
sys.path[:0] = [site, deps]
for name in [m for m in sys.modules if m.split(".")[0] in ("azure", "cloudpickle")]:
    del sys.modules[name]
import importlib
importlib.invalidate_caches()
try:
    import batchexecutor.worker, batchexecutor._storage, cloudpickle
    for requirement, module in needed:
        __import__(module)
except Exception as error:
    sys.stderr.write("batchexecutor: the worker does not import on this node: %r\n" % error)
    sys.exit(66)
print("batchexecutor: installed the client's build into " + site)
"""


@dataclass(frozen=True)
class ClientBuild:
    """The zip of the client's :data:`SHIPPED` packages, and its name in a store."""

    data: bytes
    digest: str

    @property
    def name(self) -> str:
        return _names.client_build(__version__, self.digest)

    def ensure_stored(self, store: Store) -> str:
        """Write the build to ``store`` unless it is there (one check; a write the first
        time); its name."""
        if not store.exists(self.name):
            store.put(self.name, self.data)
        return self.name


def _package_files(name: str) -> list[tuple[str, Path]]:
    """``(archive name, path)`` of every file of the importable package (or module)."""
    module = sys.modules.get(name) or __import__(name)
    origin = Path(module.__file__ or "")
    if origin.name != "__init__.py":  # a single-module distribution
        return [(origin.name, origin)]
    root = origin.parent
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if (
            path.is_dir()
            or "__pycache__" in relative.parts
            or any(part.startswith(".") for part in relative.parts)  # caches, editor files
            or path.suffix in (".pyc", ".pyo")
        ):
            continue
        files.append(((Path(name) / relative).as_posix(), path))
    return files


@functools.cache
def client_build() -> ClientBuild:
    """This process's build of :data:`SHIPPED` (computed once per process)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in SHIPPED:
            for arcname, path in _package_files(package):
                info = zipfile.ZipInfo(arcname, _ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, path.read_bytes())
    data = buffer.getvalue()
    return ClientBuild(data, hashlib.sha256(data).hexdigest()[:20])


#: What the worker imports besides the shipped packages to reach a Blob store:
#: distribution and module; the client's versions are installed when a node lacks them.
BLOB_REQUIREMENTS: Final = (("azure-storage-blob", "azure.storage.blob"), ("tenacity", "tenacity"))


@functools.cache
def node_requirements(blob: bool) -> tuple[str, ...]:
    """The preparation script's ``distribution==version@module`` arguments (read from the
    installed distributions once per process, not for every job)."""
    if not blob:
        return ()
    return tuple(
        f"{dist}=={importlib.metadata.version(dist)}@{module}" for dist, module in BLOB_REQUIREMENTS
    )


@dataclass(frozen=True)
class NodeLauncher:
    """How a node starts the worker: ``python`` (a command or path on the node, in
    ``container_image`` for a container pool), and whether the client's build is
    installed per job (``install_client``) or the node's own batchexecutor is used (local
    mode, where tasks run this very interpreter)."""

    python: str = "python3"
    install_client: bool = False
    container_image: str | None = None

    def container_settings(self) -> bm.BatchTaskContainerSettings | None:
        """Where tasks run with ``container_image`` (a container pool): in that image,
        in the task's working directory (Batch maps its directories into the container;
        the pool's registries serve the image)."""
        if self.container_image is None:
            return None
        return bm.BatchTaskContainerSettings(
            image_name=self.container_image,
            working_directory=bm.ContainerWorkingDirectory.TASK_WORKING_DIRECTORY,
        )

    def command(self, arguments: Sequence[str]) -> str:
        """The command line running ``python -m batchexecutor.worker <arguments>``."""
        worker = " ".join(
            [shlex.quote(self.python), "-m", "batchexecutor.worker", *map(shlex.quote, arguments)]
        )
        if not self.install_client:
            return worker
        path = f"{_PREP_DIR}/{SITE_DIR}:{_PREP_DIR}/{DEPS_DIR}${{PYTHONPATH:+:$PYTHONPATH}}"
        return "/bin/sh -c " + shlex.quote(f'PYTHONPATH="{path}" exec {worker}')

    def preparation(self, build_name: str, locator: str) -> bm.BatchJobPreparationTask | None:
        """The job preparation task installing the stored build ``build_name`` from the
        store at ``locator`` (a node locator: a container URL with a SAS, or a directory
        shared with the nodes), or ``None`` without ``install_client``."""
        if not self.install_client:
            return None
        base, _, query = locator.partition("?")
        blob = base.startswith(("https://", "http://"))
        if blob:
            source = BUILD_FILE
            resources = [
                bm.ResourceFile(http_url=f"{base}/{build_name}?{query}", file_path=BUILD_FILE)
            ]
        else:
            source = os.path.join(locator, *build_name.split("/"))
            resources = None
        arguments = [
            versions()["python"],
            source,
            "blob" if blob else "directory",
            *node_requirements(blob),
        ]
        bootstrap = f'import os; exec(compile(os.environ["{SCRIPT_VARIABLE}"], "prepare", "exec"))'
        command = " ".join(
            [shlex.quote(self.python), "-c", shlex.quote(bootstrap), *map(shlex.quote, arguments)]
        )
        return bm.BatchJobPreparationTask(
            id=PREPARATION_TASK,
            command_line=command,
            resource_files=resources,
            environment_settings=[bm.EnvironmentSetting(name=SCRIPT_VARIABLE, value=PREPARE)],
            # One retry: a download or pip install may fail for a moment.
            constraints=bm.BatchTaskConstraints(max_task_retry_count=1),
            container_settings=self.container_settings(),
            wait_for_success=True,
            rerun_on_node_reboot_after_success=True,
        )


def preparation_failure(
    client: BatchClient, job_id: str, *, deadline: float
) -> NodeEnvironmentError | None:
    """Why the job's tasks cannot run, if its preparation task failed (one request, plus
    two to read the failed node's stderr).

    A failure counts when the node's Python differs from the client's (every node of a
    pool runs one image), or when the task failed on every node that ran it: while it
    still runs on a node, or succeeded there, tasks may yet run.
    """
    statuses = call(
        f"list job preparation status of job {job_id!r}",
        lambda: list(client.list_job_preparation_and_release_task_status(job_id)),
        deadline=deadline,
    )
    failed = []
    hopeful = False  # a node where it succeeded, or still runs
    for status in statuses:
        info = status.job_preparation_task_execution_info
        if info is None or state_text(info.state) != "completed":
            hopeful = True  # still running there
        elif state_text(info.result) == "success":  # tasks run there
            hopeful = True
        else:
            failed.append((status, info))
    versions = [item for item in failed if item[1].exit_code == EXIT_VERSION]
    if not (versions or (failed and not hopeful)):
        return None
    status, info = (versions or failed)[0]
    node_id = str(status.node_id)
    stderr = read_node_file_tail(
        client,
        str(status.pool_id),
        node_id,
        f"{info.task_root_directory or ''}/stderr.txt".lstrip("/"),
        deadline=deadline,
    )
    lines = [line for line in stderr.splitlines() if line.startswith("batchexecutor: ")]
    if lines:
        reason = lines[-1].removeprefix("batchexecutor: ")
    elif info.failure_info is not None:
        reason = f"{info.failure_info.code}: {info.failure_info.message}"
    else:
        reason = f"exit code {info.exit_code}"
    message = (
        f"the nodes of pool {status.pool_id!r} cannot run job {job_id!r}: its job "
        f"preparation task failed on node {node_id} before any task ran: {reason}"
    )
    if stderr.strip() and not lines:
        tail = "\n".join("    " + line for line in stderr.rstrip().splitlines()[-20:])
        message += f"\n  its stderr (the end):\n{tail}"
    return NodeEnvironmentError(
        message, job_id=job_id, node_id=node_id, exit_code=info.exit_code, stderr=stderr
    )
