"""The executor benchmarks' harness: an in-process emulator, a store, and request counters.

A :class:`Stack` is a fresh :class:`~batchexecutor.emulator.BatchEmulator` (in this
process, so its request log can be read) with pools made on demand, and a store: a
directory (``"dir"``, as ``AzureBatchExecutor.local()`` uses) or a container of a shared
Azurite process (``"azurite"``, the real azure-storage-blob path). Executors made by
:meth:`Stack.executor` are unmodified ``AzureBatchExecutor``s whose configuration builds
their clients with counters attached:

* Batch: a per-call azure-core pipeline policy on the executor's ``BatchClient``
  (``BatchConfig.batch_client(per_call_policies=...)``), naming each request by its
  REST operation; the emulator's own log (``BatchEmulator.request_counts``) is the
  server-side count, and the two are compared (the harness's own admin client has a
  counter too, so its requests are subtracted from the server's);
* blob, Azurite stack: a ``raw_request_hook`` on the executor's ``ContainerClient``
  (every HTTP request, by REST operation);
* blob, both stacks: the executor's :class:`~batchexecutor._storage.Store` wrapped, so
  each call of ``put`` / ``writer`` / ``get`` / ``open`` / ``get_range`` / ``list_names``
  / ``delete`` ... is counted (the dir stack's only blob count).

Requests made by task processes on the nodes (outcome writes, input reads) are not the
client's and are not counted here.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.pipeline.policies import SansIOHTTPPolicy

from batchexecutor import AzureBatchExecutor, BatchConfig
from batchexecutor._context import local_python_path
from batchexecutor._storage import Store
from batchexecutor.emulator import BatchEmulator

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_ENV = "BATCHEXECUTOR_AZURITE"
AZURITE_BINARY = REPO_ROOT / ".azurite" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_KEY = (  # Azurite's well-known development account key (public, not a secret)
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
TMPFS = "/dev/shm"
POLL_MIN, POLL_MAX = 0.02, 0.1  # BatchConfig.for_emulator's (LOCAL_POLL_INTERVAL)
TIMEOUT = 900.0

# -- naming requests ------------------------------------------------------------------------

_SEGMENT = "[^/]+"
_BATCH_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(pattern.replace("{}", _SEGMENT) + "$"), operation)
    for method, pattern, operation in [
        ("POST", "/jobs/{}/addtaskcollection", "Tasks_CreateTaskCollection"),
        ("GET", "/jobs/{}/taskcounts", "Jobs_GetJobTaskCounts"),
        ("GET", "/jobs/{}/tasks", "Tasks_ListTasks"),
        ("POST", "/jobs/{}/tasks", "Tasks_CreateTask"),
        ("GET", "/jobs/{}/tasks/{}", "Tasks_GetTask"),
        ("POST", "/jobs/{}/tasks/{}/terminate", "Tasks_TerminateTask"),
        ("GET", "/jobs/{}/tasks/{}/files/.+", "Tasks_GetTaskFile"),
        ("HEAD", "/jobs/{}/tasks/{}/files/.+", "Tasks_GetTaskFileProperties"),
        ("GET", "/jobs", "Jobs_ListJobs"),
        ("POST", "/jobs", "Jobs_CreateJob"),
        ("GET", "/jobs/{}", "Jobs_GetJob"),
        ("PATCH", "/jobs/{}", "Jobs_UpdateJob"),
        ("PUT", "/jobs/{}", "Jobs_ReplaceJob"),
        ("DELETE", "/jobs/{}", "Jobs_DeleteJob"),
        ("POST", "/jobs/{}/terminate", "Jobs_TerminateJob"),
        ("GET", "/pools", "Pools_ListPools"),
        ("POST", "/pools", "Pools_CreatePool"),
        ("GET", "/pools/{}", "Pools_GetPool"),
        ("POST", "/pools/{}/resize", "Pools_ResizePool"),
        ("GET", "/pools/{}/nodes", "Nodes_ListNodes"),
    ]
]


def batch_operation(method: str, url: str) -> str:
    """The REST operation ID of a Batch request (as the emulator's log names it)."""
    path = urlsplit(url).path.rstrip("/") or "/"
    for route_method, pattern, operation in _BATCH_ROUTES:
        if method == route_method and pattern.match(path):
            return operation
    return f"{method} {path}"


def blob_operation(method: str, url: str) -> str:
    """The REST operation of a blob request (Put Blob, Put Block, Get Blob, List Blobs ...)."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    comp, restype = query.get("comp"), query.get("restype")
    if restype == "container":
        if comp == "list":
            return "ListBlobs"
        return {"PUT": "CreateContainer", "DELETE": "DeleteContainer"}.get(
            method, f"{method} container"
        )
    if comp == "batch":
        return "BlobBatch"
    if method == "PUT":
        return {"block": "PutBlock", "blocklist": "PutBlockList"}.get(comp or "", "PutBlob")
    if method == "GET":
        return "GetBlob"
    if method == "HEAD":
        return "GetBlobProperties"
    if method == "DELETE":
        return "DeleteBlob"
    return f"{method} {comp or ''}".strip()


#: Blob operations by kind, for "writes", "reads", "lists", "deletes".
BLOB_KINDS: dict[str, tuple[str, ...]] = {
    "writes": ("PutBlob", "PutBlock", "PutBlockList"),
    "reads": ("GetBlob", "GetBlobProperties"),
    "lists": ("ListBlobs",),
    "deletes": ("DeleteBlob", "BlobBatch"),
}
#: Store methods by kind (the dir stack's count; also kept on the Azurite stack).
STORE_KINDS: dict[str, tuple[str, ...]] = {
    "writes": ("put", "put_stream", "writer"),
    "reads": ("get", "open", "get_range", "exists"),
    "lists": ("list_names",),
    "deletes": ("delete", "delete_prefix"),
}


def by_kind(counts: Mapping[str, int], kinds: Mapping[str, tuple[str, ...]]) -> dict[str, int]:
    return {kind: sum(counts.get(op, 0) for op in ops) for kind, ops in kinds.items()}


class Counts:
    """A thread-safe counter of named operations."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class BatchCounter(SansIOHTTPPolicy[Any, Any]):
    """An azure-core per-call policy counting a BatchClient's requests by operation."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = Counts()

    def on_request(self, request: Any) -> None:
        http = request.http_request
        self.counts.add(batch_operation(http.method, http.url))


class BlobCounter:
    """A ContainerClient ``raw_request_hook`` counting blob requests by operation."""

    def __init__(self) -> None:
        self.counts = Counts()

    def __call__(self, request: Any) -> None:
        http = request.http_request
        self.counts.add(blob_operation(http.method, http.url))


def diff(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    """``after - before`` per name, zeros dropped."""
    names = set(after) | set(before)
    out = {n: after.get(n, 0) - before.get(n, 0) for n in sorted(names)}
    return {n: v for n, v in out.items() if v}


class CountingStore(Store):
    """A :class:`Store` that counts its calls by method, then does what ``inner`` does."""

    def __init__(self, inner: Store, counts: Counts) -> None:
        self.inner = inner
        self.counts = counts

    def __repr__(self) -> str:
        return f"CountingStore({self.inner!r})"

    def writer(self, name: str, *, overwrite: bool = True) -> AbstractContextManager[IO[bytes]]:
        self.counts.add("writer")
        return self.inner.writer(name, overwrite=overwrite)

    def put(self, name: str, data: bytes, *, overwrite: bool = True) -> None:
        self.counts.add("put")
        self.inner.put(name, data, overwrite=overwrite)

    def put_stream(
        self, name: str, stream: IO[bytes], *, length: int | None = None, overwrite: bool = True
    ) -> None:
        self.counts.add("put_stream")
        self.inner.put_stream(name, stream, length=length, overwrite=overwrite)

    def open(self, name: str) -> IO[bytes]:
        self.counts.add("open")
        return self.inner.open(name)

    def get(self, name: str) -> bytes:
        self.counts.add("get")
        return self.inner.get(name)

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        self.counts.add("get_range")
        return self.inner.get_range(name, offset, length)

    def exists(self, name: str) -> bool:
        self.counts.add("exists")
        return self.inner.exists(name)

    def list_names(self, prefix: str = "") -> list[str]:
        self.counts.add("list_names")
        return self.inner.list_names(prefix)

    def delete(self, name: str) -> bool:
        self.counts.add("delete")
        return self.inner.delete(name)

    def delete_prefix(self, prefix: str) -> int:
        self.counts.add("delete_prefix")
        return self.inner.delete_prefix(prefix)

    def node_locator(self, job_id: str, *, expiry: datetime | timedelta) -> str:
        return self.inner.node_locator(job_id, expiry=expiry)


def counting_config(
    endpoint: str, batch: BatchCounter, blob: BlobCounter, **arguments: Any
) -> BatchConfig:
    """A ``BatchConfig`` whose Batch and blob clients carry the counters."""

    class CountingConfig(BatchConfig):
        __slots__ = ()

        def batch_client(self, **kwargs: Any) -> BatchClient:
            policies = [*kwargs.pop("per_call_policies", []), batch]
            return super().batch_client(per_call_policies=policies, **kwargs)

        def container_client(self, **kwargs: Any) -> Any:
            return super().container_client(raw_request_hook=blob, **kwargs)

    return CountingConfig(endpoint, **arguments)


# -- Azurite ---------------------------------------------------------------------------------


class Azurite:
    """One ``azurite-blob`` process for the whole benchmark run (in memory, on loopback)."""

    _shared: Azurite | None = None
    _failed: str | None = None
    _lock = threading.Lock()

    def __init__(self, binary: Path) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-azurite-"))
        log_path = self.workdir / "azurite.log"
        command = [
            str(binary),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "0",
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ]
        started = time.monotonic()
        with open(log_path, "wb") as sink:
            self.process = subprocess.Popen(
                command,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pattern = re.compile(r"successfully listens on https?://[^\s:/]+:(\d+)")
        while True:
            match = pattern.search(log_path.read_text(errors="replace"))
            if match:
                self.port = int(match.group(1))
                break
            if self.process.poll() is not None or time.monotonic() - started > 30:
                self.stop()
                raise RuntimeError(f"azurite did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        self.start_seconds = time.monotonic() - started

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/devstoreaccount1;"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    @classmethod
    def start_soon(cls) -> None:
        """Start the run's Azurite on a thread now (it takes seconds), for later use."""
        threading.Thread(target=cls.shared, name="bench-azurite-start", daemon=True).start()

    @classmethod
    def shared(cls) -> Azurite | None:
        """The run's Azurite, started on first use; None (and why: :meth:`why_not`) if absent."""
        with cls._lock:
            return cls._start_once()

    @classmethod
    def _start_once(cls) -> Azurite | None:
        if cls._shared is None and cls._failed is None:
            configured = os.environ.get(AZURITE_ENV)
            binary = Path(configured) if configured else AZURITE_BINARY
            if not (binary.is_file() and os.access(binary, os.X_OK)):
                cls._failed = (
                    f"Azurite not found at {binary} (nox -s bench installs it; or set "
                    f"${AZURITE_ENV})"
                )
                return None
            try:
                cls._shared = cls(binary)
            except (OSError, RuntimeError) as error:
                cls._failed = f"Azurite did not start: {error}"
                return None
            atexit.register(cls._shared.stop)
        return cls._shared

    @classmethod
    def why_not(cls) -> str | None:
        return cls._failed


# -- the stack -------------------------------------------------------------------------------


class Stack:
    """A fresh emulator (+ store) for one measurement; see the module docstring."""

    def __init__(
        self,
        store: str = "dir",
        *,
        max_processes: int | None = None,
        temp_root: str | None = None,
        poll: tuple[float, float] = (POLL_MIN, POLL_MAX),
    ) -> None:
        if store not in ("dir", "azurite"):
            raise ValueError(store)
        self._poll = poll
        self.store_kind = store
        self._temp_root = temp_root
        self._max_processes = max_processes
        self.batch = BatchCounter()  # the executors' Batch requests
        self.admin_counter = BatchCounter()  # the harness's own
        self.blob = BlobCounter()  # the executors' blob requests (Azurite)
        self.store_calls = Counts()  # the executors' Store calls
        self._exit = contextlib.ExitStack()
        self.executors: list[AzureBatchExecutor] = []

    def __enter__(self) -> Stack:
        saved = tempfile.tempdir
        if self._temp_root is not None:
            tempfile.tempdir = self._temp_root  # the emulator's mkdtemp goes there
        try:
            self.emulator = self._exit.enter_context(
                BatchEmulator(max_processes=self._max_processes)
            )
            self.workdir = Path(tempfile.mkdtemp(prefix="bench-stack-"))
        finally:
            tempfile.tempdir = saved
        self._exit.callback(shutil.rmtree, self.workdir, True)
        self.admin = BatchClient(
            self.emulator.endpoint, self.emulator.credential, per_call_policies=[self.admin_counter]
        )
        self._exit.callback(self.admin.close)
        arguments: dict[str, Any] = {
            "batch_account_name": self.emulator.account_name,
            "batch_account_key": self.emulator.account_key,
            "poll_interval_min": self._poll[0],
            "poll_interval_max": self._poll[1],
            "request_deadline": 60.0,
        }
        if self.store_kind == "dir":
            arguments["storage_dir"] = self.workdir / "store"
        else:
            azurite = Azurite.shared()
            if azurite is None:
                raise RuntimeError(Azurite.why_not())
            arguments["storage_connection_string"] = azurite.connection_string
            arguments["storage_container"] = f"bench-{uuid.uuid4().hex[:16]}"
        self.config = counting_config(self.emulator.endpoint, self.batch, self.blob, **arguments)
        return self

    def __exit__(self, *exc: object) -> None:
        for executor in self.executors:
            with contextlib.suppress(Exception):
                executor._context.poller.stop()
                executor.shutdown(wait=False)
        if self.store_kind == "azurite" and hasattr(self, "config"):
            with contextlib.suppress(Exception):
                self.config.container_client().delete_container()
        self._exit.close()

    # -- pools and executors -------------------------------------------------------------

    def pool(self, pool_id: str, *, nodes: int, slots: int = 1, wait: bool = True) -> str:
        """Create a pool of ``nodes`` nodes with ``slots`` task slots each (0: tasks wait)."""
        self.admin.create_pool(
            bm.BatchPoolCreateOptions(
                id=pool_id,
                vm_size="standard_d2s_v3",
                target_dedicated_nodes=nodes,
                task_slots_per_node=slots,
            )
        )
        if wait:  # a new pool is "resizing" for a moment, even to no nodes
            wait_for(
                lambda: (
                    self.admin.get_pool(pool_id, select=["allocationState"]).allocation_state
                    == "steady"
                ),
                f"pool {pool_id} steady",
                interval=0.02,
            )
        if nodes and wait:
            wait_for(
                lambda: sum(n.state == "idle" for n in self.admin.list_nodes(pool_id)) >= nodes,
                f"pool {pool_id} ready",
                interval=0.05,
            )
        return pool_id

    def executor(self, pool_id: str, max_workers: int | None = None) -> AzureBatchExecutor:
        """An unmodified AzureBatchExecutor on this stack, its store calls counted."""
        executor = AzureBatchExecutor(
            self.config,
            pool_id,
            max_workers,
            node_environment={"PYTHONPATH": local_python_path()},
        )
        context = executor._context
        context.store = CountingStore(context.store, self.store_calls)
        self.executors.append(executor)
        return executor

    # -- counts --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Every counter now (take it when no request is in flight, for exact agreement)."""
        return {
            "batch_client": self.batch.counts.snapshot(),
            "batch_admin": self.admin_counter.counts.snapshot(),
            "batch_emulator": self.emulator.request_counts,
            "blob_http": self.blob.counts.snapshot(),
            "store_calls": self.store_calls.snapshot(),
        }


def window(
    after: Mapping[str, Mapping[str, int]], before: Mapping[str, Mapping[str, int]]
) -> dict[str, Any]:
    """What happened between two snapshots, and whether client and emulator agree."""
    out: dict[str, Any] = {name: diff(after[name], before[name]) for name in after}
    server = Counter(out["batch_emulator"])
    server.subtract(out["batch_admin"])
    server_executor = {k: v for k, v in server.items() if v}
    out["batch_emulator_less_admin"] = dict(sorted(server_executor.items()))
    out["batch_agree"] = server_executor == out["batch_client"]
    out["batch_total"] = sum(out["batch_client"].values())
    out["blob_http_by_kind"] = by_kind(out["blob_http"], BLOB_KINDS)
    out["store_calls_by_kind"] = by_kind(out["store_calls"], STORE_KINDS)
    return out


# -- small helpers ---------------------------------------------------------------------------


def wait_for(condition: Callable[[], Any], what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {TIMEOUT} s")
        time.sleep(interval)
    return value


def tmpfs_root() -> str | None:
    """A memory file system for the emulator's task files, if there is one."""
    return TMPFS if os.path.isdir(TMPFS) and os.access(TMPFS, os.W_OK) else None


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation (as numpy's default)."""
    if not values:
        raise ValueError("no values")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, round(q) - 1))]


def stop_poller(executor: AzureBatchExecutor) -> None:
    """Stop the executor's poller and wait for its current tick (no request in flight)."""
    poller = executor._context.poller
    poller.stop()
    poller.join(60)
