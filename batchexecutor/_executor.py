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

import functools
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar, cast

from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

from . import _manage
from ._batch import pool_exists
from ._combine import MODES, Mode
from ._config import BatchConfig, ConfigurationError, default_home
from ._context import DEFAULT_MAX_PAYLOAD_SIZE, Context, local_python_path, open_config_store
from ._files import (
    ExecutorView,
    FileSpec,
    OutputFile,
    ResourceFile,
    TaskOutput,
    download_outputs,
    file_spec,
    list_outputs,
    open_output,
)
from ._future import JobFuture
from ._jobs import new_job_id
from ._mapjob import MapJob, start_map
from ._names import check_job_id
from ._nodeenv import NodeLauncher
from ._poller import Poller
from ._retry import call, error_code
from ._submitter import SubmitJob, flush_all

if TYPE_CHECKING:
    from ._pool import Autoscale, PoolInfo, PoolSpec

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
    pool's capacity). ``python`` is the interpreter command on the nodes (default: the
    pool's, see below; else ``python3``); ``max_payload_size`` bounds one call's pickled
    function and arguments; ``node_environment`` adds environment variables to every
    task; ``progress`` shows a progress bar while you wait on a job (default: when stderr
    is a terminal).

    ``pool``, a :class:`~batchexecutor.PoolSpec`, makes the executor create that pool, or
    reuse an existing pool with its ID (a :class:`~batchexecutor.PoolWarning` says how it
    differs from the spec; a pool being deleted is waited for, then created anew); tasks
    then run the spec's interpreter (its virtual environment with ``packages``).
    ``wait_for_nodes`` (default: ``True`` with ``pool``, else ``False``; a number is a
    timeout in seconds) makes the first submission wait until a node of the pool can run
    tasks, raising :class:`~batchexecutor.PoolError` with a node's stderr when every node
    failed its start task (see :meth:`wait_for_nodes`). ``delete_pool_on_shutdown``
    deletes the pool at :meth:`shutdown`, once the work is done.

    ``install_client`` (default ``True``; ``False`` in :meth:`local` mode, whose tasks run
    this very interpreter) ships this process's own batchexecutor and cloudpickle to each
    job's storage, and a job preparation task installs them on every node the job uses,
    after checking that the node's Python minor version is the client's: nodes need no
    published batchexecutor, and a version skew fails the job's futures with a
    :class:`~batchexecutor.NodeEnvironmentError` naming both versions before any task
    runs. With ``False``, the nodes' interpreter must already have matching versions.

    ``container_image`` (default: the ``pool`` spec's) runs every task, and the job
    preparation task, inside that image on a container pool (Batch's task
    ``containerSettings``); ``python`` is then the image's interpreter.
    """

    def __init__(
        self,
        config: BatchConfig,
        pool_id: str | None = None,
        max_workers: int | None = None,
        *,
        python: str | None = None,
        max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
        node_environment: dict[str, str] | None = None,
        progress: bool | None = None,
        pool: PoolSpec | None = None,
        wait_for_nodes: bool | float | None = None,
        delete_pool_on_shutdown: bool = False,
        install_client: bool = True,
        container_image: str | None = None,
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
        if pool is not None:
            from ._pool import PoolSpec

            if not isinstance(pool, PoolSpec):
                raise TypeError(f"pool must be a PoolSpec, got {type(pool).__name__}")
            if pool_id is not None and pool_id != pool.pool_id:
                raise ValueError(
                    f"pool_id {pool_id!r} and pool=PoolSpec({pool.pool_id!r}, ...) disagree: "
                    "give one"
                )
            python = python or pool.python
            container_image = container_image or pool.container_image
        if container_image is not None and (
            not isinstance(container_image, str) or not container_image.strip()
        ):
            raise ValueError(
                "container_image must be an image name, e.g. 'python:3.12', got "
                f"{container_image!r}"
            )
        spec = pool
        pool_name = spec.pool_id if spec is not None else pool_id or config.pool_id or ""
        if max_payload_size <= 0:
            raise ValueError("max_payload_size must be greater than 0")
        client = config.batch_client()
        self._pool_spec = spec
        self._pool_created = False
        if spec is not None:
            from ._pool import ensure_pool

            try:
                self._pool_created = ensure_pool(
                    client,
                    spec,
                    deadline=config.request_deadline,
                    interval=(config.poll_interval_min, config.poll_interval_max),
                )
            except BaseException:
                client.close()
                raise
        self._wait_nodes: bool | float = (
            spec is not None if wait_for_nodes is None else wait_for_nodes
        )
        self._nodes_ready = threading.Event()
        self._nodes_lock = threading.Lock()
        self._delete_pool_on_shutdown = delete_pool_on_shutdown
        self._pool_deleted = False
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
            pool_id=pool_name,
            launcher=NodeLauncher(python or "python3", bool(install_client), container_image),
            max_workers=max_workers,
            max_payload_size=max_payload_size,
            environment=dict(node_environment or {}),
            poller=poller,
            progress=progress,
        )
        self._submits = SubmitJob(self._context)
        self._map_jobs: weakref.WeakSet[MapJob] = weakref.WeakSet()
        self._job_futures: weakref.WeakSet[JobFuture[Any]] = weakref.WeakSet()
        self._attached: dict[str, _manage.AttachedTasks] = {}
        self._shutdown_lock = threading.Lock()
        self._shutdown = False
        self._finalizer = weakref.finalize(self, _Shutdown(self._context, self._submits))
        _register_atexit()
        _live.add(self)

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
        options.setdefault("install_client", False)
        return cls(
            config,
            LOCAL_POOL,
            max_workers if max_workers is not None else (os.cpu_count() or 1),
            node_environment=environment,
            **options,
        )

    # -- the Executor interface ------------------------------------------------------------

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> JobFuture[T]:
        """Run ``fn(*args, **kwargs)`` as a Batch task; pickling errors are raised here.
        (Resource and output files: ``executor.options(...).submit(...)``.)"""
        return self._submit(fn, args, kwargs, None)

    def _submit(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        files: FileSpec | None,
    ) -> JobFuture[T]:
        self._ensure_nodes()
        with self._shutdown_lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._require_pool()
            if not callable(fn):
                raise TypeError(f"{fn!r} is not callable")
            return cast(JobFuture[T], self._submits.submit(fn, args, kwargs, files))

    def map_async(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        chunksize: int = 1,
        combine: bool = True,
        reduce: Callable[[Any, Any], Any] | None = None,
        errors: Literal["raise", "skip", "return"] = "raise",
        job_id: str | None = None,
        resource_files: Iterable[ResourceFile] = (),
        output_files: Iterable[OutputFile] = (),
    ) -> JobFuture[Any]:
        """Submit ``fn`` over ``iterables`` as one Batch job; a future for its whole result.

        The result is the list of results in order (``errors`` says what failures
        become), or with ``reduce`` the fold ``reduce(reduce(r0, r1), r2) ...`` computed
        in the cloud. ``combine`` merges the chunks' outcomes in a cloud task, so the
        result is one download.

        Every chunk task gets ``resource_files`` (:class:`~batchexecutor.ResourceFile`:
        downloaded by Batch into its working directory before it runs) and
        ``output_files`` (:class:`~batchexecutor.OutputFile`: uploaded by Batch once it
        exits; without a destination, to the job's storage: see :meth:`job_outputs`).
        """
        self._check_map(fn, iterables, chunksize, combine, reduce, errors)
        job_id = check_job_id(job_id) if job_id is not None else new_job_id("map")
        files = file_spec(resource_files, output_files)
        job = self._start_map(
            fn, iterables, chunksize, combine, reduce, errors, job_id, future=True, files=files
        )
        assert job.whole is not None
        job.whole._partial = self._partial_reader()
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
        deleted. (Resource and output files: ``executor.options(...).map(...)``.)
        """
        return self._map(fn, iterables, timeout, chunksize, None)

    def _map(
        self,
        fn: Callable[..., T],
        iterables: tuple[Iterable[Any], ...],
        timeout: float | None,
        chunksize: int,
        files: FileSpec | None,
    ) -> Iterator[T]:
        end = None if timeout is None else time.monotonic() + timeout
        self._check_map(fn, iterables, chunksize, True, None, "raise")
        job = self._start_map(
            fn,
            iterables,
            chunksize,
            True,
            None,
            "raise",
            new_job_id("map"),
            future=False,
            files=files,
        )
        return _MapResults(job, end)

    # -- resource and output files ---------------------------------------------------------

    def options(
        self,
        *,
        resource_files: Iterable[ResourceFile] = (),
        output_files: Iterable[OutputFile] = (),
    ) -> ExecutorView:
        """This executor, as an :class:`~batchexecutor.ExecutorView` whose ``submit``,
        ``map`` and ``map_async`` give every task these files::

            with_data = executor.options(resource_files=[ResourceFile(url, "data.csv")])
            future = with_data.submit(analyse, "data.csv")

        The view is a ``concurrent.futures.Executor`` with the standard signatures, so it
        goes wherever an executor is expected; it shares this executor's jobs and threads.
        """
        return ExecutorView(self, file_spec(resource_files, output_files) or FileSpec())

    def job_outputs(
        self, job: str | JobFuture[Any], task_id: str | None = None
    ) -> list[TaskOutput]:
        """The output files the tasks of ``job`` (a job ID or a future; for a ``submit()``
        future, its own task's) uploaded to the job's storage (``OutputFile`` without a
        destination), ordered by task and path; ``task_id`` for one task's only. Raises
        :class:`~batchexecutor.JobNotFoundError` for a job that does not exist."""
        job_id, task_id = _job_and_task(job, task_id)
        return list_outputs(self._context, job_id, task_id)

    def download_outputs(
        self,
        job: str | JobFuture[Any],
        directory: str | os.PathLike[str],
        task_id: str | None = None,
    ) -> list[Path]:
        """Download the outputs :meth:`job_outputs` lists into ``directory``: each task's
        into ``directory/<task_id>/``, or, for one task (``task_id``, a ``submit()``
        future), into ``directory`` itself, keeping their paths. The files written."""
        job_id, task_id = _job_and_task(job, task_id)
        return download_outputs(self._context, job_id, directory, task_id)

    def open_output(self, output: TaskOutput) -> IO[bytes]:
        """A binary stream of one output file (from :meth:`job_outputs`); use ``with``."""
        return open_output(self._context, output)

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
            if self._delete_pool_on_shutdown:
                self._delete_pool()
        elif self._delete_pool_on_shutdown:
            threading.Thread(
                target=self._delete_pool_after_work, name="batchexecutor-delete-pool", daemon=True
            ).start()
        if not wait:
            # Without wait, the resolver threads stay while work is pending (futures still
            # resolve), and end once it is done, whether or not the executor is kept.
            threading.Thread(
                target=_release_resolver,
                args=(self._submits, self._context),
                name="batchexecutor-shutdown",
                daemon=True,
            ).start()

    # -- long-running jobs -----------------------------------------------------------------

    def attach(self, job: str | JobFuture[Any], task_id: str | None = None) -> JobFuture[Any]:
        """A live future for a job submitted by any process (given its ID, or a detached
        JobFuture), read back from Batch and storage; ``task_id`` for one ``submit()``
        call's task. Raises :class:`~batchexecutor.JobNotFoundError`,
        :class:`~batchexecutor.ForeignJobError` or
        :class:`~batchexecutor.IncompleteJobError` (resume it with :meth:`resume`)."""
        if isinstance(job, JobFuture):
            job_id, task_id = job.job_id, job.task_id
        else:
            job_id = job
        future = _manage.attach(self._context, job_id, task_id, self._attached)
        if task_id is None:
            self._job_futures.add(future)
            future._partial = self._partial_reader()
        return future

    def resume(
        self, job_id: str, fn: Callable[..., Any], *iterables: Iterable[Any]
    ) -> JobFuture[Any]:
        """Finish the submission of a ``map_async`` job that was cut short (its submitter
        died), given the same function and iterables; a live future for the job."""
        future = _manage.resume(self._context, job_id, fn, iterables)
        future._partial = self._partial_reader()
        self._job_futures.add(future)
        return future

    def get_job(self, job_id: str) -> _manage.JobInfo:
        """The job's metadata and task counts; ``print()`` it for the guide's summary."""
        return _manage.job_info(self._context, job_id)

    def list_jobs(
        self, state: str | Iterable[str] = ("active", "completed")
    ) -> list[_manage.JobSummary]:
        """The account's jobs in these states (``format_jobs`` prints the guide's table)."""
        states = (state,) if isinstance(state, str) else tuple(state)
        return _manage.list_jobs(self._context, states)

    def job_result(self, job_id: str, errors: Mode | None = None) -> Any:
        """The result of a completed job (``errors`` overrides its error mode)."""
        return _manage.job_result(self._context, job_id, errors)

    def partial_results(self, job_id: str) -> Iterator[tuple[int, Any]]:
        """``(item index, value)`` of the items finished so far; the job may still run."""
        return _manage.partial_results(self._context, job_id)

    def _partial_reader(self) -> Callable[[str], Iterator[tuple[int, Any]]]:
        """:meth:`partial_results` for a future, holding the context, not the executor: a
        future kept by the caller must not keep a dropped executor (and its threads)."""
        return functools.partial(_manage.partial_results, self._context)

    def job_logs(self, job_id: str, task_id: str | None = None) -> list[_manage.TaskLog]:
        """stdout and stderr of a task, or of the job's failed tasks."""
        return _manage.job_logs(self._context, job_id, task_id)

    def terminate_job(self, job_id: str) -> bool:
        """Stop the job's tasks; its results so far stay readable."""
        return _manage.terminate(self._context, job_id)

    def delete_job(self, job_id: str) -> bool:
        """Delete the Batch job and all its stored data."""
        return _manage.delete(self._context, job_id)

    # -- the pool ----------------------------------------------------------------------------

    def pool_info(self) -> PoolInfo:
        """The pool's state, node state counts, resize errors and start task failures (with
        the end of their stderr); ``print()`` it for a summary."""
        from ._pool import pool_info

        self._require_pool()
        return pool_info(self._context.client, self.pool_id, deadline=self._context.deadline)

    def wait_for_nodes(self, timeout: float | None = None, *, min_nodes: int = 1) -> PoolInfo:
        """Wait until ``min_nodes`` nodes can run tasks; the pool's :class:`PoolInfo`.

        Raises :class:`~batchexecutor.PoolError` (with a failed node's stderr) as soon as
        the pool settled without enough usable nodes (start tasks failed, nodes unusable,
        or resize errors such as a quota), and ``TimeoutError`` after ``timeout`` seconds.
        A pool at zero nodes with a target of zero (autoscale from zero) is returned at
        once. Progress lines go to stderr when ``progress`` is on.
        """
        from ._pool import wait_for_nodes
        from ._progress import enabled

        self._require_pool()
        config = self._context.config
        return wait_for_nodes(
            self._context.client,
            self.pool_id,
            deadline=config.request_deadline,
            timeout=timeout,
            min_nodes=min_nodes,
            interval=(min(0.05, config.poll_interval_min), config.poll_interval_max),
            progress=sys.stderr if enabled(self._context.progress) else None,
        )

    def resize_pool(
        self,
        dedicated: int | None = None,
        spot: int | None = None,
        *,
        autoscale: Autoscale | None = None,
    ) -> None:
        """Resize the pool to ``dedicated`` and ``spot`` nodes (``None`` keeps that target;
        autoscale is switched off), or switch it to the ``autoscale`` formula."""
        from ._pool import resize_pool

        self._require_pool()
        resize_pool(
            self._context.client,
            self.pool_id,
            dedicated=dedicated,
            spot=spot,
            autoscale=autoscale,
            deadline=self._context.deadline,
        )

    @property
    def pool_created(self) -> bool:
        """Whether this executor created its pool (from ``pool=``), rather than reused it."""
        return self._pool_created

    def _ensure_nodes(self) -> None:
        """Before the first submission: wait for a usable node, if asked to."""
        if self._wait_nodes is False or self._nodes_ready.is_set() or self._shutdown:
            return
        with self._nodes_lock:
            if self._nodes_ready.is_set():  # another thread waited meanwhile
                return
            timeout = None if self._wait_nodes is True else float(self._wait_nodes)
            self.wait_for_nodes(timeout)
            self._nodes_ready.set()

    def _delete_pool(self) -> None:
        from ._pool import delete_pool

        with self._nodes_lock:
            if self._pool_deleted or not self.pool_id:
                return
            self._pool_deleted = True
        delete_pool(self._context.client, self.pool_id, deadline=self._context.deadline)

    def _delete_pool_after_work(self) -> None:
        self._submits.join()
        self._context.poller.join()
        self._delete_pool()

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

    def _require_pool(self) -> None:
        if not self._context.pool_id:
            raise ConfigurationError(
                "no pool to run on: pass pool_id=... to AzureBatchExecutor or set "
                "BATCHEXECUTOR_POOL_ID (or use AzureBatchExecutor.local() for the local "
                "emulator)",
                setting="pool_id",
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
        files: FileSpec | None = None,
    ) -> MapJob:
        with self._shutdown_lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        self._require_pool()
        self._ensure_nodes()
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
            files=files,
        )
        if whole is not None:
            whole._canceller = job.cancel
        self._map_jobs.add(job)
        return job


def _job_and_task(job: str | JobFuture[Any], task_id: str | None) -> tuple[str, str | None]:
    """A job ID and task ID from a job ID (and task ID), or from a future."""
    if isinstance(job, JobFuture):
        if task_id is not None and job.task_id is not None and task_id != job.task_id:
            raise ValueError(
                f"task_id {task_id!r} is not the task of this future ({job.task_id!r})"
            )
        return job.job_id, task_id if task_id is not None else job.task_id
    return check_job_id(job), task_id


def _release_resolver(submits: SubmitJob, context: Context) -> None:
    """After ``shutdown(wait=False)``: once no completion can come any more, let the
    resolver's threads end when their queued work is done (later work, such as a map's
    clean-up, runs on a thread of its own: see ``Context.background``)."""
    submits.join()
    context.poller.join()
    context.resolver.shutdown(wait=False)


def _results(job: MapJob, end: float | None) -> Generator[Any, None, None]:
    try:
        if job.progress is None:
            yield from job.iterate(end)
        else:
            with job.progress.showing():
                yield from job.iterate(end)
    finally:
        job.discard()


class _MapResults(Iterator[Any]):
    """``map()``'s iterator: :func:`_results`, and the job discarded also when it is
    closed or dropped before its first ``next()`` (a generator that never started does
    not run its ``finally``)."""

    def __init__(self, job: MapJob, end: float | None) -> None:
        self._results = _results(job, end)
        self._discard = weakref.finalize(self, job.discard)
        self._discard.atexit = False

    def __next__(self) -> Any:
        self._discard.detach()  # started: the generator's ``finally`` discards the job
        return next(self._results)

    def close(self) -> None:
        self._results.close()
        self._discard()


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


_live: weakref.WeakSet[AzureBatchExecutor] = weakref.WeakSet()
_implicit: dict[tuple[str, str], AzureBatchExecutor] = {}
_implicit_lock = threading.Lock()


def _same_endpoint(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


def _executor_for(endpoint: str, store: str) -> AzureBatchExecutor | None:
    """An executor that can follow work at ``endpoint`` with ``store`` (see reattach)."""
    for executor in list(_live):
        context = executor._context
        if (
            not executor._shutdown
            and _same_endpoint(context.endpoint, endpoint)
            and context.store_reference == store
        ):
            return executor
    with _implicit_lock:
        found = _implicit.get((endpoint, store))
        if found is not None:
            return found
        created: AzureBatchExecutor | None = None
        if os.environ.get("AZURE_BATCH_ENDPOINT"):
            config = BatchConfig.from_env()
            if _same_endpoint(config.batch_endpoint, endpoint):
                created = AzureBatchExecutor(config)
        if created is None:
            from ._daemon import running_daemon

            daemon = running_daemon(default_home())
            if daemon is not None and _same_endpoint(daemon.endpoint, endpoint):
                created = AzureBatchExecutor.local()
        if created is not None and created._context.store_reference == store:
            _implicit[(endpoint, store)] = created
            return created
        return None


def reattach(future: JobFuture[Any], executor: AzureBatchExecutor | None) -> JobFuture[Any]:
    """``future`` (detached) followed by ``executor`` or one found by :func:`_executor_for`.

    An error while attaching (the job was deleted, ...) is the returned future's
    exception: unpickling never raises for it, and the future never hangs.
    """
    if executor is None:
        try:
            executor = _executor_for(future.endpoint, future._store)
        except Exception:
            executor = None
        if executor is None:
            return future
    try:
        return executor.attach(future.job_id, future.task_id)
    except Exception as error:
        failed: JobFuture[Any] = JobFuture(
            future.job_id,
            future.task_id,
            endpoint=future.endpoint,
            store=future._store,
            canceller=lambda _: False,
        )
        failed.set_exception(error)
        return failed
