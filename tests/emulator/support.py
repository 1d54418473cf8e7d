"""Helpers the emulator tests share: command lines, the task gate, error details."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

VM_SIZE = "standard_d2s_v3"

# Holds a task at the gate in $GATE_DIR until the test opens it (exits 3 if it never opens):
# the test sees exactly which tasks are running at once in <gate>/running/.
GATED = """
import os, pathlib, sys, time
gate = pathlib.Path(os.environ["GATE_DIR"])
me = gate / "running" / os.environ["AZ_BATCH_TASK_ID"]
me.touch()
deadline = time.monotonic() + 60
while not (gate / "open").exists():
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.01)
me.unlink()
"""


def python(script: str) -> str:
    """A command line running ``script`` with the python3 on the task's PATH (no shell)."""
    return f"python3 -c {shlex.quote(script)}"


def shell(script: str) -> str:
    """A command line running ``script`` through /bin/sh, as on a real node."""
    return f"/bin/sh -c {shlex.quote(script)}"


def env(**values: str) -> list[bm.EnvironmentSetting]:
    return [bm.EnvironmentSetting(name=k, value=v) for k, v in values.items()]


def details(error: HttpResponseError) -> dict[str, str]:
    """The ``values`` of a Batch error body (PropertyName, Reason, ...)."""
    assert error.error is not None
    return {str(d.code): str(d.message) for d in error.error.details}


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def make_gate(root: Path, name: str = "gate") -> Path:
    (root / name / "running").mkdir(parents=True)
    return root / name


def running(gate: Path) -> set[str]:
    """IDs of the gated tasks running now."""
    return {p.name for p in (gate / "running").iterdir()}


def open_gate(gate: Path) -> None:
    (gate / "open").touch()
