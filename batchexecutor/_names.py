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
``J/files/<digest>``   :func:`resource_file`         a local file given as a resource file
                                                     (``ResourceFile.from_path``), by content
``J/outputs/000007/…`` :func:`task_outputs`          task 7's output files (``OutputFile``
                                                     without a destination), uploaded by Batch
====================== ============================= ==========================================

Output files keep the names of the node's files below their task's prefix
(``J/outputs/000007/out/a.csv``): those names are the node's, not ours, so they are any
valid blob name (:func:`output_task` reads one back). Everything else is named here.

One kind of object is shared by jobs, under a prefix that contains a dot (which no job
ID can): ``client.builds/batchexecutor-<version>-<digest>.zip`` (:func:`client_build`),
the client's own build that job preparation tasks install on nodes
(:mod:`batchexecutor._nodeenv`). It is named by its content, so it is written once per
store and build.

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
    "client_build",
    "describe",
    "function",
    "input_pack",
    "job_prefix",
    "manifest",
    "output_task",
    "outputs_prefix",
    "reducer",
    "resource_file",
    "result",
    "task_outputs",
]

#: Batch's limit on job IDs (and task IDs).
MAX_JOB_ID_LENGTH: Final = 64

_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PARSE = re.compile(
    r"(?P<job>[A-Za-z0-9_-]{1,64})/(?:"
    r"(?P<manifest>manifest\.json)|(?P<function>function)|(?P<reduce>reduce)|(?P<result>result)"
    r"|inputs/(?P<input>\d+)|packs/(?P<pack>\d+)|outcomes/(?P<outcome>\d+)"
    r"|files/(?P<file>[0-9a-f]+)|outputs/(?P<output_task>\d+)/(?P<output>.+))",
    re.DOTALL,
)
_DIGEST = re.compile(r"[0-9a-f]{16,64}")


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


def resource_file(job_id: str, digest: str) -> str:
    """``J/files/<digest>``: a local file uploaded for the job's tasks to download, named by
    its content (lower-case hex SHA-256, 16 to 64 digits), so it is stored once per job."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ValueError(
            f"a resource file digest is 16 to 64 lower-case hex digits, got {digest!r}"
        )
    return f"{job_prefix(job_id)}files/{digest}"


def outputs_prefix(job_id: str) -> str:
    """``J/outputs/``: every output file of the job, for listing."""
    return f"{job_prefix(job_id)}outputs/"


def task_outputs(job_id: str, task: int) -> str:
    """``J/outputs/000007/``: the prefix under which Batch uploads task 7's output files."""
    return f"{outputs_prefix(job_id)}{_number('task', task)}/"


def output_task(job_id: str, name: str) -> tuple[int, str] | None:
    """``(task number, path below the task's prefix)`` of an output file's name, e.g.
    ``(7, "out/a.csv")`` for ``J/outputs/000007/out/a.csv``; ``None`` for another name."""
    prefix = outputs_prefix(job_id)
    if not name.startswith(prefix):
        return None
    task, slash, path = name[len(prefix) :].partition("/")
    if not slash or not task.isdigit() or not task.isascii() or not path:
        return None
    return int(task), path


#: Prefix of the client builds (a dot: never a job's prefix).
BUILDS_PREFIX: Final = "client.builds/"


def client_build(version: str, digest: str) -> str:
    """``client.builds/batchexecutor-<version>-<digest>.zip``: a client build, by content
    (characters a name may not hold, such as a local version's ``+``, become ``_``)."""
    if not re.fullmatch(r"[0-9a-f]{8,64}", digest):
        raise ValueError(f"a client build digest is lower-case hex, got {digest!r}")
    version = re.sub(r"[^A-Za-z0-9_.-]", "_", version).lstrip(".") or "unknown"
    return f"{BUILDS_PREFIX}batchexecutor-{version}-{digest}.zip"


def describe(name: str) -> str:
    """Words for a stored object, e.g. ``outcome of chunk 7 of job 'J' (J/outcomes/000007)``."""
    if name.startswith(BUILDS_PREFIX):
        return f"client build ({name})"
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
    elif match["file"]:
        words = "uploaded resource file"
    elif match["output"]:
        words = f"output file {match['output']!r} of task {int(match['output_task'])}"
    else:
        words = f"outcome of chunk {int(match['outcome'])}"
    return f"{words} of job {job!r} ({name})"
