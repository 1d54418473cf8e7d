"""Stored object names (batchexecutor._names): one place, valid everywhere, described."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import pytest

from batchexecutor import _names

JOB_IDS = ["j", "J-1_x", "a" * 64, "0", "-_-"]


def all_names(job_id: str) -> list[str]:
    return [
        _names.manifest(job_id),
        _names.function(job_id),
        _names.reducer(job_id),
        _names.chunk_input(job_id, 0),
        _names.chunk_input(job_id, 7),
        _names.input_pack(job_id, 2),
        _names.chunk_outcome(job_id, 0),
        _names.chunk_outcome(job_id, 1_234_567),
        _names.result(job_id),
    ]


def test_layout_is_fixed() -> None:
    # Nodes of one version read what clients of the same version wrote: the layout is a
    # wire format, so a change here must be deliberate.
    assert all_names("J") == [
        "J/manifest.json",
        "J/function",
        "J/reduce",
        "J/inputs/000000",
        "J/inputs/000007",
        "J/packs/000002",
        "J/outcomes/000000",
        "J/outcomes/1234567",
        "J/result",
    ]
    assert _names.job_prefix("J") == "J/"


@pytest.mark.parametrize("job_id", JOB_IDS)
def test_names_are_valid_blob_names_and_relative_paths(job_id: str) -> None:
    names = all_names(job_id)
    assert len(set(names)) == len(names)
    for name in names:
        assert name.startswith(_names.job_prefix(job_id))
        assert len(name) <= 1024 and name.isascii()
        assert re.fullmatch(r"[A-Za-z0-9_.\-/]+", name)
        path = PurePosixPath(name)
        assert not path.is_absolute()
        assert all(part not in ("", ".", "..") and not part.startswith(".") for part in path.parts)
        assert not name.endswith("/") and "//" not in name


def test_jobs_do_not_share_prefixes() -> None:
    # "j" must not be a prefix of "j2"'s objects: the trailing slash sees to it.
    assert not _names.result("j2").startswith(_names.job_prefix("j"))


def test_chunk_names_sort_in_chunk_order() -> None:
    names = [_names.chunk_outcome("j", n) for n in (0, 2, 10, 99, 100_000)]
    assert sorted(names) == names


@pytest.mark.parametrize("bad", ["", "a" * 65, "a/b", "a.b", "a b", "é", "../x", None, 3])
def test_invalid_job_ids_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="invalid job ID"):
        _names.check_job_id(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        _names.result(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, True, 1.0, "3"])
def test_invalid_numbers_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="non-negative int"):
        _names.chunk_outcome("j", bad)  # type: ignore[arg-type]


def test_describe_names_every_object() -> None:
    described = [_names.describe(name) for name in all_names("J")]
    assert described == [
        "manifest of job 'J' (J/manifest.json)",
        "function of job 'J' (J/function)",
        "reduce function of job 'J' (J/reduce)",
        "input of chunk 0 of job 'J' (J/inputs/000000)",
        "input of chunk 7 of job 'J' (J/inputs/000007)",
        "input pack 2 of job 'J' (J/packs/000002)",
        "outcome of chunk 0 of job 'J' (J/outcomes/000000)",
        "outcome of chunk 1234567 of job 'J' (J/outcomes/1234567)",
        "combined result of job 'J' (J/result)",
    ]
    assert _names.describe("elsewhere/x") == "stored object 'elsewhere/x'"
