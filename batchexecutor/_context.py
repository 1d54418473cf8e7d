"""What an executor's parts share: clients, store, pool, the poller and resolver threads.

The executor object itself is referenced by nobody but its user: its threads hold this
context, so a dropped executor is collected (and shut down, see ``weakref.finalize`` in
:mod:`batchexecutor._executor`).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._nodeenv import NodeLauncher, client_build
from ._poller import Poller
from ._serialize import call_payload
from ._storage import BlobStore, LocalStore, Store
from .worker import STORE_ENV

if TYPE_CHECKING:
    from azure.batch import BatchClient
    from azure.batch import models as bm

    from ._config import BatchConfig

__all__ = [
    "DEFAULT_MAX_PAYLOAD_SIZE",
    "NODE_ACCESS",
    "Context",
    "local_python_path",
    "open_config_store",
]

#: Largest pickled call (function and arguments) one task takes by default.
DEFAULT_MAX_PAYLOAD_SIZE: Final = 64 << 20
#: How long nodes may use the store of a job without a configured retention.
NODE_ACCESS: Final = timedelta(days=30)
_RESOLVERS = 8


def open_config_store(config: BatchConfig) -> tuple[Store, str]:
    """The configuration's store, and its public reference (no secret in it)."""
    if config.storage_dir is not None:
        root = Path(config.storage_dir)
        root.mkdir(parents=True, exist_ok=True)
        return LocalStore(root), str(root)
    store = BlobStore(config.container_client(retry_total=0), deadline=config.request_deadline)
    store.ensure_container()
    return store, store.url


def local_python_path() -> str:
    """The client's ``sys.path`` as ``PYTHONPATH``: local tasks import what it imports."""
    entries = [os.getcwd() if entry == "" else entry for entry in sys.path]
    return os.pathsep.join(entry for entry in entries if os.path.exists(entry))


@dataclass
class Context:
    config: BatchConfig
    client: BatchClient
    store: Store
    store_reference: str
    pool_id: str
    launcher: NodeLauncher  # how nodes start the worker (see batchexecutor._nodeenv)
    max_workers: int | None
    max_payload_size: int
    environment: Mapping[str, str]
    poller: Poller
    progress: bool | None = None
    resolver: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(
            _RESOLVERS, thread_name_prefix="batchexecutor-resolve"
        )
    )
    _build_name: str | None = field(default=None, init=False)
    _build_lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def endpoint(self) -> str:
        return self.config.batch_endpoint

    @property
    def deadline(self) -> float:
        return self.config.request_deadline

    def background(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on a resolver thread (on its own thread after shutdown)."""
        try:
            self.resolver.submit(fn)
        except RuntimeError:  # the resolver is shut down
            threading.Thread(target=fn, name="batchexecutor-cleanup", daemon=True).start()

    def job_setup(self, job_id: str) -> tuple[dict[str, str], bm.BatchJobPreparationTask | None]:
        """The job's ``commonEnvironmentSettings`` (where its store is, and the extras),
        and its job preparation task, which installs the client's build (stored first,
        once per executor) when the executor ships it."""
        lifetime = self.config.retention or NODE_ACCESS
        locator = self.store.node_locator(job_id, expiry=lifetime)
        preparation = None
        if self.launcher.install_client:
            with self._build_lock:
                if self._build_name is None:
                    self._build_name = client_build().ensure_stored(self.store)
            preparation = self.launcher.preparation(self._build_name, locator)
        return {STORE_ENV: locator, **self.environment}, preparation

    def call_payload(
        self, fn: Callable[..., Any] | None, args: Any, kwargs: Mapping[str, Any], *, what: str
    ) -> bytes:
        """A call pickled in the caller; a clear error if it cannot be, or is too large."""
        payload = call_payload(fn, args, kwargs, what=what)
        if len(payload) > self.max_payload_size:
            raise ValueError(
                f"{what} pickles to {len(payload):,} bytes, over the executor's "
                f"max_payload_size of {self.max_payload_size:,}: pass large data through "
                "storage (a path or URL) instead, or raise max_payload_size"
            )
        return payload
