"""``AzureBatchExecutor`` with bad input and failing work, on both stacks: what the caller
sees, where (at submission or from the future), and that it says what went wrong."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable

import pytest
from azure.batch import BatchClient
from azure.core.exceptions import ResourceNotFoundError

from batchexecutor import (
    AzureBatchExecutor,
    BatchExecutorError,
    CorruptObjectError,
    RemoteError,
    SerializationError,
    TaskFailedError,
    _names,
)
from batchexecutor._results import submit_outcome
from batchexecutor._serialize import Record, RecordWriter, pickle_payload
from tests.conftest import wait_for
from tests.executor import dataplane, workloads

RESULT_TIMEOUT = 60.0
Make = Callable[..., AzureBatchExecutor]


def job_gone(client: BatchClient, job_id: str) -> bool:
    try:
        job = client.get_job(job_id)
    except ResourceNotFoundError:
        return True
    return str(getattr(job.state, "value", job.state)) == "deleting"


# --------------------------------------------------------------------------- bad arguments


def test_constructor_rejects_bad_options(make_executor: Make) -> None:
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        make_executor(max_workers=0)
    with pytest.raises(TypeError, match="max_workers must be an int"):
        make_executor(max_workers="2")
    with pytest.raises(ValueError, match="max_payload_size"):
        make_executor(max_payload_size=0)
    with pytest.raises(TypeError, match="BatchConfig"):
        AzureBatchExecutor({"pool_id": "pool"})  # type: ignore[arg-type]


def test_submit_rejects_a_non_callable(executor: AzureBatchExecutor) -> None:
    with pytest.raises(TypeError, match="not callable"):
        executor.submit(42)  # type: ignore[arg-type]


def test_map_rejects_bad_arguments(executor: AzureBatchExecutor, batch_client: BatchClient) -> None:
    before = {job.id for job in batch_client.list_jobs()}
    with pytest.raises(TypeError, match="not callable"):
        executor.map(42, [1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="argument 2 of map is not iterable"):
        executor.map(workloads.add3, [1], 5, [2])  # type: ignore[arg-type]
    for chunksize in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="chunksize must be >= 1"):
            executor.map(dataplane.square, [1], chunksize=chunksize)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="chunksize must be >= 1"):
            executor.map_async(dataplane.square, [1], chunksize=chunksize)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="errors must be one of"):
        executor.map_async(dataplane.square, [1], errors="ignore")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="reduce must be a callable"):
        executor.map_async(dataplane.square, [1], reduce=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs combine=True"):
        executor.map_async(dataplane.square, [1], reduce=dataplane.add, combine=False)
    # Nothing was created for any of them.
    assert {job.id for job in batch_client.list_jobs()} == before


# --------------------------------------------------------------------------- pickling, size


def test_unpicklable_callable_fails_at_submit(executor: AzureBatchExecutor) -> None:
    lock = threading.Lock()

    def holds_a_lock() -> bool:
        return lock.locked()

    with pytest.raises(SerializationError) as raised:
        executor.submit(holds_a_lock)
    message = str(raised.value)
    assert "holds_a_lock" in message
    assert "lock" in raised.value.reason
    assert raised.value.action == "pickle"


def test_unpicklable_argument_fails_at_submit(executor: AzureBatchExecutor) -> None:
    with pytest.raises(SerializationError, match=r"submit\(\) call .*identity.*lock"):
        executor.submit(workloads.identity, threading.Lock())
    with pytest.raises(SerializationError, match="lock"):
        executor.submit(workloads.describe_call, 1, c=threading.Lock())
    # The executor goes on working.
    assert executor.submit(dataplane.square, 5).result(timeout=RESULT_TIMEOUT) == 25


def test_unpicklable_map_input_fails_at_map_async(
    executor: AzureBatchExecutor, batch_client: BatchClient, request: pytest.FixtureRequest
) -> None:
    job_id = f"unpicklable-{request.node.callspec.id}-{id(executor):x}"
    with pytest.raises(SerializationError, match="item 2 of job") as raised:
        executor.map_async(workloads.identity, [1, 2, threading.Lock(), 4], job_id=job_id)
    assert "lock" in raised.value.reason
    # The job that had been started for it is removed.
    wait_for(lambda: job_gone(batch_client, job_id), timeout=RESULT_TIMEOUT)

    lock = threading.Lock()
    with pytest.raises(SerializationError, match=r"the function .*<lambda> of a map"):
        executor.map_async(lambda x: lock.locked(), [1])

    def uses_lock(x: int) -> bool:
        return lock.locked()

    with pytest.raises(SerializationError, match="uses_lock"):
        executor.map_async(uses_lock, [1])
    with pytest.raises(SerializationError, match="uses_lock"):
        executor.map(uses_lock, [1])


def test_oversize_arguments_fail_at_submit(make_executor: Make) -> None:
    executor = make_executor(max_payload_size=1000)
    with pytest.raises(ValueError, match="max_payload_size of 1,000") as raised:
        executor.submit(workloads.identity, b"x" * 2000)
    assert "submit() call" in str(raised.value)
    with pytest.raises(ValueError, match=r"item 1 of job .* max_payload_size of 1,000"):
        executor.map_async(workloads.identity, [b"small", b"x" * 2000])
    assert executor.submit(workloads.identity, b"small").result(timeout=RESULT_TIMEOUT) == b"small"


# --------------------------------------------------------------------------- failing work


def test_a_raising_function(executor: AzureBatchExecutor) -> None:
    future = executor.submit(workloads.explode_on_negative, -1)
    error = future.exception(timeout=RESULT_TIMEOUT)
    assert isinstance(error, KeyError)
    with pytest.raises(KeyError, match="negative item -1") as raised:
        future.result()
    cause = raised.value.__cause__
    assert isinstance(cause, RemoteError)
    assert cause.type_name == "KeyError"
    assert cause.task_id == future.task_id
    assert "explode_on_negative" in cause.traceback
    assert "Traceback" in cause.traceback


def test_an_unpicklable_exception_arrives_as_remote_error(executor: AzureBatchExecutor) -> None:
    future = executor.submit(dataplane.raise_unpicklable, 5)
    with pytest.raises(RemoteError, match="HoldsALock") as raised:
        future.result(timeout=RESULT_TIMEOUT)
    assert "locked 5" in raised.value.traceback
    assert raised.value.unpicklable


def test_a_task_that_exits(executor: AzureBatchExecutor) -> None:
    future = executor.submit(workloads.die_with_stderr, 3, "farewell from the task")
    with pytest.raises(TaskFailedError) as raised:
        future.result(timeout=RESULT_TIMEOUT)
    error = raised.value
    assert error.exit_code == 3
    assert error.job_id == future.job_id and error.task_id == future.task_id
    assert error.stderr_tail is not None and "farewell from the task" in error.stderr_tail
    assert "farewell from the task" in str(error)
    assert "exit code 3" in str(error)


def test_sys_exit_is_an_outcome(executor: AzureBatchExecutor) -> None:
    future = executor.submit(dataplane.call_sys_exit, 4)
    with pytest.raises(SystemExit) as raised:
        future.result(timeout=RESULT_TIMEOUT)
    assert raised.value.code == 4


@pytest.mark.parametrize(
    ("fn", "args", "kind"),
    [(workloads.return_lock, (), "lock"), (workloads.return_generator, (3,), "generator")],
)
def test_an_unpicklable_result(
    executor: AzureBatchExecutor, fn: Callable[..., object], args: tuple[object, ...], kind: str
) -> None:
    future = executor.submit(fn, *args)
    with pytest.raises(SerializationError) as raised:
        future.result(timeout=RESULT_TIMEOUT)
    message = str(raised.value)
    assert f"result of item {future.task_id}" in message
    assert kind in message
    assert raised.value.action == "pickle"


def test_an_unpicklable_result_in_a_map(executor: AzureBatchExecutor) -> None:
    results = executor.map(dataplane.lock_on_three, range(5), chunksize=2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(SerializationError, match="result of item 3"):
        next(results)
    returned = executor.map_async(dataplane.lock_on_three, range(5), chunksize=2, errors="return")
    values = returned.result(timeout=RESULT_TIMEOUT)
    assert values[:3] == [0, 1, 2] and values[4] == 4
    assert isinstance(values[3], SerializationError)


# --------------------------------------------------------------------------- broken outcomes


def _outcome(job_id: str, chunk: int, value: object) -> bytes:
    buffer = io.BytesIO()
    writer = RecordWriter(buffer, info={"kind": "outcome", "job": job_id, "chunk": chunk})
    writer.write(Record(chunk, "ok", pickle_payload(value, what="a value")))
    writer.close({"items": 1, "failed": 0})
    return buffer.getvalue()


def test_reading_a_corrupt_submit_outcome(executor: AzureBatchExecutor) -> None:
    store = executor._context.store
    job_id = f"corrupt-{id(executor):x}"
    name = _names.chunk_outcome(job_id, 7)
    good = _outcome(job_id, 7, {"answer": 42})
    store.put(name, good)
    assert submit_outcome(store, job_id, 7) == (True, {"answer": 42})

    mangled = {
        "garbage": b"this is not an outcome at all",
        "empty": b"",
        "truncated": good[: len(good) - 10],
        "flipped": good[:-30] + bytes([good[-30] ^ 0xFF]) + good[-29:],
    }
    for how, data in mangled.items():
        store.put(name, data)
        with pytest.raises(CorruptObjectError) as raised:
            submit_outcome(store, job_id, 7)
        assert f"outcome of chunk 7 of job {job_id!r}" in str(raised.value), how
    store.delete_prefix(_names.job_prefix(job_id))


@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_a_corrupt_chunk_outcome_end_to_end(make_executor: Make, how: str) -> None:
    """Chunk 1's task mangles chunk 0's stored outcome; reading the job's result (from
    the chunks' outcomes: no combine) finds it corrupt, and says which chunk."""
    executor = make_executor(max_workers=1)
    future = executor.map_async(workloads.mangle_first_chunk, [0, 1], [how, how], combine=False)
    with pytest.raises(CorruptObjectError) as raised:
        future.result(timeout=RESULT_TIMEOUT)
    assert f"outcome of chunk 0 of job {future.job_id!r}" in str(raised.value)


def test_a_corrupt_chunk_outcome_read_by_the_combine(make_executor: Make) -> None:
    """The same, with the cloud combine reading the outcomes: the corrupt chunk's items
    fail in place (``errors="return"``), or the result raises (``"raise"``)."""
    executor = make_executor(max_workers=1)
    returned = executor.map_async(
        workloads.mangle_first_chunk, [0, 1], ["garbage"] * 2, errors="return"
    )
    values = returned.result(timeout=RESULT_TIMEOUT)
    assert len(values) == 2 and values[1] == 1
    assert isinstance(values[0], CorruptObjectError)
    assert f"outcome of chunk 0 of job {returned.job_id!r}" in str(values[0])

    raised = executor.map_async(workloads.mangle_first_chunk, [0, 1], ["truncate"] * 2)
    with pytest.raises(CorruptObjectError, match="outcome of chunk 0 of job"):
        raised.result(timeout=RESULT_TIMEOUT)


def test_a_dying_task_in_a_map(executor: AzureBatchExecutor) -> None:
    items = [1, 3, 5]  # the task of item 3 (chunk 1) dies
    # Without a combine, the client reads the chunks and asks Batch about the dead one.
    future = executor.map_async(workloads.die_on_three, items, errors="raise", combine=False)
    with pytest.raises(TaskFailedError) as raised:
        future.result(timeout=RESULT_TIMEOUT)
    assert raised.value.chunk == 1
    assert raised.value.exit_code == 3
    assert raised.value.stderr_tail is not None
    assert "dying on item 3" in raised.value.stderr_tail

    # With it, the combine on the node reports the chunk that stored nothing.
    combined = executor.map_async(workloads.die_on_three, items, errors="raise")
    with pytest.raises(TaskFailedError) as raised:
        combined.result(timeout=RESULT_TIMEOUT)
    assert raised.value.chunk == 1

    results = executor.map(workloads.die_on_three, items)
    assert next(results) == 1
    with pytest.raises(TaskFailedError) as iterated:
        next(results)
    assert iterated.value.chunk == 1

    # The dead chunk's items fail in place, or are dropped.
    returned = executor.map_async(workloads.die_on_three, items, errors="return")
    values = returned.result(timeout=RESULT_TIMEOUT)
    assert values[0] == 1 and values[2] == 5
    assert isinstance(values[1], TaskFailedError)
    skipped = executor.map_async(workloads.die_on_three, items, errors="skip")
    assert skipped.result(timeout=RESULT_TIMEOUT) == [1, 5]


def test_a_pool_that_does_not_exist(make_executor: Make, batch_client: BatchClient) -> None:
    executor = make_executor(pool_id="nope")
    future = executor.submit(dataplane.square, 2)
    with pytest.raises(BatchExecutorError, match="pool 'nope' does not exist"):
        future.result(timeout=RESULT_TIMEOUT)
    later = executor.submit(dataplane.square, 3)
    with pytest.raises(BatchExecutorError, match="pool 'nope' does not exist"):
        later.result(timeout=RESULT_TIMEOUT)

    before = {job.id for job in batch_client.list_jobs()}
    with pytest.raises(BatchExecutorError, match="pool 'nope' does not exist"):
        executor.map_async(dataplane.square, range(2))
    with pytest.raises(BatchExecutorError, match="pool 'nope' does not exist"):
        executor.map(dataplane.square, range(2))
    assert {job.id for job in batch_client.list_jobs()} == before
