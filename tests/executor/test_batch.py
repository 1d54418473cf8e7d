"""Batch operations (batchexecutor._batch) against the emulator, through the real SDK.

Clients are built with the SDK's retries off (``retry_total=0``), as
``BatchConfig.batch_client`` builds them, so every retry seen here is batchexecutor's.
Assertions are on outcomes and request counts, never on timings.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import ResourceNotFoundError, ServiceResponseError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy

from batchexecutor._batch import (
    MAX_REQUEST_BYTES,
    AddTasksError,
    CompletionCursor,
    add_tasks,
    completed_filter,
    completed_tasks_since,
    pool_exists,
    serialized_size,
    set_terminate_on_completion,
    task_counts,
    terminate_job,
)
from batchexecutor._retry import DeadlineExceeded
from batchexecutor.emulator import BatchEmulator, FaultPlan
from tests.conftest import wait_for

ADD = "Tasks_CreateTaskCollection"
LIST = "Tasks_ListTasks"


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., BatchEmulator]]:
    started: list[BatchEmulator] = []

    def make(**plan: Any) -> BatchEmulator:
        emulator = BatchEmulator(max_processes=4, faults=FaultPlan(**plan)).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


def sdk(emulator: BatchEmulator, **options: Any) -> BatchClient:
    return BatchClient(emulator.endpoint, emulator.credential, retry_total=0, **options)


def make_job(client: BatchClient, *, nodes: int = 0, job_id: str = "job") -> str:
    """A job on a pool of ``nodes`` nodes (0: tasks stay active, nothing runs)."""
    if not _exists(client, "pool"):
        client.create_pool(
            bm.BatchPoolCreateOptions(
                id="pool",
                vm_size="standard_d2s_v3",
                target_dedicated_nodes=nodes,
                task_slots_per_node=4,
            )
        )
        wait_for(lambda: client.get_pool("pool").allocation_state == "steady")
    client.create_job(
        bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id="pool"))
    )
    return job_id


def _exists(client: BatchClient, pool_id: str) -> bool:
    return pool_exists(client, pool_id)


def tasks(n: int, prefix: str = "t", command: str = "/bin/true", **extra: Any) -> list[Any]:
    return [
        bm.BatchTaskCreateOptions(id=f"{prefix}{i:05d}", command_line=command, **extra)
        for i in range(n)
    ]


def job_task_ids(client: BatchClient, job_id: str = "job") -> list[str]:
    return [str(t.id) for t in client.list_tasks(job_id, select=["id"])]


class AddRequests(SansIOHTTPPolicy):  # type: ignore[misc]
    """Records the body size of each add-collection request; can lose responses.

    ``lose`` responses are dropped after the service processed the request: the client
    sees a ServiceResponseError, as when a connection breaks after the request was sent.
    """

    def __init__(self, lose: int = 0) -> None:
        self.sizes: list[int] = []
        self.bodies: list[list[str]] = []
        self.lose = lose
        self.lost: list[list[str]] = []
        self._lock = threading.Lock()

    @staticmethod
    def _is_add(request: PipelineRequest[Any]) -> bool:
        http = request.http_request
        return http.method == "POST" and http.url.split("?")[0].endswith("/addtaskcollection")

    def on_request(self, request: PipelineRequest[Any]) -> None:
        if self._is_add(request):
            body = request.http_request.content
            data = body.encode() if isinstance(body, str) else bytes(body)
            with self._lock:
                self.sizes.append(len(data))
                self.bodies.append([t["id"] for t in json.loads(data)["value"]])

    def on_response(
        self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]
    ) -> None:
        if not self._is_add(request) or response.http_response.status_code != 200:
            return
        with self._lock:
            if self.lose <= 0:
                return
            self.lose -= 1
            content = request.http_request.content
            ids = [t["id"] for t in json.loads(content)["value"]]
            self.lost.append(ids)
        raise ServiceResponseError("connection lost after the request was sent (test)")


# --------------------------------------------------------------------------- add_tasks


def test_ten_thousand_tasks_in_exactly_one_hundred_requests(emulator: BatchEmulator) -> None:
    client = sdk(emulator)
    make_job(client)
    result = add_tasks(client, "job", tasks(10_000), deadline=120, parallelism=4)
    assert result.added == 10_000 and result.existed == frozenset()
    assert result.requests == 100
    assert emulator.request_counts[ADD] == 100
    assert task_counts(client, "job").active == 10_000
    assert sorted(job_task_ids(client)) == [f"t{i:05d}" for i in range(10_000)]


def test_requests_stay_under_one_megabyte(emulator: BatchEmulator) -> None:
    recorder = AddRequests()
    client = sdk(emulator, per_call_policies=[recorder])
    make_job(client)
    # 100 tasks of the same serialized size, each ~30 KB: big command lines and settings.
    big = tasks(
        100,
        command="/bin/sh -c 'echo " + "x" * 20_000 + "'",
        environment_settings=[bm.EnvironmentSetting(name="PAYLOAD", value="y" * 10_000)],
    )
    size = serialized_size(big[0])
    assert {serialized_size(t) for t in big} == {size} and size > 30_000
    per_request = (MAX_REQUEST_BYTES - len('{"value": []}') + 2) // (size + 2)
    expected = -(-100 // per_request)
    result = add_tasks(client, "job", big, deadline=120)
    assert result.added == 100
    assert emulator.request_counts[ADD] == result.requests == expected == len(recorder.sizes)
    assert max(recorder.sizes) <= MAX_REQUEST_BYTES
    # What was measured is what the SDK sent.
    for ids, sent in zip(recorder.bodies, recorder.sizes, strict=True):
        assert sent == len('{"value": []}') + len(ids) * size + 2 * (len(ids) - 1)
    assert len(job_task_ids(client)) == 100


def test_body_too_large_is_split_further(emulator: BatchEmulator) -> None:
    # A budget above the service's limit: the service answers RequestBodyTooLarge and
    # the chunk is halved until it fits (100 -> 2 x 50 -> 4 x 25 tasks of ~30 KB).
    recorder = AddRequests()
    client = sdk(emulator, per_call_policies=[recorder])
    make_job(client)
    big = tasks(100, command="/bin/sh -c 'echo " + "x" * 30_000 + "'")
    result = add_tasks(client, "job", big, max_request_bytes=4_000_000, deadline=120)
    assert result.added == 100
    assert emulator.request_counts[ADD] == result.requests == 7
    assert sorted(len(ids) for ids in recorder.bodies) == [25, 25, 25, 25, 50, 50, 100]
    assert len(job_task_ids(client)) == 100


def test_a_task_too_large_for_any_request_is_reported(emulator: BatchEmulator) -> None:
    client = sdk(emulator)
    make_job(client)
    huge = bm.BatchTaskCreateOptions(id="huge", command_line="/bin/echo " + "z" * 1_100_000)
    with pytest.raises(AddTasksError) as caught:
        add_tasks(client, "job", [*tasks(3), huge], deadline=60)
    error = caught.value
    assert list(error.failures) == ["huge"]
    assert "more than one add-collection request may carry" in error.failures["huge"]
    assert error.added == 3 and sorted(job_task_ids(client)) == ["t00000", "t00001", "t00002"]
    assert emulator.request_counts[ADD] == 1


def test_dropped_requests_are_retried_and_every_task_added_once(
    make_emulator: Callable[..., BatchEmulator],
) -> None:
    emulator = make_emulator(seed=7, drop_rate=0.3, operations=frozenset({ADD}))
    client = sdk(emulator)
    make_job(client)
    result = add_tasks(client, "job", tasks(1_000), deadline=120, parallelism=4)
    drops = emulator.faults.injected["drop"]
    assert drops >= 1
    assert result.added == 1_000
    assert result.requests == emulator.request_counts[ADD] == 10 + drops
    ids = job_task_ids(client)
    assert len(ids) == len(set(ids)) == 1_000


def test_lost_responses_count_task_exists_as_added(emulator: BatchEmulator) -> None:
    # The service adds the tasks, then the response is lost: the retry is answered
    # TaskExists for each of them, and they count as added.
    recorder = AddRequests(lose=2)
    client = sdk(emulator, per_call_policies=[recorder])
    make_job(client)
    result = add_tasks(client, "job", tasks(250), deadline=120, parallelism=2)
    lost = {task_id for ids in recorder.lost for task_id in ids}
    assert len(recorder.lost) == 2 and len(lost) == 200
    assert result.existed == lost
    assert result.added == 250
    assert result.requests == emulator.request_counts[ADD] == 3 + 2
    ids = job_task_ids(client)
    assert len(ids) == len(set(ids)) == 250


def test_persistent_503_ends_at_the_deadline_with_the_missing_ids(
    make_emulator: Callable[..., BatchEmulator],
) -> None:
    emulator = make_emulator(unavailable_rate=1.0, retry_after=0.05, operations=frozenset({ADD}))
    client = sdk(emulator)
    make_job(client)
    batch = tasks(150)
    with pytest.raises(AddTasksError) as caught:
        add_tasks(client, "job", batch, deadline=0.5, parallelism=2)
    error = caught.value
    message = str(error)
    assert message.startswith("add tasks to job 'job' (Tasks_CreateTaskCollection): 150 of 150")
    assert "not added within the deadline" in message and "HTTP 503 ServerBusy" in message
    assert set(error.failures) == {t.id for t in batch}
    assert "t00000, t00001" in message and "and 130 more" in message
    assert error.added == 0 and error.elapsed > 0
    assert isinstance(error.__cause__, DeadlineExceeded)
    assert error.__cause__.operation == "add tasks to job 'job'"
    # Retried, not looped forever: every request was a 503, and it stopped.
    sent = emulator.request_counts[ADD]
    assert sent == error.requests == emulator.faults.injected["unavailable"] > 2
    assert job_task_ids(client) == []


def test_few_missing_ids_are_all_listed(make_emulator: Callable[..., BatchEmulator]) -> None:
    emulator = make_emulator(unavailable_rate=1.0, retry_after=0.05, operations=frozenset({ADD}))
    client = sdk(emulator)
    make_job(client)
    with pytest.raises(AddTasksError) as caught:
        add_tasks(client, "job", tasks(5, prefix="item-"), deadline=0.2)
    message = str(caught.value)
    for i in range(5):
        assert f"item-{i:05d}" in message
    assert "5 tasks: not added within the deadline; last error: HTTP 503 ServerBusy" in message


def test_job_not_found_fails_at_once(emulator: BatchEmulator) -> None:
    client = sdk(emulator)
    with pytest.raises(AddTasksError) as caught:
        add_tasks(client, "nojob", tasks(50), deadline=60)
    assert emulator.request_counts[ADD] == 1
    assert set(caught.value.failures.values()) == {
        "HTTP 404 JobNotFound: The specified job does not exist."
    }
    assert isinstance(caught.value.__cause__, ResourceNotFoundError)


def test_client_errors_fail_only_their_tasks(emulator: BatchEmulator) -> None:
    client = sdk(emulator)
    make_job(client)  # no usesTaskDependencies: a task with dependencies is refused
    dependent = bm.BatchTaskCreateOptions(
        id="dependent",
        command_line="/bin/true",
        depends_on=bm.BatchTaskDependencies(task_ids=["t00000"]),
    )
    with pytest.raises(AddTasksError) as caught:
        add_tasks(client, "job", [*tasks(3), dependent], deadline=60)
    assert list(caught.value.failures) == ["dependent"]
    reason = caught.value.failures["dependent"]
    assert reason.startswith("TaskDependenciesNotSpecifiedOnJob: ") and " object at " not in reason
    assert sorted(job_task_ids(client)) == ["t00000", "t00001", "t00002"]
    assert emulator.request_counts[ADD] == 1  # a client error is not retried


def test_task_ids_are_checked() -> None:
    client: Any = object()
    with pytest.raises(ValueError, match="unique"):
        add_tasks(
            client, "job", [*tasks(2), bm.BatchTaskCreateOptions(id="T00001", command_line="x")]
        )
    with pytest.raises(ValueError, match="ID"):
        add_tasks(client, "job", [bm.BatchTaskCreateOptions(command_line="x")])
    with pytest.raises(ValueError, match="max_tasks_per_request"):
        add_tasks(client, "job", tasks(1), max_tasks_per_request=101)
    assert add_tasks(client, "job", []).added == 0


class ServerErrorsOnce:
    """A stand-in client whose first answer for every odd task is servererror."""

    def __init__(self) -> None:
        self.requests: list[list[str]] = []
        self.failed_once: set[str] = set()

    def create_task_collection(self, job_id: str, group: bm.BatchTaskGroup) -> Any:
        ids = [str(t.id) for t in group.task_values]
        self.requests.append(ids)
        results = []
        for task_id in ids:
            if int(task_id[1:]) % 2 and task_id not in self.failed_once:
                self.failed_once.add(task_id)
                results.append(
                    bm.BatchTaskCreateResult(
                        status="servererror",
                        task_id=task_id,
                        error=bm.BatchError(
                            code="ServerBusy",
                            message=bm.BatchErrorMessage(value="busy"),
                        ),
                    )
                )
            else:
                results.append(bm.BatchTaskCreateResult(status="success", task_id=task_id))
        return bm.BatchCreateTaskCollectionResult(result_values=results)


def test_only_tasks_with_servererror_are_retried() -> None:
    client: Any = ServerErrorsOnce()
    result = add_tasks(client, "job", tasks(10), deadline=60, parallelism=1)
    assert result.added == 10 and result.requests == 2
    assert client.requests[1] == [f"t{i:05d}" for i in range(1, 10, 2)]


# --------------------------------------------------------------------------- task counts


def test_task_counts(emulator: BatchEmulator) -> None:
    client = sdk(emulator)
    make_job(client, nodes=1)
    add_tasks(client, "job", [*tasks(3), *tasks(2, prefix="f", command="/bin/false")])
    wait_for(lambda: task_counts(client, "job").completed == 5)
    counts = task_counts(client, "job")
    assert (counts.active, counts.running, counts.succeeded, counts.failed) == (0, 0, 3, 2)
    assert counts.total == 5 and counts.unfinished == 0
    with pytest.raises(ResourceNotFoundError):
        task_counts(client, "nojob")


# --------------------------------------------------------------------------- completed tasks


def restamp(emulator: BatchEmulator, job_id: str, task_ids: list[str], moment: datetime) -> None:
    """Give tasks one stateTransitionTime, as Azure may (the emulator's clock never does)."""
    service = emulator._service
    assert service is not None
    text = moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with service.state.lock:
        job = service.state.jobs[job_id.lower()]
        for task_id in task_ids:
            job.tasks[task_id.lower()].wire["stateTransitionTime"] = text


def add_and_finish(client: BatchClient, ids: list[str], command: str = "/bin/true") -> None:
    batch = [bm.BatchTaskCreateOptions(id=i, command_line=command) for i in ids]
    add_tasks(client, "job", batch)
    wait_for(lambda: all(client.get_task("job", i).state == "completed" for i in ids))


def query_of(url: str) -> dict[str, str]:
    params = parse_qs(urlsplit(url).query)
    return {k: v[0] for k, v in params.items() if k in ("$filter", "$select", "maxresults")}


class Urls(SansIOHTTPPolicy):  # type: ignore[misc]
    def __init__(self) -> None:
        self.urls: list[str] = []

    def on_request(self, request: PipelineRequest[Any]) -> None:
        self.urls.append(request.http_request.url)


def test_completed_tasks_since_across_pages_with_identical_timestamps(
    emulator: BatchEmulator,
) -> None:
    urls = Urls()
    client = sdk(emulator, per_call_policies=[urls])
    make_job(client, nodes=1)
    first = [f"a{i:02d}" for i in range(12)]
    add_and_finish(client, first[:6])
    add_and_finish(client, first[6:], command="/bin/sh -c 'exit 3'")
    moment = max(client.get_task("job", i).state_transition_time for i in first)
    restamp(emulator, "job", first, moment)

    # 12 tasks at one timestamp, 5 per page: 3 pages, each task once.
    listed_before = emulator.request_counts.get(LIST, 0)
    r1 = completed_tasks_since(client, "job", CompletionCursor(), page_size=5)
    assert sorted(t.id for t in r1.tasks) == first
    assert r1.pages == 3 == emulator.request_counts[LIST] - listed_before
    assert r1.cursor.since == moment and len(r1.cursor.seen) == 12
    by_id = {t.id: t for t in r1.tasks}
    assert by_id["a00"].succeeded and by_id["a00"].exit_code == 0
    assert not by_id["a07"].succeeded and by_id["a07"].exit_code == 3
    assert by_id["a07"].result == "failure" and by_id["a07"].failure_category == "usererror"
    assert by_id["a00"].pool_id == "pool" and by_id["a00"].node_id
    assert by_id["a00"].completed_at == moment

    # The query is filtered and $select-ed on the service.
    assert query_of(urls.urls[-3]) == {
        "$filter": "state eq 'completed'",
        "$select": "id,executionInfo,stateTransitionTime,nodeInfo",
        "maxresults": "5",
    }

    # Five more complete "at the same time" but become visible later: ge finds them,
    # de-duplication drops the twelve already returned.
    late = [f"b{i:02d}" for i in range(5)]
    add_and_finish(client, late)
    restamp(emulator, "job", late, moment)
    before = len(urls.urls)
    r2 = completed_tasks_since(client, "job", r1.cursor, page_size=5)
    assert query_of(urls.urls[before])["$filter"] == completed_filter(moment)
    assert sorted(t.id for t in r2.tasks) == late
    assert r2.listed == 17 and r2.pages == 4
    assert r2.cursor.since == moment and len(r2.cursor.seen) == 17

    r3 = completed_tasks_since(client, "job", r2.cursor, page_size=5)
    assert r3.tasks == () and r3.listed == 17 and r3.cursor == r2.cursor

    # Later completions move the cursor on; the seen set keeps only the newest timestamp.
    later = [f"c{i:02d}" for i in range(3)]
    add_and_finish(client, later)
    r4 = completed_tasks_since(client, "job", r3.cursor, page_size=5)
    assert sorted(t.id for t in r4.tasks) == later
    newest = max(t.completed_at for t in r4.tasks)
    assert newest > moment and r4.cursor.since == newest
    assert {task_id for task_id, _ in r4.cursor.seen} == {
        t.id for t in r4.tasks if t.completed_at == newest
    }
    r5 = completed_tasks_since(client, "job", r4.cursor)
    assert r5.tasks == () and r5.listed == len(r4.cursor.seen) and r5.pages == 1

    # A datetime: everything at or after it; None: every completed task.
    assert len(completed_tasks_since(client, "job", moment).tasks) == 20
    assert len(completed_tasks_since(client, "job", None, page_size=7).tasks) == 20


def test_completed_filter_text() -> None:
    moment = datetime(2025, 6, 1, 12, 30, 45, 123456, tzinfo=timezone.utc)
    assert completed_filter(None) == "state eq 'completed'"
    assert completed_filter(moment) == (
        "state eq 'completed' and stateTransitionTime ge datetime'2025-06-01T12:30:45.123456Z'"
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        CompletionCursor(since=datetime(2025, 1, 1))


def test_overlap_rereads_and_deduplicates(emulator: BatchEmulator) -> None:
    client = sdk(emulator)
    make_job(client, nodes=1)
    ids = [f"o{i}" for i in range(4)]
    add_and_finish(client, ids)
    r1 = completed_tasks_since(client, "job", CompletionCursor(overlap=timedelta(hours=1)))
    assert len(r1.tasks) == 4 and len(r1.cursor.seen) == 4
    # A task that became visible late with an earlier timestamp is still found.
    add_and_finish(client, ["late"])
    restamp(emulator, "job", ["late"], r1.cursor.since - timedelta(minutes=5))  # type: ignore[operator]
    r2 = completed_tasks_since(client, "job", r1.cursor)
    assert [t.id for t in r2.tasks] == ["late"] and r2.listed == 5


def test_paging_survives_transient_errors(make_emulator: Callable[..., BatchEmulator]) -> None:
    emulator = make_emulator(
        seed=3, throttle_rate=0.4, retry_after=0.01, operations=frozenset({LIST})
    )
    client = sdk(emulator)
    make_job(client, nodes=1)
    ids = [f"p{i:02d}" for i in range(10)]
    batch = [bm.BatchTaskCreateOptions(id=i, command_line="/bin/true") for i in ids]
    add_tasks(client, "job", batch)
    wait_for(lambda: task_counts(client, "job").completed == 10)
    result = completed_tasks_since(client, "job", None, page_size=3, deadline=60)
    assert sorted(t.id for t in result.tasks) == ids
    assert result.pages == 4
    assert emulator.faults.injected["throttle"] >= 1
    assert emulator.request_counts[LIST] == 4 + emulator.faults.injected["throttle"]


# --------------------------------------------------------------------------- jobs and pools


def test_terminate_job_once_without_a_polling_thread(emulator: BatchEmulator) -> None:
    client = sdk(emulator)
    make_job(client)
    add_tasks(client, "job", tasks(3))
    with pytest.raises(ValueError):  # the SDK quirk worked around
        client.begin_terminate_job("job")
    pollers = {t.name for t in threading.enumerate() if t.name.startswith("LROPoller")}
    assert terminate_job(client, "job", "cancelled by the test") is True
    assert {t.name for t in threading.enumerate() if t.name.startswith("LROPoller")} == pollers
    assert emulator.request_counts["Jobs_TerminateJob"] == 1
    wait_for(lambda: client.get_job("job").state == "completed")
    job = client.get_job("job")
    assert job.execution_info is not None
    assert job.execution_info.termination_reason == "cancelled by the test"
    assert terminate_job(client, "job", "again") is False  # already completed: not an error
    with pytest.raises(ResourceNotFoundError):
        terminate_job(client, "nojob")
    with pytest.raises(ValueError, match="64"):
        terminate_job(client, "job", "x" * 65)


class LoseResponse(SansIOHTTPPolicy):  # type: ignore[misc]
    """Drops the first response to requests whose path ends with ``suffix``."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.lost = 0

    def on_response(
        self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]
    ) -> None:
        if request.http_request.url.split("?")[0].endswith(self.suffix) and not self.lost:
            self.lost += 1
            raise ServiceResponseError("connection lost after the request was sent (test)")


def test_terminate_job_retry_after_a_lost_response(emulator: BatchEmulator) -> None:
    # The first request terminated the job (no tasks: it completes at once); its answer
    # was lost, and the retry finds the job completed.
    lose = LoseResponse("/terminate")
    client = sdk(emulator, per_call_policies=[lose])
    make_job(client)
    assert terminate_job(client, "job", "stop") is False
    assert lose.lost == 1 and emulator.request_counts["Jobs_TerminateJob"] == 2
    assert client.get_job("job").state == "completed"


def test_set_terminate_on_completion(emulator: BatchEmulator) -> None:
    client = sdk(emulator)
    make_job(client, nodes=1)
    add_and_finish(client, ["x1", "x2"])
    assert client.get_job("job").state == "active"  # onAllTasksComplete is noaction
    assert set_terminate_on_completion(client, "job") is True
    wait_for(lambda: client.get_job("job").state == "completed")
    job = client.get_job("job")
    assert job.execution_info is not None
    assert job.execution_info.termination_reason == "AllTasksComplete"
    assert set_terminate_on_completion(client, "job") is False


def test_pool_exists(emulator: BatchEmulator, caplog: pytest.LogCaptureFixture) -> None:
    client = sdk(emulator)
    assert pool_exists(client, "pool") is False  # no ResourceNotFoundError
    make_job(client)
    assert pool_exists(client, "pool") is True
    assert "deserialization" not in caplog.text
