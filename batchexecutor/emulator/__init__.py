"""A local Azure Batch service: the azure-batch SDK talks to it as to Azure.

See ``docs/emulator.md`` for what it implements and where it differs from Azure.
"""

from ._emulator import BatchEmulator
from ._faults import FaultPlan

__all__ = ["BatchEmulator", "FaultPlan"]
