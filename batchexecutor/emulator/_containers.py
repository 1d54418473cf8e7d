"""Container tasks: which tasks run in a container, and how the emulator runs them.

What Batch specifies (2025-06-01: ``BatchTaskContainerSettings``,
``BatchContainerConfiguration``, ``VirtualMachineConfiguration.containerConfiguration``):

* A pool with ``containerConfiguration`` is set up to run containers; "all regular Tasks and
  Job manager Tasks run on this Pool must specify the containerSettings property, and all other
  Tasks [start, job preparation and release tasks] may specify it". A task on a pool without
  one "must not" set it.
* A container task's image is pulled (``:latest`` when no tag is given), with the credentials
  of the task's ``registry`` or, failing that, of the pool's ``containerRegistries``. "All
  directories recursively below the AZ_BATCH_NODE_ROOT_DIR are mapped into the container, all
  Task environment variables are mapped into the container, and the Task command line is
  executed in the container"; ``containerHostBatchBindMounts`` narrows the directories (an
  empty list mounts none); ``workingDirectory`` is the task working directory
  (``taskWorkingDirectory``, the default) or the image's own (``containerImageDefault``);
  ``containerRunOptions`` are extra ``docker create`` options.
* The task's ``containerInfo`` (``BatchTaskContainerExecutionInfo``) carries the container's
  ID, its Docker state ("equivalent to the status field returned by docker inspect") and
  Docker's error.

When the pairing rule is broken is not something the spec can check when a task is added:
"the Pool that will run this Task" is known only once the task is scheduled (a job may name
a pool that does not exist yet, and a job's pool can be changed). Like Batch's node agent,
the emulator therefore checks on the node, before the task's resource files are downloaded,
and fails the task with a pre-processing error (``usererror``, not retried):

* ``ContainerTaskSettingsNotFound`` "Container-enabled compute node requires task container
  settings": a regular task without ``containerSettings`` on a container pool (the code and
  message container-pool users get from Batch);
* ``ContainerInvalidSettings`` "At least one value of specified task container settings is
  invalid": ``containerSettings`` (of any task) on a pool without ``containerConfiguration``,
  ``containerRunOptions`` that do not parse, or a container the runtime cannot create;
* ``ContainerInvalidImage`` "One or more container images specified are invalid": an image
  that cannot be pulled (missing, no access, a failed registry login).

Runtimes (``BatchEmulator(container_runtime=...)``):

* a docker-compatible CLI (``"docker"``, ``"podman"`` or a path to one): the image is checked
  (``image inspect``) and pulled when missing, after a ``login --password-stdin`` when the
  registry has credentials (kept in the emulator's own ``--config`` directory, never in the
  user's); then ``run --rm`` executes the command line. Batch's directories are bind-mounted
  at the same paths as on the host (as on a Linux node), variables go in with ``-e NAME`` (the
  values travel in the CLI's environment, so none is on a command line; only a task's value
  for a variable the CLI itself reads, such as HOME, goes in as ``-e NAME=VALUE``), the
  working directory with ``-w``, the run options last. Stopping a task removes its container.
* ``"host"``: the command line runs directly on the host, as if the image were the host (the
  image is recorded, not pulled), with the same variables and directories. ``containerInfo``
  then describes that stand-in: a made-up 64-hex ID, ``running``, ``exited``.
* ``"auto"`` (the default; or the ``BATCHEXECUTOR_CONTAINER_RUNTIME`` variable): ``docker``
  when ``docker info`` answers, checked at the first container task, else ``"host"`` with one
  logged warning per pool.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_log = logging.getLogger("batchexecutor.emulator")

Wire = dict[str, Any]

AUTO = "auto"
HOST = "host"
#: Chooses the runtime of an emulator constructed without ``container_runtime``.
ENV_VARIABLE = "BATCHEXECUTOR_CONTAINER_RUNTIME"
#: How long ``docker info`` may take to say whether a daemon answers (auto mode).
PROBE_TIMEOUT = 15.0

#: Batch's task failure codes and messages for container tasks (see the module docstring).
INVALID_IMAGE = ("ContainerInvalidImage", "One or more container images specified are invalid")
INVALID_SETTINGS = (
    "ContainerInvalidSettings",
    "At least one value of specified task container settings is invalid",
)
SETTINGS_NOT_FOUND = (
    "ContainerTaskSettingsNotFound",
    "Container-enabled compute node requires task container settings",
)

#: Docker Hub's names for itself.
_DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
#: Variables the CLI itself reads (its config, image store, helpers): a task's value for one
#: of these goes in as ``-e NAME=VALUE``, and the CLI keeps the emulator's own.
_CLI_VARIABLES = re.compile(r"^(HOME|PATH|TMPDIR|XDG_[A-Z_]+|DOCKER_[A-Z_]+|CONTAINERS_[A-Z_]+)$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CONTAINER_ID = re.compile(r"^[0-9a-f]{12,64}$")


class ContainerError(Exception):
    """A container task that cannot run: becomes the task's ``failureInfo``."""

    def __init__(self, kind: tuple[str, str], reason: str) -> None:
        super().__init__(f"{kind[0]}: {reason}")
        self.code, self.message = kind
        self.reason = reason

    def failure_info(self) -> Wire:
        """A pre-processing failure (``usererror``), its reason as Batch's ``Message`` detail."""
        return {
            "category": "usererror",
            "code": self.code,
            "message": self.message,
            "details": [{"name": "Message", "value": self.reason}],
        }


# --------------------------------------------------------------------------- the rules


def pool_containers(pool_wire: Wire) -> Wire | None:
    """The pool's ``containerConfiguration`` (None: the pool does not run containers)."""
    config = pool_wire.get("virtualMachineConfiguration") or {}
    found = config.get("containerConfiguration") if isinstance(config, dict) else None
    return found if isinstance(found, dict) else None


def placement_error(
    pool_wire: Wire, settings: Wire | None, *, regular: bool
) -> ContainerError | None:
    """The spec's pairing of task ``containerSettings`` and pool ``containerConfiguration``,
    checked where Batch checks it: on the node, when the task is about to run.

    ``regular``: a job's task (must be a container task on a container pool); start and job
    preparation tasks may run on a container pool's host.
    """
    enabled = pool_containers(pool_wire) is not None
    if settings is not None and not enabled:
        return ContainerError(
            INVALID_SETTINGS,
            f"The task has containerSettings, but pool {pool_wire.get('id')} has no "
            "virtualMachineConfiguration.containerConfiguration, so its nodes run no containers.",
        )
    if settings is None and enabled and regular:
        return ContainerError(
            SETTINGS_NOT_FOUND,
            f"Pool {pool_wire.get('id')} has a containerConfiguration: its tasks must set "
            "containerSettings.",
        )
    return None


def data_paths(env: Mapping[str, str]) -> dict[str, str]:
    """``ContainerHostDataPath`` -> the host directory it names, from the task's variables."""
    root = Path(env["AZ_BATCH_NODE_ROOT_DIR"])
    paths = {
        "Shared": env["AZ_BATCH_NODE_SHARED_DIR"],
        "Startup": env["AZ_BATCH_NODE_STARTUP_DIR"],
        "VfsMounts": env["AZ_BATCH_NODE_MOUNTS_DIR"],
        "Task": env["AZ_BATCH_TASK_DIR"],
        "Applications": str(root / "applications"),
    }
    if "AZ_BATCH_JOB_PREP_DIR" in env:
        paths["JobPrep"] = env["AZ_BATCH_JOB_PREP_DIR"]
    return paths


def bind_mounts(settings: Wire, env: Mapping[str, str]) -> list[tuple[str, bool]]:
    """``(host path, read-only)`` of each directory the container gets, at the same path.

    No ``containerHostBatchBindMounts``: the whole AZ_BATCH_NODE_ROOT_DIR, read-write. A list:
    its sources in order, once each (read-only if any entry for it says so; a ``JobPrep``
    entry of a job without a preparation task mounts nothing). An empty list: nothing.
    """
    entries = settings.get("containerHostBatchBindMounts")
    if entries is None:
        return [(env["AZ_BATCH_NODE_ROOT_DIR"], False)]
    paths = data_paths(env)
    mounts: dict[str, bool] = {}
    for entry in entries:
        path = paths.get(str(entry.get("source")))
        if path is not None:
            mounts[path] = mounts.get(path, False) or bool(entry.get("isReadOnly", False))
    return list(mounts.items())


def docker_run_argv(
    cli: str,
    *,
    name: str,
    cidfile: Path,
    image: str,
    mounts: Sequence[tuple[str, bool]],
    env: Sequence[str],
    workdir: str | None,
    run_options: Sequence[str],
    command: Sequence[str],
) -> list[str]:
    """The ``docker run`` command line of a container task. ``env`` entries are ``NAME``
    (the value is read from the CLI's own environment, so it is on no command line) or,
    for the few variables that configure the CLI itself, ``NAME=VALUE``."""
    argv = [cli, "run", "--rm", "--name", name, "--cidfile", str(cidfile)]
    for path, read_only in mounts:
        argv += ["-v", f"{path}:{path}:ro" if read_only else f"{path}:{path}"]
    for entry in env:
        argv += ["-e", entry]
    if workdir is not None:
        argv += ["-w", workdir]
    argv += run_options
    argv.append(image)
    argv += command
    return argv


def registry_host(image: str) -> str:
    """The registry an image reference pulls from (Docker's rule; ``docker.io`` by default)."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return normalise_server(first)
    return "docker.io"


def normalise_server(server: str | None) -> str:
    """A ``registryServer`` as a host name: scheme, path and Docker Hub's aliases dropped."""
    if not server:
        return "docker.io"
    host = _SCHEME.sub("", server.strip()).split("/", 1)[0].lower()
    return "docker.io" if host in _DOCKER_HUB else host


@dataclass(frozen=True)
class Credentials:
    """A registry login: the server as given (None: Docker Hub), a user name, a password."""

    server: str | None
    username: str
    password: str = field(repr=False)


def pick_credentials(
    image: str, registries: Sequence[tuple[Wire, str | None]]
) -> Credentials | None:
    """The first registry (the task's, then the pool's) that serves the image's registry and
    has a user name and a password. ``identityReference`` logins are not available locally."""
    host = registry_host(image)
    for registry, password in registries:
        server = registry.get("registryServer")
        username = registry.get("username")
        if normalise_server(server) == host and username and password:
            return Credentials(server or None, str(username), password)
    return None


# --------------------------------------------------------------------------- the runtime


def check_setting(setting: str | None) -> str:
    """The runtime setting to use: ``auto``, ``host`` or a CLI found on PATH (ValueError if
    not). None reads ``$BATCHEXECUTOR_CONTAINER_RUNTIME`` (default ``auto``)."""
    value = setting if setting is not None else os.environ.get(ENV_VARIABLE) or AUTO
    if value in (AUTO, HOST):
        return value
    if not value or shutil.which(value) is None:
        raise ValueError(
            f"container_runtime {value!r}: no such command; give 'auto', 'host', or a "
            "docker-compatible CLI (docker, podman, or a path to one)"
        )
    return value


@dataclass
class Launch:
    """One container task attempt, ready to start: its process and what describes it."""

    argv: list[str]
    cwd: Path | None
    env: dict[str, str] = field(repr=False)  # the task's variables: secrets, possibly
    runtime: ContainerRuntime = field(repr=False)
    name: str = ""
    #: the CLI running the container; None on the host
    cli: str | None = None
    cidfile: Path | None = None
    container_id: str | None = None

    def started(self, proc: subprocess.Popen[bytes]) -> Wire | None:
        """The container's ``containerInfo`` once it exists (None if it never did)."""
        if self.cli is None:
            digest = hashlib.sha256(f"{self.name}/{time.time_ns()}".encode()).hexdigest()
            self.container_id = digest
            return {"containerId": digest, "state": "running"}
        assert self.cidfile is not None
        while proc.poll() is None:
            self.container_id = _read_cid(self.cidfile)
            if self.container_id:
                return {"containerId": self.container_id, "state": "running"}
            time.sleep(0.02)
        self.container_id = _read_cid(self.cidfile)
        return None

    def finished(self, exit_code: int, stderr: Path) -> tuple[Wire | None, ContainerError | None]:
        """``containerInfo`` after the process ended, and a failure to create the container."""
        if self.cidfile is not None:
            self.container_id = self.container_id or _read_cid(self.cidfile)
            with contextlib.suppress(OSError):
                self.cidfile.unlink()
        if self.container_id is None:
            if self.cli is not None and exit_code == 125:  # the CLI's own "could not create"
                reason = _last_line(stderr) or "The runtime could not create the container."
                return None, ContainerError(INVALID_SETTINGS, reason)
            return None, None
        info: Wire = {"containerId": self.container_id, "state": "exited"}
        if self.cli is not None and exit_code in (125, 126, 127):
            line = _last_line(stderr)
            if line.startswith(("docker: ", "Error: ")):  # the runtime could not start it
                info.update(state="created", error=line.split(": ", 1)[1])
        return info, None

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """Stopping the CLI does not stop its container: remove the container too."""
        if self.cli is not None:
            self.runtime.remove_after(proc, self.cli, self.name)


class ContainerRuntime:
    """Runs container tasks with a docker-compatible CLI, or on the host (see module doc)."""

    def __init__(self, setting: str, state_dir: Path) -> None:
        self.setting = check_setting(setting)
        self._state_dir = state_dir
        self._lock = threading.Lock()
        self._probed = False
        self._auto_cli: str | None = None
        self._warned: set[str] = set()
        self._logins: set[tuple[str, str | None, str, str]] = set()
        self._pulls: dict[str, threading.Lock] = {}
        self._cleanups: set[threading.Thread] = set()

    # -- which runtime ---------------------------------------------------------------

    def cli_for(self, pool_id: str) -> str | None:
        """The CLI that runs this pool's container tasks, or None: on the host."""
        if self.setting == HOST:
            return None
        if self.setting != AUTO:
            return shutil.which(self.setting) or self.setting
        with self._lock:
            if not self._probed:
                self._auto_cli = _probe_docker()
                self._probed = True
                if self._auto_cli is not None:
                    _log.info("container tasks run with %s", self._auto_cli)
            if self._auto_cli is None and pool_id.lower() not in self._warned:
                self._warned.add(pool_id.lower())
                _log.warning(
                    "pool %s: no container runtime answers (docker info failed), so its "
                    "container tasks run directly on this host, as if their image were the "
                    "host (container_runtime='host')",
                    pool_id,
                )
            return self._auto_cli

    # -- preparing an attempt --------------------------------------------------------

    def prepare(
        self,
        settings: Wire,
        command: list[str],
        *,
        pool_id: str,
        name: str,
        host_env: dict[str, str],
        batch_env: dict[str, str],
        registries: Sequence[tuple[Wire, str | None]],
        stop: Callable[[], bool],
    ) -> Launch:
        """Everything before the container starts (pull, login); raises ContainerError."""
        image = str(settings.get("imageName") or "")
        if not image.strip():
            raise ContainerError(INVALID_IMAGE, "The imageName is empty.")
        try:
            options = shlex.split(str(settings.get("containerRunOptions") or ""))
        except ValueError as error:
            raise ContainerError(
                INVALID_SETTINGS, f"containerRunOptions do not parse: {error}"
            ) from None
        image_default = settings.get("workingDirectory") == "containerImageDefault"
        workdir = batch_env["AZ_BATCH_TASK_WORKING_DIR"]
        cli = self.cli_for(pool_id)
        if cli is None:
            if not command:
                raise ContainerError(
                    INVALID_SETTINGS,
                    "An empty command line runs the image's entrypoint, which a container "
                    "task run on the host (container_runtime='host') does not have.",
                )
            # The image's default working directory, as Docker's default WORKDIR: /.
            return Launch(command, Path("/" if image_default else workdir), host_env, self, name)
        self._ensure_image(cli, image, pick_credentials(image, registries), stop)
        cidfile = self._state_dir / "cid" / f"{name}.cid"
        cidfile.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            cidfile.unlink()
        mounts = bind_mounts(settings, batch_env)
        for path, _ in mounts:  # made here: the daemon would make them, owned by root
            Path(path).mkdir(parents=True, exist_ok=True)
        inline = {k for k in batch_env if _CLI_VARIABLES.match(k)}
        argv = docker_run_argv(
            cli,
            name=name,
            cidfile=cidfile,
            image=image,
            mounts=mounts,
            env=[f"{k}={v}" if k in inline else k for k, v in batch_env.items()],
            workdir=None if image_default else workdir,
            run_options=options,
            command=command,
        )
        cli_env = {k: v for k, v in batch_env.items() if k not in inline}
        return Launch(argv, None, {**os.environ, **cli_env}, self, name, cli, cidfile)

    def _ensure_image(
        self, cli: str, image: str, credentials: Credentials | None, stop: Callable[[], bool]
    ) -> None:
        """The image is there, or pulled now (``:latest`` without a tag, as docker pull)."""
        with self._lock:
            gate = self._pulls.setdefault(image, threading.Lock())
        with gate:  # one pull per image at a time; the others then find it
            code, _ = _tool([cli, "image", "inspect", "--format", "{{.Id}}", image], stop)
            if code == 0:
                return
            config: list[str] = []
            if credentials is not None:
                config = ["--config", str(self._login(cli, credentials, stop))]
            code, err = _tool([cli, *config, "pull", image], stop)
            if code != 0:
                secret = credentials.password if credentials else None
                raise ContainerError(
                    INVALID_IMAGE, f"Pulling {image} failed: {_scrub(err, secret) or code}"
                )

    def _login(self, cli: str, credentials: Credentials, stop: Callable[[], bool]) -> Path:
        """Log in once per registry and credentials, into the emulator's own config."""
        config = self._state_dir / "docker-config"
        config.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = (
            cli,
            credentials.server,
            credentials.username,
            hashlib.sha256(credentials.password.encode()).hexdigest(),
        )
        with self._lock:
            if key in self._logins:
                return config
        argv = [cli, "--config", str(config), "login", "--username", credentials.username]
        argv.append("--password-stdin")
        if credentials.server:
            argv.append(credentials.server)
        code, err = _tool(argv, stop, stdin=credentials.password.encode())
        if code != 0:
            raise ContainerError(
                INVALID_IMAGE,
                f"Logging in to {credentials.server or 'docker.io'} as {credentials.username} "
                f"failed: {_scrub(err, credentials.password) or code}",
            )
        with self._lock:
            self._logins.add(key)
        return config

    # -- stopping --------------------------------------------------------------------

    def remove_after(self, proc: subprocess.Popen[bytes], cli: str, name: str) -> None:
        """Once the (killed) CLI process is gone, force-remove its container."""

        def remove() -> None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                proc.wait(timeout=30)
                subprocess.run(
                    [cli, "rm", "--force", name],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=60,
                    check=False,
                )
            with self._lock:
                self._cleanups.discard(thread)

        thread = threading.Thread(target=remove, name="batch-emulator-container-rm", daemon=True)
        with self._lock:
            self._cleanups.add(thread)
        thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Wait for containers being removed (the emulator is stopping)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            pending = list(self._cleanups)
        for thread in pending:
            thread.join(max(0.0, deadline - time.monotonic()))


def container_name(node_id: str, task_id: str) -> str:
    """A unique, valid and readable container name for one attempt."""
    digest = hashlib.sha256(f"{node_id}/{task_id}/{time.time_ns()}".encode()).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", task_id)[:48]
    return f"batch-{safe}-{digest}"


def _probe_docker() -> str | None:
    """``docker`` when its daemon answers ``docker info``, else None."""
    cli = shutil.which("docker")
    if cli is None:
        return None
    try:
        done = subprocess.run(
            [cli, "info", "--format", "{{.ServerVersion}}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return cli if done.returncode == 0 else None


def _tool(argv: list[str], stop: Callable[[], bool], stdin: bytes | None = None) -> tuple[int, str]:
    """Run a CLI command to its end (killed when ``stop()`` turns true): exit code, stderr."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as error:
        return 127, str(error)
    pending = stdin  # given once: a later communicate() goes on writing it
    while True:
        try:
            _, err = proc.communicate(pending, timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            pending = None
            if stop():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, err.decode(errors="replace").strip()


def _read_cid(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text if _CONTAINER_ID.match(text) else None


def _last_line(path: Path) -> str:
    """The last non-empty line of a (stderr) file: the CLI's own error, when it failed."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text
