"""Data movement for emulated tasks: resource-file downloads and output-file uploads.

The emulator's task runner calls :func:`download_resource_files` before it starts a task's
command line and :func:`upload_output_files` after the command line exits. Both take the
Batch REST wire dicts (camelCase, as in the 2025-06-01 spec definitions ``ResourceFile`` and
``OutputFile``) and raise :class:`TransferError`, whose :meth:`~TransferError.to_failure_info`
is the task's ``executionInfo.failureInfo``.

Batch behaviour reproduced
--------------------------
Resource files (``ResourceFile``):

* Exactly one of ``httpUrl``, ``storageContainerUrl`` and ``autoStorageContainerName``.
* ``httpUrl`` (any http(s) URL, e.g. a blob SAS URL) is downloaded to ``filePath``, which is
  required and names the file. ``storageContainerUrl`` (a container URL with a read+list SAS,
  or a public container) downloads every blob whose name starts with ``blobPrefix`` (all blobs
  without one) to ``<filePath>/<full blob name>``, or to ``<blob name>`` without ``filePath``:
  the blob's "directory structure" is kept in full and the prefix is not stripped.
* Paths are relative to the task working directory and may not break out of it (an absolute
  path, or ``..`` leading outside, is rejected); blob names that would escape are rejected too.
* ``fileMode`` (octal string) is applied to each downloaded file; Batch's Linux default, 0770,
  applies when it is absent.
* The first failure stops the downloads and becomes the failure: ``BlobNotFound``,
  ``BlobAccessDenied``, ``BlobDownloadTimedOut``, ``BlobDownloadMiscError`` for a file;
  ``ResourceContainerNotFound``, ``ResourceContainerAccessDenied``,
  ``ResourceContainerListTimedOut``, ``ResourceContainerListMiscError`` for listing a container;
  ``ResourceDirectoryCreateFailed``, ``ResourceFileCreateFailed``, ``ResourceFileWriteFailed``,
  ``DiskFull`` for the local side. Details carry ``BlobSource`` and ``FilePath`` as Batch's do.

Output files (``OutputFile``):

* ``uploadOptions.uploadCondition`` is ``tasksuccess`` (exit code 0), ``taskfailure`` (nonzero
  exit code) or ``taskcompletion`` (either; also the default). Values are read
  case-insensitively, so older API versions' ``taskSuccess`` spelling works too.
* ``filePattern`` is relative to the task *working* directory (absolute paths work too), so
  ``../stdout.txt`` is the task's stdout.txt. ``$VAR``/``${VAR}`` are expanded first. Wildcards:
  ``*``, ``?``, ``[abc]``, ``[a-c]``, ``[!abc]``, and ``**`` for any number of directories
  (including none); names starting with ``.`` are matched only when the pattern spells the dot
  out. ``abc[*]`` escapes a wildcard character.
* A pattern without wildcards names one file: ``container.path`` is then the whole blob name
  (the file's own name when ``path`` is absent). A pattern with wildcards uploads every matching
  *file* under the virtual directory ``path`` (the container root without one); each blob name
  is ``path`` + ``/`` + the file's path relative to the pattern's wildcard-free leading
  directories, so ``../std*.txt`` with path ``mytask`` gives ``mytask/stdout.txt``, and
  ``out/**/*.csv`` keeps the sub-directories found under ``out``.
* A pattern that matches nothing is not an error (Batch: "The file pattern may match zero
  files"); it is noted in ``fileuploadout.txt``.
* Upload failures become ``FileUploadContainerNotFound``, ``FileUploadAccessDenied``,
  ``FileUploadConflict``, ``FileUploadTimedOut`` or ``FileUploadMiscError``. Existing blobs are
  overwritten.
* ``container.uploadHeaders`` are sent with the upload: the Put Blob content headers
  (``Content-Type``, ``Content-Encoding``, ``Content-Language``, ``Content-Disposition``,
  ``Cache-Control``, ``Content-MD5`` and their ``x-ms-blob-content-*`` forms) become the blob's
  content settings, ``x-ms-meta-*`` its metadata, ``x-ms-access-tier`` its tier and ``x-ms-tags``
  its tags; any other header is passed through on the request unchanged.
* Like Batch, each upload run appends to ``fileuploadout.txt`` (progress) and
  ``fileuploaderr.txt`` (errors) in the task directory. They are written when the run ends, so
  a pattern never uploads the run's own, unfinished log.

Local differences
-----------------
* ``autoStorageContainerName`` cannot work: the emulator has no Batch account with a linked
  auto-storage account. It fails with ``ResourceContainerAccessDenied``.
* ``identityReference`` (a pool's user-assigned managed identity) does not exist locally; a
  resource file that names one fails with ``BlobAccessDenied``/``ResourceContainerAccessDenied``
  and an output file with ``FileUploadAccessDenied``. Use SAS URLs.
* Only ``http``/``https`` URLs are accepted (no ``file:``/``ftp:``).
* Batch rejects some malformed specifications when the task is added; reaching this module
  they fail the task instead (an escaping or missing ``filePath``: ``ResourceFileCreateFailed``;
  no or several sources, a bad ``fileMode``: ``BlobDownloadMiscError``; a bad output
  specification: ``FileUploadMiscError``).
* All output-file entries are attempted even after one fails (so logs still reach storage);
  the first failure is raised. Uploads run one at a time.
* Batch's documentation gives messages for only some codes; the others are written in the same
  style. Batch's details put the full ``BlobSource`` URL, SAS included, in ``failureInfo``;
  here every URL is reported without its query string (where SAS tokens live), and every
  message, detail and log line is scrubbed of ``sig=`` values, so no secret is ever shown.
  A ``Reason`` detail, not in Batch's, says what actually went wrong.
* Categories: ``servererror`` for timeouts and storage 5xx responses, ``usererror`` otherwise.
"""

from __future__ import annotations

import base64
import binascii
import errno
import glob
import logging
import os
import re
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestTimeoutError,
    ServiceResponseTimeoutError,
)
from azure.storage.blob import ContainerClient, ContentSettings, LinearRetry, StandardBlobTier

__all__ = [
    "SERVER_ERROR",
    "USER_ERROR",
    "TransferError",
    "download_resource_files",
    "redact_text",
    "redact_url",
    "upload_output_files",
]

logger = logging.getLogger(__name__)

# ErrorCategory / BatchErrorSourceCategory wire values.
USER_ERROR: Final = "usererror"
SERVER_ERROR: Final = "servererror"

# Failure codes (Microsoft.Azure.Batch.Common.TaskFailureInformationCodes).
BLOB_ACCESS_DENIED: Final = "BlobAccessDenied"
BLOB_DOWNLOAD_MISC_ERROR: Final = "BlobDownloadMiscError"
BLOB_DOWNLOAD_TIMED_OUT: Final = "BlobDownloadTimedOut"
BLOB_NOT_FOUND: Final = "BlobNotFound"
DISK_FULL: Final = "DiskFull"
RESOURCE_CONTAINER_ACCESS_DENIED: Final = "ResourceContainerAccessDenied"
RESOURCE_CONTAINER_LIST_MISC_ERROR: Final = "ResourceContainerListMiscError"
RESOURCE_CONTAINER_LIST_TIMED_OUT: Final = "ResourceContainerListTimedOut"
RESOURCE_CONTAINER_NOT_FOUND: Final = "ResourceContainerNotFound"
RESOURCE_DIRECTORY_CREATE_FAILED: Final = "ResourceDirectoryCreateFailed"
RESOURCE_FILE_CREATE_FAILED: Final = "ResourceFileCreateFailed"
RESOURCE_FILE_WRITE_FAILED: Final = "ResourceFileWriteFailed"
FILE_UPLOAD_ACCESS_DENIED: Final = "FileUploadAccessDenied"
FILE_UPLOAD_CONFLICT: Final = "FileUploadConflict"
FILE_UPLOAD_CONTAINER_NOT_FOUND: Final = "FileUploadContainerNotFound"
FILE_UPLOAD_MISC_ERROR: Final = "FileUploadMiscError"
FILE_UPLOAD_TIMED_OUT: Final = "FileUploadTimedOut"

# Messages: Batch's own where documented, the same style otherwise.
_MESSAGES: Final[Mapping[str, str]] = {
    BLOB_ACCESS_DENIED: "Access for one of the specified Azure Blob(s) is denied",
    BLOB_DOWNLOAD_MISC_ERROR: (
        "Miscellaneous error encountered while downloading one of the specified Azure Blob(s)"
    ),
    BLOB_DOWNLOAD_TIMED_OUT: "Timed out while downloading one of the specified Azure Blob(s)",
    BLOB_NOT_FOUND: "One of the specified Azure Blob(s) is not found",
    DISK_FULL: "There is not enough disk space on the node to download the resource files",
    RESOURCE_CONTAINER_ACCESS_DENIED: (
        "Access for one of the specified Azure Blob container(s) is denied"
    ),
    RESOURCE_CONTAINER_LIST_MISC_ERROR: (
        "Miscellaneous error encountered while listing one of the specified Azure Blob container(s)"
    ),
    RESOURCE_CONTAINER_LIST_TIMED_OUT: (
        "Timed out while listing one of the specified Azure Blob container(s)"
    ),
    RESOURCE_CONTAINER_NOT_FOUND: "One of the specified Azure Blob container(s) is not found",
    RESOURCE_DIRECTORY_CREATE_FAILED: (
        "The node could not create a directory for one of the specified resource files"
    ),
    RESOURCE_FILE_CREATE_FAILED: "The node could not create one of the specified resource files",
    RESOURCE_FILE_WRITE_FAILED: "The node could not write one of the specified resource files",
    FILE_UPLOAD_ACCESS_DENIED: (
        "Access for one of the specified Azure container(s) is denied while attempting to "
        "upload an output file"
    ),
    FILE_UPLOAD_CONFLICT: "A conflict was encountered while attempting to upload an output file",
    FILE_UPLOAD_CONTAINER_NOT_FOUND: (
        "One of the specified Azure container(s) was not found while attempting to upload an "
        "output file"
    ),
    FILE_UPLOAD_MISC_ERROR: (
        "Miscellaneous error encountered while attempting to upload one of the output files"
    ),
    FILE_UPLOAD_TIMED_OUT: "Timed out while attempting to upload one of the output files",
}

#: Seconds a single HTTP request may take to connect or to produce more data.
HTTP_TIMEOUT: Final = 60.0
#: Retries (after the first try) of a storage request that failed transiently.
RETRY_TOTAL: Final = 2
#: Mean seconds between retries.
RETRY_BACKOFF: Final = 1
#: Batch's default permission bits for a downloaded file on Linux.
DEFAULT_FILE_MODE: Final = 0o770

_CHUNK = 1024 * 1024
_UPLOAD_CONDITIONS: Final = ("tasksuccess", "taskfailure", "taskcompletion")
_WILDCARD_RE = re.compile(r"[*?\[]")
_ENV_VAR_RE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_URL_IN_TEXT_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_SECRET_PARAM_RE = re.compile(r"(?i)((?:^|[?&;\s])sig=)[^&\s'\"<>]*")
_REASON_LIMIT = 400


class TransferError(Exception):
    """A resource-file download or output-file upload failed; becomes the task's failureInfo.

    ``code`` is one of Batch's task failure codes, ``category`` an ErrorCategory wire value
    (``usererror``/``servererror``), ``details`` the name/value pairs of ``failureInfo.details``.
    Nothing in it contains a SAS token.
    """

    code: str
    category: str
    message: str
    details: list[tuple[str, str]]

    def __init__(
        self,
        code: str,
        category: str,
        message: str,
        details: Iterable[tuple[str, str]] = (),
    ) -> None:
        details_list = [(str(name), redact_text(str(value))) for name, value in details]
        message = redact_text(message)
        super().__init__(code, category, message, details_list)
        self.code = code
        self.category = category
        self.message = message
        self.details = details_list

    def __str__(self) -> str:
        extra = "; ".join(f"{name}: {value}" for name, value in self.details)
        return f"{self.code}: {self.message}" + (f" ({extra})" if extra else "")

    def to_failure_info(self) -> dict[str, Any]:
        """The wire ``BatchTaskFailureInfo``: category, code, message, details."""
        return {
            "category": self.category,
            "code": self.code,
            "message": self.message,
            "details": [{"name": name, "value": value} for name, value in self.details],
        }


def _error(
    code: str,
    details: Iterable[tuple[str, str]],
    *,
    category: str = USER_ERROR,
    message: str | None = None,
) -> TransferError:
    return TransferError(code, category, message or _MESSAGES[code], details)


# --------------------------------------------------------------------------- redaction


def redact_url(url: str) -> str:
    """``url`` without query string, fragment and user info: safe to show."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redact_text(text: str) -> str:
    """``text`` with URLs' query strings removed and any ``sig=`` value blanked."""
    text = _URL_IN_TEXT_RE.sub(lambda match: redact_url(match.group(0)), text)
    return _SECRET_PARAM_RE.sub(r"\1<redacted>", text)


def _reason(exc: BaseException) -> str:
    """A short, secret-free description of ``exc``."""
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        error_code = getattr(exc, "error_code", None)
        code = getattr(error_code, "value", error_code)
        text = f"HTTP {exc.status_code}" + (f" ({code})" if code else "")
    elif isinstance(exc, urllib.error.HTTPError):
        storage_code = exc.headers.get("x-ms-error-code") if exc.headers else None
        text = f"HTTP {exc.code} {exc.reason}" + (f" ({storage_code})" if storage_code else "")
    elif isinstance(exc, urllib.error.URLError):
        text = f"{type(exc.reason).__name__}: {exc.reason}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = redact_text(" ".join(text.split()))
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 3] + "..."


def _storage_client_options() -> dict[str, Any]:
    return {
        "retry_policy": LinearRetry(
            backoff=RETRY_BACKOFF, random_jitter_range=RETRY_BACKOFF, retry_total=RETRY_TOTAL
        ),
        "connection_timeout": HTTP_TIMEOUT,
        "read_timeout": HTTP_TIMEOUT,
    }


# --------------------------------------------------------------------------- resource files


def download_resource_files(resource_files: Sequence[Mapping[str, Any]], working_dir: Path) -> None:
    """Download a task's ``resourceFiles`` into ``working_dir`` as Batch does.

    Stops at the first failure, raising :class:`TransferError` (Batch's pre-processing error).
    """
    working_dir = Path(working_dir)
    for resource_file in resource_files:
        try:
            _download_one(resource_file, working_dir)
        except TransferError:
            raise
        except Exception as exc:  # anything unforeseen still fails the task, not the runner
            logger.debug("unexpected resource file failure: %s", _reason(exc))
            raise _error(BLOB_DOWNLOAD_MISC_ERROR, [("Reason", _reason(exc))]) from None


def _download_one(spec: Mapping[str, Any], working_dir: Path) -> None:
    sources = [
        key
        for key in ("httpUrl", "storageContainerUrl", "autoStorageContainerName")
        if spec.get(key)
    ]
    file_path = spec.get("filePath")
    if len(sources) != 1:
        raise _error(
            BLOB_DOWNLOAD_MISC_ERROR,
            [
                (
                    "Reason",
                    "a resource file needs exactly one of httpUrl, storageContainerUrl and "
                    f"autoStorageContainerName; got {', '.join(sources) or 'none'}",
                )
            ],
        )
    if file_path is not None and not isinstance(file_path, str):
        raise _error(RESOURCE_FILE_CREATE_FAILED, [("Reason", "filePath must be a string")])
    source = sources[0]
    mode = _file_mode(spec.get("fileMode"))

    if source == "autoStorageContainerName":
        raise _error(
            RESOURCE_CONTAINER_ACCESS_DENIED,
            [
                ("ContainerName", str(spec["autoStorageContainerName"])),
                ("Reason", "autoStorageContainerName is not supported by the local emulator"),
            ],
            message=(
                "autoStorageContainerName is not supported by the local Batch emulator: it has "
                "no linked auto-storage account. Use storageContainerUrl with a container SAS "
                "URL (read and list permissions) instead."
            ),
        )
    if spec.get("identityReference"):
        denied = BLOB_ACCESS_DENIED if source == "httpUrl" else RESOURCE_CONTAINER_ACCESS_DENIED
        raise _error(
            denied,
            [("BlobSource", redact_url(str(spec[source]))), ("Reason", "identityReference")],
            message=(
                "identityReference (a managed identity) is not supported by the local Batch "
                "emulator. Put a SAS token in the URL instead."
            ),
        )

    if source == "httpUrl":
        url = str(spec["httpUrl"])
        if not file_path:
            raise _error(
                RESOURCE_FILE_CREATE_FAILED,
                [("BlobSource", redact_url(url)), ("Reason", "httpUrl needs a filePath")],
            )
        target = _inside(working_dir, file_path, what="filePath", source=url)
        if target == working_dir.resolve() or file_path.endswith(("/", "\\")):
            raise _error(
                RESOURCE_FILE_CREATE_FAILED,
                [
                    ("BlobSource", redact_url(url)),
                    ("FilePath", file_path),
                    ("Reason", "with httpUrl, filePath must name a file, not a directory"),
                ],
            )
        _download_http(url, target, mode)
    else:
        url = str(spec["storageContainerUrl"])
        base = _inside(working_dir, file_path or ".", what="filePath", source=url)
        prefix = spec.get("blobPrefix")
        _download_container(url, str(prefix) if prefix else None, base, working_dir, mode)


def _file_mode(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_FILE_MODE
    try:
        mode = int(str(value), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise _error(
            BLOB_DOWNLOAD_MISC_ERROR,
            [("Reason", f"fileMode {str(value)[:20]!r} is not an octal permission mode")],
        )
    return mode


def _inside(
    root: Path, relative: str, *, what: str, source: str, anchor: Path | None = None
) -> Path:
    """``anchor/relative`` (anchor defaults to ``root``), made absolute and normalised.

    A TransferError if ``relative`` is absolute or the result would leave ``root``.
    """
    root = root.resolve()
    candidate = Path(os.path.normpath((anchor or root) / relative))
    if os.path.isabs(relative) or os.path.commonpath([root, candidate]) != str(root):
        raise _error(
            RESOURCE_FILE_CREATE_FAILED,
            [
                ("BlobSource", redact_url(source)),
                ("FilePath", relative),
                (
                    "Reason",
                    f"{what} must be a relative path that stays inside the task working directory",
                ),
            ],
        )
    return candidate


def _download_http(url: str, target: Path, mode: int) -> None:
    details = [("BlobSource", redact_url(url)), ("FilePath", str(target))]
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme not in ("http", "https"):
        raise _error(
            BLOB_DOWNLOAD_MISC_ERROR,
            [*details, ("Reason", "httpUrl must be an http or https URL")],
        )
    logger.debug("downloading %s to %s", redact_url(url), target)
    response = _open_http(url, details)
    with response:

        def chunks() -> Iterator[bytes]:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, urllib.error.URLError) as exc:
                    raise _http_error(exc, details) from None
                if not chunk:
                    return
                yield chunk

        _write_file(target, mode, chunks(), details)


def _open_http(url: str, details: list[tuple[str, str]]) -> Any:
    request = urllib.request.Request(url, headers={"User-Agent": "batchexecutor-emulator"})
    attempt = 0
    while True:
        try:
            return urllib.request.urlopen(request, timeout=HTTP_TIMEOUT)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code < 500 or attempt >= RETRY_TOTAL:
                raise _http_error(exc, details) from None
        except (OSError, ValueError) as exc:
            if _is_timeout(exc) or attempt >= RETRY_TOTAL or isinstance(exc, ValueError):
                raise _http_error(exc, details) from None
        attempt += 1
        time.sleep(RETRY_BACKOFF * attempt)


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return isinstance(exc.reason, (socket.timeout, TimeoutError))
    return isinstance(exc, (socket.timeout, TimeoutError))


def _http_error(exc: BaseException, details: list[tuple[str, str]]) -> TransferError:
    reason = [*details, ("Reason", _reason(exc))]
    if isinstance(exc, urllib.error.HTTPError):
        if exc.code in (404, 410):
            return _error(BLOB_NOT_FOUND, reason)
        if exc.code in (401, 403):
            return _error(BLOB_ACCESS_DENIED, reason)
        category = SERVER_ERROR if exc.code >= 500 else USER_ERROR
        return _error(BLOB_DOWNLOAD_MISC_ERROR, reason, category=category)
    if _is_timeout(exc):
        return _error(BLOB_DOWNLOAD_TIMED_OUT, reason, category=SERVER_ERROR)
    return _error(BLOB_DOWNLOAD_MISC_ERROR, reason)


def _download_container(
    url: str, prefix: str | None, base: Path, working_dir: Path, mode: int
) -> None:
    container_details = [("ContainerUrl", redact_url(url))]
    try:
        client = ContainerClient.from_container_url(url, **_storage_client_options())
    except ValueError as exc:
        raise _error(
            RESOURCE_CONTAINER_LIST_MISC_ERROR, [*container_details, ("Reason", _reason(exc))]
        ) from None
    try:
        names = [
            blob.name
            for blob in client.list_blobs(name_starts_with=prefix)
            if not blob.name.endswith("/")
        ]
    except AzureError as exc:
        raise _container_error(exc, container_details) from None
    logger.debug("%d blob(s) to download from %s", len(names), redact_url(url))
    for name in names:
        blob_url = f"{redact_url(url).rstrip('/')}/{quote(name)}"
        target = _inside(working_dir, name, what="blob name", source=blob_url, anchor=base)
        details = [("BlobSource", blob_url), ("FilePath", str(target))]
        blob = client.get_blob_client(name)

        def chunks(blob: Any = blob, details: list[tuple[str, str]] = details) -> Iterator[bytes]:
            try:
                yield from blob.download_blob().chunks()
            except AzureError as exc:
                raise _blob_error(exc, details) from None

        _write_file(target, mode, chunks(), details)


def _status(exc: AzureError) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _is_azure_timeout(exc: AzureError) -> bool:
    return isinstance(exc, (ServiceRequestTimeoutError, ServiceResponseTimeoutError))


def _container_error(exc: AzureError, details: list[tuple[str, str]]) -> TransferError:
    reason = [*details, ("Reason", _reason(exc))]
    status = _status(exc)
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        return _error(RESOURCE_CONTAINER_NOT_FOUND, reason)
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        return _error(RESOURCE_CONTAINER_ACCESS_DENIED, reason)
    if _is_azure_timeout(exc):
        return _error(RESOURCE_CONTAINER_LIST_TIMED_OUT, reason, category=SERVER_ERROR)
    category = SERVER_ERROR if status is not None and status >= 500 else USER_ERROR
    return _error(RESOURCE_CONTAINER_LIST_MISC_ERROR, reason, category=category)


def _blob_error(exc: AzureError, details: list[tuple[str, str]]) -> TransferError:
    reason = [*details, ("Reason", _reason(exc))]
    status = _status(exc)
    if isinstance(exc, ResourceNotFoundError) or status in (404, 410):
        return _error(BLOB_NOT_FOUND, reason)
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        return _error(BLOB_ACCESS_DENIED, reason)
    if _is_azure_timeout(exc):
        return _error(BLOB_DOWNLOAD_TIMED_OUT, reason, category=SERVER_ERROR)
    category = SERVER_ERROR if status is not None and status >= 500 else USER_ERROR
    return _error(BLOB_DOWNLOAD_MISC_ERROR, reason, category=category)


def _local_error(code: str, exc: OSError, details: list[tuple[str, str]]) -> TransferError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        code = DISK_FULL
    return _error(code, [*details, ("Reason", _reason(exc))])


def _write_file(
    target: Path, mode: int, chunks: Iterator[bytes], details: list[tuple[str, str]]
) -> None:
    """Write ``chunks`` to a temporary file beside ``target``, then move it into place."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _local_error(RESOURCE_DIRECTORY_CREATE_FAILED, exc, details) from None
    try:
        fd, temporary = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".part", dir=target.parent
        )
    except OSError as exc:
        raise _local_error(RESOURCE_FILE_CREATE_FAILED, exc, details) from None
    try:
        with os.fdopen(fd, "wb") as sink:
            for chunk in chunks:
                try:
                    sink.write(chunk)
                except OSError as exc:
                    raise _local_error(RESOURCE_FILE_WRITE_FAILED, exc, details) from None
            try:
                sink.flush()
            except OSError as exc:
                raise _local_error(RESOURCE_FILE_WRITE_FAILED, exc, details) from None
        try:
            os.chmod(temporary, mode)
            os.replace(temporary, target)
        except OSError as exc:
            raise _local_error(RESOURCE_FILE_CREATE_FAILED, exc, details) from None
    finally:
        with suppress(OSError):
            os.unlink(temporary)


# --------------------------------------------------------------------------- output files


@dataclass
class _UploadLog:
    """Lines for Batch's fileuploadout.txt / fileuploaderr.txt, written at the end."""

    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)

    @staticmethod
    def _stamp(text: str) -> str:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return f"{now} {redact_text(text)}"

    def info(self, text: str) -> None:
        self.out.append(self._stamp(text))
        logger.debug("%s", redact_text(text))

    def error(self, text: str) -> None:
        line = self._stamp(text)
        self.out.append(line)
        self.err.append(line)
        logger.info("output file upload failed: %s", redact_text(text))

    def write(self, task_dir: Path) -> None:
        for name, lines in (("fileuploadout.txt", self.out), ("fileuploaderr.txt", self.err)):
            try:
                with open(task_dir / name, "a", encoding="utf-8") as sink:
                    sink.writelines(line + "\n" for line in lines)
            except OSError as exc:
                logger.warning("could not write %s: %s", task_dir / name, exc)


def upload_output_files(
    output_files: Sequence[Mapping[str, Any]],
    task_dir: Path,
    working_dir: Path,
    *,
    succeeded: bool,
    environment: Mapping[str, str] | None = None,
) -> None:
    """Upload a task's ``outputFiles`` whose upload condition holds, as Batch does.

    ``succeeded`` is whether the task process exited with code 0. ``environment`` (default:
    this process's) expands ``$VAR`` in patterns; pass the task's environment. Every entry is
    attempted; the first failure is raised as :class:`TransferError` after all have been tried.
    """
    task_dir = Path(task_dir)
    working_dir = Path(working_dir)
    env = os.environ if environment is None else environment
    log = _UploadLog()
    first_error: TransferError | None = None
    attempted = False
    for index, spec in enumerate(output_files):
        try:
            if not _condition_holds(spec, succeeded):
                continue
            attempted = True
            _upload_one(spec, working_dir, env, log)
        except Exception as exc:  # anything unforeseen still fails the task, not the runner
            attempted = True
            error = (
                exc
                if isinstance(exc, TransferError)
                else _error(FILE_UPLOAD_MISC_ERROR, [("Reason", _reason(exc))])
            )
            log.error(f"outputFiles[{index}]: {error}")
            if first_error is None:
                first_error = error
    if attempted:
        log.write(task_dir)
    if first_error is not None:
        raise first_error


def _condition_holds(spec: Mapping[str, Any], succeeded: bool) -> bool:
    options = spec.get("uploadOptions") or {}
    raw = options.get("uploadCondition") if isinstance(options, Mapping) else None
    condition = str(raw).lower() if raw else "taskcompletion"
    if condition not in _UPLOAD_CONDITIONS:
        raise _error(
            FILE_UPLOAD_MISC_ERROR,
            [
                ("FilePattern", str(spec.get("filePattern", ""))),
                ("Reason", f"unknown uploadCondition {str(raw)[:40]!r}"),
            ],
        )
    if condition == "tasksuccess":
        return succeeded
    if condition == "taskfailure":
        return not succeeded
    return True


def _upload_one(
    spec: Mapping[str, Any], working_dir: Path, env: Mapping[str, str], log: _UploadLog
) -> None:
    pattern = spec.get("filePattern")
    destination = spec.get("destination") or {}
    container = destination.get("container") if isinstance(destination, Mapping) else None
    base_details = [("FilePattern", str(pattern))]
    if not isinstance(pattern, str) or not pattern:
        raise _error(FILE_UPLOAD_MISC_ERROR, [*base_details, ("Reason", "filePattern is empty")])
    if not isinstance(container, Mapping) or not container.get("containerUrl"):
        raise _error(
            FILE_UPLOAD_MISC_ERROR,
            [*base_details, ("Reason", "destination.container.containerUrl is required")],
        )
    url = str(container["containerUrl"])
    details = [*base_details, ("ContainerUrl", redact_url(url))]
    if container.get("identityReference"):
        raise _error(
            FILE_UPLOAD_ACCESS_DENIED,
            [*details, ("Reason", "identityReference")],
            message=(
                "identityReference (a managed identity) is not supported by the local Batch "
                "emulator. Put a SAS token with write permission in containerUrl instead."
            ),
        )
    path = container.get("path")
    path = str(path) if path else ""
    options = _upload_options(container.get("uploadHeaders"), details)

    expanded = _expand(pattern, env)
    matches = _match(expanded, working_dir)
    if not matches:
        log.info(f"No files matched the file pattern {pattern!r}; nothing to upload.")
        return
    wildcard = bool(_WILDCARD_RE.search(expanded))
    try:
        client = ContainerClient.from_container_url(url, **_storage_client_options())
    except ValueError as exc:
        raise _error(FILE_UPLOAD_MISC_ERROR, [*details, ("Reason", _reason(exc))]) from None
    for local, relative in matches:
        if wildcard:
            blob_name = f"{path.rstrip('/')}/{relative}" if path else relative
        else:
            blob_name = path or local.name
        file_details = [*details, ("BlobName", blob_name), ("FilePath", str(local))]
        log.info(f"Uploading {local} to {redact_url(url).rstrip('/')}/{blob_name}")
        try:
            with open(local, "rb") as source:
                client.get_blob_client(blob_name).upload_blob(source, overwrite=True, **options)
        except OSError as exc:
            raise _error(
                FILE_UPLOAD_MISC_ERROR, [*file_details, ("Reason", _reason(exc))]
            ) from None
        except AzureError as exc:
            raise _upload_error(exc, file_details) from None
        log.info(f"Uploaded {local}")


def _expand(pattern: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        return env.get(name, match.group(0))

    return _ENV_VAR_RE.sub(replace, pattern)


def _match(pattern: str, working_dir: Path) -> list[tuple[Path, str]]:
    """Files matching ``pattern``: (absolute path, path relative to the pattern's base)."""
    absolute = os.path.isabs(pattern)
    root = working_dir.resolve()
    if not _WILDCARD_RE.search(pattern):
        local = Path(pattern) if absolute else root / pattern
        return [(Path(os.path.normpath(local)), local.name)] if local.is_file() else []

    parts = pattern.split("/")
    fixed: list[str] = []
    for part in parts[:-1]:
        if _WILDCARD_RE.search(part):
            break
        fixed.append(part)
    base = os.path.normpath("/".join(fixed) or ("/" if absolute else "."))
    if absolute:
        found = glob.glob(pattern, recursive=True)
    else:
        found = glob.glob(pattern, root_dir=root, recursive=True)
    results: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for match in sorted(found):
        lexical = os.path.normpath(match)
        local = Path(lexical) if absolute else Path(os.path.normpath(root / lexical))
        if str(local) in seen or not local.is_file():
            continue
        seen.add(str(local))
        relative = os.path.relpath(lexical, base).replace(os.sep, "/")
        results.append((local, relative))
    return results


_CONTENT_HEADERS: Final[Mapping[str, str]] = {
    "content-type": "content_type",
    "x-ms-blob-content-type": "content_type",
    "content-encoding": "content_encoding",
    "x-ms-blob-content-encoding": "content_encoding",
    "content-language": "content_language",
    "x-ms-blob-content-language": "content_language",
    "content-disposition": "content_disposition",
    "x-ms-blob-content-disposition": "content_disposition",
    "cache-control": "cache_control",
    "x-ms-blob-cache-control": "cache_control",
    "content-md5": "content_md5",
    "x-ms-blob-content-md5": "content_md5",
}


def _upload_options(headers: Any, details: list[tuple[str, str]]) -> dict[str, Any]:
    """``uploadHeaders`` as keyword arguments for ``BlobClient.upload_blob``."""
    if not headers:
        return {}
    content: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    extra: dict[str, str] = {}
    options: dict[str, Any] = {}
    for header in headers:
        name = str(header.get("name", "")) if isinstance(header, Mapping) else ""
        value = header.get("value") if isinstance(header, Mapping) else None
        value = "" if value is None else str(value)
        lowered = name.strip().lower()
        if not lowered:
            raise _error(
                FILE_UPLOAD_MISC_ERROR, [*details, ("Reason", "an uploadHeaders entry has no name")]
            )
        if lowered in _CONTENT_HEADERS:
            setting = _CONTENT_HEADERS[lowered]
            if setting == "content_md5":
                try:
                    content[setting] = bytearray(base64.b64decode(value, validate=True))
                except (binascii.Error, ValueError):
                    raise _error(
                        FILE_UPLOAD_MISC_ERROR,
                        [*details, ("Reason", f"{name} is not base64")],
                    ) from None
            else:
                content[setting] = value
        elif lowered.startswith("x-ms-meta-"):
            metadata[name.strip()[len("x-ms-meta-") :]] = value
        elif lowered == "x-ms-access-tier":
            try:
                options["standard_blob_tier"] = StandardBlobTier(value.capitalize())
            except ValueError:
                raise _error(
                    FILE_UPLOAD_MISC_ERROR,
                    [*details, ("Reason", f"unknown access tier {value[:20]!r}")],
                ) from None
        elif lowered == "x-ms-tags":
            tags: dict[str, str] = {}
            for pair in value.split("&"):
                if pair:
                    key, _, tag = pair.partition("=")
                    tags[unquote(key)] = unquote(tag)
            options["tags"] = tags
        else:
            extra[name.strip()] = value
    if content:
        options["content_settings"] = ContentSettings(**content)
    if metadata:
        options["metadata"] = metadata
    if extra:
        options["headers"] = extra
    return options


def _upload_error(exc: AzureError, details: list[tuple[str, str]]) -> TransferError:
    reason = [*details, ("Reason", _reason(exc))]
    status = _status(exc)
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        return _error(FILE_UPLOAD_CONTAINER_NOT_FOUND, reason)
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        return _error(FILE_UPLOAD_ACCESS_DENIED, reason)
    if isinstance(exc, (ResourceExistsError, ResourceModifiedError)) or status in (409, 412):
        return _error(FILE_UPLOAD_CONFLICT, reason)
    if _is_azure_timeout(exc):
        return _error(FILE_UPLOAD_TIMED_OUT, reason, category=SERVER_ERROR)
    category = SERVER_ERROR if status is not None and status >= 500 else USER_ERROR
    return _error(FILE_UPLOAD_MISC_ERROR, reason, category=category)
