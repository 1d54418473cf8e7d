"""Retry policies (batchexecutor._retry) against the emulator's injected faults.

The SDK client has its own retries off (``retry_total=0``), so every retry observed here
is the policy's. No timed assertions: outcomes and counts (``emulator.request_counts``,
``emulator.faults.injected``), and the waits the policy asked for (through an injected
``sleep``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from batchexecutor import _retry
from batchexecutor._retry import (
    DeadlineExceeded,
    TransientError,
    call,
    describe,
    error_code,
    is_transient,
    policy,
    redact,
    retried,
    retry_after,
    status_code,
)
from batchexecutor.emulator import BatchEmulator, FaultPlan

GET_POOL = "Pools_GetPool"


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., BatchEmulator]]:
    started: list[BatchEmulator] = []

    def make(**plan: Any) -> BatchEmulator:
        emulator = BatchEmulator(max_processes=2, faults=FaultPlan(**plan)).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


def sdk(emulator: BatchEmulator) -> BatchClient:
    """The SDK with its own retries off: the policy under test is the only one retrying."""
    return BatchClient(emulator.endpoint, emulator.credential, retry_total=0)


def make_pool(client: BatchClient, pool_id: str = "pool") -> None:
    client.create_pool(
        bm.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=0)
    )


class Sleeps:
    """Records the waits a policy asks for, without waiting (or waiting for real)."""

    def __init__(self, real: bool = False) -> None:
        self.waits: list[float] = []
        self.real = real

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.real:
            import time

            time.sleep(seconds)


def run(operation: str, fn: Callable[[], Any], *, deadline: float, sleep: Sleeps) -> Any:
    return policy(operation, deadline=deadline, sleep=sleep)(fn)


def caught(fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except BaseException as error:
        return error
    raise AssertionError("no error raised")


# --------------------------------------------------------------------------- classification


def test_classification_of_real_service_errors(make_emulator: Callable[..., BatchEmulator]) -> None:
    throttled = make_emulator(throttle_rate=1.0, retry_after=0.05, operations={GET_POOL})
    busy = make_emulator(unavailable_rate=1.0, retry_after=2.5, operations={GET_POOL})
    healthy = make_emulator()
    client = sdk(healthy)

    error_429 = caught(lambda: sdk(throttled).get_pool("pool"))
    assert isinstance(error_429, HttpResponseError)
    assert (status_code(error_429), error_code(error_429)) == (429, "TooManyRequests")
    assert is_transient(error_429)
    assert retry_after(error_429) == pytest.approx(0.05)  # retry-after-ms wins over Retry-After

    error_503 = caught(lambda: sdk(busy).get_pool("pool"))
    assert (status_code(error_503), error_code(error_503)) == (503, "ServerBusy")
    assert is_transient(error_503) and retry_after(error_503) == pytest.approx(2.5)
    assert describe(error_503).startswith("HTTP 503 ServerBusy: ")

    missing = caught(lambda: client.get_job("nope"))
    assert isinstance(missing, ResourceNotFoundError)
    assert (status_code(missing), error_code(missing)) == (404, "JobNotFound")
    assert not is_transient(missing) and retry_after(missing) is None

    make_pool(client)
    conflict = caught(lambda: make_pool(client))
    assert isinstance(conflict, ResourceExistsError) and status_code(conflict) == 409
    assert not is_transient(conflict)

    bad = caught(
        lambda: client.create_job(
            bm.BatchJobCreateOptions(id="not a valid id!", pool_info=bm.BatchPoolInfo(pool_id="p"))
        )
    )
    assert status_code(bad) == 400 and not is_transient(bad)

    stale = caught(
        lambda: client.get_pool("pool", etag='"0x0"', match_condition=MatchConditions.IfNotModified)
    )
    assert status_code(stale) == 412 and not is_transient(stale)

    wrong_key = BatchClient(
        healthy.endpoint,
        AzureNamedKeyCredential(healthy.account_name, "d3Jvbmcga2V5"),
        retry_total=0,
    )
    denied = caught(lambda: wrong_key.get_pool("pool"))
    assert status_code(denied) == 403 and error_code(denied) == "AuthenticationFailed"
    assert not is_transient(denied)

    dropped = make_emulator(drop_rate=1.0, operations={GET_POOL})
    lost = caught(lambda: sdk(dropped).get_pool("pool"))
    assert isinstance(lost, ServiceResponseError) and is_transient(lost)
    assert retry_after(lost) is None


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = BatchClient(
        f"http://127.0.0.1:{port}",
        AzureNamedKeyCredential("acct", "a2V5"),
        retry_total=0,
        connection_timeout=5,
    )
    refused = caught(lambda: client.get_pool("pool"))
    assert isinstance(refused, ServiceRequestError) and is_transient(refused)
    sleeps = Sleeps(real=True)
    error = caught(
        lambda: run("get pool", lambda: client.get_pool("pool"), deadline=0.3, sleep=sleeps)
    )
    assert isinstance(error, DeadlineExceeded)
    assert isinstance(error.last_error, ServiceRequestError)
    assert error.attempts == len(sleeps.waits) + 1 >= 2


def test_other_errors_are_not_transient() -> None:
    assert not is_transient(ValueError("bug"))
    assert not is_transient(KeyError("bug"))
    assert is_transient(TransientError("again"))
    assert is_transient(ConnectionResetError())
    assert retry_after(TransientError("again", retry_after=0.3)) == 0.3


# --------------------------------------------------------------------------- policies


def test_throttling_is_retried_until_success(make_emulator: Callable[..., BatchEmulator]) -> None:
    emulator = make_emulator(
        seed=5, throttle_rate=0.5, unavailable_rate=0.2, retry_after=0.05, operations={GET_POOL}
    )
    client = sdk(emulator)
    make_pool(client)
    for _ in range(10):
        pool = call("get pool 'pool'", client.get_pool, "pool", deadline=60)
        assert pool.id == "pool"
    injected = emulator.faults.injected
    assert injected.get("throttle", 0) >= 1 and injected.get("unavailable", 0) >= 1
    # Every request was either a fault or one of the ten successes.
    assert emulator.request_counts[GET_POOL] == 10 + injected["throttle"] + injected["unavailable"]


def test_waits_are_what_the_service_asked_for(make_emulator: Callable[..., BatchEmulator]) -> None:
    emulator = make_emulator(seed=1, throttle_rate=0.6, retry_after=0.05, operations={GET_POOL})
    client = sdk(emulator)
    make_pool(client)
    sleeps = Sleeps(real=True)
    for _ in range(5):
        run("get pool", lambda: client.get_pool("pool"), deadline=60, sleep=sleeps)
    assert len(sleeps.waits) == emulator.faults.injected["throttle"] >= 1
    assert sleeps.waits == [pytest.approx(0.05)] * len(sleeps.waits)


def test_backoff_with_jitter_without_retry_after(
    make_emulator: Callable[..., BatchEmulator],
) -> None:
    # Dropped connections carry no Retry-After: exponential backoff, each wait drawn from
    # the upper half of 0.1 s, 0.2 s, 0.4 s, ...
    emulator = make_emulator(drop_rate=1.0, operations={GET_POOL})
    client = sdk(emulator)
    attempts = 0

    def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts <= 6:
            client.get_pool("pool")
        return "done"

    sleeps = Sleeps()
    assert run("get pool", flaky, deadline=1000, sleep=sleeps) == "done"
    assert len(sleeps.waits) == 6
    for n, wait in enumerate(sleeps.waits):
        ceiling = min(_retry.DEFAULT_MAX_BACKOFF, _retry.DEFAULT_INITIAL_BACKOFF * 2**n)
        assert ceiling / 2 <= wait <= ceiling
    assert emulator.request_counts[GET_POOL] == emulator.faults.injected["drop"] == 6


def test_deadline_raises_the_last_error_named(make_emulator: Callable[..., BatchEmulator]) -> None:
    emulator = make_emulator(unavailable_rate=1.0, retry_after=0.05, operations={GET_POOL})
    client = sdk(emulator)
    error = caught(lambda: call("get pool 'pool'", client.get_pool, "pool", deadline=0.4))
    assert isinstance(error, DeadlineExceeded)
    assert error.operation == "get pool 'pool'"
    assert error.elapsed > 0 and error.deadline == 0.4
    assert error.attempts == emulator.request_counts[GET_POOL] >= 2
    assert error.attempts == emulator.faults.injected["unavailable"]
    assert isinstance(error.__cause__, HttpResponseError) and error.__cause__ is error.last_error
    message = str(error)
    assert message.startswith("get pool 'pool' failed after ")
    assert "deadline of 0.4 s" in message
    assert "HTTP 503 ServerBusy" in message
    assert f"{error.attempts} attempts" in message


def test_deadline_zero_is_one_attempt(make_emulator: Callable[..., BatchEmulator]) -> None:
    emulator = make_emulator(throttle_rate=1.0, retry_after=0.05, operations={GET_POOL})
    error = caught(lambda: call("get pool", sdk(emulator).get_pool, "pool", deadline=0))
    assert isinstance(error, DeadlineExceeded) and error.attempts == 1
    assert emulator.request_counts[GET_POOL] == 1


def test_retry_after_beyond_the_deadline_gives_up_at_once(
    make_emulator: Callable[..., BatchEmulator],
) -> None:
    emulator = make_emulator(throttle_rate=1.0, retry_after=30, operations={GET_POOL})
    sleeps = Sleeps()
    client = sdk(emulator)
    error = caught(lambda: run("get pool", lambda: client.get_pool("p"), deadline=5, sleep=sleeps))
    assert isinstance(error, DeadlineExceeded) and error.attempts == 1
    assert sleeps.waits == []
    assert "deadline of 5 s would pass during the 30 s wait" in str(error)


def test_non_transient_errors_surface_at_once(make_emulator: Callable[..., BatchEmulator]) -> None:
    emulator = make_emulator()
    client = sdk(emulator)
    with pytest.raises(ResourceNotFoundError):
        call("get job 'nope'", client.get_job, "nope", deadline=60)
    assert emulator.request_counts["Jobs_GetJob"] == 1
    make_pool(client)
    with pytest.raises(ResourceExistsError):
        call("create pool", make_pool, client, deadline=60)
    assert emulator.request_counts["Pools_CreatePool"] == 2
    calls = 0

    def buggy() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("bug")

    with pytest.raises(KeyError):
        call("buggy", buggy, deadline=60)
    assert calls == 1


def test_transient_error_from_the_callable_is_retried() -> None:
    sleeps = Sleeps()
    outcomes: list[Any] = [TransientError("later", retry_after=0.25), TransientError("again"), 7]

    def step() -> int:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return int(outcome)

    assert run("step", step, deadline=60, sleep=sleeps) == 7
    assert sleeps.waits[0] == 0.25
    assert 0.1 <= sleeps.waits[1] <= 0.2  # attempt 2: the upper half of 0.2 s


def test_retried_decorator() -> None:
    attempts: list[int] = []

    @retried("add", deadline=60)
    def add(a: int, *, b: int) -> int:
        attempts.append(a)
        if len(attempts) < 2:
            raise TransientError("once more", retry_after=0)
        return a + b

    assert add(1, b=2) == 3
    assert attempts == [1, 1]
    assert add.__name__ == "add"


def test_policy_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="deadline"):
        policy("x", deadline=-1)
    with pytest.raises(ValueError, match="backoff"):
        policy("x", initial_backoff=0)


def test_redaction() -> None:
    url = "https://acct.blob.core.windows.net/c/b?sv=2024-01-01&se=2030-01-01&sp=r&sig=c2VjcmV0%3D"
    text = redact(f"GET {url} failed; AccountName=a;AccountKey=c2VjcmV0a2V5;x=y")
    assert "c2VjcmV0" not in text
    assert "sig=***" in text and "AccountKey=***" in text and "sv=2024-01-01" in text
    assert (
        redact("Authorization: SharedKey acct:c2lnbmF0dXJl") == "Authorization: SharedKey acct:***"
    )
    error = DeadlineExceeded(
        "download blob",
        deadline=1,
        elapsed=1.2,
        attempts=3,
        last_error=ConnectionError(f"HTTPSConnectionPool: Max retries exceeded with url: {url}"),
    )
    assert "c2VjcmV0" not in str(error) and "sig=***" in str(error)
