"""The command line, run as a real subprocess (``python -m batchexecutor ...``).

Two stacks: ``local`` (``--local``: the emulator daemon of a temporary home, found through
``BATCHEXECUTOR_HOME`` or ``--home``) and ``env`` (the session's emulator configured by
environment variables, with a local directory store). Jobs are made in this process with
the executor; the CLI manages them. Every run is checked for secrets (the account key
never appears) and for Python tracebacks (errors are one message and an exit code).
"""

from __future__ import annotations

import ast
import json
import os
import pty
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from azure.batch import BatchClient
from azure.batch import models as bm

from batchexecutor import AzureBatchExecutor, BatchConfig
from batchexecutor._cli import (
    EXIT_FAILED,
    EXIT_FOREIGN,
    EXIT_INCOMPLETE,
    EXIT_NOT_DONE,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
)
from batchexecutor._context import local_python_path
from batchexecutor._daemon import running_daemon, stop_daemon
from batchexecutor.emulator import BatchEmulator
from tests.conftest import wait_for
from tests.executor.conftest import POOL, batch_service  # noqa: F401 (a fixture)
from tests.executor.workloads import Gate, die_on_three, explode_on_negative, gated_square

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 120.0
TRACEBACK = "Traceback (most recent call last)"
SUBCOMMANDS = ("jobs", "job", "result", "logs", "terminate", "delete", "emulator", "demo")


def clean_environment(**extra: str) -> dict[str, str]:
    """This environment without any Azure or batchexecutor setting, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AZURE_", "BATCHEXECUTOR_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run(
    args: list[str],
    env: dict[str, str],
    *,
    secrets: list[str] = [],  # noqa: B006 (never mutated)
    stdin: int | None = subprocess.DEVNULL,
    traceback: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``batchexecutor ARGS``; no secret in its output, nor a traceback unless allowed."""
    done = subprocess.run(
        [sys.executable, "-m", "batchexecutor", *args],
        cwd=REPO,
        env=env,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    for secret in secrets:
        assert secret not in done.stdout and secret not in done.stderr, args
    if not traceback:
        assert TRACEBACK not in done.stderr, done.stderr
    assert "batchexecutor/_" not in done.stderr, done.stderr  # no frame of ours, ever
    return done


@dataclass
class Stack:
    """Where the CLI finds the jobs, and an executor here for the same jobs."""

    name: str
    env: dict[str, str]
    where: list[str]
    executor: AzureBatchExecutor
    sdk: BatchClient
    secrets: list[str] = field(default_factory=list)

    def cli(self, *args: str, **options: Any) -> subprocess.CompletedProcess[str]:
        return run([*args, *self.where], self.env, secrets=self.secrets, **options)

    def foreign_job(self, **metadata: str) -> str:
        """A job made with the SDK alone (``metadata`` as batchexecutor.* items)."""
        job_id = f"sdk-{uuid.uuid4().hex[:12]}"
        items = [
            bm.BatchMetadataItem(name=f"batchexecutor.{k}", value=v) for k, v in metadata.items()
        ]
        pool = POOL if self.name == "env" else "local"
        self.sdk.create_job(
            bm.BatchJobCreateOptions(
                id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool), metadata=items or None
            )
        )
        return job_id


@pytest.fixture(scope="module")
def local_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("cli-home")
    yield home
    stop_daemon(home)


@contextmanager
def open_stack(
    kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    if kind == "local":
        home: Path = request.getfixturevalue("local_home")
        executor = AzureBatchExecutor.local(home=home, max_workers=4, progress=False)
        daemon = running_daemon(home)
        assert daemon is not None
        env = clean_environment(BATCHEXECUTOR_HOME=str(home))
        sdk = BatchClient(daemon.endpoint, daemon.credential)
        found = Stack("local", env, ["--local"], executor, sdk, [daemon.account_key])
    else:
        service: BatchEmulator = request.getfixturevalue("batch_service")
        env = clean_environment(
            AZURE_BATCH_ENDPOINT=service.endpoint,
            AZURE_BATCH_ACCOUNT=service.account_name,
            AZURE_BATCH_ACCESS_KEY=service.account_key,
            BATCHEXECUTOR_STORAGE_DIR=str(tmp_path_factory.mktemp("cli-store")),
            BATCHEXECUTOR_POOL_ID=POOL,
            BATCHEXECUTOR_POLL_INTERVAL_MIN="0.05",
            BATCHEXECUTOR_POLL_INTERVAL_MAX="0.2",
        )
        executor = AzureBatchExecutor(
            BatchConfig.from_env(env),
            max_workers=4,
            node_environment={"PYTHONPATH": local_python_path()},
            progress=False,
        )
        sdk = BatchClient(service.endpoint, service.credential)
        found = Stack("env", env, [], executor, sdk, [service.account_key])
    try:
        yield found
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        sdk.close()


@pytest.fixture(params=["local", "env"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with open_stack(str(request.param), request, tmp_path_factory) as found:
        yield found


@pytest.fixture
def local_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with open_stack("local", request, tmp_path_factory) as found:
        yield found


# --------------------------------------------------------------------------- help, config


def test_help_everywhere() -> None:
    env = clean_environment()
    top = run(["--help"], env)
    assert top.returncode == 0
    for command in SUBCOMMANDS:
        assert command in top.stdout
    assert "AZURE_BATCH_ENDPOINT" in top.stdout and "exit codes:" in top.stdout
    for command in SUBCOMMANDS:
        shown = run([command, "--help"], env)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith(f"usage: batchexecutor {command}")
    assert "--local" in run(["jobs", "--help"], env).stdout
    assert "--yes" in run(["delete", "--help"], env).stdout
    assert "--errors" in run(["result", "--help"], env).stdout
    missing = run([], env)
    assert missing.returncode == EXIT_USAGE and "usage:" in missing.stderr
    assert run(["job"], env).returncode == EXIT_USAGE  # JOB_ID is required
    version = run(["--version"], env)
    assert version.returncode == 0 and version.stdout.startswith("batchexecutor ")


def test_no_configuration_says_what_to_set(tmp_path: Path) -> None:
    env = clean_environment(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    for args in (["jobs"], ["job", "bx-x"], ["result", "bx-x"], ["delete", "bx-x", "--yes"]):
        done = run(args, env)
        assert done.returncode == EXIT_USAGE, done
        assert done.stdout == ""
        assert "not configured" in done.stderr
        assert "AZURE_BATCH_ENDPOINT" in done.stderr and "--local" in done.stderr
    incomplete = clean_environment(AZURE_BATCH_ENDPOINT="https://acct.westeurope.batch.azure.com")
    done = run(["jobs"], incomplete)
    assert done.returncode == EXIT_USAGE and "AZURE_STORAGE_CONNECTION_STRING" in done.stderr


def test_no_local_daemon_is_started_to_list_jobs(tmp_path: Path) -> None:
    home = tmp_path / "no-daemon"
    for env, args in (
        (clean_environment(BATCHEXECUTOR_HOME=str(home)), ["jobs", "--local"]),
        (clean_environment(BATCHEXECUTOR_HOME=str(home)), ["--local", "jobs", "--json"]),
        (clean_environment(), ["job", "bx-x", "--home", str(home)]),
    ):
        done = run(args, env)
        assert done.returncode == EXIT_FAILED
        assert "no local daemon is running" in done.stderr and str(home) in done.stderr
        assert done.stdout == ""
    assert running_daemon(home) is None
    assert not (home / "emulator").exists()


# --------------------------------------------------------------------------- jobs, job


def test_jobs_and_job(stack: Stack, tmp_path: Path) -> None:
    executor = stack.executor
    finished = executor.map_async(
        explode_on_negative, [0, -1, 2], chunksize=2, combine=False, errors="return"
    )
    finished.result(timeout=TIMEOUT)
    wait_for(lambda: executor.get_job(finished.job_id).state == "completed", timeout=TIMEOUT)
    empty = stack.foreign_job()
    gate = Gate(tmp_path / "gate")
    running = executor.map_async(gated_square, [str(gate.path)] * 2, range(2))
    try:
        table = stack.cli("jobs")
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split() == ["Id", "State", "Status", "FailedTasks", "TotalTasks"]
        rows = {line.split()[1]: line.split()[2:] for line in lines[1:]}
        assert rows[finished.job_id] == ["completed", "100", "%", "1", "2"]
        assert rows[empty] == ["active", "No", "tasks", "in", "the", "job", "0", "0"]
        assert rows[running.job_id][0] == "active"

        listed = json.loads(stack.cli("jobs", "--json").stdout)
        by_id = {job["id"]: job for job in listed}
        assert by_id[finished.job_id]["status"] == "100 %"
        assert by_id[finished.job_id]["failed_tasks"] == 1
        assert by_id[finished.job_id]["kind"] == "map"
        assert by_id[empty]["status"] == "No tasks in the job"
        assert by_id[empty]["kind"] is None

        completed = json.loads(stack.cli("jobs", "--state", "completed", "--json").stdout)
        assert finished.job_id in {job["id"] for job in completed}
        assert not {empty, running.job_id} & {job["id"] for job in completed}
        active = json.loads(stack.cli("jobs", "--state", "active", "--json").stdout)
        assert {empty, running.job_id} <= {job["id"] for job in active}
        bad = stack.cli("jobs", "--state", "finished")
        assert bad.returncode == EXIT_USAGE and "unknown job state 'finished'" in bad.stderr

        shown = stack.cli("job", finished.job_id)
        assert shown.returncode == 0, shown.stderr
        text = shown.stdout.splitlines()
        assert text[0] == f"job {finished.job_id} (completed)"
        for line in (
            "    chunkSize: 2",
            "    enableCloudCombine: FALSE",
            "    errors: return",
            "    items: 3",
            "    completed: 2",
            "        failed: 1",
            "    total: 2",
        ):
            assert line in text, shown.stdout
        data = json.loads(stack.cli("job", finished.job_id, "--json").stdout)
        assert data["id"] == finished.job_id and data["state"] == "completed"
        assert data["metadata"]["chunksize"] == "2" and data["submitted"] is True
        assert data["tasks"]["total"] == 2 and data["tasks"]["failed"] == 1
        foreign = stack.cli("job", empty)
        assert foreign.returncode == 0 and "(not a batchexecutor job)" in foreign.stdout
        for args, code, words in (
            (["job", "no-such-job"], EXIT_NOT_FOUND, "no job 'no-such-job'"),
            (["job", "not a job id"], EXIT_USAGE, "invalid job ID"),
        ):
            done = stack.cli(*args)
            assert done.returncode == code and words in done.stderr, done
            assert done.stdout == ""
    finally:
        gate.open()
    running.result(timeout=TIMEOUT)


def test_home_option_and_local_before_the_command(local_stack: Stack, local_home: Path) -> None:
    stack = local_stack
    future = stack.executor.map_async(explode_on_negative, [1, 2])
    assert future.result(timeout=TIMEOUT) == [10, 20]
    env = clean_environment()  # no BATCHEXECUTOR_HOME: --home says where
    by_home = run(["job", future.job_id, "--home", str(local_home)], env, secrets=stack.secrets)
    assert by_home.returncode == 0 and f"job {future.job_id}" in by_home.stdout
    before = run(["--local", "job", future.job_id, "--json"], stack.env, secrets=stack.secrets)
    assert json.loads(before.stdout)["id"] == future.job_id


# --------------------------------------------------------------------------- result


def test_result(stack: Stack, tmp_path: Path) -> None:
    executor = stack.executor
    ok = executor.map_async(explode_on_negative, [1, 2, 3], chunksize=2)
    failing = executor.map_async(explode_on_negative, [1, -2, 3], combine=False)
    assert ok.result(timeout=TIMEOUT) == [10, 20, 30]
    failing.exception(timeout=TIMEOUT)

    printed = stack.cli("result", ok.job_id)
    assert printed.returncode == 0, printed.stderr
    assert ast.literal_eval(printed.stdout) == [10, 20, 30]
    output = tmp_path / "result.pickle"
    saved = stack.cli("result", ok.job_id, "-o", str(output))
    assert saved.returncode == 0 and saved.stdout == ""
    assert str(output) in saved.stderr
    assert cloudpickle.loads(output.read_bytes()) == [10, 20, 30]

    raised = stack.cli("result", failing.job_id, traceback=True)  # the remote traceback
    assert raised.returncode == EXIT_FAILED
    assert "KeyError" in raised.stderr and "negative item -2" in raised.stderr
    assert "--errors return" in raised.stderr and raised.stdout == ""
    skipped = stack.cli("result", failing.job_id, "--errors", "skip")
    assert ast.literal_eval(skipped.stdout) == [10, 30]
    returned = stack.cli("result", failing.job_id, "--errors", "return")
    assert returned.stdout.startswith("[10, KeyError(") and returned.stdout.endswith(", 30]\n")
    kept = tmp_path / "with-errors.pickle"
    assert (
        stack.cli("result", failing.job_id, "--errors", "return", "-o", str(kept)).returncode == 0
    )
    values = cloudpickle.loads(kept.read_bytes())
    assert values[0::2] == [10, 30] and isinstance(values[1], KeyError)
    # A ValueError raised by the job's function is the job's failure, not a usage error.
    parsing = executor.map_async(int, ["1", "x"])
    parsing.exception(timeout=TIMEOUT)
    failed = stack.cli("result", parsing.job_id, traceback=True)
    assert failed.returncode == EXIT_FAILED
    assert "the job's function raised ValueError: invalid literal" in failed.stderr
    bad = stack.cli("result", ok.job_id, "--errors", "ignore")
    assert bad.returncode == EXIT_USAGE and "invalid choice" in bad.stderr


def test_result_errors(stack: Stack, tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    running = stack.executor.map_async(gated_square, [str(gate.path)], [3])
    try:
        busy = stack.cli("result", running.job_id)
        assert busy.returncode == EXIT_NOT_DONE and "is still running" in busy.stderr
        assert f"batchexecutor job {running.job_id}" in busy.stderr
    finally:
        gate.open()
    assert running.result(timeout=TIMEOUT) == [9]

    foreign = stack.foreign_job()
    done = stack.cli("result", foreign)
    assert done.returncode == EXIT_FOREIGN and "not created by batchexecutor" in done.stderr
    # A map job whose submitter died before adding any task: its metadata says "partial".
    cut_short = stack.foreign_job(kind="map", chunksize="1", submitted="partial")
    done = stack.cli("result", cut_short)
    assert done.returncode == EXIT_INCOMPLETE and "was cut short" in done.stderr
    assert "resume" in done.stderr and f"batchexecutor delete {cut_short}" in done.stderr
    done = stack.cli("result", "no-such-job")
    assert done.returncode == EXIT_NOT_FOUND and "no job 'no-such-job'" in done.stderr
    for job_id in (foreign, cut_short):
        stack.executor.delete_job(job_id)


# --------------------------------------------------------------------------- logs


def test_logs(stack: Stack) -> None:
    future = stack.executor.map_async(die_on_three, range(5), combine=False)
    future.exception(timeout=TIMEOUT)
    failed = stack.cli("logs", future.job_id)
    assert failed.returncode == 0, failed.stderr
    assert failed.stdout.startswith("task 3 (completed, exit code 3)")
    assert "dying on item 3" in failed.stdout and "--- stderr ---" in failed.stdout
    named = stack.cli("logs", future.job_id, "0")
    assert named.stdout.startswith("task 0 (completed, exit code 0)")
    assert f"chunk 0 of job {future.job_id}" in named.stdout
    data = json.loads(stack.cli("logs", future.job_id, "--json").stdout)
    assert [(log["task_id"], log["exit_code"]) for log in data] == [("3", 3)]
    assert "dying on item 3" in data[0]["stderr"]
    missing = stack.cli("logs", future.job_id, "nine")
    assert missing.returncode == EXIT_NOT_FOUND and "has no task 'nine'" in missing.stderr

    clean = stack.executor.map_async(die_on_three, [1])
    clean.result(timeout=TIMEOUT)
    quiet = stack.cli("logs", clean.job_id)
    assert quiet.returncode == 0 and "has no failed tasks" in quiet.stdout


# --------------------------------------------------------------------------- terminate, delete


def test_terminate(stack: Stack, tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    future = stack.executor.map_async(gated_square, [str(gate.path)] * 2, range(2))
    try:
        wait_for(lambda: gate.started(0), timeout=TIMEOUT)
        done = stack.cli("terminate", future.job_id)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"terminated job {future.job_id}")
        wait_for(
            lambda: stack.executor.get_job(future.job_id).state == "completed", timeout=TIMEOUT
        )
        again = stack.cli("terminate", future.job_id)
        assert again.returncode == 0 and "had already ended" in again.stdout
        # The result is readable, and says what happened to the terminated tasks.
        result = stack.cli("result", future.job_id)
        assert result.returncode == EXIT_FAILED and "terminated" in result.stderr
    finally:
        gate.open()
    unknown = stack.cli("terminate", "no-such-job")
    assert unknown.returncode == EXIT_NOT_FOUND


def answer_on_a_terminal(
    stack: Stack, job_id: str, answer: str
) -> subprocess.CompletedProcess[str]:
    """``delete JOB_ID`` with a terminal as stdin, answering ``answer`` to its question."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode() + b"\n")  # waits in the terminal's buffer
        return stack.cli("delete", job_id, stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)


def test_delete(stack: Stack) -> None:
    executor = stack.executor
    future = executor.map_async(explode_on_negative, [1, 2])
    future.result(timeout=TIMEOUT)
    store = executor._context.store
    assert store.list_names(f"{future.job_id}/")

    refused = stack.cli("delete", future.job_id)  # stdin is not a terminal
    assert refused.returncode == EXIT_USAGE and "--yes" in refused.stderr
    declined = answer_on_a_terminal(stack, future.job_id, "n")
    assert declined.returncode == EXIT_FAILED, declined
    assert f"delete job {future.job_id} (completed, 3 tasks)" in declined.stderr
    assert "was not deleted" in declined.stderr
    assert executor.get_job(future.job_id).state == "completed"

    confirmed = answer_on_a_terminal(stack, future.job_id, "y")
    assert confirmed.returncode == 0, confirmed
    assert confirmed.stdout == f"deleted job {future.job_id} and everything it stored\n"
    assert store.list_names(f"{future.job_id}/") == []

    other = executor.map_async(explode_on_negative, [3])
    other.result(timeout=TIMEOUT)
    done = stack.cli("delete", other.job_id, "--yes")
    assert done.returncode == 0 and "deleted job" in done.stdout
    assert store.list_names(f"{other.job_id}/") == []
    again = stack.cli("delete", other.job_id, "--yes")
    assert again.returncode == EXIT_NOT_FOUND and f"no job '{other.job_id}'" in again.stderr
    bad = stack.cli("delete", "../etc", "--yes")
    assert bad.returncode == EXIT_USAGE and "invalid job ID" in bad.stderr


# --------------------------------------------------------------------------- emulator, demo


def test_emulator_status_and_demo(tmp_path: Path) -> None:
    home = tmp_path / "demo-home"
    env = clean_environment(BATCHEXECUTOR_HOME=str(home))
    try:
        demo = run(["demo", "--tasks", "2"], env)
        assert demo.returncode == 0, demo.stderr
        assert "pi ~=" in demo.stdout
        daemon = running_daemon(home)
        assert daemon is not None
        status = run(["emulator", "status"], env, secrets=[daemon.account_key])
        assert status.returncode == 0 and daemon.endpoint in status.stdout
        for output in (demo.stdout, demo.stderr):
            assert daemon.account_key not in output
        listed = run(["jobs", "--local", "--json"], env, secrets=[daemon.account_key])
        assert [job["status"] for job in json.loads(listed.stdout)] == ["100 %"]
    finally:
        stop = run(["emulator", "stop"], env)
        assert stop.returncode == 0
    assert running_daemon(home) is None
