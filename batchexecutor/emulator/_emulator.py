"""``BatchEmulator``: a local Azure Batch service for offline work and tests.

BatchEmulator ──▶ EmulatorServer (HTTP on 127.0.0.1) ──▶ Service (routes, handlers)
      │                                                       │
      └──────▶ Scheduler (pools, nodes, task processes) ◀── State (+ Store: SQLite)
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from azure.core.credentials import AzureNamedKeyCredential

from ._api import Service
from ._containers import ContainerRuntime, check_setting
from ._faults import FaultInjector, FaultPlan
from ._http import EmulatorServer
from ._scheduler import Host, Scheduler, python_shim
from ._state import Job, Node, Pool, State, Task
from ._store import Store
from ._wire import iso, utcnow

DEFAULT_ACCOUNT = "emulator"


class BatchEmulator:
    """An Azure Batch account on this machine that the azure-batch SDK can talk to.

    >>> from azure.batch import BatchClient
    >>> with BatchEmulator() as emulator:                                # doctest: +SKIP
    ...     client = BatchClient(emulator.endpoint, emulator.credential)

    ``max_processes`` caps task processes running at once on this host (default: the
    CPU count); pools bound them further by nodes x task slots. With ``data_dir`` the
    state and task files survive a restart; tasks that were running are requeued.

    ``container_runtime`` runs tasks that have ``containerSettings``: ``"auto"`` (docker when
    ``docker info`` answers, else on the host), ``"host"`` (the command line runs on this
    host as if the image were the host), or a docker-compatible CLI (``"docker"``,
    ``"podman"`` or a path to one). None reads ``$BATCHEXECUTOR_CONTAINER_RUNTIME``, default
    ``"auto"``. See ``docs/emulator.md``.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        max_processes: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        faults: FaultPlan | None = None,
        account_name: str = DEFAULT_ACCOUNT,
        account_key: str | None = None,
        container_runtime: str | None = None,
    ) -> None:
        if max_processes is not None and max_processes < 1:
            raise ValueError(f"max_processes must be at least 1, got {max_processes}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {port}")
        self.account_name = account_name
        self.account_key = account_key or base64.b64encode(secrets.token_bytes(64)).decode()
        try:
            base64.b64decode(self.account_key, validate=True)
        except ValueError:
            raise ValueError(
                "account_key must be base64, like an Azure Batch account key"
            ) from None
        self.max_processes = max_processes or os.cpu_count() or 1
        #: "auto", "host" or the docker-compatible CLI that runs container tasks
        self.container_runtime = check_setting(container_runtime)
        self.faults = FaultInjector(faults or FaultPlan())
        self._port = port
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._temp_dir: str | None = None
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None
        self._scheduler: Scheduler | None = None
        self._store: Store | None = None
        self._service: Service | None = None
        self.endpoint = ""

    # -- public ----------------------------------------------------------------------

    @property
    def credential(self) -> AzureNamedKeyCredential:
        return AzureNamedKeyCredential(self.account_name, self.account_key)

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def request_counts(self) -> dict[str, int]:
        """Requests served so far, by operation ID (for tests and benchmarks)."""
        return dict(self._service.requests) if self._service else {}

    def start(self) -> BatchEmulator:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        root = self._data_dir
        if root is None:
            self._temp_dir = tempfile.mkdtemp(prefix="batch-emulator-")
            root = Path(self._temp_dir)
        root.mkdir(parents=True, exist_ok=True)
        store = Store(root / "state.sqlite3" if self._data_dir is not None else None)
        state = State(store)
        server = EmulatorServer(("127.0.0.1", self._port), service=None)  # type: ignore[arg-type]
        self.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        python_shim(root / "bin")
        host = Host(
            account_name=self.account_name,
            account_url=self.endpoint,
            nodes_dir=root / "nodes",
            bin_dir=root / "bin",
            max_processes=self.max_processes,
            containers=ContainerRuntime(self.container_runtime, root / "containers"),
        )
        scheduler = Scheduler(state, host, self.faults)
        service = Service(
            state,
            scheduler,
            self.faults,
            endpoint=self.endpoint,
            account_name=self.account_name,
            account_key=self.account_key,
        )
        server.service = service
        _restore(state, store, root / "nodes")
        _rebase_urls(state, self.endpoint)
        self._store, self._scheduler, self._service, self._server = (
            store,
            scheduler,
            service,
            server,
        )
        scheduler.start()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="batch-emulator-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
        if self._scheduler is not None:
            self._scheduler.stop()
        if self._store is not None:
            self._store.close()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> BatchEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.endpoint or "not started"
        return f"<BatchEmulator account={self.account_name!r} endpoint={where!r}>"


def _restore(state: State, store: Store, nodes_dir: Path) -> None:
    """Load a previous run's resources; interrupted attempts are requeued."""
    if not store.enabled:
        return
    import time

    for _, body in store.load("pool"):
        pool = Pool(
            wire=body["wire"],
            seq=body["seq"],
            next_node=body["next"],
            secrets=body.get("secrets") or {},
        )
        for entry in body["nodes"]:
            node = Node(
                pool=pool,
                wire=entry["wire"],
                root=Path(entry["root"]),
                slots=entry["slots"],
                dedicated=entry["dedicated"],
                seq=entry["seq"],
                job_prep=entry.get("jobPrep", {}),
            )
            # Processes did not survive: reset what was running on the node.
            for info in node.job_prep.values():
                if info.get("state") == "running":
                    info.pop("containerInfo", None)
                    info.update(
                        state="completed",
                        result="failure",
                        endTime=iso(utcnow()),
                        failureInfo={
                            "category": "servererror",
                            "code": "NodeRestarted",
                            "message": "The emulator stopped while the task was running.",
                        },
                    )
            if node.wire.get("state") == "running":
                node.wire["state"] = "idle"
            node.wire["runningTasksCount"] = 0
            node.wire["runningTaskSlotsCount"] = 0
            pool.nodes[node.id] = node
        if pool.wire.get("allocationState") != "steady" or pool.wire.get("state") == "deleting":
            pool.resize_due = time.monotonic()
        state.pools[pool.key] = pool
    for _, body in sorted(store.load("job"), key=lambda kv: kv[1]["seq"]):
        job = Job(wire=body["wire"], seq=body["seq"], secrets=body.get("secrets") or {})
        state.jobs[job.key] = job
    rows = sorted(store.load("task"), key=lambda kv: kv[1]["seq"])
    for _, body in rows:
        owner = state.jobs.get(body["job"])
        if owner is None:
            continue
        wire = body["wire"]
        interrupted = wire["state"] in ("preparing", "running")
        if interrupted:
            info = wire.setdefault("executionInfo", {"retryCount": 0, "requeueCount": 0})
            info["requeueCount"] = int(info.get("requeueCount", 0)) + 1
            info["lastRequeueTime"] = iso(utcnow())
            info.pop("startTime", None)
            info.pop("containerInfo", None)
            wire.pop("nodeInfo", None)
            wire["state"] = "active"
        task: Task = state.add_task(owner, wire, body.get("secrets") or {})
        task.seq = body["seq"]
        task.failure_kind = body.get("failureKind")
    # Parents that completed before the restart release their dependents again.
    for job in state.jobs.values():
        for task in list(job.tasks.values()):
            if task.state == "completed":
                state.release_dependents(task)


_OWN_URL = re.compile(r"^http://127\.0\.0\.1:\d+(?=/|$)")


def _rebase_urls(state: State, endpoint: str) -> None:
    """Restored resources' own URLs name the previous run's port: move them to this one.

    Only the URLs the emulator wrote are touched, never user-given ones (resource files,
    output file containers).
    """

    def rebase(wire: dict[str, Any], *keys: str) -> None:
        for key in keys:
            value = wire.get(key)
            if isinstance(value, str):
                wire[key] = _OWN_URL.sub(endpoint, value, count=1)

    for pool in state.pools.values():
        rebase(pool.wire, "url")
        for node in pool.nodes.values():
            rebase(node.wire, "url")
            for info in node.job_prep.values():
                rebase(info, "taskRootDirectoryUrl")
    for job in state.jobs.values():
        rebase(job.wire, "url")
        for task in job.tasks.values():
            rebase(task.wire, "url")
            node_info = task.wire.get("nodeInfo")
            if isinstance(node_info, dict):
                rebase(node_info, "nodeUrl", "taskRootDirectoryUrl")
