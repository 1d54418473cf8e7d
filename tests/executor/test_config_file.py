"""``BatchConfig.from_file`` (TOML) and ``BatchConfig.load`` (arguments > environment >
file > defaults): keys, types, errors naming the file and the key, secrets never shown."""

from __future__ import annotations

import pickle
import warnings
from datetime import timedelta
from pathlib import Path

import pytest

from batchexecutor import BatchConfig, ConfigurationError
from batchexecutor._config import Secret, default_config_path

BATCH_KEY = "QkFUQ0gtS0VZLWZpbGUtc2VjcmV0LTAxMjM0NTY3ODk="
STORAGE_KEY = "U1RPUkFHRS1LRVktZmlsZS1zZWNyZXQtOTg3NjU0MzI="
CONNECTION = (
    "DefaultEndpointsProtocol=https;AccountName=fileacct;"
    f"AccountKey={STORAGE_KEY};EndpointSuffix=core.windows.net"
)
SECRETS = (BATCH_KEY, STORAGE_KEY, CONNECTION, "not-base64-secret-value!")
ENDPOINT = "https://myacct.westeurope.batch.azure.com"


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def full_file(tmp_path: Path, extra: str = "") -> Path:
    return write(
        tmp_path / "config.toml",
        f'''batch_endpoint = "{ENDPOINT}"
batch_account_key = "{BATCH_KEY}"
storage_connection_string = "{CONNECTION}"
{extra}''',
    )


def error_of(call: object) -> ConfigurationError:
    assert callable(call)
    with pytest.raises(ConfigurationError) as info:
        call()
    return info.value


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert STORAGE_KEY[:20] not in text and BATCH_KEY[:20] not in text


# --------------------------------------------------------------------------- from_file


def test_from_file_reads_every_kind_of_key(tmp_path: Path) -> None:
    path = full_file(
        tmp_path,
        """storage_container = "results"
pool_id = "my-pool"
poll_interval_min = 0.5
poll_interval_max = "1m"
retention = "7d"
request_deadline = 90
""",
    )
    config = BatchConfig.from_file(path)
    assert config.batch_endpoint == ENDPOINT
    assert config.batch_account_name == "myacct"  # from the endpoint, as for arguments
    assert config.batch_account_key == Secret(BATCH_KEY)
    assert config.storage_connection_string == Secret(CONNECTION)
    assert config.blob_account_name == "fileacct"
    assert config.storage_container == "results"
    assert config.pool_id == "my-pool"
    assert (config.poll_interval_min, config.poll_interval_max) == (0.5, 60.0)
    assert config.retention == timedelta(days=7)
    assert config.request_deadline == 90.0


def test_file_defaults_match_the_arguments(tmp_path: Path) -> None:
    from_file = BatchConfig.from_file(full_file(tmp_path))
    direct = BatchConfig(
        ENDPOINT, batch_account_key=BATCH_KEY, storage_connection_string=CONNECTION
    )
    assert from_file == direct


def test_storage_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "conf" / "config.toml",
        f'batch_endpoint = "{ENDPOINT}"\nstorage_dir = "store"\nretention = "none"\n',
    )
    config = BatchConfig.from_file(path)
    assert config.storage_dir == tmp_path / "conf" / "store"
    assert config.retention is None


def test_default_path_honours_xdg_and_batchexecutor_config(tmp_path: Path) -> None:
    assert default_config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == (
        tmp_path / "batchexecutor" / "config.toml"
    )
    assert default_config_path({}) == Path.home() / ".config" / "batchexecutor" / "config.toml"
    chosen = tmp_path / "elsewhere.toml"
    assert default_config_path({"BATCHEXECUTOR_CONFIG": str(chosen)}) == chosen


def test_from_file_without_path_reads_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BATCHEXECUTOR_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    error = error_of(BatchConfig.from_file)
    default = tmp_path / "batchexecutor" / "config.toml"
    assert str(default) in str(error) and "does not exist" in str(error)
    full_file(tmp_path / "batchexecutor")
    assert BatchConfig.from_file().batch_endpoint == ENDPOINT


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ('batch_acount_key = "x"\n', "batch_acount_key", "did you mean 'batch_account_key'"),
        ('AZURE_BATCH_ENDPOINT = "x"\n', "AZURE_BATCH_ENDPOINT", "'batch_endpoint'"),
        ('[batch]\nendpoint = "x"\n', "batch", "unknown table 'batch'"),
        ("pool_id = 3\n", "pool_id", "must be a string in quotes"),
        ("storage_dir = 1\n", "storage_dir", "directory path"),
        ("request_deadline = true\n", "request_deadline", "number of seconds"),
        ('request_deadline = "soon"\n', "request_deadline", "number of seconds"),
        ('batch_credential = "x"\n', "batch_credential", "cannot come from a file"),
        (
            'batch_endpoint = "https://a.b.batch.azure.com"\n',
            "storage_connection_string",
            "no storage is configured",
        ),
    ],
)
def test_file_errors_name_the_file_the_key_and_the_fix(
    tmp_path: Path, text: str, key: str, fragment: str
) -> None:
    path = write(tmp_path / "config.toml", text)
    error = error_of(lambda: BatchConfig.from_file(path))
    message = str(error)
    assert str(path) in message
    assert key in message
    assert fragment in message
    assert error.setting is not None and str(path) in error.setting


def test_missing_endpoint_in_file(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", f'storage_connection_string = "{CONNECTION}"\n')
    message = str(error_of(lambda: BatchConfig.from_file(path)))
    assert f"batch_endpoint in {path} is required" in message
    assert_no_secret(message)


def test_invalid_toml_names_the_file_and_hides_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        f'batch_endpoint = "{ENDPOINT}"\nbatch_account_key = {BATCH_KEY}\n',
    )
    message = str(error_of(lambda: BatchConfig.from_file(path)))
    assert str(path) in message and "not valid TOML" in message and "line 2" in message
    assert_no_secret(message)


@pytest.mark.parametrize(
    "line",
    [
        'batch_account_key = "not-base64-secret-value!"',
        "batch_account_key = 12345",
        'storage_connection_string = "AccountName=x;not-base64-secret-value!"',
    ],
)
def test_bad_secrets_are_never_shown(tmp_path: Path, line: str) -> None:
    text = f'batch_endpoint = "{ENDPOINT}"\n{line}\n'
    if "storage" not in line:
        text += f'storage_connection_string = "{CONNECTION}"\n'
    path = write(tmp_path / "config.toml", text)
    error = error_of(lambda: BatchConfig.from_file(path))
    key = line.split(" ", 1)[0]
    assert f"{key} in {path}" in str(error)
    assert "not shown" in str(error)
    assert_no_secret(str(error))
    assert_no_secret(repr(error))


def test_no_secret_in_repr_str_or_pickle(tmp_path: Path) -> None:
    config = BatchConfig.from_file(full_file(tmp_path))
    for text in (repr(config), str(config)):
        assert "***" in text
        assert_no_secret(text)
    restored = pickle.loads(pickle.dumps(config))
    assert restored.credentials_stripped
    assert_no_secret(repr(pickle.dumps(config)))


def test_world_readable_file_with_secrets_warns(tmp_path: Path) -> None:
    path = full_file(tmp_path)
    path.chmod(0o644)
    with pytest.warns(UserWarning, match="chmod 600") as record:
        BatchConfig.from_file(path)
    assert_no_secret(str(record[0].message))
    path.chmod(0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BatchConfig.from_file(path)


# --------------------------------------------------------------------------- load


def test_load_precedence_arguments_environment_file(tmp_path: Path) -> None:
    path = full_file(tmp_path, 'pool_id = "from-file"\nstorage_container = "file-box"\n')
    environ = {"BATCHEXECUTOR_POOL_ID": "from-env", "BATCHEXECUTOR_REQUEST_DEADLINE": "45"}
    config = BatchConfig.load(path, environ=environ)
    assert config.pool_id == "from-env"  # environment > file
    assert config.storage_container == "file-box"  # file > default
    assert config.request_deadline == 45.0
    config = BatchConfig.load(path, environ=environ, pool_id="from-arg", request_deadline=None)
    assert config.pool_id == "from-arg"  # argument > environment
    assert config.request_deadline == 45.0  # None is "not given"


def test_load_without_a_file_uses_environment_and_arguments(tmp_path: Path) -> None:
    environ = {
        "XDG_CONFIG_HOME": str(tmp_path),  # no file there
        "AZURE_BATCH_ENDPOINT": ENDPOINT,
        "AZURE_BATCH_ACCESS_KEY": BATCH_KEY,
    }
    config = BatchConfig.load(environ=environ, storage_dir=tmp_path / "store")
    assert config.storage_dir == tmp_path / "store"
    assert config.batch_account_key == Secret(BATCH_KEY)


def test_load_reads_the_default_file_and_batchexecutor_config(tmp_path: Path) -> None:
    full_file(tmp_path / "batchexecutor", 'pool_id = "default-file"\n')
    assert BatchConfig.load(environ={"XDG_CONFIG_HOME": str(tmp_path)}).pool_id == "default-file"
    other = full_file(tmp_path / "other", 'pool_id = "named-file"\n')
    environ = {"XDG_CONFIG_HOME": str(tmp_path), "BATCHEXECUTOR_CONFIG": str(other)}
    assert BatchConfig.load(environ=environ).pool_id == "named-file"
    missing = {"BATCHEXECUTOR_CONFIG": str(tmp_path / "missing.toml")}
    assert "missing.toml" in str(error_of(lambda: BatchConfig.load(environ=missing)))


def test_load_with_nothing_says_what_to_set(tmp_path: Path) -> None:
    error = error_of(lambda: BatchConfig.load(environ={"XDG_CONFIG_HOME": str(tmp_path)}))
    message = str(error)
    assert error.setting == "AZURE_BATCH_ENDPOINT"
    assert "AZURE_BATCH_ENDPOINT" in message and "--local" in message
    assert str(tmp_path / "batchexecutor" / "config.toml") in message


def test_stronger_storage_replaces_weaker(tmp_path: Path) -> None:
    path = full_file(tmp_path)  # the file: a connection string
    environ = {"BATCHEXECUTOR_STORAGE_DIR": str(tmp_path / "env-store")}
    config = BatchConfig.load(path, environ=environ)
    assert config.storage_kind == "local" and config.storage_connection_string is None
    config = BatchConfig.load(
        path, environ=environ, storage_account_name="argacct", storage_account_key=STORAGE_KEY
    )
    assert config.storage_kind == "blob" and config.storage_dir is None
    assert config.blob_account_name == "argacct"


def test_key_in_file_with_account_name_in_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        f'batch_endpoint = "{ENDPOINT}"\nstorage_account_key = "{STORAGE_KEY}"\n',
    )
    config = BatchConfig.load(path, environ={"AZURE_STORAGE_ACCOUNT": "envacct"})
    assert config.blob_account_name == "envacct"
    assert config.storage_account_key == Secret(STORAGE_KEY)


def test_conflict_within_one_source_is_an_error(tmp_path: Path) -> None:
    path = full_file(tmp_path, 'storage_dir = "store"\n')
    error = error_of(lambda: BatchConfig.load(path, environ={}))
    assert "exclusive" in str(error) and str(path) in str(error)
    assert_no_secret(str(error))


def test_environment_errors_name_the_variable(tmp_path: Path) -> None:
    path = full_file(tmp_path)
    error = error_of(
        lambda: BatchConfig.load(path, environ={"BATCHEXECUTOR_POLL_INTERVAL_MIN": "fast"})
    )
    assert error.setting == "BATCHEXECUTOR_POLL_INTERVAL_MIN"


def test_argument_errors_name_the_argument(tmp_path: Path) -> None:
    path = full_file(tmp_path)
    error = error_of(lambda: BatchConfig.load(path, environ={}, batch_account_key="nope!"))
    assert error.setting == "batch_account_key"
    assert "nope!" not in str(error)
    with pytest.raises(TypeError, match="no setting 'pool'"):
        BatchConfig.load(path, environ={}, pool="x")


# --------------------------------------------------------------------------- sovereign clouds

CHINA = "https://myacct.chinanorth3.batch.chinacloudapi.cn"


def test_audiences_and_authority_from_the_file_and_their_precedence(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        f'''batch_endpoint = "{CHINA}"
storage_account_url = "https://mystore.blob.core.chinacloudapi.cn"
batch_audience = "https://file.example/batch"
storage_audience = "https://file.example/storage/"
authority_host = "login.file.example"
''',
    )
    from_file = BatchConfig.from_file(path)
    assert from_file.batch_credential_scopes == ["https://file.example/batch//.default"]
    assert from_file.blob_audience == "https://file.example/storage/"
    assert from_file.authority == "https://login.file.example"
    environ = {
        "BATCHEXECUTOR_BATCH_AUDIENCE": "https://env.example/",
        "AZURE_AUTHORITY_HOST": "https://login.env.example",
    }
    loaded = BatchConfig.load(path, environ=environ, storage_audience="https://arg.example")
    assert loaded.batch_audience == "https://env.example/"  # environment > file
    assert loaded.authority == "https://login.env.example"
    assert loaded.blob_audience == "https://arg.example/"  # argument > file
    # Without any of them, the endpoint's cloud decides.
    plain = write(
        tmp_path / "plain.toml",
        f'batch_endpoint = "{CHINA}"\nstorage_account_name = "mystore"\n',
    )
    derived = BatchConfig.load(plain, environ={})
    assert derived.batch_credential_scopes == ["https://batch.chinacloudapi.cn//.default"]
    assert derived.authority == "https://login.chinacloudapi.cn"
    # The account name alone names a blob service of the endpoint's cloud.
    assert derived.blob_account_url == "https://mystore.blob.core.chinacloudapi.cn"
    assert derived.blob_audience == "https://mystore.blob.core.chinacloudapi.cn/"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("batch_audience = 5", "must be a string in quotes"),
        ('batch_audience = "http://batch.chinacloudapi.cn/"', "must be an https URL"),
        ('authority_host = "https://login.chinacloudapi.cn/tenant"', "host alone"),
        ('AZURE_AUTHORITY_HOST = "login.chinacloudapi.cn"', "'authority_host'"),
    ],
)
def test_bad_audiences_in_the_file_name_the_key(tmp_path: Path, line: str, fragment: str) -> None:
    path = full_file(tmp_path, line + "\n")
    error = error_of(lambda: BatchConfig.from_file(path))
    key = line.split(" ", 1)[0]
    assert f"{key} in {path}" in str(error) or f"unknown key {key!r} in {path}" in str(error)
    assert fragment in str(error)
    assert_no_secret(str(error))
