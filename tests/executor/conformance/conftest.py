"""Fixtures of the conformance suite: one local emulator daemon for the whole session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batchexecutor._daemon import stop_daemon


@pytest.fixture(scope="session")
def conformance_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The home of every executor of the suite: its daemon starts once, stops at the end."""
    home = tmp_path_factory.mktemp("conformance-home")
    try:
        yield home
    finally:
        stop_daemon(home)
