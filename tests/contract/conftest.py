"""Fixtures of the contract tests."""

from collections.abc import Iterator

import pytest

from batchexecutor.emulator import BatchEmulator


@pytest.fixture
def emulator() -> Iterator[BatchEmulator]:
    """The shared fixture's emulator, with container tasks run on the host: the contract
    scenario's container tasks must not depend on whether this machine has a docker daemon
    (or on a registry it cannot reach)."""
    with BatchEmulator(max_processes=4, container_runtime="host") as emu:
        yield emu
