"""Managing jobs by ID (the long-running job guide): get_job, list_jobs, job_result,
partial_results, job_logs, terminate_job, delete_job, and their errors.

Every test runs on both stacks (``stack``: local directory store, Azurite). Slow tasks
wait on a :class:`~tests.executor.workloads.Gate` that the test opens, never on a clock.
"""

from __future__ import annotations

import json
import operator
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm

from batchexecutor import (
    AzureBatchExecutor,
    ForeignJobError,
    IncompleteJobError,
    JobError,
    JobInfo,
    JobNotDoneError,
    JobNotFoundError,
    ObjectNotFoundError,
    TaskFailedError,
    _mapjob,
    _names,
    format_jobs,
)
from batchexecutor.emulator import BatchEmulator
from tests.conftest import wait_for
from tests.executor.conftest import POOL
from tests.executor.workloads import (
    Gate,
    die_on_three,
    explode_on_negative,
    gated,
    gated_square,
    identity,
)

TIMEOUT = 120.0


@pytest.fixture
def sdk(batch_client: BatchClient) -> BatchClient:
    """The plain azure-batch client, for jobs batchexecutor did not create."""
    return batch_client


def foreign_job(sdk: BatchClient) -> str:
    """A job created with the SDK alone: no tasks, no batchexecutor metadata."""
    job_id = f"foreign-{uuid.uuid4().hex[:12]}"
    sdk.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=POOL)))
    return job_id


def stored(executor: AzureBatchExecutor, job_id: str) -> list[str]:
    return executor._context.store.list_names(_names.job_prefix(job_id))


def wait_state(executor: AzureBatchExecutor, job_id: str, state: str) -> JobInfo:
    info: JobInfo = wait_for(
        lambda: (i := executor.get_job(job_id)).state == state and i, timeout=TIMEOUT
    )
    return info


def partial(executor: AzureBatchExecutor, job_id: str) -> dict[int, Any]:
    return dict(executor.partial_results(job_id))


# --------------------------------------------------------------------------- get_job


def test_get_job_reports_metadata_and_task_counts(executor: AzureBatchExecutor) -> None:
    future = executor.map_async(explode_on_negative, [1, -2, 3, 4, 5], chunksize=2, errors="return")
    values = future.result(timeout=TIMEOUT)
    assert values[0::2] == [10, 30, 50] and values[3] == 40
    assert isinstance(values[1], KeyError)

    info = wait_state(executor, future.job_id, "completed")
    assert info.job_id == future.job_id
    assert info.kind == "map"
    assert info.function == "tests.executor.workloads.explode_on_negative"
    assert info.chunksize == 2
    assert info.combine is True
    assert info.reduce is None
    assert info.errors == "return"
    assert (info.items, info.chunks, info.planned) == (5, 3, 5)
    assert info.submitted is True
    assert info.created is not None
    assert set(info.versions) == {"batchexecutor", "python", "cloudpickle"}
    counts = info.counts
    assert (counts.active, counts.running, counts.completed, counts.total) == (0, 0, 4, 4)
    assert counts.failed >= 1  # the chunk with a failed item (its task exits non-zero)
    assert counts.succeeded + counts.failed == 4

    text = str(info)
    for line in (
        f"job {future.job_id} (completed)",
        "job metadata:",
        "    chunkSize: 2",
        "    enableCloudCombine: TRUE",
        "    function: tests.executor.workloads.explode_on_negative",
        "    errors: return",
        "    items: 5",
        "tasks:",
        "    active: 0",
        "    running: 0",
        "    completed: 4",
        f"        succeeded: {counts.succeeded}",
        f"        failed: {counts.failed}",
        "    total: 4",
    ):
        assert line in text.splitlines(), (line, text)

    data = json.loads(json.dumps(info.to_json()))
    assert data["id"] == future.job_id
    assert data["state"] == "completed"
    assert data["submitted"] is True
    assert data["metadata"]["chunksize"] == "2"
    assert data["tasks"]["total"] == 4


def test_get_job_of_a_foreign_job(executor: AzureBatchExecutor, sdk: BatchClient) -> None:
    job_id = foreign_job(sdk)
    info = executor.get_job(job_id)
    assert info.kind is None
    assert info.metadata == {}
    assert info.counts.total == 0
    assert "(not a batchexecutor job)" in str(info)


def test_get_job_of_an_unknown_or_malformed_id(executor: AzureBatchExecutor) -> None:
    with pytest.raises(JobNotFoundError, match="no job 'no-such-job'") as caught:
        executor.get_job("no-such-job")
    assert caught.value.job_id == "no-such-job"
    assert isinstance(caught.value, LookupError)
    for bad in ("", "has space", "a/b", "x" * 65):
        with pytest.raises(ValueError, match="invalid job ID"):
            executor.get_job(bad)


# --------------------------------------------------------------------------- list_jobs


def test_list_jobs_statuses_and_states(
    executor: AzureBatchExecutor, sdk: BatchClient, tmp_path: Path
) -> None:
    empty = foreign_job(sdk)
    done = executor.map_async(explode_on_negative, [-1, 2], combine=False, errors="return")
    done.result(timeout=TIMEOUT)
    first, second = Gate(tmp_path / "first"), Gate(tmp_path / "second")
    gates = [str(first.path)] * 2 + [str(second.path)] * 2
    running = executor.map_async(gated_square, gates, range(4), combine=False)
    try:
        first.open()
        wait_for(lambda: len(partial(executor, running.job_id)) == 2, timeout=TIMEOUT)
        wait_state(executor, done.job_id, "completed")

        def rows() -> dict[str, Any]:
            return {job.job_id: job for job in executor.list_jobs()}

        # Batch's counts may lag behind the tasks: wait until they show both gated chunks.
        listed = wait_for(lambda: (r := rows())[running.job_id].status == "50 %" and r)
        assert listed[empty].status == "No tasks in the job"
        assert (listed[empty].state, listed[empty].kind) == ("active", None)
        assert (listed[empty].failed_tasks, listed[empty].total_tasks) == (0, 0)
        assert listed[running.job_id].state == "active"
        assert listed[running.job_id].kind == "map"
        assert (listed[running.job_id].completed_tasks, listed[running.job_id].total_tasks) == (
            2,
            4,
        )
        assert listed[done.job_id].status == "100 %"
        assert listed[done.job_id].state == "completed"
        assert (listed[done.job_id].failed_tasks, listed[done.job_id].total_tasks) == (1, 2)

        active = {job.job_id for job in executor.list_jobs(state="active")}
        assert {empty, running.job_id} <= active and done.job_id not in active
        completed = {job.job_id for job in executor.list_jobs(state=["completed"])}
        assert done.job_id in completed and running.job_id not in completed

        table = format_jobs([listed[empty], listed[running.job_id], listed[done.job_id]])
        lines = table.splitlines()
        assert lines[0].split() == ["Id", "State", "Status", "FailedTasks", "TotalTasks"]
        assert lines[1].split() == [
            "1",
            empty,
            "active",
            "No",
            "tasks",
            "in",
            "the",
            "job",
            "0",
            "0",
        ]
        assert lines[2].split() == ["2", running.job_id, "active", "50", "%", "0", "4"]
        assert lines[3].split() == ["3", done.job_id, "completed", "100", "%", "1", "2"]
        assert len({len(line) for line in lines}) == 1  # columns aligned

        json.dumps([job.to_json() for job in listed.values()])
        with pytest.raises(ValueError, match="unknown job state 'finished'"):
            executor.list_jobs(state="finished")
    finally:
        second.open()
    assert running.result(timeout=TIMEOUT) == [0, 1, 4, 9]


def test_list_jobs_costs_a_few_requests_not_one_per_task(
    executor: AzureBatchExecutor, batch_service: BatchEmulator
) -> None:
    future = executor.map_async(identity, range(24), combine=False)
    assert future.result(timeout=TIMEOUT) == list(range(24))

    def measure() -> tuple[list[Any], dict[str, int]]:
        before = batch_service.request_counts
        jobs = executor.list_jobs()
        after = batch_service.request_counts
        delta = {op: after.get(op, 0) - before.get(op, 0) for op in after}
        return jobs, {op: count for op, count in delta.items() if count}

    # One page of jobs, and one task-counts request per job: nothing per task. (The
    # emulator is shared: a request from another test's leftover thread may land in a
    # measurement, so a few are taken; a request per task would be in every one.)
    for _ in range(5):
        jobs, delta = measure()
        if delta == {"Jobs_ListJobs": 1, "Jobs_GetJobTaskCounts": len(jobs)}:
            break
    assert delta == {"Jobs_ListJobs": 1, "Jobs_GetJobTaskCounts": len(jobs)}
    assert [job.total_tasks for job in jobs if job.job_id == future.job_id] == [24]


# --------------------------------------------------------------------------- job_result


@pytest.mark.parametrize("combine", [True, False], ids=["combined", "chunks"])
def test_job_result_of_a_map_with_each_error_mode(
    executor: AzureBatchExecutor, combine: bool
) -> None:
    future = executor.map_async(
        explode_on_negative, [1, -2, 3, -4, 5], chunksize=2, combine=combine, errors="return"
    )
    future.result(timeout=TIMEOUT)
    job_id = future.job_id

    returned = executor.job_result(job_id)  # the job's own mode: "return"
    assert [v for v in returned if not isinstance(v, BaseException)] == [10, 30, 50]
    assert [type(v) for v in returned[1::2]] == [KeyError, KeyError]
    assert executor.job_result(job_id, errors="skip") == [10, 30, 50]
    with pytest.raises(KeyError, match="negative item -2"):
        executor.job_result(job_id, errors="raise")
    with pytest.raises(ValueError, match="errors must be one of"):
        executor.job_result(job_id, errors="ignore")  # type: ignore[arg-type]
    # The result does not depend on the process: another executor reads the same.
    again = executor.job_result(job_id, errors="skip")
    assert again == [10, 30, 50]


def test_job_result_of_a_reduced_map(executor: AzureBatchExecutor) -> None:
    future = executor.map_async(identity, range(6), chunksize=2, reduce=operator.add)
    assert future.result(timeout=TIMEOUT) == 15
    assert executor.job_result(future.job_id) == 15
    assert executor.job_result(future.job_id, errors="raise") == 15
    with pytest.raises(ValueError, match="reduced in the cloud"):
        executor.job_result(future.job_id, errors="skip")


def test_job_result_of_submit_calls(executor: AzureBatchExecutor) -> None:
    futures = [executor.submit(explode_on_negative, x) for x in (1, -1, 2)]
    for future in futures:
        future.exception(timeout=TIMEOUT)
    job_id = executor.submit_job_id
    outcomes = executor.job_result(job_id)
    assert outcomes[0::2] == [10, 20] and isinstance(outcomes[1], KeyError)
    assert executor.job_result(job_id, errors="skip") == [10, 20]
    with pytest.raises(ValueError, match="attach one of them"):
        executor.attach(job_id)


def test_job_result_of_a_running_job(executor: AzureBatchExecutor, tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    future = executor.map_async(gated_square, [str(gate.path)] * 2, range(2))
    try:
        with pytest.raises(JobNotDoneError, match="is still running") as caught:
            executor.job_result(future.job_id)
        assert caught.value.job_id == future.job_id
    finally:
        gate.open()
    assert future.result(timeout=TIMEOUT) == [0, 1]
    wait_state(executor, future.job_id, "completed")
    assert executor.job_result(future.job_id) == [0, 1]


def test_job_result_of_a_cut_short_submission(
    executor: AzureBatchExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A submission still adding tasks (or whose submitter died) has an incomplete job."""
    monkeypatch.setattr(_mapjob, "PACK_CHUNKS", 2)  # add tasks two chunks at a time
    release = threading.Event()

    def items() -> Iterator[int]:
        for item in range(6):
            if item == 4:  # chunks 0 and 1 were added; 2 and 3 wait in the window
                release.wait(TIMEOUT)
            yield item

    job_id = f"cut-short-{uuid.uuid4().hex[:12]}"
    submitted: dict[str, Any] = {}

    def submit() -> None:
        submitted["future"] = executor.map_async(identity, items(), job_id=job_id)

    thread = threading.Thread(target=submit)
    thread.start()
    try:

        def added() -> int:
            try:
                return executor.get_job(job_id).counts.total
            except JobNotFoundError:
                return 0

        wait_for(lambda: added() >= 2, timeout=TIMEOUT)
        info = executor.get_job(job_id)
        assert info.submitted is False
        assert info.planned is None  # a generator has no length
        assert "? (submission incomplete)" in str(info)
        with pytest.raises(IncompleteJobError, match="was cut short") as caught:
            executor.job_result(job_id)
        assert (caught.value.job_id, caught.value.added, caught.value.planned) == (job_id, 2, None)
        with pytest.raises(IncompleteJobError):
            executor.attach(job_id)
    finally:
        release.set()
        thread.join(TIMEOUT)
    assert submitted["future"].result(timeout=TIMEOUT) == list(range(6))
    assert executor.get_job(job_id).submitted is True


# --------------------------------------------------------------------------- partial_results


def test_partial_results_while_the_job_runs(executor: AzureBatchExecutor, tmp_path: Path) -> None:
    first, second = Gate(tmp_path / "first"), Gate(tmp_path / "second")
    gates = [str(first.path)] * 2 + [str(second.path)] * 3
    future = executor.map_async(gated_square, gates, range(5), chunksize=2)
    try:
        assert partial(executor, future.job_id) == {}
        first.open()  # chunk 0 (items 0, 1) finishes; chunks 1 and 2 wait for the second gate
        wait_for(lambda: partial(executor, future.job_id) == {0: 0, 1: 1}, timeout=TIMEOUT)
        assert not future.done()
        assert dict(future.partial_results()) == {0: 0, 1: 1}
        assert executor.get_job(future.job_id).state == "active"
        with pytest.raises(JobNotDoneError):
            executor.job_result(future.job_id)
    finally:
        second.open()
    assert future.result(timeout=TIMEOUT) == [0, 1, 4, 9, 16]
    assert list(executor.partial_results(future.job_id)) == [(i, i * i) for i in range(5)]


def test_partial_results_of_a_foreign_or_unknown_job(
    executor: AzureBatchExecutor, sdk: BatchClient
) -> None:
    with pytest.raises(ForeignJobError):
        list(executor.partial_results(foreign_job(sdk)))
    with pytest.raises(JobNotFoundError):
        list(executor.partial_results("no-such-job"))


# --------------------------------------------------------------------------- job_logs


def test_job_logs_of_failed_tasks_and_of_a_named_task(executor: AzureBatchExecutor) -> None:
    future = executor.map_async(die_on_three, range(5), combine=False)
    failure = future.exception(timeout=TIMEOUT)
    assert isinstance(failure, TaskFailedError) and failure.exit_code == 3

    logs = executor.job_logs(future.job_id)
    assert [log.task_id for log in logs] == ["3"]
    (log,) = logs
    assert log.state == "completed"
    assert log.exit_code == 3
    assert "dying on item 3" in log.stderr
    assert log.failure is not None and "FailureExitCode" in log.failure
    assert "dying on item 3" in str(log) and "exit code 3" in str(log)

    (named,) = executor.job_logs(future.job_id, "0")
    assert (named.task_id, named.exit_code, named.failure) == ("0", 0, None)
    assert f"chunk 0 of job {future.job_id}" in named.stdout
    assert "--- stdout ---" in str(named)

    with pytest.raises(JobNotFoundError, match="has no task 'nine'"):
        executor.job_logs(future.job_id, "nine")
    with pytest.raises(JobNotFoundError):
        executor.job_logs("no-such-job")


def test_job_logs_of_a_job_without_failures(executor: AzureBatchExecutor) -> None:
    future = executor.map_async(identity, range(2))
    future.result(timeout=TIMEOUT)
    assert executor.job_logs(future.job_id) == []


@pytest.mark.parametrize("combine", [True, False], ids=["combined", "chunks"])
def test_job_result_names_a_task_that_died(executor: AzureBatchExecutor, combine: bool) -> None:
    """Read back by ID (no poller involved), a chunk that died is its TaskFailedError."""
    future = executor.map_async(die_on_three, range(5), combine=combine)
    assert isinstance(future.exception(timeout=TIMEOUT), TaskFailedError)
    with pytest.raises(TaskFailedError) as caught:
        executor.job_result(future.job_id)
    failure = caught.value
    assert failure.chunk == 3 and "chunk 3" in str(failure)
    if not combine:  # read on the client, which asks Batch about the task
        assert (failure.task_id, failure.exit_code) == ("3", 3)
        assert failure.stderr_tail is not None and "dying on item 3" in failure.stderr_tail
    # (The cloud combine has no access to Batch: job_logs shows the task's output.)
    (log,) = [log for log in executor.job_logs(future.job_id) if log.task_id == "3"]
    assert "dying on item 3" in log.stderr


@pytest.mark.parametrize("combine", [True, False], ids=["combined", "chunks"])
def test_items_of_a_chunk_that_died_are_errors_in_place(
    executor: AzureBatchExecutor, combine: bool
) -> None:
    """The items of a chunk whose task died are its failure, each in its place."""
    future = executor.map_async(die_on_three, range(5), combine=combine, errors="return")
    values = future.result(timeout=TIMEOUT)
    assert values[:3] + values[4:] == [0, 1, 2, 4]
    assert isinstance(values[3], TaskFailedError)
    assert executor.job_result(future.job_id, errors="skip") == [0, 1, 2, 4]


# --------------------------------------------------------------------------- terminate_job


def test_terminate_job(executor: AzureBatchExecutor, tmp_path: Path) -> None:
    first, stuck = Gate(tmp_path / "first"), Gate(tmp_path / "stuck")
    gates = [str(first.path), str(stuck.path), str(stuck.path)]
    future = executor.map_async(gated_square, gates, range(3))
    try:
        first.open()
        wait_for(lambda: partial(executor, future.job_id) == {0: 0}, timeout=TIMEOUT)
        wait_for(lambda: stuck.started(1) and stuck.started(2), timeout=TIMEOUT)

        assert executor.terminate_job(future.job_id) is True
        info = wait_state(executor, future.job_id, "completed")
        assert info.terminate_reason == "UserTerminate"
        assert info.counts.running == 0
        assert executor.terminate_job(future.job_id) is False  # already ended

        # What finished stays readable, and the result says why the rest is missing.
        assert partial(executor, future.job_id) == {0: 0}
        with pytest.raises(TaskFailedError, match=r"task '1'.*it was terminated"):
            executor.job_result(future.job_id)
    finally:
        stuck.open()
    with pytest.raises(JobNotFoundError):
        executor.terminate_job("no-such-job")


def test_a_waiting_map_future_learns_that_its_job_was_terminated(
    make_executor: Callable[..., AzureBatchExecutor], tmp_path: Path
) -> None:
    # One worker: item 0 runs (held at its gate), item 1 and the combine stay queued, and
    # a terminated job leaves them active for ever: the future must not wait for them.
    executor = make_executor(max_workers=1)
    gate = Gate(tmp_path / "gate")
    future = executor.map_async(gated_square, [str(gate.path)] * 2, range(2))
    try:
        wait_for(lambda: gate.started(0), timeout=TIMEOUT)
        assert make_executor().terminate_job(future.job_id) is True  # as another process would
        with pytest.raises(JobError, match=r"ended \(UserTerminate\) before this work ran"):
            future.result(timeout=TIMEOUT)
    finally:
        gate.open()


def test_waiting_submit_futures_learn_that_their_job_was_terminated(
    make_executor: Callable[..., AzureBatchExecutor], tmp_path: Path
) -> None:
    executor = make_executor(max_workers=1)
    gate = Gate(tmp_path / "gate")
    running = executor.submit(gated, str(gate.path), "first")
    queued = executor.submit(gated, str(gate.path), "second")
    try:
        wait_for(lambda: gate.started("first"), timeout=TIMEOUT)
        assert make_executor().terminate_job(running.job_id) is True
        with pytest.raises(TaskFailedError, match="it was terminated"):
            running.result(timeout=TIMEOUT)
        with pytest.raises(JobError, match="ended"):
            queued.result(timeout=TIMEOUT)
    finally:
        gate.open()


# --------------------------------------------------------------------------- delete_job


def test_delete_job_removes_the_job_and_everything_it_stored(
    executor: AzureBatchExecutor, sdk: BatchClient
) -> None:
    future = executor.map_async(identity, range(4), chunksize=2)
    assert future.result(timeout=TIMEOUT) == [0, 1, 2, 3]
    names = stored(executor, future.job_id)
    assert _names.result(future.job_id) in names
    assert _names.chunk_outcome(future.job_id, 1) in names

    assert executor.delete_job(future.job_id) is True
    assert stored(executor, future.job_id) == []

    def gone() -> bool:
        try:
            executor.get_job(future.job_id)
        except JobNotFoundError:
            return True
        return False

    wait_for(gone, timeout=TIMEOUT)
    assert future.job_id not in {job.id for job in sdk.list_jobs()}
    with pytest.raises(JobNotFoundError, match="neither the Batch account"):
        executor.delete_job(future.job_id)


def test_delete_job_of_a_running_job(executor: AzureBatchExecutor, tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    future = executor.map_async(gated_square, [str(gate.path)] * 2, range(2))
    try:
        wait_for(lambda: gate.started(0), timeout=TIMEOUT)
        assert executor.delete_job(future.job_id) is True
        assert stored(executor, future.job_id) == []
    finally:
        gate.open()
    with pytest.raises(Exception, match=future.job_id):
        future.result(timeout=TIMEOUT)  # the job is gone: the future says so, never hangs


def test_delete_job_unknown_and_malformed_ids(executor: AzureBatchExecutor) -> None:
    with pytest.raises(JobNotFoundError, match="no job 'no-such-job'") as caught:
        executor.delete_job("no-such-job")
    assert caught.value.job_id == "no-such-job"
    for bad in ("", "has space", "../escape", "a/b", "x" * 65):
        with pytest.raises(ValueError, match="invalid job ID"):
            executor.delete_job(bad)


def test_delete_job_finishes_an_interrupted_deletion(
    executor: AzureBatchExecutor, sdk: BatchClient
) -> None:
    """The Batch job is gone but its data is not: delete_job removes the data."""
    future = executor.map_async(identity, range(2))
    future.result(timeout=TIMEOUT)
    sdk.begin_delete_job(future.job_id, polling_interval=1).result()
    assert stored(executor, future.job_id) != []
    assert executor.delete_job(future.job_id) is True
    assert stored(executor, future.job_id) == []


# --------------------------------------------------------------------------- foreign jobs


def test_a_foreign_job_is_refused_clearly(executor: AzureBatchExecutor, sdk: BatchClient) -> None:
    job_id = foreign_job(sdk)
    for action in (
        lambda: executor.attach(job_id),
        lambda: executor.job_result(job_id),
        lambda: executor.resume(job_id, identity, [1]),
    ):
        with pytest.raises(ForeignJobError, match="not created by batchexecutor") as caught:
            action()
        assert caught.value.job_id == job_id
    listed = [job for job in executor.list_jobs() if job.job_id == job_id]
    assert [(job.kind, job.status) for job in listed] == [(None, "No tasks in the job")]


# --------------------------------------------------------------------------- lost objects


@pytest.mark.parametrize("combine", [True, False], ids=["combined", "chunks"])
def test_deleted_outcomes_are_named(executor: AzureBatchExecutor, combine: bool) -> None:
    future = executor.map_async(identity, range(4), chunksize=2, combine=combine)
    assert future.result(timeout=TIMEOUT) == [0, 1, 2, 3]
    job_id = future.job_id
    store = executor._context.store
    store.delete(_names.result(job_id))
    store.delete(_names.chunk_outcome(job_id, 1))
    missing = _names.chunk_outcome(job_id, 1)
    with pytest.raises(ObjectNotFoundError, match=missing) as caught:
        executor.job_result(job_id)
    assert caught.value.name == missing
    with pytest.raises(ObjectNotFoundError, match=missing):
        executor.attach(job_id).result(timeout=TIMEOUT)


def test_a_deleted_reduced_result_is_named(executor: AzureBatchExecutor) -> None:
    future = executor.map_async(identity, range(4), chunksize=2, reduce=operator.add)
    assert future.result(timeout=TIMEOUT) == 6
    executor._context.store.delete(_names.result(future.job_id))
    with pytest.raises(ObjectNotFoundError, match=_names.result(future.job_id)):
        executor.job_result(future.job_id)
