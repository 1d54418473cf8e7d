"""Tasks on the emulator, through the azure-batch SDK.

Nothing here depends on how long things take. Tasks that must be caught in a state hold
at a *gate* (they create ``<gate>/running/<task id>``, wait until the test creates
``<gate>/open``, then remove their marker and exit). To show that a task is *not* run
(a blocked dependent, say), the test adds a fresh independent task after the event that
would have released it and waits for that one to complete: tasks are scheduled in the
order they become runnable, so a wrongly released task would have left ``active`` first.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.rest import HttpRequest

from batchexecutor.emulator import BatchEmulator
from tests.conftest import wait_for, wait_task_completed
from tests.emulator.support import (
    GATED,
    details,
    env,
    make_gate,
    open_gate,
    process_alive,
    python,
    running,
)

API_VERSION = "2025-06-01"
NO_POOL = "no-such-pool"  # a job on a pool that does not exist keeps its tasks active


# Writes its PID to $PID_FILE, then sleeps (to be killed).
SLEEPER = """
import os, pathlib, time
pathlib.Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))
time.sleep(120)
"""

# Counts its runs in $COUNTER; fails (exit 1) until it has run $SUCCEED_ON times.
FLAKY = """
import os, pathlib, sys
counter = pathlib.Path(os.environ["COUNTER"])
runs = (len(counter.read_text()) if counter.exists() else 0) + 1
counter.write_text("x" * runs)
sys.exit(0 if runs >= int(os.environ["SUCCEED_ON"]) else 1)
"""


# --------------------------------------------------------------------------- helpers


def exit_with(code: int) -> str:
    return f"/bin/sh -c 'exit {code}'"


def make_job(client: BatchClient, job_id: str, pool_id: str, **options: Any) -> None:
    client.create_job(
        bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id), **options)
    )


def add_task(
    client: BatchClient, job_id: str, task_id: str, command_line: str, **options: Any
) -> None:
    client.create_task(
        job_id, bm.BatchTaskCreateOptions(id=task_id, command_line=command_line, **options)
    )


def wait_task_state(client: BatchClient, job_id: str, task_id: str, state: str) -> bm.BatchTask:
    return wait_for(lambda: (t := client.get_task(job_id, task_id)).state == state and t)


def settle(client: BatchClient, job_id: str, marker: str = "settle") -> None:
    """Run one more independent task to completion (see the module docstring)."""
    add_task(client, job_id, marker, "/bin/true")
    wait_task_completed(client, job_id, marker)


def stdout_of(client: BatchClient, job_id: str, task_id: str) -> bytes:
    return b"".join(client.download_task_file(job_id, task_id, "stdout.txt"))


def ids_of(tasks: Any) -> set[str]:
    return {t.id for t in tasks}


def odata_time(moment: datetime) -> str:
    return "datetime'" + moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "'"


# ------------------------------------------------------------------- create and get


def test_create_task_stores_and_returns_properties(client: BatchClient) -> None:
    make_job(client, "job", NO_POOL)
    add_task(
        client,
        "job",
        "t1",
        "/bin/echo hello",
        display_name="First task",
        environment_settings=env(COLOUR="blue"),
        required_slots=2,
        constraints=bm.BatchTaskConstraints(
            max_wall_clock_time=timedelta(hours=1),
            retention_time=timedelta(days=1),
            max_task_retry_count=3,
        ),
    )

    task = client.get_task("job", "t1")
    assert task.id == "t1"
    assert task.display_name == "First task"
    assert task.command_line == "/bin/echo hello"
    assert [(e.name, e.value) for e in task.environment_settings] == [("COLOUR", "blue")]
    assert task.required_slots == 2
    assert task.constraints.max_wall_clock_time == timedelta(hours=1)
    assert task.constraints.retention_time == timedelta(days=1)
    assert task.constraints.max_task_retry_count == 3
    assert task.state == "active"
    assert task.url.endswith("/jobs/job/tasks/t1")
    assert task.etag and task.creation_time and task.last_modified
    assert task.execution_info.retry_count == 0
    assert task.execution_info.requeue_count == 0
    assert task.execution_info.start_time is None
    assert task.node_info is None
    # Task IDs are case-insensitive.
    assert client.get_task("job", "T1").id == "t1"


def test_task_states_active_running_completed(client: BatchClient, pool: str, gate: Path) -> None:
    make_job(client, "job", pool, max_parallel_tasks=1)
    add_task(client, "job", "first", python(GATED), environment_settings=env(GATE_DIR=str(gate)))
    wait_for(lambda: running(gate) == {"first"})
    add_task(client, "job", "second", "/bin/true")

    first = client.get_task("job", "first")
    assert first.state == "running"
    assert first.execution_info.start_time is not None
    assert first.execution_info.end_time is None
    assert first.execution_info.exit_code is None
    assert first.execution_info.result is None
    node_id = next(iter(client.list_nodes(pool))).id
    assert (first.node_info.pool_id, first.node_info.node_id) == (pool, node_id)
    assert first.node_info.task_root_directory
    # The job runs one task at a time: the second waits.
    second = client.get_task("job", "second")
    assert second.state == "active"
    assert second.execution_info.start_time is None

    open_gate(gate)
    first = wait_task_completed(client, "job", "first")
    assert first.previous_state == "running"
    info = first.execution_info
    assert (info.exit_code, info.result, info.failure_info) == (0, "success", None)
    assert (info.retry_count, info.requeue_count) == (0, 0)
    assert info.end_time >= info.start_time
    assert first.node_info.node_id == node_id
    second = wait_task_completed(client, "job", "second")
    assert second.execution_info.start_time >= info.end_time


def test_non_zero_exit_fails_the_task(client: BatchClient, pool: str) -> None:
    make_job(client, "job", pool)
    add_task(client, "job", "bad", exit_with(3))
    task = wait_task_completed(client, "job", "bad")
    info = task.execution_info
    assert info.exit_code == 3
    assert info.result == "failure"
    assert info.failure_info.code == "FailureExitCode"
    assert info.failure_info.category == "usererror"
    assert info.retry_count == 0


def test_missing_program_fails_the_task(client: BatchClient, pool: str) -> None:
    make_job(client, "job", pool)
    add_task(client, "job", "ghost", "/no/such/program --flag")
    task = wait_task_completed(client, "job", "ghost")
    assert task.execution_info.result == "failure"
    assert task.execution_info.failure_info is not None
    assert task.execution_info.failure_info.category == "usererror"


def test_command_line_does_not_run_under_a_shell(client: BatchClient, pool: str) -> None:
    make_job(client, "job", pool)
    add_task(client, "job", "echo", "/bin/echo $HOME 'two words' a|b")
    task = wait_task_completed(client, "job", "echo")
    assert task.execution_info.result == "success"
    assert stdout_of(client, "job", "echo") == b"$HOME two words a|b\n"


def test_duplicate_task_id_is_task_exists(client: BatchClient) -> None:
    make_job(client, "job", NO_POOL)
    add_task(client, "job", "Task-1", "/bin/true")
    for same in ("Task-1", "task-1", "TASK-1"):
        with pytest.raises(ResourceExistsError) as caught:
            add_task(client, "job", same, "/bin/false")
        assert caught.value.status_code == 409
        assert caught.value.error.code == "TaskExists"
    assert [t.command_line for t in client.list_tasks("job")] == ["/bin/true"]


def test_missing_task_and_missing_job(client: BatchClient) -> None:
    make_job(client, "job", NO_POOL)
    with pytest.raises(ResourceNotFoundError) as caught:
        client.get_task("job", "ghost")
    assert caught.value.error.code == "TaskNotFound"
    with pytest.raises(ResourceNotFoundError) as caught:
        client.get_task("no-job", "ghost")
    assert caught.value.error.code == "JobNotFound"
    with pytest.raises(ResourceNotFoundError) as caught:
        add_task(client, "no-job", "t", "/bin/true")
    assert caught.value.error.code == "JobNotFound"


@pytest.mark.parametrize(
    ("options", "code", "prop"),
    [
        ({"id": "has space"}, "InvalidPropertyValue", "id"),
        ({"id": "t" * 65}, "InvalidPropertyValue", "id"),
        ({"id": "dot.ted"}, "InvalidPropertyValue", "id"),
        ({"id": "ünï"}, "InvalidPropertyValue", "id"),
        ({"id": None}, "MissingRequiredProperty", "id"),
        ({"command_line": None}, "MissingRequiredProperty", "commandLine"),
        ({"command_line": 5}, "InvalidPropertyValue", "commandLine"),
        ({"required_slots": 0}, "InvalidPropertyValue", "requiredSlots"),
        ({"required_slots": "two"}, "InvalidPropertyValue", "requiredSlots"),
        (
            {"constraints": bm.BatchTaskConstraints(max_task_retry_count=-2)},
            "InvalidPropertyValue",
            "constraints.maxTaskRetryCount",
        ),
        (
            {"environment_settings": [{"value": "no name"}]},
            "MissingRequiredProperty",
            "environmentSettings[0].name",
        ),
    ],
)
def test_invalid_task_is_rejected(
    client: BatchClient, pool: str, options: dict[str, Any], code: str, prop: str
) -> None:
    make_job(client, "job", pool)
    fields: dict[str, Any] = {"id": "bad", "command_line": "/bin/true"}
    fields.update(options)
    with pytest.raises(HttpResponseError) as caught:
        client.create_task("job", bm.BatchTaskCreateOptions(**fields))
    assert caught.value.status_code == 400
    assert caught.value.error.code == code
    assert details(caught.value)["PropertyName"] == prop
    assert list(client.list_tasks("job")) == []
    # The service keeps serving: a good task runs.
    add_task(client, "job", "good", "/bin/true")
    assert wait_task_completed(client, "job", "good").execution_info.result == "success"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "InvalidRequestBody"),
        (b"[1, 2]", "InvalidRequestBody"),
        (b"", "InvalidRequestBody"),
        (b'{"id": "t", "commandLine": ["/bin/true"]}', "InvalidPropertyValue"),
        (b'{"id": 7, "commandLine": "/bin/true"}', "InvalidPropertyValue"),
    ],
)
def test_malformed_task_body_is_rejected(
    client: BatchClient, pool: str, body: bytes, code: str
) -> None:
    # Bodies the SDK's models would not produce, sent through the SDK's own pipeline.
    make_job(client, "job", pool)
    with pytest.raises(HttpResponseError) as caught:
        client.send_request(
            HttpRequest(
                "POST",
                "/jobs/job/tasks",
                params={"api-version": API_VERSION},
                content=body,
                headers={"Content-Type": "application/json; odata=minimalmetadata"},
            )
        )
    assert caught.value.status_code == 400
    assert caught.value.error.code == code
    assert list(client.list_tasks("job")) == []
    add_task(client, "job", "good", "/bin/true")
    assert wait_task_completed(client, "job", "good").execution_info.result == "success"


def test_tasks_cannot_be_added_to_a_terminated_job(client: BatchClient, pool: str) -> None:
    from azure.batch.models._models import BatchJobTerminateOptions

    make_job(client, "job", pool)
    client.begin_terminate_job(
        "job", BatchJobTerminateOptions(termination_reason="done"), polling_interval=0
    ).result()
    with pytest.raises(ResourceExistsError) as caught:
        add_task(client, "job", "late", "/bin/true")
    assert caught.value.error.code == "JobCompleted"
    with pytest.raises(ResourceExistsError) as caught:
        client.create_task_collection(
            "job",
            bm.BatchTaskGroup(
                task_values=[bm.BatchTaskCreateOptions(id="late", command_line="/bin/true")]
            ),
        )
    assert caught.value.error.code == "JobCompleted"
    assert list(client.list_tasks("job")) == []


# ------------------------------------------------------------------------ collections


def test_add_collection_reports_each_task(client: BatchClient) -> None:
    make_job(client, "job", NO_POOL)
    add_task(client, "job", "a", "/bin/true")

    result = client.create_task_collection(
        "job",
        bm.BatchTaskGroup(
            task_values=[
                bm.BatchTaskCreateOptions(id="b", command_line="/bin/true"),
                bm.BatchTaskCreateOptions(id="A", command_line="/bin/true"),  # exists already
                bm.BatchTaskCreateOptions(id="c", command_line="/bin/true"),
                bm.BatchTaskCreateOptions(id="C", command_line="/bin/true"),  # same request
                bm.BatchTaskCreateOptions(id="bad id", command_line="/bin/true"),
                bm.BatchTaskCreateOptions(id="d"),  # no command line
            ]
        ),
    )

    by_id = {r.task_id: r for r in result.result_values}
    assert set(by_id) == {"b", "A", "c", "C", "bad id", "d"}
    for ok in ("b", "c"):
        assert by_id[ok].status == "success"
        assert by_id[ok].error is None
        assert by_id[ok].etag
        assert by_id[ok].location.endswith(f"/jobs/job/tasks/{ok}")
    expected = {
        "A": "TaskExists",
        "C": "TaskExists",
        "bad id": "InvalidPropertyValue",
        "d": "MissingRequiredProperty",
    }
    for task_id, code in expected.items():
        assert by_id[task_id].status == "clienterror"
        assert by_id[task_id].error.code == code
    assert sorted(t.id for t in client.list_tasks("job")) == ["a", "b", "c"]


def test_add_collection_of_100_tasks_is_accepted_and_101_rejected(client: BatchClient) -> None:
    make_job(client, "job", NO_POOL)
    tasks = [bm.BatchTaskCreateOptions(id=f"t{i:03}", command_line="/bin/true") for i in range(101)]
    with pytest.raises(HttpResponseError) as caught:
        client.create_task_collection("job", bm.BatchTaskGroup(task_values=tasks))
    assert caught.value.status_code == 400
    assert list(client.list_tasks("job")) == []

    result = client.create_task_collection("job", bm.BatchTaskGroup(task_values=tasks[:100]))
    assert {r.status for r in result.result_values} == {"success"}
    assert len(list(client.list_tasks("job"))) == 100


def test_add_collection_body_of_1mb_is_too_large(
    emulator: BatchEmulator, client: BatchClient
) -> None:
    make_job(client, "job", NO_POOL)
    padding = "x" * 12_000  # 100 tasks: about 1.2 MB of JSON
    tasks = [
        bm.BatchTaskCreateOptions(
            id=f"t{i}", command_line="/bin/true", environment_settings=env(PADDING=padding)
        )
        for i in range(100)
    ]
    with pytest.raises(HttpResponseError) as caught:
        client.create_task_collection("job", bm.BatchTaskGroup(task_values=tasks))
    assert caught.value.status_code == 413
    assert caught.value.error.code == "RequestBodyTooLarge"
    assert list(client.list_tasks("job")) == []

    # The SDK's create_tasks reacts to RequestBodyTooLarge by splitting the collection.
    before = emulator.request_counts.get("Tasks_CreateTaskCollection", 0)
    result = client.create_tasks("job", tasks)
    assert len(result.result_values) == 100
    assert {r.status for r in result.result_values} == {"success"}
    assert emulator.request_counts["Tasks_CreateTaskCollection"] - before >= 3
    assert len(list(client.list_tasks("job"))) == 100


# ------------------------------------------------------------------------------ list


def test_list_tasks_filter(client: BatchClient, pool: str) -> None:
    make_job(client, "job", pool, uses_task_dependencies=True)
    client.create_task_collection(
        "job",
        bm.BatchTaskGroup(
            task_values=[
                bm.BatchTaskCreateOptions(id="ok", command_line=exit_with(0)),
                bm.BatchTaskCreateOptions(id="fail2", command_line=exit_with(2)),
                bm.BatchTaskCreateOptions(id="fail3", command_line=exit_with(3)),
                # Blocked for good by its failed parent: stays active.
                bm.BatchTaskCreateOptions(
                    id="waiting",
                    command_line="/bin/true",
                    depends_on=bm.BatchTaskDependencies(task_ids=["fail2"]),
                ),
            ]
        ),
    )
    for task_id in ("ok", "fail2", "fail3"):
        wait_task_completed(client, "job", task_id)

    def listed(expression: str) -> set[str]:
        return ids_of(client.list_tasks("job", filter=expression))

    assert listed("state eq 'completed'") == {"ok", "fail2", "fail3"}
    assert listed("state eq 'active'") == {"waiting"}
    assert listed("state ne 'completed'") == {"waiting"}
    assert listed("id eq 'fail3'") == {"fail3"}
    assert listed("id eq 'ok' or id eq 'waiting'") == {"ok", "waiting"}
    assert listed("executionInfo/result eq 'failure'") == {"fail2", "fail3"}
    assert listed("executionInfo/result eq 'success'") == {"ok"}
    assert listed("executionInfo/exitCode eq 3") == {"fail3"}
    assert listed("executionInfo/exitCode gt 0") == {"fail2", "fail3"}
    assert listed("executionInfo/exitCode ge 0 and executionInfo/exitCode lt 3") == {"ok", "fail2"}
    assert listed(
        "state eq 'completed' and executionInfo/result eq 'failure' and id ne 'fail2'"
    ) == {"fail3"}

    tasks = list(client.list_tasks("job"))
    pivot = next(t for t in tasks if t.id == "fail2").state_transition_time
    later = {t.id for t in tasks if t.state_transition_time > pivot}
    assert listed(f"stateTransitionTime gt {odata_time(pivot)}") == later
    assert listed(f"stateTransitionTime le {odata_time(pivot)}") == ids_of(tasks) - later
    # "waiting" has been active since it was created, before any task completed.
    assert {"waiting", "fail2"} <= listed(f"stateTransitionTime le {odata_time(pivot)}")


def test_list_tasks_select(client: BatchClient, pool: str) -> None:
    make_job(client, "job", pool)
    add_task(client, "job", "t", "/bin/true", display_name="shown")
    wait_task_completed(client, "job", "t")

    [task] = client.list_tasks("job", select=["id", "state"])
    assert (task.id, task.state) == ("t", "completed")
    assert task.command_line is None
    assert task.display_name is None
    assert task.execution_info is None
    [task] = client.list_tasks("job", select=["id", "executionInfo"])
    assert task.execution_info.exit_code == 0
    assert task.command_line is None
    task = client.get_task("job", "t", select=["displayName"])
    assert task.display_name == "shown"
    assert task.state is None


def test_list_tasks_bad_filter_is_rejected(client: BatchClient) -> None:
    make_job(client, "job", NO_POOL)
    for bad in (
        "state eq",
        "commandLine eq 'x'",
        "state gt 'active'",
        "executionInfo/exitCode eq 'zero'",
    ):
        with pytest.raises(HttpResponseError) as caught:
            list(client.list_tasks("job", filter=bad))
        assert caught.value.status_code == 400
        assert caught.value.error.code == "InvalidQueryParameterValue"


def test_list_tasks_pages_with_max_results(emulator: BatchEmulator, client: BatchClient) -> None:
    make_job(client, "job", NO_POOL)
    ids = [f"task-{i:02}" for i in range(23)]
    client.create_task_collection(
        "job",
        bm.BatchTaskGroup(
            task_values=[bm.BatchTaskCreateOptions(id=i, command_line="/bin/true") for i in ids]
        ),
    )
    before = emulator.request_counts.get("Tasks_ListTasks", 0)

    pages = [[t.id for t in page] for page in client.list_tasks("job", max_results=5).by_page()]
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    seen = [i for p in pages for i in p]
    assert sorted(seen) == ids  # every task exactly once
    assert emulator.request_counts["Tasks_ListTasks"] - before == 5

    # Paging and filtering together: the filter applies across pages.
    odd = [
        t.id
        for t in client.list_tasks(
            "job", max_results=2, filter="id eq 'task-01' or id eq 'task-13' or id eq 'task-21'"
        )
    ]
    assert sorted(odd) == ["task-01", "task-13", "task-21"]


# ------------------------------------------------------- terminate, delete, reactivate


def test_terminate_running_task(client: BatchClient, pool: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    make_job(client, "job", pool)
    add_task(
        client, "job", "sleeper", python(SLEEPER), environment_settings=env(PID_FILE=str(pid_file))
    )
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text()))

    client.terminate_task("job", "sleeper")

    task = wait_task_completed(client, "job", "sleeper")
    assert task.execution_info.result == "failure"
    assert task.execution_info.failure_info.code == "TaskEnded"
    assert not process_alive(pid)
    # The job goes on.
    assert client.get_job("job").state == "active"
    settle(client, "job")


def test_terminate_active_task(client: BatchClient) -> None:
    make_job(client, "job", NO_POOL)
    add_task(client, "job", "queued", "/bin/true")
    client.terminate_task("job", "queued")
    task = client.get_task("job", "queued")
    assert task.state == "completed"
    assert task.previous_state == "active"
    assert task.execution_info.start_time is None
    assert task.node_info is None
    counts = client.get_job_task_counts("job").task_counts
    assert (counts.active, counts.completed) == (0, 1)


def test_terminate_preparing_task(client: BatchClient, pool: str, gate: Path) -> None:
    make_job(
        client,
        "job",
        pool,
        job_preparation_task=bm.BatchJobPreparationTask(
            id="prep", command_line=python(GATED), environment_settings=env(GATE_DIR=str(gate))
        ),
    )
    add_task(client, "job", "t", "/bin/true")
    wait_task_state(client, "job", "t", "preparing")

    client.terminate_task("job", "t")

    task = wait_task_completed(client, "job", "t")
    assert task.execution_info.result == "failure"
    assert task.execution_info.failure_info.code == "TaskEnded"
    assert task.execution_info.exit_code is None
    open_gate(gate)


def test_delete_task(client: BatchClient, pool: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    make_job(client, "job", pool)
    add_task(client, "job", "done", "/bin/true")
    add_task(
        client, "job", "sleeper", python(SLEEPER), environment_settings=env(PID_FILE=str(pid_file))
    )
    wait_task_completed(client, "job", "done")
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text()))

    client.delete_task("job", "done")
    client.delete_task("job", "sleeper")

    for task_id in ("done", "sleeper"):
        with pytest.raises(ResourceNotFoundError) as caught:
            client.get_task("job", task_id)
        assert caught.value.error.code == "TaskNotFound"
    assert list(client.list_tasks("job")) == []
    counts = client.get_job_task_counts("job").task_counts
    assert (counts.active, counts.running, counts.completed) == (0, 0, 0)
    # The running task's process is killed.
    wait_for(lambda: not process_alive(pid))
    with pytest.raises(ResourceNotFoundError):
        client.delete_task("job", "done")


def test_reactivate_failed_task_runs_it_again(
    client: BatchClient, pool: str, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    make_job(client, "job", pool)
    # Fails twice (first run and its one retry), succeeds on the third run.
    add_task(
        client,
        "job",
        "flaky",
        python(FLAKY),
        environment_settings=env(COUNTER=str(counter), SUCCEED_ON="3"),
        constraints=bm.BatchTaskConstraints(max_task_retry_count=1),
    )
    task = wait_task_completed(client, "job", "flaky")
    assert task.execution_info.result == "failure"
    assert task.execution_info.retry_count == 1

    client.reactivate_task("job", "flaky")
    task = client.get_task("job", "flaky")
    assert task.state in ("active", "preparing", "running", "completed")
    task = wait_task_completed(client, "job", "flaky")
    info = task.execution_info
    assert (info.result, info.exit_code, info.failure_info) == ("success", 0, None)
    assert info.retry_count == 0  # reactivation resets the retry count
    assert counter.read_text() == "xxx"

    # A task that succeeded cannot be reactivated.
    with pytest.raises(ResourceExistsError) as caught:
        client.reactivate_task("job", "flaky")
    assert caught.value.status_code == 409


def test_reactivate_active_task_is_conflict(client: BatchClient) -> None:
    make_job(client, "job", NO_POOL)
    add_task(client, "job", "queued", "/bin/true")
    with pytest.raises(ResourceExistsError) as caught:
        client.reactivate_task("job", "queued")
    assert caught.value.status_code == 409
    assert client.get_task("job", "queued").state == "active"


# ----------------------------------------------------------------------- task counts


def test_task_counts_and_slot_counts(client: BatchClient, pool: str, gate: Path) -> None:
    make_job(client, "job", pool)
    add_task(client, "job", "ok", "/bin/true")
    add_task(client, "job", "bad", exit_with(1), required_slots=2)
    wait_task_completed(client, "job", "ok")
    wait_task_completed(client, "job", "bad")
    add_task(
        client,
        "job",
        "big",
        python(GATED),
        required_slots=3,
        environment_settings=env(GATE_DIR=str(gate)),
    )
    wait_for(lambda: running(gate) == {"big"})
    # Needs 2 slots while "big" holds 3 of the node's 4: it waits.
    add_task(client, "job", "wide", "/bin/true", required_slots=2)

    result = client.get_job_task_counts("job")
    counts, slots = result.task_counts, result.task_slot_counts
    assert (counts.active, counts.running, counts.completed) == (1, 1, 2)
    assert (counts.succeeded, counts.failed) == (1, 1)
    assert (slots.active, slots.running, slots.completed) == (2, 3, 3)
    assert (slots.succeeded, slots.failed) == (1, 2)

    open_gate(gate)
    wait_task_completed(client, "job", "wide")
    wait_task_completed(client, "job", "big")
    result = client.get_job_task_counts("job")
    counts, slots = result.task_counts, result.task_slot_counts
    assert (counts.active, counts.running, counts.completed) == (0, 0, 4)
    assert (counts.succeeded, counts.failed) == (3, 1)
    assert (slots.completed, slots.succeeded, slots.failed) == (8, 6, 2)


def test_preparing_task_counts_as_running(client: BatchClient, pool: str, gate: Path) -> None:
    # A task assigned to a node waits there in "preparing" while the job preparation task
    # runs; task counts report it as running.
    make_job(
        client,
        "job",
        pool,
        job_preparation_task=bm.BatchJobPreparationTask(
            id="prep", command_line=python(GATED), environment_settings=env(GATE_DIR=str(gate))
        ),
    )
    add_task(client, "job", "t", "/bin/true", required_slots=2)
    wait_for(lambda: running(gate) == {"prep"})

    task = wait_task_state(client, "job", "t", "preparing")
    assert task.node_info is not None
    result = client.get_job_task_counts("job")
    assert (result.task_counts.active, result.task_counts.running) == (0, 1)
    assert result.task_slot_counts.running == 2

    open_gate(gate)
    task = wait_task_completed(client, "job", "t")
    assert task.execution_info.result == "success"
    prep = next(iter(client.list_job_preparation_and_release_task_status("job")))
    assert task.execution_info.start_time >= prep.job_preparation_task_execution_info.end_time


# ---------------------------------------------------------------------- dependencies


def test_task_waits_for_its_parents(client: BatchClient, pool: str, gate: Path) -> None:
    make_job(client, "job", pool, uses_task_dependencies=True)
    add_task(client, "job", "slow", python(GATED), environment_settings=env(GATE_DIR=str(gate)))
    add_task(client, "job", "quick", "/bin/true")
    add_task(
        client,
        "job",
        "child",
        "/bin/true",
        depends_on=bm.BatchTaskDependencies(task_ids=["slow", "quick"]),
    )
    assert client.get_task("job", "child").depends_on.task_ids == ["slow", "quick"]
    wait_task_completed(client, "job", "quick")
    wait_for(lambda: running(gate) == {"slow"})
    settle(client, "job")
    assert client.get_task("job", "child").state == "active"

    open_gate(gate)
    child = wait_task_completed(client, "job", "child")
    slow = client.get_task("job", "slow")
    assert child.execution_info.result == "success"
    assert child.execution_info.start_time >= slow.execution_info.end_time


def test_task_id_ranges_are_inclusive_and_ignore_leading_zeros(
    client: BatchClient, pool: str, tmp_path: Path
) -> None:
    in_range, out_of_range = make_gate(tmp_path, "in"), make_gate(tmp_path, "out")
    make_job(client, "job", pool, uses_task_dependencies=True)
    client.create_task_collection(
        "job",
        bm.BatchTaskGroup(
            task_values=[
                bm.BatchTaskCreateOptions(id="5", command_line="/bin/true"),
                bm.BatchTaskCreateOptions(id="10", command_line="/bin/true"),
                bm.BatchTaskCreateOptions(
                    id="007",
                    command_line=python(GATED),
                    environment_settings=env(GATE_DIR=str(in_range)),
                ),
                bm.BatchTaskCreateOptions(
                    id="11",
                    command_line=python(GATED),
                    environment_settings=env(GATE_DIR=str(out_of_range)),
                ),
            ]
        ),
    )
    add_task(
        client,
        "job",
        "child",
        "/bin/true",
        depends_on=bm.BatchTaskDependencies(task_id_ranges=[bm.BatchTaskIdRange(start=5, end=10)]),
    )
    wait_task_completed(client, "job", "5")
    wait_task_completed(client, "job", "10")
    wait_for(lambda: running(in_range) == {"007"} and running(out_of_range) == {"11"})
    settle(client, "job")
    # "007" is task 7: in the range, still running, so the child waits.
    assert client.get_task("job", "child").state == "active"

    open_gate(in_range)
    child = wait_task_completed(client, "job", "child")
    assert child.execution_info.result == "success"
    # "11" is outside the range: the child did not wait for it.
    assert client.get_task("job", "11").state == "running"
    open_gate(out_of_range)
    wait_task_completed(client, "job", "11")


def test_dependencies_need_uses_task_dependencies(client: BatchClient) -> None:
    make_job(client, "job", NO_POOL)
    add_task(client, "job", "parent", "/bin/true")
    depends = bm.BatchTaskDependencies(task_ids=["parent"])
    with pytest.raises(ResourceExistsError) as caught:
        add_task(client, "job", "child", "/bin/true", depends_on=depends)
    assert caught.value.status_code == 409
    assert caught.value.error.code == "TaskDependenciesNotSpecifiedOnJob"
    result = client.create_task_collection(
        "job",
        bm.BatchTaskGroup(
            task_values=[
                bm.BatchTaskCreateOptions(id="child", command_line="/bin/true", depends_on=depends)
            ]
        ),
    )
    assert [(r.status, r.error.code) for r in result.result_values] == [
        ("clienterror", "TaskDependenciesNotSpecifiedOnJob")
    ]
    assert [t.id for t in client.list_tasks("job")] == ["parent"]


def test_dependency_on_missing_task_is_rejected(client: BatchClient) -> None:
    make_job(client, "job", NO_POOL, uses_task_dependencies=True)
    with pytest.raises(HttpResponseError) as caught:
        add_task(
            client,
            "job",
            "child",
            "/bin/true",
            depends_on=bm.BatchTaskDependencies(task_ids=["ghost"]),
        )
    assert caught.value.status_code == 400
    assert details(caught.value)["PropertyName"].startswith("dependsOn.taskIds")

    # In a collection, a parent in the same request is fine; a missing one is not.
    result = client.create_task_collection(
        "job",
        bm.BatchTaskGroup(
            task_values=[
                bm.BatchTaskCreateOptions(
                    id="kid",
                    command_line="/bin/true",
                    depends_on=bm.BatchTaskDependencies(task_ids=["mum"]),
                ),
                bm.BatchTaskCreateOptions(id="mum", command_line="/bin/true"),
                bm.BatchTaskCreateOptions(
                    id="orphan",
                    command_line="/bin/true",
                    depends_on=bm.BatchTaskDependencies(task_ids=["nobody"]),
                ),
                # A parent in the request that is itself rejected takes its dependents with it.
                bm.BatchTaskCreateOptions(
                    id="heir",
                    command_line="/bin/true",
                    depends_on=bm.BatchTaskDependencies(task_ids=["broken"]),
                ),
                bm.BatchTaskCreateOptions(id="broken"),
            ]
        ),
    )
    status = {r.task_id: r.status for r in result.result_values}
    assert status == {
        "kid": "success",
        "mum": "success",
        "orphan": "clienterror",
        "heir": "clienterror",
        "broken": "clienterror",
    }
    assert sorted(t.id for t in client.list_tasks("job")) == ["kid", "mum"]


@pytest.mark.parametrize(
    "dependencies",
    [
        {"a": ["b"], "b": ["a"]},
        {"a": ["b"], "b": ["c"], "c": ["a"]},
        {"a": ["a"]},
    ],
    ids=["two", "three", "self"],
)
def test_dependency_cycle_is_rejected(
    client: BatchClient, dependencies: dict[str, list[str]]
) -> None:
    make_job(client, "job", NO_POOL, uses_task_dependencies=True)
    tasks = [
        bm.BatchTaskCreateOptions(
            id=task_id,
            command_line="/bin/true",
            depends_on=bm.BatchTaskDependencies(task_ids=parents),
        )
        for task_id, parents in dependencies.items()
    ]
    try:
        result = client.create_task_collection("job", bm.BatchTaskGroup(task_values=tasks))
    except HttpResponseError as error:
        assert error.status_code == 400
    else:
        assert {r.status for r in result.result_values} == {"clienterror"}
    assert list(client.list_tasks("job")) == []


def test_failed_parent_blocks_its_dependent(client: BatchClient, pool: str) -> None:
    make_job(client, "job", pool, uses_task_dependencies=True)
    add_task(client, "job", "parent", exit_with(1))
    add_task(
        client,
        "job",
        "child",
        "/bin/true",
        depends_on=bm.BatchTaskDependencies(task_ids=["parent"]),
    )
    wait_task_completed(client, "job", "parent")
    settle(client, "job")

    child = client.get_task("job", "child")
    assert child.state == "active"
    assert child.execution_info.start_time is None
    assert client.get_job("job").state == "active"
    counts = client.get_job_task_counts("job").task_counts
    assert (counts.active, counts.completed, counts.failed) == (1, 2, 1)


@pytest.mark.parametrize(
    ("exit_code", "conditions", "child_runs"),
    [
        (
            3,
            bm.ExitConditions(
                exit_codes=[
                    bm.ExitCodeMapping(
                        code=3, exit_options=bm.ExitOptions(dependency_action="satisfy")
                    )
                ]
            ),
            True,
        ),
        (
            4,
            bm.ExitConditions(
                exit_code_ranges=[
                    bm.ExitCodeRangeMapping(
                        start=2, end=5, exit_options=bm.ExitOptions(dependency_action="satisfy")
                    )
                ]
            ),
            True,
        ),
        (7, bm.ExitConditions(default=bm.ExitOptions(dependency_action="satisfy")), True),
        (
            0,
            bm.ExitConditions(
                exit_codes=[
                    bm.ExitCodeMapping(
                        code=0, exit_options=bm.ExitOptions(dependency_action="block")
                    )
                ]
            ),
            False,
        ),
        # A listed exit code wins over the default.
        (
            3,
            bm.ExitConditions(
                exit_codes=[
                    bm.ExitCodeMapping(
                        code=3, exit_options=bm.ExitOptions(dependency_action="block")
                    )
                ],
                default=bm.ExitOptions(dependency_action="satisfy"),
            ),
            False,
        ),
        # Not listed, no default: block, as for any failure.
        (
            6,
            bm.ExitConditions(
                exit_codes=[
                    bm.ExitCodeMapping(
                        code=3, exit_options=bm.ExitOptions(dependency_action="satisfy")
                    )
                ]
            ),
            False,
        ),
        # The default applies to non-zero exit codes only.
        (0, bm.ExitConditions(default=bm.ExitOptions(dependency_action="block")), True),
        (0, None, True),
        (2, None, False),
    ],
    ids=[
        "code-satisfy",
        "range-satisfy",
        "default-satisfy",
        "code0-block",
        "code-over-default",
        "unlisted-blocks",
        "default-not-for-0",
        "success",
        "failure",
    ],
)
def test_exit_conditions_decide_dependency_action(
    client: BatchClient,
    pool: str,
    exit_code: int,
    conditions: bm.ExitConditions | None,
    child_runs: bool,
) -> None:
    make_job(client, "job", pool, uses_task_dependencies=True)
    add_task(client, "job", "parent", exit_with(exit_code), exit_conditions=conditions)
    add_task(
        client,
        "job",
        "child",
        "/bin/true",
        depends_on=bm.BatchTaskDependencies(task_ids=["parent"]),
    )
    parent = wait_task_completed(client, "job", "parent")
    assert parent.execution_info.exit_code == exit_code
    if child_runs:
        assert wait_task_completed(client, "job", "child").execution_info.result == "success"
    else:
        settle(client, "job")
        assert client.get_task("job", "child").state == "active"


@pytest.mark.parametrize(
    ("conditions", "job_state", "reason"),
    [
        (
            bm.ExitConditions(
                exit_codes=[
                    bm.ExitCodeMapping(code=2, exit_options=bm.ExitOptions(job_action="terminate"))
                ]
            ),
            "completed",
            "TaskFailed",
        ),
        # The default job action for a non-zero exit code is terminate.
        (None, "completed", "TaskFailed"),
        (
            bm.ExitConditions(default=bm.ExitOptions(job_action="terminate")),
            "completed",
            "TaskFailed",
        ),
        (
            bm.ExitConditions(
                exit_codes=[
                    bm.ExitCodeMapping(code=2, exit_options=bm.ExitOptions(job_action="none"))
                ]
            ),
            "active",
            None,
        ),
        (
            bm.ExitConditions(
                exit_code_ranges=[
                    bm.ExitCodeRangeMapping(
                        start=1, end=9, exit_options=bm.ExitOptions(job_action="disable")
                    )
                ]
            ),
            "disabled",
            None,
        ),
    ],
    ids=["code-terminate", "default-terminate", "explicit-default", "none", "disable"],
)
def test_task_failure_performs_exit_options_job_action(
    client: BatchClient,
    pool: str,
    conditions: bm.ExitConditions | None,
    job_state: str,
    reason: str | None,
) -> None:
    make_job(client, "job", pool, task_failure_mode="performexitoptionsjobaction")
    add_task(client, "job", "bad", exit_with(2), exit_conditions=conditions)
    wait_task_completed(client, "job", "bad")
    if job_state == "active":
        settle(client, "job")
    job = wait_for(lambda: (j := client.get_job("job")).state == job_state and j)
    assert job.execution_info.termination_reason == reason


def test_task_failure_without_perform_exit_options_leaves_job_active(
    client: BatchClient, pool: str
) -> None:
    make_job(client, "job", pool)
    add_task(client, "job", "bad", exit_with(2))
    wait_task_completed(client, "job", "bad")
    settle(client, "job")
    assert client.get_job("job").state == "active"


def test_job_action_needs_perform_exit_options(client: BatchClient) -> None:
    make_job(client, "job", NO_POOL)
    with pytest.raises(HttpResponseError) as caught:
        add_task(
            client,
            "job",
            "t",
            "/bin/true",
            exit_conditions=bm.ExitConditions(default=bm.ExitOptions(job_action="terminate")),
        )
    assert caught.value.status_code == 400
    assert caught.value.error.code == "InvalidPropertyValue"
    assert list(client.list_tasks("job")) == []


# ----------------------------------------------------------------------- constraints


def test_max_task_retry_count_retries_until_success(
    client: BatchClient, pool: str, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    make_job(client, "job", pool)
    add_task(
        client,
        "job",
        "flaky",
        python(FLAKY),
        environment_settings=env(COUNTER=str(counter), SUCCEED_ON="3"),
        constraints=bm.BatchTaskConstraints(max_task_retry_count=5),
    )
    task = wait_task_completed(client, "job", "flaky")
    info = task.execution_info
    assert (info.result, info.exit_code, info.failure_info) == ("success", 0, None)
    assert info.retry_count == 2
    assert info.last_retry_time is not None
    assert counter.read_text() == "xxx"


def test_task_fails_once_retries_are_exhausted(
    client: BatchClient, pool: str, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    make_job(client, "job", pool)
    add_task(
        client,
        "job",
        "doomed",
        python(FLAKY),
        environment_settings=env(COUNTER=str(counter), SUCCEED_ON="99"),
        constraints=bm.BatchTaskConstraints(max_task_retry_count=2),
    )
    task = wait_task_completed(client, "job", "doomed")
    info = task.execution_info
    assert (info.result, info.exit_code) == ("failure", 1)
    assert info.failure_info.code == "FailureExitCode"
    assert info.retry_count == 2
    assert counter.read_text() == "xxx"  # one try and two retries


def test_max_wall_clock_time_ends_the_task(client: BatchClient, pool: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    make_job(client, "job", pool)
    add_task(
        client,
        "job",
        "slow",
        python(SLEEPER),
        environment_settings=env(PID_FILE=str(pid_file)),
        constraints=bm.BatchTaskConstraints(
            max_wall_clock_time=timedelta(seconds=1), max_task_retry_count=3
        ),
    )
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text()))
    task = wait_task_completed(client, "job", "slow")
    info = task.execution_info
    assert info.result == "failure"
    assert info.failure_info.code == "TaskEnded"
    assert not process_alive(pid)


# ----------------------------------------------------------------------- environment


def test_task_environment_and_working_directory(
    emulator: BatchEmulator, client: BatchClient, pool: str
) -> None:
    dump = (
        "import json, os, sys; print(json.dumps({'env': dict(os.environ), "
        "'cwd': os.getcwd(), 'python': sys.executable}))"
    )
    make_job(
        client,
        "job",
        pool,
        job_preparation_task=bm.BatchJobPreparationTask(command_line="/bin/true"),
    )
    add_task(client, "job", "env", python(dump), environment_settings=env(MY_SETTING="42"))
    task = wait_task_completed(client, "job", "env")
    assert task.execution_info.result == "success", task.execution_info.failure_info
    seen = json.loads(stdout_of(client, "job", "env"))
    variables: dict[str, str] = seen["env"]

    assert variables["MY_SETTING"] == "42"
    assert variables["AZ_BATCH_ACCOUNT_NAME"] == emulator.account_name
    assert variables["AZ_BATCH_ACCOUNT_URL"].rstrip("/") == emulator.endpoint
    assert variables["AZ_BATCH_POOL_ID"] == pool
    assert variables["AZ_BATCH_NODE_ID"] == task.node_info.node_id
    assert variables["AZ_BATCH_JOB_ID"] == "job"
    assert variables["AZ_BATCH_TASK_ID"] == "env"
    root = Path(variables["AZ_BATCH_NODE_ROOT_DIR"])
    assert root.is_absolute()
    assert Path(variables["AZ_BATCH_NODE_SHARED_DIR"]) == root / "shared"
    assert Path(variables["AZ_BATCH_NODE_STARTUP_DIR"]) == root / "startup"
    working_dir = Path(variables["AZ_BATCH_TASK_WORKING_DIR"])
    assert Path(seen["cwd"]).resolve() == working_dir.resolve()
    assert working_dir.resolve().is_relative_to(root.resolve())
    assert working_dir.parent == root / task.node_info.task_root_directory
    prep_dir = Path(variables["AZ_BATCH_JOB_PREP_WORKING_DIR"])
    assert prep_dir.resolve().is_relative_to(root.resolve())
    assert prep_dir != working_dir
    # python3 on a task's PATH is the interpreter the emulator runs on.
    assert seen["python"] == sys.executable
