"""The local emulator daemon behind ``AzureBatchExecutor.local()``.

One emulator per home directory serves every process that uses that home, and outlives
them, so a job submitted by one process can be collected by another::

    <home>/emulator/state.json     endpoint, account, key, pid (mode 0600: it holds the key)
    <home>/emulator/daemon.lock    taken while a daemon is started or stopped
    <home>/emulator/data/          the emulator's data_dir (jobs, tasks, task files)
    <home>/emulator/daemon.log     the daemon's output

``ensure_daemon(home)`` returns the running daemon's coordinates, starting it first if the
state file is missing, stale (dead process) or the service does not answer. Start-up is
serialised by an exclusive lock on ``daemon.lock``, so two processes racing to start
one get the same daemon. ``stop_daemon(home)`` ends it. The key is only ever in the state
file; nothing here prints or logs it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from azure.core.credentials import AzureNamedKeyCredential

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class DaemonError(RuntimeError):
    """The local emulator daemon could not be started, reached or stopped."""


@dataclass(frozen=True)
class DaemonInfo:
    endpoint: str
    account_name: str
    account_key: str
    pid: int
    data_dir: Path

    @property
    def credential(self) -> AzureNamedKeyCredential:
        return AzureNamedKeyCredential(self.account_name, self.account_key)

    def __repr__(self) -> str:  # never show the key
        return f"DaemonInfo(endpoint={self.endpoint!r}, pid={self.pid})"


def daemon_dir(home: Path) -> Path:
    return home / "emulator"


def ensure_daemon(home: Path, *, max_processes: int | None = None) -> DaemonInfo:
    """The daemon serving ``home``, started now if none is running."""
    folder = daemon_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        info = _read_state(folder)
        if info is not None and _alive(info):
            return info
        return _start(folder, max_processes)


def running_daemon(home: Path) -> DaemonInfo | None:
    """The daemon serving ``home`` if one is running; never starts one."""
    info = _read_state(daemon_dir(home))
    return info if info is not None and _alive(info) else None


def stop_daemon(home: Path) -> bool:
    """Stop the daemon serving ``home``; ``False`` if none was running."""
    folder = daemon_dir(home)
    if not folder.exists():
        return False
    with _locked(folder):
        info = _read_state(folder)
        if info is None or not _pid_alive(info.pid):
            _state_path(folder).unlink(missing_ok=True)
            return False
        os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _pid_alive(info.pid):
            if time.monotonic() > deadline:
                os.kill(info.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        _state_path(folder).unlink(missing_ok=True)
        return True


def serve(folder: Path, max_processes: int | None) -> int:
    """Daemon side (``python -m batchexecutor emulator serve``): run until SIGTERM."""
    import threading

    from .emulator import BatchEmulator

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emulator = BatchEmulator(max_processes=max_processes, data_dir=folder / "data")
    emulator.start()
    try:
        state = {
            "endpoint": emulator.endpoint,
            "accountName": emulator.account_name,
            "accountKey": emulator.account_key,
            "pid": os.getpid(),
            "dataDir": str(folder / "data"),
        }
        _write_private(_state_path(folder), json.dumps(state))
        stop.wait()
    finally:
        emulator.stop()
    return 0


# -- internals -------------------------------------------------------------------------


def _start(folder: Path, max_processes: int | None) -> DaemonInfo:
    state = _state_path(folder)
    state.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "batchexecutor",
        "emulator",
        "serve",
        "--home-dir",
        str(folder),
    ]
    if max_processes is not None:
        command += ["--max-processes", str(max_processes)]
    # Double fork: a short-lived launcher starts the daemon in its own session and exits,
    # so the daemon is never a child of a client (no zombie, nothing tied to its exit).
    launcher = (
        "import subprocess, sys\n"
        "log = open(sys.argv[1], 'ab')\n"
        "p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log,"
        " start_new_session=True, close_fds=True)\n"
        "print(p.pid)\n"
    )
    started = subprocess.run(
        [sys.executable, "-c", launcher, str(folder / "daemon.log"), *command],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )
    if started.returncode != 0 or not started.stdout.strip().isdigit():
        raise DaemonError(f"could not launch the local Azure Batch emulator: {started.stderr}")
    pid = int(started.stdout)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and _pid_alive(pid):
        info = _read_state(folder)
        if info is not None and info.pid == pid and _alive(info):
            return info
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    tail = (folder / "daemon.log").read_text(errors="replace")[-2000:]
    raise DaemonError(
        f"the local Azure Batch emulator did not start within {START_TIMEOUT:.0f} s; "
        f"its log ({folder / 'daemon.log'}) ends with:\n{tail}"
    )


def _state_path(folder: Path) -> Path:
    return folder / "state.json"


def _read_state(folder: Path) -> DaemonInfo | None:
    try:
        raw = json.loads(_state_path(folder).read_text())
        return DaemonInfo(
            endpoint=str(raw["endpoint"]),
            account_name=str(raw["accountName"]),
            account_key=str(raw["accountKey"]),
            pid=int(raw["pid"]),
            data_dir=Path(raw["dataDir"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(info: DaemonInfo) -> bool:
    """The process lives and its service answers an authenticated request."""
    if not _pid_alive(info.pid):
        return False
    from azure.batch import BatchClient

    client = BatchClient(
        info.endpoint, info.credential, retry_total=0, connection_timeout=2, read_timeout=5
    )
    try:
        next(iter(client.list_pools(max_results=1, select=["id"])), None)
    except Exception:  # any failure means "not usable": a new daemon is started
        return False
    finally:
        client.close()
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # An exited process that nobody has reaped yet (a zombie) no longer serves.
    with contextlib.suppress(OSError):
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    return True


def _write_private(path: Path, text: str) -> None:
    """Write atomically, readable by the owner only (the file holds the account key)."""
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temp, path)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / "daemon.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
