"""What goes into stored objects: a versioned cloudpickle envelope and framed record streams.

Both start with the same header, so a reader checks where an object came from before it
unpickles anything::

    size  field
    4     magic b"\\x89BXE"
    1     format version (1)
    1     kind: b"O" one object, b"R" a record stream
    4     n, the length of the header JSON (big-endian, like every number here)
    n     header JSON: {"batchexecutor": "0.1.0", "cloudpickle": "3.1.1", "python": "3.11",
          "info": {...}}; "info" is whatever the writer adds (kind of object, job, chunk)

One object (:func:`dumps`, :func:`loads`) then has an 8-byte body length, the body's
4-byte CRC-32 and the body: the cloudpickle (protocol 5).

A record stream (:class:`RecordWriter`, :class:`RecordReader`) then has frames::

    8     item index (signed; NO_ITEM = -1 for a record about no single item)
    1     status: 0 ok, 1 error, 255 end
    8     payload length
    4     CRC-32 of the payload
    ...   payload

and ends with an end frame whose index is the number of records before it and whose
payload is an optional JSON summary. A stream without its end frame is truncated. Frames
are self-contained, so a combine merges streams by copying frames, never unpickling
them, and a reader holds one record at a time.

Payloads are bare cloudpickles (the stream's header carries the versions once):

* input records (status ``ok``): ``(fn or None, args, kwargs)`` (:func:`call_payload`,
  :func:`load_call`; ``None`` means the job's function);
* ``ok`` records: the result;
* ``error`` records (:func:`error_payload`, :func:`load_error`): a 4-byte length, a JSON
  object with the exception's type name, message and traceback text, the item index and
  the task ID, then the exception's cloudpickle (empty when it could not be carried).
  The text always survives, so a reader can raise something meaningful even when the
  exception class does not unpickle.

Versions: cloudpickle payloads load only under the Python minor version and the
cloudpickle version that wrote them; any difference in those or in batchexecutor's
version raises :class:`VersionMismatchError` before unpickling.
"""

from __future__ import annotations

import json
import pickle
import struct
import sys
import traceback
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, Literal, NamedTuple, Protocol

import cloudpickle

from ._errors import CorruptObjectError, RemoteError, SerializationError, VersionMismatchError
from ._version import __version__

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "NO_ITEM",
    "PICKLE_PROTOCOL",
    "ReadableStream",
    "Record",
    "RecordReader",
    "RecordWriter",
    "Status",
    "WritableStream",
    "call_payload",
    "dumps",
    "error_payload",
    "iter_records",
    "load_call",
    "load_error",
    "load_record",
    "loads",
    "pickle_payload",
    "unpickle_payload",
    "versions",
    "write_records",
]

MAGIC: Final = b"\x89BXE"
FORMAT_VERSION: Final = 1
PICKLE_PROTOCOL: Final = 5
#: The index of a record about no single item: a reduced value, or a failure of a whole chunk.
NO_ITEM: Final = -1

Status = Literal["ok", "error"]

_PREFIX = struct.Struct(">4sBcI")  # magic, format version, kind, header JSON length
_OBJECT = struct.Struct(">QI")  # body length, CRC-32
_FRAME = struct.Struct(">qBQI")  # index, status, payload length, CRC-32
_ERROR_HEAD = struct.Struct(">I")  # length of an error payload's JSON
_KIND_OBJECT: Final = b"O"
_KIND_RECORDS: Final = b"R"
_STATUS_CODES: Final[Mapping[str, int]] = {"ok": 0, "error": 1}
_STATUSES: Final[Mapping[int, Status]] = {0: "ok", 1: "error"}
_END: Final = 255
_MAX_JSON = 1 << 20  # header and summary JSON: far more than they ever hold
_READ_PIECE = 1 << 20  # claimed lengths may be garbage: never allocate them up front
_MAX_REASON = 1000

_VERSIONS: Final[Mapping[str, str]] = {
    "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    "cloudpickle": str(cloudpickle.__version__),
    "batchexecutor": __version__,
}


class ReadableStream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class WritableStream(Protocol):
    def write(self, data: bytes, /) -> int: ...


def versions() -> dict[str, str]:
    """This process's versions, as recorded in every header it writes."""
    return dict(_VERSIONS)


def _reason(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:
        text = "<unprintable>"
    reason = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 3] + "..."


# --------------------------------------------------------------------------- pickles


def _cloudpickle(obj: object) -> bytes:
    data: bytes = cloudpickle.dumps(obj, protocol=PICKLE_PROTOCOL)
    return data


def pickle_payload(obj: object, *, what: str) -> bytes:
    """``obj`` as a bare cloudpickle; :class:`SerializationError` naming ``what`` if it cannot."""
    try:
        return _cloudpickle(obj)
    except Exception as error:  # PicklingError, TypeError, AttributeError, RecursionError ...
        raise SerializationError(what, _reason(error)) from error


def unpickle_payload(payload: bytes | memoryview, *, what: str) -> Any:
    """The object in a bare cloudpickle; :class:`SerializationError` naming ``what`` if not."""
    try:
        return pickle.loads(payload)
    except Exception as error:  # ModuleNotFoundError on a node without the module, ...
        raise SerializationError(what, _reason(error), action="unpickle") from error


# --------------------------------------------------------------------------- headers


def _header(kind: bytes, info: Mapping[str, Any] | None) -> bytes:
    meta: dict[str, Any] = dict(_VERSIONS)
    if info:
        meta["info"] = dict(info)
    text = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, kind, len(text)) + text


def _parse_prefix(prefix: bytes, what: str) -> tuple[bytes, int]:
    """(kind, header JSON length) from the fixed-size start of an object."""
    if len(prefix) < _PREFIX.size:
        if not prefix:
            raise CorruptObjectError(what, "it is empty")
        if not MAGIC.startswith(prefix[: len(MAGIC)]):
            raise CorruptObjectError(what, "it is not a batchexecutor object (bad magic)")
        raise CorruptObjectError(what, f"truncated inside its header ({len(prefix)} bytes)")
    magic, version, kind, length = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise CorruptObjectError(what, "it is not a batchexecutor object (bad magic)")
    if version != FORMAT_VERSION:
        raise VersionMismatchError(
            what, writer={"format": str(version)}, reader={"format": str(FORMAT_VERSION)}
        )
    if kind not in (_KIND_OBJECT, _KIND_RECORDS) or length > _MAX_JSON:
        raise CorruptObjectError(what, "its header is garbled")
    return kind, length


def _parse_meta(text: bytes, length: int, what: str) -> dict[str, Any]:
    if len(text) < length:
        raise CorruptObjectError(what, f"truncated inside its header ({len(text)} of {length})")
    try:
        meta = json.loads(text)
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or not all(isinstance(meta.get(k), str) for k in _VERSIONS):
        raise CorruptObjectError(what, "its header is garbled")
    if not isinstance(meta.get("info", {}), dict):
        raise CorruptObjectError(what, "its header is garbled")
    return meta


def _mismatch(meta: Mapping[str, Any], what: str) -> VersionMismatchError | None:
    writer = {key: str(meta.get(key)) for key in _VERSIONS}
    if writer == _VERSIONS:
        return None
    return VersionMismatchError(what, writer=writer, reader=_VERSIONS)


# --------------------------------------------------------------------------- one object


def dumps(obj: object, *, what: str, info: Mapping[str, Any] | None = None) -> bytes:
    """``obj`` in a versioned envelope. Raises :class:`SerializationError` naming ``what``."""
    body = pickle_payload(obj, what=what)
    return b"".join((_header(_KIND_OBJECT, info), _OBJECT.pack(len(body), zlib.crc32(body)), body))


def loads(data: bytes | bytearray | memoryview, *, what: str) -> Any:
    """The object in an envelope written by :func:`dumps`, after checking it.

    :class:`CorruptObjectError` for truncated or garbled data, :class:`VersionMismatchError`
    when other versions wrote it, :class:`SerializationError` when unpickling fails; each
    names ``what``.
    """
    view = memoryview(data)
    kind, length = _parse_prefix(bytes(view[: _PREFIX.size]), what)
    start = _PREFIX.size + length
    meta = _parse_meta(bytes(view[_PREFIX.size : start]), length, what)
    if kind != _KIND_OBJECT:
        raise CorruptObjectError(what, "it is a record stream, not a single object")
    mismatch = _mismatch(meta, what)
    if mismatch is not None:
        raise mismatch
    if len(view) < start + _OBJECT.size:
        raise CorruptObjectError(what, "truncated before its pickle")
    size, crc = _OBJECT.unpack_from(view, start)
    body = view[start + _OBJECT.size :]
    if len(body) < size:
        raise CorruptObjectError(what, f"truncated: {len(body)} of {size} bytes of pickle")
    if len(body) > size:
        raise CorruptObjectError(what, f"{len(body) - size} unexpected bytes after the pickle")
    if zlib.crc32(body) != crc:
        raise CorruptObjectError(what, "its pickle fails its checksum")
    return unpickle_payload(body, what=what)


# --------------------------------------------------------------------------- record streams


class Record(NamedTuple):
    """One frame of a record stream: the item's index, ``"ok"``/``"error"`` and a payload."""

    item: int
    status: Status
    payload: bytes


class RecordWriter:
    """Writes a record stream to ``stream``: the header at once, then :meth:`write` frames.

    :meth:`close` writes the end frame. A writer abandoned without it leaves a stream
    that every reader reports as truncated, which is the point: write into a store's
    atomic writer and let an exception discard the whole object.
    """

    def __init__(self, stream: WritableStream, *, info: Mapping[str, Any] | None = None) -> None:
        self._stream = stream
        self.count = 0
        self._closed = False
        stream.write(_header(_KIND_RECORDS, info))

    def write(self, record: Record) -> None:
        if self._closed:
            raise ValueError("write to a closed RecordWriter")
        index, status, payload = record
        code = _STATUS_CODES.get(status)
        if code is None:
            raise ValueError(f"record status must be 'ok' or 'error', got {status!r}")
        if not NO_ITEM <= index < 2**63:
            raise ValueError(f"record index out of range: {index!r}")
        self._stream.write(_FRAME.pack(index, code, len(payload), zlib.crc32(payload)))
        self._stream.write(payload)
        self.count += 1

    def close(self, summary: Mapping[str, Any] | None = None) -> int:
        """Write the end frame (with ``summary`` as JSON); returns the number of records."""
        if not self._closed:
            trailer = json.dumps(dict(summary), sort_keys=True).encode() if summary else b""
            self._stream.write(_FRAME.pack(self.count, _END, len(trailer), zlib.crc32(trailer)))
            self._stream.write(trailer)
            self._closed = True
        return self.count


def _read_exact(read: Callable[[int], bytes], size: int) -> bytes:
    """Up to ``size`` bytes (fewer only at EOF), without trusting ``size`` for allocation."""
    if size <= _READ_PIECE:
        data = read(size)
        if len(data) == size or not data:
            return data
        pieces = [data]
        missing = size - len(data)
    else:
        pieces, missing = [], size
    while missing > 0:
        piece = read(min(missing, _READ_PIECE))
        if not piece:
            break
        pieces.append(piece)
        missing -= len(piece)
    return b"".join(pieces)


class RecordReader(Iterator[Record]):
    """Iterates the records of a stream written by :class:`RecordWriter`, one at a time.

    The header is read at construction: :attr:`versions` (the writer's), :attr:`info`
    (what the writer added). :meth:`mismatch` tells whether this process may unpickle
    the payloads; :func:`iter_records` raises it at once. Frames are checked as they come
    (:class:`CorruptObjectError` names ``what`` and the record); after the last one,
    :attr:`summary` holds the end frame's JSON summary.
    """

    def __init__(self, stream: ReadableStream, *, what: str) -> None:
        self.what = what
        self._read = stream.read
        kind, length = _parse_prefix(_read_exact(self._read, _PREFIX.size), what)
        meta = _parse_meta(_read_exact(self._read, length), length, what)
        if kind != _KIND_RECORDS:
            raise CorruptObjectError(what, "it is a single object, not a record stream")
        self.versions: dict[str, str] = {key: meta[key] for key in _VERSIONS}
        self.info: dict[str, Any] = meta.get("info", {})
        self.summary: dict[str, Any] | None = None
        self.count = 0
        self._done = False

    def mismatch(self) -> VersionMismatchError | None:
        """The error to raise before unpickling any payload, or ``None`` if versions match."""
        return _mismatch(self.versions, self.what)

    def __iter__(self) -> RecordReader:
        return self

    def __next__(self) -> Record:
        if self._done:
            raise StopIteration
        head = _read_exact(self._read, _FRAME.size)
        number = self.count + 1
        if len(head) < _FRAME.size:
            where = f"inside record {number}" if head else f"after {self.count} records"
            raise CorruptObjectError(self.what, f"truncated {where} (no end marker)")
        index, code, length, crc = _FRAME.unpack(head)
        if code == _END:
            self._finish(index, length, crc)
            raise StopIteration
        status = _STATUSES.get(code)
        if status is None or index < NO_ITEM:
            raise CorruptObjectError(self.what, f"record {number} has a garbled frame header")
        payload = _read_exact(self._read, length)
        if len(payload) < length:
            raise CorruptObjectError(
                self.what,
                f"truncated inside record {number} (item {index}): "
                f"{len(payload)} of {length} payload bytes",
            )
        if zlib.crc32(payload) != crc:
            raise CorruptObjectError(
                self.what, f"record {number} (item {index}) fails its checksum"
            )
        self.count = number
        return Record(index, status, payload)

    def _finish(self, count: int, length: int, crc: int) -> None:
        if count != self.count:
            raise CorruptObjectError(
                self.what, f"its end marker counts {count} records but {self.count} were read"
            )
        if length > _MAX_JSON:
            raise CorruptObjectError(self.what, "its end marker is garbled")
        trailer = _read_exact(self._read, length)
        if len(trailer) < length:
            raise CorruptObjectError(self.what, "truncated inside its end marker")
        if zlib.crc32(trailer) != crc:
            raise CorruptObjectError(self.what, "its end marker fails its checksum")
        if self._read(1):
            raise CorruptObjectError(self.what, "unexpected bytes after its end marker")
        try:
            summary = json.loads(trailer) if trailer else {}
        except ValueError:
            summary = None
        if not isinstance(summary, dict):
            raise CorruptObjectError(self.what, "its summary is garbled")
        self.summary = summary
        self._done = True


def write_records(
    stream: WritableStream,
    records: Iterable[Record],
    *,
    info: Mapping[str, Any] | None = None,
    summary: Mapping[str, Any] | None = None,
) -> int:
    """Write a whole record stream; returns the number of records."""
    writer = RecordWriter(stream, info=info)
    for record in records:
        writer.write(record)
    return writer.close(summary)


def iter_records(stream: ReadableStream, *, what: str) -> RecordReader:
    """A :class:`RecordReader` whose versions were checked (:class:`VersionMismatchError`)."""
    reader = RecordReader(stream, what=what)
    mismatch = reader.mismatch()
    if mismatch is not None:
        raise mismatch
    return reader


# --------------------------------------------------------------------------- payloads


def _describe_callable(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return f"callable {name}" if isinstance(name, str) else f"callable {type(fn).__name__}"


def _picklable(obj: object) -> bool:
    try:
        _cloudpickle(obj)
    except Exception:
        return False
    return True


def call_payload(
    fn: Callable[..., Any] | None,
    args: Iterable[Any],
    kwargs: Mapping[str, Any],
    *,
    what: str,
) -> bytes:
    """The payload of an input record: one call ``fn(*args, **kwargs)``.

    ``fn=None`` calls the job's function (:func:`batchexecutor._names.function`). An
    unpicklable part raises :class:`SerializationError` naming it (the callable, argument
    2, keyword argument 'x') within ``what``, in the caller, before anything is stored.
    """
    call = (fn, tuple(args), dict(kwargs))
    try:
        return _cloudpickle(call)
    except Exception as error:
        # Only on failure: find the culprit, so the message says which part it was.
        culprit = what
        if fn is not None and not _picklable(fn):
            culprit = f"the {_describe_callable(fn)} of {what}"
        else:
            for position, arg in enumerate(call[1]):
                if not _picklable(arg):
                    culprit = f"argument {position} of {what}"
                    break
            else:
                for key, value in call[2].items():
                    if not _picklable(value):
                        culprit = f"keyword argument {key!r} of {what}"
                        break
        raise SerializationError(culprit, _reason(error)) from error


def load_call(
    payload: bytes, *, what: str
) -> tuple[Callable[..., Any] | None, tuple[Any, ...], dict[str, Any]]:
    """``(fn or None, args, kwargs)`` from a payload written by :func:`call_payload`."""
    call = unpickle_payload(payload, what=what)
    if (
        not isinstance(call, tuple)
        or len(call) != 3
        or not (call[0] is None or callable(call[0]))
        or not isinstance(call[1], tuple)
        or not isinstance(call[2], dict)
    ):
        raise CorruptObjectError(what, "it does not hold a call")
    return call[0], call[1], call[2]


def _type_name(error: BaseException) -> str:
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def error_payload(
    error: BaseException,
    *,
    item: int | None,
    task_id: str | None = None,
    traceback_text: str | None = None,
) -> bytes:
    """The payload of an error record for ``error``, raised by ``item`` in ``task_id``.

    The traceback text is ``error``'s own unless given. The exception is pickled, and
    unpickled once to prove it can be rebuilt (exceptions whose ``__init__`` takes
    other arguments than ``args`` pickle fine and then fail to unpickle); when either
    fails, only the text is kept and readers get a :class:`RemoteError` in its place.
    """
    if traceback_text is None:
        traceback_text = "".join(
            traceback.format_exception(type(error), error, error.__traceback__)
        )
    unpicklable: str | None = None
    try:
        pickled = _cloudpickle(error)
        pickle.loads(pickled)
    except Exception as problem:
        pickled, unpicklable = b"", _reason(problem)
    try:
        message = str(error)
    except Exception:
        message = "<unprintable>"
    text = json.dumps(
        {
            "type": _type_name(error),
            "message": message,
            "traceback": traceback_text,
            "item": item,
            "task": task_id,
            "unpicklable": unpicklable,
        },
        sort_keys=True,
    ).encode()
    return _ERROR_HEAD.pack(len(text)) + text + pickled


def load_error(payload: bytes, *, what: str) -> BaseException:
    """The exception in an error record, with a :class:`RemoteError` as its ``__cause__``.

    When the exception could not be carried (or cannot be unpickled here), the
    :class:`RemoteError` itself is returned: it names the type and holds the traceback.
    The result is returned, not raised.
    """
    try:
        (length,) = _ERROR_HEAD.unpack_from(payload)
        meta = json.loads(payload[_ERROR_HEAD.size : _ERROR_HEAD.size + length])
        fields = (meta["type"], meta["message"], meta["traceback"])
        item, task_id, unpicklable = meta["item"], meta["task"], meta["unpicklable"]
        if not all(isinstance(field, str) for field in fields):
            raise TypeError("type, message and traceback must be strings")
        if not (item is None or isinstance(item, int)) or not (
            task_id is None or isinstance(task_id, str)
        ):
            raise TypeError("item must be an int and task a string")
    except Exception as error:
        raise CorruptObjectError(what, f"an error record is malformed ({_reason(error)})") from None
    pickled = payload[_ERROR_HEAD.size + length :]

    def remote(why: str | None) -> RemoteError:
        return RemoteError(*fields, item=item, task_id=task_id, unpicklable=why)

    if not pickled:
        return remote(unpicklable)
    try:
        exception = pickle.loads(pickled)
    except Exception as problem:
        return remote(f"it could not be unpickled here: {_reason(problem)}")
    if not isinstance(exception, BaseException):
        raise CorruptObjectError(what, "an error record does not hold an exception")
    exception.__cause__ = remote(None)
    return exception


def load_record(record: Record, *, what: str) -> Any:
    """A record's value: the result of an ``ok`` record, the exception of an ``error`` one.

    The exception is returned, not raised (see :func:`load_error`); ``what`` names the
    stream, for errors.
    """
    index, status, payload = record
    if status == "ok":
        item = "value" if index == NO_ITEM else f"result of item {index}"
        return unpickle_payload(payload, what=f"{item} in {what}")
    return load_error(payload, what=what)
