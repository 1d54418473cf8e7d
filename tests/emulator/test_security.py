"""Security and robustness of the emulator's front door.

Shared Key authentication as Azure Batch does it, loopback-only listening, the account key
kept out of everything the emulator shows (repr, error bodies, logs, tasks, its data
directory; the CLI prints it once, in its start-up banner), and bad requests answered with
Batch's errors while the emulator keeps serving. Requests the SDK cannot send are made by
hand and signed with ``batchexecutor.emulator._auth``.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
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
from azure.core.exceptions import HttpResponseError

from batchexecutor.emulator import BatchEmulator
from batchexecutor.emulator._auth import sign, string_to_sign
from tests.conftest import wait_for, wait_task_completed

REPO_ROOT = Path(__file__).resolve().parents[2]
API = "api-version=2025-06-01"
JSON_TYPE = "application/json; odata=minimalmetadata"
OTHER_KEY = base64.b64encode(b"not the account key, but well-formed").decode()


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str:
        return str(self.json()["code"])

    @property
    def values(self) -> dict[str, str]:
        return {v["key"]: v["value"] for v in self.json().get("values", [])}


def send(
    emulator: BatchEmulator,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    key: str | None = None,
    account: str | None = None,
    signed: bool = True,
    sign_as: tuple[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> Reply:
    """One request on a fresh connection, signed with ``key`` (default: the account's).

    ``sign_as`` signs a different (method, target) than the one sent; ``extra`` headers are
    added after signing.
    """
    headers = {"ocp-date": formatdate(usegmt=True)}
    if method not in ("GET", "HEAD"):
        headers["Content-Type"] = JSON_TYPE
        headers["Content-Length"] = str(len(body))
    if signed:
        name = account or emulator.account_name
        signed_method, signed_target = sign_as or (method, target)
        text = string_to_sign(signed_method, signed_target, headers, name)
        headers["Authorization"] = f"SharedKey {name}:{sign(key or emulator.account_key, text)}"
    headers.update(extra or {})
    url = urlsplit(emulator.endpoint)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        connection.request(method, target, body=body or None, headers=headers)
        response = connection.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


def assert_batch_error(emulator: BatchEmulator, reply: Reply, status: int, code: str) -> None:
    """The body Azure Batch sends with every error (spec definition ``BatchError``)."""
    assert reply.status == status, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert set(body) <= {"odata.metadata", "code", "message", "values"}
    assert body["odata.metadata"] == (
        f"{emulator.endpoint}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container."
        "errors/@Element"
    )
    assert body["code"] == code
    assert set(body["message"]) == {"lang", "value"}
    assert body["message"]["lang"] == "en-US"
    assert isinstance(body["message"]["value"], str) and body["message"]["value"]
    for item in body.get("values", []):
        assert set(item) == {"key", "value"}
        assert isinstance(item["key"], str) and isinstance(item["value"], str)
    assert emulator.account_key not in reply.body.decode()


def still_serving(client: BatchClient) -> None:
    assert [p.id for p in client.list_pools()] == ["pool"]


# --------------------------------------------------------------------------- authentication


def test_wrong_key_is_authentication_failed(
    emulator: BatchEmulator, client: BatchClient, pool: str
) -> None:
    intruder = BatchClient(
        emulator.endpoint, AzureNamedKeyCredential(emulator.account_name, OTHER_KEY)
    )
    with pytest.raises(HttpResponseError) as caught:
        intruder.get_pool(pool)
    assert caught.value.status_code == 403
    assert caught.value.error is not None and caught.value.error.code == "AuthenticationFailed"
    with pytest.raises(HttpResponseError) as caught:
        intruder.create_job(
            bm.BatchJobCreateOptions(id="j", pool_info=bm.BatchPoolInfo(pool_id=pool))
        )
    assert caught.value.status_code == 403
    assert [j.id for j in client.list_jobs()] == [], "nothing was created"
    reply = send(emulator, "GET", f"/pools?{API}", key=OTHER_KEY)
    assert_batch_error(emulator, reply, 403, "AuthenticationFailed")
    assert "AuthenticationErrorDetail" in reply.values
    still_serving(client)


@pytest.mark.parametrize(
    "how",
    ["unsigned", "other account name", "not SharedKey", "empty signature"],
)
def test_unsigned_or_malformed_authorization_is_rejected(
    emulator: BatchEmulator, client: BatchClient, pool: str, how: str
) -> None:
    target = f"/pools?{API}"
    if how == "unsigned":
        reply = send(emulator, "GET", target, signed=False)
    elif how == "other account name":
        reply = send(emulator, "GET", target, account="someoneelse")
    elif how == "not SharedKey":
        reply = send(emulator, "GET", target, extra={"Authorization": "Bearer abc.def.ghi"})
    else:
        reply = send(
            emulator, "GET", target, extra={"Authorization": f"SharedKey {emulator.account_name}:"}
        )
    assert_batch_error(emulator, reply, 403, "AuthenticationFailed")
    still_serving(client)


@pytest.mark.parametrize(
    ("method", "target", "signed_as"),
    [
        ("GET", f"/jobs?{API}", ("GET", f"/pools?{API}")),
        ("GET", f"/pools?{API}&maxresults=1", ("GET", f"/pools?{API}&maxresults=2")),
        ("DELETE", f"/pools/pool?{API}", ("GET", f"/pools/pool?{API}")),
    ],
    ids=["path", "query", "verb"],
)
def test_signature_covers_verb_path_and_query(
    emulator: BatchEmulator,
    client: BatchClient,
    pool: str,
    method: str,
    target: str,
    signed_as: tuple[str, str],
) -> None:
    reply = send(emulator, method, target, sign_as=signed_as)
    assert_batch_error(emulator, reply, 403, "AuthenticationFailed")
    still_serving(client)


def test_signature_covers_ocp_headers(
    emulator: BatchEmulator, client: BatchClient, pool: str
) -> None:
    # Signed for one ocp-date, sent with another (a replayed or altered request).
    reply = send(
        emulator, "GET", f"/pools?{API}", extra={"ocp-date": "Fri, 17 Feb 2017 00:00:00 GMT"}
    )
    assert_batch_error(emulator, reply, 403, "AuthenticationFailed")
    still_serving(client)


# --------------------------------------------------------------------------- listening


def test_listens_on_loopback_only(emulator: BatchEmulator, client: BatchClient, pool: str) -> None:
    url = urlsplit(emulator.endpoint)
    assert url.hostname == "127.0.0.1"
    port = url.port
    assert port is not None
    others = {"127.0.0.2"}
    with contextlib.suppress(OSError):
        others |= {
            str(info[4][0])
            for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        }
    others.discard("127.0.0.1")
    for address in sorted(others):
        with pytest.raises(OSError), socket.create_connection((address, port), timeout=5):
            pass
    still_serving(client)


# --------------------------------------------------------------------------- the key


def test_account_key_is_never_shown(
    emulator: BatchEmulator, client: BatchClient, pool: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = emulator.account_key
    assert key not in repr(emulator) and key not in str(emulator)
    client.create_job(bm.BatchJobCreateOptions(id="job", pool_info=bm.BatchPoolInfo(pool_id=pool)))
    # A task sees its Batch environment, never the account key.
    client.create_task("job", bm.BatchTaskCreateOptions(id="env", command_line="env"))
    wait_task_completed(client, "job", "env")
    environment = b"".join(client.download_task_file("job", "env", "stdout.txt")).decode()
    assert "AZ_BATCH_ACCOUNT_NAME=" in environment
    assert key not in environment
    # Error bodies: failed authentication, bad input, not found.
    target = f"/pools?{API}"
    replies = [
        send(emulator, "GET", target, key=OTHER_KEY),
        send(emulator, "GET", target, signed=False),
        send(emulator, "POST", target, b"{not json"),
        send(emulator, "GET", f"/pools/ghost?{API}"),
    ]
    for reply in replies:
        assert reply.status >= 400
        assert key not in reply.body.decode()
    emulator_records = [r for r in caplog.records if r.name.startswith("batchexecutor")]
    assert emulator_records, "the emulator logs requests at DEBUG"
    assert key not in caplog.text
    for record in caplog.records:
        assert key not in record.getMessage()


def test_account_key_is_not_written_to_the_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with BatchEmulator(data_dir=data) as emulator:
        key = emulator.account_key
        client = BatchClient(emulator.endpoint, emulator.credential)
        client.create_pool(
            bm.BatchPoolCreateOptions(
                id="pool", vm_size="standard_d2s_v3", target_dedicated_nodes=1
            )
        )
        wait_for(lambda: client.get_pool("pool").allocation_state == "steady")
        client.create_job(
            bm.BatchJobCreateOptions(id="job", pool_info=bm.BatchPoolInfo(pool_id="pool"))
        )
        client.create_task("job", bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
        wait_task_completed(client, "job", "t")
    raw_key = base64.b64decode(key)
    files = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.name.startswith("state.sqlite3") for p in files)
    for path in files:
        content = path.read_bytes()
        assert key.encode() not in content, path
        assert raw_key not in content, path


class Cli:
    """``python -m batchexecutor emulator`` as a subprocess, stdout read line by line."""

    def __init__(self, *flags: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "batchexecutor", "emulator", *flags],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        self.banner = [self.process.stdout.readline() for _ in range(4)]

    def finish(self) -> tuple[int, str, str]:
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


def test_cli_prints_the_key_only_in_its_start_up_banner(cli: Any) -> None:
    running = cli()
    banner = running.banner
    assert banner[0].startswith("Azure Batch emulator listening on http://127.0.0.1:"), banner
    endpoint = banner[0].split(" on ", 1)[1].strip()
    assert banner[1].strip() == "account name: emulator"
    assert banner[2].strip().startswith("account key:")
    key = banner[2].split(":", 1)[1].strip()
    base64.b64decode(key, validate=True)
    good = BatchClient(endpoint, AzureNamedKeyCredential("emulator", key))
    assert list(good.list_pools()) == []
    bad = BatchClient(endpoint, AzureNamedKeyCredential("emulator", OTHER_KEY))
    with pytest.raises(HttpResponseError):
        bad.get_pool("pool")
    code, out, err = running.finish()
    assert code == 0, err
    shown = "".join(banner) + out + err
    assert shown.count(key) == 1, "printed once, on the account key line"
    assert key not in out and key not in err


def test_cli_does_not_echo_a_rejected_key(cli: Any) -> None:
    not_base64 = "s3cret-but-not-base64!"
    code, out, err = cli("--account-key", not_base64).finish()
    assert code == 2
    assert "base64" in err
    assert not_base64 not in out + err


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def job(client: BatchClient, pool: str) -> str:
    client.create_job(bm.BatchJobCreateOptions(id="job", pool_info=bm.BatchPoolInfo(pool_id=pool)))
    return "job"


@pytest.mark.parametrize(
    ("target", "body", "code", "values"),
    [
        (f"/pools?{API}", b'{"id": "p2", "vmSize": ', "InvalidRequestBody", {}),
        (f"/pools?{API}", b"[1, 2, 3]", "InvalidRequestBody", {}),
        (f"/pools?{API}", b'{"id": "p2", "vmSize": "\xff\xfe"}', "InvalidRequestBody", {}),
        (f"/pools?{API}", b"", "InvalidRequestBody", {}),
        (
            f"/pools?{API}",
            b'{"id": "p2", "vmSize": 5}',
            "InvalidPropertyValue",
            {"PropertyName": "vmSize"},
        ),
        (
            f"/pools?{API}",
            b'{"id": "p2", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": "1"}',
            "InvalidPropertyValue",
            {"PropertyName": "targetDedicatedNodes"},
        ),
        (
            f"/pools?{API}",
            b'{"id": ["p2"], "vmSize": "standard_d2s_v3"}',
            "InvalidPropertyValue",
            {"PropertyName": "id"},
        ),
        (
            f"/jobs/job/tasks?{API}",
            b'{"id": "t", "commandLine": "/bin/true", '
            b'"constraints": {"maxTaskRetryCount": "three"}}',
            "InvalidPropertyValue",
            {"PropertyName": "constraints.maxTaskRetryCount"},
        ),
        (
            f"/jobs/job/tasks?{API}",
            b'{"id": "t", "commandLine": true}',
            "InvalidPropertyValue",
            {"PropertyName": "commandLine"},
        ),
    ],
    ids=[
        "truncated",
        "not-an-object",
        "not-utf8",
        "empty",
        "int-for-string",
        "string-for-int",
        "array-for-string",
        "nested",
        "bool-for-string",
    ],
)
def test_bad_request_bodies_are_rejected(
    emulator: BatchEmulator,
    client: BatchClient,
    job: str,
    target: str,
    body: bytes,
    code: str,
    values: dict[str, str],
) -> None:
    reply = send(emulator, "POST", target, body)
    assert_batch_error(emulator, reply, 400, code)
    assert values.items() <= reply.values.items()
    assert [p.id for p in client.list_pools()] == ["pool"], "nothing was created"
    assert [t.id for t in client.list_tasks(job)] == []
    still_serving(client)


def test_oversize_body_is_request_body_too_large(
    emulator: BatchEmulator, client: BatchClient, pool: str
) -> None:
    padding = "x" * (1024 * 1024)
    body = json.dumps({"id": "big", "vmSize": "standard_d2s_v3", "displayName": padding})
    reply = send(emulator, "POST", f"/pools?{API}", body.encode())
    assert_batch_error(emulator, reply, 413, "RequestBodyTooLarge")
    still_serving(client)


def test_sdk_splits_a_task_collection_that_is_too_large(
    emulator: BatchEmulator, client: BatchClient, job: str
) -> None:
    # 100 tasks of ~15 kB each exceed the 1 MB body limit.
    big = "x" * 15000
    tasks = [
        bm.BatchTaskCreateOptions(
            id=f"t{i:03}",
            command_line="/bin/true",
            environment_settings=[bm.EnvironmentSetting(name="BIG", value=big)],
        )
        for i in range(100)
    ]
    with pytest.raises(HttpResponseError) as caught:
        client.create_task_collection(job, bm.BatchTaskGroup(task_values=tasks))
    assert caught.value.status_code == 413
    assert caught.value.error is not None and caught.value.error.code == "RequestBodyTooLarge"
    assert list(client.list_tasks(job)) == []
    # create_tasks halves the chunk on RequestBodyTooLarge until it fits.
    client.create_tasks(job, tasks)
    assert len({t.id for t in client.list_tasks(job)}) == 100
    assert emulator.request_counts["Tasks_CreateTaskCollection"] >= 4


@pytest.mark.parametrize(
    ("method", "target", "status", "code", "values"),
    [
        (
            "GET",
            "/pools?api-version=2019-01-01.8.0",
            400,
            "InvalidQueryParameterValue",
            {"QueryParameterName": "api-version", "QueryParameterValue": "2019-01-01.8.0"},
        ),
        (
            "GET",
            "/pools",
            400,
            "MissingRequiredQueryParameter",
            {"QueryParameterName": "api-version"},
        ),
        ("GET", f"/no/such/thing?{API}", 400, "InvalidUri", {}),
        ("GET", f"/pools/pool/frobnicate?{API}", 400, "InvalidUri", {}),
        ("PATCH", f"/pools?{API}", 405, "UnsupportedHttpVerb", {}),
    ],
    ids=[
        "unknown-api-version",
        "no-api-version",
        "unknown-url",
        "unknown-sub-resource",
        "unsupported-verb",
    ],
)
def test_bad_urls_are_rejected(
    emulator: BatchEmulator,
    client: BatchClient,
    pool: str,
    method: str,
    target: str,
    status: int,
    code: str,
    values: dict[str, str],
) -> None:
    body = b"{}" if method == "PATCH" else b""
    reply = send(emulator, method, target, body)
    assert_batch_error(emulator, reply, status, code)
    assert values.items() <= reply.values.items()
    still_serving(client)
