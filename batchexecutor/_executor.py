"""``AzureBatchExecutor``: ``concurrent.futures.Executor`` on Azure Batch.

::

    caller ──submit()──► SubmitJob ── sender thread ──► the executor's own Batch job
           ──map_async()/map()──► start_map ──────────► one Batch job per call
                                                              │ tasks run on the pool:
                                                              │ python3 -m batchexecutor.worker
                                                              ▼
    futures ◄── resolver threads ◄── Poller thread ◄── task counts + completed tasks
             (read outcomes, results)  (one per executor: every job, few requests)

Everything the threads need lives in a :class:`~batchexecutor._context.Context`; the
executor is referenced only by its user, and shuts down (without waiting) when dropped.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

from ._batch import pool_exists
from ._combine import MODES, Mode
from ._config import BatchConfig, ConfigurationError, default_home
from ._context import DEFAULT_MAX_PAYLOAD_SIZE, Context, local_python_path, open_config_store
from ._future import JobFuture
from ._jobs import new_job_id
from ._mapjob import MapJob, start_map
from ._names import check_job_id
from ._poller import Poller
from ._retry import call, error_code
from ._submitter import SubmitJob, flush_all

__all__ = ["LOCAL_POOL", "AzureBatchExecutor"]

T = TypeVar("T")

#: The pool ``AzureBatchExecutor.local()`` runs on.
LOCAL_POOL = "local"
#: Task slots of the local pool's one node: ``max_workers`` above this still run, queued.
LOCAL_SLOTS = 64

_atexit_registered = False
_atexit_lock = threading.Lock()


def _register_atexit() -> None:
    """Send queued calls before the interpreter exits (as ``concurrent.futures`` does)."""
    global _atexit_registered
    with _atexit_lock:
        if _atexit_registered:
            return
        _atexit_registered = True
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(flush_all)
    else:  # pragma: no cover - CPython has had it since 3.9
        import atexit

        atexit.register(flush_all)


class _Shutdown:
    """The shutdown of a dropped executor: close everything, wait for nothing."""

    def __init__(self, context: Context, submits: SubmitJob) -> None:
        self.context = context
        self.submits = submits

    def __call__(self) -> None:
        self.submits.close()
        self.context.poller.close()


class AzureBatchExecutor(Executor):
    """An executor whose calls run as Azure Batch tasks on a pool of VMs.

    ``config`` says where Batch and storage are; ``pool_id`` (default
    ``config.pool_id``) names an existing pool; ``max_workers`` caps the tasks of each of
    this executor's jobs running at once (Batch's ``maxParallelTasks``; ``None``: the
    pool's capacity). ``python`` is the interpreter command on the nodes;
    ``max_payload_size`` bounds one call's pickled function and arguments;
    ``node_environment`` adds environment variables to every task.
    """

    def __init__(
        self,
        config: BatchConfig,
        pool_id: str | None = None,
        max_workers: int | None = None,
        *,
        python: str = "python3",
        max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
        node_environment: dict[str, str] | None = None,
    ) -> None:
        if max_workers is not None:
            if isinstance(max_workers, bool) or not isinstance(max_workers, int):
                raise TypeError(f"max_workers must be an int or None, got {max_workers!r}")
            if max_workers <= 0:
                raise ValueError("max_workers must be greater than 0")
        if not isinstance(config, BatchConfig):
            raise TypeError(
                "config must be a BatchConfig (e.g. BatchConfig.from_env()), "
                f"got {type(config).__name__}"
            )
        pool = pool_id or config.pool_id
        if not pool:
            raise ConfigurationError(
                "no pool: pass pool_id=... or set BATCHEXECUTOR_POOL_ID (or use "
                "AzureBatchExecutor.local() for the local emulator)",
                setting="pool_id",
            )
        if max_payload_size <= 0:
            raise ValueError("max_payload_size must be greater than 0")
        client = config.batch_client()
        store, reference = open_config_store(config)
        poller = Poller(
            client,
            interval_min=config.poll_interval_min,
            interval_max=config.poll_interval_max,
            deadline=config.request_deadline,
        )
        self._context = Context(
            config=config,
            client=client,
            store=store,
            store_reference=reference,
            pool_id=pool,
            python=python,
            max_workers=max_workers,
            max_payload_size=max_payload_size,
            environment=dict(node_environment or {}),
            poller=poller,
        )
        self._submits = SubmitJob(self._context)
        self._map_jobs: weakref.WeakSet[MapJob] = weakref.WeakSet()
        self._job_futures: weakref.WeakSet[JobFuture[Any]] = weakref.WeakSet()
        self._shutdown_lock = threading.Lock()
        self._shutdown = False
        self._finalizer = weakref.finalize(self, _Shutdown(self._context, self._submits))
        _register_atexit()

    # -- construction for local mode -----------------------------------------------------

    @classmethod
    def local(
        cls,
        max_workers: int | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> AzureBatchExecutor:
        """The embedded default: the local emulator daemon, storage in a local directory.

        The daemon (one per ``home``, default ``$BATCHEXECUTOR_HOME`` or a per-user cache
        directory) is started on first use and outlives this process; so does the pool
        ``local``. ``max_workers`` defaults to the number of CPUs, as for
        ``ProcessPoolExecutor``. Tasks run with this interpreter and this ``sys.path``.
        """
        from ._daemon import ensure_daemon

        if isinstance(max_workers, int) and max_workers <= 0:  # before starting anything
            raise ValueError("max_workers must be greater than 0")
        root = Path(home).expanduser() if home is not None else default_home()
        daemon = ensure_daemon(root)
        config = BatchConfig.for_emulator(
            daemon.endpoint, daemon.account_name, daemon.account_key, home=root
        )
        _ensure_local_pool(config)
        environment = {"PYTHONPATH": local_python_path(), **options.pop("node_environment", {})}
        return cls(
            config,
            LOCAL_POOL,
            max_workers if max_workers is not None else (os.cpu_count() or 1),
            node_environment=environment,
            **options,
        )

    # -- the Executor interface ------------------------------------------------------------

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> JobFuture[T]:
        """Run ``fn(*args, **kwargs)`` as a Batch task; pickling errors are raised here."""
        with self._shutdown_lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if not callable(fn):
                raise TypeError(f"{fn!r} is not callable")
            return cast(JobFuture[T], self._submits.submit(fn, args, kwargs))

    def map_async(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        chunksize: int = 1,
        combine: bool = True,
        reduce: Callable[[Any, Any], Any] | None = None,
        errors: Literal["raise", "skip", "return"] = "raise",
        job_id: str | None = None,
    ) -> JobFuture[Any]:
        """Submit ``fn`` over ``iterables`` as one Batch job; a future for its whole result.

        The result is the list of results in order (``errors`` says what failures
        become), or with ``reduce`` the fold ``reduce(reduce(r0, r1), r2) ...`` computed
        in the cloud. ``combine`` merges the chunks' outcomes in a cloud task, so the
        result is one download.
        """
        self._check_map(fn, iterables, chunksize, combine, reduce, errors)
        job_id = check_job_id(job_id) if job_id is not None else new_job_id("map")
        job = self._start_map(
            fn, iterables, chunksize, combine, reduce, errors, job_id, future=True
        )
        assert job.whole is not None
        self._job_futures.add(job.whole)
        return job.whole

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[T]:
        """``Executor.map``: results in order, streamed as their chunks complete.

        All of ``iterables`` is submitted now, as one Batch job (``chunksize`` items per
        task); the iterator raises the first exception where its item stands, and
        ``TimeoutError`` if a result is not there ``timeout`` seconds after this call.
        Once the iterator is exhausted or closed, the job and its stored data are
        deleted.
        """
        end = None if timeout is None else time.monotonic() + timeout
        self._check_map(fn, iterables, chunksize, True, None, "raise")
        job = self._start_map(
            fn, iterables, chunksize, True, None, "raise", new_job_id("map"), future=False
        )
        return _results(job, end)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new work; ``cancel_futures`` cancels calls that have not started; ``wait``
        for every pending future to finish."""
        with self._shutdown_lock:
            self._shutdown = True
        if cancel_futures:
            self._submits.cancel_unstarted()
            for future in list(self._job_futures):
                if not future.done():
                    future.cancel()
        self._submits.close()
        self._context.poller.close()
        if wait:
            self._submits.join()
            self._context.poller.join()
            self._context.resolver.shutdown(wait=True)
        else:
            self._context.resolver.shutdown(wait=False)

    # -- helpers -----------------------------------------------------------------------------

    @property
    def config(self) -> BatchConfig:
        return self._context.config

    @property
    def pool_id(self) -> str:
        return self._context.pool_id

    @property
    def max_workers(self) -> int | None:
        return self._context.max_workers

    @property
    def submit_job_id(self) -> str:
        """The Batch job of this executor's ``submit()`` calls (created on the first)."""
        return self._submits.job_id

    def __repr__(self) -> str:
        return (
            f"<AzureBatchExecutor endpoint={self._context.endpoint!r} pool={self.pool_id!r} "
            f"max_workers={self.max_workers!r}{' shut down' if self._shutdown else ''}>"
        )

    @staticmethod
    def _check_map(
        fn: object,
        iterables: tuple[Iterable[Any], ...],
        chunksize: object,
        combine: object,
        reduce: object,
        errors: object,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if errors not in MODES:
            raise ValueError(f"errors must be one of {', '.join(map(repr, MODES))}, got {errors!r}")
        if reduce is not None and not callable(reduce):
            raise TypeError(f"reduce must be a callable taking (accumulated, item), got {reduce!r}")
        if reduce is not None and not combine:
            raise ValueError("reduce runs in the combine task: it needs combine=True")
        for position, iterable in enumerate(iterables):
            try:
                iter(iterable)
            except TypeError:
                raise TypeError(
                    f"argument {position + 1} of map is not iterable: {type(iterable).__name__}"
                ) from None

    def _start_map(
        self,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any], ...],
        chunksize: int,
        combine: bool,
        reduce: Callable[[Any, Any], Any] | None,
        errors: str,
        job_id: str,
        *,
        future: bool,
    ) -> MapJob:
        with self._shutdown_lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        context = self._context
        whole: JobFuture[Any] | None = None
        if future:
            whole = JobFuture(
                job_id, None, endpoint=context.endpoint, store=context.store_reference
            )
        job = start_map(
            context,
            fn,
            iterables,
            job_id=job_id,
            chunksize=chunksize,
            combine=combine,
            reduce=reduce,
            mode=cast(Mode, errors),
            future=whole,
        )
        if whole is not None:
            whole._canceller = job.cancel
        self._map_jobs.add(job)
        return job


def _results(job: MapJob, end: float | None) -> Iterator[Any]:
    try:
        yield from job.iterate(end)
    finally:
        job.discard()


def _ensure_local_pool(config: BatchConfig) -> None:
    """Create the local pool (one node, :data:`LOCAL_SLOTS` slots) unless it exists."""
    client = config.batch_client()
    try:
        if pool_exists(client, LOCAL_POOL, deadline=config.request_deadline):
            return
        options = bm.BatchPoolCreateOptions(
            id=LOCAL_POOL,
            vm_size="standard_d16s_v3",
            target_dedicated_nodes=1,
            task_slots_per_node=LOCAL_SLOTS,
            display_name="batchexecutor local pool",
        )
        try:
            call(
                "create the local pool",
                client.create_pool,
                options,
                deadline=config.request_deadline,
            )
        except HttpResponseError as error:
            if error_code(error) != "PoolExists":  # another process created it first
                raise
    finally:
        client.close()
