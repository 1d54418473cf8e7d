"""``JobFuture``: its handle on the job, its references (pickle, JSON) without secrets, its
place in ``concurrent.futures`` and ``asyncio``; and an executor dropped without
``shutdown()`` letting its threads go. On both stacks."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import json
import pickle
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchexecutor import AzureBatchExecutor, BatchConfig, JobFuture
from batchexecutor.emulator import BatchEmulator
from tests.conftest import wait_for
from tests.executor import dataplane, workloads
from tests.fixtures.azurite import DEV_ACCOUNT_KEY

RESULT_TIMEOUT = 60.0
REPO = Path(__file__).resolve().parents[2]
Make = Callable[..., AzureBatchExecutor]


def secrets_of(config: BatchConfig, batch_service: BatchEmulator) -> list[str]:
    """Every secret the test's configuration holds, in the forms it could leak in."""
    found = [batch_service.account_key, DEV_ACCOUNT_KEY]
    connection = config.storage_connection_string
    if connection is not None:
        found.append(connection.reveal() if hasattr(connection, "reveal") else str(connection))
    return found


def assert_no_secret(data: str | bytes, secrets: list[str]) -> None:
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    for secret in secrets:
        assert secret not in text
        assert secret[:24] not in text  # not even a piece of it
    assert "sig=" not in text  # no SAS either
    assert "AccountKey" not in text


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No executor configured from the environment, no local daemon: an unpickled
    future has nothing to reattach to but the test's live executors."""
    monkeypatch.delenv("AZURE_BATCH_ENDPOINT", raising=False)
    monkeypatch.setenv("BATCHEXECUTOR_HOME", str(tmp_path / "home"))


# --------------------------------------------------------------------------- the handle


def test_submit_future_names_its_job_and_task(executor: AzureBatchExecutor) -> None:
    futures = [executor.submit(dataplane.square, i) for i in range(3)]
    assert {f.job_id for f in futures} == {executor.submit_job_id}
    task_ids = [f.task_id for f in futures]
    assert all(isinstance(t, str) and t.isdigit() for t in task_ids)
    assert len(set(task_ids)) == 3
    assert futures[0].endpoint == executor.config.batch_endpoint
    assert not futures[0].detached
    assert [f.result(timeout=RESULT_TIMEOUT) for f in futures] == [0, 1, 4]
    assert f"job={executor.submit_job_id!r}" in repr(futures[0])


def test_map_async_future_is_the_whole_job(executor: AzureBatchExecutor) -> None:
    future = executor.map_async(dataplane.square, range(3))
    assert future.task_id is None
    assert future.job_id.startswith("bx-map-")
    assert future.job_id != executor.submit_job_id
    assert future.result(timeout=RESULT_TIMEOUT) == [0, 1, 4]


def test_add_done_callback(executor: AzureBatchExecutor) -> None:
    called = threading.Event()
    seen: list[JobFuture[Any]] = []

    def callback(future: concurrent.futures.Future[Any]) -> None:
        assert isinstance(future, JobFuture)
        seen.append(future)
        called.set()

    future = executor.submit(dataplane.square, 6)
    future.add_done_callback(callback)
    assert called.wait(RESULT_TIMEOUT)
    assert seen == [future] and future.result() == 36


# --------------------------------------------------------------------------- references


@pytest.mark.usefixtures("isolated")
def test_pickle_round_trip_reattaches_to_the_live_executor(executor: AzureBatchExecutor) -> None:
    submitted = executor.submit(dataplane.square, 8)
    mapped = executor.map_async(dataplane.square, range(4))
    for future, expected in ((submitted, 64), (mapped, [0, 1, 4, 9])):
        copy = pickle.loads(pickle.dumps(future))
        assert isinstance(copy, JobFuture)
        assert copy is not future
        assert (copy.job_id, copy.task_id) == (future.job_id, future.task_id)
        assert not copy.detached
        assert copy.result(timeout=RESULT_TIMEOUT) == expected
        via_json = JobFuture.from_json(future.to_json(), executor)
        assert (via_json.job_id, via_json.task_id) == (future.job_id, future.task_id)
        assert via_json.result(timeout=RESULT_TIMEOUT) == expected


@pytest.mark.usefixtures("isolated")
def test_round_trips_without_an_executor_are_detached(make_executor: Make) -> None:
    executor = make_executor()
    submitted = executor.submit(dataplane.square, 2)
    mapped = executor.map_async(dataplane.square, range(2))
    assert submitted.result(timeout=RESULT_TIMEOUT) == 4
    assert mapped.result(timeout=RESULT_TIMEOUT) == [0, 1]
    pickles = [pickle.dumps(submitted), pickle.dumps(mapped)]
    documents = [submitted.to_json(), mapped.to_json()]
    executor.shutdown()  # no live executor to follow them any more

    for original, copy in zip(
        [submitted, mapped, submitted, mapped],
        [*map(pickle.loads, pickles), *map(JobFuture.from_json, documents)],
        strict=True,
    ):
        assert isinstance(copy, JobFuture)
        assert copy.detached
        assert (copy.job_id, copy.task_id) == (original.job_id, original.task_id)
        assert copy.endpoint == original.endpoint
        assert not copy.done()
        with pytest.raises(RuntimeError, match=r"detached.*attach"):
            copy.result(timeout=RESULT_TIMEOUT)  # at once, not after the timeout
        with pytest.raises(RuntimeError, match="detached"):
            copy.exception()


def test_to_json_is_the_reference(executor: AzureBatchExecutor) -> None:
    future = executor.submit(dataplane.square, 1)
    document = json.loads(future.to_json())
    assert document == {
        "format": "batchexecutor.JobFuture/1",
        "endpoint": executor.config.batch_endpoint,
        "job_id": future.job_id,
        "task_id": future.task_id,
        "store": document["store"],
    }
    assert isinstance(document["store"], str) and document["store"]
    with pytest.raises(ValueError, match="not a JobFuture reference"):
        JobFuture.from_json("{}")
    with pytest.raises(ValueError, match="not a JobFuture reference"):
        JobFuture.from_json("not json")
    assert future.result(timeout=RESULT_TIMEOUT) == 1


def test_unpickled_in_another_process_is_detached(executor: AzureBatchExecutor) -> None:
    future = executor.submit(dataplane.square, 3)
    script = (
        "import pickle, sys\n"
        "future = pickle.loads(sys.stdin.buffer.read())\n"
        "print(future.detached, future.job_id, future.task_id)\n"
        "try:\n"
        "    future.result(timeout=60)\n"
        "except RuntimeError as error:\n"
        "    print('RuntimeError', error)\n"
    )
    environment = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "BATCHEXECUTOR_HOME": str(REPO / ".no-such-home"),
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=pickle.dumps(future),
        env=environment,
        capture_output=True,
        timeout=60,
        check=True,
    )
    lines = done.stdout.decode().splitlines()
    assert lines[0] == f"True {future.job_id} {future.task_id}"
    assert lines[1].startswith("RuntimeError") and "attach" in lines[1]
    assert future.result(timeout=RESULT_TIMEOUT) == 9


# --------------------------------------------------------------------------- no secrets


def test_no_secret_in_references_or_reprs(
    executor: AzureBatchExecutor, executor_config: BatchConfig, batch_service: BatchEmulator
) -> None:
    secrets = secrets_of(executor_config, batch_service)
    submitted = executor.submit(dataplane.square, 2)
    mapped = executor.map_async(dataplane.square, range(2))
    for future in (submitted, mapped):
        assert_no_secret(pickle.dumps(future), secrets)
        assert_no_secret(future.to_json(), secrets)
        assert_no_secret(repr(future), secrets)
    assert submitted.result(timeout=RESULT_TIMEOUT) == 4
    assert mapped.result(timeout=RESULT_TIMEOUT) == [0, 1]
    for future in (submitted, mapped):  # done, with a result: still nothing
        assert_no_secret(pickle.dumps(future), secrets)
        assert_no_secret(repr(future), secrets)
    assert_no_secret(repr(executor), secrets)
    assert_no_secret(str(executor), secrets)
    assert_no_secret(repr(executor_config), secrets)
    assert_no_secret(str(executor_config), secrets)
    assert_no_secret(repr(executor.config), secrets)


def test_no_secret_in_the_pickled_config(
    executor_config: BatchConfig, batch_service: BatchEmulator
) -> None:
    assert_no_secret(pickle.dumps(executor_config), secrets_of(executor_config, batch_service))


# --------------------------------------------------------------------------- concurrent, asyncio


def test_wait_and_as_completed(executor: AzureBatchExecutor) -> None:
    futures = [executor.submit(workloads.sleep_then, 0.1 * (3 - i), i) for i in range(3)]
    futures.append(executor.map_async(dataplane.square, range(3)))
    done, not_done = concurrent.futures.wait(futures, timeout=RESULT_TIMEOUT)
    assert done == set(futures) and not not_done
    completed = list(concurrent.futures.as_completed(futures, timeout=RESULT_TIMEOUT))
    assert set(completed) == set(futures)
    assert [f.result() for f in futures] == [0, 1, 2, [0, 1, 4]]


def test_wait_first_completed_and_first_exception(executor: AzureBatchExecutor) -> None:
    failing = executor.submit(dataplane.fail_on_three, 3)
    fine = executor.submit(dataplane.square, 3)
    done, _ = concurrent.futures.wait(
        [failing, fine], timeout=RESULT_TIMEOUT, return_when=concurrent.futures.FIRST_EXCEPTION
    )
    assert failing in done
    assert isinstance(failing.exception(), ValueError)
    assert fine.result(timeout=RESULT_TIMEOUT) == 9


def test_asyncio_wrap_future_and_run_in_executor(executor: AzureBatchExecutor) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        wrapped = asyncio.wrap_future(executor.submit(dataplane.square, 4))
        mapped = asyncio.wrap_future(executor.map_async(dataplane.square, range(3)))
        ran = loop.run_in_executor(executor, dataplane.square, 5)
        failed = loop.run_in_executor(executor, dataplane.fail_on_three, 3)
        results = await asyncio.wait_for(
            asyncio.gather(wrapped, mapped, ran, failed, return_exceptions=True),
            RESULT_TIMEOUT,
        )
        return tuple(results)

    squared, mapped, ran, failed = asyncio.run(main())
    assert (squared, mapped, ran) == (16, [0, 1, 4], 25)
    assert isinstance(failed, ValueError) and "three is right out" in str(failed)


# --------------------------------------------------------------------------- a dropped executor


def thread_names(prefix: str) -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()}


@pytest.mark.parametrize("keep", ["submit", "map_async"])
def test_a_dropped_executor_lets_its_threads_end(executor_config: BatchConfig, keep: str) -> None:
    """An executor dropped without shutdown(): once its futures are done, its poller and
    sender threads end, though the caller keeps the futures."""
    from batchexecutor._context import local_python_path

    gc.collect()
    pollers = thread_names("batchexecutor-poller")
    senders = thread_names("batchexecutor-submitter")
    executor = AzureBatchExecutor(
        executor_config, node_environment={"PYTHONPATH": local_python_path()}
    )
    if keep == "submit":
        future = executor.submit(dataplane.square, 12)
        expected: Any = 144
    else:
        future = executor.map_async(dataplane.square, range(3))
        expected = [0, 1, 4]
    dropped = weakref.ref(executor)
    del executor
    gc.collect()
    assert dropped() is None  # the futures do not keep it
    assert future.result(timeout=RESULT_TIMEOUT) == expected
    wait_for(lambda: not (thread_names("batchexecutor-poller") - pollers), timeout=30)
    wait_for(lambda: not (thread_names("batchexecutor-submitter") - senders), timeout=30)
    assert future.result() == expected
