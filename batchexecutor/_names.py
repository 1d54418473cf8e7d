"""The one place that names the objects a job stores.

Every object of job ``J`` lives under the prefix ``J/``:

====================== ============================= ==========================================
name                   function                      content
====================== ============================= ==========================================
``J/manifest.json``    :func:`manifest`              job metadata (JSON, written by the client)
``J/function``         :func:`function`              the callable of a ``map`` (envelope)
``J/reduce``           :func:`reducer`               the ``reduce`` callable (envelope)
``J/inputs/000007``    :func:`chunk_input`           chunk 7's calls (record stream)
``J/packs/000002``     :func:`input_pack`            several chunks' inputs back to back
``J/outcomes/000007``  :func:`chunk_outcome`         chunk 7's outcomes (record stream)
``J/result``           :func:`result`                the combined result (record stream)
====================== ============================= ==========================================

Numbers are zero-padded to six digits so listings sort in chunk order (up to a million
chunks; beyond that they still work, unpadded order aside). Job IDs are Batch IDs: 1 to
64 letters, digits, ``-`` and ``_``. Every name is therefore a valid blob name and a
valid relative POSIX path, made of segments that never start with a dot (stores keep
temporary files under dotted names, out of every listing).

:func:`describe` turns a name back into words for error messages.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "MAX_JOB_ID_LENGTH",
    "check_job_id",
    "chunk_input",
    "chunk_outcome",
    "describe",
    "function",
    "input_pack",
    "job_prefix",
    "manifest",
    "reducer",
    "result",
]

#: Batch's limit on job IDs (and task IDs).
MAX_JOB_ID_LENGTH: Final = 64

_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PARSE = re.compile(
    r"(?P<job>[A-Za-z0-9_-]{1,64})/(?:"
    r"(?P<manifest>manifest\.json)|(?P<function>function)|(?P<reduce>reduce)|(?P<result>result)"
    r"|inputs/(?P<input>\d+)|packs/(?P<pack>\d+)|outcomes/(?P<outcome>\d+))"
)


def check_job_id(job_id: str) -> str:
    """``job_id`` if it is a valid Batch job ID, else ``ValueError``."""
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise ValueError(
            f"invalid job ID {job_id!r}: a Batch job ID is 1 to {MAX_JOB_ID_LENGTH} letters, "
            "digits, hyphens and underscores"
        )
    return job_id


def _number(kind: str, value: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{kind} number must be a non-negative int, got {value!r}")
    return f"{value:06d}"


def job_prefix(job_id: str) -> str:
    """``J/``: every object of the job, for listing and deleting."""
    return f"{check_job_id(job_id)}/"


def manifest(job_id: str) -> str:
    return f"{job_prefix(job_id)}manifest.json"


def function(job_id: str) -> str:
    return f"{job_prefix(job_id)}function"


def reducer(job_id: str) -> str:
    return f"{job_prefix(job_id)}reduce"


def chunk_input(job_id: str, chunk: int) -> str:
    return f"{job_prefix(job_id)}inputs/{_number('chunk', chunk)}"


def input_pack(job_id: str, pack: int) -> str:
    return f"{job_prefix(job_id)}packs/{_number('pack', pack)}"


def chunk_outcome(job_id: str, chunk: int) -> str:
    return f"{job_prefix(job_id)}outcomes/{_number('chunk', chunk)}"


def result(job_id: str) -> str:
    return f"{job_prefix(job_id)}result"


def describe(name: str) -> str:
    """Words for a stored object, e.g. ``outcome of chunk 7 of job 'J' (J/outcomes/000007)``."""
    match = _PARSE.fullmatch(name)
    if match is None:
        return f"stored object {name!r}"
    job = match["job"]
    if match["manifest"]:
        words = "manifest"
    elif match["function"]:
        words = "function"
    elif match["reduce"]:
        words = "reduce function"
    elif match["result"]:
        words = "combined result"
    elif match["input"]:
        words = f"input of chunk {int(match['input'])}"
    elif match["pack"]:
        words = f"input pack {int(match['pack'])}"
    else:
        words = f"outcome of chunk {int(match['outcome'])}"
    return f"{words} of job {job!r} ({name})"
