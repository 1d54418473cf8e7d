"""Stores (batchexecutor._storage): one contract, a local directory and Azure Blob (Azurite).

The contract tests run on both stores; then what is particular to each: atomic local
writes, and for blobs the node locator (a container SAS: its scope, permissions and
expiry, and that its signature never shows in a repr, an error or a log).
"""

from __future__ import annotations

import io
import logging
import time
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ServiceRequestError
from azure.storage.blob import BlobServiceClient, ContainerClient, UserDelegationKey

from batchexecutor._errors import ObjectExistsError, ObjectNotFoundError, StorageError
from batchexecutor._storage import (
    NODE_SAS_PERMISSIONS,
    BlobStore,
    LocalStore,
    Store,
    open_store,
)
from tests.fixtures.azurite import Azurite, BlobContainer

HOUR = timedelta(hours=1)
DATA = bytes(range(256)) * 40  # 10,240 bytes: several read chunks of the test blob store


def blob_client(azurite: Azurite, container: str, **kwargs: Any) -> ContainerClient:
    return ContainerClient.from_connection_string(
        azurite.connection_string, container, retry_total=0, **kwargs
    )


@pytest.fixture(params=["local", pytest.param("blob", marks=pytest.mark.azurite)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    azurite: Azurite = request.getfixturevalue("azurite")
    container: BlobContainer = request.getfixturevalue("blob_container")
    client = blob_client(azurite, container.name)
    return BlobStore(client, deadline=10, read_chunk_size=1000, block_size=4096)


@pytest.fixture
def blob_store(azurite: Azurite, blob_container: BlobContainer) -> BlobStore:
    client = blob_client(azurite, blob_container.name)
    return BlobStore(client, deadline=10, read_chunk_size=1000, block_size=4096)


def signature_of(locator: str) -> str:
    (signature,) = parse_qs(urlsplit(locator).query)["sig"]
    assert len(signature) > 20
    return signature


def everything_shown(error: BaseException) -> str:
    """All an exception can show: its text, repr, attributes, and its whole chain."""
    return "\n".join(
        [str(error), repr(error), repr(vars(error)), *traceback.format_exception(error)]
    )


# --------------------------------------------------------------------------- contract


def test_put_get_overwrite(store: Store) -> None:
    store.put("j/a", b"first")
    assert store.get("j/a") == b"first"
    store.put("j/a", b"second")
    assert store.get("j/a") == b"second"
    with pytest.raises(ObjectExistsError) as caught:
        store.put("j/a", b"third", overwrite=False)
    assert caught.value.name == "j/a"
    assert store.get("j/a") == b"second"
    store.put("j/new", b"", overwrite=False)
    assert store.get("j/new") == b""


def test_missing_objects(store: Store) -> None:
    for read in (store.get, store.open, lambda name: store.get_range(name, 0, 1)):
        with pytest.raises(ObjectNotFoundError) as caught:
            read("j/missing")
        assert caught.value.name == "j/missing"
        assert "j/missing" in str(caught.value)
    assert not store.exists("j/missing")
    assert store.delete("j/missing") is False


def test_streams_in_and_out(store: Store) -> None:
    store.put_stream("j/whole", io.BytesIO(DATA))
    source = io.BytesIO(b"skip" + DATA + b"tail")
    source.seek(4)
    store.put_stream("j/part", source, length=len(DATA))
    for name in ("j/whole", "j/part"):
        with store.open(name) as file:
            pieces = []
            while piece := file.read(777):
                pieces.append(piece)
        assert b"".join(pieces) == DATA
    with store.open("j/whole") as file:
        assert file.read() == DATA


class OneWayStream(io.RawIOBase):
    """A stream that cannot seek, as a pipe or a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        piece = self._data.read(min(700, len(buffer)))
        buffer[: len(piece)] = piece
        return len(piece)


def test_streams_that_cannot_seek(store: Store) -> None:
    store.put_stream("j/pipe", OneWayStream(DATA))  # type: ignore[arg-type]
    assert store.get("j/pipe") == DATA
    with pytest.raises(ValueError, match="short"):
        store.put_stream("j/short", OneWayStream(b"abc"), length=10)  # type: ignore[arg-type]
    assert not store.exists("j/short")


def test_empty_object_reads(store: Store) -> None:
    store.put("j/empty", b"")
    with store.open("j/empty") as file:
        assert file.read() == b""
    assert store.get_range("j/empty", 0, 10) == b""


def test_ranges(store: Store) -> None:
    store.put("j/data", DATA)
    assert store.get_range("j/data", 0, 10) == DATA[:10]
    assert store.get_range("j/data", 5000, 3000) == DATA[5000:8000]
    assert store.get_range("j/data", len(DATA) - 5, 100) == DATA[-5:]
    assert store.get_range("j/data", len(DATA) + 10, 5) == b""
    assert store.get_range("j/data", 3, 0) == b""
    with pytest.raises(ValueError):
        store.get_range("j/data", -1, 5)


def test_writer_is_atomic(store: Store) -> None:
    with store.writer("j/w") as file:
        file.write(b"part one, ")
        assert not store.exists("j/w")  # nothing visible before the block ends
        file.write(b"part two")
    assert store.get("j/w") == b"part one, part two"

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.writer("j/w") as file:
        file.write(b"half")
        raise Boom
    assert store.get("j/w") == b"part one, part two"  # the old object, untouched
    with pytest.raises(Boom), store.writer("j/never") as file:
        file.write(b"x")
        raise Boom
    assert not store.exists("j/never")
    assert store.list_names("j/") == ["j/w"]  # no temporary leftovers in sight
    with pytest.raises(ObjectExistsError), store.writer("j/w", overwrite=False) as file:
        file.write(b"no")
    assert store.get("j/w") == b"part one, part two"


def test_listing_and_deleting(store: Store) -> None:
    for name in ["j/b", "j/a", "j/sub/c", "j2/a", "other"]:
        store.put(name, b"x")
    assert store.list_names("j/") == ["j/a", "j/b", "j/sub/c"]
    assert store.list_names("j") == ["j/a", "j/b", "j/sub/c", "j2/a"]
    assert store.list_names("j/s") == ["j/sub/c"]
    assert store.list_names() == ["j/a", "j/b", "j/sub/c", "j2/a", "other"]
    assert store.list_names("nothing/") == []
    assert store.delete("j/a") is True and not store.exists("j/a")
    assert store.delete_prefix("j/") == 2
    assert store.list_names() == ["j2/a", "other"]
    with pytest.raises(ValueError, match="non-empty prefix"):
        store.delete_prefix("")


@pytest.mark.parametrize(
    "name", ["", "/abs", "a//b", "a/", "../x", "a/../b", ".hidden", "a/.tmp", "a b", "a\\b", "é"]
)
def test_invalid_names_are_refused(store: Store, name: str) -> None:
    with pytest.raises(ValueError):
        store.put(name, b"x")
    with pytest.raises(ValueError):
        store.get(name)


def test_node_locator_reopens_the_store(store: Store) -> None:
    store.put("j/inputs/000000", b"input")
    locator = store.node_locator("j", expiry=HOUR)
    node = open_store(locator)
    assert type(node) is type(store)
    assert node.get("j/inputs/000000") == b"input"
    with node.writer("j/outcomes/000000") as file:
        file.write(b"outcome")
    assert store.get("j/outcomes/000000") == b"outcome"


def test_node_locator_checks_its_arguments(store: Store) -> None:
    with pytest.raises(ValueError, match="invalid job ID"):
        store.node_locator("no/slash", expiry=HOUR)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.node_locator("j", expiry=datetime.now() + HOUR)
    with pytest.raises(ValueError, match="not in the future"):
        store.node_locator("j", expiry=datetime.now(timezone.utc) - HOUR)


# --------------------------------------------------------------------------- local directory


def test_local_store_layout_and_locator(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.put("job/outcomes/000001", b"x")
    assert (tmp_path / "s" / "job" / "outcomes" / "000001").read_bytes() == b"x"
    assert store.node_locator("job", expiry=HOUR) == str(tmp_path / "s")
    assert repr(store) == f"LocalStore({str(tmp_path / 's')!r})"


def test_local_store_hides_and_cleans_temporary_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("job/a", b"x")
    # What a writer killed mid-write (os._exit) leaves behind.
    (tmp_path / "job" / ".a.123.tmp").write_bytes(b"partial")
    assert store.list_names() == ["job/a"]
    assert store.delete_prefix("job/") == 1
    assert not (tmp_path / "job").exists()


def test_local_store_relative_root_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = LocalStore("rel")
    store.put("j/x", b"1")
    assert Path(store.node_locator("j", expiry=HOUR)).is_absolute()


def test_open_store_refuses_missing_directories_and_bad_locators(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        open_store(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="empty"):
        open_store("")


def test_local_store_errors_are_storage_errors(tmp_path: Path) -> None:
    (tmp_path / "j").write_bytes(b"a file where a folder should be")
    store = LocalStore(tmp_path)
    with pytest.raises(StorageError, match="cannot write stored object 'j/x'"):
        store.put("j/x", b"1")


# --------------------------------------------------------------------------- Azure Blob


@pytest.mark.azurite
def test_blob_locator_is_a_read_write_container_sas(blob_store: BlobStore) -> None:
    expiry = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=5)
    locator = blob_store.node_locator("job-1", expiry=expiry)
    parts = urlsplit(locator)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == blob_store.url
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    assert query["sr"] == "c"  # container scope: see _storage's docstring
    assert query["sp"] == NODE_SAS_PERMISSIONS == "rw"
    assert datetime.fromisoformat(query["se"].replace("Z", "+00:00")) == expiry
    assert "st" not in query  # valid at once, whatever the node's clock says
    assert "spr" not in query  # Azurite is plain http; https endpoints get spr=https


@pytest.mark.azurite
def test_node_store_reads_and_writes_but_cannot_list_or_delete(
    blob_store: BlobStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    blob_store.put("job/function", b"f")
    locator = blob_store.node_locator("job", expiry=HOUR)
    signature = signature_of(locator)
    node = open_store(locator)
    assert isinstance(node, BlobStore)
    assert node.get("job/function") == b"f"
    node.put("job/outcomes/000000", b"o")
    # Uploads in blocks (as large outcomes go) need the write permission: they work.
    blocks = BlobStore(ContainerClient.from_container_url(locator), block_size=1024)
    with blocks.writer("job/outcomes/000001") as file:
        file.write(DATA)
    assert blob_store.get("job/outcomes/000001") == DATA

    errors: list[BaseException] = []
    for forbidden in (lambda: node.list_names("job/"), lambda: node.delete("job/function")):
        with pytest.raises(StorageError, match="access denied") as caught:
            forbidden()
        errors.append(caught.value)
    with pytest.raises(ObjectNotFoundError) as missing:
        node.get("job/nothing")
    errors.append(missing.value)
    with pytest.raises(StorageError, match="cannot issue a SAS") as no_key:
        node.node_locator("job", expiry=HOUR)
    errors.append(no_key.value)
    assert blob_store.exists("job/function")

    shown = [repr(node), str(node), repr(blocks), caplog.text, *map(everything_shown, errors)]
    assert "sig=REDACTED" in caplog.text or "sig=" not in caplog.text  # azure-core masks it
    for text in shown:
        assert signature not in text


@pytest.mark.azurite
def test_expired_locator_is_refused_without_showing_it(blob_store: BlobStore) -> None:
    blob_store.put("job/function", b"f")
    locator = blob_store.node_locator("job", expiry=timedelta(seconds=1))
    time.sleep(2.5)
    with pytest.raises(StorageError, match="access denied") as caught:
        open_store(locator).get("job/function")
    assert signature_of(locator) not in everything_shown(caught.value)


@pytest.mark.azurite
def test_unreachable_endpoint_fails_by_the_deadline_without_showing_the_sas(
    blob_store: BlobStore,
) -> None:
    locator = blob_store.node_locator("job", expiry=HOUR)
    parts = urlsplit(locator)
    dead = parts._replace(netloc="127.0.0.1:9").geturl()  # nothing listens on port 9
    store = BlobStore.from_url(dead, deadline=0.5)
    with pytest.raises(StorageError, match="failed after") as caught:
        store.get("job/function")
    assert signature_of(locator) not in everything_shown(caught.value)
    with pytest.raises(ValueError, match="not shown") as malformed:
        open_store(locator.replace("http://", "http://[bad"))
    assert signature_of(locator) not in everything_shown(malformed.value)


@pytest.mark.azurite
def test_streamed_read_survives_a_transient_failure(
    azurite: Azurite, blob_container: BlobContainer
) -> None:
    requests: list[str] = []
    fail_next = {"read": False}

    def hook(request: Any) -> None:
        requests.append(request.http_request.method)
        if fail_next["read"] and request.http_request.method == "GET":
            fail_next["read"] = False
            raise ServiceRequestError("connection reset (injected)")

    client = blob_client(azurite, blob_container.name, raw_request_hook=hook)
    store = BlobStore(client, deadline=10, read_chunk_size=4096)
    store.put("j/data", DATA)
    with store.open("j/data") as file:
        first = file.read(5000)  # the first range, and part of the second
        fail_next["read"] = True  # the third range fails once, then is retried
        rest = file.read()
    assert first + rest == DATA
    assert requests.count("GET") == 4  # 3 ranges of 4096 bytes, one of them twice


@pytest.mark.azurite
def test_writer_stages_blocks_and_commits_once(
    azurite: Azurite, blob_container: BlobContainer
) -> None:
    requests: list[str] = []
    fail_next = {"block": False}

    def hook(request: Any) -> None:
        query = parse_qs(urlsplit(request.http_request.url).query)
        kind = query.get("comp", ["blob"])[0]
        requests.append(f"{request.http_request.method} {kind}")
        if fail_next["block"] and kind == "block":
            fail_next["block"] = False
            raise ServiceRequestError("connection reset (injected)")

    client = blob_client(azurite, blob_container.name, raw_request_hook=hook)
    store = BlobStore(client, deadline=10, block_size=4096)
    with store.writer("j/big") as file:
        for start in range(0, len(DATA), 1000):
            file.write(DATA[start : start + 1000])
        fail_next["block"] = True  # one staging request fails once and is retried
        assert not store.exists("j/big")
    assert store.get("j/big") == DATA
    staged = [r for r in requests if r == "PUT block"]
    assert len(staged) == 4  # 3 blocks (4096 + 4096 + 2048), one of them twice
    assert requests.count("PUT blocklist") == 1
    requests.clear()
    with store.writer("j/small") as file:
        file.write(b"tiny")
    assert requests == ["PUT blob"]  # smaller than a block: a single upload
    with pytest.raises(ObjectExistsError), store.writer("j/big", overwrite=False) as file:
        file.write(DATA)  # the conflict shows at the commit
    assert store.get("j/big") == DATA


@pytest.mark.azurite
def test_streamed_read_notices_a_replaced_object(blob_store: BlobStore) -> None:
    blob_store.put("j/data", DATA)
    with blob_store.open("j/data") as file:
        file.read(10)
        blob_store.put("j/data", DATA[::-1])
        with pytest.raises(StorageError, match="changed while being read"):
            file.read()


class FakeTokenCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", int(time.time()) + 3600)


def test_entra_id_store_signs_with_a_user_delegation_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[datetime, datetime]] = []

    def get_user_delegation_key(
        self: BlobServiceClient, start: datetime, expiry: datetime, **kwargs: Any
    ) -> UserDelegationKey:
        asked.append((start, expiry))
        key = UserDelegationKey()
        key.signed_oid, key.signed_tid = "oid-1", "tid-1"
        key.signed_start, key.signed_expiry = "2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z"
        key.signed_service, key.signed_version = "b", "2024-08-04"
        key.value = "ZGVsZWdhdGlvbi1rZXktdmFsdWU="
        return key

    monkeypatch.setattr(BlobServiceClient, "get_user_delegation_key", get_user_delegation_key)
    client = ContainerClient(
        "https://acct.blob.core.windows.net", "jobs", credential=FakeTokenCredential()
    )
    store = BlobStore(client)
    locator = store.node_locator("job", expiry=timedelta(days=2))
    query = parse_qs(urlsplit(locator).query)
    assert locator.startswith("https://acct.blob.core.windows.net/jobs?")
    assert query["skoid"] == ["oid-1"] and query["sp"] == ["rw"] and query["spr"] == ["https"]
    assert len(asked) == 1 and asked[0][1] - asked[0][0] < timedelta(days=2, minutes=6)
    with pytest.raises(StorageError, match="at most 7 days"):
        store.node_locator("job", expiry=timedelta(days=8))


def test_blob_store_repr_never_shows_the_query() -> None:
    client = ContainerClient.from_container_url(
        "https://acct.blob.core.windows.net/jobs?sv=2024&sp=rw&sig=U0VDUkVUU0lHTkFUVVJF"
    )
    store = BlobStore(client)
    assert repr(store) == "BlobStore('https://acct.blob.core.windows.net/jobs')"
    assert "U0VDUkVU" not in str(store)
