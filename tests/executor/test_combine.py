"""The cloud combine (batchexecutor._combine), in process on a local store.

The worker tests run it as ``python -m batchexecutor.worker combine``; here are its
rules: error modes, reduce, broken chunks, order, and bounded memory.
"""

from __future__ import annotations

import io
import threading
import tracemalloc
from pathlib import Path

import pytest

from batchexecutor import _names
from batchexecutor._combine import combine
from batchexecutor._errors import (
    CorruptObjectError,
    ObjectNotFoundError,
    RemoteError,
    SerializationError,
    TaskFailedError,
    VersionMismatchError,
)
from batchexecutor._serialize import (
    NO_ITEM,
    Record,
    RecordReader,
    error_payload,
    pickle_payload,
    versions,
    write_records,
)
from batchexecutor._storage import LocalStore
from tests.executor import dataplane
from tests.executor.dataplane import read_records

JOB = "job-c"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path)


def ok(item: int, value: object) -> Record:
    return Record(item, "ok", pickle_payload(value, what="v"))


def failed(item: int, error: BaseException) -> Record:
    return Record(
        item, "error", error_payload(error, item=item, task_id="t", traceback_text="tb\n")
    )


def put_outcome(store: LocalStore, chunk: int, records: list[Record], **info: object) -> None:
    """Chunk ``chunk``'s outcome; ``info`` overrides the header (to forge a misplaced one)."""
    with store.writer(_names.chunk_outcome(JOB, chunk)) as file:
        header = {"kind": "outcome", "job": JOB, "chunk": chunk, **info}
        write_records(file, records, info=header)


def put_input(store: LocalStore, chunk: int, items: range) -> None:
    records = [Record(i, "ok", pickle_payload((None, (i,), {}), what="c")) for i in items]
    with store.writer(_names.chunk_input(JOB, chunk)) as file:
        write_records(file, records)


def three_chunks(store: LocalStore) -> None:
    """Items 0-8 in chunks of 3; item 4 failed."""
    put_outcome(store, 0, [ok(0, 0), ok(1, 10), ok(2, 20)])
    put_outcome(store, 1, [ok(3, 30), failed(4, KeyError("four")), ok(5, 50)])
    put_outcome(store, 2, [ok(6, 60), ok(7, 70), ok(8, 80)])


def result(store: LocalStore) -> dataplane.Stream:
    return read_records(store, _names.result(JOB))


# --------------------------------------------------------------------------- error modes


def test_return_mode_keeps_failures_in_place(store: LocalStore) -> None:
    three_chunks(store)
    summary = combine(store, JOB, 3, mode="return")
    stream = result(store)
    assert [item for item, _, _ in stream.values] == list(range(9))
    values = stream.results
    assert values[:4] == [0, 10, 20, 30] and values[5:] == [50, 60, 70, 80]
    assert isinstance(values[4], KeyError) and isinstance(values[4].__cause__, RemoteError)
    assert values[4].__cause__.item == 4
    assert stream.info == {
        "kind": "result",
        "job": JOB,
        "chunks": 3,
        "mode": "return",
        "reduced": False,
    }
    assert not summary.failed and summary.failed_items == 1 and summary.records == 9
    assert stream.summary == summary.to_json()
    # The chunk outcomes stay where they were.
    assert store.exists(_names.chunk_outcome(JOB, 1))


def test_skip_mode_drops_failures(store: LocalStore) -> None:
    three_chunks(store)
    summary = combine(store, JOB, 3, mode="skip")
    assert result(store).results == [0, 10, 20, 30, 50, 60, 70, 80]
    assert summary.dropped == 1 and not summary.failed


def test_raise_mode_stops_at_the_first_failure(store: LocalStore) -> None:
    three_chunks(store)
    store.delete(_names.chunk_outcome(JOB, 2))  # never read: the combine stops before it
    summary = combine(store, JOB, 3, mode="raise")
    stream = result(store)
    assert [item for item, _, _ in stream.values] == [0, 1, 2, 3, 4]
    error = stream.results[-1]
    assert isinstance(error, KeyError)
    assert error.__cause__.item == 4 and "tb" in error.__cause__.traceback
    assert summary.failed and summary.broken_chunks == []


def test_no_chunks(store: LocalStore) -> None:
    summary = combine(store, JOB, 0)
    assert result(store).values == [] and not summary.failed


def test_arguments_are_checked(store: LocalStore) -> None:
    with pytest.raises(ValueError, match="mode"):
        combine(store, JOB, 1, mode="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunks"):
        combine(store, JOB, -1)
    with pytest.raises(ValueError, match="job ID"):
        combine(store, "a/b", 1)


# --------------------------------------------------------------------------- broken chunks


def test_missing_outcome_fails_the_chunks_items_by_name(store: LocalStore) -> None:
    put_outcome(store, 0, [ok(0, 0), ok(1, 1)])
    put_input(store, 1, range(2, 4))
    put_outcome(store, 2, [ok(4, 4)])
    summary = combine(store, JOB, 3, mode="return")
    values = result(store).results
    assert values[0:2] == [0, 1] and values[4] == 4
    for error in values[2:4]:
        assert isinstance(error, TaskFailedError)
        assert error.chunk == 1 and error.job_id == JOB
        assert "the task of chunk 1 of job 'job-c' ended without an outcome" in str(error)
    assert [e.__cause__.item for e in values[2:4]] == [2, 3]
    assert summary.broken_chunks == [1] and summary.failed_items == 2 and not summary.failed


def test_truncated_outcome_keeps_what_was_read(store: LocalStore) -> None:
    put_outcome(store, 0, [ok(0, "a"), ok(1, "b"), ok(2, "c")])
    put_input(store, 0, range(0, 3))
    path = store.root / _names.chunk_outcome(JOB, 0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # the end frame and part of item 2
    combine(store, JOB, 1, mode="return")
    values = result(store).results
    assert values[:2] == ["a", "b"]
    assert isinstance(values[2], CorruptObjectError)
    assert "outcome of chunk 0 of job 'job-c' (job-c/outcomes/000000) is corrupt" in str(values[2])


def test_broken_chunk_without_input_is_one_unplaceable_failure(store: LocalStore) -> None:
    (store.root / JOB / "outcomes").mkdir(parents=True)
    (store.root / _names.chunk_outcome(JOB, 0)).write_bytes(b"garbage")
    summary = combine(store, JOB, 1, mode="return")
    stream = result(store)
    ((item, status, error),) = stream.values
    assert (item, status) == (NO_ITEM, "error") and isinstance(error, CorruptObjectError)
    assert summary.failed  # a reader cannot place it, so reading the result raises
    combine(store, JOB, 1, mode="skip")
    assert result(store).values == []


def test_outcome_of_other_versions_fails_its_items(store: LocalStore) -> None:
    put_outcome(store, 0, [ok(0, 0)])
    put_input(store, 0, range(0, 1))
    path = store.root / _names.chunk_outcome(JOB, 0)
    mine = f'"python":"{versions()["python"]}"'
    path.write_bytes(path.read_bytes().replace(mine.encode(), mine.replace("3.", "2.").encode()))
    combine(store, JOB, 1, mode="return")
    (error,) = result(store).results
    assert isinstance(error, VersionMismatchError) and "outcome of chunk 0" in str(error)


def test_misplaced_or_disordered_outcomes_are_corrupt(store: LocalStore) -> None:
    put_outcome(store, 0, [ok(0, 0)], task="fine")
    put_outcome(store, 1, [ok(1, 1)], job="other-job")  # header names another job
    put_input(store, 1, range(1, 2))
    put_outcome(store, 2, [ok(3, 3), ok(2, 2)])  # out of order
    put_input(store, 2, range(2, 4))
    summary = combine(store, JOB, 3, mode="return")
    stream = result(store)
    assert [(item, status) for item, status, _ in stream.values] == [
        (0, "ok"),
        (1, "error"),
        (3, "ok"),
        (NO_ITEM, "error"),  # item 2 cannot come after item 3: the chunk fails as a whole
    ]
    values = stream.results
    assert isinstance(values[1], CorruptObjectError) and "another chunk" in str(values[1])
    assert isinstance(values[3], CorruptObjectError) and "out of order" in str(values[3])
    assert summary.broken_chunks == [1, 2] and summary.failed


# --------------------------------------------------------------------------- reduce


def test_reduce_folds_in_order(store: LocalStore) -> None:
    put_outcome(store, 0, [ok(0, "a"), ok(1, "b")])
    put_outcome(store, 1, [ok(2, "c")])
    store.put(_names.reducer(JOB), dataplane.dumps(dataplane.add, what="r"))
    summary = combine(store, JOB, 2, reduce=True)
    stream = result(store)
    assert stream.values == [(NO_ITEM, "ok", "abc")]
    assert stream.info["reduced"] is True and not summary.failed


def test_reduce_in_each_mode(store: LocalStore) -> None:
    three_chunks(store)
    store.put(_names.reducer(JOB), dataplane.dumps(dataplane.count_failures, what="r"))
    combine(store, JOB, 3, mode="return", reduce=True)
    assert result(store).results == [(320, 1)]  # the KeyError reached the reduce function
    store.put(_names.reducer(JOB), dataplane.dumps(dataplane.add, what="r"))
    combine(store, JOB, 3, mode="skip", reduce=True)
    assert result(store).results == [320]
    summary = combine(store, JOB, 3, mode="raise", reduce=True)
    ((item, status, error),) = result(store).values
    assert (item, status) == (4, "error") and isinstance(error, KeyError) and summary.failed


def test_reduce_failure_is_recorded_with_its_traceback(store: LocalStore) -> None:
    put_outcome(store, 0, [ok(0, 1), ok(1, 4), ok(2, 5)])
    store.put(_names.reducer(JOB), dataplane.dumps(dataplane.reduce_fails, what="r"))
    summary = combine(store, JOB, 1, reduce=True, task_id="combine")
    ((item, status, error),) = result(store).values
    assert (item, status) == (1, "error") and isinstance(error, ArithmeticError)
    assert error.__cause__.task_id == "combine"
    assert "in reduce_fails" in error.__cause__.traceback
    assert summary.failed


def test_reduce_without_anything_to_reduce_or_a_reducer(store: LocalStore) -> None:
    put_outcome(store, 0, [failed(0, KeyError("k"))])
    store.put(_names.reducer(JOB), dataplane.dumps(dataplane.add, what="r"))
    combine(store, JOB, 1, mode="skip", reduce=True)
    ((_, _, error),) = result(store).values
    assert isinstance(error, TypeError) and "nothing to reduce" in str(error)
    store.delete(_names.reducer(JOB))
    summary = combine(store, JOB, 1, mode="skip", reduce=True)
    ((_, _, error),) = result(store).values
    assert isinstance(error, ObjectNotFoundError) and summary.failed
    assert str(error) == "reduce function of job 'job-c' (job-c/reduce) does not exist"


def test_unpicklable_reduced_value_is_a_serialization_error(store: LocalStore) -> None:
    put_outcome(store, 0, [ok(0, 1), ok(1, 2)])
    reducer = dataplane.dumps(lambda acc, item: threading.Lock(), what="r")
    store.put(_names.reducer(JOB), reducer)
    combine(store, JOB, 1, reduce=True)
    ((_, _, error),) = result(store).values
    assert isinstance(error, SerializationError) and "the reduced value" in str(error)


# --------------------------------------------------------------------------- memory


def test_merging_thousands_of_records_keeps_memory_bounded(store: LocalStore) -> None:
    chunks, per_chunk, size = 40, 250, 2000  # 10,000 records, 20 MB of payloads
    payload = pickle_payload(b"x" * size, what="v")
    for chunk in range(chunks):
        first = chunk * per_chunk
        put_outcome(store, chunk, [Record(first + i, "ok", payload) for i in range(per_chunk)])
    tracemalloc.start()
    try:
        summary = combine(store, JOB, chunks, mode="return")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.records == chunks * per_chunk
    assert peak < 2_000_000, f"combine peaked at {peak} bytes for {chunks * per_chunk} records"
    with store.open(_names.result(JOB)) as file:
        reader = RecordReader(file, what="result")
        assert sum(1 for _ in reader) == chunks * per_chunk
    # Frames are copied as they are: the result is the outcomes' frames back to back.
    assert (store.root / _names.result(JOB)).stat().st_size > chunks * per_chunk * size


def test_result_is_written_atomically(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    three_chunks(store)
    combine(store, JOB, 3, mode="return")
    before = (store.root / _names.result(JOB)).read_bytes()

    def broken_open(name: str) -> io.BytesIO:
        raise OSError("disk gone")

    monkeypatch.setattr(store, "open", broken_open)
    with pytest.raises(OSError, match="disk gone"):
        combine(store, JOB, 3, mode="return")
    assert (store.root / _names.result(JOB)).read_bytes() == before
