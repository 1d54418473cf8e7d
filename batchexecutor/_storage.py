"""Where jobs' objects live: one small :class:`Store` interface, two implementations.

* :class:`LocalStore` -- a directory (local mode: the emulator's nodes share this host's
  file system). Writes go to a temporary file beside the target, then ``os.replace``.
* :class:`BlobStore` -- an Azure Blob container (azure-storage-blob ``ContainerClient``),
  each job under its own prefix (:mod:`batchexecutor._names`). Every request runs under a
  :mod:`batchexecutor._retry` policy with a deadline; build the client with the SDK's
  retries off (``retry_total=0``) so that policy is the only one.

Names are those of :mod:`batchexecutor._names`: ``/``-separated segments of letters,
digits, ``_``, ``-`` and ``.``, none starting with a dot.

**Node locators.** A node gets a store back from one string, :meth:`Store.node_locator`,
through :func:`open_store`. For a LocalStore it is the directory. For a BlobStore it is
the container URL with a service SAS:

* *Scope: the container.* A SAS cannot be limited to a blob-name prefix. Azure offers a
  directory SAS (``sr=d``) only on accounts with a hierarchical namespace, azure-storage-
  blob cannot sign one, and Azurite cannot check one; per-blob SAS would put one URL per
  object in every task (and the combine needs every outcome). So the SAS covers the
  container: keep one container per trust boundary (a user or an application), since
  a node of one job can read, and overwrite, the other jobs' objects in it.
* *Permissions: read and write* (``sp=rw``), nothing else: no list, no delete, no tags.
  Nodes read their function and inputs and write outcomes. Create (``c``) alone would
  forbid overwriting, but Azure accepts it only for single-request uploads, not for the
  Put Block / Put Block List sequence that large outcomes and a multi-GB combined result
  need (azure-cli#16899, azure-storage-node#485); write covers creation.
* *Expiry: given by the caller* (the job's lifetime), never a fixed default. No start
  time, so a node whose clock runs behind is not refused. HTTPS only when the endpoint is.
* *Signed with* the account key when the store has one, else a user delegation key
  (Microsoft Entra ID), which Azure limits to seven days.

No SAS, key or connection string appears in a ``repr``, ``str``, exception or log line:
reprs show the URL without its query, and errors carry
:func:`batchexecutor._retry.describe` text (which masks signatures), never the SDK's
exception as a cause (its message can contain the request URL).
"""

from __future__ import annotations

import abc
import base64
import io
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

from . import _names
from ._errors import ObjectExistsError, ObjectNotFoundError, StorageError

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

__all__ = [
    "NODE_SAS_PERMISSIONS",
    "USER_DELEGATION_LIMIT",
    "BlobStore",
    "LocalStore",
    "Store",
    "open_store",
]

T = TypeVar("T")

#: What a node's SAS allows: read inputs, write outcomes (see the module docstring).
NODE_SAS_PERMISSIONS: Final = "rw"
#: Azure's limit on a user delegation key's lifetime, hence on a SAS signed with one.
USER_DELEGATION_LIMIT: Final = timedelta(days=7)

_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*")
_PREFIX = re.compile(r"(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/)*[A-Za-z0-9_.-]*")
_MAX_NAME = 1024  # Azure's limit on blob names
_COPY_PIECE = 1 << 20


def _check_name(name: str) -> str:
    if not isinstance(name, str) or len(name) > _MAX_NAME or not _NAME.fullmatch(name):
        raise ValueError(f"invalid stored object name {name!r}")
    return name


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or len(prefix) > _MAX_NAME or not _PREFIX.fullmatch(prefix):
        raise ValueError(f"invalid name prefix {prefix!r}")
    return prefix


def _check_range(offset: int, length: int) -> None:
    if offset < 0 or length < 0:
        raise ValueError(f"invalid range: offset {offset}, length {length}")


def _expiry_time(expiry: datetime | timedelta) -> datetime:
    now = datetime.now(timezone.utc)
    if isinstance(expiry, timedelta):
        expiry = now + expiry
    elif expiry.tzinfo is None:
        raise ValueError("expiry must be timezone-aware (e.g. datetime.now(timezone.utc) + ...)")
    if expiry <= now:
        raise ValueError(f"expiry {expiry.isoformat()} is not in the future")
    return expiry.astimezone(timezone.utc)


class Store(abc.ABC):
    """A flat namespace of byte objects, each written whole.

    Writes are atomic: a reader sees the old object (or none) or the whole new one,
    never a part. Errors are :class:`~batchexecutor._errors.StorageError` (and its
    ``ObjectNotFoundError`` / ``ObjectExistsError``); invalid names are ``ValueError``.
    """

    @abc.abstractmethod
    def writer(self, name: str, *, overwrite: bool = True) -> AbstractContextManager[IO[bytes]]:
        """A file to write ``name`` into; stored when the block ends, discarded on error.

        With ``overwrite=False`` an existing object raises ``ObjectExistsError``.
        """

    def put(self, name: str, data: bytes, *, overwrite: bool = True) -> None:
        """Store ``data`` as ``name``."""
        with self.writer(name, overwrite=overwrite) as file:
            file.write(data)

    def put_stream(
        self,
        name: str,
        stream: IO[bytes],
        *,
        length: int | None = None,
        overwrite: bool = True,
    ) -> None:
        """Store ``length`` bytes of ``stream`` (all that is left by default) as ``name``."""
        with self.writer(name, overwrite=overwrite) as file:
            _copy(stream, file, length)

    @abc.abstractmethod
    def open(self, name: str) -> IO[bytes]:
        """A file reading ``name`` as a stream (close it: use ``with``)."""

    def get(self, name: str) -> bytes:
        """The whole of ``name``."""
        with self.open(name) as file:
            return file.read()

    @abc.abstractmethod
    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """Bytes ``offset`` to ``offset + length`` of ``name`` (fewer past its end)."""

    @abc.abstractmethod
    def exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    def list_names(self, prefix: str = "") -> list[str]:
        """The names starting with ``prefix``, sorted."""

    @abc.abstractmethod
    def delete(self, name: str) -> bool:
        """Delete ``name``; ``False`` if it did not exist."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose name starts with ``prefix`` (not empty); returns how many."""
        if not _check_prefix(prefix):
            raise ValueError("refusing to delete everything: give a non-empty prefix")
        return sum(self.delete(name) for name in self.list_names(prefix))

    @abc.abstractmethod
    def node_locator(self, job_id: str, *, expiry: datetime | timedelta) -> str:
        """A string a node turns back into a store for ``job_id`` with :func:`open_store`.

        ``expiry`` (an aware datetime, or a duration from now) is when the node's access
        ends: the job's lifetime. The locator may hold a credential: treat it as a secret.
        """


def _copy(source: IO[bytes], target: IO[bytes], length: int | None) -> None:
    if length is None:
        shutil.copyfileobj(source, target, _COPY_PIECE)
        return
    left = length
    while left > 0:
        piece = source.read(min(left, _COPY_PIECE))
        if not piece:
            raise ValueError(f"stream ended {left} bytes short of the {length} announced")
        target.write(piece)
        left -= len(piece)


# --------------------------------------------------------------------------- local directory


class LocalStore(Store):
    """A directory; each name is a relative path under it.

    Writes are atomic against readers and crashes (temporary file, then ``os.replace``;
    ``os.link`` when overwriting is not allowed) but not synced to disk: a power cut may
    lose a recent object, and a torn one fails its checksum when read.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, name: str) -> Path:
        return self.root.joinpath(*_check_name(name).split("/"))

    @contextmanager
    def writer(self, name: str, *, overwrite: bool = True) -> Iterator[IO[bytes]]:
        path = self._path(name)
        # Beside the target (same file system, so the rename is atomic) under a dotted
        # name that listings skip; a crash leaves it for delete_prefix to remove.
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file = open(temp, "xb")  # noqa: SIM115 -- closed below, before the rename
        except OSError as error:
            raise StorageError(
                f"cannot write {_names.describe(name)}: {error.strerror}", name=name
            ) from None
        try:
            with file:
                yield file
            self._commit(temp, path, name, overwrite)
        finally:
            temp.unlink(missing_ok=True)

    @staticmethod
    def _commit(temp: Path, path: Path, name: str, overwrite: bool) -> None:
        try:
            if overwrite:
                os.replace(temp, path)
            else:
                os.link(temp, path)  # fails if the target exists: create-only, atomically
        except FileExistsError:
            raise ObjectExistsError(f"{_names.describe(name)} already exists", name=name) from None
        except OSError as error:
            raise StorageError(
                f"cannot write {_names.describe(name)}: {error.strerror}", name=name
            ) from None

    def open(self, name: str) -> IO[bytes]:
        try:
            return open(self._path(name), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(
                f"{_names.describe(name)} does not exist", name=name
            ) from None
        except OSError as error:
            raise StorageError(
                f"cannot read {_names.describe(name)}: {error.strerror}", name=name
            ) from None

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        _check_range(offset, length)
        with self.open(name) as file:
            file.seek(offset)
            return file.read(length)

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def list_names(self, prefix: str = "") -> list[str]:
        _check_prefix(prefix)
        folder, _, _ = prefix.rpartition("/")
        base = self.root.joinpath(*folder.split("/")) if folder else self.root
        names = []
        for directory, subdirectories, files in os.walk(base):
            subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
            relative = Path(directory).relative_to(self.root).as_posix()
            for file in files:
                name = file if relative == "." else f"{relative}/{file}"
                if not file.startswith(".") and name.startswith(prefix):
                    names.append(name)
        return sorted(names)

    def delete(self, name: str) -> bool:
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            return False
        except OSError as error:
            raise StorageError(
                f"cannot delete {_names.describe(name)}: {error.strerror}", name=name
            ) from None
        return True

    def delete_prefix(self, prefix: str) -> int:
        count = super().delete_prefix(prefix)
        if prefix.endswith("/"):  # also the folders, and temporary files of dead writers
            shutil.rmtree(self.root.joinpath(*prefix.rstrip("/").split("/")), ignore_errors=True)
        return count

    def node_locator(self, job_id: str, *, expiry: datetime | timedelta) -> str:
        _names.check_job_id(job_id)
        _expiry_time(expiry)  # validated for symmetry with BlobStore; a path does not expire
        return str(self.root)


# --------------------------------------------------------------------------- Azure Blob


class BlobStore(Store):
    """An Azure Blob container, through an azure-storage-blob ``ContainerClient``.

    ``deadline`` bounds each request, retries included (default: the
    :mod:`batchexecutor._retry` default). Streamed reads (:meth:`open`) fetch
    ``read_chunk_size`` bytes per request, pinned to the blob's ETag; :meth:`writer`
    stages a block every ``block_size`` bytes and commits the block list at the end
    (one plain upload for an object smaller than a block). Each of those requests is
    retried on its own, so memory stays at one chunk or block whatever the object's
    size, nothing touches the local disk, and a multi-GB transfer survives a transient
    failure without starting over.
    """

    def __init__(
        self,
        container: ContainerClient,
        *,
        deadline: float | None = None,
        read_chunk_size: int = 4 << 20,
        block_size: int = 8 << 20,
    ) -> None:
        if read_chunk_size <= 0 or block_size <= 0:
            raise ValueError("read_chunk_size and block_size must be positive")
        self.container = container
        self.deadline = deadline
        self.read_chunk_size = read_chunk_size
        self.block_size = block_size
        parts = urlsplit(container.url)
        # The URL without its query: a client built from a SAS URL keeps the SAS there.
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path}"

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> BlobStore:
        """A store for a container URL with a SAS (a node locator), SDK retries off."""
        from azure.storage.blob import ContainerClient

        client = ContainerClient.from_container_url(
            url, retry_total=0, connection_timeout=20, read_timeout=60
        )
        return cls(client, **kwargs)

    def __repr__(self) -> str:
        return f"BlobStore({self.url!r})"

    # -- every request goes through here ----------------------------------------------

    def _call(self, action: str, name: str | None, fn: Callable[[], T]) -> T:
        from azure.core.exceptions import (
            AzureError,
            ClientAuthenticationError,
            HttpResponseError,
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )

        from ._retry import DeadlineExceeded, call, describe, error_code, status_code

        subject = _names.describe(name) if name is not None else self.url
        try:
            return call(f"{action} {subject}", fn, deadline=self.deadline)
        # ``from None`` throughout: the SDK's exception text may contain the request URL,
        # SAS included; describe() gives its gist with signatures masked.
        except ResourceNotFoundError as error:
            detail = "" if error_code(error) == "BlobNotFound" else f" ({describe(error)})"
            raise ObjectNotFoundError(f"{subject} does not exist{detail}", name=name) from None
        except ResourceExistsError:
            raise ObjectExistsError(f"{subject} already exists", name=name) from None
        except ResourceModifiedError:
            raise StorageError(f"{subject} changed while being read", name=name) from None
        except (ClientAuthenticationError, HttpResponseError) as error:
            hint = ""
            if status_code(error) == 403:
                hint = " (access denied: the SAS may have expired or lack the permission)"
            raise StorageError(
                f"cannot {action} {subject}: {describe(error)}{hint}", name=name
            ) from None
        except DeadlineExceeded as error:
            raise StorageError(str(error), name=name) from None
        except (AzureError, OSError) as error:
            raise StorageError(f"cannot {action} {subject}: {describe(error)}", name=name) from None

    def ensure_container(self) -> bool:
        """Create the container if it does not exist (one request); whether it was created."""
        try:
            self._call("create the container", None, self.container.create_container)
        except ObjectExistsError:
            return False
        return True

    # -- writes ---------------------------------------------------------------------------

    def put(self, name: str, data: bytes, *, overwrite: bool = True) -> None:
        _check_name(name)
        self._call(
            "write",
            name,
            lambda: self.container.upload_blob(
                name, data, length=len(data), overwrite=overwrite, max_concurrency=1
            ),
        )

    @contextmanager
    def writer(self, name: str, *, overwrite: bool = True) -> Iterator[IO[bytes]]:
        _check_name(name)
        upload = _BlockUpload(self, name, overwrite)
        file = io.BufferedWriter(upload, buffer_size=64 << 10)
        try:
            yield file
            file.flush()
            upload.commit()
        finally:
            upload.done = True  # a flush after an error (e.g. at garbage collection) is dropped
            file.close()

    # -- reads ----------------------------------------------------------------------------

    def _download(self, name: str, offset: int, length: int, etag: str | None = None) -> Any:
        from azure.core import MatchConditions

        conditions: dict[str, Any] = {}
        if etag is not None:
            conditions = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        return self.container.download_blob(
            name, offset=offset, length=length, max_concurrency=1, **conditions
        )

    def open(self, name: str) -> IO[bytes]:
        _check_name(name)
        return self._open(name)

    def open_blob(self, name: str) -> IO[bytes]:
        """:meth:`open` for any blob name, as :meth:`list_names` returns it: the output
        files Batch uploads keep the names of the nodes' files, which our names'
        stricter rule (no spaces, no leading dots, ...) need not fit."""
        if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
            raise ValueError(f"invalid blob name {name!r}")
        return self._open(name)

    def _open(self, name: str) -> IO[bytes]:
        first = self._call("read", name, lambda: self._first_range(name))
        return io.BufferedReader(_BlobReader(self, name, *first))

    def _first_range(self, name: str) -> tuple[int, str | None, bytes]:
        """(total size, ETag, first bytes) of ``name``, in one request."""
        from azure.core.exceptions import HttpResponseError

        from ._retry import status_code

        try:
            downloader = self._download(name, 0, self.read_chunk_size)
        except HttpResponseError as error:
            if status_code(error) != 416:
                raise
            # A range of an empty blob is "invalid": ask for the blob itself, which is empty.
            downloader = self.container.download_blob(name, max_concurrency=1)
            return 0, downloader.properties.etag, downloader.readall()
        data = downloader.readall()
        content_range = downloader.properties.content_range or ""
        total = content_range.rpartition("/")[2]
        size = int(total) if total.isdigit() else len(data)
        return size, downloader.properties.etag, data

    def _fetch(self, name: str, offset: int, length: int, etag: str | None) -> bytes:
        data: bytes = self._call(
            "read", name, lambda: self._download(name, offset, length, etag).readall()
        )
        return data

    def get(self, name: str) -> bytes:
        _check_name(name)
        data: bytes = self._call(
            "read", name, lambda: self.container.download_blob(name, max_concurrency=1).readall()
        )
        return data

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        _check_name(name)
        _check_range(offset, length)
        if length == 0:
            return b""
        from azure.core.exceptions import HttpResponseError

        from ._retry import status_code

        def read() -> bytes:
            try:
                data: bytes = self._download(name, offset, length).readall()
            except HttpResponseError as error:
                if status_code(error) == 416:  # the range starts past the end
                    return b""
                raise
            return data

        return self._call("read", name, read)

    def exists(self, name: str) -> bool:
        _check_name(name)
        found: bool = self._call(
            "look up", name, lambda: self.container.get_blob_client(name).exists()
        )
        return found

    def list_names(self, prefix: str = "") -> list[str]:
        _check_prefix(prefix)
        return self._call(
            "list",
            prefix or None,
            lambda: sorted(self.container.list_blob_names(name_starts_with=prefix or None)),
        )

    def delete(self, name: str) -> bool:
        _check_name(name)
        try:
            self._call("delete", name, lambda: self.container.delete_blob(name))
        except ObjectNotFoundError:
            return False
        return True

    def delete_prefix(self, prefix: str) -> int:
        if not _check_prefix(prefix):
            raise ValueError("refusing to delete everything: give a non-empty prefix")
        names = self.list_names(prefix)
        deleted = 0
        for start in range(0, len(names), 256):  # a blob batch holds at most 256 requests
            batch = names[start : start + 256]

            def delete_batch(batch: list[str] = batch) -> int:
                responses = self.container.delete_blobs(*batch, raise_on_any_failure=False)
                statuses = [response.status_code for response in responses]
                pairs = zip(batch, statuses, strict=True)
                failed = [name for name, status in pairs if status not in (202, 404)]
                if failed:
                    raise StorageError(f"cannot delete {len(failed)} objects, e.g. {failed[0]}")
                return statuses.count(202)

            deleted += self._call("delete", prefix, delete_batch)
        return deleted

    # -- node access ------------------------------------------------------------------------

    def node_locator(self, job_id: str, *, expiry: datetime | timedelta) -> str:
        """The container URL with a read+write SAS until ``expiry`` (see the module docstring)."""
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        _names.check_job_id(job_id)
        expires = _expiry_time(expiry)
        permission = ContainerSasPermissions.from_string(NODE_SAS_PERMISSIONS)
        protocol = "https" if self.url.startswith("https://") else None
        credential = self.container.credential
        account = self.container.account_name
        key = getattr(credential, "account_key", None)
        if isinstance(key, str) and account:
            token = generate_container_sas(
                account,
                self.container.container_name,
                account_key=key,
                permission=permission,
                expiry=expires,
                protocol=protocol,
            )
        elif callable(getattr(credential, "get_token", None)) and account:
            delegation_key = self._user_delegation_key(expires)
            token = generate_container_sas(
                account,
                self.container.container_name,
                user_delegation_key=delegation_key,
                permission=permission,
                expiry=expires,
                protocol=protocol,
            )
        else:
            raise StorageError(
                f"cannot issue a SAS for {self!r}: its client has neither an account key nor "
                "a Microsoft Entra ID credential (a store opened from a locator cannot issue "
                "another)"
            )
        return f"{self.url}?{token}"

    def _user_delegation_key(self, expires: datetime) -> Any:
        now = datetime.now(timezone.utc)
        if expires - now > USER_DELEGATION_LIMIT:
            raise StorageError(
                f"a SAS signed with Microsoft Entra ID (user delegation) lasts at most "
                f"{USER_DELEGATION_LIMIT.days} days, and this job needs access until "
                f"{expires.isoformat(timespec='seconds')}: give the storage account key, or "
                "a shorter job lifetime"
            )
        # The container client's own pipeline: its credential, token audience (sovereign
        # clouds, see BatchConfig.blob_audience) and retry settings.
        service = self.container._get_blob_service_client()
        return self._call(
            "get a user delegation key for",
            None,
            lambda: service.get_user_delegation_key(now - timedelta(minutes=5), expires),
        )


class _BlockUpload(io.RawIOBase):
    """The raw side of :meth:`BlobStore.writer`: blocks staged as they fill, then committed.

    Staged blocks stay invisible until the commit, which makes the upload atomic; those
    of an abandoned upload are discarded by Azure (after a week). Block IDs start with a
    random tag, so two attempts of one task writing the same blob never mix blocks.
    """

    def __init__(self, store: BlobStore, name: str, overwrite: bool) -> None:
        super().__init__()
        self._store, self._name, self._overwrite = store, name, overwrite
        self._blob = store.container.get_blob_client(name)
        self._pending = bytearray()
        self._blocks: list[str] = []
        self._tag = secrets.token_hex(8)
        self.done = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = len(memoryview(data).cast("B"))
        if self.done:
            return size
        self._pending += data
        while len(self._pending) >= self._store.block_size:
            self._stage(bytes(self._pending[: self._store.block_size]))
            del self._pending[: self._store.block_size]
        return size

    def _stage(self, block: bytes) -> None:
        block_id = base64.b64encode(f"{self._tag}-{len(self._blocks):08d}".encode()).decode()
        self._store._call(
            "write",
            self._name,
            lambda: self._blob.stage_block(block_id, block, length=len(block)),
        )
        self._blocks.append(block_id)

    def commit(self) -> None:
        if not self._blocks:  # smaller than a block: one plain upload
            self._store.put(self._name, bytes(self._pending), overwrite=self._overwrite)
            return
        if self._pending:
            self._stage(bytes(self._pending))
            self._pending.clear()
        from azure.core import MatchConditions
        from azure.storage.blob import BlobBlock

        conditions: dict[str, Any] = {}
        if not self._overwrite:
            conditions = {"match_condition": MatchConditions.IfMissing}  # If-None-Match: *
        blocks = [BlobBlock(block_id) for block_id in self._blocks]
        self._store._call(
            "write", self._name, lambda: self._blob.commit_block_list(blocks, **conditions)
        )


class _BlobReader(io.RawIOBase):
    """Sequential reads of one blob, one ranged request per ``read_chunk_size`` bytes."""

    def __init__(self, store: BlobStore, name: str, size: int, etag: str | None, first: bytes):
        super().__init__()
        self._store, self._name, self._size, self._etag = store, name, size, etag
        self._buffer = first
        self._used = 0  # bytes of _buffer already returned
        self._position = len(first)  # blob offset just after _buffer

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        if self._used >= len(self._buffer):
            if self._position >= self._size:
                return 0
            length = min(self._store.read_chunk_size, self._size - self._position)
            self._buffer = self._store._fetch(self._name, self._position, length, self._etag)
            self._used = 0
            self._position += len(self._buffer)
            if not self._buffer:
                raise StorageError(f"{self._name} ended early", name=self._name)
        count = min(len(target), len(self._buffer) - self._used)
        target[:count] = self._buffer[self._used : self._used + count]
        self._used += count
        return count


# --------------------------------------------------------------------------- locators


def open_store(locator: str) -> Store:
    """The store a node locator names: a blob container SAS URL, or a directory."""
    if not isinstance(locator, str) or not locator.strip():
        raise ValueError("empty store locator")
    if locator.startswith(("https://", "http://")):
        try:
            return BlobStore.from_url(locator)
        except ValueError:  # the SDK's message would repeat the URL, SAS included
            raise ValueError("malformed blob store locator (not shown: it holds a SAS)") from None
    root = Path(locator)
    if not root.is_dir():
        raise StorageError(f"the store directory {locator!r} does not exist")
    return LocalStore(root)
