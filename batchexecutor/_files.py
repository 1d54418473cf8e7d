"""Resource files and output files: Batch's own data movement, as options of a submission.

::

    ResourceFile(url, "data/in.csv")                    ─► task.resourceFiles: the node
    ResourceFile.from_container(url, blob_prefix="in/")     downloads them into the task's
    ResourceFile.from_path("in.csv")  ─ uploaded to J/files/<sha256> first (Blob store)
                                                            working directory, then runs it
    OutputFile("out/*.csv")                              ─► task.outputFiles: the node uploads
    OutputFile("out/*.csv", "https://…/c?<SAS>")            what matches once the task exits
                                                            (upload condition permitting)
        no destination: J/outputs/000007/… in the job's own storage, listed and downloaded
        with executor.job_outputs() / download_outputs(), deleted with the job

The client never moves those files itself (except a ``from_path`` file, stored once per
job): Batch downloads before the command line and uploads after it, so a task's data
never passes through the client.

**Secrets.** A URL given here may carry a SAS. ``repr``, ``str`` and every error show it
without its query; pickling (and ``copy``) keeps it out too: an unpickled ResourceFile
or OutputFile whose URL had a query refuses to be used, with an error saying why, rather
than failing on the node. The SAS goes to Batch, in the task, and nowhere else.

**Where outputs go by default.** An OutputFile without a destination uploads to the job's
store under ``J/outputs/<task>/`` with a container SAS of the job's lifetime (the same
one the job's tasks use to reach the store, so it grants nodes nothing new). A local
directory store (``AzureBatchExecutor.local()``) cannot be a Batch upload target: there
such an OutputFile raises ``ValueError`` naming the fixes, as does ``from_path``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import string
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future
from concurrent.futures import wait as wait_futures
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Literal, TypeVar, cast
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

from azure.batch import models as bm

from . import _names
from ._batch import MAX_REQUEST_BYTES, CompletedTask, serialized_size
from ._errors import OutputFilesError, StorageError
from ._storage import BlobStore

if TYPE_CHECKING:
    import weakref

    from ._context import Context
    from ._executor import AzureBatchExecutor
    from ._future import JobFuture

__all__ = [
    "ExecutorView",
    "FileCache",
    "FileSpec",
    "OutputFile",
    "ResourceFile",
    "TaskFiles",
    "TaskOutput",
    "UploadCondition",
    "check_task_size",
    "download_outputs",
    "file_spec",
    "list_outputs",
    "open_output",
    "output_upload_error",
    "prepare_files",
    "upload_failed",
]

T = TypeVar("T")

UploadCondition = Literal["success", "failure", "completion"]

#: Our upload conditions and Batch's (``OutputFileUploadCondition``).
_CONDITIONS: Final[dict[str, bm.OutputFileUploadCondition]] = {
    "success": bm.OutputFileUploadCondition.TASK_SUCCESS,
    "failure": bm.OutputFileUploadCondition.TASK_FAILURE,
    "completion": bm.OutputFileUploadCondition.TASK_COMPLETION,
}
#: The placeholders an OutputFile's ``path`` may hold.
_PLACEHOLDERS: Final = frozenset({"job_id", "task_id"})
#: An OutputFile's ``path`` by default: with a destination given, per job and per task
#: (tasks never overwrite each other's files); in the job's storage, the task's prefix.
DEFAULT_DESTINATION_PATH: Final = "{job_id}/{task_id}"
#: Characters that make a pattern match several files (Batch's wildcards).
_WILDCARD = re.compile(r"[*?\[]")
#: Batch's failure codes for output files that could not be uploaded.
_UPLOAD_CODE_PREFIX: Final = "FileUpload"
#: Longest blob name (Azure) and our budget for a path below a task's prefix.
_MAX_BLOB_NAME: Final = 1024
_MAX_PATH: Final = 512
#: How long a cached node SAS is reused before a fresh one is signed.
_LOCATOR_REUSE: Final = 3600.0
#: The JSON around the tasks of an add-collection request (``{"value": [...]}``).
_REQUEST_OVERHEAD: Final = len('{"value": []}')


# --------------------------------------------------------------------------- URLs


def _shown(url: str) -> str:
    """``url`` as it may be shown: no user info, no query (where a SAS lives), no fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<malformed URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    text = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    if parts.query:
        text += "?<SAS>" if "sig=" in parts.query.lower() else "?<query>"
    return text


def _check_url(url: object, what: str) -> dict[str, list[str]]:
    """Validate an http(s) URL for Batch; its query parameters (lower-case names)."""
    if isinstance(url, os.PathLike):
        raise TypeError(
            f"{what} must be an http(s) URL, got the path {os.fspath(url)!r}: for a local "
            "file use ResourceFile.from_path(path)"
        )
    if not isinstance(url, str):
        raise TypeError(f"{what} must be an http(s) URL string, got {type(url).__name__}")
    if not url or any(c.isspace() for c in url):
        raise ValueError(f"{what} must be a URL without spaces, got {_shown(url)!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"{what} is not a valid URL ({_shown(url)!r})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        hint = (
            ": for a file on this machine use ResourceFile.from_path(path)"
            if scheme in ("", "file") or len(scheme) == 1  # a path, or a Windows drive letter
            else ""
        )
        raise ValueError(
            f"{what} must be an http or https URL (Batch nodes download and upload over "
            f"HTTP), got {_shown(url)!r}{hint}"
        )
    if not parts.hostname:
        raise ValueError(f"{what} has no host: {_shown(url)!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"{what} must not carry a user name or password ({_shown(url)!r}): give access "
            "with a SAS in its query"
        )
    if parts.fragment:
        raise ValueError(f"{what} must not have a fragment (#...): {_shown(url)!r}")
    return {name.lower(): values for name, values in parse_qs(parts.query).items()}


def _check_permissions(
    query: dict[str, list[str]], needed: str, what: str, url: str, purpose: str
) -> None:
    """When the SAS states its permissions (``sp``), they must include ``needed``."""
    granted = "".join(query.get("sp", []))
    if "sig" in query and granted and not set(needed) <= set(granted):
        raise ValueError(
            f"{what} {_shown(url)!r} carries a SAS with permissions {granted!r}, but Batch "
            f"needs {needed!r} to {purpose}: issue one with permission={needed!r}"
        )


# --------------------------------------------------------------------------- node paths


def _segments(path: str) -> list[str]:
    return path.split("/")


def _check_relative(path: object, what: str, *, directory: bool) -> str:
    """A path relative to the task's working directory that stays inside it."""
    if not isinstance(path, str):
        raise TypeError(f"{what} must be a string, got {type(path).__name__}")
    if not path:
        raise ValueError(f"{what} must not be empty")
    if any(ord(c) < 32 for c in path) or "\\" in path:
        raise ValueError(
            f"{what} {path!r} holds a backslash or a control character: write it with / "
            "(the separator on the Linux nodes)"
        )
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        raise ValueError(
            f"{what} {path!r} is absolute: Batch places resource files relative to the "
            "task's working directory, e.g. 'data/input.csv'"
        )
    if ".." in _segments(path):
        raise ValueError(
            f"{what} {path!r} contains '..': a resource file cannot leave the task's "
            "working directory"
        )
    if not directory and (path.endswith("/") or _segments(path)[-1] in ("", ".")):
        raise ValueError(f"{what} {path!r} names a directory; it must name the file to write")
    if len(path) > _MAX_PATH:
        raise ValueError(f"{what} is {len(path)} characters long; at most {_MAX_PATH}")
    return path


def _file_mode(mode: object) -> str | None:
    """Batch's ``fileMode``: an octal string such as ``0644``."""
    if mode is None:
        return None
    if isinstance(mode, bool) or not isinstance(mode, (int, str)):
        raise TypeError(f"file_mode must be an int (e.g. 0o644) or an octal string, got {mode!r}")
    if isinstance(mode, int):
        if not 0 <= mode <= 0o777:
            raise ValueError(
                f"file_mode {mode} is not a permission mode (0 to 0o777): write it in octal, "
                f"as 0o{mode} or the string '{mode}'"
                if 0 < mode <= 777 and set(str(mode)) <= set("01234567")
                else f"file_mode {mode!r} is not a permission mode (0 to 0o777)"
            )
        value = mode
    else:
        text = mode.removeprefix("0o")
        if not re.fullmatch(r"[0-7]{1,4}", text) or int(text, 8) > 0o777:
            raise ValueError(
                f"file_mode {mode!r} is not an octal permission mode such as '0644' or '755'"
            )
        value = int(text, 8)
    return f"{value:04o}"


def _check_pattern(pattern: object) -> str:
    """An output file pattern (Batch's ``filePattern``), checked as far as a client can."""
    if not isinstance(pattern, str):
        raise TypeError(f"an OutputFile pattern must be a string, got {type(pattern).__name__}")
    if not pattern:
        raise ValueError("an OutputFile pattern must not be empty: e.g. 'out/*.csv'")
    if any(ord(c) < 32 for c in pattern) or "\\" in pattern:
        raise ValueError(
            f"OutputFile pattern {pattern!r} holds a backslash or a control character: "
            "separate directories with / (Linux nodes); escape a wildcard with brackets, "
            "e.g. 'abc[*]'"
        )
    if pattern.startswith("/"):
        raise ValueError(
            f"OutputFile pattern {pattern!r} is absolute: patterns are relative to the task's "
            "working directory (node paths differ from node to node); for another place "
            "start with an environment variable, e.g. '$AZ_BATCH_NODE_SHARED_DIR/x/*.csv'"
        )
    segments = _segments(pattern)
    if pattern.endswith("/") or segments[-1] in ("", ".", ".."):
        raise ValueError(
            f"OutputFile pattern {pattern!r} names a directory: match its files, e.g. "
            f"'{pattern.rstrip('/')}/*' (or '/**/*' with its sub-directories)"
        )
    if any(s == ".." for s in segments[1:]) or "" in segments:
        raise ValueError(
            f"OutputFile pattern {pattern!r} has an empty or '..' segment: only a leading "
            "'../' is allowed (the task's directory, with stdout.txt and stderr.txt)"
        )
    for segment in segments:
        if "**" in segment and segment != "**":
            raise ValueError(
                f"OutputFile pattern {pattern!r}: '**' must be a whole path segment "
                "(e.g. 'out/**/*.csv')"
            )
        depth = 0
        for char in segment:
            if char == "[":
                depth += 1
            elif char == "]" and depth:
                depth -= 1
        if depth:
            raise ValueError(
                f"OutputFile pattern {pattern!r} has a '[' without its ']' (to match a "
                "literal '[', write '[[]')"
            )
    if len(pattern) > _MAX_PATH:
        raise ValueError(
            f"OutputFile pattern is {len(pattern)} characters long; at most {_MAX_PATH}"
        )
    return pattern


def _check_output_path(path: object) -> str:
    """An OutputFile's ``path``: a folder below its destination, with placeholders."""
    if not isinstance(path, str):
        raise TypeError(f"an OutputFile path must be a string, got {type(path).__name__}")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(path) if name is not None}
    except ValueError as error:
        raise ValueError(f"OutputFile path {path!r} is not a valid template: {error}") from None
    unknown = fields - _PLACEHOLDERS
    if unknown:
        raise ValueError(
            f"OutputFile path {path!r} has the placeholder(s) {sorted(unknown)}: only "
            "{job_id} and {task_id} are filled in"
        )
    if path.startswith("/"):
        raise ValueError(
            f"OutputFile path {path!r} is absolute: it is a folder relative to the "
            "destination (the container, or the task's folder in the job's storage)"
        )
    sample = path.format(job_id="J", task_id="7").rstrip("/")
    if sample:
        _check_relative(sample, f"OutputFile path {path!r}", directory=True)
    return path


# --------------------------------------------------------------------------- public types


def _withheld_error(kind: str, shown: str) -> ValueError:
    return ValueError(
        f"{kind} for {shown!r} was unpickled or copied without its URL's query: "
        "batchexecutor never pickles a SAS. Create it again in this process, from the URL"
    )


@dataclass(frozen=True, repr=False)
class ResourceFile:
    """A file Batch downloads to the node before the task runs (Batch's ``ResourceFile``).

    ``ResourceFile(url, file_path)``: the file at ``url`` (any http(s) URL, e.g. a blob
    URL with a SAS granting read) is written to ``file_path``, relative to the task's
    working directory (the function's current directory), e.g. ``"data/input.csv"``.
    :meth:`from_container` downloads the blobs of a container under a prefix;
    :meth:`from_path` a file of this machine, which the executor uploads to the job's
    storage first. ``file_mode`` sets the files' permissions on Linux nodes (``0o755``
    or ``"755"``; Batch's default is ``0770``).

    Paths may not be absolute or contain ``..`` (Batch refuses to write outside the
    working directory). A SAS in a URL never appears in ``repr``, errors or pickles.
    """

    url: str | None = None
    """The http(s) URL of one file (Batch's ``httpUrl``); it may carry a SAS."""
    file_path: str | None = None
    """Where the file goes, relative to the task's working directory; for a container,
    the directory the blobs go to (default: the working directory itself)."""
    _: KW_ONLY
    container_url: str | None = None
    """A blob container URL (``storageContainerUrl``), readable and listable by nodes."""
    blob_prefix: str | None = None
    """With ``container_url``: only blobs whose names start with this."""
    local_path: Path | None = None
    """A file of this machine, uploaded to the job's storage at submission."""
    file_mode: str | int | None = None
    """Permissions on Linux nodes, stored as an octal string such as ``"0644"``."""
    _withheld: bool = field(default=False, init=False, compare=False)

    def __post_init__(self) -> None:
        given = [
            name
            for name, value in (
                ("url", self.url),
                ("container_url", self.container_url),
                ("local_path", self.local_path),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "a ResourceFile comes from exactly one source: ResourceFile(url, file_path), "
                "ResourceFile.from_container(container_url, ...) or "
                f"ResourceFile.from_path(path); got {', '.join(given) or 'none'}"
            )
        object.__setattr__(self, "file_mode", _file_mode(self.file_mode))
        if self.blob_prefix is not None:
            if self.container_url is None:
                raise ValueError("blob_prefix applies to ResourceFile.from_container(...) only")
            if not isinstance(self.blob_prefix, str) or len(self.blob_prefix) > _MAX_BLOB_NAME:
                raise ValueError(
                    f"blob_prefix must be a string of at most {_MAX_BLOB_NAME} characters"
                )
        if self.url is not None:
            if self.file_path is None:
                raise ValueError(
                    f"ResourceFile({_shown(str(self.url))!r}) needs a file_path: where the "
                    "node writes it, relative to the task's working directory, e.g. "
                    "'data/input.csv'"
                )
            query = _check_url(self.url, "a ResourceFile url")
            _check_permissions(query, "r", "ResourceFile url", self.url, "read it")
            _check_relative(self.file_path, "ResourceFile file_path", directory=False)
        elif self.container_url is not None:
            query = _check_url(self.container_url, "a ResourceFile container_url")
            _check_permissions(
                query, "rl", "ResourceFile container_url", self.container_url, "list and read it"
            )
            if self.file_path is not None:
                _check_relative(self.file_path, "ResourceFile file_path", directory=True)
        else:
            if not isinstance(self.local_path, (str, os.PathLike)):
                raise TypeError(f"local_path must be a path, got {type(self.local_path).__name__}")
            path = Path(self.local_path).expanduser().absolute()
            if not path.is_file():
                raise FileNotFoundError(
                    f"ResourceFile.from_path: {str(path)!r} is not a file "
                    "(give a file; for many files, a zip or a container with a prefix)"
                )
            object.__setattr__(self, "local_path", path)
            name = self.file_path if self.file_path is not None else path.name
            object.__setattr__(
                self, "file_path", _check_relative(name, "ResourceFile file_path", directory=False)
            )

    @classmethod
    def from_container(
        cls,
        container_url: str,
        file_path: str | None = None,
        *,
        blob_prefix: str | None = None,
        file_mode: int | str | None = None,
    ) -> ResourceFile:
        """The blobs of a container (those starting with ``blob_prefix``), downloaded into
        ``file_path`` (a directory; default: the working directory) keeping their full
        names, as Batch does: ``blob_prefix="in/"`` writes ``<file_path>/in/a.csv``.
        ``container_url`` needs a SAS granting read and list (``"rl"``), or public access.
        """
        return cls(
            None,
            file_path,
            container_url=container_url,
            blob_prefix=blob_prefix,
            file_mode=file_mode,
        )

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        file_path: str | None = None,
        *,
        file_mode: int | str | None = None,
    ) -> ResourceFile:
        """A file of this machine: uploaded to the job's storage when the job is submitted
        (once per job and content), then downloaded by each task to ``file_path`` (default:
        its own name, in the working directory). Needs a Blob store."""
        return cls(None, file_path, local_path=Path(path), file_mode=file_mode)

    @property
    def source(self) -> Literal["url", "container", "local"]:
        """Which kind of source this is."""
        if self.url is not None:
            return "url"
        return "container" if self.container_url is not None else "local"

    def _shown_source(self) -> str:
        if self.url is not None:
            return _shown(self.url)
        if self.container_url is not None:
            return _shown(self.container_url)
        return str(self.local_path)

    def _check_usable(self) -> None:
        if self._withheld:
            raise _withheld_error("ResourceFile", self._shown_source())

    def __repr__(self) -> str:
        arguments = [repr(self._shown_source())]
        if self.file_path is not None:
            arguments.append(repr(self.file_path))
        if self.blob_prefix is not None:
            arguments.append(f"blob_prefix={self.blob_prefix!r}")
        if self.file_mode is not None:
            arguments.append(f"file_mode={self.file_mode!r}")
        constructor = {"url": "", "container": ".from_container", "local": ".from_path"}
        return f"ResourceFile{constructor[self.source]}({', '.join(arguments)})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        url = self.url if self.url is None else _shown(self.url).partition("?")[0]
        container = (
            self.container_url
            if self.container_url is None
            else _shown(self.container_url).partition("?")[0]
        )
        withheld = self._withheld or any(
            value is not None and "?" in value for value in (self.url, self.container_url)
        )
        values = {
            "url": url,
            "file_path": self.file_path,
            "container_url": container,
            "blob_prefix": self.blob_prefix,
            "local_path": self.local_path,
            "file_mode": self.file_mode,
            "_withheld": withheld,
        }
        return (_rebuild, (ResourceFile, values))

    def __copy__(self) -> ResourceFile:
        return self  # immutable: and a copy must keep its SAS, which pickling drops

    def __deepcopy__(self, memo: dict[int, Any]) -> ResourceFile:
        return self


def _rebuild(cls: type[T], values: dict[str, Any]) -> T:
    """An object as pickled: validated when it was made, so not again (its local file,
    say, need not exist in the process that unpickles it)."""
    rebuilt = object.__new__(cls)
    for name, value in values.items():
        object.__setattr__(rebuilt, name, value)
    return rebuilt


@dataclass(frozen=True, repr=False)
class OutputFile:
    """Files Batch uploads from the node once the task exits (Batch's ``OutputFile``).

    ``pattern`` is relative to the task's working directory (the function's current
    directory) with Batch's wildcards: ``*``, ``?``, ``[abc]``, ``**`` (any directories),
    e.g. ``"out/*.csv"``; a leading ``../`` reaches the task's directory, whose
    ``stdout.txt`` and ``stderr.txt`` are the task's output.

    ``destination`` is a container URL with a SAS granting write (``"w"``); without one,
    files go to the job's own storage, where :meth:`AzureBatchExecutor.job_outputs`
    lists them and ``delete_job`` deletes them. ``path`` is the folder they go to below
    the destination, ``{job_id}`` and ``{task_id}`` filled in: by default
    ``"{job_id}/{task_id}"`` in a destination you give (tasks never overwrite each
    other's files), and the task's own folder in the job's storage. A file keeps its path
    relative to the pattern's directory part: ``out/**/*.csv`` uploads
    ``out/a/b.csv`` as ``<path>/a/b.csv``, ``out/log.txt`` as ``<path>/log.txt``.

    ``upload_condition``: ``"completion"`` (default: whatever the exit code),
    ``"success"`` or ``"failure"`` of the task; a chunk task of a map fails when one of
    its items raised. A SAS never appears in ``repr``, errors or pickles.
    """

    pattern: str
    destination: str | None = None
    _: KW_ONLY
    path: str | None = None
    upload_condition: UploadCondition = "completion"
    _withheld: bool = field(default=False, init=False, compare=False)

    def __post_init__(self) -> None:
        _check_pattern(self.pattern)
        raw: object = self.upload_condition  # Batch's spellings (and enum) are taken too
        condition = raw.lower().removeprefix("task") if isinstance(raw, str) else raw
        if condition not in _CONDITIONS:
            raise ValueError(
                f"upload_condition must be 'success', 'failure' or 'completion', got "
                f"{self.upload_condition!r}"
            )
        object.__setattr__(self, "upload_condition", condition)
        if self.path is not None:
            _check_output_path(self.path)
        if self.destination is not None:
            query = _check_url(self.destination, "an OutputFile destination")
            if "sig" not in query:
                raise ValueError(
                    f"OutputFile destination {_shown(self.destination)!r} has no SAS token "
                    "(sig=...): nodes upload with the URL alone, so it must carry a SAS "
                    "granting write permission to the container (e.g. azure.storage.blob."
                    "generate_container_sas(..., permission='w')); or leave destination out "
                    "to upload to the job's own storage"
                )
            _check_permissions(
                query, "w", "OutputFile destination", self.destination, "upload to it"
            )

    @property
    def condition(self) -> bm.OutputFileUploadCondition:
        """Batch's upload condition."""
        return _CONDITIONS[self.upload_condition]

    def _check_usable(self) -> None:
        if self._withheld:
            raise _withheld_error(f"OutputFile({self.pattern!r})", _shown(self.destination or ""))

    def __repr__(self) -> str:
        arguments = [repr(self.pattern)]
        if self.destination is not None:
            arguments.append(repr(_shown(self.destination)))
        if self.path is not None:
            arguments.append(f"path={self.path!r}")
        if self.upload_condition != "completion":
            arguments.append(f"upload_condition={self.upload_condition!r}")
        return f"OutputFile({', '.join(arguments)})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        destination = self.destination
        withheld = self._withheld
        if destination is not None:
            withheld = withheld or "?" in destination
            destination = _shown(destination).partition("?")[0]
        values = {
            "pattern": self.pattern,
            "destination": destination,
            "path": self.path,
            "upload_condition": self.upload_condition,
            "_withheld": withheld,
        }
        return (_rebuild, (OutputFile, values))

    def __copy__(self) -> OutputFile:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> OutputFile:
        return self


@dataclass(frozen=True)
class TaskOutput:
    """One output file a task uploaded to its job's storage
    (:meth:`AzureBatchExecutor.job_outputs`)."""

    job_id: str
    task_id: str
    """The Batch task that uploaded it (a ``submit()`` call's, or a map's chunk)."""
    path: str
    """Its path below the task's folder, e.g. ``"result.csv"`` or ``"logs/stdout.txt"``."""
    name: str
    """The stored object's (blob's) name: ``<job_id>/outputs/<task, 6 digits>/<path>``."""


# --------------------------------------------------------------------------- specifications


@dataclass(frozen=True)
class FileSpec:
    """The files of a submission, validated (what ``options()`` and ``map_async`` take)."""

    resource_files: tuple[ResourceFile, ...] = ()
    output_files: tuple[OutputFile, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.resource_files or self.output_files)

    def __add__(self, other: FileSpec) -> FileSpec:
        return FileSpec(
            self.resource_files + other.resource_files, self.output_files + other.output_files
        )

    @property
    def default_outputs(self) -> tuple[OutputFile, ...]:
        """The output files bound for the job's own storage."""
        return tuple(output for output in self.output_files if output.destination is None)


def _items(value: object, kind: type[T], argument: str) -> tuple[T, ...]:
    if value is None:
        return ()
    if isinstance(value, (kind, str, bytes, os.PathLike)) or not isinstance(value, Iterable):
        hint = f"[{kind.__name__}(...)]"
        raise TypeError(
            f"{argument} takes a list of {kind.__name__} objects, e.g. {argument}={hint}; "
            f"got {type(value).__name__}"
        )
    items = tuple(value)
    more = ", 'file path'" if kind is ResourceFile else ""
    for item in items:
        if not isinstance(item, kind):
            raise TypeError(
                f"{argument} takes {kind.__name__} objects, got a {type(item).__name__}"
                + (
                    f": wrap it, e.g. {kind.__name__}({item!r}{more})"
                    if isinstance(item, str) and "?" not in item
                    else ""
                )
            )
        if isinstance(item, (ResourceFile, OutputFile)):
            item._check_usable()
    return items


def file_spec(resource_files: object = (), output_files: object = ()) -> FileSpec | None:
    """The validated files of a submission, or ``None`` without any."""
    spec = FileSpec(
        _items(resource_files, ResourceFile, "resource_files"),
        _items(output_files, OutputFile, "output_files"),
    )
    return spec if spec else None


# --------------------------------------------------------------------------- resolution


class FileCache:
    """What one job's submissions share: its node SAS, and the local files it stored."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._locator: tuple[str, float] | None = None
        self._digests: dict[tuple[str, int, int], str] = {}
        self.stored: set[str] = set()

    def locator(self, context: Context, job_id: str) -> str:
        """The job's node locator (a container URL with a SAS for the job's lifetime)."""
        from ._context import NODE_ACCESS

        with self.lock:
            if self._locator is not None and time.monotonic() - self._locator[1] < _LOCATOR_REUSE:
                return self._locator[0]
        lifetime = context.config.retention or NODE_ACCESS
        locator = context.store.node_locator(job_id, expiry=lifetime)
        with self.lock:
            self._locator = (locator, time.monotonic())
        return locator

    def digest(self, path: Path) -> str:
        """The SHA-256 of the file's content (hashed again only when it changed)."""
        try:
            status = path.stat()
        except OSError as error:
            raise FileNotFoundError(
                f"resource file {str(path)!r} cannot be read: {error.strerror}"
            ) from None
        key = (str(path), status.st_size, status.st_mtime_ns)
        with self.lock:
            found = self._digests.get(key)
        if found is not None:
            return found
        sha = hashlib.sha256()
        with open(path, "rb") as file:
            for piece in iter(lambda: file.read(1 << 20), b""):
                sha.update(piece)
        digest = sha.hexdigest()
        with self.lock:
            self._digests[key] = digest
        return digest


@dataclass(frozen=True)
class _Output:
    """An OutputFile bound to a job: its container URL (with a SAS) and folder."""

    pattern: str
    container_url: str = field(repr=False)
    folder: str  # a template ({job_id}, {task_id}), relative to the container
    own_storage: bool  # the job's store: the folder is below the task's prefix
    condition: bm.OutputFileUploadCondition


class TaskFiles:
    """A submission's files bound to its job: what each of its tasks carries.

    Holds SAS URLs (the job's, and the user's): its repr shows counts only.
    """

    def __init__(
        self,
        job_id: str,
        resources: list[bm.ResourceFile],
        outputs: list[_Output],
        uploads: list[tuple[Path, str]],
    ) -> None:
        self.job_id = job_id
        self._resources = resources
        self._outputs = outputs
        self.uploads = uploads  # (local file, stored name) to store before tasks are added

    def __repr__(self) -> str:
        return (
            f"<TaskFiles job={self.job_id!r} resource_files={len(self._resources)} "
            f"output_files={len(self._outputs)}>"
        )

    def resource_files(self) -> list[bm.ResourceFile] | None:
        """The task's ``resourceFiles`` (the same for every task of the submission)."""
        return list(self._resources) or None

    def output_files(self, task: int) -> list[bm.OutputFile] | None:
        """The ``outputFiles`` of task ``task`` (its number: a chunk's, a call's)."""
        if not self._outputs:
            return None
        entries = []
        for output in self._outputs:
            folder = output.folder.format(job_id=self.job_id, task_id=str(task)).strip("/")
            if output.own_storage:
                prefix = _names.task_outputs(self.job_id, task).rstrip("/")
                folder = f"{prefix}/{folder}" if folder else prefix
            if _WILDCARD.search(output.pattern):
                path = folder or None  # a virtual directory (Batch keeps relative paths)
            else:  # one file: Batch wants the blob's whole name
                name = output.pattern.rsplit("/", 1)[-1]
                path = f"{folder}/{name}" if folder else name
            entries.append(
                bm.OutputFile(
                    file_pattern=output.pattern,
                    destination=bm.OutputFileDestination(
                        container=bm.OutputFileBlobContainerDestination(
                            container_url=output.container_url, path=path
                        )
                    ),
                    upload_options=bm.OutputFileUploadConfiguration(
                        upload_condition=output.condition
                    ),
                )
            )
        return entries

    def store_uploads(self, context: Context, cache: FileCache) -> None:
        """Store the ``from_path`` files not stored yet (once per job and content)."""
        store = context.store
        for path, name in self.uploads:
            with cache.lock:
                if name in cache.stored:
                    continue
            if not store.exists(name):
                try:
                    with open(path, "rb") as file:
                        store.put_stream(name, file)
                except OSError as error:
                    raise FileNotFoundError(
                        f"resource file {str(path)!r} cannot be read: {error.strerror}"
                    ) from None
            with cache.lock:
                cache.stored.add(name)


def _local_store_error(what: str) -> ValueError:
    return ValueError(
        f"{what}, but this executor stores in a local directory (AzureBatchExecutor.local() "
        "or BatchConfig(storage_dir=...)), which Batch nodes cannot download from or upload "
        "to: use Blob storage (BatchConfig(storage_connection_string=...); Azurite works "
        "locally), or give URLs: ResourceFile(url, file_path) and "
        "OutputFile(pattern, destination=<container URL with a SAS>)"
    )


def prepare_files(
    context: Context, job_id: str, spec: FileSpec, *, cache: FileCache | None = None
) -> TaskFiles:
    """Bind ``spec`` to job ``job_id``: URLs for its own storage and per-task folders.

    Raises ``ValueError`` (nothing stored yet) for a ``from_path`` file or an output
    file without destination on a local directory store. Local files are hashed here and
    stored by :meth:`TaskFiles.store_uploads`.
    """
    cache = cache or FileCache()
    local = [rf for rf in spec.resource_files if rf.source == "local"]
    defaults = spec.default_outputs
    if not isinstance(context.store, BlobStore):
        if local:
            raise _local_store_error(f"{local[0]!r} must be uploaded to the job's storage")
        if defaults:
            raise _local_store_error(
                f"{defaults[0]!r} has no destination, so Batch would upload it to the job's storage"
            )
    base = query = ""
    if local or defaults:
        base, _, query = cache.locator(context, job_id).partition("?")
    resources: list[bm.ResourceFile] = []
    uploads: list[tuple[Path, str]] = []
    for rf in spec.resource_files:
        rf._check_usable()
        mode = cast("str | None", rf.file_mode)
        if rf.url is not None:
            resources.append(
                bm.ResourceFile(http_url=rf.url, file_path=rf.file_path, file_mode=mode)
            )
        elif rf.container_url is not None:
            resources.append(
                bm.ResourceFile(
                    storage_container_url=rf.container_url,
                    blob_prefix=rf.blob_prefix,
                    file_path=rf.file_path,
                    file_mode=mode,
                )
            )
        else:
            assert rf.local_path is not None
            name = _names.resource_file(job_id, cache.digest(rf.local_path))
            uploads.append((rf.local_path, name))
            resources.append(
                bm.ResourceFile(
                    http_url=f"{base}/{quote(name)}?{query}", file_path=rf.file_path, file_mode=mode
                )
            )
    outputs = []
    for of in spec.output_files:
        of._check_usable()
        own = of.destination is None
        folder = of.path if of.path is not None else ("" if own else DEFAULT_DESTINATION_PATH)
        outputs.append(
            _Output(
                pattern=of.pattern,
                container_url=f"{base}?{query}" if own else cast(str, of.destination),
                folder=folder,
                own_storage=own,
                condition=of.condition,
            )
        )
    return TaskFiles(job_id, resources, outputs, list(dict.fromkeys(uploads)))


def check_task_size(task: bm.BatchTaskCreateOptions, what: str) -> None:
    """``ValueError`` if ``task`` (as large as a task of the submission gets) cannot fit in
    an add-collection request: raised before anything is created."""
    size = serialized_size(task)
    if size + _REQUEST_OVERHEAD > MAX_REQUEST_BYTES:
        raise ValueError(
            f"{what}: each task would take {size:,} bytes of JSON with its resource_files "
            f"and output_files, and one Batch add-collection request carries at most "
            f"{MAX_REQUEST_BYTES:,}: give fewer entries (ResourceFile.from_container with a "
            "blob_prefix downloads many blobs in one entry, a zip file many files; an "
            "OutputFile pattern with wildcards uploads many files)"
        )


# --------------------------------------------------------------------------- upload failures


def upload_failed(task: CompletedTask) -> bool:
    """Whether Batch failed the task because its output files could not be uploaded."""
    return bool(task.failure_code and task.failure_code.startswith(_UPLOAD_CODE_PREFIX))


def output_upload_error(job_id: str, task: CompletedTask, result: Any) -> OutputFilesError:
    """The error of a future whose task ran but whose output files were not uploaded;
    ``result`` is what the future would have returned."""
    info = f"{task.failure_category or 'error'} {task.failure_code}: {task.failure_message or ''}"
    return OutputFilesError(job_id=job_id, task_id=task.id, failure_info=info, result=result)


# --------------------------------------------------------------------------- job outputs


def _task_number(task_id: object) -> int:
    if isinstance(task_id, int) and not isinstance(task_id, bool) and task_id >= 0:
        return task_id
    if isinstance(task_id, str) and task_id.isascii() and task_id.isdigit():
        return int(task_id)
    raise ValueError(
        f"task_id {task_id!r}: the tasks that upload output files are numbered (a map's "
        "chunks, submit() calls), e.g. '7'"
    )


def list_outputs(context: Context, job_id: str, task_id: str | None = None) -> list[TaskOutput]:
    """The output files the job's tasks (or task ``task_id``) uploaded to its storage.

    Raises :class:`~batchexecutor.JobNotFoundError` when there are none because the job
    does not exist.
    """
    _names.check_job_id(job_id)
    prefix = (
        _names.outputs_prefix(job_id)
        if task_id is None
        else _names.task_outputs(job_id, _task_number(task_id))
    )
    found = []
    for name in context.store.list_names(prefix):
        parsed = _names.output_task(job_id, name)
        if parsed is not None:
            found.append((parsed[0], TaskOutput(job_id, str(parsed[0]), parsed[1], name)))
    if not found:
        from ._manage import job_info

        job_info(context, job_id)  # JobNotFoundError for a job that does not exist
    found.sort(key=lambda pair: (pair[0], pair[1].path))
    return [output for _, output in found]


def open_output(context: Context, output: TaskOutput) -> IO[bytes]:
    """A stream of one output file's content (close it: use ``with``)."""
    if not isinstance(output, TaskOutput):
        raise TypeError(f"expected a TaskOutput (from job_outputs()), got {type(output).__name__}")
    store = context.store
    if isinstance(store, BlobStore):
        return store.open_blob(output.name)
    return store.open(output.name)


def _target(root: Path, relative: str, name: str) -> Path:
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise StorageError(
            f"output file {name!r} is not written below {str(root)!r}: its name has an "
            "empty, '.' or '..' segment",
            name=name,
        )
    return root.joinpath(*parts)


def download_outputs(
    context: Context,
    job_id: str,
    directory: str | os.PathLike[str],
    task_id: str | None = None,
) -> list[Path]:
    """Download the job's output files into ``directory/<task_id>/<path>`` (or, for one
    task, ``directory/<path>``); the paths written, in :func:`list_outputs` order."""
    root = Path(directory)
    written = []
    for output in list_outputs(context, job_id, task_id):
        relative = output.path if task_id is not None else f"{output.task_id}/{output.path}"
        target = _target(root, relative, output.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.download")
        try:
            with open_output(context, output) as source, open(temporary, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        written.append(target)
    return written


# --------------------------------------------------------------------------- the view


class ExecutorView(Executor):
    """``executor.options(resource_files=..., output_files=...)``: the same executor,
    whose ``submit``, ``map`` and ``map_async`` give every task those files.

    A real ``concurrent.futures.Executor`` with the standard signatures, so it goes
    wherever one is expected (``loop.run_in_executor``, libraries taking an executor).
    It shares the executor's jobs, pool and threads: :meth:`shutdown` ends the view
    only (no new work through it; ``wait`` for the futures it made, ``cancel_futures``
    to cancel those not started), never the executor. ``map()`` deletes its job when the
    iterator is done, so its output files need a ``destination``; use :meth:`map_async`
    to keep them in the job's storage.
    """

    def __init__(self, executor: AzureBatchExecutor, files: FileSpec) -> None:
        import weakref

        self._executor = executor
        self._files = files
        self._futures: weakref.WeakSet[JobFuture[Any]] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def executor(self) -> AzureBatchExecutor:
        """The executor this is a view of."""
        return self._executor

    @property
    def resource_files(self) -> tuple[ResourceFile, ...]:
        return self._files.resource_files

    @property
    def output_files(self) -> tuple[OutputFile, ...]:
        return self._files.output_files

    def _track(self, future: JobFuture[T]) -> JobFuture[T]:
        with self._lock:
            self._futures.add(future)
        return future

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> JobFuture[Any]:
        """``executor.submit(fn, *args, **kwargs)``, its task with this view's files."""
        self._check_open()
        return self._track(self._executor._submit(fn, args, kwargs, self._files or None))

    def map(
        self,
        fn: Any,
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """``executor.map``, each chunk task with this view's files (output files need a
        ``destination``: the job and its storage are deleted once the iterator is done)."""
        self._check_open()
        if self._files.default_outputs:
            raise ValueError(
                f"{self._files.default_outputs[0]!r} has no destination: map() deletes its "
                "job's storage once its iterator is done, so the files would be deleted "
                "with it. Use map_async(...) (outputs kept until delete_job), or give the "
                "OutputFile a destination"
            )
        return self._executor._map(fn, iterables, timeout, chunksize, self._files or None)

    def map_async(self, fn: Any, *iterables: Iterable[Any], **options: Any) -> JobFuture[Any]:
        """``executor.map_async``: this view's files, then those given here, if any."""
        self._check_open()
        extra = file_spec(options.pop("resource_files", ()), options.pop("output_files", ()))
        files = self._files + extra if extra is not None else self._files
        return self._track(
            self._executor.map_async(
                fn,
                *iterables,
                resource_files=files.resource_files,
                output_files=files.output_files,
                **options,
            )
        )

    def options(
        self,
        *,
        resource_files: Iterable[ResourceFile] = (),
        output_files: Iterable[OutputFile] = (),
    ) -> ExecutorView:
        """A view with this view's files and these."""
        extra = file_spec(resource_files, output_files)
        return ExecutorView(self._executor, self._files + extra if extra else self._files)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """End this view (not its executor): no new work through it; ``cancel_futures``
        cancels its futures not started; ``wait`` waits for the rest."""
        with self._lock:
            self._closed = True
            futures: list[Future[Any]] = list(self._futures)
        if cancel_futures:
            for future in futures:
                if not future.done():
                    future.cancel()
        if wait:
            wait_futures(futures)

    def __reduce__(self) -> Any:
        raise TypeError(
            "an ExecutorView cannot be pickled (it holds its executor's connections and "
            "threads): pickle its ResourceFile and OutputFile objects instead"
        )

    def __repr__(self) -> str:
        return (
            f"<ExecutorView of {self._executor!r}: resource_files={list(self.resource_files)!r} "
            f"output_files={list(self.output_files)!r}{' shut down' if self._closed else ''}>"
        )
