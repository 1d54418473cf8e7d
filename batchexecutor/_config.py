"""``BatchConfig``: where Batch and storage are, how to authenticate, and client defaults.

A configuration names

* the **Batch account**: its endpoint and a credential, either shared key (account name
  + access key) or any azure-core ``TokenCredential`` (Microsoft Entra ID); with neither,
  ``DefaultAzureCredential`` from azure-identity is used, as the Azure CLI signs in when
  it has no key;
* the **storage** for payloads and outcomes: an Azure Blob account (a connection string,
  or an account URL / account name with an account key or a ``TokenCredential``) and a
  container, *or* a local directory (only where the nodes share this file system: the
  local emulator);
* defaults: the pool ID, the poller's interval bounds, how long jobs are kept
  (``retention``; ``None`` keeps them until deleted) and the deadline of each request
  (including its retries, see :mod:`batchexecutor._retry`).

Secrets (account keys, connection strings, credential objects) never appear in a
``repr``, ``str``, error message, log line or pickle: they are held as :class:`Secret`,
and pickling a configuration drops them (an unpickled configuration says so when asked
for a client).

Every setting can be given three ways: as an argument of ``BatchConfig`` (or of
:meth:`BatchConfig.load`), as an environment variable (:meth:`BatchConfig.from_env`; the
Azure CLI's names where it has them), or as a key of a TOML configuration file
(:meth:`BatchConfig.from_file`; the keys are the arguments' names, at the top level):

=============================== ===================================== ==============================
argument and file key           environment variable                  meaning
=============================== ===================================== ==============================
``batch_endpoint``              ``AZURE_BATCH_ENDPOINT``              Batch account endpoint
                                                                      (required)
``batch_account_name``          ``AZURE_BATCH_ACCOUNT``               Batch account name (shared
                                                                      key)
``batch_account_key`` (secret)  ``AZURE_BATCH_ACCESS_KEY``            Batch account key (shared key;
                                                                      without it, Microsoft Entra ID
                                                                      via DefaultAzureCredential)
``batch_credential``            (argument only)                       a ``TokenCredential`` for
                                                                      Batch
``storage_connection_string``   ``AZURE_STORAGE_CONNECTION_STRING``   storage connection string
(secret)
``storage_account_name``        ``AZURE_STORAGE_ACCOUNT``             storage account name
``storage_account_key``         ``AZURE_STORAGE_KEY``                 storage account key (without
(secret)                                                              it, Entra ID)
``storage_credential``          (argument only)                       a ``TokenCredential`` for
                                                                      storage
``storage_account_url``         ``BATCHEXECUTOR_STORAGE_ACCOUNT_URL`` blob endpoint, e.g. for
                                                                      sovereign clouds
``batch_audience``              ``BATCHEXECUTOR_BATCH_AUDIENCE``      Entra ID audience of Batch
                                                                      (default: the endpoint's
                                                                      cloud's, see below)
``storage_audience``            ``BATCHEXECUTOR_STORAGE_AUDIENCE``    Entra ID audience of storage
                                                                      (default: see below)
``authority_host``              ``AZURE_AUTHORITY_HOST``              Entra ID authority of
                                                                      ``DefaultAzureCredential``
                                                                      (default: see below)
``storage_dir``                 ``BATCHEXECUTOR_STORAGE_DIR``         a local directory as storage
                                                                      instead of Blob (local
                                                                      emulator only; in a file,
                                                                      relative to the file)
``storage_container``           ``BATCHEXECUTOR_CONTAINER``           blob container (default
                                                                      ``batchexecutor``)
``pool_id``                     ``BATCHEXECUTOR_POOL_ID``             default pool ID
``poll_interval_min``           ``BATCHEXECUTOR_POLL_INTERVAL_MIN``   poller's shortest interval,
                                                                      seconds
``poll_interval_max``           ``BATCHEXECUTOR_POLL_INTERVAL_MAX``   poller's longest interval,
                                                                      seconds
``retention``                   ``BATCHEXECUTOR_RETENTION``           keep jobs this long (``3600``,
                                                                      ``90m``, ``12h``, ``7d``;
                                                                      ``none`` keeps them until
                                                                      deleted)
``request_deadline``            ``BATCHEXECUTOR_REQUEST_DEADLINE``    seconds one request may take
                                                                      with its retries
(not a setting)                 ``BATCHEXECUTOR_CONFIG``              the configuration file
                                                                      (default below)
(not a setting)                 ``BATCHEXECUTOR_HOME``                local mode's home (emulator
                                                                      daemon state, local storage);
                                                                      default a per-user cache
                                                                      directory
=============================== ===================================== ==============================

In a file, durations are numbers of seconds or strings with a unit (``"90m"``). The
default file is ``$BATCHEXECUTOR_CONFIG``, else ``config.toml`` in the user's
configuration directory: ``$XDG_CONFIG_HOME/batchexecutor/`` (``~/.config/batchexecutor/``
without it; ``%APPDATA%\\batchexecutor\\`` on Windows), see :func:`default_config_path`.
A file may hold secrets (keep it private: ``chmod 600``; a warning says when others can
read it); they are never shown either.

:meth:`BatchConfig.load` merges the three: **explicit arguments > environment variables >
the file > defaults**, setting by setting. Where two settings exclude each other (a local
``storage_dir`` and a blob account; a connection string and an account name, URL or key;
an account key and a credential), the one from the stronger source wins and the other is
ignored; both from the same source is an error. :meth:`from_env` and :meth:`from_file`
read one source only.

**Clouds.** The Batch endpoint's host names its cloud (:attr:`BatchConfig.cloud`; the
storage URL's host when the endpoint's is not an Azure one), which gives the Microsoft
Entra ID defaults used with a ``TokenCredential`` (shared keys need none of them):

* ``AzureCloud`` (``*.batch.azure.com``, and any host of no other cloud): Batch audience
  ``https://batch.core.windows.net/``; storage audience azure-storage-blob's default,
  ``https://storage.azure.com/`` (every account); azure-identity's default authority,
  ``login.microsoftonline.com``;
* ``AzureChinaCloud`` (hosts ending in ``.chinacloudapi.cn``):
  ``https://batch.chinacloudapi.cn/``; the account's blob endpoint,
  ``https://<account>.blob.core.chinacloudapi.cn/``; ``https://login.chinacloudapi.cn``;
* ``AzureUSGovernment`` (hosts ending in ``.usgovcloudapi.net``):
  ``https://batch.core.usgovcloudapi.net/``;
  ``https://<account>.blob.core.usgovcloudapi.net/``; ``https://login.microsoftonline.us``.

A ``storage_account_name`` alone names the blob service of the Batch endpoint's cloud
(``https://<name>.blob.core.chinacloudapi.cn``). Batch tokens are asked for the scope
``<batch_audience>/.default`` (``https://batch.core.windows.net//.default``: the double
slash the SDK uses, since the audience ends with one); storage tokens for
``<storage_audience>.default``. The authority is where the ``DefaultAzureCredential`` the
configuration builds (without ``batch_credential`` / ``storage_credential``) signs in; a
credential you pass keeps its own (build it with ``authority=`` for a sovereign cloud).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hmac
import importlib
import ipaddress
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, NoReturn
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential, TokenCredential

if TYPE_CHECKING:
    from azure.batch import BatchClient
    from azure.storage.blob import ContainerClient

__all__ = [
    "AZURE_POLL_INTERVAL",
    "DEFAULT_CONTAINER",
    "DEFAULT_REQUEST_DEADLINE",
    "ENVIRONMENT_VARIABLES",
    "LOCAL_POLL_INTERVAL",
    "BatchConfig",
    "ConfigurationError",
    "Secret",
    "default_config_path",
    "default_home",
]

#: Blob container used when none is configured.
DEFAULT_CONTAINER: Final = "batchexecutor"
#: Poll interval bounds (min, max seconds) against Azure.
AZURE_POLL_INTERVAL: Final = (1.0, 15.0)
#: Poll interval bounds for the local emulator: a finished task is seen within ~0.1 s.
LOCAL_POLL_INTERVAL: Final = (0.02, 0.1)
#: Seconds one request may take, retries included.
DEFAULT_REQUEST_DEADLINE: Final = 120.0


class _Cloud(NamedTuple):
    """An Azure cloud's Microsoft Entra ID defaults (see the module's docstring)."""

    name: str
    host_suffixes: tuple[str, ...]  # of its Batch endpoints and storage URLs
    batch_audience: str
    storage_suffix: str | None  # None: azure-storage-blob's default audience
    authority_host: str | None  # None: azure-identity's default authority


# The clouds whose hosts BatchConfig.cloud recognises; the first is also the default for
# any other host (an emulator, a proxy). Values: Microsoft's Batch docs for each cloud and
# the Azure CLI's cloud definitions (batch_resource_id, active_directory).
_CLOUDS: Final = (
    _Cloud(
        "AzureCloud",
        (".azure.com", ".windows.net"),
        "https://batch.core.windows.net/",
        None,
        None,
    ),
    _Cloud(
        "AzureChinaCloud",
        (".chinacloudapi.cn",),
        "https://batch.chinacloudapi.cn/",
        "core.chinacloudapi.cn",
        "https://login.chinacloudapi.cn",
    ),
    _Cloud(
        "AzureUSGovernment",
        (".usgovcloudapi.net",),
        "https://batch.core.usgovcloudapi.net/",
        "core.usgovcloudapi.net",
        "https://login.microsoftonline.us",
    ),
)

#: The environment variables :meth:`BatchConfig.from_env` reads, and what they mean.
ENVIRONMENT_VARIABLES: Final[Mapping[str, str]] = {
    "AZURE_BATCH_ENDPOINT": "Batch account endpoint, https://<account>.<region>.batch.azure.com",
    "AZURE_BATCH_ACCOUNT": "Batch account name (shared key authentication)",
    "AZURE_BATCH_ACCESS_KEY": "Batch account key (without it: Microsoft Entra ID)",
    "AZURE_STORAGE_CONNECTION_STRING": "storage account connection string",
    "AZURE_STORAGE_ACCOUNT": "storage account name",
    "AZURE_STORAGE_KEY": "storage account key (without it: Microsoft Entra ID)",
    "BATCHEXECUTOR_STORAGE_ACCOUNT_URL": "blob service URL (sovereign clouds, Azurite)",
    "BATCHEXECUTOR_BATCH_AUDIENCE": "Microsoft Entra ID audience of Batch (default: from the "
    "endpoint's cloud)",
    "BATCHEXECUTOR_STORAGE_AUDIENCE": "Microsoft Entra ID audience of storage (default: from "
    "the storage URL's cloud)",
    "AZURE_AUTHORITY_HOST": "Microsoft Entra ID authority of DefaultAzureCredential (default: "
    "from the cloud)",
    "BATCHEXECUTOR_STORAGE_DIR": "a local directory as storage (local emulator only)",
    "BATCHEXECUTOR_CONTAINER": f"blob container (default {DEFAULT_CONTAINER!r})",
    "BATCHEXECUTOR_POOL_ID": "default pool ID",
    "BATCHEXECUTOR_POLL_INTERVAL_MIN": "poller's shortest interval in seconds",
    "BATCHEXECUTOR_POLL_INTERVAL_MAX": "poller's longest interval in seconds",
    "BATCHEXECUTOR_RETENTION": "keep jobs this long (3600, 90m, 12h, 7d; none = until deleted)",
    "BATCHEXECUTOR_REQUEST_DEADLINE": "seconds one request may take, retries included",
    "BATCHEXECUTOR_HOME": "local mode's home directory (default: a per-user cache directory)",
    "BATCHEXECUTOR_CONFIG": "the configuration file (default: config.toml in the user's "
    "configuration directory, see default_config_path)",
}

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ACCOUNT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Azurite's well-known development account (public, documented by Microsoft).
_DEV_ACCOUNT = "devstoreaccount1"
_DEV_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

_NO_CONFIGURATION = (
    "Azure Batch is not configured. Set AZURE_BATCH_ENDPOINT "
    "(https://<account>.<region>.batch.azure.com) with AZURE_BATCH_ACCOUNT and "
    "AZURE_BATCH_ACCESS_KEY (shared key; without a key, Microsoft Entra ID is used), and "
    "storage: AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with "
    "AZURE_STORAGE_KEY. To run without Azure, use local mode: AzureBatchExecutor.local() "
    "in Python, or --local on the command line; it needs no configuration."
)
_NO_STORAGE = (
    "no storage is configured: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT "
    "(with AZURE_STORAGE_KEY, or Microsoft Entra ID without it), or "
    "BATCHEXECUTOR_STORAGE_ACCOUNT_URL, or BATCHEXECUTOR_STORAGE_DIR for a local directory "
    "(local emulator only)"
)


class ConfigurationError(ValueError):
    """Missing, malformed or conflicting configuration. ``setting`` names the culprit."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class Secret:
    """A string that never shows itself: not in ``repr``/``str``, not in a pickle.

    ``reveal()`` returns the value, for the few places that must send it.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a Secret holds a str")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        return self._value

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """Local mode's home: ``$BATCHEXECUTOR_HOME``, else a per-user cache directory."""
    env = os.environ if environ is None else environ
    given = (env.get("BATCHEXECUTOR_HOME") or "").strip()
    if given:
        return Path(given).expanduser()
    if sys.platform == "win32":
        base = env.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "batchexecutor"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "batchexecutor"
    cache = (env.get("XDG_CACHE_HOME") or "").strip()
    return (Path(cache) if cache else Path.home() / ".cache") / "batchexecutor"


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The configuration file: ``$BATCHEXECUTOR_CONFIG``, else ``config.toml`` in the user's
    configuration directory (``$XDG_CONFIG_HOME/batchexecutor``, ``~/.config/batchexecutor``
    without it; ``%APPDATA%\\batchexecutor`` on Windows). It need not exist."""
    env = os.environ if environ is None else environ
    given = (env.get("BATCHEXECUTOR_CONFIG") or "").strip()
    if given:
        return Path(given).expanduser()
    if sys.platform == "win32":
        base = env.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / "batchexecutor" / "config.toml"
    config = (env.get("XDG_CONFIG_HOME") or "").strip()
    return (Path(config) if config else Path.home() / ".config") / "batchexecutor" / "config.toml"


# --------------------------------------------------------------------------- the config

_SECRET_FIELDS = ("batch_account_key", "storage_connection_string", "storage_account_key")
_CREDENTIAL_FIELDS = ("batch_credential", "storage_credential")
_FIELDS = (
    "batch_endpoint",
    "batch_account_name",
    "batch_account_key",
    "batch_credential",
    "storage_connection_string",
    "storage_account_url",
    "storage_account_name",
    "storage_account_key",
    "storage_credential",
    "storage_container",
    "storage_dir",
    "batch_audience",
    "storage_audience",
    "authority_host",
    "pool_id",
    "poll_interval_min",
    "poll_interval_max",
    "retention",
    "request_deadline",
)
_DERIVED = ("_blob_url", "_blob_account", "_blob_key", "_stripped", "_default_credential")


class BatchConfig:
    """Immutable configuration of one Batch account and its storage.

    Give the Batch endpoint and a credential (``batch_account_name`` + ``batch_account_key``
    for shared key, or ``batch_credential``; with neither, ``DefaultAzureCredential``), and
    exactly one storage: ``storage_connection_string``; or ``storage_account_url`` and/or
    ``storage_account_name`` with ``storage_account_key`` or ``storage_credential`` (or
    neither: ``DefaultAzureCredential``); or ``storage_dir``. ``batch_audience``,
    ``storage_audience`` and ``authority_host`` (Microsoft Entra ID outside the public
    cloud) default from the endpoint's cloud (:attr:`cloud`; see the module docstring).
    Everything is validated here; a :class:`ConfigurationError` names the setting at fault
    (never a secret's value).
    """

    __slots__ = (*_FIELDS, *_DERIVED)

    batch_endpoint: str
    batch_account_name: str | None
    batch_account_key: Secret | None
    batch_credential: TokenCredential | None
    storage_connection_string: Secret | None
    storage_account_url: str | None
    storage_account_name: str | None
    storage_account_key: Secret | None
    storage_credential: TokenCredential | None
    storage_container: str
    storage_dir: Path | None
    batch_audience: str | None
    storage_audience: str | None
    authority_host: str | None
    pool_id: str | None
    poll_interval_min: float
    poll_interval_max: float
    retention: timedelta | None
    request_deadline: float
    _blob_url: str | None
    _blob_account: str | None
    _blob_key: Secret | None
    _stripped: bool
    _default_credential: TokenCredential | None

    def __init__(
        self,
        batch_endpoint: str,
        *,
        batch_account_name: str | None = None,
        batch_account_key: str | Secret | None = None,
        batch_credential: TokenCredential | None = None,
        storage_connection_string: str | Secret | None = None,
        storage_account_url: str | None = None,
        storage_account_name: str | None = None,
        storage_account_key: str | Secret | None = None,
        storage_credential: TokenCredential | None = None,
        storage_container: str = DEFAULT_CONTAINER,
        storage_dir: str | os.PathLike[str] | None = None,
        batch_audience: str | None = None,
        storage_audience: str | None = None,
        authority_host: str | None = None,
        pool_id: str | None = None,
        poll_interval_min: float = AZURE_POLL_INTERVAL[0],
        poll_interval_max: float = AZURE_POLL_INTERVAL[1],
        retention: timedelta | float | None = None,
        request_deadline: float = DEFAULT_REQUEST_DEADLINE,
    ) -> None:
        self._init(locals(), labels={})

    # -- construction ------------------------------------------------------------------

    def _init(self, given: Mapping[str, Any], labels: Mapping[str, str]) -> None:
        def label(name: str) -> str:
            return labels.get(name, name)

        def fail(name: str, problem: str) -> NoReturn:
            raise ConfigurationError(f"{label(name)} {problem}", setting=label(name))

        def optional_str(name: str) -> str | None:
            value = given.get(name)
            if value is None:
                return None
            if not isinstance(value, str):
                fail(name, f"must be a string, got {type(value).__name__}")
            return value.strip() or None

        def secret(name: str) -> Secret | None:
            value = given.get(name)
            if value is None:
                return None
            if isinstance(value, Secret):
                return value if value.reveal().strip() else None
            if not isinstance(value, str):
                fail(name, f"must be a string, got {type(value).__name__} (value not shown)")
            return Secret(value.strip()) if value.strip() else None

        def credential(name: str) -> TokenCredential | None:
            value = given.get(name)
            if value is not None and not callable(getattr(value, "get_token", None)):
                fail(name, "must be an azure-core TokenCredential (it has no get_token method)")
            return value

        def base64_key(name: str, key: Secret | None) -> None:
            if key is None:
                return
            try:
                base64.b64decode(key.reveal(), validate=True)
            except (binascii.Error, ValueError):
                fail(name, "is not a valid account key: expected base64 (value not shown)")

        def seconds(name: str) -> float:
            value = given.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                fail(name, f"must be a number of seconds, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                fail(name, f"must be a positive number of seconds, got {value!r}")
            return float(value)

        # Batch account.
        endpoint = given.get("batch_endpoint")
        if not isinstance(endpoint, str) or not endpoint.strip():
            fail("batch_endpoint", "is required: the Batch account's URL")
        batch_endpoint = _endpoint(endpoint, "batch_endpoint", label)
        batch_key = secret("batch_account_key")
        batch_credential = credential("batch_credential")
        batch_name = optional_str("batch_account_name")
        if batch_key is not None and batch_credential is not None:
            fail("batch_account_key", f"and {label('batch_credential')} are exclusive; give one")
        base64_key("batch_account_key", batch_key)
        if batch_key is not None and batch_name is None:
            batch_name = _account_from_host(batch_endpoint)
            if batch_name is None:
                fail(
                    "batch_account_name",
                    "is required with an account key when the endpoint does not start with it "
                    "(https://<account>.<region>.batch.azure.com)",
                )
        if batch_name is not None and not _ACCOUNT_RE.match(batch_name):
            fail("batch_account_name", f"is not a valid account name: {batch_name!r}")

        # Storage.
        connection = secret("storage_connection_string")
        account_url = optional_str("storage_account_url")
        account_name = optional_str("storage_account_name")
        account_key = secret("storage_account_key")
        storage_credential = credential("storage_credential")
        raw_dir = given.get("storage_dir")
        blob_settings = [
            name
            for name, value in (
                ("storage_account_url", account_url),
                ("storage_account_name", account_name),
                ("storage_account_key", account_key),
                ("storage_credential", storage_credential),
            )
            if value is not None
        ]
        if raw_dir is not None and (connection is not None or blob_settings):
            other = "storage_connection_string" if connection is not None else blob_settings[0]
            fail(
                "storage_dir",
                f"and {label(other)} are exclusive: storage is either a local directory or "
                "a blob account",
            )
        if connection is not None and blob_settings:
            fail(
                "storage_connection_string",
                f"and {label(blob_settings[0])} are exclusive: the connection string "
                "already names the account and its key",
            )
        storage_dir: Path | None = None
        blob_url = blob_account = None
        blob_key: Secret | None = None
        if raw_dir is not None:
            if not isinstance(raw_dir, (str, os.PathLike)) or not os.fspath(raw_dir):
                fail("storage_dir", f"must be a directory path, got {raw_dir!r}")
            storage_dir = Path(raw_dir).expanduser().absolute()
            if storage_dir.exists() and not storage_dir.is_dir():
                fail("storage_dir", f"is not a directory: {str(storage_dir)!r}")
        elif connection is not None:
            blob_url, blob_account, blob_key = _parse_connection_string(
                connection, label("storage_connection_string")
            )
        elif account_url is not None or account_name is not None:
            if account_url is not None:
                blob_url = _endpoint(account_url, "storage_account_url", label)
            else:
                assert account_name is not None
                if not re.match(r"^[a-z0-9]{3,24}$", account_name):
                    fail(
                        "storage_account_name",
                        f"is not a valid storage account name (3-24 lowercase letters and "
                        f"digits): {account_name!r}",
                    )
                # The Batch endpoint's cloud's blob service (core.windows.net publicly).
                cloud = _cloud_of(batch_endpoint)
                suffix = (cloud.storage_suffix if cloud else None) or "core.windows.net"
                blob_url = f"https://{account_name}.blob.{suffix}"
            blob_account = account_name or _storage_account_from_url(blob_url)
            if account_key is not None and storage_credential is not None:
                fail(
                    "storage_account_key",
                    f"and {label('storage_credential')} are exclusive; give one",
                )
            base64_key("storage_account_key", account_key)
            if account_key is not None and blob_account is None:
                fail(
                    "storage_account_name",
                    "is required with a storage account key when the account URL does not "
                    "name the account",
                )
            blob_key = account_key
        elif account_key is not None or storage_credential is not None:
            fail(
                "storage_account_name",
                f"or {label('storage_account_url')} is required with "
                f"{label('storage_account_key' if account_key else 'storage_credential')}",
            )
        else:
            raise ConfigurationError(
                f"no storage is configured: give {label('storage_connection_string')}, "
                f"or {label('storage_account_url')} / {label('storage_account_name')} (with "
                f"{label('storage_account_key')} or a credential), or {label('storage_dir')} "
                "for a local directory (local emulator only)",
                setting=label("storage_connection_string"),
            )
        container = given.get("storage_container")
        if not isinstance(container, str) or not _CONTAINER_RE.match(container):
            fail(
                "storage_container",
                f"is not a valid blob container name (3-63 lowercase letters, digits and "
                f"single hyphens, starting and ending with a letter or digit): {container!r}",
            )

        # Microsoft Entra ID: audiences and authority (None: from the cloud).
        batch_audience = _audience(optional_str("batch_audience"), "batch_audience", label)
        storage_audience = _audience(optional_str("storage_audience"), "storage_audience", label)
        authority_host = _authority(optional_str("authority_host"), label)

        # Defaults of the executor.
        pool_id = optional_str("pool_id")
        if pool_id is not None and not _ID_RE.match(pool_id):
            fail(
                "pool_id",
                f"is not a valid Batch ID (at most 64 letters, digits, '-' and '_'): {pool_id!r}",
            )
        poll_min = seconds("poll_interval_min")
        poll_max = seconds("poll_interval_max")
        if poll_min > poll_max:
            fail(
                "poll_interval_min",
                f"({poll_min:g} s) must not exceed {label('poll_interval_max')} ({poll_max:g} s)",
            )
        raw_retention = given.get("retention")
        retention: timedelta | None
        if raw_retention is None:
            retention = None
        elif isinstance(raw_retention, timedelta):
            retention = raw_retention
        elif isinstance(raw_retention, (int, float)) and not isinstance(raw_retention, bool):
            if not math.isfinite(raw_retention):
                fail("retention", f"must be finite, got {raw_retention!r}")
            retention = timedelta(seconds=raw_retention)
        else:
            fail("retention", f"must be a timedelta, seconds or None, got {raw_retention!r}")
        if retention is not None and retention <= timedelta(0):
            fail("retention", f"must be positive (or None to keep jobs), got {retention}")
        deadline = seconds("request_deadline")

        values: dict[str, Any] = {
            "batch_endpoint": batch_endpoint,
            "batch_account_name": batch_name,
            "batch_account_key": batch_key,
            "batch_credential": batch_credential,
            "storage_connection_string": connection,
            "storage_account_url": blob_url if account_url is not None else None,
            "storage_account_name": account_name,
            "storage_account_key": account_key,
            "storage_credential": storage_credential,
            "storage_container": container,
            "storage_dir": storage_dir,
            "batch_audience": batch_audience,
            "storage_audience": storage_audience,
            "authority_host": authority_host,
            "pool_id": pool_id,
            "poll_interval_min": poll_min,
            "poll_interval_max": poll_max,
            "retention": retention,
            "request_deadline": deadline,
            "_blob_url": blob_url,
            "_blob_account": blob_account,
            "_blob_key": blob_key,
            "_stripped": False,
            "_default_credential": None,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BatchConfig:
        """A configuration from environment variables (see the module's table).

        Without ``AZURE_BATCH_ENDPOINT`` the :class:`ConfigurationError` says which
        variables to set, and how to run locally instead.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() or None if value is not None else None

        endpoint = get("AZURE_BATCH_ENDPOINT")
        if endpoint is None:
            raise ConfigurationError(_NO_CONFIGURATION, setting="AZURE_BATCH_ENDPOINT")
        given: dict[str, Any] = {
            "batch_endpoint": endpoint,
            "batch_account_name": get("AZURE_BATCH_ACCOUNT"),
            "batch_account_key": get("AZURE_BATCH_ACCESS_KEY"),
            "storage_container": get("BATCHEXECUTOR_CONTAINER") or DEFAULT_CONTAINER,
            "pool_id": get("BATCHEXECUTOR_POOL_ID"),
            "batch_audience": get("BATCHEXECUTOR_BATCH_AUDIENCE"),
            "storage_audience": get("BATCHEXECUTOR_STORAGE_AUDIENCE"),
            "authority_host": get("AZURE_AUTHORITY_HOST"),
            "poll_interval_min": AZURE_POLL_INTERVAL[0],
            "poll_interval_max": AZURE_POLL_INTERVAL[1],
            "retention": None,
            "request_deadline": DEFAULT_REQUEST_DEADLINE,
        }
        connection = get("AZURE_STORAGE_CONNECTION_STRING")
        account = get("AZURE_STORAGE_ACCOUNT")
        account_url = get("BATCHEXECUTOR_STORAGE_ACCOUNT_URL")
        storage_dir = get("BATCHEXECUTOR_STORAGE_DIR")
        blob = [
            name
            for name, value in (
                ("AZURE_STORAGE_CONNECTION_STRING", connection),
                ("AZURE_STORAGE_ACCOUNT", account),
                ("BATCHEXECUTOR_STORAGE_ACCOUNT_URL", account_url),
            )
            if value is not None
        ]
        if storage_dir is not None and blob:
            raise ConfigurationError(
                f"BATCHEXECUTOR_STORAGE_DIR and {blob[0]} are both set: storage is either a "
                "local directory or a blob account; unset one",
                setting="BATCHEXECUTOR_STORAGE_DIR",
            )
        if connection is not None:
            # The Azure CLI's precedence: a connection string wins over account + key.
            given["storage_connection_string"] = connection
        elif account is not None or account_url is not None:
            given["storage_account_name"] = account
            given["storage_account_url"] = account_url
            given["storage_account_key"] = get("AZURE_STORAGE_KEY")
        elif storage_dir is not None:
            given["storage_dir"] = storage_dir
        elif get("AZURE_STORAGE_KEY") is not None:
            raise ConfigurationError(
                "AZURE_STORAGE_KEY is set but AZURE_STORAGE_ACCOUNT is not: set the storage "
                "account's name too (or BATCHEXECUTOR_STORAGE_ACCOUNT_URL)",
                setting="AZURE_STORAGE_ACCOUNT",
            )
        else:
            raise ConfigurationError(_NO_STORAGE, setting="AZURE_STORAGE_CONNECTION_STRING")
        for name, variable in (
            ("poll_interval_min", "BATCHEXECUTOR_POLL_INTERVAL_MIN"),
            ("poll_interval_max", "BATCHEXECUTOR_POLL_INTERVAL_MAX"),
            ("request_deadline", "BATCHEXECUTOR_REQUEST_DEADLINE"),
        ):
            text = get(variable)
            if text is not None:
                given[name] = _parse_seconds(text, variable)
        retention = get("BATCHEXECUTOR_RETENTION")
        if retention is not None and retention.lower() not in ("none", "keep", "forever"):
            given["retention"] = _parse_seconds(retention, "BATCHEXECUTOR_RETENTION")
        config = cls.__new__(cls)
        config._init(given, labels=_ENV_LABELS)
        return config

    @classmethod
    def for_emulator(
        cls,
        endpoint: str,
        account_name: str,
        account_key: str | Secret,
        *,
        home: str | os.PathLike[str] | None = None,
        **changes: Any,
    ) -> BatchConfig:
        """Local mode: an emulator's endpoint and key, storage in ``<home>/storage``.

        The poll interval bounds are :data:`LOCAL_POLL_INTERVAL`; ``home`` defaults to
        :func:`default_home`; ``changes`` override any other argument.
        """
        root = Path(home).expanduser() if home is not None else default_home()
        arguments: dict[str, Any] = {
            "batch_account_name": account_name,
            "batch_account_key": account_key,
            "storage_dir": root / "storage",
            "poll_interval_min": LOCAL_POLL_INTERVAL[0],
            "poll_interval_max": LOCAL_POLL_INTERVAL[1],
        }
        arguments.update(changes)
        return cls(endpoint, **arguments)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None = None) -> BatchConfig:
        """A configuration from a TOML file alone (see the module's table for its keys).

        ``path`` defaults to :func:`default_config_path`. Errors name the file and the key
        (never a secret's value); a missing file, unknown keys and values of the wrong type
        are errors too.
        """
        file = Path(path).expanduser() if path is not None else default_config_path()
        values, labels = _file_settings(file)
        labels = {**{name: f"{name} in {file}" for name in _FIELDS}, **labels}
        if "batch_endpoint" not in values:
            raise ConfigurationError(
                f"batch_endpoint in {file} is required: add batch_endpoint = "
                '"https://<account>.<region>.batch.azure.com" to the file',
                setting=labels["batch_endpoint"],
            )
        return cls._merged(values, labels)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        **arguments: Any,
    ) -> BatchConfig:
        """The configuration from arguments, environment and file, merged.

        Precedence, setting by setting: ``arguments`` (``None`` counts as not given) >
        environment variables > the file > defaults. Of two settings that exclude each
        other (e.g. ``storage_dir`` and a blob account), the one from the stronger source
        wins. The file is ``path`` (which must exist), else ``$BATCHEXECUTOR_CONFIG``
        (which must exist), else :func:`default_config_path` if it exists.
        """
        env = os.environ if environ is None else environ
        unknown = set(arguments) - set(_FIELDS)
        if unknown:
            raise TypeError(f"BatchConfig has no setting {sorted(unknown)[0]!r}")
        file: Path | None
        if path is not None:
            file = Path(path).expanduser()
        else:
            file = default_config_path(env)
            if not (env.get("BATCHEXECUTOR_CONFIG") or "").strip() and not file.is_file():
                file = None
        layers: list[tuple[dict[str, Any], dict[str, str]]] = []
        if file is not None:
            layers.append(_file_settings(file))
        layers.append(_env_settings(env))
        given = {name: value for name, value in arguments.items() if value is not None}
        layers.append((given, {name: name for name in given}))
        values: dict[str, Any] = {}
        labels: dict[str, str] = {}
        rank: dict[str, int] = {}
        for level, (layer, layer_labels) in enumerate(layers):
            for name, value in layer.items():
                values[name], labels[name], rank[name] = value, layer_labels[name], level
        _drop_overridden(values, rank)
        if "batch_endpoint" not in values:
            where = file if file is not None else default_config_path(env)
            raise ConfigurationError(
                _NO_CONFIGURATION + f" Or put the settings in the file {where} (TOML; keys "
                "named like BatchConfig's arguments, e.g. batch_endpoint).",
                setting="AZURE_BATCH_ENDPOINT",
            )
        return cls._merged(values, labels)

    @classmethod
    def _merged(cls, values: Mapping[str, Any], labels: Mapping[str, str]) -> BatchConfig:
        """Validate ``values`` (with defaults for what is missing), naming settings by
        ``labels``."""
        given: dict[str, Any] = {
            "storage_container": DEFAULT_CONTAINER,
            "poll_interval_min": AZURE_POLL_INTERVAL[0],
            "poll_interval_max": AZURE_POLL_INTERVAL[1],
            "retention": None,
            "request_deadline": DEFAULT_REQUEST_DEADLINE,
            **values,
        }
        config = cls.__new__(cls)
        config._init(given, labels=labels)
        return config

    def replace(self, **changes: Any) -> BatchConfig:
        """A copy with some arguments changed (validated again)."""
        if self._stripped:
            _stripped_error()
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise TypeError(f"BatchConfig has no setting {sorted(unknown)[0]!r}")
        arguments: dict[str, Any] = {name: getattr(self, name) for name in _FIELDS}
        arguments.update(changes)
        endpoint = arguments.pop("batch_endpoint")
        return BatchConfig(endpoint, **arguments)

    # -- what the executor uses --------------------------------------------------------

    @property
    def storage_kind(self) -> Literal["blob", "local"]:
        """``"local"`` for a local directory, ``"blob"`` for Azure Blob storage."""
        return "local" if self.storage_dir is not None else "blob"

    @property
    def blob_account_url(self) -> str | None:
        """The blob service URL (from the connection string, URL or account name)."""
        return self._blob_url

    @property
    def blob_account_name(self) -> str | None:
        """The storage account's name, when known (needed to sign SAS with a key)."""
        return self._blob_account

    @property
    def blob_account_key(self) -> Secret | None:
        """The storage account key (from the connection string or given), if any."""
        return self._blob_key

    @property
    def uses_shared_key(self) -> bool:
        """Whether Batch requests are signed with the account key (else Entra ID)."""
        return self.batch_account_key is not None

    @property
    def credentials_stripped(self) -> bool:
        """True for a configuration that came out of a pickle without its secrets."""
        return self._stripped

    @property
    def cloud(self) -> str:
        """The Azure cloud: ``"AzureCloud"``, ``"AzureChinaCloud"`` or
        ``"AzureUSGovernment"`` (the Azure CLI's names), from the Batch endpoint's host, or
        the storage URL's when the endpoint's is not an Azure host."""
        return self._cloud().name

    def _cloud(self) -> _Cloud:
        return _cloud_of(self.batch_endpoint) or _cloud_of(self._blob_url) or _CLOUDS[0]

    @property
    def batch_credential_scopes(self) -> list[str]:
        """The scopes Batch tokens are asked for: ``batch_audience`` (default: the
        :attr:`cloud`'s) followed by ``/.default``, e.g.
        ``https://batch.chinacloudapi.cn//.default``."""
        return [(self.batch_audience or self._cloud().batch_audience) + "/.default"]

    @property
    def blob_audience(self) -> str | None:
        """The audience of storage tokens: ``storage_audience``, else in a sovereign cloud
        the account's blob endpoint (``https://<account>.blob.core.chinacloudapi.cn/``);
        ``None`` leaves azure-storage-blob's default (``https://storage.azure.com/``)."""
        if self.storage_audience is not None:
            return self.storage_audience
        cloud = _cloud_of(self._blob_url)
        if cloud is None or cloud.storage_suffix is None or self._blob_account is None:
            return None
        return f"https://{self._blob_account}.blob.{cloud.storage_suffix}/"

    @property
    def authority(self) -> str | None:
        """Where the ``DefaultAzureCredential`` this configuration builds signs in:
        ``authority_host``, else the cloud's (``None``: azure-identity's default, which
        honours ``AZURE_AUTHORITY_HOST`` itself)."""
        return self.authority_host or self._cloud().authority_host

    def batch_credential_object(self) -> AzureNamedKeyCredential | TokenCredential:
        """The credential Batch requests use."""
        if self._stripped:
            _stripped_error()
        if self.batch_account_key is not None:
            assert self.batch_account_name is not None
            return AzureNamedKeyCredential(self.batch_account_name, self.batch_account_key.reveal())
        if self.batch_credential is not None:
            return self.batch_credential
        return self._default_token_credential()

    def batch_client(self, **kwargs: Any) -> BatchClient:
        """An azure-batch ``BatchClient`` for this account, with the SDK's retries off.

        Every request should go through :mod:`batchexecutor._retry` (the operations in
        :mod:`batchexecutor._batch` do), the single retry layer bounded by
        ``request_deadline``. ``kwargs`` go to ``BatchClient`` (e.g. ``per_call_policies``).
        """
        from azure.batch import BatchClient

        from ._version import __version__

        options: dict[str, Any] = {
            "retry_total": 0,
            "connection_timeout": min(20.0, self.request_deadline),
            "read_timeout": min(60.0, self.request_deadline),
            "user_agent": f"batchexecutor/{__version__}",
        }
        credential = self.batch_credential_object()
        if not isinstance(credential, AzureNamedKeyCredential):  # Entra ID: the cloud's audience
            options["credential_scopes"] = self.batch_credential_scopes
        options.update(kwargs)
        return BatchClient(self.batch_endpoint, credential, **options)

    def container_client(self, **kwargs: Any) -> ContainerClient:
        """An azure-storage-blob ``ContainerClient`` for the configured container.

        Only for blob storage (:attr:`storage_kind` ``"blob"``). The container is not
        created here. With a token credential, the client asks for :attr:`blob_audience`.
        ``kwargs`` go to the client (e.g. ``retry_total=0`` to leave retries to
        :mod:`batchexecutor._retry`).
        """
        from azure.storage.blob import ContainerClient

        if self._stripped:
            _stripped_error()
        if self.storage_dir is not None:
            raise ConfigurationError(
                f"storage is the local directory {str(self.storage_dir)!r}, not a blob container",
                setting="storage_dir",
            )
        if self.storage_connection_string is not None:
            return ContainerClient.from_connection_string(
                self.storage_connection_string.reveal(), self.storage_container, **kwargs
            )
        assert self._blob_url is not None
        credential: Any
        if self._blob_key is not None:
            assert self._blob_account is not None
            credential = AzureNamedKeyCredential(self._blob_account, self._blob_key.reveal())
        else:
            if self.storage_credential is not None:
                credential = self.storage_credential
            else:
                credential = self._default_token_credential()
            if self.blob_audience is not None:
                kwargs = {"audience": self.blob_audience, **kwargs}
        return ContainerClient(self._blob_url, self.storage_container, credential, **kwargs)

    def _default_token_credential(self) -> TokenCredential:
        if self._default_credential is None:
            from azure.identity import DefaultAzureCredential

            authority = self.authority
            created = (
                DefaultAzureCredential(authority=authority)
                if authority is not None
                else DefaultAzureCredential()
            )
            object.__setattr__(self, "_default_credential", created)
        assert self._default_credential is not None
        return self._default_credential

    # -- value semantics, safely ---------------------------------------------------------

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"BatchConfig is immutable; use replace({name}=...)")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("BatchConfig is immutable")

    def _key(self) -> tuple[Any, ...]:
        return (*(getattr(self, name) for name in _FIELDS), self._stripped)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BatchConfig):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        shown = []
        for name in _FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if name in _SECRET_FIELDS:
                shown.append(f"{name}=***")
            elif name in _CREDENTIAL_FIELDS:
                shown.append(f"{name}=<{type(value).__name__}>")
            elif isinstance(value, Path):
                shown.append(f"{name}={str(value)!r}")
            else:
                shown.append(f"{name}={value!r}")
        if self._stripped:
            shown.append("credentials_stripped=True")
        return f"BatchConfig({', '.join(shown)})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle without any secret or credential object (see :attr:`credentials_stripped`)."""
        state = {name: getattr(self, name) for name in _FIELDS}
        stripped = False
        for name in (*_SECRET_FIELDS, *_CREDENTIAL_FIELDS):
            if state[name] is not None:
                state[name] = None
                stripped = True
        state["_blob_url"] = self._blob_url
        state["_blob_account"] = self._blob_account
        state["_blob_key"] = None
        state["_stripped"] = stripped or self._stripped
        return (_unpickle, (state,))

    def __copy__(self) -> BatchConfig:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> BatchConfig:
        return self


def _unpickle(state: Mapping[str, Any]) -> BatchConfig:
    config = BatchConfig.__new__(BatchConfig)
    for name in (*_FIELDS, *_DERIVED):
        object.__setattr__(config, name, state.get(name))
    return config


def _stripped_error() -> NoReturn:
    raise ConfigurationError(
        "this BatchConfig was unpickled, and pickles never carry credentials (account keys, "
        "connection strings, credential objects): build the configuration in this process, "
        "e.g. with BatchConfig.from_env()",
        setting="credentials",
    )


_ENV_LABELS: Final[Mapping[str, str]] = {
    "batch_endpoint": "AZURE_BATCH_ENDPOINT",
    "batch_account_name": "AZURE_BATCH_ACCOUNT",
    "batch_account_key": "AZURE_BATCH_ACCESS_KEY",
    "storage_connection_string": "AZURE_STORAGE_CONNECTION_STRING",
    "storage_account_name": "AZURE_STORAGE_ACCOUNT",
    "storage_account_key": "AZURE_STORAGE_KEY",
    "storage_account_url": "BATCHEXECUTOR_STORAGE_ACCOUNT_URL",
    "storage_dir": "BATCHEXECUTOR_STORAGE_DIR",
    "storage_container": "BATCHEXECUTOR_CONTAINER",
    "batch_audience": "BATCHEXECUTOR_BATCH_AUDIENCE",
    "storage_audience": "BATCHEXECUTOR_STORAGE_AUDIENCE",
    "authority_host": "AZURE_AUTHORITY_HOST",
    "pool_id": "BATCHEXECUTOR_POOL_ID",
    "poll_interval_min": "BATCHEXECUTOR_POLL_INTERVAL_MIN",
    "poll_interval_max": "BATCHEXECUTOR_POLL_INTERVAL_MAX",
    "retention": "BATCHEXECUTOR_RETENTION",
    "request_deadline": "BATCHEXECUTOR_REQUEST_DEADLINE",
}


# --------------------------------------------------------------------------- parsing


def _parse_seconds(text: str, variable: str) -> float:
    match = _DURATION_RE.match(text)
    if not match:
        raise ConfigurationError(
            f"{variable} must be a number of seconds, optionally with a unit (s, m, h, d), "
            f"got {text!r}",
            setting=variable,
        )
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


# Settings of which only one may be given: (group, alternatives). The stronger source wins.
_EXCLUSIVE: Final = (
    (
        ("storage_dir",),
        ("storage_connection_string",),
        (
            "storage_account_url",
            "storage_account_name",
            "storage_account_key",
            "storage_credential",
        ),
    ),
    (("storage_account_key",), ("storage_credential",)),
    (("batch_account_key",), ("batch_credential",)),
)
_STRING_KEYS: Final = (
    "batch_endpoint",
    "batch_account_name",
    "storage_account_url",
    "storage_account_name",
    "storage_container",
    "batch_audience",
    "storage_audience",
    "authority_host",
    "pool_id",
)
_DURATION_KEYS: Final = ("poll_interval_min", "poll_interval_max", "request_deadline")


def _drop_overridden(values: dict[str, Any], rank: Mapping[str, int]) -> None:
    """Drop settings excluded by one from a stronger source (same source: kept, so that
    validation reports the conflict)."""
    for alternatives in _EXCLUSIVE:
        levels = [
            max((rank[n] for n in names if n in values), default=-1) for names in alternatives
        ]
        strongest = max(levels)
        if strongest < 0:
            continue
        for names, level in zip(alternatives, levels, strict=True):
            if 0 <= level < strongest:
                for name in names:
                    values.pop(name, None)


def _env_settings(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings the environment gives (only those set), for :meth:`BatchConfig.load`."""
    values: dict[str, Any] = {}
    for name, variable in _ENV_LABELS.items():
        text = (env.get(variable) or "").strip()
        if not text:
            continue
        if name in _DURATION_KEYS:
            values[name] = _parse_seconds(text, variable)
        elif name == "retention":
            if text.lower() not in ("none", "keep", "forever"):
                values[name] = _parse_seconds(text, variable)
        else:
            values[name] = text
    if "storage_connection_string" in values:
        # As in from_env (the Azure CLI's precedence): the connection string wins.
        for name in ("storage_account_name", "storage_account_url", "storage_account_key"):
            values.pop(name, None)
    return values, {name: _ENV_LABELS[name] for name in values}


def _load_toml(file: Path) -> dict[str, Any]:
    tomllib = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
    try:
        with file.open("rb") as handle:
            data: dict[str, Any] = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigurationError(
            f"the configuration file {file} does not exist: create it (TOML, keys named like "
            'BatchConfig\'s arguments, e.g. batch_endpoint = "https://..."), point '
            "BATCHEXECUTOR_CONFIG at another file, or use environment variables "
            "(AZURE_BATCH_ENDPOINT, ...)",
            setting=str(file),
        ) from None
    except IsADirectoryError:
        raise ConfigurationError(
            f"the configuration file {file} is a directory", setting=str(file)
        ) from None
    except OSError as error:
        raise ConfigurationError(
            f"the configuration file {file} cannot be read: {error.strerror}", setting=str(file)
        ) from None
    except tomllib.TOMLDecodeError as error:
        # tomllib's messages give the position, never the text: no secret can leak here.
        raise ConfigurationError(
            f"the configuration file {file} is not valid TOML: {error}; strings need quotes, "
            'e.g. pool_id = "my-pool"',
            setting=str(file),
        ) from None
    return data


def _file_settings(file: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings of a TOML file, type-checked, with labels naming the key and the file."""
    data = _load_toml(file)
    env_names = {variable: name for name, variable in _ENV_LABELS.items()}
    values: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for key, value in data.items():
        label = f"{key} in {file}"
        if key in _CREDENTIAL_FIELDS:
            raise ConfigurationError(
                f"{label}: a credential object cannot come from a file; pass it as an "
                f"argument (BatchConfig.load({key}=...)), or leave it out to use "
                "DefaultAzureCredential",
                setting=label,
            )
        if key not in _FIELDS:
            if key.upper() in env_names:
                hint = f"; the file's key for {key.upper()} is {env_names[key.upper()]!r}"
            else:
                close = difflib.get_close_matches(key, _FIELDS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
            kind = "table" if isinstance(value, dict) else "key"
            keys = ", ".join(n for n in _FIELDS if n not in _CREDENTIAL_FIELDS)
            raise ConfigurationError(
                f"unknown {kind} {key!r} in {file}{hint} (settings are top-level keys named "
                f"like BatchConfig's arguments: {keys})",
                setting=label,
            )
        labels[key] = label
        if key in _SECRET_FIELDS:
            if not isinstance(value, str):
                raise ConfigurationError(
                    f"{label} must be a string in quotes (value not shown)", setting=label
                )
            values[key] = Secret(value)
        elif key in _STRING_KEYS:
            if not isinstance(value, str):
                raise ConfigurationError(
                    f"{label} must be a string in quotes, got {value!r}", setting=label
                )
            values[key] = value
        elif key == "storage_dir":
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError(
                    f"{label} must be a directory path in quotes, got {value!r}", setting=label
                )
            directory = Path(value).expanduser()
            values[key] = directory if directory.is_absolute() else file.parent / directory
        else:  # durations
            if isinstance(value, str):
                if key == "retention" and value.strip().lower() in ("none", "keep", "forever"):
                    values[key] = None
                    continue
                values[key] = _parse_seconds(value, label)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                values[key] = value
            else:
                raise ConfigurationError(
                    f'{label} must be a number of seconds or a string such as "90m", got {value!r}',
                    setting=label,
                )
    secrets = [key for key in _SECRET_FIELDS if key in values]
    if secrets and os.name == "posix":
        try:
            mode = file.stat().st_mode
        except OSError:
            mode = 0
        if mode & 0o077:
            warnings.warn(
                f"{file} holds secrets ({', '.join(secrets)}) and other users may read it: "
                f"chmod 600 {file}",
                stacklevel=3,
            )
    return values, labels


def _endpoint(value: str, name: str, label: Callable[[str], str]) -> str:
    """An http(s) URL without credentials, query or fragment; no trailing slash."""
    text = value.strip()
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        port = -1
        parts = urlsplit("")
    setting = label(name)
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            f"{setting} must not carry credentials (user:password@); value not shown",
            setting=setting,
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(
            f"{setting} must not have a query string or fragment (it may hold a secret, so "
            "it is not shown); give the plain endpoint URL",
            setting=setting,
        )
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        shown = "value not shown" if "@" in value else repr(value.strip())
        raise ConfigurationError(f"{setting} is not an http(s) URL: {shown}", setting=setting)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _https_url(value: str, setting: str, example: str) -> tuple[str, str]:
    """(host, path) of an https URL without credentials, query or fragment."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (validates the port)
    except ValueError:
        parts = urlsplit("")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ConfigurationError(
            f"{setting} must be a plain https URL (no user:password@, query or fragment), "
            f"e.g. {example}; value not shown",
            setting=setting,
        )
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigurationError(
            f"{setting} must be an https URL, e.g. {example}, got {value!r}", setting=setting
        )
    return parts.netloc, parts.path


def _audience(value: str | None, name: str, label: Callable[[str], str]) -> str | None:
    """An Entra ID audience (an https URI), normalised to end with one ``/``."""
    if value is None:
        return None
    example = (
        "https://batch.chinacloudapi.cn/"
        if name == "batch_audience"
        else ("https://storage.azure.com/")
    )
    if value.endswith("/.default"):
        raise ConfigurationError(
            f"{label(name)} is an audience, not a scope: leave out '.default' (e.g. {example}); "
            f"got {value!r}",
            setting=label(name),
        )
    host, path = _https_url(value, label(name), example)
    return f"https://{host}{path.rstrip('/')}/"


def _authority(value: str | None, label: Callable[[str], str]) -> str | None:
    """An Entra ID authority host, as ``https://host`` (a bare host gets ``https://``)."""
    if value is None:
        return None
    setting = label("authority_host")
    example = "https://login.chinacloudapi.cn"
    text = value if "://" in value else "https://" + value
    host, path = _https_url(text, setting, example)
    if path.strip("/"):
        raise ConfigurationError(
            f"{setting} is the authority's host alone, e.g. {example} (the tenant is "
            f"AZURE_TENANT_ID, not part of it), got {value!r}",
            setting=setting,
        )
    return f"https://{host}"


def _cloud_of(url: str | None) -> _Cloud | None:
    """The cloud whose host suffix ``url``'s host has, if any."""
    host = (urlsplit(url).hostname or "").lower() if url else ""
    for cloud in _CLOUDS:
        if any(host.endswith(suffix) for suffix in cloud.host_suffixes):
            return cloud
    return None


def _is_ip_or_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _account_from_host(url: str) -> str | None:
    """``myacct`` from ``https://myacct.westeurope.batch.azure.com``."""
    host = urlsplit(url).hostname or ""
    if _is_ip_or_local(host) or "." not in host:
        return None
    return host.split(".", 1)[0]


def _storage_account_from_url(url: str) -> str | None:
    """The account of a blob URL: its first host label, or Azurite's first path segment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _is_ip_or_local(host) or "." not in host:
        segment = parts.path.strip("/").split("/", 1)[0]
        return segment or None
    return host.split(".", 1)[0]


def _parse_connection_string(
    connection: Secret, setting: str
) -> tuple[str, str | None, Secret | None]:
    """(blob URL, account name, account key) of a storage connection string."""
    malformed = (
        f"{setting} is malformed: expected 'Name=Value' pairs separated by ';' with "
        "AccountName and AccountKey (or SharedAccessSignature and BlobEndpoint); the value "
        "is not shown because it holds a secret"
    )
    pairs: dict[str, str] = {}
    for item in connection.reveal().split(";"):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigurationError(malformed, setting=setting)
        pairs[name.strip().lower()] = value.strip()
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        proxy = pairs.get("developmentstorageproxyuri", "http://127.0.0.1").rstrip("/")
        return f"{proxy}:10000/{_DEV_ACCOUNT}", _DEV_ACCOUNT, Secret(_DEV_KEY)
    account = pairs.get("accountname") or None
    key = pairs.get("accountkey") or None
    sas = pairs.get("sharedaccesssignature") or None
    endpoint = pairs.get("blobendpoint") or None
    if key is None and sas is None:
        raise ConfigurationError(malformed, setting=setting)
    if key is not None:
        if account is None:
            raise ConfigurationError(malformed, setting=setting)
        try:
            base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                f"{setting} has an AccountKey that is not base64 (value not shown)",
                setting=setting,
            ) from None
    if endpoint is not None:
        url = _endpoint(endpoint, "BlobEndpoint of " + setting, lambda name: name)
    elif account is not None:
        protocol = pairs.get("defaultendpointsprotocol", "https").lower()
        if protocol not in ("http", "https"):
            raise ConfigurationError(malformed, setting=setting)
        suffix = pairs.get("endpointsuffix", "core.windows.net")
        url = f"{protocol}://{account}.blob.{suffix}"
    else:
        raise ConfigurationError(malformed, setting=setting)
    if account is None:
        account = _storage_account_from_url(url)
    return url, account, Secret(key) if key is not None else None
