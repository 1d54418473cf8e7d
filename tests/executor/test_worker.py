"""``python -m batchexecutor.worker`` end to end, as a node runs it: a real subprocess,
against a local directory and against Azurite through a SAS locator.

The client side (staging inputs, reading outcomes) is played by tests/executor/dataplane.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.storage.blob import ContainerClient

from batchexecutor import _names
from batchexecutor._errors import (
    CorruptObjectError,
    RemoteError,
    SerializationError,
    TaskFailedError,
    VersionMismatchError,
)
from batchexecutor._serialize import (
    NO_ITEM,
    Record,
    call_payload,
    dumps,
    iter_records,
    versions,
    write_records,
)
from batchexecutor._storage import BlobStore, LocalStore, Store
from batchexecutor.worker import EXIT_FAILED, EXIT_OK, EXIT_STORAGE, EXIT_USAGE, STORE_ENV
from tests.executor import dataplane
from tests.executor.dataplane import read_records, stage_map
from tests.fixtures.azurite import Azurite, BlobContainer

REPO = Path(__file__).resolve().parents[2]
JOB = "job-w"
TASK = "task-7"


@dataclass
class Node:
    """A store as the client sees it, and the locator its nodes get."""

    store: Store
    locator: str
    secret: str | None  # the SAS signature, which no output may show

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        environment = {
            **os.environ,
            STORE_ENV: self.locator,
            "AZ_BATCH_TASK_ID": TASK,
            "PYTHONPATH": str(REPO),
            **(env or {}),
        }
        result = subprocess.run(
            [sys.executable, "-m", "batchexecutor.worker", *args],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if self.secret is not None:
            assert self.secret not in result.stdout + result.stderr
        return result

    def run_chunk(self, chunk: int, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("run", "--job", JOB, "--chunk", str(chunk), *extra)

    def combine(self, chunks: int, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("combine", "--job", JOB, "--chunks", str(chunks), *extra)

    def outcome(self, chunk: int) -> dataplane.Stream:
        return read_records(self.store, _names.chunk_outcome(JOB, chunk))

    def result(self) -> dataplane.Stream:
        return read_records(self.store, _names.result(JOB))


@pytest.fixture(params=["local", pytest.param("azurite", marks=pytest.mark.azurite)])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Node]:
    if request.param == "local":
        store: Store = LocalStore(tmp_path / "store")
        (tmp_path / "store").mkdir()
        yield Node(store, store.node_locator(JOB, expiry=timedelta(hours=1)), None)
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    container: BlobContainer = request.getfixturevalue("blob_container")
    client = ContainerClient.from_connection_string(
        azurite.connection_string, container.name, retry_total=0
    )
    store = BlobStore(client, deadline=20)
    locator = store.node_locator(JOB, expiry=timedelta(hours=1))
    (signature,) = parse_qs(urlsplit(locator).query)["sig"]
    yield Node(store, locator, signature)


@pytest.fixture
def local(tmp_path: Path) -> Node:
    store = LocalStore(tmp_path)
    return Node(store, str(tmp_path), None)


def items(*values: int) -> list[tuple[Any, ...]]:
    return [(value,) for value in values]


# --------------------------------------------------------------------------- run


def test_chunks_run_and_combine(node: Node) -> None:
    chunks = stage_map(node.store, JOB, dataplane.square, items(*range(8)), chunksize=3)
    for chunk in range(chunks):
        done = node.run_chunk(chunk)
        assert done.returncode == EXIT_OK, done.stderr
        assert f"chunk {chunk} of job {JOB}:" in done.stdout
    outcome = node.outcome(1)
    assert outcome.values == [(3, "ok", 9), (4, "ok", 16), (5, "ok", 25)]
    assert outcome.info == {"kind": "outcome", "job": JOB, "chunk": 1, "task": TASK}
    assert outcome.summary == {"items": 3, "failed": 0}
    combined = node.combine(chunks)
    assert combined.returncode == EXIT_OK, combined.stderr
    assert node.result().results == [x * x for x in range(8)]


def test_function_that_raises_keeps_its_traceback(node: Node) -> None:
    stage_map(node.store, JOB, dataplane.fail_on_three, items(2, 3, 4), chunksize=3)
    done = node.run_chunk(0)
    assert done.returncode == EXIT_FAILED
    assert "three is right out" in done.stderr  # for whoever reads the task's stderr
    outcome = node.outcome(0)
    assert [(item, status) for item, status, _ in outcome.values] == [
        (0, "ok"),
        (1, "error"),
        (2, "ok"),
    ]
    error = outcome.results[1]
    assert type(error) is ValueError and str(error) == "three is right out (got 3)"
    remote = error.__cause__
    assert isinstance(remote, RemoteError)
    assert (remote.type_name, remote.item, remote.task_id) == ("ValueError", 1, TASK)
    lines = remote.traceback.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert 'dataplane.py", line' in lines[1] and "in fail_on_three" in lines[1]
    assert "worker.py" not in remote.traceback  # it starts in user code
    assert lines[-1] == "ValueError: three is right out (got 3)"


def test_os_exit_inside_an_item_stores_no_outcome(node: Node) -> None:
    chunks = stage_map(node.store, JOB, dataplane.exit_on_three, items(1, 2, 3, 4), chunksize=2)
    assert node.run_chunk(0).returncode == EXIT_OK
    died = node.run_chunk(1)
    assert died.returncode == 3
    assert not node.store.exists(_names.chunk_outcome(JOB, 1))
    assert node.store.list_names(f"{JOB}/outcomes/") == [_names.chunk_outcome(JOB, 0)]
    combined = node.combine(chunks, "--mode", "return")
    assert combined.returncode == EXIT_OK
    values = node.result().results
    assert values[:2] == [1, 2]
    for error in values[2:]:
        assert isinstance(error, TaskFailedError) and error.chunk == 1
        assert "the task of chunk 1 of job 'job-w' ended without an outcome" in str(error)


def test_unpicklable_result_fails_only_its_item(node: Node) -> None:
    stage_map(node.store, JOB, dataplane.lock_on_three, items(2, 3), chunksize=2)
    assert node.run_chunk(0).returncode == EXIT_FAILED
    ok, error = node.outcome(0).results
    assert ok == 2
    assert isinstance(error, SerializationError)
    assert error.what == "the result of item 1 (a lock)"
    assert "cannot pickle" in error.reason
    assert isinstance(error.__cause__, RemoteError) and error.__cause__.item == 1


def test_unpicklable_exception_arrives_as_remote_error(node: Node) -> None:
    stage_map(node.store, JOB, dataplane.raise_unpicklable, items(5), chunksize=1)
    assert node.run_chunk(0).returncode == EXIT_FAILED
    (error,) = node.outcome(0).results
    assert type(error) is RemoteError
    assert error.type_name == "tests.executor.dataplane.HoldsALock"
    assert error.unpicklable is not None and "cannot pickle" in error.unpicklable
    assert "HoldsALock: locked 5" in error.traceback and "in raise_unpicklable" in error.traceback


def test_sys_exit_is_an_outcome_like_in_process_pools(node: Node) -> None:
    stage_map(node.store, JOB, dataplane.call_sys_exit, items(9), chunksize=1)
    assert node.run_chunk(0).returncode == EXIT_FAILED
    (error,) = node.outcome(0).results
    assert isinstance(error, SystemExit) and error.code == 9


def test_calls_with_their_own_function_and_pack(node: Node) -> None:
    # submit() style: each call carries its callable; several tasks' inputs in one pack.
    offset = 0
    pack = bytearray()
    spans = []
    for chunk, (fn, args, kwargs) in enumerate([(pow, (2, 10), {}), (divmod, (7,), {"b": 2})]):
        buffer = io.BytesIO()
        write_records(buffer, [Record(chunk, "ok", call_payload(fn, args, kwargs, what="call"))])
        spans.append((offset, len(buffer.getvalue())))
        pack += buffer.getvalue()
        offset += len(buffer.getvalue())
    node.store.put(_names.input_pack(JOB, 0), bytes(pack))
    for chunk, (start, length) in enumerate(spans):
        done = node.run_chunk(chunk, "--pack", "0", "--offset", str(start), "--length", str(length))
        expected = EXIT_FAILED if chunk else EXIT_OK  # divmod takes no keyword arguments
        assert done.returncode == expected, done.stderr
    assert node.outcome(0).results == [1024]
    (error,) = node.outcome(1).results  # divmod takes no keyword arguments
    assert isinstance(error, TypeError)


def test_closures_travel_by_value(local: Node) -> None:
    offset = 100

    def shifted(x: int) -> int:
        return x + offset

    stage_map(local.store, JOB, shifted, items(1, 2), chunksize=2)
    assert local.run_chunk(0).returncode == EXIT_OK
    assert local.outcome(0).results == [101, 102]


# --------------------------------------------------------------------------- versions, damage


def retag(store: Store, name: str, field: str, value: str) -> None:
    """Rewrite one version in an object's header, as another installation would write it."""
    data = store.get(name)
    mine = f'"{field}":"{versions()[field]}"'.encode()
    theirs = f'"{field}":"{value}"'.encode()
    assert len(mine) == len(theirs) and data.count(mine) == 1
    store.put(name, data.replace(mine, theirs))


def test_input_written_by_another_python_fails_every_item_clearly(node: Node) -> None:
    stage_map(node.store, JOB, dataplane.square, items(1, 2), chunksize=2)
    python = versions()["python"]
    other = python[:-1] + ("8" if python[-1] != "8" else "9")
    retag(node.store, _names.chunk_input(JOB, 0), "python", other)
    assert node.run_chunk(0).returncode == EXIT_FAILED
    outcome = node.outcome(0)
    assert [item for item, _, _ in outcome.values] == [0, 1]
    for error in outcome.results:
        assert isinstance(error, VersionMismatchError)
        assert error.writer["python"] == other and error.reader["python"] == python
        assert "input of chunk 0 of job 'job-w'" in str(error)
        assert f"python {other}" in str(error) and f"python {python}" in str(error)


def test_function_written_by_another_cloudpickle_fails_every_item_clearly(node: Node) -> None:
    stage_map(node.store, JOB, dataplane.square, items(1, 2), chunksize=2)
    mine = versions()["cloudpickle"]
    retag(node.store, _names.function(JOB), "cloudpickle", "9" * len(mine))
    assert node.run_chunk(0).returncode == EXIT_FAILED
    for error in node.outcome(0).results:
        assert isinstance(error, VersionMismatchError)
        assert error.differing == ["cloudpickle"]
        assert "function of job 'job-w'" in str(error)


def test_missing_function_and_corrupt_input(node: Node) -> None:
    stage_map(node.store, JOB, dataplane.square, items(1, 2, 3), chunksize=3)
    node.store.delete(_names.function(JOB))
    assert node.run_chunk(0).returncode == EXIT_FAILED
    for error in node.outcome(0).results:
        assert "function of job 'job-w' (job-w/function) does not exist" in str(error)
    # An input cut short: the items before the cut run, one record stands for the rest.
    stage_map(node.store, JOB, dataplane.square, items(1, 2, 3), chunksize=3)
    data = node.store.get(_names.chunk_input(JOB, 0))
    node.store.put(_names.chunk_input(JOB, 0), data[:-60])
    assert node.run_chunk(0).returncode == EXIT_FAILED
    outcome = node.outcome(0)
    assert outcome.values[0] == (0, "ok", 1)
    item, status, error = outcome.values[-1]
    assert (item, status) == (NO_ITEM, "error") and isinstance(error, CorruptObjectError)
    assert "input of chunk 0 of job 'job-w'" in str(error)


def test_truncated_outcome_is_named_by_the_combine_and_by_readers(node: Node) -> None:
    chunks = stage_map(node.store, JOB, dataplane.square, items(*range(6)), chunksize=2)
    for chunk in range(chunks):
        assert node.run_chunk(chunk).returncode == EXIT_OK
    name = _names.chunk_outcome(JOB, 1)
    data = node.store.get(name)
    node.store.put(name, data[: len(data) // 2])
    with pytest.raises(CorruptObjectError) as caught:
        node.outcome(1)
    assert str(caught.value).startswith("outcome of chunk 1 of job 'job-w' (job-w/outcomes/000001)")
    combined = node.combine(chunks, "--mode", "return")
    assert combined.returncode == EXIT_OK
    assert "1 broken chunks" in combined.stdout
    values = node.result().results
    assert values[:2] == [0, 1] and values[4:] == [16, 25]
    assert all(isinstance(error, CorruptObjectError) for error in values[2:4])
    assert "outcome of chunk 1 of job 'job-w'" in str(values[3])
    assert node.store.get(name) == data[: len(data) // 2]  # outcomes are left as they were


# --------------------------------------------------------------------------- combine


def test_combine_modes_and_reduce(node: Node) -> None:
    chunks = stage_map(
        node.store,
        JOB,
        dataplane.fail_on_three,
        items(*range(7)),
        chunksize=2,
        reducer=dataplane.add,
    )
    for chunk in range(chunks):
        node.run_chunk(chunk)

    raised = node.combine(chunks)  # --mode raise is the default
    assert raised.returncode == EXIT_FAILED
    stream = node.result()
    assert stream.results[:3] == [0, 1, 2]
    error = stream.results[3]
    assert isinstance(error, ValueError) and error.__cause__.item == 3
    assert "in fail_on_three" in error.__cause__.traceback
    assert len(stream.values) == 4  # nothing after the failure

    assert node.combine(chunks, "--mode", "skip").returncode == EXIT_OK
    assert node.result().results == [0, 1, 2, 4, 5, 6]

    assert node.combine(chunks, "--mode", "return").returncode == EXIT_OK
    values = node.result().results
    assert values[:3] == [0, 1, 2] and values[4:] == [4, 5, 6]
    assert isinstance(values[3], ValueError)

    assert node.combine(chunks, "--mode", "skip", "--reduce").returncode == EXIT_OK
    assert node.result().values == [(NO_ITEM, "ok", 18)]
    assert node.result().info["reduced"] is True

    assert node.combine(chunks, "--reduce").returncode == EXIT_FAILED  # raise mode
    ((item, status, error),) = node.result().values
    assert (item, status) == (3, "error") and isinstance(error, ValueError)


def test_reduce_failure_names_the_combine_task(local: Node) -> None:
    chunks = stage_map(
        local.store,
        JOB,
        dataplane.square,
        items(1, 2, 3),
        chunksize=3,
        reducer=dataplane.reduce_fails,
    )
    local.run_chunk(0)
    args = ("combine", "--job", JOB, "--chunks", str(chunks), "--reduce")
    done = local.run(*args, env={"AZ_BATCH_TASK_ID": "combine"})
    assert done.returncode == EXIT_FAILED
    ((item, _, error),) = local.result().values
    assert item == 1 and isinstance(error, ArithmeticError)  # square(2) == 4
    assert error.__cause__.task_id == "combine"


# --------------------------------------------------------------------------- command line


def test_usage_errors(local: Node) -> None:
    assert local.run("run", "--job", JOB).returncode == EXIT_USAGE  # no --chunk
    assert local.run("run", "--job", "bad/id", "--chunk", "0").returncode == EXIT_USAGE
    assert local.run("run", "--job", JOB, "--chunk", "-1").returncode == EXIT_USAGE
    partial = local.run("run", "--job", JOB, "--chunk", "0", "--pack", "0")
    assert partial.returncode == EXIT_USAGE and "go together" in partial.stderr
    assert local.run("combine", "--job", JOB, "--chunks", "1", "--mode", "x").returncode == 2
    missing = local.run("run", "--job", JOB, "--chunk", "0", env={STORE_ENV: ""})
    assert missing.returncode == EXIT_USAGE and STORE_ENV in missing.stderr


def test_store_given_on_the_command_line(local: Node, tmp_path: Path) -> None:
    stage_map(local.store, JOB, dataplane.square, items(3), chunksize=1)
    done = local.run(
        "run", "--store", str(tmp_path), "--job", JOB, "--chunk", "0", env={STORE_ENV: ""}
    )
    assert done.returncode == EXIT_OK
    assert local.outcome(0).results == [9]


def test_store_failures_exit_74(local: Node, tmp_path: Path) -> None:
    missing = local.run("run", "--job", JOB, "--chunk", "0", env={STORE_ENV: str(tmp_path / "no")})
    assert missing.returncode == EXIT_STORAGE and "does not exist" in missing.stderr
    assert local.store.list_names() == []


def test_missing_input_is_a_failure_of_the_whole_chunk(local: Node) -> None:
    done = local.run_chunk(0)  # the store exists, the chunk's input does not
    assert done.returncode == EXIT_FAILED
    ((item, status, error),) = local.outcome(0).values
    assert (item, status) == (NO_ITEM, "error")
    assert str(error) == "input of chunk 0 of job 'job-w' (job-w/inputs/000000) does not exist"
    assert "chunk 0 failed" in done.stderr


def test_worker_imports_no_azure_for_a_local_store(local: Node) -> None:
    stage_map(local.store, JOB, dataplane.square, items(3), chunksize=1)
    code = (
        "import sys\n"
        "from batchexecutor.worker import main\n"
        f"argv = ['run', '--store', {local.locator!r}, '--job', {JOB!r}, '--chunk', '0']\n"
        "code = main(argv)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('azure', 'tenacity'))\n"
        "print(code, heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "0 []"


def test_outcome_stream_is_written_by_the_worker_versions(local: Node) -> None:
    stage_map(local.store, JOB, dataplane.square, items(2), chunksize=1)
    local.run_chunk(0)
    with local.store.open(_names.chunk_outcome(JOB, 0)) as file:
        assert iter_records(file, what="o").versions == versions()
    assert dumps(1, what="x")  # the client side wrote with the same versions
