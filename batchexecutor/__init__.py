"""batchexecutor: concurrent.futures on Azure Batch.

The public API is exactly ``__all__``; everything else lives in private modules. Names
are imported on first use, so a node's worker (``python -m batchexecutor.worker``) does
not load the Azure SDK it may not need. The local Azure Batch emulator lives in
:mod:`batchexecutor.emulator`.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import _errors
from ._version import __version__

if TYPE_CHECKING:
    from ._config import BatchConfig, ConfigurationError
    from ._errors import (
        BatchExecutorError,
        CorruptObjectError,
        ForeignJobError,
        IncompleteJobError,
        JobError,
        JobNotDoneError,
        JobNotFoundError,
        NodeEnvironmentError,
        ObjectExistsError,
        ObjectNotFoundError,
        OutputFilesError,
        RemoteError,
        SerializationError,
        StorageError,
        TaskFailedError,
        VersionMismatchError,
    )
    from ._executor import AzureBatchExecutor
    from ._files import ExecutorView, OutputFile, ResourceFile, TaskOutput
    from ._future import JobFuture
    from ._jobs import JobExistsError
    from ._manage import JobInfo, JobSummary, TaskLog, format_jobs
    from ._pool import (
        Autoscale,
        ContainerRegistry,
        PoolError,
        PoolInfo,
        PoolSpec,
        PoolWarning,
        VmImage,
    )

__all__ = [
    "Autoscale",
    "AzureBatchExecutor",
    "BatchConfig",
    "BatchExecutorError",
    "ConfigurationError",
    "ContainerRegistry",
    "CorruptObjectError",
    "ExecutorView",
    "ForeignJobError",
    "IncompleteJobError",
    "JobError",
    "JobExistsError",
    "JobFuture",
    "JobInfo",
    "JobNotDoneError",
    "JobNotFoundError",
    "JobSummary",
    "NodeEnvironmentError",
    "ObjectExistsError",
    "ObjectNotFoundError",
    "OutputFile",
    "OutputFilesError",
    "PoolError",
    "PoolInfo",
    "PoolSpec",
    "PoolWarning",
    "RemoteError",
    "ResourceFile",
    "SerializationError",
    "StorageError",
    "TaskFailedError",
    "TaskLog",
    "TaskOutput",
    "VersionMismatchError",
    "VmImage",
    "__version__",
    "format_jobs",
]

_HOMES = {
    "AzureBatchExecutor": "._executor",
    "BatchConfig": "._config",
    "ConfigurationError": "._config",
    "JobFuture": "._future",
    "JobExistsError": "._jobs",
    **{
        name: "._pool"
        for name in (
            "Autoscale",
            "ContainerRegistry",
            "PoolError",
            "PoolInfo",
            "PoolSpec",
            "PoolWarning",
            "VmImage",
        )
    },
    **{name: "._manage" for name in ("JobInfo", "JobSummary", "TaskLog", "format_jobs")},
    **dict.fromkeys(("ExecutorView", "OutputFile", "ResourceFile", "TaskOutput"), "._files"),
    # Every exception of the tree: _errors imports nothing heavy, so it names them itself.
    **dict.fromkeys(_errors.__all__, "._errors"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'batchexecutor' has no attribute {name!r}")
    value = getattr(import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # The public API, loaded submodules (emulator, worker) and dunders; not the helpers
    # this module imports for itself (import_module, Any, TYPE_CHECKING, annotations).
    own = {name for name in globals() if name.startswith("__")}
    submodules = {name for name, value in globals().items() if isinstance(value, ModuleType)}
    return sorted(own | submodules | set(__all__))
