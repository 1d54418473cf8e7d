"""Durability: an emulator with ``data_dir`` stopped and started again keeps its account.

The restarted emulator gets the same ``data_dir`` and the same account key (passed
explicitly; without one each start makes a random key). Tasks hold at a gate file the test
creates, so "running when the emulator stopped" is a fact, not a timing guess.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import ResourceExistsError

from batchexecutor.emulator import BatchEmulator
from tests.conftest import wait_for, wait_task_completed
from tests.emulator.support import python

KEY = base64.b64encode(b"durability-test-key-" * 3).decode()

# Records each start in $ATTEMPT_LOG, holds until $GATE exists, then prints and exits 0.
GATED = """
import os, pathlib, sys, time
with open(os.environ["ATTEMPT_LOG"], "a") as log:
    log.write("start\\n")
gate = pathlib.Path(os.environ["GATE"])
deadline = time.monotonic() + 60
while not gate.exists():
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.01)
print("ran to completion")
"""


class Restartable:
    """Start/stop emulators on one data directory; stops whatever is left at the end."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.current: BatchEmulator | None = None
        self.clients: list[BatchClient] = []

    def start(self) -> BatchClient:
        assert self.current is None
        self.current = BatchEmulator(
            data_dir=self.data_dir, account_key=KEY, max_processes=4
        ).start()
        client = BatchClient(self.current.endpoint, self.current.credential)
        self.clients.append(client)
        return client

    def stop(self) -> None:
        assert self.current is not None
        self.current.stop()
        self.current = None

    def close(self) -> None:
        for client in self.clients:
            client.close()
        if self.current is not None:
            self.stop()


@pytest.fixture
def account(tmp_path: Path) -> Iterator[Restartable]:
    restartable = Restartable(tmp_path / "data")
    yield restartable
    restartable.close()


def download(client: BatchClient, job_id: str, task_id: str, path: str) -> bytes:
    return b"".join(client.download_task_file(job_id, task_id, path))


def test_resources_and_outcomes_survive_a_restart(account: Restartable) -> None:
    client = account.start()
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id="pool",
            vm_size="standard_d2s_v3",
            target_dedicated_nodes=1,
            task_slots_per_node=4,
            metadata=[bm.BatchMetadataItem(name="owner", value="durability")],
        )
    )
    wait_for(lambda: client.get_pool("pool").allocation_state == "steady")
    client.create_job(
        bm.BatchJobCreateOptions(
            id="job", display_name="kept", pool_info=bm.BatchPoolInfo(pool_id="pool")
        )
    )
    client.create_task(
        "job",
        bm.BatchTaskCreateOptions(
            id="ok", command_line="/bin/sh -c 'echo kept output; mkdir -p d; echo x > d/f.txt'"
        ),
    )
    client.create_task(
        "job",
        bm.BatchTaskCreateOptions(id="bad", command_line="/bin/sh -c 'echo oops >&2; exit 7'"),
    )
    before = {t: wait_task_completed(client, "job", t) for t in ("ok", "bad")}
    node_ids = [n.id for n in client.list_nodes("pool")]
    account.stop()

    client = account.start()
    pool = client.get_pool("pool")
    assert pool.allocation_state == "steady"
    assert pool.current_dedicated_nodes == 1
    assert pool.task_slots_per_node == 4
    assert [(m.name, m.value) for m in pool.metadata or []] == [("owner", "durability")]
    assert [n.id for n in client.list_nodes("pool")] == node_ids
    job = client.get_job("job")
    assert (job.display_name, job.pool_info.pool_id) == ("kept", "pool")
    assert {t.id for t in client.list_tasks("job")} == {"ok", "bad"}
    for task_id, exit_code, result in (("ok", 0, "success"), ("bad", 7, "failure")):
        task = client.get_task("job", task_id)
        assert task.state == "completed"
        info = task.execution_info
        assert info is not None
        assert (info.exit_code, info.result) == (exit_code, result)
        assert info.requeue_count == 0, "completed tasks are not run again"
        old = before[task_id].execution_info
        assert old is not None
        assert (info.start_time, info.end_time) == (old.start_time, old.end_time)
        assert task.etag == before[task_id].etag
    # The restarted emulator (port 0) may listen on another port: URLs name the current one.
    assert account.current is not None
    endpoint = account.current.endpoint
    ok = client.get_task("job", "ok")
    assert ok.node_info is not None
    assert [pool.url, job.url, ok.url, ok.node_info.node_url] == [
        f"{endpoint}/pools/pool",
        f"{endpoint}/jobs/job",
        f"{endpoint}/jobs/job/tasks/ok",
        f"{endpoint}/pools/pool/nodes/{node_ids[0]}",
    ]
    assert [n.url for n in client.list_nodes("pool")] == [
        f"{endpoint}/pools/pool/nodes/{node_ids[0]}"
    ]
    bad = client.get_task("job", "bad").execution_info
    assert bad is not None and bad.failure_info is not None
    assert bad.failure_info.code == "FailureExitCode"
    # Task files survive too.
    assert download(client, "job", "ok", "stdout.txt") == b"kept output\n"
    assert download(client, "job", "ok", "wd/d/f.txt") == b"x\n"
    assert download(client, "job", "bad", "stderr.txt") == b"oops\n"
    assert "wd/d/f.txt" in {f.name for f in client.list_task_files("job", "ok", recursive=True)}
    counts = client.get_job_task_counts("job").task_counts
    assert (counts.completed, counts.succeeded, counts.failed) == (2, 1, 1)
    # IDs stay taken, and the restored pool runs new work.
    with pytest.raises(ResourceExistsError):
        client.create_task("job", bm.BatchTaskCreateOptions(id="ok", command_line="/bin/true"))
    client.create_task("job", bm.BatchTaskCreateOptions(id="new", command_line="/bin/true"))
    new = wait_task_completed(client, "job", "new").execution_info
    assert new is not None and new.result == "success"


def test_running_task_is_requeued_and_completes_after_restart(
    account: Restartable, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    log = tmp_path / "attempts.log"
    client = account.start()
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id="pool", vm_size="standard_d2s_v3", target_dedicated_nodes=1, task_slots_per_node=4
        )
    )
    wait_for(lambda: client.get_pool("pool").allocation_state == "steady")
    client.create_job(
        bm.BatchJobCreateOptions(id="job", pool_info=bm.BatchPoolInfo(pool_id="pool"))
    )
    client.create_task(
        "job",
        bm.BatchTaskCreateOptions(
            id="long",
            command_line=python(GATED),
            environment_settings=[
                bm.EnvironmentSetting(name="GATE", value=str(gate)),
                bm.EnvironmentSetting(name="ATTEMPT_LOG", value=str(log)),
            ],
        ),
    )
    wait_for(lambda: log.exists() and client.get_task("job", "long").state == "running")
    account.stop()  # kills the process: the gate is still closed, so it never finished
    assert log.read_text() == "start\n"

    gate.touch()
    client = account.start()
    task = wait_task_completed(client, "job", "long")
    info = task.execution_info
    assert info is not None
    assert (info.result, info.exit_code) == ("success", 0)
    assert info.requeue_count == 1
    assert info.last_requeue_time is not None
    assert info.retry_count == 0
    assert log.read_text() == "start\nstart\n", "it ran again from the start"
    assert download(client, "job", "long", "stdout.txt") == b"ran to completion\n"
    account.stop()

    # Its outcome is durable as well.
    client = account.start()
    again = client.get_task("job", "long").execution_info
    assert again is not None
    assert (again.result, again.requeue_count) == ("success", 1)
