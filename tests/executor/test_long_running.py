"""Crash safety of long-running jobs, with real processes.

A child process (a small script run with ``sys.executable``) submits a ``map_async`` job,
prints its ID and is killed with SIGKILL: (a) while the job's tasks run, (b) while it is
still adding tasks. This process then attaches to the job by ID and gets every result
exactly once; for (b) ``attach`` says the submission was cut short and ``resume`` with
the same function and items completes it. Both in local mode (the emulator daemon of a
temporary home) and with an explicit configuration in the environment (the session's
emulator and Azurite). Also: a JobFuture travels to another process, pickled and as
JSON, and is followed there through the local daemon; neither form holds a secret.
"""

from __future__ import annotations

import json
import os
import pickle
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from batchexecutor import AzureBatchExecutor, BatchConfig, IncompleteJobError, JobNotFoundError
from batchexecutor._context import local_python_path
from batchexecutor._daemon import running_daemon, stop_daemon
from batchexecutor.emulator import BatchEmulator
from tests.conftest import wait_for
from tests.executor.conftest import POOL
from tests.executor.workloads import Gate, gated_square, identity
from tests.fixtures.azurite import Azurite

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 180.0
ITEMS = 8

#: The submitting process. argv: mode (local | env), scenario (running | submitting), the
#: gate directory, the number of items.
CHILD = textwrap.dedent(
    """
    import os
    import sys
    import time
    import uuid

    from batchexecutor import AzureBatchExecutor, BatchConfig, _mapjob
    from batchexecutor._context import local_python_path
    from tests.executor.workloads import gated_square, identity

    mode, scenario, gate, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if mode == "local":
        executor = AzureBatchExecutor.local(
            home=os.environ["BATCHEXECUTOR_HOME"], max_workers=4, progress=False
        )
    else:
        executor = AzureBatchExecutor(
            BatchConfig.from_env(),
            max_workers=4,
            node_environment={"PYTHONPATH": local_python_path()},
            progress=False,
        )

    if scenario == "running":
        future = executor.map_async(gated_square, [gate] * count, range(count))
        print(future.job_id, flush=True)
        future.result()  # the gate stays closed until this process is killed
    else:
        _mapjob.PACK_CHUNKS = 2  # tasks are added two chunks at a time

        def items():
            for item in range(count):
                if item >= 4:  # after the first chunks, the iterable is slow...
                    time.sleep(0.2)
                if item == count - 1:  # ... and never yields its last item
                    while True:
                        time.sleep(1)
                yield item

        job_id = "crash-" + uuid.uuid4().hex[:12]
        print(job_id, flush=True)
        executor.map_async(identity, items(), job_id=job_id)
    print("was not killed", flush=True)
    """
)

#: The receiving process of a JobFuture: argv: the pickle file, the JSON file.
RECEIVER = textwrap.dedent(
    """
    import json
    import pickle
    import sys
    from pathlib import Path

    from batchexecutor import JobFuture

    futures = [pickle.loads(Path(sys.argv[1]).read_bytes())]
    futures += [JobFuture.from_json(text) for text in Path(sys.argv[2]).read_text().splitlines()]
    print(json.dumps([f.detached for f in futures]), flush=True)
    if any(f.detached for f in futures):
        try:
            futures[0].result()
        except RuntimeError as error:
            print(json.dumps(str(error)), flush=True)
        sys.exit(0)
    print(json.dumps([f.result(timeout=180) for f in futures]), flush=True)
    """
)


def clean_environment(**extra: str) -> dict[str, str]:
    """This environment without any Azure or batchexecutor setting, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AZURE_", "BATCHEXECUTOR_"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


class Child:
    """A script in a child process whose stdout is read line by line, with timeouts."""

    def __init__(self, script: Path, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._stderr = open(log, "wb")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [sys.executable, str(script), *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()

    def _pump(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def line(self, timeout: float = TIMEOUT) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no output from the child within {timeout} s; {self.stderr()}")
        if line is None:
            pytest.fail(f"the child ended (exit code {self.process.wait()}); {self.stderr()}")
        return line

    def stderr(self) -> str:
        return "its stderr: " + self.log.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(timeout=TIMEOUT) == -signal.SIGKILL

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=TIMEOUT)
        self._stderr.close()


@dataclass
class Setup:
    """Where the child submits: its environment, and an executor for the same jobs here."""

    mode: str
    env: dict[str, str]
    executor: AzureBatchExecutor
    secrets: list[str]


@pytest.fixture(params=["local", "azurite"])
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, batch_service: BatchEmulator
) -> Iterator[Setup]:
    if request.param == "local":
        home = tmp_path / "home"
        env = clean_environment(BATCHEXECUTOR_HOME=str(home))
        try:
            executor = AzureBatchExecutor.local(home=home, max_workers=4, progress=False)
            daemon = running_daemon(home)
            assert daemon is not None
            yield Setup("local", env, executor, [daemon.account_key])
            executor.shutdown(wait=True, cancel_futures=True)
        finally:
            stop_daemon(home)
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    container = f"crash-{uuid.uuid4().hex[:12]}"
    env = clean_environment(
        AZURE_BATCH_ENDPOINT=batch_service.endpoint,
        AZURE_BATCH_ACCOUNT=batch_service.account_name,
        AZURE_BATCH_ACCESS_KEY=batch_service.account_key,
        AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string,
        BATCHEXECUTOR_CONTAINER=container,
        BATCHEXECUTOR_POOL_ID=POOL,
        BATCHEXECUTOR_POLL_INTERVAL_MIN="0.05",
        BATCHEXECUTOR_POLL_INTERVAL_MAX="0.2",
    )
    config = BatchConfig.from_env(env)
    executor = AzureBatchExecutor(
        config,
        max_workers=4,
        node_environment={"PYTHONPATH": local_python_path()},
        progress=False,
    )
    yield Setup("env", env, executor, [batch_service.account_key, azurite.account_key])
    executor.shutdown(wait=True, cancel_futures=True)


def start_child(setup: Setup, tmp_path: Path, scenario: str, gate: Gate) -> Child:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    args = [setup.mode, scenario, str(gate.path), str(ITEMS)]
    return Child(script, args, setup.env, tmp_path / f"child-{scenario}.log")


def assert_no_secret(setup: Setup, *forms: str | bytes) -> None:
    for secret in setup.secrets:
        for form in forms:
            text = form.decode("latin-1") if isinstance(form, bytes) else form
            assert secret not in text


def test_killed_while_its_tasks_run(setup: Setup, tmp_path: Path) -> None:
    executor = setup.executor
    gate = Gate(tmp_path / "gate")
    child = start_child(setup, tmp_path, "running", gate)
    try:
        job_id = child.line()
        wait_for(lambda: gate.started(0) or gate.started(1), timeout=TIMEOUT)
        child.kill()
    finally:
        child.stop()
    try:
        info = executor.get_job(job_id)
        assert info.submitted and info.state == "active"
        assert info.counts.running >= 1
        future = executor.attach(job_id)
        assert not future.done()
        gate.open()
        expected = [x * x for x in range(ITEMS)]
        assert future.result(timeout=TIMEOUT) == expected
        assert executor.job_result(job_id) == expected
        done = wait_for(lambda: (i := executor.get_job(job_id)).state == "completed" and i)
        assert done.counts.total == ITEMS + 1  # one task per chunk, and the combine task
        assert done.counts.succeeded == ITEMS + 1
        assert_no_secret(setup, pickle.dumps(future), future.to_json())
    finally:
        gate.open()
        executor.delete_job(job_id)


def test_killed_while_it_adds_tasks(setup: Setup, tmp_path: Path) -> None:
    executor = setup.executor
    gate = Gate(tmp_path / "unused")
    child = start_child(setup, tmp_path, "submitting", gate)
    try:
        job_id = child.line()

        def added() -> int:
            try:
                return executor.get_job(job_id).counts.total
            except JobNotFoundError:
                return 0

        wait_for(lambda: added() >= 2, timeout=TIMEOUT)
        child.kill()
    finally:
        child.stop()
    try:
        info = executor.get_job(job_id)
        assert info.submitted is False
        assert 2 <= info.counts.total < ITEMS
        with pytest.raises(IncompleteJobError, match="was cut short") as caught:
            executor.attach(job_id)
        assert caught.value.added == info.counts.total

        future = executor.resume(job_id, identity, range(ITEMS))
        assert future.result(timeout=TIMEOUT) == list(range(ITEMS))
        assert executor.job_result(job_id) == list(range(ITEMS))
        done = wait_for(lambda: (i := executor.get_job(job_id)).state == "completed" and i)
        assert done.submitted is True
        assert (done.items, done.chunks) == (ITEMS, ITEMS)
        assert done.counts.total == ITEMS + 1  # each chunk's task once, and the combine task
        with pytest.raises(ValueError, match="submitted completely"):
            executor.resume(job_id, identity, range(ITEMS))
    finally:
        executor.delete_job(job_id)


# --------------------------------------------------------------------------- JobFuture


@pytest.fixture
def local_home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    yield home
    stop_daemon(home)


def run_receiver(tmp_path: Path, home: Path, pickled: bytes, texts: list[str]) -> Child:
    (tmp_path / "future.pickle").write_bytes(pickled)
    (tmp_path / "future.json").write_text("\n".join(texts))
    script = tmp_path / "receiver.py"
    script.write_text(RECEIVER)
    args = [str(tmp_path / "future.pickle"), str(tmp_path / "future.json")]
    env = clean_environment(BATCHEXECUTOR_HOME=str(home))
    return Child(script, args, env, tmp_path / f"receiver-{home.name}.log")


def test_a_job_future_is_followed_in_another_process(local_home: Path, tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    with AzureBatchExecutor.local(home=local_home, max_workers=4, progress=False) as executor:
        whole = executor.map_async(gated_square, [str(gate.path)] * 3, range(3))
        call = executor.submit(gated_square, str(gate.path), 7)
        pickled = pickle.dumps(whole)
        texts = [whole.to_json(), call.to_json()]
        daemon = running_daemon(local_home)
        assert daemon is not None
        for form in (pickled.decode("latin-1"), *texts):
            assert daemon.account_key not in form
        reference: dict[str, Any] = json.loads(texts[1])
        assert set(reference) == {"format", "endpoint", "job_id", "task_id", "store"}
        assert (reference["job_id"], reference["task_id"]) == (call.job_id, call.task_id)

        receiver = run_receiver(tmp_path, local_home, pickled, texts)
        try:
            assert json.loads(receiver.line()) == [False, False, False]  # all live
            gate.open()  # only now can the work finish: the receiver followed it live
            assert json.loads(receiver.line()) == [[0, 1, 4], [0, 1, 4], 49]
            assert receiver.process.wait(timeout=TIMEOUT) == 0
        finally:
            receiver.stop()
        assert whole.result(timeout=TIMEOUT) == [0, 1, 4]

        # Without a daemon at its endpoint, the future is detached, and says so.
        elsewhere = tmp_path / "elsewhere"
        receiver = run_receiver(tmp_path, elsewhere, pickled, texts[:1])
        try:
            assert json.loads(receiver.line()) == [True, True]
            assert "is detached" in json.loads(receiver.line())
        finally:
            receiver.stop()
        assert running_daemon(elsewhere) is None
        executor.delete_job(whole.job_id)


# --------------------------------------------------------------------------- the docs


def test_the_documented_sample_runs(local_home: Path) -> None:
    """docs/long_running_job.py runs, and prints what docs/long-running-jobs.md shows."""
    done = subprocess.run(
        [sys.executable, str(REPO / "docs" / "long_running_job.py")],
        cwd=REPO,
        env=clean_environment(BATCHEXECUTOR_HOME=str(local_home)),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout.splitlines()
    job_id = output[0].removeprefix("job ID: ")
    assert job_id.startswith("bx-map-")
    page = (REPO / "docs" / "long-running-jobs.md").read_text()
    # The lines that do not depend on the run (IDs, times, task counts of the moment).
    for line in (
        "job metadata:",
        "    kind: map",
        "    function: __main__.simulate",
        "    chunkSize: 3",
        "    enableCloudCombine: TRUE",
        "    errors: raise",
        "    items: 12",
        "tasks:",
        "    total: 5",
        "TaskCounts(active=0, running=0, completed=5, succeeded=5, failed=0)",
    ):
        assert line in output, (line, done.stdout)
        assert f"\n{line}\n" in page, line
    header = next(line for line in output if line.split()[:1] == ["Id"])
    assert header.split() == ["Id", "State", "Status", "FailedTasks", "TotalTasks"]
    (row,) = [line for line in output if job_id in line and line.split()[0] == "1"]
    assert row.split()[2] in ("active", "completed")
    assert any(line.startswith("finished so far: ") for line in output)
    values = json.loads(output[-3])
    assert len(values) == 12 and all(0.45 < value < 0.55 for value in values)
    assert f"\n{output[-3]}\n" in page  # the results are deterministic (seeded)
    assert output[-1] == f"deleted {job_id}"
    # The script's code is what the page shows.
    script = (REPO / "docs" / "long_running_job.py").read_text()
    for statement in (
        "future = executor.map_async(simulate, range(12), chunksize=3)",
        "print(executor.get_job(job_id))",
        'executor.list_jobs(state=["active", "completed"])',
        "results = executor.attach(job_id).result()",
        "executor.delete_job(job_id)",
    ):
        assert statement in script and statement in page, statement
