"""Resource files and output files: ``ResourceFile``, ``OutputFile``, ``map_async(...,
resource_files=, output_files=)``, ``executor.options(...)`` and the outputs API.

Batch moves the files (the emulator, against Azurite): tasks read what it downloaded
into their working directory and write what it uploads. Tests marked for one stack say
why; the rest run on both (local directory store, Azurite). The secret of every SAS
used here is searched for in reprs, errors and pickles.
"""

from __future__ import annotations

import copy
import pickle
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.storage.blob import ContainerClient, ContainerSasPermissions, generate_container_sas

from batchexecutor import (
    AzureBatchExecutor,
    ExecutorView,
    JobNotFoundError,
    OutputFile,
    OutputFilesError,
    ResourceFile,
    StorageError,
    TaskFailedError,
    TaskOutput,
    _names,
)
from batchexecutor._batch import MAX_REQUEST_BYTES
from batchexecutor._files import TaskFiles, _target, file_spec, prepare_files
from batchexecutor._jobs import chunk_task
from batchexecutor._mapjob import MapJob, submit_tasks
from batchexecutor._nodeenv import NodeLauncher
from batchexecutor._storage import BlobStore
from batchexecutor.emulator import BatchEmulator
from tests.fixtures.azurite import Azurite

TIMEOUT = 120.0
Make = Callable[..., AzureBatchExecutor]
# A made-up account key: only to sign SAS tokens for tests that never send them.
FAKE_KEY = "A" * 86 + "=="
FAKE_SAS_URL = (
    "https://acct.blob.core.windows.net/data/input.csv?sv=2025-01-05&se=2030-01-01&sr=b"
    "&sp=r&sig=SeCrEtSiGnAtUrE0123456789abcdef%3D"
)
FAKE_SECRET = "SeCrEtSiGnAtUrE0123456789abcdef"
FAKE_CONTAINER = (
    "https://acct.blob.core.windows.net/results?sv=2025-01-05&se=2030-01-01&sr=c&sp=rwl"
    "&sig=SeCrEtSiGnAtUrE0123456789abcdef%3D"
)


def secret_of(url: str) -> str:
    """The signature of a SAS URL: what must never be shown."""
    (signature,) = parse_qs(urlsplit(url).query)["sig"]
    assert len(signature) > 20
    return signature


# --------------------------------------------------------------------------- task functions
# Run on the nodes, imported from this module through the nodes' PYTHONPATH.


def read_file(path: str, x: int) -> str:
    """Item ``x`` and the content of the resource file at ``path`` (working directory)."""
    return f"{x}:{Path(path).read_text()}"


def file_mode(path: str) -> str:
    return oct(Path(path).stat().st_mode & 0o777)


def list_tree(directory: str) -> list[str]:
    root = Path(directory)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def write_output(x: int) -> int:
    """Write ``out/<x>.txt`` (and a line of stdout), return ``x``."""
    Path("out").mkdir(exist_ok=True)
    Path(f"out/{x}.txt").write_text(f"item {x}")
    print(f"wrote item {x}")
    return x


def write_odd_names(x: int) -> int:
    """Files whose names are the node's own: spaces, a plus, brackets, a dot first."""
    Path("out/.hidden").mkdir(parents=True, exist_ok=True)
    Path(f"out/results {x} (final)+.txt").write_text(f"odd {x}")
    Path("out/.hidden/kept.txt").write_text("hidden")
    return x


def write_then_fail_on_two(x: int) -> int:
    """Write ``out/<x>.log``; raise for item 2 (its task then exits with code 1)."""
    Path("out").mkdir(exist_ok=True)
    Path(f"out/{x}.log").write_text(f"log of {x}")
    if x == 2:
        raise ValueError("item 2 fails")
    return x


# --------------------------------------------------------------------------- helpers


@dataclass
class Blobs:
    """A fresh Azurite container with SAS URLs, and what is in it."""

    azurite: Azurite
    name: str
    client: ContainerClient

    def sas(self, permissions: str) -> str:
        return self.azurite.container_sas_url(self.name, permissions)

    def blob_sas(self, blob: str) -> str:
        return self.azurite.blob_sas_url(self.name, blob)

    def names(self) -> list[str]:
        return sorted(self.client.list_blob_names())

    def read(self, name: str) -> str:
        return str(self.client.download_blob(name).readall().decode())


@pytest.fixture
def blobs(azurite: Azurite) -> Iterator[Blobs]:
    name = f"files-{uuid.uuid4().hex[:16]}"
    client = azurite.ensure_container(name)
    yield Blobs(azurite, name, client)
    client.delete_container()


def stored(executor: AzureBatchExecutor, job_id: str) -> list[str]:
    return executor._context.store.list_names(_names.job_prefix(job_id))


def job_ids(executor: AzureBatchExecutor) -> set[str]:
    return {job.job_id for job in executor.list_jobs(("active", "completed", "terminating"))}


def no_secret(secret: str, *objects: object) -> None:
    """``secret`` appears in no repr, str, or pickle of ``objects``."""
    for value in objects:
        assert secret not in repr(value), repr(value)
        assert secret not in str(value), str(value)
        try:
            data = pickle.dumps(value)
        except TypeError as error:  # not picklable (the view): the error tells no secret
            assert secret not in str(error)
        else:
            assert secret.encode() not in data


def _blob_store() -> BlobStore:
    connection = (
        f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={FAKE_KEY};"
        "EndpointSuffix=core.windows.net"
    )
    return BlobStore(ContainerClient.from_connection_string(connection, "batchexecutor"))


def fake_context(store: object) -> Any:
    """What :func:`prepare_files` reads of a context: its store and retention."""
    return SimpleNamespace(store=store, config=SimpleNamespace(retention=None))


# --------------------------------------------------------------------------- the types


def test_resource_files_from_each_source(tmp_path: Path) -> None:
    local = tmp_path / "params.json"
    local.write_text("{}")
    by_url = ResourceFile(FAKE_SAS_URL, "data/input.csv", file_mode=0o640)
    assert (by_url.source, by_url.file_path, by_url.file_mode) == ("url", "data/input.csv", "0640")
    tree = ResourceFile.from_container(FAKE_CONTAINER, "refs", blob_prefix="genome/")
    assert (tree.source, tree.file_path, tree.blob_prefix) == ("container", "refs", "genome/")
    assert ResourceFile.from_container(FAKE_CONTAINER).file_path is None
    from_disk = ResourceFile.from_path(local)
    assert (from_disk.source, from_disk.file_path, from_disk.local_path) == (
        "local",
        "params.json",
        local.absolute(),
    )
    assert ResourceFile.from_path(local, "conf/p.json", file_mode="755").file_mode == "0755"
    assert ResourceFile(FAKE_SAS_URL, "a") == ResourceFile(FAKE_SAS_URL, "a")
    assert len({ResourceFile(FAKE_SAS_URL, "a"), ResourceFile(FAKE_SAS_URL, "a")}) == 1


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: ResourceFile(FAKE_SAS_URL), ValueError, "needs a file_path"),
        (lambda: ResourceFile(FAKE_SAS_URL, "/etc/passwd"), ValueError, "is absolute"),
        (lambda: ResourceFile(FAKE_SAS_URL, "../up.csv"), ValueError, "contains '..'"),
        (lambda: ResourceFile(FAKE_SAS_URL, "a/../../b"), ValueError, "contains '..'"),
        (lambda: ResourceFile(FAKE_SAS_URL, "data/"), ValueError, "names a directory"),
        (lambda: ResourceFile(FAKE_SAS_URL, "a\\b"), ValueError, "backslash"),
        (lambda: ResourceFile("ftp://host/file", "f"), ValueError, "http or https URL"),
        (lambda: ResourceFile("/home/me/data.csv", "f"), ValueError, "from_path"),
        (lambda: ResourceFile(Path("data.csv"), "f"), TypeError, "from_path"),  # type: ignore[arg-type]
        (lambda: ResourceFile("https:///nohost", "f"), ValueError, "no host"),
        (lambda: ResourceFile("https://u:p@host/f", "f"), ValueError, "user name or password"),
        (lambda: ResourceFile("https://host/f x", "f"), ValueError, "without spaces"),
        (lambda: ResourceFile(FAKE_SAS_URL, "f", file_mode=644), ValueError, "0o644"),
        (lambda: ResourceFile(FAKE_SAS_URL, "f", file_mode="rwx"), ValueError, "octal"),
        (lambda: ResourceFile(FAKE_SAS_URL, "f", file_mode=True), TypeError, "file_mode"),
        (lambda: ResourceFile(), ValueError, "exactly one source"),
        (lambda: ResourceFile(FAKE_SAS_URL, "f", container_url=FAKE_CONTAINER), ValueError, "one"),
        (lambda: ResourceFile(FAKE_SAS_URL, "f", blob_prefix="x"), ValueError, "from_container"),
        (lambda: ResourceFile.from_container(FAKE_CONTAINER, "/abs"), ValueError, "absolute"),
        (
            lambda: ResourceFile.from_container(FAKE_SAS_URL),
            ValueError,
            "'rl'",
        ),
        (
            lambda: ResourceFile(FAKE_SAS_URL.replace("sp=r", "sp=w"), "f"),
            ValueError,
            "permissions 'w'",
        ),
        (lambda: ResourceFile.from_path("/no/such/file.csv"), FileNotFoundError, "not a file"),
    ],
)
def test_invalid_resource_files_are_refused_clearly(
    build: Callable[[], object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as raised:
        build()
    assert FAKE_SECRET not in str(raised.value)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: OutputFile(""), ValueError, "must not be empty"),
        (lambda: OutputFile("/var/log/*.log"), ValueError, "is absolute"),
        (lambda: OutputFile("out/../../x"), ValueError, "'..'"),
        (lambda: OutputFile("../../x.txt"), ValueError, "'..'"),
        (lambda: OutputFile("out/"), ValueError, "names a directory"),
        (lambda: OutputFile("out//a"), ValueError, "empty"),
        (lambda: OutputFile("out/[ab.txt"), ValueError, "without its ']'"),
        (lambda: OutputFile("out/a**.txt"), ValueError, "whole path segment"),
        (lambda: OutputFile("out\\a.txt"), ValueError, "backslash"),
        (lambda: OutputFile(42), TypeError, "string"),  # type: ignore[arg-type]
        (lambda: OutputFile("a", upload_condition="always"), ValueError, "upload_condition"),  # type: ignore[arg-type]
        (lambda: OutputFile("a", "https://acct.blob.core.windows.net/c"), ValueError, "no SAS"),
        (
            lambda: OutputFile("a", FAKE_CONTAINER.replace("sp=rwl", "sp=rl")),
            ValueError,
            "permission='w'",
        ),
        (lambda: OutputFile("a", "s3://bucket/x?sig=1"), ValueError, "http or https"),
        (lambda: OutputFile("a", path="{chunk}"), ValueError, "placeholder"),
        (lambda: OutputFile("a", path="../x"), ValueError, "'..'"),
        (lambda: OutputFile("a", path="/x"), ValueError, "absolute"),
        (lambda: OutputFile("a", path="{job_id"), ValueError, "template"),
    ],
)
def test_invalid_output_files_are_refused_clearly(
    build: Callable[[], object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as raised:
        build()
    assert FAKE_SECRET not in str(raised.value)


def test_output_file_patterns_and_conditions() -> None:
    assert OutputFile("out/*.csv").upload_condition == "completion"
    assert OutputFile("../std*.txt").pattern == "../std*.txt"  # the task's directory
    assert OutputFile("$AZ_BATCH_NODE_SHARED_DIR/x/*.csv").pattern.startswith("$")
    assert OutputFile("out/**/*.csv", upload_condition="failure").upload_condition == "failure"
    assert OutputFile("a", upload_condition="TaskSuccess").upload_condition == "success"  # type: ignore[arg-type]
    assert OutputFile("abc[*]").pattern == "abc[*]"


def test_submissions_take_lists_of_the_types() -> None:
    with pytest.raises(TypeError, match="list of ResourceFile"):
        file_spec(ResourceFile(FAKE_SAS_URL, "a"), ())
    with pytest.raises(TypeError, match="list of OutputFile"):
        file_spec((), "out/*.csv")
    with pytest.raises(TypeError, match=r"wrap it, e.g. OutputFile\('out/\*.csv'\)"):
        file_spec((), ["out/*.csv"])
    with pytest.raises(TypeError, match="takes ResourceFile objects") as raised:
        file_spec([FAKE_SAS_URL], ())
    assert FAKE_SECRET not in str(raised.value)
    assert file_spec((), ()) is None


def test_no_sas_in_repr_str_pickle_or_copies(tmp_path: Path) -> None:
    url = ResourceFile(FAKE_SAS_URL, "data/input.csv")
    tree = ResourceFile.from_container(FAKE_CONTAINER, blob_prefix="in/")
    output = OutputFile("out/*.csv", FAKE_CONTAINER, path="runs/{job_id}")
    no_secret(FAKE_SECRET, url, tree, output, [url, tree, output], file_spec([url], [output]))
    assert repr(url) == (
        "ResourceFile('https://acct.blob.core.windows.net/data/input.csv?<SAS>', 'data/input.csv')"
    )
    assert repr(output) == (
        "OutputFile('out/*.csv', 'https://acct.blob.core.windows.net/results?<SAS>', "
        "path='runs/{job_id}')"
    )
    # copies keep the SAS (the object is immutable); the attribute holds what was given
    assert copy.deepcopy(url) == url and copy.copy(output).destination == FAKE_CONTAINER
    # an unpickled one has no SAS, and refuses to be used rather than fail on a node
    for value in (url, tree, output):
        revived = pickle.loads(pickle.dumps(value))
        assert FAKE_SECRET not in repr(revived)
        with pytest.raises(ValueError, match="never pickles a SAS") as raised:
            file_spec(
                [revived] if isinstance(revived, ResourceFile) else [],
                [revived] if isinstance(revived, OutputFile) else [],
            )
        assert FAKE_SECRET not in str(raised.value)
    # without a query nothing is withheld: unpickled, it works (even where the file is gone)
    local = tmp_path / "p.txt"
    local.write_text("x")
    plain = ResourceFile.from_path(local)
    local.unlink()
    assert file_spec([pickle.loads(pickle.dumps(plain))], ()) is not None


def test_task_json_carries_the_files(tmp_path: Path) -> None:
    local = tmp_path / "params.json"
    local.write_text('{"n": 1}')
    spec = file_spec(
        [ResourceFile(FAKE_SAS_URL, "data/in.csv"), ResourceFile.from_path(local)],
        [
            OutputFile("out/*.csv"),
            OutputFile("out/summary.txt", path="s"),
            OutputFile("out/*.png", FAKE_CONTAINER, upload_condition="success"),
            OutputFile("result.bin", FAKE_CONTAINER, path=""),
        ],
    )
    assert spec is not None
    files = prepare_files(fake_context(_blob_store()), "J", spec)
    assert FAKE_SECRET not in repr(files)
    task = chunk_task(
        "J", 7, launcher=NodeLauncher("python3"), pack=(0, 0, 10), dependents=True, files=files
    )
    body = task.as_dict()
    resources = body["resourceFiles"]
    assert resources[0] == {"httpUrl": FAKE_SAS_URL, "filePath": "data/in.csv"}
    digest = files.uploads[0][1].rsplit("/", 1)[1]
    assert files.uploads == [(local, f"J/files/{digest}")]
    assert resources[1]["httpUrl"].startswith(
        f"https://acct.blob.core.windows.net/batchexecutor/J/files/{digest}?"
    )
    assert resources[1]["filePath"] == "params.json"
    destinations = [entry["destination"]["container"] for entry in body["outputFiles"]]
    assert [d.get("path") for d in destinations] == [
        "J/outputs/000007",  # a wildcard: the virtual directory
        "J/outputs/000007/s/summary.txt",  # one file: its whole blob name
        "J/7",  # a destination given: {job_id}/{task_id} by default
        "result.bin",
    ]
    assert destinations[0]["containerUrl"].startswith(
        "https://acct.blob.core.windows.net/batchexecutor?"
    )
    assert destinations[2]["containerUrl"] == FAKE_CONTAINER
    conditions = [entry["uploadOptions"]["uploadCondition"] for entry in body["outputFiles"]]
    assert conditions == ["taskcompletion", "taskcompletion", "tasksuccess", "taskcompletion"]


def test_output_names() -> None:
    assert _names.task_outputs("J", 7) == "J/outputs/000007/"
    assert _names.output_task("J", "J/outputs/000007/out/a b.csv") == (7, "out/a b.csv")
    assert _names.output_task("J", "J/outcomes/000007") is None
    assert _names.output_task("J", "J/outputs/000007/") is None
    assert _names.describe("J/outputs/000007/out/a.csv") == (
        "output file 'out/a.csv' of task 7 of job 'J' (J/outputs/000007/out/a.csv)"
    )
    assert _names.describe("J/files/" + "ab" * 32).startswith("uploaded resource file of job")
    with pytest.raises(ValueError, match="hex"):
        _names.resource_file("J", "not-a-digest")


# --------------------------------------------------------------------------- resource files


def test_map_tasks_read_resource_files_by_url(executor: AzureBatchExecutor, blobs: Blobs) -> None:
    blobs.client.upload_blob("input.txt", b"hello")
    blobs.client.upload_blob("in/a.txt", b"A")
    blobs.client.upload_blob("in/sub/b.txt", b"B")
    blobs.client.upload_blob("other/c.txt", b"C")
    one = blobs.blob_sas("input.txt")
    tree = blobs.sas("rl")
    job = executor.map_async(
        read_file,
        ["data/input.txt"] * 3,
        range(3),
        resource_files=[
            ResourceFile(one, "data/input.txt", file_mode=0o640),
            ResourceFile.from_container(tree, "tree", blob_prefix="in/"),
        ],
    )
    assert job.result(timeout=TIMEOUT) == ["0:hello", "1:hello", "2:hello"]
    # map() stays a drop-in: its files come through options()
    view = executor.options(resource_files=[ResourceFile(one, "data/input.txt", file_mode="640")])
    assert list(view.map(file_mode, ["data/input.txt"], timeout=TIMEOUT)) == ["0o640"]
    with_tree = executor.options(
        resource_files=[ResourceFile.from_container(tree, "tree", blob_prefix="in/")]
    )
    assert with_tree.submit(list_tree, "tree").result(timeout=TIMEOUT) == [
        "in/a.txt",
        "in/sub/b.txt",
    ]
    no_secret(secret_of(one), view, with_tree, job)


def test_a_missing_resource_file_fails_its_task(executor: AzureBatchExecutor, blobs: Blobs) -> None:
    missing = blobs.blob_sas("no-such-blob.txt")
    view = executor.options(resource_files=[ResourceFile(missing, "in.txt")])
    future = view.submit(read_file, "in.txt", 0)
    error = future.exception(timeout=TIMEOUT)
    assert isinstance(error, TaskFailedError)
    assert error.exit_code is None  # the command line never ran
    assert "BlobNotFound" in str(error.failure_info)
    no_secret(secret_of(missing), error)


@pytest.mark.parametrize("stack", ["azurite"])  # a local file is uploaded to Blob storage
def test_map_tasks_read_a_local_file(executor: AzureBatchExecutor, tmp_path: Path) -> None:
    local = tmp_path / "settings.txt"
    local.write_text("from my disk")
    job = executor.map_async(
        read_file,
        ["conf/settings.txt"] * 3,
        range(3),
        resource_files=[ResourceFile.from_path(local, "conf/settings.txt")],
    )
    assert job.result(timeout=TIMEOUT) == [f"{i}:from my disk" for i in range(3)]
    files = [n for n in stored(executor, job.job_id) if "/files/" in n]
    assert len(files) == 1  # stored once for all its tasks
    # submit(): stored once per job and content, whatever the number of calls
    view = executor.options(resource_files=[ResourceFile.from_path(local)])
    futures = [view.submit(read_file, "settings.txt", i) for i in range(3)]
    assert [f.result(timeout=TIMEOUT) for f in futures] == [f"{i}:from my disk" for i in range(3)]
    assert len([n for n in stored(executor, executor.submit_job_id) if "/files/" in n]) == 1


@pytest.mark.parametrize("stack", ["dir"])  # the point: a directory store
def test_a_directory_store_refuses_what_needs_blob_storage(
    executor: AzureBatchExecutor, tmp_path: Path
) -> None:
    local = tmp_path / "settings.txt"
    local.write_text("x")
    before = job_ids(executor)
    with pytest.raises(ValueError, match="storage_connection_string") as raised:
        executor.map_async(
            read_file,
            ["a"],
            [0],
            job_id="bx-files-local",
            resource_files=[ResourceFile.from_path(local)],
        )
    assert "settings.txt" in str(raised.value)
    with pytest.raises(ValueError, match=r"has no destination.*local directory"):
        executor.map_async(write_output, [0], output_files=[OutputFile("out/*.txt")])
    with pytest.raises(ValueError, match=r"has no destination.*local directory"):
        executor.options(output_files=[OutputFile("out/*.txt")]).submit(write_output, 0)
    assert job_ids(executor) == before
    assert stored(executor, "bx-files-local") == []


# --------------------------------------------------------------------------- output files


@pytest.mark.parametrize("stack", ["azurite"])  # the job's own storage must be Blob storage
def test_outputs_go_to_the_job_storage_and_are_fetched(
    executor: AzureBatchExecutor, tmp_path: Path
) -> None:
    job = executor.map_async(
        write_output,
        range(3),
        output_files=[OutputFile("out/*.txt"), OutputFile("../stdout.txt", path="logs")],
    )
    assert job.result(timeout=TIMEOUT) == [0, 1, 2]
    outputs = executor.job_outputs(job)
    assert [(o.task_id, o.path) for o in outputs] == [
        (str(t), p) for t in range(3) for p in (f"{t}.txt", "logs/stdout.txt")
    ]
    assert outputs[0] == TaskOutput(job.job_id, "0", "0.txt", f"{job.job_id}/outputs/000000/0.txt")
    with executor.open_output(outputs[0]) as stream:
        assert stream.read() == b"item 0"
    assert [o.path for o in executor.job_outputs(job.job_id, "1")] == ["1.txt", "logs/stdout.txt"]
    written = executor.download_outputs(job, tmp_path / "all")
    assert sorted(p.relative_to(tmp_path / "all").as_posix() for p in written) == [
        f"{t}/{p}" for t in range(3) for p in (f"{t}.txt", "logs/stdout.txt")
    ]
    assert (tmp_path / "all" / "2" / "2.txt").read_text() == "item 2"
    assert "wrote item 2" in (tmp_path / "all" / "2" / "logs" / "stdout.txt").read_text()

    # a submit() call's outputs, by its future: its own files, into the directory itself;
    # names are the node's (a dotted directory is matched when the pattern spells it out)
    view = executor.options(output_files=[OutputFile("out/*.txt"), OutputFile("out/.*/*")])
    future = view.submit(write_odd_names, 41)
    assert future.result(timeout=TIMEOUT) == 41
    outputs = executor.job_outputs(future)
    assert [o.path for o in outputs] == [".hidden/kept.txt", "results 41 (final)+.txt"]
    with executor.open_output(outputs[1]) as stream:
        assert stream.read() == b"odd 41"
    paths = executor.download_outputs(future, tmp_path / "one")
    one = tmp_path / "one"
    assert paths == [one / ".hidden" / "kept.txt", one / "results 41 (final)+.txt"]
    assert paths[1].read_text() == "odd 41"

    # delete_job deletes them with the job
    executor.delete_job(job.job_id)
    assert stored(executor, job.job_id) == []
    with pytest.raises(JobNotFoundError):
        executor.job_outputs(job.job_id)


def test_outputs_go_to_a_destination(executor: AzureBatchExecutor, blobs: Blobs) -> None:
    destination = blobs.sas("w")
    job = executor.map_async(
        write_output,
        range(2),
        output_files=[
            OutputFile("out/*.txt", destination),  # {job_id}/{task_id}/ by default
            OutputFile("out/1.txt", destination, path="flat"),  # one file: its name kept
        ],
    )
    assert job.result(timeout=TIMEOUT) == [0, 1]
    assert blobs.names() == [f"{job.job_id}/0/0.txt", f"{job.job_id}/1/1.txt", "flat/1.txt"]
    assert blobs.read("flat/1.txt") == "item 1"
    assert executor.job_outputs(job) == []  # nothing in the job's own storage
    no_secret(secret_of(destination), job, executor.get_job(job.job_id))


def test_upload_conditions(executor: AzureBatchExecutor, blobs: Blobs) -> None:
    destination = blobs.sas("w")
    job = executor.map_async(
        write_then_fail_on_two,
        [1, 2, 3],
        errors="return",
        output_files=[
            OutputFile("out/*.log", destination, path="ok/{task_id}", upload_condition="success"),
            OutputFile("out/*.log", destination, path="bad/{task_id}", upload_condition="failure"),
            OutputFile("out/*.log", destination, path="all/{task_id}"),
        ],
    )
    result = job.result(timeout=TIMEOUT)
    assert result[0::2] == [1, 3] and isinstance(result[1], ValueError)
    assert blobs.names() == [
        "all/0/1.log",
        "all/1/2.log",
        "all/2/3.log",
        "bad/1/2.log",  # only the failed task (item 2 raised: its task exited 1)
        "ok/0/1.log",
        "ok/2/3.log",
    ]


def test_submit_with_files(executor: AzureBatchExecutor, blobs: Blobs) -> None:
    blobs.client.upload_blob("input.txt", b"shared")
    source = blobs.blob_sas("input.txt")
    destination = blobs.sas("w")
    view = executor.options(
        resource_files=[ResourceFile(source, "input.txt")],
        output_files=[OutputFile("out/*.txt", destination)],
    )
    assert isinstance(view, ExecutorView)
    futures = [view.submit(read_file, "input.txt", 5), view.submit(write_output, 6)]
    assert [f.result(timeout=TIMEOUT) for f in futures] == ["5:shared", 6]
    job_id = executor.submit_job_id
    assert blobs.names() == [f"{job_id}/{futures[1].task_id}/6.txt", "input.txt"]
    # the executor itself is unchanged: its own submit() gives no files
    plain = executor.submit(read_file, "input.txt", 0)
    assert isinstance(plain.exception(timeout=TIMEOUT), FileNotFoundError)
    no_secret(secret_of(source), view, *futures)
    no_secret(secret_of(destination), view)


def test_failed_uploads_fail_the_future_but_keep_the_result(
    executor: AzureBatchExecutor, azurite: Azurite
) -> None:
    # A SAS for a container that does not exist: Batch cannot upload (FileUploadContainerNotFound).
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    token = generate_container_sas(
        azurite.account_name,
        missing,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(write=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    destination = f"{azurite.blob_endpoint}/{missing}?{token}"
    view = executor.options(output_files=[OutputFile("out/*.txt", destination)])
    error = view.submit(write_output, 3).exception(timeout=TIMEOUT)
    assert isinstance(error, OutputFilesError)
    assert error.result == 3
    assert "FileUploadContainerNotFound" in error.failure_info
    whole = view.map_async(write_output, range(2)).exception(timeout=TIMEOUT)
    assert isinstance(whole, OutputFilesError) and whole.result == [0, 1]
    with pytest.raises(OutputFilesError) as raised:
        list(
            executor.options(output_files=[OutputFile("out/*.txt", destination)]).map(
                write_output, range(2), timeout=TIMEOUT
            )
        )
    assert raised.value.result == [0]  # chunk 0's values, where its items stand
    no_secret(secret_of(destination), error, whole, raised.value)
    assert secret_of(destination) not in pickle.loads(pickle.dumps(error)).failure_info


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize("stack", ["dir"])  # the limits are the client's: one stack
def test_batch_request_limits(
    executor: AzureBatchExecutor, batch_service: BatchEmulator, blobs: Blobs
) -> None:
    destination = blobs.sas("w")
    # ~250 bytes per entry: a task too large for any add-collection request is refused
    # before anything is created, naming the limit and the way out
    many = [OutputFile(f"nothing/{i:05d}-*.none", destination) for i in range(5000)]
    before = job_ids(executor)
    with pytest.raises(ValueError, match=f"at most {MAX_REQUEST_BYTES:,}.*from_container"):
        executor.map_async(write_output, [0], job_id="bx-files-too-large", output_files=many)
    with pytest.raises(ValueError, match="submit\\(\\): each task would take"):
        executor.options(output_files=many).submit(write_output, 0)
    assert job_ids(executor) == before and stored(executor, "bx-files-too-large") == []
    # large lists still work: fewer tasks per request (add_tasks splits by size)
    some = many[:250]  # about 64 KB per task, 24 tasks: more than one 1 MB request
    requests = batch_service.request_counts.get("Tasks_CreateTaskCollection", 0)
    job = executor.map_async(write_output, range(24), output_files=some)
    assert job.result(timeout=TIMEOUT) == list(range(24))
    added = batch_service.request_counts.get("Tasks_CreateTaskCollection", 0) - requests
    assert added >= 3  # 24 chunks at ~64 KB: two requests at least, plus the combine's


# --------------------------------------------------------------------------- the view


@pytest.mark.parametrize("stack", ["dir"])  # the view's own semantics: one stack
def test_the_view_is_an_executor_of_its_own(executor: AzureBatchExecutor, blobs: Blobs) -> None:
    destination = blobs.sas("w")
    view = executor.options(output_files=[OutputFile("out/*.txt", destination)])
    assert view.executor is executor
    more = view.options(output_files=[OutputFile("../stdout.txt", destination, path="logs")])
    assert len(more.output_files) == 2 and len(view.output_files) == 1
    with pytest.raises(ValueError, match=r"map\(\) deletes its job's storage.*map_async"):
        executor.options(output_files=[OutputFile("out/*.txt")]).map(write_output, [0])
    with view as scoped:
        futures = [scoped.submit(write_output, i) for i in range(2)]
    assert all(f.done() for f in futures)  # leaving the block waited for them
    with pytest.raises(RuntimeError, match="after shutdown"):
        view.submit(write_output, 9)
    assert executor.submit(write_output, 7).result(timeout=TIMEOUT) == 7  # still open
    assert "shut down" in repr(view) and secret_of(destination) not in repr(view)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(view)


@pytest.mark.parametrize("stack", ["dir"])
def test_a_resumed_submission_cannot_recreate_files(executor: AzureBatchExecutor) -> None:
    job = MapJob(
        executor._context,
        "bx-files-resume",
        chunksize=1,
        combine=False,
        reduce=False,
        mode="raise",
        future=None,
    )
    with pytest.raises(ValueError, match="resumed submission cannot re-create"):
        submit_tasks(executor._context, job, b"", [[1]], {"resource_files": "1"})
    assert stored(executor, "bx-files-resume") == []


def test_downloads_stay_in_their_directory(tmp_path: Path) -> None:
    assert _target(tmp_path, "3/out/a.csv", "n") == tmp_path / "3" / "out" / "a.csv"
    for escaping in ("3/../../etc/passwd", "3//abs", "./x", "3/a/.."):
        with pytest.raises(StorageError, match=r"empty, '\.' or '\.\.' segment"):
            _target(tmp_path, escaping, "J/outputs/000003/x")


def test_task_files_repr_has_counts_only() -> None:
    files = TaskFiles("J", [], [], [])
    assert repr(files) == "<TaskFiles job='J' resource_files=0 output_files=0>"
