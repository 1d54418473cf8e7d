"""Resource-file downloads and output-file uploads against a real Azurite."""

from __future__ import annotations

import pickle
import stat
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from batchexecutor.emulator._transfer import (
    TransferError,
    _inside,
    download_resource_files,
    redact_text,
    redact_url,
    upload_output_files,
)
from tests.fixtures.azurite import Azurite, BlobContainer

pytestmark = pytest.mark.azurite


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    """A task directory laid out as the emulator does: task_dir/wd is the working dir."""
    (tmp_path / "task" / "wd").mkdir(parents=True)
    return tmp_path / "task"


@pytest.fixture
def wd(task_dir: Path) -> Path:
    return task_dir / "wd"


def put(container: BlobContainer, name: str, data: bytes | str) -> None:
    payload = data.encode() if isinstance(data, str) else data
    container.client.upload_blob(name, payload, overwrite=True)


def blob_names(container: BlobContainer) -> set[str]:
    return {blob.name for blob in container.client.list_blobs()}


def read_blob(container: BlobContainer, name: str) -> bytes:
    data: bytes = container.client.download_blob(name).readall()
    return data


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def signature(url: str) -> str:
    """The ``sig`` value of a SAS URL (URL-decoded), which must never be shown."""
    return parse_qs(urlsplit(url).query)["sig"][0]


def assert_no_secret(error: TransferError, *urls: str) -> None:
    shown = [str(error), repr(error), error.message, *(v for _, v in error.details)]
    shown.append(repr(error.to_failure_info()))
    for url in urls:
        query = urlsplit(url).query
        sig = signature(url)
        for text in shown:
            assert sig not in text
            assert query not in text
            assert "sig=" not in text


def output(
    pattern: str,
    container_url: str,
    path: str | None = None,
    condition: str = "taskcompletion",
    headers: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"containerUrl": container_url}
    if path is not None:
        container["path"] = path
    if headers is not None:
        container["uploadHeaders"] = headers
    return {
        "filePattern": pattern,
        "destination": {"container": container},
        "uploadOptions": {"uploadCondition": condition},
    }


def sas_for_missing_container(azurite: Azurite, name: str) -> str:
    token = generate_container_sas(
        account_name=azurite.account_name,
        container_name=name,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions.from_string("racwdl"),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    return f"{azurite.blob_endpoint}/{name}?{token}"


def tampered(url: str) -> str:
    return url.replace("sig=", "sig=AAAA", 1)


# --------------------------------------------------------------------------- TransferError


def test_failure_info_wire_shape() -> None:
    error = TransferError("BlobNotFound", "usererror", "gone", [("FilePath", "/x")])
    assert error.to_failure_info() == {
        "category": "usererror",
        "code": "BlobNotFound",
        "message": "gone",
        "details": [{"name": "FilePath", "value": "/x"}],
    }
    clone = pickle.loads(pickle.dumps(error))
    assert clone.to_failure_info() == error.to_failure_info()


def test_redaction_strips_query_strings_and_signatures() -> None:
    url = "https://acct.blob.core.windows.net/c/a%20b.txt?sv=2024&sp=r&sig=SECRET%3D"
    assert redact_url(url) == "https://acct.blob.core.windows.net/c/a%20b.txt"
    text = redact_text(f"failed {url} and sig=OTHER&x=1")
    assert "SECRET" not in text and "OTHER" not in text
    error = TransferError("X", "usererror", f"see {url}", [("BlobSource", url)])
    assert "SECRET" not in str(error)


# --------------------------------------------------------------------------- resource files


def test_http_url_downloads_a_blob_sas_url(
    azurite: Azurite, blob_container: BlobContainer, wd: Path
) -> None:
    put(blob_container, "inputs/data.bin", b"\x00payload\xff")
    url = azurite.blob_sas_url(blob_container.name, "inputs/data.bin")
    download_resource_files([{"httpUrl": url, "filePath": "in/data.bin"}], wd)
    target = wd / "in" / "data.bin"
    assert target.read_bytes() == b"\x00payload\xff"
    assert stat.S_IMODE(target.stat().st_mode) == 0o770  # Batch's Linux default
    assert [p.name for p in target.parent.iterdir()] == ["data.bin"]  # no temp files left


def test_http_url_with_file_mode(azurite: Azurite, blob_container: BlobContainer, wd: Path) -> None:
    put(blob_container, "run.sh", "#!/bin/sh\n")
    url = azurite.blob_sas_url(blob_container.name, "run.sh")
    download_resource_files([{"httpUrl": url, "filePath": "run.sh", "fileMode": "0755"}], wd)
    assert stat.S_IMODE((wd / "run.sh").stat().st_mode) == 0o755
    download_resource_files([{"httpUrl": url, "filePath": "ro.sh", "fileMode": "444"}], wd)
    assert stat.S_IMODE((wd / "ro.sh").stat().st_mode) == 0o444


def test_container_url_downloads_everything(blob_container: BlobContainer, wd: Path) -> None:
    put(blob_container, "a.txt", "A")
    put(blob_container, "dir/b.txt", "B")
    put(blob_container, "dir/sub/c.txt", "C")
    download_resource_files([{"storageContainerUrl": blob_container.sas_url}], wd)
    assert (wd / "a.txt").read_text() == "A"
    assert (wd / "dir" / "b.txt").read_text() == "B"
    assert (wd / "dir" / "sub" / "c.txt").read_text() == "C"
    assert stat.S_IMODE((wd / "dir" / "sub" / "c.txt").stat().st_mode) == 0o770


def test_container_url_with_prefix_and_file_path(blob_container: BlobContainer, wd: Path) -> None:
    put(blob_container, "data/x.csv", "x")
    put(blob_container, "data/deep/y.csv", "y")
    put(blob_container, "database.txt", "partial-name match")
    put(blob_container, "other/z.csv", "z")
    download_resource_files(
        [
            {
                "storageContainerUrl": blob_container.sas_url,
                "blobPrefix": "data/",
                "filePath": "inputs",
                "fileMode": "0640",
            }
        ],
        wd,
    )
    files = sorted(str(p.relative_to(wd)) for p in wd.rglob("*") if p.is_file())
    # The full blob name is kept under filePath; the prefix is not stripped.
    assert files == ["inputs/data/deep/y.csv", "inputs/data/x.csv"]
    assert stat.S_IMODE((wd / "inputs/data/x.csv").stat().st_mode) == 0o640


def test_container_prefix_may_be_a_partial_name(blob_container: BlobContainer, wd: Path) -> None:
    put(blob_container, "data/x.csv", "x")
    put(blob_container, "database.txt", "d")
    put(blob_container, "other.txt", "o")
    download_resource_files(
        [{"storageContainerUrl": blob_container.sas_url, "blobPrefix": "data"}], wd
    )
    assert sorted(str(p.relative_to(wd)) for p in wd.rglob("*") if p.is_file()) == [
        "data/x.csv",
        "database.txt",
    ]


def test_empty_prefix_match_is_not_an_error(blob_container: BlobContainer, wd: Path) -> None:
    download_resource_files(
        [{"storageContainerUrl": blob_container.sas_url, "blobPrefix": "nothing/"}], wd
    )
    assert list(wd.iterdir()) == []


@pytest.mark.parametrize("file_path", ["../escape.txt", "a/../../escape.txt", "/tmp/abs.txt"])
def test_http_file_path_cannot_leave_the_working_dir(
    azurite: Azurite, blob_container: BlobContainer, task_dir: Path, wd: Path, file_path: str
) -> None:
    put(blob_container, "f.txt", "f")
    url = azurite.blob_sas_url(blob_container.name, "f.txt")
    with pytest.raises(TransferError) as caught:
        download_resource_files([{"httpUrl": url, "filePath": file_path}], wd)
    assert caught.value.code == "ResourceFileCreateFailed"
    assert caught.value.category == "usererror"
    assert not (task_dir / "escape.txt").exists()
    assert_no_secret(caught.value, url)


def test_container_file_path_cannot_leave_the_working_dir(
    blob_container: BlobContainer, task_dir: Path, wd: Path
) -> None:
    put(blob_container, "f.txt", "f")
    with pytest.raises(TransferError) as caught:
        download_resource_files(
            [{"storageContainerUrl": blob_container.sas_url, "filePath": "../up"}], wd
        )
    assert caught.value.code == "ResourceFileCreateFailed"
    assert not (task_dir / "up").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "x/../../evil.txt", "/etc/evil.txt"])
def test_blob_names_cannot_leave_the_working_dir(wd: Path, name: str) -> None:
    # Storage services normalise such names away, so this checks the guard directly.
    with pytest.raises(TransferError) as caught:
        _inside(wd, name, what="blob name", source="http://h/c/x?sig=SECRET", anchor=wd)
    assert caught.value.code == "ResourceFileCreateFailed"
    assert "SECRET" not in str(caught.value)
    assert _inside(wd, "a/../b.txt", what="blob name", source="http://h/c", anchor=wd) == (
        wd.resolve() / "b.txt"
    )


def test_http_url_needs_a_file_path(
    azurite: Azurite, blob_container: BlobContainer, wd: Path
) -> None:
    url = azurite.blob_sas_url(blob_container.name, "f.txt")
    with pytest.raises(TransferError) as caught:
        download_resource_files([{"httpUrl": url}], wd)
    assert caught.value.code == "ResourceFileCreateFailed"


def test_bad_sas_signature_is_access_denied_without_leaking_it(
    azurite: Azurite, blob_container: BlobContainer, wd: Path
) -> None:
    put(blob_container, "secret.txt", "s")
    url = tampered(azurite.blob_sas_url(blob_container.name, "secret.txt"))
    with pytest.raises(TransferError) as caught:
        download_resource_files([{"httpUrl": url, "filePath": "secret.txt"}], wd)
    error = caught.value
    assert (error.code, error.category) == ("BlobAccessDenied", "usererror")
    assert error.message == "Access for one of the specified Azure Blob(s) is denied"
    details = dict(error.details)
    assert details["BlobSource"] == f"{azurite.blob_endpoint}/{blob_container.name}/secret.txt"
    assert details["FilePath"] == str((wd / "secret.txt").resolve())
    assert_no_secret(error, url)
    assert not (wd / "secret.txt").exists()
    assert list(wd.iterdir()) == []  # the temporary file is gone too


def test_missing_blob_is_blob_not_found(
    azurite: Azurite, blob_container: BlobContainer, wd: Path
) -> None:
    url = azurite.blob_sas_url(blob_container.name, "missing.txt")
    with pytest.raises(TransferError) as caught:
        download_resource_files([{"httpUrl": url, "filePath": "m.txt"}], wd)
    error = caught.value
    assert (error.code, error.category) == ("BlobNotFound", "usererror")
    assert error.message == "One of the specified Azure Blob(s) is not found"
    assert_no_secret(error, url)
    info = error.to_failure_info()
    assert {d["name"] for d in info["details"]} >= {"BlobSource", "FilePath"}


def test_first_failure_stops_the_downloads(
    azurite: Azurite, blob_container: BlobContainer, wd: Path
) -> None:
    put(blob_container, "ok.txt", "ok")
    missing = azurite.blob_sas_url(blob_container.name, "missing.txt")
    ok = azurite.blob_sas_url(blob_container.name, "ok.txt")
    with pytest.raises(TransferError):
        download_resource_files(
            [{"httpUrl": missing, "filePath": "m.txt"}, {"httpUrl": ok, "filePath": "ok.txt"}], wd
        )
    assert not (wd / "ok.txt").exists()


def test_container_sas_without_list_permission_is_access_denied(
    azurite: Azurite, blob_container: BlobContainer, wd: Path
) -> None:
    put(blob_container, "a.txt", "A")
    url = azurite.container_sas_url(blob_container.name, permissions="r")
    with pytest.raises(TransferError) as caught:
        download_resource_files([{"storageContainerUrl": url}], wd)
    error = caught.value
    assert (error.code, error.category) == ("ResourceContainerAccessDenied", "usererror")
    assert error.message == "Access for one of the specified Azure Blob container(s) is denied"
    assert_no_secret(error, url)


def test_container_with_bad_signature_is_access_denied(
    blob_container: BlobContainer, wd: Path
) -> None:
    url = tampered(blob_container.sas_url)
    with pytest.raises(TransferError) as caught:
        download_resource_files([{"storageContainerUrl": url}], wd)
    assert caught.value.code == "ResourceContainerAccessDenied"
    assert_no_secret(caught.value, url)


def test_missing_container_is_resource_container_not_found(azurite: Azurite, wd: Path) -> None:
    url = sas_for_missing_container(azurite, "no-such-container")
    with pytest.raises(TransferError) as caught:
        download_resource_files([{"storageContainerUrl": url}], wd)
    assert caught.value.code == "ResourceContainerNotFound"
    assert_no_secret(caught.value, url)


def test_auto_storage_container_is_not_supported_locally(wd: Path) -> None:
    with pytest.raises(TransferError) as caught:
        download_resource_files([{"autoStorageContainerName": "inputs"}], wd)
    assert caught.value.code == "ResourceContainerAccessDenied"
    assert "autoStorageContainerName" in caught.value.message
    assert "storageContainerUrl" in caught.value.message


def test_identity_reference_is_not_supported_locally(
    blob_container: BlobContainer, wd: Path
) -> None:
    with pytest.raises(TransferError) as caught:
        download_resource_files(
            [
                {
                    "storageContainerUrl": blob_container.sas_url,
                    "identityReference": {"resourceId": "/subscriptions/x/identity"},
                }
            ],
            wd,
        )
    assert caught.value.code == "ResourceContainerAccessDenied"
    assert "identityReference" in caught.value.message
    assert_no_secret(caught.value, blob_container.sas_url)


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"httpUrl": "http://127.0.0.1:1/x", "storageContainerUrl": "http://127.0.0.1:1/c"},
        {"httpUrl": "http://127.0.0.1:1/x", "filePath": "x", "fileMode": "rwx"},
        {"httpUrl": "file:///etc/passwd", "filePath": "passwd"},
    ],
)
def test_malformed_resource_files(spec: Mapping[str, Any], wd: Path) -> None:
    with pytest.raises(TransferError) as caught:
        download_resource_files([spec], wd)
    assert caught.value.code == "BlobDownloadMiscError"
    assert caught.value.category == "usererror"
    assert not (wd / "passwd").exists()


# --------------------------------------------------------------------------- output files


@pytest.fixture
def outputs(task_dir: Path, wd: Path) -> Iterator[Path]:
    """A task that wrote stdout/stderr (in task_dir) and some files in its working dir."""
    write(task_dir / "stdout.txt", "out\n")
    write(task_dir / "stderr.txt", "err\n")
    write(wd / "result.json", '{"ok": true}')
    write(wd / "a.txt", "a")
    write(wd / "b.txt", "b")
    write(wd / ".hidden.txt", "hidden")
    write(wd / "out" / "x.csv", "x")
    write(wd / "out" / "deep" / "y.csv", "y")
    write(wd / "out" / "deep" / "notes.md", "n")
    write(wd / "out" / ".cache" / "z.csv", "z")
    yield wd


def test_exact_file_uses_path_as_the_blob_name(
    blob_container: BlobContainer, task_dir: Path, outputs: Path
) -> None:
    upload_output_files(
        [output("result.json", blob_container.sas_url, path="task-1/result.json")],
        task_dir,
        outputs,
        succeeded=True,
    )
    assert blob_names(blob_container) == {"task-1/result.json"}
    assert read_blob(blob_container, "task-1/result.json") == b'{"ok": true}'


def test_exact_file_without_path_uses_its_file_name(
    blob_container: BlobContainer, task_dir: Path, outputs: Path
) -> None:
    upload_output_files(
        [output("out/deep/notes.md", blob_container.sas_url)], task_dir, outputs, succeeded=True
    )
    assert blob_names(blob_container) == {"notes.md"}


def test_stdout_is_reached_from_the_working_dir(
    blob_container: BlobContainer, task_dir: Path, outputs: Path
) -> None:
    upload_output_files(
        [output("../stdout.txt", blob_container.sas_url, path="logs/stdout.txt")],
        task_dir,
        outputs,
        succeeded=False,
    )
    assert read_blob(blob_container, "logs/stdout.txt") == b"out\n"


def test_wildcard_uploads_under_the_path_virtual_directory(
    blob_container: BlobContainer, task_dir: Path, outputs: Path
) -> None:
    upload_output_files(
        [
            output("../std*.txt", blob_container.sas_url, path="mytask"),
            output("*.txt", blob_container.sas_url),
        ],
        task_dir,
        outputs,
        succeeded=True,
    )
    # Batch's documented example: ../std*.txt with path mytask -> mytask/stdout.txt.
    # Names starting with "." are not matched by a wildcard.
    assert blob_names(blob_container) == {
        "mytask/stderr.txt",
        "mytask/stdout.txt",
        "a.txt",
        "b.txt",
    }


def test_wildcard_with_explicit_dot_matches_hidden_files(
    blob_container: BlobContainer, task_dir: Path, outputs: Path
) -> None:
    upload_output_files(
        [output(".*.txt", blob_container.sas_url, path="h")], task_dir, outputs, succeeded=True
    )
    assert blob_names(blob_container) == {"h/.hidden.txt"}


def test_double_star_recurses_and_keeps_sub_directories(
    blob_container: BlobContainer, task_dir: Path, outputs: Path
) -> None:
    upload_output_files(
        [
            output("out/**/*.csv", blob_container.sas_url, path="csv/"),
            output("**/*.md", blob_container.sas_url),
        ],
        task_dir,
        outputs,
        succeeded=True,
    )
    assert blob_names(blob_container) == {
        "csv/x.csv",  # ** also matches no directory at all
        "csv/deep/y.csv",
        "out/deep/notes.md",
    }


def test_pattern_matching_nothing_is_not_an_error(
    blob_container: BlobContainer, task_dir: Path, outputs: Path
) -> None:
    upload_output_files(
        [
            output("nothing-*.bin", blob_container.sas_url),
            output("missing.txt", blob_container.sas_url),
        ],
        task_dir,
        outputs,
        succeeded=True,
    )
    assert blob_names(blob_container) == set()
    assert "No files matched" in (task_dir / "fileuploadout.txt").read_text()


def test_environment_variables_are_expanded(
    blob_container: BlobContainer, task_dir: Path, outputs: Path
) -> None:
    upload_output_files(
        [output("$OUT_DIR/${KIND}.csv", blob_container.sas_url, path="env.csv")],
        task_dir,
        outputs,
        succeeded=True,
        environment={"OUT_DIR": "out", "KIND": "x"},
    )
    assert blob_names(blob_container) == {"env.csv"}


@pytest.mark.parametrize(
    ("condition", "succeeded", "uploaded"),
    [
        ("tasksuccess", True, True),
        ("tasksuccess", False, False),
        ("taskfailure", True, False),
        ("taskfailure", False, True),
        ("taskcompletion", True, True),
        ("taskcompletion", False, True),
        ("TaskSuccess", True, True),  # older API versions / SDK enum names
        ("taskFailure", True, False),
        ("TASKCOMPLETION", False, True),
    ],
)
def test_upload_conditions(
    blob_container: BlobContainer,
    task_dir: Path,
    outputs: Path,
    condition: str,
    succeeded: bool,
    uploaded: bool,
) -> None:
    upload_output_files(
        [output("a.txt", blob_container.sas_url, condition=condition)],
        task_dir,
        outputs,
        succeeded=succeeded,
    )
    assert blob_names(blob_container) == ({"a.txt"} if uploaded else set())


def test_missing_upload_condition_means_task_completion(
    blob_container: BlobContainer, task_dir: Path, outputs: Path
) -> None:
    spec = output("a.txt", blob_container.sas_url)
    del spec["uploadOptions"]
    upload_output_files([spec], task_dir, outputs, succeeded=False)
    assert blob_names(blob_container) == {"a.txt"}


def test_upload_headers_set_content_settings_and_metadata(
    blob_container: BlobContainer, task_dir: Path, outputs: Path
) -> None:
    headers = [
        {"name": "Content-Type", "value": "application/json"},
        {"name": "x-ms-blob-cache-control", "value": "no-cache"},
        {"name": "Content-Language", "value": "en"},
        {"name": "x-ms-meta-producer", "value": "batchexecutor"},
    ]
    upload_output_files(
        [output("result.json", blob_container.sas_url, path="r.json", headers=headers)],
        task_dir,
        outputs,
        succeeded=True,
    )
    properties = blob_container.client.get_blob_client("r.json").get_blob_properties()
    assert properties.content_settings.content_type == "application/json"
    assert properties.content_settings.cache_control == "no-cache"
    assert properties.content_settings.content_language == "en"
    assert properties.metadata == {"producer": "batchexecutor"}


def test_existing_blobs_are_overwritten(
    blob_container: BlobContainer, task_dir: Path, outputs: Path
) -> None:
    put(blob_container, "a.txt", "old")
    upload_output_files(
        [output("a.txt", blob_container.sas_url)], task_dir, outputs, succeeded=True
    )
    assert read_blob(blob_container, "a.txt") == b"a"


def test_container_url_without_sas_is_access_denied(
    azurite: Azurite, blob_container: BlobContainer, task_dir: Path, outputs: Path
) -> None:
    url = f"{azurite.blob_endpoint}/{blob_container.name}"
    with pytest.raises(TransferError) as caught:
        upload_output_files([output("a.txt", url)], task_dir, outputs, succeeded=True)
    assert (caught.value.code, caught.value.category) == ("FileUploadAccessDenied", "usererror")


def test_read_only_sas_is_access_denied_without_leaking_it(
    azurite: Azurite, blob_container: BlobContainer, task_dir: Path, outputs: Path
) -> None:
    url = azurite.container_sas_url(blob_container.name, permissions="rl")
    with pytest.raises(TransferError) as caught:
        upload_output_files([output("a.txt", url)], task_dir, outputs, succeeded=True)
    assert caught.value.code == "FileUploadAccessDenied"
    assert_no_secret(caught.value, url)
    for log in ("fileuploadout.txt", "fileuploaderr.txt"):
        text = (task_dir / log).read_text()
        assert "FileUploadAccessDenied" in text
        assert signature(url) not in text and "sig=" not in text


def test_missing_container_is_file_upload_container_not_found(
    azurite: Azurite, task_dir: Path, outputs: Path
) -> None:
    url = sas_for_missing_container(azurite, "no-such-output")
    with pytest.raises(TransferError) as caught:
        upload_output_files([output("a.txt", url)], task_dir, outputs, succeeded=True)
    error = caught.value
    assert (error.code, error.category) == ("FileUploadContainerNotFound", "usererror")
    assert error.message == (
        "One of the specified Azure container(s) was not found while attempting to upload an "
        "output file"
    )
    assert_no_secret(error, url)


def test_unparseable_container_url_is_a_misc_error(task_dir: Path, outputs: Path) -> None:
    with pytest.raises(TransferError) as caught:
        upload_output_files(
            [output("a.txt", "not a url?sig=SECRET")], task_dir, outputs, succeeded=True
        )
    assert caught.value.code == "FileUploadMiscError"
    assert "SECRET" not in str(caught.value)


def test_unreachable_storage_is_a_misc_error(task_dir: Path, outputs: Path) -> None:
    url = "http://127.0.0.1:9/devstoreaccount1/c?sv=2024&sig=SECRET"
    with pytest.raises(TransferError) as caught:
        upload_output_files([output("a.txt", url)], task_dir, outputs, succeeded=True)
    assert caught.value.code == "FileUploadMiscError"
    assert "SECRET" not in str(caught.value)


def test_one_failure_does_not_stop_the_other_uploads(
    azurite: Azurite, blob_container: BlobContainer, task_dir: Path, outputs: Path
) -> None:
    bad = sas_for_missing_container(azurite, "no-such-output")
    with pytest.raises(TransferError) as caught:
        upload_output_files(
            [output("a.txt", bad), output("../stderr.txt", blob_container.sas_url)],
            task_dir,
            outputs,
            succeeded=False,
        )
    assert caught.value.code == "FileUploadContainerNotFound"
    assert blob_names(blob_container) == {"stderr.txt"}


def test_identity_reference_is_not_supported_for_uploads(
    blob_container: BlobContainer, task_dir: Path, outputs: Path
) -> None:
    spec = output("a.txt", blob_container.sas_url)
    spec["destination"]["container"]["identityReference"] = {"resourceId": "/x"}
    with pytest.raises(TransferError) as caught:
        upload_output_files([spec], task_dir, outputs, succeeded=True)
    assert caught.value.code == "FileUploadAccessDenied"
    assert "identityReference" in caught.value.message
    assert blob_names(blob_container) == set()


def test_no_log_files_when_nothing_was_attempted(
    blob_container: BlobContainer, task_dir: Path, outputs: Path
) -> None:
    upload_output_files(
        [output("a.txt", blob_container.sas_url, condition="taskfailure")],
        task_dir,
        outputs,
        succeeded=True,
    )
    assert not (task_dir / "fileuploadout.txt").exists()
    assert not (task_dir / "fileuploaderr.txt").exists()


@pytest.mark.parametrize(
    "spec",
    [
        {"filePattern": "a.txt", "destination": {}, "uploadOptions": {}},
        {"filePattern": "", "destination": {"container": {"containerUrl": "http://h/c"}}},
        {
            "filePattern": "a.txt",
            "destination": {"container": {"containerUrl": "http://h/c"}},
            "uploadOptions": {"uploadCondition": "sometimes"},
        },
        "not an output file",
    ],
)
def test_malformed_output_files(spec: Any, task_dir: Path, outputs: Path) -> None:
    with pytest.raises(TransferError) as caught:
        upload_output_files([spec], task_dir, outputs, succeeded=True)
    assert (caught.value.code, caught.value.category) == ("FileUploadMiscError", "usererror")
