"""``AzureBatchExecutor`` as a ``concurrent.futures.Executor``: ``submit``, ``map`` and
``map_async``, on both stacks (local directory and Azurite), through the emulator.

Failures (bad input, tasks that die, unreadable outcomes) are in test_executor_errors;
the futures themselves in test_future.
"""

from __future__ import annotations

import concurrent.futures
import operator
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.core.exceptions import ResourceNotFoundError

from batchexecutor import AzureBatchExecutor, JobExistsError, RemoteError
from batchexecutor.emulator import BatchEmulator
from tests.conftest import wait_for
from tests.executor import dataplane, workloads
from tests.executor.workloads import Gate

RESULT_TIMEOUT = 60.0
Make = Callable[..., AzureBatchExecutor]


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    """A gate for :func:`workloads.gated` tasks, opened at the end of the test whatever
    happened, so no task waits for it."""
    opened = Gate(tmp_path / "gate")
    yield opened
    opened.open()


def metadata(client: BatchClient, job_id: str) -> dict[str, str]:
    """The job's ``batchexecutor.*`` metadata, without the prefix."""
    items = client.get_job(job_id).metadata or []
    return {
        item.name.removeprefix("batchexecutor."): item.value
        for item in items
        if item.name.startswith("batchexecutor.")
    }


def job_gone(client: BatchClient, job_id: str) -> bool:
    try:
        job = client.get_job(job_id)
    except ResourceNotFoundError:
        return True
    return str(getattr(job.state, "value", job.state)) == "deleting"


def job_state(client: BatchClient, job_id: str) -> str:
    return str(getattr(client.get_job(job_id).state, "value", client.get_job(job_id).state))


def stored(executor: AzureBatchExecutor, job_id: str) -> list[str]:
    """The names the job has in the executor's store."""
    return executor._context.store.list_names(f"{job_id}/")


def map_job_ids(client: BatchClient) -> set[str]:
    return {job.id for job in client.list_jobs() if job.id.startswith("bx-map-")}


# --------------------------------------------------------------------------- submit


def test_submit_returns_the_result(executor: AzureBatchExecutor) -> None:
    future = executor.submit(dataplane.square, 7)
    assert future.result(timeout=RESULT_TIMEOUT) == 49
    assert future.done() and not future.cancelled()
    assert future.exception() is None


def test_submit_passes_args_and_kwargs(executor: AzureBatchExecutor) -> None:
    calls = [
        executor.submit(workloads.describe_call, 1),
        executor.submit(workloads.describe_call, 1, 2),
        executor.submit(workloads.describe_call, 1, c=3),
        executor.submit(workloads.describe_call, a="x", b=[1, 2], c={"k": (3,)}),
    ]
    assert [f.result(timeout=RESULT_TIMEOUT) for f in calls] == [
        (1, "b-default", "c-default"),
        (1, 2, "c-default"),
        (1, "b-default", 3),
        ("x", [1, 2], {"k": (3,)}),
    ]


def test_submit_runs_closures_by_value(executor: AzureBatchExecutor) -> None:
    offset = 1000

    def shifted(x: int) -> int:
        return x + offset

    assert executor.submit(shifted, 5).result(timeout=RESULT_TIMEOUT) == 1005
    assert executor.submit(lambda: "lambda").result(timeout=RESULT_TIMEOUT) == "lambda"


def test_many_quick_submits_are_batched(make_executor: Make, batch_service: BatchEmulator) -> None:
    executor = make_executor()
    calls = 40
    before = batch_service.request_counts.get("Tasks_CreateTaskCollection", 0)
    futures = [executor.submit(dataplane.square, i) for i in range(calls)]
    results = [f.result(timeout=120) for f in futures]
    after = batch_service.request_counts.get("Tasks_CreateTaskCollection", 0)
    assert results == [i * i for i in range(calls)]
    # One add-collection request takes up to 100 tasks, and calls queued while a batch
    # is being sent go together in the next one: a few requests, not one per task.
    assert 1 <= after - before <= 4, after - before
    # ... and they all went into the executor's one submit job.
    assert {f.job_id for f in futures} == {executor.submit_job_id}
    assert len({f.task_id for f in futures}) == calls


def test_submit_futures_complete_independently(executor: AzureBatchExecutor, gate: Gate) -> None:
    slow = executor.submit(workloads.gated, str(gate.path), "slow")
    fast = executor.submit(dataplane.square, 3)
    assert fast.result(timeout=RESULT_TIMEOUT) == 9
    assert not slow.done()
    gate.open()
    assert slow.result(timeout=RESULT_TIMEOUT) == "slow"


# --------------------------------------------------------------------------- map


@pytest.mark.parametrize("chunksize", [1, 3, 100])
def test_map_keeps_order(executor: AzureBatchExecutor, chunksize: int) -> None:
    items = list(range(7))
    results = executor.map(dataplane.square, items, chunksize=chunksize, timeout=RESULT_TIMEOUT)
    assert list(results) == [x * x for x in items]


def test_map_over_several_iterables_stops_at_the_shortest(executor: AzureBatchExecutor) -> None:
    results = executor.map(workloads.add3, [1, 2, 3, 4], (10, 20, 30), iter(range(100, 200)))
    assert list(results) == [111, 123, 135]
    generated = executor.map(workloads.add3, range(5), range(5), (x for x in range(2)))
    assert list(generated) == [0, 3]


def test_map_over_empty_iterables(executor: AzureBatchExecutor) -> None:
    assert list(executor.map(dataplane.square, [])) == []
    assert list(executor.map(workloads.add3, [1, 2], [], [3])) == []
    assert list(executor.map(dataplane.square, iter(()), chunksize=5)) == []
    assert executor.map_async(dataplane.square, []).result(timeout=RESULT_TIMEOUT) == []


def test_map_timeout(executor: AzureBatchExecutor, gate: Gate) -> None:
    results = executor.map(workloads.gated, [str(gate.path)], ["late"], timeout=0.5)
    with pytest.raises(concurrent.futures.TimeoutError):
        next(results)


def test_map_raises_at_the_failing_item(executor: AzureBatchExecutor) -> None:
    results = executor.map(workloads.explode_on_negative, [0, 1, 2, -3, 4, 5], chunksize=2)
    assert [next(results) for _ in range(3)] == [0, 10, 20]
    with pytest.raises(KeyError, match="negative item -3") as raised:
        next(results)
    cause = raised.value.__cause__
    assert isinstance(cause, RemoteError)
    assert cause.item == 3
    assert cause.type_name == "KeyError"
    assert "explode_on_negative" in cause.traceback
    assert 'raise KeyError(f"negative item {x}")' in cause.traceback


def test_map_deletes_its_job_once_exhausted(
    executor: AzureBatchExecutor, batch_client: BatchClient
) -> None:
    before = map_job_ids(batch_client)
    results = executor.map(dataplane.square, range(4), chunksize=2)
    (job_id,) = map_job_ids(batch_client) - before
    assert stored(executor, job_id)
    assert list(results) == [0, 1, 4, 9]
    wait_for(lambda: job_gone(batch_client, job_id), timeout=RESULT_TIMEOUT)
    wait_for(lambda: not stored(executor, job_id), timeout=RESULT_TIMEOUT)


def test_map_deletes_its_job_when_closed_early(
    executor: AzureBatchExecutor, batch_client: BatchClient, gate: Gate
) -> None:
    before = map_job_ids(batch_client)
    results = executor.map(workloads.gated_square, [str(gate.path)] * 3, [1, 2, 3])
    (job_id,) = map_job_ids(batch_client) - before
    # Closed before its first result (as map's documentation promises it can be): the
    # job is terminated, then deleted.
    results.close()  # type: ignore[attr-defined]
    wait_for(lambda: job_gone(batch_client, job_id), timeout=RESULT_TIMEOUT)
    wait_for(lambda: not stored(executor, job_id), timeout=RESULT_TIMEOUT)


# --------------------------------------------------------------------------- map_async


def test_map_async_returns_the_list(executor: AzureBatchExecutor) -> None:
    future = executor.map_async(dataplane.square, range(7), chunksize=3)
    assert future.task_id is None
    assert future.result(timeout=RESULT_TIMEOUT) == [x * x for x in range(7)]


def test_map_async_without_combine(executor: AzureBatchExecutor) -> None:
    future = executor.map_async(dataplane.square, range(5), chunksize=2, combine=False)
    assert future.result(timeout=RESULT_TIMEOUT) == [0, 1, 4, 9, 16]


def test_map_async_reduce(executor: AzureBatchExecutor) -> None:
    future = executor.map_async(dataplane.square, range(6), chunksize=2, reduce=operator.add)
    assert future.result(timeout=RESULT_TIMEOUT) == sum(x * x for x in range(6))
    concatenated = executor.map_async(str, range(4), reduce=operator.add)
    assert concatenated.result(timeout=RESULT_TIMEOUT) == "0123"


def test_map_async_errors_raise(executor: AzureBatchExecutor) -> None:
    future = executor.map_async(dataplane.fail_on_three, range(6), errors="raise")
    with pytest.raises(ValueError, match="three is right out") as raised:
        future.result(timeout=RESULT_TIMEOUT)
    cause = raised.value.__cause__
    assert isinstance(cause, RemoteError)
    assert cause.item == 3
    assert "item 3" in str(cause)
    assert "fail_on_three" in cause.traceback


def test_map_async_errors_skip(executor: AzureBatchExecutor) -> None:
    future = executor.map_async(dataplane.fail_on_three, range(6), chunksize=2, errors="skip")
    assert future.result(timeout=RESULT_TIMEOUT) == [0, 1, 2, 4, 5]


@pytest.mark.parametrize("combine", [True, False])
def test_map_async_errors_return(executor: AzureBatchExecutor, combine: bool) -> None:
    future = executor.map_async(
        dataplane.fail_on_three, range(5), chunksize=2, errors="return", combine=combine
    )
    results = future.result(timeout=RESULT_TIMEOUT)
    assert results[:3] == [0, 1, 2] and results[4] == 4
    assert isinstance(results[3], ValueError)
    assert "three is right out" in str(results[3])
    assert isinstance(results[3].__cause__, RemoteError)


def test_map_async_with_a_chosen_job_id(
    executor: AzureBatchExecutor, batch_client: BatchClient, request: pytest.FixtureRequest
) -> None:
    job_id = f"chosen-{request.node.callspec.id}-{id(executor):x}"
    future = executor.map_async(dataplane.square, range(5), chunksize=2, job_id=job_id)
    assert future.job_id == job_id
    assert future.result(timeout=RESULT_TIMEOUT) == [0, 1, 4, 9, 16]
    fields = metadata(batch_client, job_id)
    assert fields["kind"] == "map"
    assert fields["chunksize"] == "2"
    assert fields["combine"] == "true"
    assert fields["errors"] == "raise"
    assert fields["items"] == "5"
    assert fields["chunks"] == "3"
    assert fields["submitted"] == "complete"
    wait_for(lambda: job_state(batch_client, job_id) == "completed", timeout=RESULT_TIMEOUT)

    with pytest.raises(JobExistsError, match=f"{job_id!r} already exists") as raised:
        executor.map_async(dataplane.square, range(3), job_id=job_id)
    assert isinstance(raised.value, ValueError)
    # The existing job is left alone.
    assert executor.attach(job_id).result(timeout=RESULT_TIMEOUT) == [0, 1, 4, 9, 16]


def test_map_async_metadata_records_the_options(
    executor: AzureBatchExecutor, batch_client: BatchClient
) -> None:
    future = executor.map_async(
        dataplane.fail_on_three, range(4), chunksize=3, combine=False, errors="skip"
    )
    assert future.result(timeout=RESULT_TIMEOUT) == [0, 1, 2]
    fields = metadata(batch_client, future.job_id)
    assert fields["chunksize"] == "3"
    assert fields["combine"] == "false"
    assert fields["errors"] == "skip"
    assert (fields["items"], fields["chunks"]) == ("4", "2")
    assert fields["submitted"] == "complete"
    wait_for(lambda: job_state(batch_client, future.job_id) == "completed")


@pytest.mark.parametrize("job_id", ["has space", "", "x" * 65, "dots.not.allowed", "slash/no"])
def test_map_async_rejects_an_invalid_job_id(
    executor: AzureBatchExecutor, batch_client: BatchClient, job_id: str
) -> None:
    before = {job.id for job in batch_client.list_jobs()}
    with pytest.raises(ValueError, match="invalid job ID"):
        executor.map_async(dataplane.square, range(3), job_id=job_id)
    assert {job.id for job in batch_client.list_jobs()} == before


# --------------------------------------------------------------------------- cancel, shutdown


def wait_running(client: BatchClient, job_id: str, task_id: str) -> None:
    wait_for(
        lambda: str(getattr(client.get_task(job_id, task_id).state, "value", "")) == "running",
        timeout=RESULT_TIMEOUT,
    )


def test_cancel_a_task_that_has_not_started(
    make_executor: Make, batch_client: BatchClient, gate: Gate
) -> None:
    executor = make_executor(max_workers=1)
    running = executor.submit(workloads.gated, str(gate.path), "first")
    queued = executor.submit(dataplane.square, 4)
    assert queued.task_id is not None and running.task_id is not None
    wait_for(lambda: gate.started("first"), timeout=RESULT_TIMEOUT)
    job_id = executor.submit_job_id
    wait_for(lambda: batch_client.get_task(job_id, str(queued.task_id)), timeout=RESULT_TIMEOUT)

    assert queued.cancel() is True
    assert queued.cancelled() and queued.done()
    with pytest.raises(concurrent.futures.CancelledError):
        queued.result(timeout=1)
    task = batch_client.get_task(job_id, queued.task_id)
    assert str(getattr(task.state, "value", task.state)) == "completed"
    assert task.execution_info is not None and task.execution_info.failure_info is not None
    assert task.execution_info.failure_info.code == "TaskEnded"

    # The running one cannot be cancelled: it goes on to its result.
    wait_running(batch_client, job_id, running.task_id)
    assert running.cancel() is False
    assert running.running() and not running.cancelled()
    gate.open()
    assert running.result(timeout=RESULT_TIMEOUT) == "first"
    assert queued.cancelled()


def test_cancel_a_done_future(executor: AzureBatchExecutor) -> None:
    future = executor.submit(dataplane.square, 2)
    assert future.result(timeout=RESULT_TIMEOUT) == 4
    assert future.cancel() is False
    assert not future.cancelled()


def test_shutdown_cancel_futures(make_executor: Make, gate: Gate) -> None:
    executor = make_executor(max_workers=1)
    running = executor.submit(workloads.gated, str(gate.path), "first")
    wait_for(lambda: gate.started("first"), timeout=RESULT_TIMEOUT)
    queued = [executor.submit(dataplane.square, i) for i in range(3)]
    executor.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    assert not running.cancelled()
    gate.open()
    assert running.result(timeout=RESULT_TIMEOUT) == "first"
    executor.shutdown(wait=True)


def test_shutdown_waits_for_pending_work(make_executor: Make) -> None:
    executor = make_executor()
    futures = [executor.submit(workloads.sleep_then, 0.2, i) for i in range(3)]
    mapped = executor.map_async(dataplane.square, range(3))
    executor.shutdown(wait=True)
    assert all(f.done() for f in [*futures, mapped])
    assert [f.result() for f in futures] == [0, 1, 2]
    assert mapped.result() == [0, 1, 4]


def test_submit_after_shutdown(make_executor: Make) -> None:
    executor = make_executor()
    executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(dataplane.square, 1)
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.map_async(dataplane.square, [1])
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.map(dataplane.square, [1])
    assert "shut down" in repr(executor)


def test_executor_as_a_context_manager(make_executor: Make) -> None:
    with make_executor() as executor:
        future = executor.submit(dataplane.square, 9)
    assert future.done()
    assert future.result() == 81
    with pytest.raises(RuntimeError):
        executor.submit(dataplane.square, 1)


def test_cancel_map_async_terminates_the_job(
    make_executor: Make, batch_client: BatchClient, gate: Gate
) -> None:
    executor = make_executor(max_workers=1)
    future = executor.map_async(workloads.gated_square, [str(gate.path)] * 3, [1, 2, 3])
    wait_for(lambda: gate.started(1), timeout=RESULT_TIMEOUT)
    assert future.cancel() is True
    assert future.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=1)
    wait_for(
        lambda: job_state(batch_client, future.job_id) in ("terminating", "completed"),
        timeout=RESULT_TIMEOUT,
    )
    job = batch_client.get_job(future.job_id)
    assert job.execution_info is not None
    assert job.execution_info.termination_reason == "cancelled"
    wait_for(lambda: job_state(batch_client, future.job_id) == "completed", timeout=RESULT_TIMEOUT)
    assert not gate.started(2)  # the items that had not started never ran


def test_shutdown_cancel_futures_cancels_map_async(make_executor: Make, gate: Gate) -> None:
    executor = make_executor(max_workers=1)
    future = executor.map_async(workloads.gated_square, [str(gate.path)] * 2, [1, 2])
    wait_for(lambda: gate.started(1), timeout=RESULT_TIMEOUT)
    executor.shutdown(wait=False, cancel_futures=True)
    assert future.cancelled()
    gate.open()
    executor.shutdown(wait=True)
