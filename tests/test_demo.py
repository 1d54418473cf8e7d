"""README's first command: ``python -m batchexecutor demo`` runs a real job locally."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from batchexecutor._daemon import running_daemon, stop_daemon


def test_demo_runs_a_real_job_on_the_local_daemon(tmp_path: Path) -> None:
    env = {**os.environ, "BATCHEXECUTOR_HOME": str(tmp_path)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "batchexecutor", "demo", "--tasks", "3"],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        job = re.search(
            r"^job (bx-map-\S+): 30 items in 3 chunk tasks \+ 1 combine task", done.stdout, re.M
        )
        assert job, done.stdout
        assert "tasks: 4 succeeded, 0 failed" in done.stdout
        estimate = re.search(r"pi ~= (\d\.\d+) from 1,500,000 darts", done.stdout)
        assert estimate and abs(float(estimate.group(1)) - 3.14159) < 0.01, done.stdout
        assert running_daemon(tmp_path) is not None  # the daemon outlives the demo
    finally:
        stop_daemon(tmp_path)


def test_demo_azure_runs_on_the_configured_account_and_pool(tmp_path: Path) -> None:
    """``demo --azure`` with the environment's configuration: here the emulator (in this
    process) and a directory store, on an existing pool; the job preparation task
    installs the client's build, so the nodes need nothing of this environment."""
    from azure.batch import BatchClient
    from azure.batch import models as bm

    from batchexecutor.emulator import BatchEmulator
    from tests.conftest import wait_for

    with BatchEmulator(max_processes=4) as emulator:
        client = BatchClient(emulator.endpoint, emulator.credential)
        client.create_pool(
            bm.BatchPoolCreateOptions(
                id="demo-pool",
                vm_size="standard_d2s_v3",
                target_dedicated_nodes=1,
                task_slots_per_node=4,
            )
        )
        wait_for(lambda: client.get_pool("demo-pool").allocation_state == "steady")
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AZURE_", "BATCHEXECUTOR_", "PYTHONPATH"))
        }
        env.update(
            AZURE_BATCH_ENDPOINT=emulator.endpoint,
            AZURE_BATCH_ACCOUNT=emulator.account_name,
            AZURE_BATCH_ACCESS_KEY=emulator.account_key,
            BATCHEXECUTOR_STORAGE_DIR=str(tmp_path / "store"),
            XDG_CONFIG_HOME=str(tmp_path),
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "batchexecutor",
                "demo",
                "--azure",
                "--tasks",
                "2",
                "--pool",
                "demo-pool",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert re.search(r"^job bx-map-\S+: 20 items in 2 chunk tasks", done.stdout, re.M)
        assert "(Azure Batch, pool demo-pool)" in done.stdout
        assert "tasks: 3 succeeded, 0 failed" in done.stdout
        assert re.search(r"pi ~= 3\.1\d+ from 1,000,000 darts", done.stdout), done.stdout
        assert emulator.account_key not in done.stdout + done.stderr
        # The job was deleted; its preparation task had installed the client's build.
        assert not list(client.list_jobs())
        client.close()


def test_demo_azure_without_configuration_says_what_to_set(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AZURE_", "BATCHEXECUTOR_"))
    }
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "batchexecutor", "demo", "--azure"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "AZURE_BATCH_ENDPOINT" in done.stderr and "Traceback" not in done.stderr
