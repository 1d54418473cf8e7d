"""Fault injection (``BatchEmulator(faults=FaultPlan(...))`` and the CLI's fault flags).

Request faults are observed on the wire (raw signed HTTP) and through the SDK, with its
retries off (``retry_total=0``) to see each fault, or at their defaults to see that a client
rides them out. Task faults (preemption, start delay) are observed in ``executionInfo``.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ServiceResponseError

from batchexecutor.emulator import BatchEmulator, FaultPlan
from batchexecutor.emulator._auth import sign, string_to_sign
from tests.conftest import wait_for, wait_task_completed
from tests.emulator.support import python

REPO_ROOT = Path(__file__).resolve().parents[2]
API = "api-version=2025-06-01"
LIST_POOLS = f"/pools?{API}"


def signed_headers(
    method: str, target: str, account: str, key: str, body: bytes = b""
) -> dict[str, str]:
    headers = {"ocp-date": formatdate(usegmt=True)}
    if method not in ("GET", "HEAD"):
        headers["Content-Length"] = str(len(body))
        headers["Content-Type"] = "application/json; odata=minimalmetadata"
    headers["Authorization"] = (
        f"SharedKey {account}:{sign(key, string_to_sign(method, target, headers, account))}"
    )
    return headers


def raw(
    endpoint: str,
    account: str,
    key: str,
    method: str = "GET",
    target: str = LIST_POOLS,
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes] | None:
    """One signed request on a fresh connection; ``None`` if it was closed unanswered."""
    url = urlsplit(endpoint)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        connection.request(
            method,
            target,
            body=body or None,
            headers=signed_headers(method, target, account, key, body),
        )
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    except http.client.RemoteDisconnected:
        return None
    finally:
        connection.close()


def raw_to(emulator: BatchEmulator, **kwargs: Any) -> tuple[int, dict[str, str], bytes] | None:
    return raw(emulator.endpoint, emulator.account_name, emulator.account_key, **kwargs)


def outcome(result: tuple[int, dict[str, str], bytes] | None) -> str:
    return "drop" if result is None else str(result[0])


@pytest.fixture
def make_emulator() -> Iterator[Any]:
    started: list[BatchEmulator] = []

    def make(plan: FaultPlan) -> BatchEmulator:
        emulator = BatchEmulator(max_processes=4, faults=plan).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


def sdk(emulator: BatchEmulator, **options: Any) -> BatchClient:
    return BatchClient(emulator.endpoint, emulator.credential, **options)


def make_pool(client: BatchClient, pool_id: str = "pool") -> None:
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=1, task_slots_per_node=4
        )
    )
    wait_for(lambda: client.get_pool(pool_id).allocation_state == "steady")


def make_job(client: BatchClient, job_id: str = "job", pool_id: str = "pool") -> None:
    client.create_job(
        bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id))
    )


# --------------------------------------------------------------------------- request faults


@pytest.mark.parametrize(
    ("plan", "status", "code"),
    [
        (FaultPlan(throttle_rate=1.0, retry_after=1.5), 429, "TooManyRequests"),
        (FaultPlan(unavailable_rate=1.0, retry_after=1.5), 503, "ServerBusy"),
    ],
    ids=["throttle", "unavailable"],
)
def test_request_faults_carry_retry_after(
    make_emulator: Any, plan: FaultPlan, status: int, code: str
) -> None:
    emulator = make_emulator(plan)
    result = raw_to(emulator)
    assert result is not None
    got, headers, body = result
    assert got == status
    assert headers["retry-after"] == "2"  # whole seconds (RFC 9110), rounded up
    assert headers["retry-after-ms"] == "1500"
    error = json.loads(body)
    assert error["code"] == code
    assert error["message"]["lang"] == "en-US" and error["message"]["value"]
    # The SDK, retries off, sees the same.
    with pytest.raises(HttpResponseError) as caught:
        sdk(emulator, retry_total=0).get_pool("pool")
    assert caught.value.status_code == status
    assert caught.value.error is not None and caught.value.error.code == code
    assert caught.value.response is not None
    assert caught.value.response.headers["Retry-After"] == "2"


def test_sdk_with_default_retries_rides_out_throttling(make_emulator: Any) -> None:
    # Seed 17 gives one 429 and one 503 over these operations' requests; each retry waits
    # the advertised Retry-After (1 s), so few faults keep the test quick.
    faulted = frozenset(
        {"Pools_CreatePool", "Jobs_CreateJob", "Tasks_CreateTaskCollection", "Tasks_ListTasks"}
    )
    emulator = make_emulator(
        FaultPlan(
            seed=17, throttle_rate=0.3, unavailable_rate=0.3, retry_after=0.05, operations=faulted
        )
    )
    client = sdk(emulator)
    make_pool(client)
    make_job(client)
    client.create_task_collection(
        "job",
        bm.BatchTaskGroup(
            task_values=[
                bm.BatchTaskCreateOptions(id=f"t{i}", command_line=f"/bin/sh -c 'exit {i}'")
                for i in range(3)
            ]
        ),
    )
    for i in range(3):
        wait_task_completed(client, "job", f"t{i}")
    tasks = {t.id: t for t in client.list_tasks("job")}
    assert {
        k: t.execution_info.exit_code for k, t in tasks.items() if t.execution_info is not None
    } == {"t0": 0, "t1": 1, "t2": 2}
    assert emulator.faults.injected.get("throttle", 0) >= 1
    assert emulator.faults.injected.get("unavailable", 0) >= 1


def test_dropped_connection_gets_no_response(make_emulator: Any) -> None:
    emulator = make_emulator(FaultPlan(drop_rate=1.0, operations=frozenset({"Pools_ListPools"})))
    url = urlsplit(emulator.endpoint)
    target = LIST_POOLS
    headers = signed_headers("GET", target, emulator.account_name, emulator.account_key)
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    )
    for _ in range(3):
        with socket.create_connection((url.hostname or "", url.port or 0), timeout=30) as sock:
            sock.sendall(request.encode())
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        assert received == b"", "closed without a single byte of response"
    client = sdk(emulator, retry_total=0)
    with pytest.raises(ServiceResponseError):
        list(client.list_pools())
    # The emulator keeps serving other operations.
    make_pool(client)
    assert client.get_pool("pool").id == "pool"
    assert emulator.faults.injected["drop"] == 4


def test_operations_restricts_faults_to_named_operations(make_emulator: Any) -> None:
    emulator = make_emulator(FaultPlan(throttle_rate=1.0, operations=frozenset({"Jobs_CreateJob"})))
    client = sdk(emulator, retry_total=0)
    make_pool(client)
    assert [p.id for p in client.list_pools()] == ["pool"]
    with pytest.raises(HttpResponseError) as caught:
        make_job(client)
    assert caught.value.status_code == 429
    assert [j.id for j in client.list_jobs()] == []
    assert emulator.faults.injected == {"throttle": 1}


# --------------------------------------------------------------------------- task faults

# Appends "start" when it starts and "end" after half a second: a preempted attempt (killed
# 0.05 s in) never writes "end".
ATTEMPT = """
import os, time
log = os.environ["ATTEMPT_LOG"]
with open(log, "a") as f:
    f.write("start\\n")
time.sleep(0.5)
with open(log, "a") as f:
    f.write("end\\n")
print("finished")
"""


def test_preemption_requeues_the_task_until_an_attempt_survives(
    make_emulator: Any, tmp_path: Path
) -> None:
    # Seed 1 preempts the first attempt and spares the second.
    emulator = make_emulator(FaultPlan(seed=1, preempt_rate=0.5, preempt_after=0.05))
    client = sdk(emulator)
    make_pool(client)
    make_job(client)
    log = tmp_path / "attempts.log"
    client.create_task(
        "job",
        bm.BatchTaskCreateOptions(
            id="task",
            command_line=python(ATTEMPT),
            environment_settings=[bm.EnvironmentSetting(name="ATTEMPT_LOG", value=str(log))],
        ),
    )
    task = wait_task_completed(client, "job", "task")
    info = task.execution_info
    assert info is not None
    assert (info.result, info.exit_code) == ("success", 0)
    preempted = emulator.faults.injected.get("preempt", 0)
    assert preempted >= 1
    assert info.requeue_count == preempted
    assert info.last_requeue_time is not None
    assert info.retry_count == 0, "a preemption is not a retry"
    assert log.read_text().count("end") == 1, "preempted attempts were killed"
    assert b"".join(client.download_task_file("job", "task", "stdout.txt")) == b"finished\n"


def test_preempt_rate_one_requeues_every_attempt(make_emulator: Any) -> None:
    emulator = make_emulator(FaultPlan(preempt_rate=1.0, preempt_after=0.05))
    client = sdk(emulator)
    make_pool(client)
    make_job(client)
    client.create_task(
        "job",
        bm.BatchTaskCreateOptions(
            id="sleeper", command_line=python("import time; time.sleep(120)")
        ),
    )
    # A two-minute sleeper can only be requeued this often by being killed.
    wait_for(lambda: (client.get_task("job", "sleeper").execution_info.requeue_count or 0) >= 3)
    task = client.get_task("job", "sleeper")
    assert task.state != "completed"
    assert task.execution_info is not None and task.execution_info.retry_count == 0
    client.terminate_task("job", "sleeper")
    ended = wait_task_completed(client, "job", "sleeper")
    assert ended.execution_info is not None and ended.execution_info.result == "failure"


def test_task_start_delay_delays_the_start(make_emulator: Any) -> None:
    delay = 0.3
    emulator = make_emulator(FaultPlan(task_start_delay=delay))
    client = sdk(emulator)
    make_pool(client)
    make_job(client)
    client.create_task("job", bm.BatchTaskCreateOptions(id="late", command_line="/bin/true"))
    task = wait_task_completed(client, "job", "late")
    info = task.execution_info
    assert info is not None and info.start_time is not None and info.result == "success"
    assert task.creation_time is not None
    assert (info.start_time - task.creation_time).total_seconds() >= delay


# --------------------------------------------------------------------------- the CLI

CLI_KEY = "Y2xpLXRlc3Qta2V5LW5vdC1hLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm"


class Cli:
    """``python -m batchexecutor emulator ...`` as a subprocess; stopped with SIGINT."""

    def __init__(self, *flags: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "batchexecutor",
                "emulator",
                "--account-name",
                "cliacct",
                "--account-key",
                CLI_KEY,
                *flags,
            ],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        self.banner = [self.process.stdout.readline() for _ in range(4)]
        assert self.banner[0].startswith("Azure Batch emulator listening on "), self.banner
        self.endpoint = self.banner[0].split(" on ", 1)[1].strip()
        self.account = self.banner[1].split(":", 1)[1].strip()
        self.key = self.banner[2].split(":", 1)[1].strip()

    def client(self, **options: Any) -> BatchClient:
        return BatchClient(
            self.endpoint, AzureNamedKeyCredential(self.account, self.key), **options
        )

    def stop(self) -> tuple[int, str, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        out, err = self.process.communicate(timeout=60)
        return self.process.returncode, out, err


@pytest.fixture
def cli() -> Iterator[Any]:
    started: list[Cli] = []

    def run(*flags: str) -> Cli:
        started.append(Cli(*flags))
        return started[-1]

    yield run
    for process in started:
        if process.process.poll() is None:
            process.process.kill()
            process.process.communicate()


def test_cli_request_fault_flags_build_the_same_plan(cli: Any, make_emulator: Any) -> None:
    running = cli(
        "--fault-seed",
        "11",
        "--throttle-rate",
        "0.3",
        "--unavailable-rate",
        "0.3",
        "--drop-rate",
        "0.2",
        "--retry-after",
        "1.5",
    )
    assert (running.account, running.key) == ("cliacct", CLI_KEY)
    results = [raw(running.endpoint, running.account, running.key) for _ in range(30)]
    # The same plan in-process answers the same requests the same way (one seeded stream).
    twin = make_emulator(
        FaultPlan(seed=11, throttle_rate=0.3, unavailable_rate=0.3, drop_rate=0.2, retry_after=1.5)
    )
    expected = [outcome(raw_to(twin)) for _ in range(30)]
    assert [outcome(r) for r in results] == expected
    assert {"429", "503", "drop", "200"} <= set(expected)
    for result in results:
        if result is not None and result[0] in (429, 503):
            assert (result[1]["retry-after"], result[1]["retry-after-ms"]) == ("2", "1500")
    code, _, err = running.stop()
    assert code == 0, err


def test_cli_task_fault_flags(cli: Any, tmp_path: Path) -> None:
    running = cli(
        "--fault-seed",
        "1",
        "--preempt-rate",
        "0.5",
        "--task-start-delay",
        "0.3",
        "--max-processes",
        "2",
    )
    client = running.client()
    make_pool(client)
    make_job(client)
    log = tmp_path / "attempts.log"
    client.create_task(
        "job",
        bm.BatchTaskCreateOptions(
            id="task",
            command_line=python(ATTEMPT),
            environment_settings=[bm.EnvironmentSetting(name="ATTEMPT_LOG", value=str(log))],
        ),
    )
    task = wait_task_completed(client, "job", "task")
    info = task.execution_info
    assert info is not None and info.result == "success"
    assert info.requeue_count == 1  # seed 1: the first attempt is preempted, the second not
    assert info.start_time is not None and task.creation_time is not None
    assert (info.start_time - task.creation_time).total_seconds() >= 0.3
    code, _, err = running.stop()
    assert code == 0, err
