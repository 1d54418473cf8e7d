"""The local emulator daemon: one per home, shared by processes, outliving them."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm

from batchexecutor._daemon import (
    DaemonInfo,
    daemon_dir,
    ensure_daemon,
    running_daemon,
    stop_daemon,
)
from tests.conftest import wait_for


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    stop_daemon(tmp_path)


def client_for(info: DaemonInfo) -> BatchClient:
    return BatchClient(info.endpoint, info.credential)


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchexecutor", "emulator", *args, "--home-dir", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def stored_job_ids(home: Path) -> list[str]:
    """Job IDs the daemon has written to its SQLite store so far."""
    with sqlite3.connect(daemon_dir(home) / "data" / "state.sqlite3") as db:
        return [key for (key,) in db.execute("SELECT key FROM resources WHERE kind = 'job'")]


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A killed child of ours may linger as a zombie until reaped; it no longer serves.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" in status.read_text()


def test_second_use_finds_the_same_daemon(home: Path) -> None:
    first = ensure_daemon(home)
    second = ensure_daemon(home)
    assert (second.pid, second.endpoint) == (first.pid, first.endpoint)
    assert running_daemon(home) == first


def test_a_job_made_by_one_process_is_seen_by_another(home: Path) -> None:
    info = ensure_daemon(home)
    with client_for(info) as client:
        client.create_pool(bm.BatchPoolCreateOptions(id="shared", vm_size="standard_d2s_v3"))
    script = textwrap.dedent(f"""
        from pathlib import Path
        from azure.batch import BatchClient
        from batchexecutor._daemon import ensure_daemon
        info = ensure_daemon(Path({str(home)!r}))
        print(info.pid, [p.id for p in BatchClient(info.endpoint, info.credential).list_pools()])
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split(maxsplit=1)
    assert int(out[0]) == info.pid
    assert "shared" in out[1]


def test_processes_racing_to_start_get_one_daemon(home: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from batchexecutor._daemon import ensure_daemon;"
        " print(ensure_daemon(Path(sys.argv[1])).pid)"
    )
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(home)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    pids = {int(racer.communicate(timeout=60)[0]) for racer in racers}
    assert len(pids) == 1
    assert running_daemon(home) is not None and running_daemon(home).pid in pids  # type: ignore[union-attr]


def test_a_dead_daemon_is_replaced_and_its_jobs_survive(home: Path) -> None:
    info = ensure_daemon(home)
    with client_for(info) as client:
        client.create_pool(bm.BatchPoolCreateOptions(id="p", vm_size="standard_d2s_v3"))
        client.create_job(
            bm.BatchJobCreateOptions(id="survivor", pool_info=bm.BatchPoolInfo(pool_id="p"))
        )
    wait_for(lambda: stored_job_ids(home) == ["survivor"])  # the store writes behind
    os.kill(info.pid, signal.SIGKILL)
    wait_for(lambda: pid_gone(info.pid))
    assert running_daemon(home) is None
    again = ensure_daemon(home)
    assert again.pid != info.pid
    with client_for(again) as client:
        assert client.get_job("survivor").id == "survivor"


def test_stop_ends_the_daemon(home: Path) -> None:
    info = ensure_daemon(home)
    assert stop_daemon(home) is True
    wait_for(lambda: pid_gone(info.pid))
    assert running_daemon(home) is None
    assert stop_daemon(home) is False


def test_the_key_stays_in_the_private_state_file(home: Path) -> None:
    info = ensure_daemon(home)
    state = daemon_dir(home) / "state.json"
    assert state.stat().st_mode & 0o777 == 0o600
    assert json.loads(state.read_text())["accountKey"] == info.account_key
    assert info.account_key not in repr(info)
    for args in (("start",), ("status",), ("stop",), ("status",)):
        result = cli(home, *args)
        assert info.account_key not in result.stdout + result.stderr, args
    log = (daemon_dir(home) / "daemon.log").read_text()
    assert info.account_key not in log


def test_cli_start_status_stop(home: Path) -> None:
    assert cli(home, "status").returncode == 1
    started = cli(home, "start")
    assert started.returncode == 0, started.stderr
    info = running_daemon(home)
    assert info is not None and info.endpoint in started.stdout
    status = cli(home, "status")
    assert status.returncode == 0 and str(info.pid) in status.stdout
    stopped = cli(home, "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    wait_for(lambda: pid_gone(info.pid))
    assert cli(home, "status").returncode == 1
