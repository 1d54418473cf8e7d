"""Developer sessions: ``nox -s tests``, ``lint``, ``typecheck``, ``bench``, ``azure``.

Supported Pythons come from pyproject's classifiers (one place to change them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).parent
AZURITE_VERSION = "3.37.0"
AZURITE_DIR = ROOT / ".azurite"

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"


def ensure_azurite(session: nox.Session) -> Path:
    """Install Microsoft's Azurite from npm into .azurite/ (pinned) if it is not there."""
    binary = AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"
    manifest = AZURITE_DIR / "node_modules" / "azurite" / "package.json"
    pinned = f'"version": "{AZURITE_VERSION}"'
    if not (binary.exists() and manifest.exists() and pinned in manifest.read_text()):
        if shutil.which("npm") is None:
            session.error("npm is required to install Azurite (the storage emulator used in tests)")
        AZURITE_DIR.mkdir(exist_ok=True)
        session.run(
            "npm",
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
            str(AZURITE_DIR),
            f"azurite@{AZURITE_VERSION}",
            external=True,
        )
    return binary


def install_groups(session: nox.Session, *groups: str, project: bool = True) -> None:
    """Install PEP 735 dependency groups (pip >= 25.1 reads them) and the project."""
    session.install("pip>=25.1")
    args = [arg for group in groups for arg in ("--group", group)]
    session.install(*args, *(["."] if project else []))


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite (installs Azurite locally if missing)."""
    azurite = ensure_azurite(session)
    install_groups(session, "test")
    env = {"BATCHEXECUTOR_AZURITE": str(azurite)}
    session.run("pytest", *session.posargs, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    install_groups(session, "lint", project=False)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    install_groups(session, "typecheck")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (not part of CI): ``nox -s bench -- --quick`` for a short run."""
    azurite = ensure_azurite(session)
    install_groups(session, "bench")
    env = {"BATCHEXECUTOR_AZURITE": str(azurite)}
    session.run("python", "-m", "benchmarks", *session.posargs, env=env)


#: Python of the ``azure`` session: that of the default node image's ``python3`` (Ubuntu
#: 24.04 LTS), since nodes must run the client's Python minor version.
AZURE_NODE_PYTHON = "3.12"
_STORAGE_VARIABLES = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "BATCHEXECUTOR_STORAGE_ACCOUNT_URL",
)


@nox.session(python=AZURE_NODE_PYTHON)
def azure(session: nox.Session) -> None:
    """The end-to-end test on a real Azure Batch account (see docs/azure.md).

    Needs AZURE_BATCH_ENDPOINT (with AZURE_BATCH_ACCOUNT and AZURE_BATCH_ACCESS_KEY, or
    Microsoft Entra ID) and storage (AZURE_STORAGE_CONNECTION_STRING, or
    AZURE_STORAGE_ACCOUNT [+ AZURE_STORAGE_KEY]); skipped without them. Creates a pool of
    one node (BATCHEXECUTOR_E2E_VM_SIZE, default Standard_D2s_v5) and deletes it.
    """
    if not os.environ.get("AZURE_BATCH_ENDPOINT") or not any(
        os.environ.get(name) for name in _STORAGE_VARIABLES
    ):
        session.skip(
            "no Azure account configured: set AZURE_BATCH_ENDPOINT (+ AZURE_BATCH_ACCOUNT "
            "and AZURE_BATCH_ACCESS_KEY, or sign in for Microsoft Entra ID) and "
            "AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT (docs/azure.md)"
        )
    install_groups(session, "test")
    session.run(
        "pytest",
        "tests/e2e",
        "-p",
        "no:cacheprovider",
        "-s",
        *session.posargs,
        env={"BATCHEXECUTOR_E2E": "azure"},
    )
