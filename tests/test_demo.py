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
