"""BatchConfig (batchexecutor._config): construction, from_env, validation, secrets."""

from __future__ import annotations

import copy
import logging
import pickle
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.batch import models as bm
from azure.core.credentials import AccessToken, AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.transport import HttpTransport

from batchexecutor._batch import pool_exists
from batchexecutor._config import (
    AZURE_POLL_INTERVAL,
    DEFAULT_CONTAINER,
    ENVIRONMENT_VARIABLES,
    LOCAL_POLL_INTERVAL,
    BatchConfig,
    ConfigurationError,
    Secret,
    default_home,
)
from batchexecutor.emulator import BatchEmulator, FaultPlan
from tests.fixtures.azurite import Azurite

# Made-up secrets, distinctive enough to search for in any output.
BATCH_KEY = "QkFUQ0gtS0VZLXNlY3JldC0wMTIzNDU2Nzg5LWFiY2RlZg=="
STORAGE_KEY = "U1RPUkFHRS1LRVktc2VjcmV0LTk4NzY1NDMyMTAtemp5eA=="
ENDPOINT = "https://myacct.westeurope.batch.azure.com"
CONNECTION = (
    "DefaultEndpointsProtocol=https;AccountName=mystore;"
    f"AccountKey={STORAGE_KEY};EndpointSuffix=core.windows.net"
)
SECRETS = (BATCH_KEY, STORAGE_KEY, CONNECTION)


class FakeTokenCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", 2**31)


def env(**values: str) -> dict[str, str]:
    return dict(values)


def full_env(**changes: str) -> dict[str, str]:
    """A complete shared-key configuration, with ``changes`` applied."""
    values = env(
        AZURE_BATCH_ENDPOINT=ENDPOINT,
        AZURE_BATCH_ACCOUNT="myacct",
        AZURE_BATCH_ACCESS_KEY=BATCH_KEY,
        AZURE_STORAGE_CONNECTION_STRING=CONNECTION,
    )
    values.update(changes)
    return values


def assert_no_secret(text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    for secret in SECRETS:
        assert secret.encode() not in data
        assert secret[:16].encode() not in data


def config_error(**kwargs: Any) -> ConfigurationError:
    endpoint = kwargs.pop("batch_endpoint", ENDPOINT)
    with pytest.raises(ConfigurationError) as caught:
        BatchConfig(endpoint, **kwargs)
    assert_no_secret(str(caught.value))
    return caught.value


def env_error(environ: dict[str, str]) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        BatchConfig.from_env(environ)
    assert_no_secret(str(caught.value))
    return caught.value


# --------------------------------------------------------------------------- construction


def test_shared_key_and_connection_string() -> None:
    config = BatchConfig(
        ENDPOINT + "/",
        batch_account_key=BATCH_KEY,
        storage_connection_string=CONNECTION,
        pool_id="pool-1",
    )
    assert config.batch_endpoint == ENDPOINT
    assert config.batch_account_name == "myacct"  # read from the endpoint
    assert config.batch_account_key == Secret(BATCH_KEY)
    assert config.uses_shared_key
    assert config.storage_kind == "blob"
    assert config.storage_container == DEFAULT_CONTAINER
    assert config.blob_account_url == "https://mystore.blob.core.windows.net"
    assert config.blob_account_name == "mystore"
    key = config.blob_account_key
    assert key is not None and key.reveal() == STORAGE_KEY
    assert (config.poll_interval_min, config.poll_interval_max) == AZURE_POLL_INTERVAL
    assert config.retention is None
    credential = config.batch_credential_object()
    assert isinstance(credential, AzureNamedKeyCredential)
    assert credential.named_key == ("myacct", BATCH_KEY)


def test_account_url_with_key_or_token_credential() -> None:
    config = BatchConfig(
        "myacct.eastus.batch.azure.com",  # scheme added
        batch_credential=FakeTokenCredential(),
        storage_account_name="mystore",
        storage_account_key=STORAGE_KEY,
        storage_container="data-01",
        retention=3600,
        request_deadline=30,
    )
    assert config.batch_endpoint == "https://myacct.eastus.batch.azure.com"
    assert not config.uses_shared_key
    assert isinstance(config.batch_credential_object(), FakeTokenCredential)
    assert config.blob_account_url == "https://mystore.blob.core.windows.net"
    assert config.retention == timedelta(hours=1)
    sovereign = BatchConfig(
        "https://myacct.chinanorth.batch.chinacloudapi.cn",
        batch_account_key=BATCH_KEY,
        storage_account_url="https://mystore.blob.core.chinacloudapi.cn",
        storage_credential=FakeTokenCredential(),
    )
    assert sovereign.blob_account_name == "mystore"
    azurite = BatchConfig(
        "http://127.0.0.1:8000",
        batch_account_name="emulator",
        batch_account_key=BATCH_KEY,
        storage_account_url="http://127.0.0.1:10000/devstoreaccount1",
        storage_account_key=STORAGE_KEY,
    )
    assert azurite.blob_account_name == "devstoreaccount1"


def test_local_directory_storage(tmp_path: Path) -> None:
    config = BatchConfig.for_emulator("http://127.0.0.1:1234", "emulator", BATCH_KEY, home=tmp_path)
    assert config.storage_kind == "local"
    assert config.storage_dir == tmp_path / "storage"
    assert (config.poll_interval_min, config.poll_interval_max) == LOCAL_POLL_INTERVAL
    assert config.poll_interval_max <= 0.1  # the local default reacts within ~0.1 s
    with pytest.raises(ConfigurationError, match="local directory"):
        config.container_client()


def test_immutable_and_replace() -> None:
    config = BatchConfig(
        ENDPOINT, batch_account_key=BATCH_KEY, storage_connection_string=CONNECTION
    )
    with pytest.raises(AttributeError):
        config.pool_id = "other"  # type: ignore[misc]
    other = config.replace(pool_id="other")
    assert other.pool_id == "other" and config.pool_id is None
    assert other != config and config.replace() == config
    assert hash(config.replace()) == hash(config)
    with pytest.raises(ConfigurationError, match="pool_id"):
        config.replace(pool_id="not valid!")
    with pytest.raises(TypeError, match="no setting"):
        config.replace(colour="blue")
    assert copy.deepcopy(config) is config


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "setting", "fragment"),
    [
        ({"batch_endpoint": "ftp://x.example"}, "batch_endpoint", "not an http(s) URL"),
        ({"batch_endpoint": ""}, "batch_endpoint", "is required"),
        ({"batch_endpoint": ENDPOINT + "?sig=abc"}, "batch_endpoint", "query string"),
        (
            {"batch_endpoint": "https://u:p@myacct.x.batch.azure.com"},
            "batch_endpoint",
            "credentials",
        ),
        (
            {"batch_endpoint": "http://127.0.0.1:1", "batch_account_key": BATCH_KEY},
            "batch_account_name",
            "is required",
        ),
        ({"batch_account_key": "not base64 !!"}, "batch_account_key", "base64"),
        (
            {"batch_account_key": BATCH_KEY, "batch_credential": FakeTokenCredential()},
            "batch_account_key",
            "exclusive",
        ),
        ({"batch_credential": "a string"}, "batch_credential", "TokenCredential"),
        ({"storage_connection_string": None}, "storage_connection_string", "no storage"),
        (
            {"storage_connection_string": "AccountName=x;" + "AccountKy=" + STORAGE_KEY},
            "storage_connection_string",
            "malformed",
        ),
        (
            {"storage_connection_string": "garbage " + STORAGE_KEY},
            "storage_connection_string",
            "malformed",
        ),
        (
            {"storage_connection_string": "AccountName=x;AccountKey=" + STORAGE_KEY[:-3] + "!"},
            "storage_connection_string",
            "not base64",
        ),
        (
            {"storage_connection_string": CONNECTION, "storage_account_name": "other"},
            "storage_connection_string",
            "exclusive",
        ),
        (
            {"storage_connection_string": CONNECTION, "storage_dir": "/tmp/x"},
            "storage_dir",
            "exclusive",
        ),
        ({"storage_account_name": "Bad_Name"}, "storage_account_name", "valid storage account"),
        ({"storage_account_key": STORAGE_KEY}, "storage_account_name", "is required"),
        (
            {"storage_account_url": "https://10.0.0.1", "storage_account_key": STORAGE_KEY},
            "storage_account_name",
            "is required",
        ),
        (
            {"storage_connection_string": CONNECTION, "storage_container": "Bad--Name"},
            "storage_container",
            "container name",
        ),
        (
            {"storage_connection_string": CONNECTION, "pool_id": "x" * 65},
            "pool_id",
            "Batch ID",
        ),
        (
            {"storage_connection_string": CONNECTION, "poll_interval_min": 0},
            "poll_interval_min",
            "positive",
        ),
        (
            {
                "storage_connection_string": CONNECTION,
                "poll_interval_min": 5,
                "poll_interval_max": 1,
            },
            "poll_interval_min",
            "must not exceed poll_interval_max",
        ),
        (
            {"storage_connection_string": CONNECTION, "poll_interval_max": float("nan")},
            "poll_interval_max",
            "positive",
        ),
        ({"storage_connection_string": CONNECTION, "retention": -5}, "retention", "positive"),
        ({"storage_connection_string": CONNECTION, "retention": "1d"}, "retention", "timedelta"),
        (
            {"storage_connection_string": CONNECTION, "request_deadline": True},
            "request_deadline",
            "number of seconds",
        ),
    ],
)
def test_validation_names_the_setting(kwargs: dict[str, Any], setting: str, fragment: str) -> None:
    kwargs = dict(kwargs)
    needs_storage = not any(key.startswith("storage") for key in kwargs)
    if needs_storage:
        kwargs["storage_connection_string"] = CONNECTION
    error = config_error(**kwargs)
    assert error.setting == setting
    assert str(error).startswith(setting) or setting in str(error)
    assert fragment in str(error)
    assert isinstance(error, ValueError)


# --------------------------------------------------------------------------- from_env


def test_from_env_without_configuration_says_what_to_set() -> None:
    error = env_error({})
    message = str(error)
    assert error.setting == "AZURE_BATCH_ENDPOINT"
    for variable in (
        "AZURE_BATCH_ENDPOINT",
        "AZURE_BATCH_ACCOUNT",
        "AZURE_BATCH_ACCESS_KEY",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT",
        "AZURE_STORAGE_KEY",
    ):
        assert variable in message
    assert "local mode" in message and "AzureBatchExecutor.local()" in message
    assert "--local" in message


def test_from_env_shared_key_and_connection_string() -> None:
    config = BatchConfig.from_env(
        full_env(
            BATCHEXECUTOR_POOL_ID="my-pool",
            BATCHEXECUTOR_CONTAINER="jobs",
            BATCHEXECUTOR_POLL_INTERVAL_MIN="0.5",
            BATCHEXECUTOR_POLL_INTERVAL_MAX="1m",
            BATCHEXECUTOR_RETENTION="7d",
            BATCHEXECUTOR_REQUEST_DEADLINE="45",
            AZURE_STORAGE_ACCOUNT="ignored",  # the connection string wins, as in the Azure CLI
        )
    )
    assert config.batch_account_name == "myacct"
    assert config.pool_id == "my-pool" and config.storage_container == "jobs"
    assert (config.poll_interval_min, config.poll_interval_max) == (0.5, 60.0)
    assert config.retention == timedelta(days=7)
    assert config.request_deadline == 45.0
    assert config.blob_account_name == "mystore"
    assert config.storage_connection_string == Secret(CONNECTION)


def test_from_env_storage_account_and_key_or_entra() -> None:
    config = BatchConfig.from_env(
        env(
            AZURE_BATCH_ENDPOINT=ENDPOINT,
            AZURE_STORAGE_ACCOUNT="mystore",
            AZURE_STORAGE_KEY=STORAGE_KEY,
            BATCHEXECUTOR_RETENTION="none",
        )
    )
    assert config.batch_account_key is None  # no key: Microsoft Entra ID, as the CLI does
    assert config.storage_account_key == Secret(STORAGE_KEY)
    assert config.blob_account_url == "https://mystore.blob.core.windows.net"
    assert config.retention is None
    url = BatchConfig.from_env(
        env(
            AZURE_BATCH_ENDPOINT=ENDPOINT,
            BATCHEXECUTOR_STORAGE_ACCOUNT_URL="https://mystore.blob.core.usgovcloudapi.net",
        )
    )
    assert url.blob_account_url == "https://mystore.blob.core.usgovcloudapi.net"
    assert url.blob_account_key is None


def test_from_env_local_directory(tmp_path: Path) -> None:
    config = BatchConfig.from_env(
        env(
            AZURE_BATCH_ENDPOINT="http://127.0.0.1:9999",
            AZURE_BATCH_ACCOUNT="emulator",
            AZURE_BATCH_ACCESS_KEY=BATCH_KEY,
            BATCHEXECUTOR_STORAGE_DIR=str(tmp_path),
        )
    )
    assert config.storage_kind == "local" and config.storage_dir == tmp_path


@pytest.mark.parametrize(
    ("environ", "variable", "fragment"),
    [
        (env(AZURE_BATCH_ENDPOINT=ENDPOINT), "AZURE_STORAGE_CONNECTION_STRING", "no storage"),
        (
            env(AZURE_BATCH_ENDPOINT=ENDPOINT, AZURE_STORAGE_KEY=STORAGE_KEY),
            "AZURE_STORAGE_ACCOUNT",
            "AZURE_STORAGE_ACCOUNT is not",
        ),
        (
            full_env(BATCHEXECUTOR_STORAGE_DIR="/tmp/x"),
            "BATCHEXECUTOR_STORAGE_DIR",
            "AZURE_STORAGE_CONNECTION_STRING are both set",
        ),
        (
            full_env(AZURE_BATCH_ENDPOINT="http://127.0.0.1:1", AZURE_BATCH_ACCOUNT=""),
            "AZURE_BATCH_ACCOUNT",
            "is required",
        ),
        (full_env(AZURE_BATCH_ENDPOINT="ftp://x"), "AZURE_BATCH_ENDPOINT", "http(s) URL"),
        (full_env(AZURE_BATCH_ACCESS_KEY="%%%" + BATCH_KEY), "AZURE_BATCH_ACCESS_KEY", "base64"),
        (
            full_env(AZURE_STORAGE_CONNECTION_STRING="nonsense" + STORAGE_KEY),
            "AZURE_STORAGE_CONNECTION_STRING",
            "malformed",
        ),
        (full_env(BATCHEXECUTOR_CONTAINER="UPPER"), "BATCHEXECUTOR_CONTAINER", "container"),
        (full_env(BATCHEXECUTOR_POOL_ID="a b"), "BATCHEXECUTOR_POOL_ID", "Batch ID"),
        (
            full_env(BATCHEXECUTOR_POLL_INTERVAL_MIN="fast"),
            "BATCHEXECUTOR_POLL_INTERVAL_MIN",
            "number of seconds",
        ),
        (
            full_env(BATCHEXECUTOR_POLL_INTERVAL_MIN="10", BATCHEXECUTOR_POLL_INTERVAL_MAX="2"),
            "BATCHEXECUTOR_POLL_INTERVAL_MIN",
            "must not exceed BATCHEXECUTOR_POLL_INTERVAL_MAX",
        ),
        (full_env(BATCHEXECUTOR_RETENTION="a week"), "BATCHEXECUTOR_RETENTION", "unit"),
        (
            full_env(BATCHEXECUTOR_REQUEST_DEADLINE="0"),
            "BATCHEXECUTOR_REQUEST_DEADLINE",
            "positive",
        ),
    ],
)
def test_from_env_errors_name_the_variable(
    environ: dict[str, str], variable: str, fragment: str
) -> None:
    error = env_error(environ)
    assert error.setting == variable
    assert variable in str(error)
    assert fragment in str(error)


def test_every_variable_read_is_documented() -> None:
    import inspect
    import re

    from batchexecutor import _config

    for variable in ENVIRONMENT_VARIABLES:
        assert variable in (_config.__doc__ or "")
    quoted = re.findall(r'"((?:AZURE|BATCHEXECUTOR)_[A-Z_]+)"', inspect.getsource(_config))
    used = {name for name in quoted if not hasattr(_config, name)}  # not the constants
    assert "AZURE_BATCH_ENDPOINT" in used and "BATCHEXECUTOR_HOME" in used
    assert used <= set(ENVIRONMENT_VARIABLES)


def test_default_home(tmp_path: Path) -> None:
    assert default_home({"BATCHEXECUTOR_HOME": str(tmp_path)}) == tmp_path
    assert default_home({"BATCHEXECUTOR_HOME": "~/x"}) == Path.home() / "x"
    assert default_home({"XDG_CACHE_HOME": str(tmp_path)}) in (
        tmp_path / "batchexecutor",
        Path.home() / "Library" / "Caches" / "batchexecutor",  # macOS
        Path.home() / "AppData" / "Local" / "batchexecutor",  # Windows
    )


# --------------------------------------------------------------------------- secrets


@pytest.fixture
def secret_config() -> BatchConfig:
    return BatchConfig.from_env(full_env())


def test_no_secret_in_repr_str_or_format(secret_config: BatchConfig) -> None:
    for text in (repr(secret_config), str(secret_config), f"{secret_config}", f"{secret_config!r}"):
        assert_no_secret(text)
        assert "***" in text
    assert "myacct" in repr(secret_config)
    key = secret_config.batch_account_key
    assert key is not None
    assert_no_secret(repr(key) + str(key) + f"{key}")
    assert_no_secret(repr([secret_config, key]))


def test_pickle_drops_the_secrets(secret_config: BatchConfig) -> None:
    data = pickle.dumps(secret_config)
    assert_no_secret(data)
    restored = pickle.loads(data)
    assert restored.credentials_stripped
    assert restored.batch_endpoint == secret_config.batch_endpoint
    assert restored.blob_account_url == secret_config.blob_account_url
    assert restored.batch_account_key is None and restored.storage_connection_string is None
    assert "credentials_stripped=True" in repr(restored)
    with pytest.raises(ConfigurationError, match="pickles never carry credentials"):
        restored.batch_client()
    with pytest.raises(ConfigurationError, match="pickles never carry credentials"):
        restored.container_client()
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Secret(BATCH_KEY))
    token = BatchConfig(
        ENDPOINT, batch_credential=FakeTokenCredential(), storage_connection_string=CONNECTION
    )
    assert pickle.loads(pickle.dumps(token)).batch_credential is None


def test_no_secret_in_errors_or_logs(
    caplog: pytest.LogCaptureFixture, emulator: BatchEmulator
) -> None:
    caplog.set_level(logging.DEBUG)
    config = BatchConfig(
        emulator.endpoint,
        batch_account_name=emulator.account_name,
        batch_account_key=emulator.account_key,
        storage_connection_string=CONNECTION,
    )
    client = config.batch_client(logging_enable=True)
    with pytest.raises(HttpResponseError) as caught:
        client.get_job("missing")
    assert pool_exists(client, "missing") is False
    client.close()
    outputs = [caplog.text, str(caught.value), repr(caught.value), repr(config)]
    for text in outputs:
        assert emulator.account_key not in text
        assert_no_secret(text)


# --------------------------------------------------------------------------- clients


@pytest.fixture
def faulty_emulator() -> Iterator[BatchEmulator]:
    plan = FaultPlan(throttle_rate=1.0, retry_after=0.05, operations=frozenset({"Pools_GetPool"}))
    with BatchEmulator(max_processes=1, faults=plan) as emulator:
        yield emulator


def test_batch_client_has_the_sdk_retries_off(
    faulty_emulator: BatchEmulator, tmp_path: Path
) -> None:
    config = BatchConfig.for_emulator(
        faulty_emulator.endpoint,
        faulty_emulator.account_name,
        faulty_emulator.account_key,
        home=tmp_path,
    )
    client = config.batch_client()
    client.create_pool(
        bm.BatchPoolCreateOptions(id="pool", vm_size="standard_d2s_v3", target_dedicated_nodes=0)
    )
    with pytest.raises(HttpResponseError) as caught:
        client.get_pool("pool")
    assert caught.value.status_code == 429
    # One request: the SDK did not retry (the policies in _retry do, within a deadline).
    assert faulty_emulator.request_counts["Pools_GetPool"] == 1


@pytest.mark.azurite
def test_container_client_from_connection_string_and_account_url(azurite: Azurite) -> None:
    by_string = BatchConfig(
        ENDPOINT,
        batch_account_key=BATCH_KEY,
        storage_connection_string=azurite.connection_string,
        storage_container="cfg-test",
    )
    container = by_string.container_client()
    container.create_container()
    container.upload_blob("hello.txt", b"hello")
    by_url = BatchConfig(
        ENDPOINT,
        batch_account_key=BATCH_KEY,
        storage_account_url=azurite.blob_endpoint,
        storage_account_key=azurite.account_key,
        storage_container="cfg-test",
    )
    assert by_url.blob_account_name == azurite.account_name
    assert by_url.container_client().download_blob("hello.txt").readall() == b"hello"
    container.delete_container()


# --------------------------------------------------------------------------- sovereign clouds


class Sent(Exception):
    """Raised by :class:`StopTransport` instead of sending a request."""


class StopTransport(HttpTransport):  # type: ignore[type-arg]
    """A transport that records each request (with its Authorization header) and sends
    nothing: what the client's pipeline, credential policy included, made of it."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.requests.append(request)
        raise Sent(request.url)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> StopTransport:
        return self

    def __exit__(self, *args: object) -> None:
        pass


class RecordingCredential:
    """A TokenCredential that remembers the scopes it was asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("token", 2**31)


def asked_scopes(config: BatchConfig, credential: RecordingCredential) -> dict[str, Any]:
    """The scopes a Batch request and a storage request asked ``credential`` for."""
    transport = StopTransport()
    with pytest.raises(Sent):
        config.batch_client(transport=transport).get_pool("p")
    batch = credential.scopes[-1] if credential.scopes else None
    with pytest.raises(Sent):
        config.container_client(transport=transport).get_container_properties()
    storage = credential.scopes[-1] if credential.scopes else None
    headers = [request.headers.get("Authorization", "") for request in transport.requests]
    assert len(headers) == 2 and all(header.startswith("Bearer ") for header in headers)
    return {"batch": batch, "storage": storage}


CLOUD_CASES = [
    (
        "https://myacct.westeurope.batch.azure.com",
        "https://mystore.blob.core.windows.net",
        "AzureCloud",
        "https://batch.core.windows.net//.default",
        "https://storage.azure.com/.default",
        None,
    ),
    (
        "https://myacct.chinanorth3.batch.chinacloudapi.cn",
        "https://mystore.blob.core.chinacloudapi.cn",
        "AzureChinaCloud",
        "https://batch.chinacloudapi.cn//.default",
        "https://mystore.blob.core.chinacloudapi.cn/.default",
        "https://login.chinacloudapi.cn",
    ),
    (
        "https://myacct.usgovvirginia.batch.usgovcloudapi.net",
        "https://mystore.blob.core.usgovcloudapi.net",
        "AzureUSGovernment",
        "https://batch.core.usgovcloudapi.net//.default",
        "https://mystore.blob.core.usgovcloudapi.net/.default",
        "https://login.microsoftonline.us",
    ),
]


@pytest.mark.parametrize(
    ("endpoint", "blob_url", "cloud", "batch_scope", "storage_scope", "authority"), CLOUD_CASES
)
def test_entra_id_scopes_follow_the_cloud(
    endpoint: str,
    blob_url: str,
    cloud: str,
    batch_scope: str,
    storage_scope: str,
    authority: str | None,
) -> None:
    credential = RecordingCredential()
    config = BatchConfig(
        endpoint,
        batch_credential=credential,
        storage_account_url=blob_url,
        storage_credential=credential,
    )
    assert config.cloud == cloud
    assert config.authority == authority
    assert asked_scopes(config, credential) == {
        "batch": (batch_scope,),
        "storage": (storage_scope,),
    }


def test_the_public_cloud_asks_for_what_the_sdks_ask_for() -> None:
    from azure.batch import BatchClient
    from azure.storage.blob import ContainerClient

    credential = RecordingCredential()
    endpoint, blob_url = CLOUD_CASES[0][:2]
    sdk_batch = BatchClient(endpoint, credential, transport=StopTransport())
    sdk_storage = ContainerClient(blob_url, "box", credential, transport=StopTransport())
    with pytest.raises(Sent):
        sdk_batch.get_pool("p")
    with pytest.raises(Sent):
        sdk_storage.get_container_properties()
    sdk_scopes = credential.scopes
    ours = RecordingCredential()
    config = BatchConfig(
        endpoint, batch_credential=ours, storage_account_url=blob_url, storage_credential=ours
    )
    assert list(asked_scopes(config, ours).values()) == sdk_scopes


class RecordingDefaultCredential(RecordingCredential):
    """Stands in for azure-identity's DefaultAzureCredential, keeping its arguments."""

    made: list[dict[str, Any]] = []

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        RecordingDefaultCredential.made.append(kwargs)


@pytest.fixture
def default_credential(monkeypatch: pytest.MonkeyPatch) -> type[RecordingDefaultCredential]:
    import azure.identity

    RecordingDefaultCredential.made = []
    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", RecordingDefaultCredential)
    return RecordingDefaultCredential


@pytest.mark.parametrize(
    ("endpoint", "blob_url", "cloud", "batch_scope", "storage_scope", "authority"), CLOUD_CASES
)
def test_default_credential_signs_in_at_the_clouds_authority(
    default_credential: type[RecordingDefaultCredential],
    endpoint: str,
    blob_url: str,
    cloud: str,
    batch_scope: str,
    storage_scope: str,
    authority: str | None,
) -> None:
    config = BatchConfig(endpoint, storage_account_url=blob_url)
    config.batch_client().close()
    config.container_client().close()
    # One credential for both, built with the cloud's authority (public: azure-identity's
    # default, which reads AZURE_AUTHORITY_HOST itself).
    assert default_credential.made == [{"authority": authority} if authority else {}]
    credential = config._default_token_credential()
    assert isinstance(credential, RecordingDefaultCredential)
    assert asked_scopes(config, credential) == {
        "batch": (batch_scope,),
        "storage": (storage_scope,),
    }


def test_audiences_and_authority_overridden_by_argument_and_environment(
    default_credential: type[RecordingDefaultCredential],
) -> None:
    endpoint, blob_url = CLOUD_CASES[1][:2]  # China
    given: dict[str, Any] = {
        "batch_audience": "https://batch.example.cn",  # a trailing slash is added
        "storage_audience": "https://storage.azure.com/",
        "authority_host": "login.example.cn",  # https:// is added
    }
    by_argument = BatchConfig(endpoint, storage_account_url=blob_url, **given)
    by_environment = BatchConfig.from_env(
        {
            "AZURE_BATCH_ENDPOINT": endpoint,
            "BATCHEXECUTOR_STORAGE_ACCOUNT_URL": blob_url,
            "BATCHEXECUTOR_BATCH_AUDIENCE": given["batch_audience"],
            "BATCHEXECUTOR_STORAGE_AUDIENCE": given["storage_audience"],
            "AZURE_AUTHORITY_HOST": given["authority_host"],
        }
    )
    assert by_argument == by_environment
    for config in (by_argument, by_environment):
        assert config.batch_audience == "https://batch.example.cn/"
        assert config.batch_credential_scopes == ["https://batch.example.cn//.default"]
        assert config.blob_audience == "https://storage.azure.com/"
        assert config.authority == "https://login.example.cn"
        credential = config._default_token_credential()
        assert isinstance(credential, RecordingDefaultCredential)
        assert asked_scopes(config, credential) == {
            "batch": ("https://batch.example.cn//.default",),
            "storage": ("https://storage.azure.com/.default",),
        }
    assert default_credential.made == [{"authority": "https://login.example.cn"}] * 2
    assert "batch_audience='https://batch.example.cn/'" in repr(by_argument)
    restored = pickle.loads(pickle.dumps(by_argument))  # not secrets: they survive a pickle
    assert restored.batch_credential_scopes == by_argument.batch_credential_scopes
    assert restored.authority == by_argument.authority
    # Moved to another cloud, the derived values follow; the given ones stay.
    moved = by_argument.replace(
        batch_endpoint=CLOUD_CASES[2][0], storage_account_url=CLOUD_CASES[2][1]
    )
    assert moved.cloud == "AzureUSGovernment"
    assert moved.batch_credential_scopes == ["https://batch.example.cn//.default"]
    derived = BatchConfig(endpoint, storage_account_url=blob_url).replace(
        batch_endpoint=CLOUD_CASES[2][0]
    )
    assert derived.batch_credential_scopes == [CLOUD_CASES[2][3]]
    assert derived.authority == "https://login.microsoftonline.us"


def test_the_user_delegation_key_is_asked_for_with_the_same_audience() -> None:
    from batchexecutor._storage import BlobStore

    endpoint, blob_url = CLOUD_CASES[1][:2]  # China
    credential = RecordingCredential()
    config = BatchConfig(
        endpoint,
        batch_credential=credential,
        storage_account_url=blob_url,
        storage_credential=credential,
    )
    transport = StopTransport()
    store = BlobStore(config.container_client(transport=transport, retry_total=0))
    with pytest.raises(Sent):
        store.node_locator("job", expiry=timedelta(days=1))
    (request,) = transport.requests
    assert "comp=userdelegationkey" in request.url
    assert credential.scopes == [("https://mystore.blob.core.chinacloudapi.cn/.default",)]


def test_shared_keys_ask_for_no_token_in_any_cloud() -> None:
    endpoint, blob_url = CLOUD_CASES[1][:2]
    config = BatchConfig(
        endpoint,
        batch_account_key=BATCH_KEY,
        storage_account_url=blob_url,
        storage_account_key=STORAGE_KEY,
    )
    transport = StopTransport()
    with pytest.raises(Sent):
        config.batch_client(transport=transport).get_pool("p")
    with pytest.raises(Sent):
        config.container_client(transport=transport).get_container_properties()
    assert [r.headers["Authorization"].split()[0] for r in transport.requests] == [
        "SharedKey",
        "SharedKey",
    ]


def test_a_sovereign_storage_url_names_the_cloud_of_an_unknown_batch_host() -> None:
    credential = RecordingCredential()
    config = BatchConfig(
        "https://batch.proxy.internal",
        batch_credential=credential,
        storage_account_url=CLOUD_CASES[1][1],
        storage_credential=credential,
    )
    assert config.cloud == "AzureChinaCloud"
    assert config.batch_credential_scopes == [CLOUD_CASES[1][3]]
    emulator = BatchConfig("http://127.0.0.1:1", batch_credential=credential, storage_dir="/x")
    assert emulator.cloud == "AzureCloud" and emulator.authority is None


@pytest.mark.parametrize(
    ("kwargs", "setting", "fragment"),
    [
        ({"batch_audience": "http://batch.chinacloudapi.cn/"}, "batch_audience", "https URL"),
        ({"batch_audience": "batch.chinacloudapi.cn"}, "batch_audience", "https URL"),
        (
            {"batch_audience": "https://batch.chinacloudapi.cn//.default"},
            "batch_audience",
            "not a scope",
        ),
        ({"storage_audience": "https://a.example/?sig=x"}, "storage_audience", "plain https"),
        ({"storage_audience": 42}, "storage_audience", "must be a string"),
        ({"authority_host": "http://login.chinacloudapi.cn"}, "authority_host", "https URL"),
        (
            {"authority_host": "https://login.chinacloudapi.cn/my-tenant"},
            "authority_host",
            "host alone",
        ),
        ({"authority_host": "https://u:p@login.example"}, "authority_host", "value not shown"),
    ],
)
def test_bad_audiences_and_authorities_name_the_setting(
    kwargs: dict[str, Any], setting: str, fragment: str
) -> None:
    error = config_error(storage_connection_string=CONNECTION, **kwargs)
    assert error.setting == setting and str(error).startswith(setting)
    assert fragment in str(error)
    assert "u:p" not in str(error)


def test_bad_audience_in_the_environment_names_the_variable() -> None:
    error = env_error(full_env(BATCHEXECUTOR_BATCH_AUDIENCE="batch.chinacloudapi.cn"))
    assert error.setting == "BATCHEXECUTOR_BATCH_AUDIENCE"
    assert "e.g. https://batch.chinacloudapi.cn/" in str(error)
    error = env_error(full_env(AZURE_AUTHORITY_HOST="http://login.example"))
    assert error.setting == "AZURE_AUTHORITY_HOST"
