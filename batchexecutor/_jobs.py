"""What the executor sends to Batch: its jobs, their metadata, and the tasks' command lines.

A job of batchexecutor carries its description twice: as Batch job metadata (read back
by whoever attaches to it later, with nothing but the job ID) and as
``J/manifest.json`` in the store. Metadata names all start with ``batchexecutor.``:

================================ =========================================================
``batchexecutor.kind``           ``map`` or ``submit``
``batchexecutor.version``        batchexecutor, python and cloudpickle versions of the client
``batchexecutor.python``
``batchexecutor.cloudpickle``
``batchexecutor.function``       the mapped function's qualified name (``map``)
``batchexecutor.chunksize``      items per chunk task (``map``)
``batchexecutor.combine``        ``true`` if a combine task merges the outcomes
``batchexecutor.reduce``         the reduce function's name, if any
``batchexecutor.errors``         the error mode (``raise``, ``skip``, ``return``)
``batchexecutor.submitted``      ``partial`` while tasks are being added, then ``complete``
``batchexecutor.items``          item and chunk counts, once ``complete``
``batchexecutor.chunks``
``batchexecutor.created``        client's UTC time of creation (ISO 8601)
================================ =========================================================

Chunk tasks have integer IDs (``0``, ``1``, ...: Batch's ``taskIdRanges`` only cover
integer IDs), no retries (a function may not be idempotent, as with
``ProcessPoolExecutor``), and exit conditions that *satisfy* dependencies whatever
happens, so the combine task (ID ``combine``) runs when some chunks fail.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

from ._batch import pool_exists
from ._errors import BatchExecutorError
from ._nodeenv import NodeLauncher
from ._retry import call, error_code
from ._serialize import versions

if TYPE_CHECKING:
    from azure.batch import BatchClient

    from ._files import TaskFiles

__all__ = [
    "COMBINE_TASK",
    "METADATA_PREFIX",
    "JobExistsError",
    "chunk_task",
    "combine_task",
    "create_job",
    "finish_submission",
    "new_job_id",
]

METADATA_PREFIX: Final = "batchexecutor."
#: The combine task's ID (not an integer, so no taskIdRange of chunks covers it).
COMBINE_TASK: Final = "combine"


class JobExistsError(ValueError):
    """A job with the requested ID already exists in the Batch account."""


def new_job_id(kind: str) -> str:
    """``bx-<kind>-<UTC time>-<random>``: sortable by creation, unique, 35 characters."""
    moment = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"bx-{kind}-{moment}-{secrets.token_hex(4)}"


def metadata(fields: Mapping[str, Any]) -> list[bm.BatchMetadataItem]:
    """Batch metadata items for ``fields`` (plus the client's versions)."""
    entries = {
        "version": versions()["batchexecutor"],
        "python": versions()["python"],
        "cloudpickle": versions()["cloudpickle"],
    }
    for name, value in fields.items():
        if value is None:
            continue
        entries[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return [bm.BatchMetadataItem(name=METADATA_PREFIX + k, value=v) for k, v in entries.items()]


def create_job(
    client: BatchClient,
    job_id: str,
    *,
    pool_id: str,
    environment: Mapping[str, str],
    fields: Mapping[str, Any],
    max_parallel_tasks: int | None,
    dependencies: bool,
    deadline: float,
    preparation: bm.BatchJobPreparationTask | None = None,
) -> None:
    """Create the job, ``onAllTasksComplete=noaction`` until every task is added, with
    the job preparation task ``preparation`` (see :mod:`batchexecutor._nodeenv`).

    Raises :class:`JobExistsError` if the ID is taken (by an earlier attempt of this very
    call too: IDs are fresh per call, so that cannot be mistaken for this job), and
    :class:`BatchExecutorError` if the pool does not exist: Batch accepts a job for a
    missing pool, whose tasks would then wait forever.
    """
    if not pool_exists(client, pool_id, deadline=deadline):
        raise BatchExecutorError(
            f"pool {pool_id!r} does not exist in the Batch account: create it first, or "
            "name an existing pool (pool_id=... or BATCHEXECUTOR_POOL_ID)"
        )
    options = bm.BatchJobCreateOptions(
        id=job_id,
        pool_info=bm.BatchPoolInfo(pool_id=pool_id),
        uses_task_dependencies=dependencies,
        job_preparation_task=preparation,
        all_tasks_complete_mode=bm.BatchAllTasksCompleteMode.NO_ACTION,
        max_parallel_tasks=max_parallel_tasks if max_parallel_tasks is not None else -1,
        common_environment_settings=[
            bm.EnvironmentSetting(name=name, value=value) for name, value in environment.items()
        ],
        metadata=metadata(
            {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **fields}
        ),
    )
    try:
        call(f"create job {job_id!r}", client.create_job, options, deadline=deadline)
    except HttpResponseError as error:
        if error_code(error) == "JobExists":
            raise JobExistsError(
                f"a job with ID {job_id!r} already exists in the Batch account: choose "
                "another job_id, or leave it out to get a fresh one"
            ) from None
        raise


def finish_submission(
    client: BatchClient, job_id: str, fields: Mapping[str, Any], *, deadline: float
) -> None:
    """One update: final metadata (``submitted=complete``) and ``terminatejob``.

    From now on Batch ends the job as soon as all its tasks are complete.
    """
    options = bm.BatchJobUpdateOptions(
        all_tasks_complete_mode=bm.BatchAllTasksCompleteMode.TERMINATE_JOB,
        metadata=metadata({**fields, "submitted": "complete"}),
    )
    call(
        f"finish the submission of job {job_id!r}",
        client.update_job,
        job_id,
        options,
        deadline=deadline,
    )


_SATISFY = bm.ExitOptions(dependency_action=bm.DependencyAction.SATISFY)


def chunk_task(
    job_id: str,
    chunk: int,
    *,
    launcher: NodeLauncher,
    pack: tuple[int, int, int],
    dependents: bool,
    files: TaskFiles | None = None,
) -> bm.BatchTaskCreateOptions:
    """Chunk ``chunk``'s task, started as ``launcher`` says; its input is ``length`` bytes
    at ``offset`` of ``pack``; ``files``, its resource and output files (see
    :mod:`batchexecutor._files`)."""
    number, offset, length = pack
    arguments = ["run", "--job", job_id, "--chunk", str(chunk)]
    arguments += ["--pack", str(number), "--offset", str(offset), "--length", str(length)]
    return bm.BatchTaskCreateOptions(
        id=str(chunk),
        command_line=launcher.command(arguments),
        constraints=bm.BatchTaskConstraints(max_task_retry_count=0),
        exit_conditions=bm.ExitConditions(
            default=_SATISFY, pre_processing_error=_SATISFY, file_upload_error=_SATISFY
        )
        if dependents
        else None,
        resource_files=files.resource_files() if files is not None else None,
        output_files=files.output_files(chunk) if files is not None else None,
        container_settings=launcher.container_settings(),
    )


def combine_task(
    job_id: str, chunks: int, *, launcher: NodeLauncher, mode: str, reduce: bool
) -> bm.BatchTaskCreateOptions:
    """The combine task, depending on chunks ``0 .. chunks - 1`` by one ID range."""
    arguments = ["combine", "--job", job_id, "--chunks", str(chunks), "--mode", mode]
    if reduce:
        arguments.append("--reduce")
    return bm.BatchTaskCreateOptions(
        id=COMBINE_TASK,
        command_line=launcher.command(arguments),
        constraints=bm.BatchTaskConstraints(max_task_retry_count=0),
        container_settings=launcher.container_settings(),
        depends_on=bm.BatchTaskDependencies(
            task_id_ranges=[bm.BatchTaskIdRange(start=0, end=chunks - 1)]
        )
        if chunks
        else None,
    )
