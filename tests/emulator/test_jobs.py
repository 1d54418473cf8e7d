"""Jobs on the emulator, through the azure-batch SDK.

Concurrency and ordering are observed without wall-clock thresholds: tasks hold at a
*gate* (they create ``<gate>/running/<task id>``, wait until the test creates
``<gate>/open``, then remove their marker and exit), and tasks that must run in a
particular order append their ID to a log file the test reads afterwards.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.batch.models._models import BatchJobTerminateOptions  # not re-exported by SDK 15.1
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.rest import HttpRequest

from tests.conftest import wait_for, wait_task_completed
from tests.emulator.support import GATED, VM_SIZE, details, env, process_alive, python, running

# Appends "<job id>/<task id>" to $ORDER_LOG.
RECORD_ORDER = """
import os
with open(os.environ["ORDER_LOG"], "a") as log:
    log.write(os.environ["AZ_BATCH_JOB_ID"] + "/" + os.environ["AZ_BATCH_TASK_ID"] + "\\n")
"""

# Writes its PID to $PID_FILE, then sleeps (to be killed).
SLEEPER = """
import os, pathlib, time
pathlib.Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))
time.sleep(120)
"""

API_VERSION = "2025-06-01"
STOP = BatchJobTerminateOptions(termination_reason="test over")
LONG_SLEEP = "python3 -c 'import time; time.sleep(120)'"


# --------------------------------------------------------------------------- helpers


def make_pool(client: BatchClient, pool_id: str, *, slots: int) -> None:
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id, vm_size=VM_SIZE, target_dedicated_nodes=1, task_slots_per_node=slots
        )
    )
    wait_for(lambda: client.get_pool(pool_id).allocation_state == "steady")


def make_job(client: BatchClient, job_id: str, pool_id: str = "pool", **options: object) -> None:
    client.create_job(
        bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id), **options)
    )


def add_task(
    client: BatchClient, job_id: str, task_id: str, command_line: str, **options: object
) -> None:
    client.create_task(
        job_id, bm.BatchTaskCreateOptions(id=task_id, command_line=command_line, **options)
    )


def wait_job_state(client: BatchClient, job_id: str, state: str) -> bm.BatchJob:
    return wait_for(lambda: (j := client.get_job(job_id)).state == state and j)


def wait_task_state(client: BatchClient, job_id: str, task_id: str, state: str) -> bm.BatchTask:
    return wait_for(lambda: (t := client.get_task(job_id, task_id)).state == state and t)


# ------------------------------------------------------------------- create and get


def test_create_job_stores_and_returns_properties(client: BatchClient, pool: str) -> None:
    prep = bm.BatchJobPreparationTask(command_line="/bin/sh -c 'echo prep'")
    make_job(
        client,
        "full",
        pool,
        display_name="Full job",
        priority=100,
        max_parallel_tasks=3,
        uses_task_dependencies=True,
        all_tasks_complete_mode="noaction",
        task_failure_mode="performexitoptionsjobaction",
        constraints=bm.BatchJobConstraints(
            max_wall_clock_time=timedelta(hours=2), max_task_retry_count=2
        ),
        common_environment_settings=env(STAGE="test"),
        job_preparation_task=prep,
        metadata=[bm.BatchMetadataItem(name="owner", value="tests")],
    )

    job = client.get_job("full")
    assert job.id == "full"
    assert job.display_name == "Full job"
    assert job.state == "active"
    assert job.pool_info.pool_id == pool
    assert job.execution_info.pool_id == pool
    assert job.execution_info.start_time is not None
    assert job.execution_info.end_time is None
    assert job.priority == 100
    assert job.max_parallel_tasks == 3
    assert job.uses_task_dependencies is True
    assert job.all_tasks_complete_mode == "noaction"
    assert job.task_failure_mode == "performexitoptionsjobaction"
    assert job.constraints.max_wall_clock_time == timedelta(hours=2)
    assert job.constraints.max_task_retry_count == 2
    assert [(e.name, e.value) for e in job.common_environment_settings] == [("STAGE", "test")]
    assert [(m.name, m.value) for m in job.metadata] == [("owner", "tests")]
    assert job.job_preparation_task.command_line == "/bin/sh -c 'echo prep'"
    assert job.url.endswith("/jobs/full")
    assert job.etag and job.creation_time and job.last_modified


def test_create_job_defaults(client: BatchClient, pool: str) -> None:
    make_job(client, "plain", pool)
    job = client.get_job("plain")
    assert job.priority == 0
    assert job.max_parallel_tasks == -1
    assert job.uses_task_dependencies is False
    assert job.allow_task_preemption is False
    assert job.all_tasks_complete_mode == "noaction"
    assert job.task_failure_mode == "noaction"
    assert job.constraints.max_task_retry_count == 0
    assert job.metadata in (None, [])


def test_duplicate_job_id_is_job_exists(client: BatchClient, pool: str) -> None:
    make_job(client, "job-1", pool, priority=7)
    # Job IDs are case-insensitive on Batch.
    for same in ("job-1", "JOB-1"):
        with pytest.raises(ResourceExistsError) as caught:
            make_job(client, same, pool)
        assert caught.value.status_code == 409
        assert caught.value.error.code == "JobExists"
    assert client.get_job("job-1").priority == 7
    assert [j.id for j in client.list_jobs()] == ["job-1"]


def test_get_job_is_case_insensitive_and_missing_is_job_not_found(
    client: BatchClient, pool: str
) -> None:
    make_job(client, "MixedCase", pool)
    assert client.get_job("mixedcase").id == "MixedCase"
    with pytest.raises(ResourceNotFoundError) as caught:
        client.get_job("no-such-job")
    assert caught.value.error.code == "JobNotFound"


@pytest.mark.parametrize(
    ("options", "code", "prop"),
    [
        ({"id": "has space"}, "InvalidPropertyValue", "id"),
        ({"id": "j" * 65}, "InvalidPropertyValue", "id"),
        ({"id": "dot.ted"}, "InvalidPropertyValue", "id"),
        ({"priority": 1001}, "InvalidPropertyValue", "priority"),
        ({"priority": "high"}, "InvalidPropertyValue", "priority"),
        ({"max_parallel_tasks": 0}, "InvalidPropertyValue", "maxParallelTasks"),
        ({"all_tasks_complete_mode": "sometimes"}, "InvalidPropertyValue", "onAllTasksComplete"),
        ({"task_failure_mode": "panic"}, "InvalidPropertyValue", "onTaskFailure"),
        ({"pool_info": None}, "MissingRequiredProperty", "poolInfo"),
    ],
)
def test_invalid_job_is_rejected(
    client: BatchClient, pool: str, options: dict[str, object], code: str, prop: str
) -> None:
    fields: dict[str, object] = {"id": "bad", "pool_info": bm.BatchPoolInfo(pool_id=pool)}
    fields.update(options)
    with pytest.raises(HttpResponseError) as caught:
        client.create_job(bm.BatchJobCreateOptions(**fields))
    assert caught.value.status_code == 400
    assert caught.value.error.code == code
    assert details(caught.value)["PropertyName"] == prop
    assert list(client.list_jobs()) == []
    # The service keeps serving.
    make_job(client, "good", pool)
    assert client.get_job("good").state == "active"


# ------------------------------------------------------------------------------ list


def test_list_jobs_filter_and_select(client: BatchClient, pool: str) -> None:
    for job_id in ("alpha", "beta", "gamma"):
        make_job(client, job_id, pool, priority=5)
    client.begin_terminate_job("gamma", STOP, polling_interval=0).result()

    assert sorted(j.id for j in client.list_jobs()) == ["alpha", "beta", "gamma"]
    assert [j.id for j in client.list_jobs(filter="id eq 'beta'")] == ["beta"]
    assert sorted(j.id for j in client.list_jobs(filter="state eq 'active'")) == ["alpha", "beta"]
    assert [j.id for j in client.list_jobs(filter="state eq 'completed'")] == ["gamma"]
    assert sorted(
        j.id for j in client.list_jobs(filter="state eq 'completed' or id eq 'alpha'")
    ) == ["alpha", "gamma"]
    assert [j.id for j in client.list_jobs(filter="state eq 'active' and id eq 'beta'")] == ["beta"]
    assert list(client.list_jobs(filter="state eq 'active' and id eq 'gamma'")) == []

    selected = list(client.list_jobs(filter="id eq 'alpha'", select=["id", "state"]))
    assert [(j.id, j.state) for j in selected] == [("alpha", "active")]
    assert selected[0].priority is None
    assert selected[0].pool_info is None
    assert selected[0].execution_info is None


def test_list_jobs_bad_filter_is_rejected(client: BatchClient, pool: str) -> None:
    make_job(client, "alpha", pool)
    for bad in ("state eq", "nosuchproperty eq 'x'", "priority gt 'x'"):
        with pytest.raises(HttpResponseError) as caught:
            list(client.list_jobs(filter=bad))
        assert caught.value.status_code == 400
        assert caught.value.error.code == "InvalidQueryParameterValue"


# ---------------------------------------------------------------- update and replace


def test_update_job_changes_only_given_properties(client: BatchClient, pool: str) -> None:
    make_job(
        client,
        "job",
        pool,
        priority=1,
        max_parallel_tasks=2,
        constraints=bm.BatchJobConstraints(max_task_retry_count=3),
        metadata=[bm.BatchMetadataItem(name="owner", value="tests")],
    )
    before = client.get_job("job")

    client.update_job("job", bm.BatchJobUpdateOptions(priority=50))

    job = client.get_job("job")
    assert job.priority == 50
    assert job.max_parallel_tasks == 2
    assert job.constraints.max_task_retry_count == 3
    assert [(m.name, m.value) for m in job.metadata] == [("owner", "tests")]
    assert job.etag != before.etag
    assert job.last_modified >= before.last_modified

    client.update_job(
        "job",
        bm.BatchJobUpdateOptions(
            metadata=[bm.BatchMetadataItem(name="phase", value="two")],
            all_tasks_complete_mode="terminatejob",
        ),
    )
    job = client.get_job("job")
    assert [(m.name, m.value) for m in job.metadata] == [("phase", "two")]
    # A job without tasks whose onAllTasksComplete becomes terminatejob completes.
    job = wait_job_state(client, "job", "completed")
    assert job.execution_info.termination_reason == "AllTasksComplete"


def test_replace_job_resets_omitted_properties(client: BatchClient, pool: str) -> None:
    make_job(
        client,
        "job",
        pool,
        priority=1,
        max_parallel_tasks=2,
        constraints=bm.BatchJobConstraints(max_task_retry_count=3),
        metadata=[bm.BatchMetadataItem(name="owner", value="tests")],
    )

    client.replace_job("job", bm.BatchJob(pool_info=bm.BatchPoolInfo(pool_id=pool), priority=9))

    job = client.get_job("job")
    assert job.priority == 9
    assert job.max_parallel_tasks == -1
    assert job.constraints.max_task_retry_count == 0
    assert job.metadata in (None, [])
    assert job.pool_info.pool_id == pool


def test_update_missing_job_is_job_not_found(client: BatchClient) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        client.update_job("ghost", bm.BatchJobUpdateOptions(priority=1))
    assert caught.value.error.code == "JobNotFound"


def test_update_with_stale_etag_is_condition_not_met(client: BatchClient, pool: str) -> None:
    make_job(client, "job", pool, priority=1)
    stale = client.get_job("job").etag
    client.update_job("job", bm.BatchJobUpdateOptions(priority=2))

    with pytest.raises(HttpResponseError) as caught:
        client.update_job(
            "job",
            bm.BatchJobUpdateOptions(priority=3),
            etag=stale,
            match_condition=MatchConditions.IfNotModified,
        )
    assert caught.value.status_code == 412
    assert caught.value.error.code == "ConditionNotMet"
    assert client.get_job("job").priority == 2

    with pytest.raises(HttpResponseError) as caught:
        client.begin_terminate_job(
            "job", STOP, etag=stale, match_condition=MatchConditions.IfNotModified
        )
    assert caught.value.status_code == 412
    assert client.get_job("job").state == "active"

    # The current ETag passes.
    current = client.get_job("job").etag
    client.update_job(
        "job",
        bm.BatchJobUpdateOptions(priority=4),
        etag=current,
        match_condition=MatchConditions.IfNotModified,
    )
    assert client.get_job("job").priority == 4


def test_completed_job_cannot_be_updated_or_terminated_again(
    client: BatchClient, pool: str
) -> None:
    make_job(client, "job", pool)
    client.begin_terminate_job("job", STOP, polling_interval=0).result()
    with pytest.raises(ResourceExistsError) as caught:
        client.update_job("job", bm.BatchJobUpdateOptions(priority=3))
    assert caught.value.status_code == 409
    assert caught.value.error.code == "JobCompleted"
    with pytest.raises(ResourceExistsError) as caught:
        client.begin_terminate_job("job", STOP)
    assert caught.value.error.code == "JobCompleted"
    with pytest.raises(ResourceExistsError) as caught:
        add_task(client, "job", "late", "/bin/true")
    assert caught.value.error.code == "JobCompleted"


# ------------------------------------------------------------------------ scheduling


def test_max_parallel_tasks_caps_concurrency(client: BatchClient, pool: str, gate: Path) -> None:
    make_job(client, "job", pool, max_parallel_tasks=2)
    ids = [f"t{i}" for i in range(4)]
    client.create_tasks(
        "job",
        [
            bm.BatchTaskCreateOptions(
                id=i, command_line=python(GATED), environment_settings=env(GATE_DIR=str(gate))
            )
            for i in ids
        ],
    )

    # The pool has 4 free slots, but the job lets only 2 of its tasks run at once.
    wait_for(lambda: len(running(gate)) == 2)
    states = [client.get_task("job", i).state for i in ids]
    assert sorted(states) == ["active", "active", "running", "running"]
    counts = client.get_job_task_counts("job").task_counts
    assert (counts.running, counts.active) == (2, 2)

    # Raising the cap lets the waiting tasks start.
    client.update_job("job", bm.BatchJobUpdateOptions(max_parallel_tasks=4))
    wait_for(lambda: len(running(gate)) == 4)

    (gate / "open").touch()
    for task_id in ids:
        task = wait_task_completed(client, "job", task_id)
        assert task.execution_info.result == "success"


def test_higher_priority_job_runs_first_on_busy_pool(
    client: BatchClient, gate: Path, tmp_path: Path
) -> None:
    make_pool(client, "single", slots=1)
    order_log = tmp_path / "order.log"
    make_job(client, "blocker", "single")
    add_task(client, "blocker", "hold", python(GATED), environment_settings=env(GATE_DIR=str(gate)))
    wait_for(lambda: running(gate) == {"hold"})

    # The low-priority job comes first; the pool is busy, so both wait.
    make_job(client, "low", "single", priority=-10)
    make_job(client, "high", "single", priority=10)
    for job_id in ("low", "high"):
        client.create_tasks(
            job_id,
            [
                bm.BatchTaskCreateOptions(
                    id=f"{job_id}{i}",
                    command_line=python(RECORD_ORDER),
                    environment_settings=env(ORDER_LOG=str(order_log)),
                )
                for i in range(2)
            ],
        )
    assert {client.get_task(j, f"{j}0").state for j in ("low", "high")} == {"active"}

    (gate / "open").touch()
    for job_id in ("low", "high"):
        for i in range(2):
            wait_task_completed(client, job_id, f"{job_id}{i}")
    order = order_log.read_text().split()
    assert sorted(order[:2]) == ["high/high0", "high/high1"]
    assert sorted(order[2:]) == ["low/low0", "low/low1"]


PREP_SCRIPT = """
import os, pathlib
with open(os.environ["PREP_LOG"], "a") as log:
    log.write(os.environ["AZ_BATCH_NODE_ID"] + "\\n")
pathlib.Path("prepared.txt").write_text("ready for " + os.environ["AZ_BATCH_JOB_ID"])
"""

# Succeeds only if the job preparation task of its job ran on its node (and before it).
NEEDS_PREP = """
import os, pathlib, sys
wd = os.environ["AZ_BATCH_JOB_PREP_WORKING_DIR"]
text = (pathlib.Path(wd) / "prepared.txt").read_text()
sys.exit(0 if text == "ready for " + os.environ["AZ_BATCH_JOB_ID"] else 1)
"""


def test_job_preparation_task_runs_once_per_node_before_tasks(
    client: BatchClient, tmp_path: Path
) -> None:
    runs = tmp_path / "prep-runs.log"
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id="two", vm_size=VM_SIZE, target_dedicated_nodes=2, task_slots_per_node=2
        )
    )
    wait_for(lambda: client.get_pool("two").allocation_state == "steady")
    pool_nodes = {n.id for n in client.list_nodes("two")}
    prep = bm.BatchJobPreparationTask(
        command_line=python(PREP_SCRIPT), environment_settings=env(PREP_LOG=str(runs))
    )
    make_job(client, "job", "two", job_preparation_task=prep)
    ids = [f"t{i}" for i in range(6)]
    client.create_tasks(
        "job", [bm.BatchTaskCreateOptions(id=i, command_line=python(NEEDS_PREP)) for i in ids]
    )
    tasks = [wait_task_completed(client, "job", i) for i in ids]
    for task in tasks:
        assert task.execution_info.result == "success", task.execution_info.failure_info

    # At most once per node, and on every node a task ran on.
    prepared = runs.read_text().split()
    assert len(prepared) == len(set(prepared))
    assert set(prepared) <= pool_nodes
    assert {t.node_info.node_id for t in tasks} <= set(prepared)

    statuses = {s.node_id: s for s in client.list_job_preparation_and_release_task_status("job")}
    assert set(statuses) == set(prepared)
    for task in tasks:
        status = statuses[task.node_info.node_id]
        assert status.pool_id == "two"
        info = status.job_preparation_task_execution_info
        assert (info.state, info.result, info.exit_code) == ("completed", "success", 0)
        assert info.retry_count == 0
        assert task.execution_info.start_time >= info.end_time

    # A second job gets its own preparation run on the node its task runs on.
    make_job(client, "job2", "two", job_preparation_task=prep)
    add_task(client, "job2", "t", python(NEEDS_PREP))
    task = wait_task_completed(client, "job2", "t")
    assert task.execution_info.result == "success"
    assert runs.read_text().split().count(task.node_info.node_id) == 2


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_deleting_a_job_ends_its_running_preparation_task_first(
    client: BatchClient, pool: str, tmp_path: Path
) -> None:
    """Deleting a job ends its preparation task's process and only then removes the
    job's directories (the emulator once removed them under a starting process)."""
    pid_file = tmp_path / "prep.pid"
    prep = bm.BatchJobPreparationTask(
        command_line=python(
            "import os, pathlib, time\n"
            "pathlib.Path(os.environ['PID_FILE']).write_text(str(os.getpid()))\n"
            "time.sleep(60)\n"
        ),
        environment_settings=env(PID_FILE=str(pid_file)),
    )
    make_job(client, "job", pool, job_preparation_task=prep)
    add_task(client, "job", "t", "/bin/true")
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text()))
    client.begin_delete_job("job", polling_interval=0).result()
    assert "job" not in {job.id for job in client.list_jobs()}
    wait_for(lambda: not process_alive(pid))
    node = next(iter(client.list_nodes(pool)))
    with pytest.raises(ResourceNotFoundError):
        client.get_node_file_properties(
            pool, node.id, "workitems/job/job-1/jobpreparation/stdout.txt"
        )


def test_failed_job_preparation_task_keeps_tasks_off_the_node(
    client: BatchClient, pool: str
) -> None:
    make_job(
        client,
        "job",
        pool,
        job_preparation_task=bm.BatchJobPreparationTask(command_line="/bin/sh -c 'exit 9'"),
    )
    add_task(client, "job", "t", "/bin/true")

    def prep_failed() -> bool:
        statuses = list(client.list_job_preparation_and_release_task_status("job"))
        return bool(statuses) and statuses[0].job_preparation_task_execution_info.result == (
            "failure"
        )

    wait_for(prep_failed)
    [status] = client.list_job_preparation_and_release_task_status("job")
    info = status.job_preparation_task_execution_info
    assert (info.state, info.exit_code) == ("completed", 9)
    assert info.failure_info is not None
    # The task goes back to active and is not run on that node.
    task = wait_task_state(client, "job", "t", "active")
    assert task.execution_info.start_time is None
    assert task.execution_info.retry_count == 0
    assert task.node_info is None


def test_common_environment_settings_reach_tasks(client: BatchClient, pool: str) -> None:
    dump = (
        "import json, os; print(json.dumps({k: os.environ.get(k) "
        "for k in ('SHARED', 'OVERRIDDEN', 'OWN')}))"
    )
    make_job(
        client,
        "job",
        pool,
        common_environment_settings=env(SHARED="job-wide", OVERRIDDEN="from-job"),
    )
    add_task(client, "job", "plain", python(dump))
    add_task(
        client,
        "job",
        "own",
        python(dump),
        environment_settings=env(OVERRIDDEN="from-task", OWN="mine"),
    )
    seen = {}
    for task_id in ("plain", "own"):
        task = wait_task_completed(client, "job", task_id)
        assert task.execution_info.result == "success"
        seen[task_id] = json.loads(
            b"".join(client.download_task_file("job", task_id, "stdout.txt"))
        )
    assert seen["plain"] == {"SHARED": "job-wide", "OVERRIDDEN": "from-job", "OWN": None}
    # A task's own settings win over the job's common ones.
    assert seen["own"] == {"SHARED": "job-wide", "OVERRIDDEN": "from-task", "OWN": "mine"}


def test_job_max_task_retry_count_applies_to_its_tasks(
    client: BatchClient, pool: str, tmp_path: Path
) -> None:
    attempts = tmp_path / "attempts.log"
    script = f"""
with open({str(attempts)!r}, "a") as log:
    log.write("x\\n")
raise SystemExit(4)
"""
    make_job(client, "job", pool, constraints=bm.BatchJobConstraints(max_task_retry_count=2))
    add_task(client, "job", "flaky", python(script))
    task = wait_task_completed(client, "job", "flaky")
    assert task.execution_info.result == "failure"
    assert task.execution_info.exit_code == 4
    assert task.execution_info.retry_count == 2
    assert len(attempts.read_text().split()) == 3


def test_job_max_wall_clock_time_terminates_job(client: BatchClient, pool: str) -> None:
    make_job(
        client,
        "job",
        pool,
        constraints=bm.BatchJobConstraints(max_wall_clock_time=timedelta(seconds=1)),
    )
    add_task(client, "job", "slow", LONG_SLEEP)
    wait_task_state(client, "job", "slow", "running")

    job = wait_job_state(client, "job", "completed")
    assert job.execution_info.termination_reason == "MaxWallClockTimeExpiry"
    assert job.execution_info.end_time is not None
    task = client.get_task("job", "slow")
    assert task.state == "completed"
    assert task.execution_info.result == "failure"


# ------------------------------------------------------------------------- terminate


def test_terminate_job_ends_running_tasks(client: BatchClient, pool: str) -> None:
    make_job(client, "job", pool, max_parallel_tasks=1)
    add_task(client, "job", "running", LONG_SLEEP)
    wait_task_state(client, "job", "running", "running")
    add_task(client, "job", "waiting", "/bin/true")

    poller = client.begin_terminate_job(
        "job", BatchJobTerminateOptions(termination_reason="enough"), polling_interval=0
    )
    assert client.get_job("job").state in ("terminating", "completed")
    poller.result()

    job = client.get_job("job")
    assert job.state == "completed"
    assert job.previous_state == "terminating"
    assert job.execution_info.termination_reason == "enough"
    assert job.execution_info.end_time is not None
    task = client.get_task("job", "running")
    assert task.state == "completed"
    assert task.execution_info.result == "failure"
    assert task.execution_info.failure_info.code == "TaskEnded"
    # Active tasks stay active and are never scheduled.
    assert client.get_task("job", "waiting").state == "active"


def test_terminate_job_without_reason_uses_default(client: BatchClient, pool: str) -> None:
    # SDK 15.1 cannot send a terminate request without a reason (an empty options model is
    # falsy, and begin_terminate_job then fails building the request), so send it raw.
    make_job(client, "job", pool)
    response = client.send_request(
        HttpRequest("POST", "/jobs/job/terminate", params={"api-version": API_VERSION})
    )
    assert response.status_code == 202
    job = wait_job_state(client, "job", "completed")
    assert job.state == "completed"
    assert job.execution_info.termination_reason == "UserTerminate"


def test_terminate_missing_job_is_job_not_found(client: BatchClient) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        client.begin_terminate_job("ghost", STOP)
    assert caught.value.error.code == "JobNotFound"


# ---------------------------------------------------------------------------- delete


def test_delete_job_removes_it_and_kills_running_tasks(
    client: BatchClient, pool: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    make_job(client, "job", pool)
    add_task(
        client, "job", "sleeper", python(SLEEPER), environment_settings=env(PID_FILE=str(pid_file))
    )
    wait_for(pid_file.exists)
    pid = int(wait_for(pid_file.read_text))
    assert process_alive(pid)

    client.begin_delete_job("job", polling_interval=0).result()

    with pytest.raises(ResourceNotFoundError) as caught:
        client.get_job("job")
    assert caught.value.error.code == "JobNotFound"
    assert [j.id for j in client.list_jobs()] == []
    assert not process_alive(pid)
    # The ID can be used again.
    make_job(client, "job", pool)
    assert list(client.list_tasks("job")) == []


def test_delete_missing_job_is_job_not_found(client: BatchClient) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        client.begin_delete_job("ghost")
    assert caught.value.error.code == "JobNotFound"


# ------------------------------------------------------------------ automatic endings


def test_all_tasks_complete_terminates_job_after_last_task(
    client: BatchClient, pool: str, gate: Path
) -> None:
    # As Microsoft recommends: add the tasks, then switch onAllTasksComplete on.
    make_job(client, "job", pool)
    add_task(client, "job", "quick", "/bin/true")
    add_task(client, "job", "gated", python(GATED), environment_settings=env(GATE_DIR=str(gate)))
    wait_task_completed(client, "job", "quick")
    wait_for(lambda: running(gate) == {"gated"})
    client.update_job("job", bm.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
    # A task is still running, so the job is still active.
    assert client.get_job("job").state == "active"

    (gate / "open").touch()
    task = wait_task_completed(client, "job", "gated")
    job = wait_job_state(client, "job", "completed")
    assert job.execution_info.termination_reason == "AllTasksComplete"
    assert job.execution_info.end_time >= task.execution_info.end_time


def test_all_tasks_complete_counts_failed_tasks_as_complete(client: BatchClient, pool: str) -> None:
    make_job(client, "job", pool)
    client.create_tasks(
        "job",
        [
            bm.BatchTaskCreateOptions(id="ok", command_line="/bin/true"),
            bm.BatchTaskCreateOptions(id="bad", command_line="/bin/false"),
        ],
    )
    client.update_job("job", bm.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
    job = wait_job_state(client, "job", "completed")
    assert job.execution_info.termination_reason == "AllTasksComplete"
    assert client.get_task("job", "bad").execution_info.result == "failure"


def test_all_tasks_complete_job_without_tasks_completes_at_once(
    client: BatchClient, pool: str
) -> None:
    # Documented: "If a Job has no Tasks, then all Tasks are considered complete."
    make_job(client, "empty", pool, all_tasks_complete_mode="terminatejob")
    job = wait_job_state(client, "empty", "completed")
    assert job.execution_info.termination_reason == "AllTasksComplete"
