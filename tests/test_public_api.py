"""The public API of ``batchexecutor`` is exactly ``__all__``, and the node's worker does
not need the Azure SDK."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

import batchexecutor
from batchexecutor import _errors

REPO = Path(__file__).resolve().parents[1]


def public_names() -> set[str]:
    return set(batchexecutor.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(batchexecutor.__all__) == len(public_names())
    assert all(isinstance(name, str) for name in batchexecutor.__all__)


@pytest.mark.parametrize("name", sorted(batchexecutor.__all__))
def test_every_public_name_is_importable(name: str) -> None:
    value = getattr(batchexecutor, name)
    assert value is not None
    namespace: dict[str, object] = {}
    exec(f"from batchexecutor import {name}", namespace)
    assert namespace[name] is value
    if not name.startswith("__"):
        assert getattr(value, "__doc__", None), f"{name} has no docstring"


def test_star_import_is_all() -> None:
    namespace: dict[str, object] = {}
    exec("from batchexecutor import *", namespace)
    assert set(namespace) - {"__builtins__"} == public_names()


def test_dir_lists_the_public_api_and_nothing_else_public() -> None:
    for name in batchexecutor.__all__:
        getattr(batchexecutor, name)  # imported on first use: dir() is the same before and after
    listed = dir(batchexecutor)
    assert listed == sorted(listed)
    assert public_names() <= set(listed)
    public = {
        name
        for name in listed
        if not name.startswith("_")
        and not isinstance(getattr(batchexecutor, name), ModuleType)  # emulator, worker
    }
    assert public == {name for name in public_names() if not name.startswith("_")}


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        batchexecutor.NoSuchThing  # noqa: B018
    with pytest.raises(ImportError):
        exec("from batchexecutor import NoSuchThing", {})


def test_the_exception_tree_is_public() -> None:
    missing = set(_errors.__all__) - public_names()
    assert not missing, f"exceptions raised to users but not exported: {sorted(missing)}"
    assert "JobExistsError" in public_names()
    assert issubclass(batchexecutor.JobExistsError, ValueError)
    for name in _errors.__all__:
        assert issubclass(getattr(batchexecutor, name), batchexecutor.BatchExecutorError)


def test_resource_and_output_files_are_public() -> None:
    names = {"ResourceFile", "OutputFile", "TaskOutput", "ExecutorView", "OutputFilesError"}
    assert names <= public_names()
    from batchexecutor import _files

    for name in names - {"OutputFilesError"}:
        assert getattr(batchexecutor, name) is getattr(_files, name)


def test_version() -> None:
    assert isinstance(batchexecutor.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", batchexecutor.__version__)


def test_the_emulator_package_exports() -> None:
    from batchexecutor import emulator

    for name in emulator.__all__:
        assert getattr(emulator, name) is not None


def _modules_after(code: str) -> dict[str, list[str]]:
    """Run ``code`` in a fresh interpreter; the Azure modules it imported, by phase."""
    script = textwrap.dedent(
        """
        import json, sys

        def azure():
            return sorted(m for m in sys.modules if m == "azure" or m.startswith("azure."))

        phases = {}
        """
    ) + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", script + "\nprint(json.dumps(phases))\n"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, list[str]] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_importing_the_worker_does_not_import_azure() -> None:
    phases = _modules_after(
        """
        import batchexecutor
        phases["package"] = azure()
        import batchexecutor.worker
        phases["worker"] = azure()
        """
    )
    assert phases == {"package": [], "worker": []}


def test_a_worker_run_on_a_local_store_does_not_import_azure(tmp_path: Path) -> None:
    phases = _modules_after(
        f"""
        from batchexecutor import worker
        from batchexecutor._storage import LocalStore
        from tests.executor import dataplane

        store = LocalStore({str(tmp_path)!r})
        dataplane.stage_map(store, "job", dataplane.fail_on_three, [(1,), (3,)], 2)
        code = worker.main(["run", "--store", {str(tmp_path)!r}, "--job", "job", "--chunk", "0"])
        assert code == worker.EXIT_FAILED, code
        phases["run"] = azure()
        code = worker.main(["combine", "--store", {str(tmp_path)!r}, "--job", "job",
                            "--chunks", "1", "--mode", "return"])
        assert code == worker.EXIT_OK, code
        phases["combine"] = azure()
        """
    )
    assert phases == {"run": [], "combine": []}
