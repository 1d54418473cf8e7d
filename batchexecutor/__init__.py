"""batchexecutor: concurrent.futures on Azure Batch.

The local Azure Batch emulator lives in :mod:`batchexecutor.emulator`.
"""

from ._version import __version__

__all__ = ["__version__"]
