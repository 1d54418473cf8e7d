"""Fixtures of the emulator tests."""

from pathlib import Path

import pytest

from tests.emulator.support import make_gate


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    """A fresh gate directory for GATED tasks (see tests.emulator.support)."""
    return make_gate(tmp_path)
