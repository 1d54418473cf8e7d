"""``JobFuture``: a ``concurrent.futures.Future`` that is also a handle on a Batch job.

A JobFuture is a real Future (``wait``, ``as_completed``, ``asyncio.wrap_future`` and
``loop.run_in_executor`` take it) that knows where its work lives: the Batch endpoint,
the job ID, the task ID (``None`` for a whole ``map_async`` job) and the store locator.
That reference, never a credential and never a result, is what it pickles to, and what
:meth:`JobFuture.to_json` writes::

    {"format": "batchexecutor.JobFuture/1", "endpoint": "https://acct.region.batch.azure.com",
     "job_id": "bx-...", "task_id": "17", "store": "https://acct.blob.core.windows.net/c"}

An unpickled (or :meth:`JobFuture.from_json`) future reattaches: it is followed by the
executor given to ``from_json``, else by a live executor of this process for the same
endpoint and store, else by one configured from the environment for that endpoint, else
by the running local daemon at that endpoint. Failing all of these it is *detached*: it
cannot learn its outcome, so ``result()`` says so at once instead of waiting forever,
and ``AzureBatchExecutor.attach(future)`` makes it live.

``cancel()`` asks the executor to stop the work: work not yet sent is dropped, a Batch
task not yet running is terminated, and a task already running keeps running
(``cancel()`` then returns False and the future reports ``running()``), as in
``ProcessPoolExecutor``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures._base import PENDING, RUNNING
from contextlib import AbstractContextManager
from typing import Any, Final, TypeVar

from ._names import check_job_id

__all__ = ["FORMAT", "JobFuture"]

T = TypeVar("T")

#: The ``format`` of a serialized reference; a reader refuses any other.
FORMAT: Final = "batchexecutor.JobFuture/1"
_FIELDS: Final = ("endpoint", "job_id", "task_id", "store")


class JobFuture(Future[T]):
    """The future of one ``submit()`` call (``task_id`` set) or of a whole job (``None``)."""

    def __init__(
        self,
        job_id: str,
        task_id: str | None = None,
        *,
        endpoint: str = "",
        store: str = "",
        canceller: Callable[[JobFuture[Any]], bool] | None = None,
    ) -> None:
        super().__init__()
        self._job_id = check_job_id(job_id)
        if task_id is not None and not isinstance(task_id, str):
            raise TypeError(f"task_id must be a string or None, got {task_id!r}")
        self._task_id = task_id
        self._endpoint = endpoint
        self._store = store
        # Asked (outside the future's lock) whether the work can still be stopped, and
        # to stop it; None for a detached future.
        self._canceller = canceller
        self._partial: Callable[[str], Any] | None = None
        # Shows the job's progress while a caller waits (set when progress is on).
        self._show: Callable[[], AbstractContextManager[None]] | None = None

    @property
    def job_id(self) -> str:
        """The Batch job this future's work runs in."""
        return self._job_id

    @property
    def task_id(self) -> str | None:
        """The Batch task of a ``submit()`` call; ``None`` for a whole-job future."""
        return self._task_id

    @property
    def endpoint(self) -> str:
        """The Batch account endpoint."""
        return self._endpoint

    @property
    def detached(self) -> bool:
        """True for a future rebuilt from a reference, with no executor behind it."""
        return self._canceller is None

    # -- Future ------------------------------------------------------------------------

    def cancel(self) -> bool:
        with self._condition:
            if self._state != PENDING:
                return super().cancel()
            canceller = self._canceller
        if canceller is not None and not canceller(self):
            with self._condition:
                if self._state == PENDING:  # started on Batch: not cancellable any more
                    self._state = RUNNING
                    return False
        return super().cancel()

    def result(self, timeout: float | None = None) -> T:
        self._check_attached()
        if self._show is not None and not self.done():
            with self._show():
                return super().result(timeout)
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._check_attached()
        if self._show is not None and not self.done():
            with self._show():
                return super().exception(timeout)
        return super().exception(timeout)

    def _check_attached(self) -> None:
        if self._canceller is None and not self.done():
            raise RuntimeError(
                f"this JobFuture for job {self._job_id!r} is detached (it was unpickled or "
                "read from JSON): pass it to AzureBatchExecutor.attach(...) to follow it"
            )

    def __repr__(self) -> str:
        task = "" if self._task_id is None else f" task={self._task_id!r}"
        return f"<JobFuture at {id(self):#x} job={self._job_id!r}{task} state={self._state}>"

    # -- references --------------------------------------------------------------------

    def reference(self) -> dict[str, Any]:
        """What identifies this future's work: endpoint, job ID, task ID, store locator."""
        return {
            "format": FORMAT,
            "endpoint": self._endpoint,
            "job_id": self._job_id,
            "task_id": self._task_id,
            "store": self._store,
        }

    def to_json(self) -> str:
        """The reference as a small JSON document (see the module docstring)."""
        return json.dumps(self.reference(), sort_keys=True)

    @classmethod
    def from_reference(cls, reference: Mapping[str, Any], executor: Any = None) -> JobFuture[Any]:
        """A live future for ``reference`` (a :meth:`reference` dictionary).

        It is followed by ``executor`` if given; else by a live executor of this process
        for the same endpoint and store, or one configured from the environment
        (``BatchConfig.from_env()``) for that endpoint, or the running local daemon at
        that endpoint. With none of these, the future is detached.
        """
        detached = cls._detached(reference)
        from ._executor import reattach

        return reattach(detached, executor)

    @classmethod
    def _detached(cls, reference: Mapping[str, Any]) -> JobFuture[Any]:
        if not isinstance(reference, Mapping) or reference.get("format") != FORMAT:
            found = reference.get("format") if isinstance(reference, Mapping) else reference
            raise ValueError(
                f"not a JobFuture reference (expected format {FORMAT!r}, got {found!r})"
            )
        missing = [name for name in _FIELDS if name not in reference]
        if missing:
            raise ValueError(f"JobFuture reference lacks {', '.join(missing)}")
        for name in ("endpoint", "store"):
            if not isinstance(reference[name], str):
                raise ValueError(f"JobFuture reference: {name} must be a string")
        return cls(
            reference["job_id"],
            reference["task_id"],
            endpoint=reference["endpoint"],
            store=reference["store"],
        )

    @classmethod
    def from_json(cls, text: str | bytes, executor: Any = None) -> JobFuture[Any]:
        """The future :meth:`to_json` wrote, live if it can be (see :meth:`from_reference`)."""
        try:
            reference = json.loads(text)
        except ValueError as error:
            raise ValueError(f"not a JobFuture reference: {error}") from None
        return cls.from_reference(reference, executor)

    def partial_results(self) -> Any:
        """``(item index, value)`` of the items of this job finished so far."""
        if self._partial is None:
            raise RuntimeError("this JobFuture is detached: attach it to read partial results")
        return self._partial(self._job_id)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_from_reference, (self.reference(),))


def _from_reference(reference: Mapping[str, Any]) -> JobFuture[Any]:
    return JobFuture.from_reference(reference)
