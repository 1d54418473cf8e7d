"""Task files, resource files and output files of the emulator, through the azure-batch SDK.

Resource and output files go through Azurite (the ``azurite``/``blob_container`` fixtures).
A task's directory on its node holds ``stdout.txt``, ``stderr.txt`` and ``wd/`` (the working
directory, where resource files land and output-file patterns start).
"""

from __future__ import annotations

import http.client
import json
import shlex
from datetime import datetime, timezone
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from batchexecutor.emulator import BatchEmulator
from batchexecutor.emulator._auth import sign, string_to_sign
from tests.conftest import wait_task_completed
from tests.emulator.support import python, shell
from tests.fixtures.azurite import Azurite, BlobContainer

API = "api-version=2025-06-01"
JOB = "job"

# Writes stdout/stderr and a small tree under its working directory, with a known file
# mode and modification time, so every property the service reports can be checked.
WRITER = """
import os, pathlib, sys
wd = pathlib.Path.cwd()
(wd / "sub" / "deeper").mkdir(parents=True)
data = wd / "sub" / "data.bin"
data.write_bytes(b"0123456789")
os.chmod(data, 0o640)
os.utime(data, (1577934245, 1577934245))  # 2020-01-02T03:04:05Z
(wd / "sub" / "deeper" / "leaf.txt").write_text("leaf")
(wd / "out dir").mkdir()
(wd / "out dir" / "na\u00efve file.txt").write_text("spaced")
print("hello stdout")
print("hello stderr", file=sys.stderr)
"""
DATA_MTIME = datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def error_code(error: HttpResponseError) -> str | None:
    return error.error.code if error.error is not None else None


def download(client: BatchClient, task_id: str, path: str, ocp_range: str | None = None) -> bytes:
    return b"".join(client.download_task_file(JOB, task_id, path, ocp_range=ocp_range))


def raw_get(emulator: BatchEmulator, path: str) -> tuple[int, dict[str, Any]]:
    """A signed GET the SDK cannot show in full (a streamed download's error body)."""
    target = f"{quote(path)}?{API}"
    headers = {"ocp-date": formatdate(usegmt=True)}
    signature = sign(
        emulator.account_key, string_to_sign("GET", target, headers, emulator.account_name)
    )
    headers["Authorization"] = f"SharedKey {emulator.account_name}:{signature}"
    url = urlsplit(emulator.endpoint)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.fixture
def job(client: BatchClient, pool: str) -> str:
    client.create_job(
        bm.BatchJobCreateOptions(
            id=JOB, pool_info=bm.BatchPoolInfo(pool_id=pool), uses_task_dependencies=True
        )
    )
    return JOB


@pytest.fixture
def written(client: BatchClient, job: str) -> str:
    """A completed task that wrote WRITER's files."""
    client.create_task(job, bm.BatchTaskCreateOptions(id="writer", command_line=python(WRITER)))
    task = wait_task_completed(client, job, "writer")
    assert task.execution_info is not None and task.execution_info.exit_code == 0
    return "writer"


# --------------------------------------------------------------------------- task files


def test_list_task_files_top_level(
    client: BatchClient, emulator: BatchEmulator, written: str
) -> None:
    files = {f.name: f for f in client.list_task_files(JOB, written)}
    assert {"stdout.txt", "stderr.txt", "wd"} <= set(files)
    assert not [name for name in files if "/" in name], "not recursive: no children of wd"
    stdout, wd = files["stdout.txt"], files["wd"]
    assert stdout.is_directory is False
    assert stdout.properties is not None
    assert stdout.properties.content_length == len(b"hello stdout\n")
    assert files["stderr.txt"].properties is not None
    assert files["stderr.txt"].properties.content_length == len(b"hello stderr\n")
    assert stdout.url == f"{emulator.endpoint}/jobs/{JOB}/tasks/{written}/files/stdout.txt"
    assert wd.is_directory is True


def test_list_task_files_recursive(client: BatchClient, written: str) -> None:
    files = {f.name: f for f in client.list_task_files(JOB, written, recursive=True)}
    assert {
        "stdout.txt",
        "stderr.txt",
        "wd",
        "wd/sub",
        "wd/sub/data.bin",
        "wd/sub/deeper",
        "wd/sub/deeper/leaf.txt",
    } <= set(files)
    assert files["wd/sub"].is_directory is True
    assert files["wd/sub/deeper"].is_directory is True
    data = files["wd/sub/data.bin"]
    assert data.is_directory is False
    assert data.properties is not None
    assert data.properties.content_length == 10
    assert data.properties.last_modified == DATA_MTIME
    leaf = files["wd/sub/deeper/leaf.txt"].properties
    assert leaf is not None and leaf.content_length == 4


def test_list_task_files_filter(client: BatchClient, written: str) -> None:
    names = {
        f.name
        for f in client.list_task_files(
            JOB, written, recursive=True, filter="startswith(name, 'wd/sub/')"
        )
    }
    assert names == {"wd/sub/data.bin", "wd/sub/deeper", "wd/sub/deeper/leaf.txt"}


@pytest.mark.parametrize(
    ("ocp_range", "expected"),
    [
        (None, b"0123456789"),
        ("bytes=2-5", b"2345"),
        ("bytes=0-0", b"0"),
        ("bytes=7-", b"789"),
        ("bytes=6-100", b"6789"),
    ],
)
def test_download_task_file_with_range(
    client: BatchClient, written: str, ocp_range: str | None, expected: bytes
) -> None:
    assert download(client, written, "wd/sub/data.bin", ocp_range) == expected


def test_download_stdout_and_stderr(client: BatchClient, written: str) -> None:
    assert download(client, written, "stdout.txt") == b"hello stdout\n"
    assert download(client, written, "stderr.txt") == b"hello stderr\n"


def test_file_names_with_spaces_and_non_ascii(client: BatchClient, written: str) -> None:
    name = "wd/out dir/na\u00efve file.txt"
    listed = {f.name for f in client.list_task_files(JOB, written, recursive=True)}
    assert name in listed
    assert download(client, written, name) == b"spaced"
    assert client.get_task_file_properties(JOB, written, name).content_length == 6


def test_get_task_file_properties_of_a_file(client: BatchClient, written: str) -> None:
    listed = {f.name: f for f in client.list_task_files(JOB, written, recursive=True)}
    props = client.get_task_file_properties(JOB, written, "wd/sub/data.bin")
    assert props.url == listed["wd/sub/data.bin"].url
    assert props.url.endswith(f"/jobs/{JOB}/tasks/{written}/files/wd/sub/data.bin")
    assert props.is_directory is False
    assert props.content_length == 10
    assert props.last_modified == DATA_MTIME
    assert isinstance(props.creation_time, datetime)
    assert props.file_mode is not None
    assert int(props.file_mode, 8) & 0o777 == 0o640


def test_get_task_file_properties_of_a_directory(client: BatchClient, written: str) -> None:
    props = client.get_task_file_properties(JOB, written, "wd/sub")
    assert props.is_directory is True
    assert props.url.endswith(f"/jobs/{JOB}/tasks/{written}/files/wd/sub")


def test_delete_task_file(client: BatchClient, written: str) -> None:
    client.delete_task_file(JOB, written, "wd/sub/data.bin")
    names = {f.name for f in client.list_task_files(JOB, written, recursive=True)}
    assert "wd/sub/data.bin" not in names
    assert "wd/sub/deeper/leaf.txt" in names
    with pytest.raises(ResourceNotFoundError):
        client.get_task_file_properties(JOB, written, "wd/sub/data.bin")
    with pytest.raises(ResourceNotFoundError):
        download(client, written, "wd/sub/data.bin")


def test_delete_directory_needs_recursive(client: BatchClient, written: str) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.delete_task_file(JOB, written, "wd/sub")
    assert caught.value.status_code is not None and 400 <= caught.value.status_code < 500
    assert download(client, written, "wd/sub/deeper/leaf.txt") == b"leaf"
    client.delete_task_file(JOB, written, "wd/sub", recursive=True)
    names = {f.name for f in client.list_task_files(JOB, written, recursive=True)}
    assert not [name for name in names if name.startswith("wd/sub")]
    assert "stdout.txt" in names


def test_missing_task_file_is_file_not_found(
    client: BatchClient, emulator: BatchEmulator, written: str
) -> None:
    with pytest.raises(ResourceNotFoundError):
        download(client, written, "wd/nope.txt")
    with pytest.raises(ResourceNotFoundError):
        client.get_task_file_properties(JOB, written, "wd/nope.txt")
    with pytest.raises(ResourceNotFoundError) as caught:
        client.delete_task_file(JOB, written, "wd/nope.txt")
    assert error_code(caught.value) == "FileNotFound"
    # A streamed download's error body is not read by the SDK: check it on the wire.
    status, body = raw_get(emulator, f"/jobs/{JOB}/tasks/{written}/files/wd/nope.txt")
    assert (status, body["code"]) == (404, "FileNotFound")


def test_task_file_path_cannot_escape_the_task_directory(client: BatchClient, written: str) -> None:
    # A sibling whose directory name starts with this task's: a prefix check is not enough.
    sibling = f"{written}2"
    client.create_task(
        JOB, bm.BatchTaskCreateOptions(id=sibling, command_line=shell("echo secret"))
    )
    wait_task_completed(client, JOB, sibling)
    for escape in (f"../{sibling}/stdout.txt", "../../../../../../../../etc/passwd"):
        with pytest.raises(ResourceNotFoundError):
            download(client, written, escape)
        with pytest.raises(ResourceNotFoundError):
            client.get_task_file_properties(JOB, written, escape)
        with pytest.raises(ResourceNotFoundError):
            client.delete_task_file(JOB, written, escape)
    assert download(client, sibling, "stdout.txt") == b"secret\n"


def test_task_directory_itself_cannot_be_deleted(client: BatchClient, written: str) -> None:
    # ``../writer`` resolves to the task's own directory: it is not one of its files.
    for itself in (f"../{written}", "wd/.."):
        with pytest.raises(ResourceNotFoundError):
            client.delete_task_file(JOB, written, itself, recursive=True)
    assert download(client, written, "stdout.txt") != b""
    assert "wd/sub/deeper/leaf.txt" in {
        f.name for f in client.list_task_files(JOB, written, recursive=True)
    }


def test_files_of_a_missing_task_is_task_not_found(client: BatchClient, job: str) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        list(client.list_task_files(job, "ghost"))
    assert error_code(caught.value) == "TaskNotFound"


# --------------------------------------------------------------------------- resource files


def put(container: BlobContainer, name: str, data: str) -> None:
    container.client.upload_blob(name, data.encode(), overwrite=True)


@pytest.mark.azurite
def test_resource_files_are_downloaded_before_the_task_runs(
    client: BatchClient, job: str, azurite: Azurite, blob_container: BlobContainer
) -> None:
    put(blob_container, "inputs/single.txt", "from httpUrl\n")
    put(blob_container, "data/x.txt", "x\n")
    put(blob_container, "data/sub/y.txt", "y\n")
    put(blob_container, "other/z.txt", "not under the prefix\n")
    read_list = azurite.container_sas_url(blob_container.name, permissions="rl")
    files = [
        bm.ResourceFile(
            http_url=azurite.blob_sas_url(blob_container.name, "inputs/single.txt"),
            file_path="in/single.txt",
        ),
        bm.ResourceFile(
            storage_container_url=read_list, blob_prefix="data/", file_path="tree", file_mode="0644"
        ),
    ]
    script = (
        "cat in/single.txt tree/data/x.txt tree/data/sub/y.txt && "
        "test ! -e tree/other && test ! -e other"
    )
    client.create_task(
        job,
        bm.BatchTaskCreateOptions(id="reader", command_line=shell(script), resource_files=files),
    )
    task = wait_task_completed(client, job, "reader")
    assert task.execution_info is not None
    assert (task.execution_info.result, task.execution_info.exit_code) == ("success", 0)
    assert download(client, "reader", "stdout.txt") == b"from httpUrl\nx\ny\n"
    single = client.get_task_file_properties(job, "reader", "wd/in/single.txt")
    assert single.file_mode is not None and int(single.file_mode, 8) & 0o777 == 0o770
    tree = client.get_task_file_properties(job, "reader", "wd/tree/data/sub/y.txt")
    assert tree.file_mode is not None and int(tree.file_mode, 8) & 0o777 == 0o644


def output_file(
    container_url: str, pattern: str, path: str, condition: bm.OutputFileUploadCondition
) -> bm.OutputFile:
    return bm.OutputFile(
        file_pattern=pattern,
        destination=bm.OutputFileDestination(
            container=bm.OutputFileBlobContainerDestination(container_url=container_url, path=path)
        ),
        upload_options=bm.OutputFileUploadConfiguration(upload_condition=condition),
    )


@pytest.mark.azurite
def test_output_files_are_uploaded_after_the_task_ends(
    client: BatchClient, job: str, blob_container: BlobContainer
) -> None:
    script = (
        "mkdir -p out/sub && echo one > out/r1.txt && echo two > out/sub/r2.txt && "
        'echo skipped > out/r3.log && echo first line && echo "last line $1" && exit "$1"'
    )
    for task_id, exit_code in (("succeeds", 0), ("fails", 3)):
        outputs = [
            output_file(
                blob_container.sas_url,
                "../stdout.txt",
                f"{task_id}/logs/stdout.txt",
                bm.OutputFileUploadCondition.TASK_COMPLETION,
            ),
            output_file(
                blob_container.sas_url,
                "out/**/*.txt",
                f"{task_id}/results",
                bm.OutputFileUploadCondition.TASK_SUCCESS,
            ),
            output_file(
                blob_container.sas_url,
                "out/r1.txt",
                f"{task_id}/failure/r1.txt",
                bm.OutputFileUploadCondition.TASK_FAILURE,
            ),
        ]
        client.create_task(
            job,
            bm.BatchTaskCreateOptions(
                id=task_id,
                command_line=f"/bin/sh -c {shlex.quote(script)} sh {exit_code}",
                output_files=outputs,
            ),
        )
    for task_id in ("succeeds", "fails"):
        wait_task_completed(client, job, task_id)
    # Uploads happen before the task completes: the blobs are there as soon as it is.
    blobs = {b.name for b in blob_container.client.list_blobs()}
    assert blobs == {
        "succeeds/logs/stdout.txt",
        "succeeds/results/r1.txt",
        "succeeds/results/sub/r2.txt",
        "fails/logs/stdout.txt",
        "fails/failure/r1.txt",
    }

    def blob(name: str) -> bytes:
        data: bytes = blob_container.client.download_blob(name).readall()
        return data

    # The whole stdout, last line included: uploaded after the process ended.
    assert blob("succeeds/logs/stdout.txt") == b"first line\nlast line 0\n"
    assert blob("fails/logs/stdout.txt") == b"first line\nlast line 3\n"
    assert blob("succeeds/results/sub/r2.txt") == b"two\n"
    assert blob("fails/failure/r1.txt") == b"one\n"
    failed = client.get_task(job, "fails").execution_info
    assert failed is not None and (failed.result, failed.exit_code) == ("failure", 3)


@pytest.mark.azurite
def test_failed_resource_download_fails_the_task_without_running_it(
    client: BatchClient,
    job: str,
    azurite: Azurite,
    blob_container: BlobContainer,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    missing = azurite.blob_sas_url(blob_container.name, "does/not/exist.txt")
    client.create_task(
        job,
        bm.BatchTaskCreateOptions(
            id="doomed",
            command_line=shell(f"touch {shlex.quote(str(marker))}"),
            resource_files=[bm.ResourceFile(http_url=missing, file_path="input.txt")],
            constraints=bm.BatchTaskConstraints(max_task_retry_count=3),
        ),
    )
    task = wait_task_completed(client, job, "doomed")
    info = task.execution_info
    assert info is not None
    assert info.result == "failure"
    assert info.exit_code is None
    assert info.retry_count == 0, "pre-processing errors are not retried"
    assert info.failure_info is not None
    assert info.failure_info.code == "BlobNotFound"
    assert info.failure_info.category == "usererror"
    assert not marker.exists(), "the command line must not run"
    assert "sig=" not in json.dumps(info.failure_info.as_dict()), "no SAS token in failureInfo"


@pytest.mark.azurite
def test_pre_processing_error_exit_options_decide_dependents(
    client: BatchClient,
    job: str,
    azurite: Azurite,
    blob_container: BlobContainer,
) -> None:
    missing = [
        bm.ResourceFile(
            http_url=azurite.blob_sas_url(blob_container.name, "gone.txt"), file_path="gone.txt"
        )
    ]
    satisfy = bm.ExitConditions(
        pre_processing_error=bm.ExitOptions(dependency_action=bm.DependencyAction.SATISFY)
    )

    def add(
        task_id: str,
        *,
        parent: str | None = None,
        files: list[bm.ResourceFile] | None = None,
        conditions: bm.ExitConditions | None = None,
    ) -> None:
        client.create_task(
            job,
            bm.BatchTaskCreateOptions(
                id=task_id,
                command_line="/bin/true",
                resource_files=files,
                exit_conditions=conditions,
                depends_on=bm.BatchTaskDependencies(task_ids=[parent]) if parent else None,
            ),
        )

    add("parent-satisfy", files=missing, conditions=satisfy)
    add("child-satisfy", parent="parent-satisfy")
    add("parent-block", files=missing)
    add("child-block", parent="parent-block")
    for parent in ("parent-satisfy", "parent-block"):
        info = wait_task_completed(client, job, parent).execution_info
        assert info is not None and info.failure_info is not None
        assert info.failure_info.code == "BlobNotFound"
    child = wait_task_completed(client, job, "child-satisfy").execution_info
    assert child is not None and child.result == "success"
    # Had child-block been released when parent-block completed, it would be queued before
    # this task and start no later than it: once this one is done, child-block must be held.
    add("sentinel")
    wait_task_completed(client, job, "sentinel")
    blocked = client.get_task(job, "child-block")
    assert blocked.state == "active"
    assert blocked.node_info is None
    counts = client.get_job_task_counts(job).task_counts
    assert (counts.active, counts.completed, counts.failed) == (1, 4, 2)
