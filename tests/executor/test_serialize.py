"""The cloudpickle envelope and record streams (batchexecutor._serialize)."""

from __future__ import annotations

import io
import json
import pickle
import struct
import sys
import threading
import traceback
import types
import zlib

import cloudpickle
import pytest

from batchexecutor import __version__
from batchexecutor._errors import (
    CorruptObjectError,
    RemoteError,
    SerializationError,
    VersionMismatchError,
)
from batchexecutor._serialize import (
    FORMAT_VERSION,
    MAGIC,
    NO_ITEM,
    Record,
    RecordReader,
    RecordWriter,
    call_payload,
    dumps,
    error_payload,
    iter_records,
    load_call,
    load_error,
    load_record,
    loads,
    pickle_payload,
    unpickle_payload,
    versions,
    write_records,
)

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def other_python() -> str:
    # Same length as PYTHON, so the header's length field stays right.
    return PYTHON[:-1] + ("9" if PYTHON[-1] != "9" else "8")


def edit_header(data: bytes, old: str, new: str) -> bytes:
    """``data`` with one header field's JSON text replaced by text of the same length."""
    assert len(old) == len(new)
    head_end = 10 + struct.unpack_from(">I", data, 6)[0]
    head = data[:head_end]
    assert head.count(old.encode()) == 1, head
    return head.replace(old.encode(), new.encode()) + data[head_end:]


def header_json(data: bytes) -> dict[str, object]:
    length = struct.unpack_from(">I", data, 6)[0]
    decoded: dict[str, object] = json.loads(data[10 : 10 + length])
    return decoded


def stream_bytes(records: list[Record], **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    write_records(buffer, records, **kwargs)  # type: ignore[arg-type]
    return buffer.getvalue()


RECORDS = [
    Record(0, "ok", pickle_payload(0, what="r")),
    Record(1, "error", error_payload(ValueError("boom"), item=1)),
    Record(2, "ok", pickle_payload("two" * 50, what="r")),
    Record(NO_ITEM, "ok", b""),
]


# --------------------------------------------------------------------------- one object


def test_round_trip_of_ordinary_objects() -> None:
    factor = 3

    def scale(x: int) -> int:  # a closure: pickled by value, as user code is
        return x * factor

    for value in [None, 1, "text", b"\x00\xff", [1, {"a": (2, 3)}], {1, 2}]:
        assert loads(dumps(value, what="v"), what="v") == value
    assert loads(dumps(scale, what="f"), what="f")(2) == 6
    assert loads(dumps(lambda x: x + 1, what="f"), what="f")(1) == 2


def test_header_records_versions_and_info() -> None:
    data = dumps(42, what="v", info={"kind": "function", "job": "j"})
    assert data[:4] == MAGIC == b"\x89BXE"
    assert data[4] == FORMAT_VERSION == 1
    assert data[5:6] == b"O"
    assert header_json(data) == {
        "python": PYTHON,
        "cloudpickle": cloudpickle.__version__,
        "batchexecutor": __version__,
        "info": {"kind": "function", "job": "j"},
    }
    assert versions() == {
        "python": PYTHON,
        "cloudpickle": cloudpickle.__version__,
        "batchexecutor": __version__,
    }


def test_unpicklable_object_fails_in_the_caller_naming_what_and_why() -> None:
    lock = threading.Lock()
    with pytest.raises(SerializationError) as caught:
        dumps({"lock": lock}, what="argument 0 of submit()")
    error = caught.value
    assert error.what == "argument 0 of submit()"
    assert error.action == "pickle"
    assert "lock" in error.reason and "TypeError" in error.reason
    assert str(error).startswith("cannot pickle argument 0 of submit(): TypeError:")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("python", other_python()),
        ("cloudpickle", "9" * len(cloudpickle.__version__)),
        ("batchexecutor", "9" * len(__version__)),
    ],
)
def test_version_mismatch_is_reported_before_unpickling(field: str, value: str) -> None:
    mine = versions()[field]
    data = edit_header(dumps(1, what="v"), f'"{field}":"{mine}"', f'"{field}":"{value}"')
    with pytest.raises(VersionMismatchError) as caught:
        loads(data, what="function of job 'j'")
    error = caught.value
    assert error.writer[field] == value and error.reader[field] == mine
    assert error.differing == [field]
    assert value in str(error) and mine in str(error)
    assert "function of job 'j'" in str(error)


def test_future_format_is_a_version_mismatch() -> None:
    data = bytearray(dumps(1, what="v"))
    data[4] = FORMAT_VERSION + 1
    with pytest.raises(VersionMismatchError, match="format 2") as caught:
        loads(bytes(data), what="v")
    assert caught.value.differing == ["format"]


def test_every_truncation_is_reported_as_corrupt() -> None:
    data = dumps({"key": list(range(20))}, what="v")
    for cut in range(len(data)):
        with pytest.raises(CorruptObjectError) as caught:
            loads(data[:cut], what="the outcome of chunk 3")
        assert caught.value.what == "the outcome of chunk 3"
        assert str(caught.value).startswith("the outcome of chunk 3 is corrupt: ")


def test_garbage_and_flipped_bits_are_reported_as_corrupt() -> None:
    data = dumps(list(range(50)), what="v")
    for position in range(len(data) - 50, len(data)):  # inside the pickle: the checksum
        flipped = bytearray(data)
        flipped[position] ^= 0x10
        with pytest.raises(CorruptObjectError, match="checksum"):
            loads(bytes(flipped), what="v")
    for garbage in [b"", b"hello", b"PK\x03\x04" + bytes(100), pickle.dumps(1)]:
        with pytest.raises(CorruptObjectError):
            loads(garbage, what="v")
    with pytest.raises(CorruptObjectError, match="unexpected bytes"):
        loads(data + b"x", what="v")
    with pytest.raises(CorruptObjectError, match="record stream"):
        loads(stream_bytes(RECORDS), what="v")


def test_garbled_header_json_is_corrupt() -> None:
    data = edit_header(dumps(1, what="v"), '"python"', '"pyth0n"')
    with pytest.raises(CorruptObjectError, match="header is garbled"):
        loads(data, what="v")


def _explode() -> None:
    raise ValueError("cannot rebuild me")


class RebuildFails:
    def __reduce__(self) -> tuple[object, ...]:
        return (_explode, ())


def test_unpickling_failure_names_what_and_why() -> None:
    with pytest.raises(SerializationError) as caught:
        loads(dumps(RebuildFails(), what="v"), what="the function of job 'j'")
    error = caught.value
    assert type(error) is SerializationError and error.action == "unpickle"
    assert str(error) == ("cannot unpickle the function of job 'j': ValueError: cannot rebuild me")


def test_missing_module_on_the_reader_is_a_clear_serialization_error() -> None:
    module = types.ModuleType("batchexecutor_test_only_module")
    exec("def f():\n    return 1\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        data = dumps(module.f, what="f")  # by reference: the module is importable here
    finally:
        del sys.modules[module.__name__]
    with pytest.raises(SerializationError, match="No module named 'batchexecutor_test_only"):
        loads(data, what="the function")


# --------------------------------------------------------------------------- record streams


def test_records_round_trip_with_info_and_summary() -> None:
    data = stream_bytes(RECORDS, info={"kind": "outcome", "chunk": 3}, summary={"failed": 1})
    reader = iter_records(io.BytesIO(data), what="s")
    assert reader.info == {"kind": "outcome", "chunk": 3}
    assert reader.versions == versions()
    assert reader.summary is None
    assert list(reader) == RECORDS
    assert reader.summary == {"failed": 1}
    assert reader.count == len(RECORDS)
    assert list(reader) == []  # exhausted, stays exhausted


def test_empty_stream_and_writer_rules() -> None:
    reader = iter_records(io.BytesIO(stream_bytes([])), what="s")
    assert list(reader) == [] and reader.summary == {}
    writer = RecordWriter(io.BytesIO())
    with pytest.raises(ValueError, match="status"):
        writer.write(Record(0, "maybe", b""))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="index"):
        writer.write(Record(-2, "ok", b""))
    assert writer.close() == 0
    with pytest.raises(ValueError, match="closed"):
        writer.write(Record(0, "ok", b""))


def test_every_truncation_of_a_stream_is_reported_with_the_record() -> None:
    data = stream_bytes(RECORDS, summary={"n": 4})
    for cut in range(len(data)):
        with pytest.raises(CorruptObjectError) as caught:
            list(iter_records(io.BytesIO(data[:cut]), what="outcome of chunk 5"))
        assert caught.value.what == "outcome of chunk 5"


def test_records_before_the_damage_are_delivered() -> None:
    data = stream_bytes(RECORDS)
    cut = len(data) - 30  # inside the last frames
    reader = iter_records(io.BytesIO(data[:cut]), what="s")
    seen = []
    with pytest.raises(CorruptObjectError, match="truncated"):
        for record in reader:
            seen.append(record)
    assert seen == RECORDS[: len(seen)] and seen


def test_flipped_payload_bit_names_the_record_and_item() -> None:
    data = bytearray(stream_bytes(RECORDS))
    position = data.index(RECORDS[2].payload) + 5
    data[position] ^= 0x01
    with pytest.raises(CorruptObjectError, match=r"record 3 \(item 2\) fails its checksum"):
        list(iter_records(io.BytesIO(bytes(data)), what="s"))


def test_trailing_bytes_and_wrong_counts_are_corrupt() -> None:
    data = stream_bytes(RECORDS)
    with pytest.raises(CorruptObjectError, match="after its end marker"):
        list(iter_records(io.BytesIO(data + b"\x00"), what="s"))
    # An end marker claiming 5 records where 4 were written.
    end = data.rindex(struct.pack(">qB", 4, 255))
    forged = data[:end] + struct.pack(">qBQI", 5, 255, 0, zlib.crc32(b""))
    with pytest.raises(CorruptObjectError, match="counts 5 records but 4"):
        list(iter_records(io.BytesIO(forged), what="s"))


def test_a_garbage_length_is_not_allocated() -> None:
    header = stream_bytes([])[: -struct.calcsize(">qBQI")]  # header without the end frame
    frame = struct.pack(">qBQI", 0, 0, 2**62, 0) + b"tiny"
    with pytest.raises(CorruptObjectError, match="4 of 4611686018427387904"):
        list(iter_records(io.BytesIO(header + frame), what="s"))


def test_object_given_as_stream_is_corrupt() -> None:
    with pytest.raises(CorruptObjectError, match="single object"):
        RecordReader(io.BytesIO(dumps(1, what="v")), what="s")


def test_stream_version_mismatch_can_still_be_walked() -> None:
    data = edit_header(
        stream_bytes(RECORDS), f'"python":"{PYTHON}"', f'"python":"{other_python()}"'
    )
    with pytest.raises(VersionMismatchError):
        iter_records(io.BytesIO(data), what="s")
    reader = RecordReader(io.BytesIO(data), what="s")  # frames are version-independent
    assert isinstance(reader.mismatch(), VersionMismatchError)
    assert [record.item for record in reader] == [0, 1, 2, NO_ITEM]


class ChunkyReader(io.RawIOBase):
    """Returns at most 3 bytes per read, as a slow socket might."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> int:
        piece = self._data.read(min(3, len(buffer)))  # type: ignore[arg-type]
        buffer[: len(piece)] = piece  # type: ignore[index]
        return len(piece)


def test_short_reads_are_completed() -> None:
    assert list(iter_records(ChunkyReader(stream_bytes(RECORDS)), what="s")) == RECORDS


# --------------------------------------------------------------------------- payloads


def test_call_payload_round_trip() -> None:
    fn, args, kwargs = load_call(call_payload(pow, (2, 5), {"mod": 7}, what="c"), what="c")
    assert fn is pow and args == (2, 5) and kwargs == {"mod": 7}
    assert load_call(call_payload(None, iter([1]), {}, what="c"), what="c") == (None, (1,), {})
    with pytest.raises(CorruptObjectError, match="does not hold a call"):
        load_call(pickle_payload([1, 2], what="x"), what="c")


def test_call_payload_names_the_unpicklable_part() -> None:
    lock = threading.Lock()
    with pytest.raises(SerializationError) as caught:
        call_payload(lambda: lock, (), {}, what="submit() call 4")
    assert caught.value.what == (
        "the callable test_call_payload_names_the_unpicklable_part.<locals>.<lambda> "
        "of submit() call 4"
    )
    with pytest.raises(SerializationError) as caught:
        call_payload(pow, (1, lock), {}, what="submit() call 4")
    assert caught.value.what == "argument 1 of submit() call 4"
    with pytest.raises(SerializationError) as caught:
        call_payload(pow, (1,), {"x": 1, "lock": lock}, what="submit() call 4")
    assert caught.value.what == "keyword argument 'lock' of submit() call 4"
    assert "TypeError" in caught.value.reason


def raise_nested() -> None:
    try:
        {}["missing"]
    except KeyError as error:
        raise ValueError("wrapped") from error


def caught(fn: object) -> BaseException:
    try:
        fn()  # type: ignore[operator]
    except BaseException as error:
        return error
    raise AssertionError("did not raise")


def test_error_payload_carries_exception_and_traceback() -> None:
    original = caught(raise_nested)
    error = load_error(error_payload(original, item=4, task_id="7"), what="s")
    assert type(error) is ValueError and str(error) == "wrapped"
    remote = error.__cause__
    assert isinstance(remote, RemoteError)
    assert (remote.type_name, remote.message, remote.item, remote.task_id) == (
        "ValueError",
        "wrapped",
        4,
        "7",
    )
    assert "in raise_nested" in remote.traceback
    assert "KeyError: 'missing'" in remote.traceback  # the chain is in the text
    assert remote.unpicklable is None
    # Raised, it prints like a ProcessPoolExecutor failure: the remote traceback as cause.
    printed = "".join(traceback.format_exception(caught(lambda: _raise(error))))
    assert "in raise_nested" in printed
    assert "The above exception was the direct cause" in printed


def _raise(error: BaseException) -> None:
    raise error


class HoldsALock(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class NeedsTwoArguments(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a} and {b}")


@pytest.mark.parametrize(
    ("error", "why"),
    [(HoldsALock("locked"), "cannot pickle"), (NeedsTwoArguments(1, 2), "missing 1 required")],
)
def test_exception_that_cannot_travel_becomes_a_remote_error(
    error: BaseException, why: str
) -> None:
    loaded = load_error(error_payload(error, item=0, traceback_text="Traceback: here\n"), what="s")
    assert type(loaded) is RemoteError
    assert loaded.type_name.endswith(type(error).__qualname__)
    assert loaded.traceback == "Traceback: here\n"
    assert loaded.unpicklable is not None and why in loaded.unpicklable
    assert "could not be carried over" in str(loaded)


def test_exception_that_does_not_unpickle_on_the_reader_becomes_a_remote_error() -> None:
    payload = error_payload(ValueError("x"), item=0, traceback_text="tb\n")
    head = struct.unpack_from(">I", payload)[0] + 4
    broken = payload[:head] + pickle.dumps(RebuildFails())
    loaded = load_error(broken, what="s")
    assert type(loaded) is RemoteError
    assert loaded.unpicklable is not None and "could not be unpickled here" in loaded.unpicklable


@pytest.mark.parametrize("payload", [b"", b"\x00\x00\x00\x05{bad}", b"\x00\x00\x00\x02{}"])
def test_malformed_error_payload_is_corrupt(payload: bytes) -> None:
    with pytest.raises(CorruptObjectError, match="error record is malformed"):
        load_error(payload, what="outcome of chunk 1")


def test_load_record_gives_results_and_exceptions() -> None:
    assert load_record(Record(0, "ok", pickle_payload([1], what="r")), what="s") == [1]
    error = load_record(Record(1, "error", error_payload(KeyError("k"), item=1)), what="s")
    assert isinstance(error, KeyError)
    with pytest.raises(SerializationError, match="result of item 3 in outcome X"):
        load_record(Record(3, "ok", b"garbage"), what="outcome X")
    with pytest.raises(SerializationError, match="unpickle x"):
        unpickle_payload(b"", what="x")
