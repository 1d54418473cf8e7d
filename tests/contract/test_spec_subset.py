"""The committed spec extract, its strict validators, and Microsoft's examples against them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.contract import extract_spec, spec
from tests.contract.spec import Example, ExampleResponse

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_SOURCE = REPO_ROOT.parent / "shared" / "reference" / "azure-batch-2025-06-01"

#: Example parameters that the 2025-06-01 spec names differently (the example files are not
#: all from the spec's commit; see spec/NOTICE.md). Anything new here is a drift to look at.
KNOWN_PARAMETER_DRIFT = {("Jobs_TerminateJob.json", "jobTerminateParameter")}


def _example_responses() -> list[tuple[Example, ExampleResponse]]:
    return [(ex, resp) for ex in spec.examples() for resp in ex.responses]


def _assertion_message(excinfo: pytest.ExceptionInfo[AssertionError]) -> str:
    return str(excinfo.value)


def _task(**changes: Any) -> dict[str, Any]:
    """A valid BatchTask response body, modified by ``changes`` (None removes a key)."""
    task: dict[str, Any] = {
        "id": "t1",
        "url": "https://account.region.batch.azure.com/jobs/j1/tasks/t1",
        "eTag": "0x8D3D62350711C55",
        "creationTime": "2016-09-06T06:59:15.1161429Z",
        "lastModified": "2016-09-06T06:59:15.1161429Z",
        "state": "completed",
        "stateTransitionTime": "2016-09-06T07:00:15+00:00",
        "previousState": "running",
        "commandLine": "python -m worker",
        "constraints": {"maxWallClockTime": "PT1H", "retentionTime": "P7D", "maxTaskRetryCount": 0},
        "requiredSlots": 1,
        "executionInfo": {
            "startTime": "2016-09-06T06:59:20Z",
            "endTime": "2016-09-06T07:00:15Z",
            "exitCode": 0,
            "retryCount": 0,
            "requeueCount": 0,
            "result": "success",
        },
    }
    for key, value in changes.items():
        if value is None:
            task.pop(key, None)
        else:
            task[key] = value
    return task


# --------------------------------------------------------------------------- the subset


def test_subset_has_every_implemented_operation() -> None:
    assert spec.operation_ids() == sorted(extract_spec.OPERATION_IDS)
    for op_id in extract_spec.OPERATION_IDS:
        op = spec.operation(op_id)
        assert op["operationId"] == op_id
        assert op["method"] in {"GET", "PUT", "POST", "PATCH", "DELETE", "HEAD"}
        assert op["path"].startswith("/")
        assert "default" in op["responses"], f"{op_id} has no error response"
        assert op["responses"]["default"]["schema"] == {"$ref": "#/definitions/BatchError"}


def test_subset_definitions_are_exactly_the_referenced_closure() -> None:
    loaded = spec.load_spec()
    definitions = loaded["definitions"]
    expected = extract_spec.extract_definitions({"definitions": definitions}, loaded["operations"])
    assert sorted(definitions) == sorted(expected)
    assert "BatchError" in definitions
    for name, schema in definitions.items():
        for ref in extract_spec.definition_refs(schema):
            assert ref in definitions, f"{name} refers to missing {ref}"


def test_unknown_operation_is_a_clear_key_error() -> None:
    with pytest.raises(KeyError, match="Certificates_ListCertificates"):
        spec.operation("Certificates_ListCertificates")


# --------------------------------------------------------------------------- examples


def test_examples_cover_the_copied_files() -> None:
    files = sorted(p.name for p in spec.EXAMPLES_DIR.glob("*.json"))
    assert files == [ex.file for ex in spec.examples()]
    assert len(files) >= 20
    version = spec.load_spec()["info"]["version"]
    for ex in spec.examples():
        assert ex.operation_id in extract_spec.OPERATION_IDS
        assert ex.parameters["api-version"] == version


@pytest.mark.parametrize(
    ("example", "response"),
    _example_responses(),
    ids=[f"{ex.file}-{resp.status}" for ex, resp in _example_responses()],
)
def test_example_response_is_valid(example: Example, response: ExampleResponse) -> None:
    spec.validate_response(example.operation_id, response.status, response.body)
    spec.validate_headers(example.operation_id, response.status, response.headers)


@pytest.mark.parametrize("example", spec.examples(), ids=lambda ex: ex.file)
def test_example_request_is_valid(example: Example) -> None:
    spec.validate_request(example.operation_id, example.request_body)


@pytest.mark.parametrize("example", spec.examples(), ids=lambda ex: ex.file)
def test_example_parameters_are_declared(example: Example) -> None:
    drift = {(example.file, name) for name in example.undeclared_parameters}
    assert drift <= KNOWN_PARAMETER_DRIFT
    body = spec.operation(example.operation_id)["requestBody"]
    if body is not None and body["required"]:
        assert example.request_body is not None


def test_example_with_json_body_shows_one() -> None:
    # Guard against the example-response validation passing vacuously.
    bodies = [r.body for ex in spec.examples() for r in ex.responses if isinstance(r.body, dict)]
    assert len(bodies) >= 8


# --------------------------------------------------------------------------- strictness


def test_valid_task_passes() -> None:
    spec.validate_response("Tasks_GetTask", 200, _task())
    spec.validate_response("Tasks_ListTasks", 200, {"value": [_task(), _task(id="t2")]})


def test_bogus_enum_value_names_the_path() -> None:
    body = {"value": [_task(), _task(state="bogus")]}
    with pytest.raises(AssertionError) as excinfo:
        spec.validate_response("Tasks_ListTasks", 200, body)
    message = _assertion_message(excinfo)
    assert "$.value[1].state: 'bogus' is not one of" in message
    assert "1 schema violation(s)" in message


def test_unknown_field_is_an_error() -> None:
    with pytest.raises(AssertionError) as excinfo:
        spec.validate_response("Tasks_GetTask", 200, _task(emulatorOnly=True))
    assert "$: Additional properties are not allowed ('emulatorOnly' was unexpected)" in str(
        excinfo.value
    )
    nested = _task(executionInfo={"retryCount": 0, "requeueCount": 0, "pid": 4})
    with pytest.raises(AssertionError, match=r"\$\.executionInfo: Additional properties"):
        spec.validate_response("Tasks_GetTask", 200, nested)


def test_missing_required_fields_are_errors() -> None:
    counts = {"active": 1, "running": 0, "completed": 2, "succeeded": 2}
    body = {"taskCounts": counts, "taskSlotCounts": {**counts, "failed": 0}}
    with pytest.raises(AssertionError) as excinfo:
        spec.validate_response("Jobs_GetJobTaskCounts", 200, body)
    assert "$.taskCounts: 'failed' is a required property" in str(excinfo.value)

    with pytest.raises(AssertionError, match=r"\$: 'poolInfo' is a required property"):
        spec.validate_response("Jobs_GetJob", 200, {"id": "j1", "state": "active"})
    # executionInfo requires retryCount and requeueCount.
    with pytest.raises(AssertionError, match=r"\$\.executionInfo: 'requeueCount' is a required"):
        spec.validate_response("Tasks_GetTask", 200, _task(executionInfo={"retryCount": 0}))


def test_every_violation_is_listed() -> None:
    body = _task(state="bogus", creationTime="2016-09-06 06:59:15", url=42, extra=1)
    body["eTag"] = None  # null is not a string: leave absent values out instead
    with pytest.raises(AssertionError) as excinfo:
        spec.validate_response("Tasks_GetTask", 200, body)
    message = str(excinfo.value)
    assert "5 schema violation(s)" in message
    for fragment in ("$.state:", "$.creationTime:", "$.eTag: None is not of type", "$.url:", "$:"):
        assert fragment in message


@pytest.mark.parametrize(
    "value",
    [
        "2016-09-06T06:59:15",  # no offset
        "2016-09-06 06:59:15Z",  # space separator
        "2016-02-30T00:00:00Z",  # no such day
        "2016-09-06T24:00:00Z",
        "2016-09-06T06:59:15+0000",  # offset without colon
        "Tue, 06 Sep 2016 06:59:15 GMT",  # RFC 7231 is for headers only
        "1473145155",
    ],
)
def test_date_time_is_checked_as_rfc3339(value: str) -> None:
    with pytest.raises(AssertionError, match=r"\$\.creationTime: .* is not a 'date-time'"):
        spec.validate_response("Tasks_GetTask", 200, _task(creationTime=value))


@pytest.mark.parametrize(
    "value",
    ["2016-09-06T06:59:15Z", "2016-09-06t06:59:15.1161429z", "2016-12-31T23:59:60+05:30"],
)
def test_rfc3339_accepts_valid_forms(value: str) -> None:
    spec.validate_response("Tasks_GetTask", 200, _task(creationTime=value))


@pytest.mark.parametrize("value", ["1:00:00", "PT", "P1H", "3600"])
def test_duration_is_checked_as_iso8601(value: str) -> None:
    constraints = {"maxWallClockTime": value}
    with pytest.raises(AssertionError, match=r"maxWallClockTime: .* is not a 'duration'"):
        spec.validate_response("Tasks_GetTask", 200, _task(constraints=constraints))


def test_int64_strings_and_int32_ranges() -> None:
    listing: dict[str, Any] = {
        "value": [{"name": "f", "properties": {"lastModified": "2020-01-01T00:00:00Z"}}]
    }
    listing["value"][0]["properties"]["contentLength"] = "12"
    spec.validate_response("Tasks_ListTaskFiles", 200, listing)
    listing["value"][0]["properties"]["contentLength"] = 12  # the spec says string
    with pytest.raises(AssertionError, match=r"contentLength: 12 is not of type 'string'"):
        spec.validate_response("Tasks_ListTaskFiles", 200, listing)
    with pytest.raises(AssertionError, match=r"requiredSlots: 2147483648 is not a 'int32'"):
        spec.validate_response("Tasks_GetTask", 200, _task(requiredSlots=2**31))


def test_status_and_empty_bodies() -> None:
    with pytest.raises(AssertionError, match="does not declare status 201; declared: 200"):
        spec.validate_response("Tasks_GetTask", 201, _task())
    spec.validate_response("Tasks_ReactivateTask", 204, None)
    spec.validate_response("Tasks_ReactivateTask", 204, b"")
    with pytest.raises(AssertionError, match="declares no body"):
        spec.validate_response("Tasks_ReactivateTask", 204, {"ok": True})
    spec.validate_response("Pools_PoolExists", 404, None)
    spec.validate_response("Tasks_GetTaskFile", 200, b"hello")
    with pytest.raises(AssertionError, match="raw file content"):
        spec.validate_response("Tasks_GetTaskFile", 200, {"content": "hello"})
    assert spec.response_validator("Tasks_GetTaskFile", 200) is None
    assert spec.response_validator("Tasks_GetTask", 200) is not None


def test_error_bodies() -> None:
    error = {
        "code": "TaskNotFound",
        "message": {"lang": "en-US", "value": "The specified task does not exist."},
        "values": [{"key": "RequestId", "value": "00000000-0000-0000-0000-000000000000"}],
    }
    spec.validate_error(error)
    spec.validate_response("Tasks_GetTask", 404, error)
    # The real service adds "odata.metadata"; the spec does not have it.
    with pytest.raises(AssertionError, match=r"'odata.metadata' was unexpected"):
        spec.validate_error({**error, "odata.metadata": "https://x/$metadata#Microsoft.Azure"})
    with pytest.raises(AssertionError, match=r"\$\.message: 'oops' is not of type 'object'"):
        spec.validate_response("Jobs_GetJob", 409, {"code": "Conflict", "message": "oops"})


def test_requests_are_strict_about_read_only_and_required() -> None:
    spec.validate_request("Jobs_CreateJob", {"id": "j1", "poolInfo": {"poolId": "p1"}})
    with pytest.raises(AssertionError, match=r"\$: 'poolInfo' is a required property"):
        spec.validate_request("Jobs_CreateJob", {"id": "j1"})
    spec.validate_request("Jobs_ReplaceJob", {"priority": 1, "poolInfo": {"poolId": "p1"}})
    with pytest.raises(AssertionError, match=r"\$\.state: is readOnly"):
        spec.validate_request("Jobs_ReplaceJob", {"poolInfo": {"poolId": "p1"}, "state": "active"})
    with pytest.raises(AssertionError, match="takes no body"):
        spec.validate_request("Tasks_ReactivateTask", {"x": 1})
    with pytest.raises(AssertionError, match=r"body \(job\) is required"):
        spec.validate_request("Jobs_CreateJob", None)
    spec.validate_request("Jobs_TerminateJob", None)  # optional body


def test_response_headers() -> None:
    good = {"Last-Modified": "Fri, 17 Feb 2017 00:00:00 GMT", "Content-Length": "17"}
    spec.validate_headers("Tasks_GetTaskFileProperties", 200, good)
    bad = {
        "last-modified": "2017-02-17T00:00:00Z",
        "ocp-creation-time": "Mon, 17 Feb 2017 00:00:00 GMT",  # wrong weekday
        "Content-Length": "17 bytes",
        "ocp-batch-file-isdirectory": "no",
    }
    with pytest.raises(AssertionError) as excinfo:
        spec.validate_headers("Tasks_GetTaskFileProperties", 200, bad)
    message = str(excinfo.value)
    for name in ("Last-Modified", "ocp-creation-time", "Content-Length", "isdirectory"):
        assert name in message


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/pools", ("Pools_ListPools", {})),
        ("head", "/pools/p1", ("Pools_PoolExists", {"poolId": "p1"})),
        ("POST", "/jobs/j1/addtaskcollection", ("Tasks_CreateTaskCollection", {"jobId": "j1"})),
        (
            "GET",
            "/jobs/j1/tasks/t1/subtasksinfo",
            ("Tasks_ListSubTasks", {"jobId": "j1", "taskId": "t1"}),
        ),
        (
            "GET",
            "/jobs/j1/tasks/t%2F1/files/wd/out.txt",
            ("Tasks_GetTaskFile", {"jobId": "j1", "taskId": "t/1", "filePath": "wd/out.txt"}),
        ),
        (
            "HEAD",
            "/pools/p1/nodes/n1/files/startup%2Fstdout.txt?api-version=2025-06-01",
            (
                "Nodes_GetNodeFileProperties",
                {"poolId": "p1", "nodeId": "n1", "filePath": "startup/stdout.txt"},
            ),
        ),
        (
            "DELETE",
            "http://127.0.0.1:8080/jobs/j%201/tasks/t1/files/a/b/c?recursive=true",
            ("Tasks_DeleteTaskFile", {"jobId": "j 1", "taskId": "t1", "filePath": "a/b/c"}),
        ),
        ("GET", "/jobs/j1/taskcounts", ("Jobs_GetJobTaskCounts", {"jobId": "j1"})),
    ],
)
def test_find_operation(method: str, path: str, expected: tuple[str, dict[str, str]]) -> None:
    assert spec.find_operation(method, path) == expected


@pytest.mark.parametrize(
    ("method", "path", "hint"),
    [
        ("PUT", "/pools/p1", "the path matches"),
        ("GET", "/certificates", "no implemented operation"),
        ("GET", "/jobs/j1/tasks/t1/files/", "no implemented operation"),
        ("POST", "/pools/p1/evaluateautoscale", "no implemented operation"),
    ],
)
def test_find_operation_rejects(method: str, path: str, hint: str) -> None:
    with pytest.raises(LookupError, match=hint):
        spec.find_operation(method, path)


def test_every_operation_is_routable() -> None:
    for op_id in spec.operation_ids():
        op = spec.operation(op_id)
        concrete = op["path"].replace("{filePath}", "dir/file.txt")
        concrete = concrete.replace("{", "x").replace("}", "")
        assert spec.find_operation(op["method"], concrete)[0] == op_id


# --------------------------------------------------------------------------- reproducibility


def test_reextracting_reproduces_the_committed_files(tmp_path: Path) -> None:
    if not (REFERENCE_SOURCE / "BatchService.json").is_file():
        pytest.skip(
            f"reference spec not present at {REFERENCE_SOURCE} (it is not part of the "
            "repository); the committed extract is used as is"
        )
    extract_spec.extract(REFERENCE_SOURCE, tmp_path)
    committed = sorted(
        p.relative_to(spec.SPEC_DIR) for p in spec.SPEC_DIR.rglob("*") if p.is_file()
    )
    produced = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert committed == produced
    for rel in committed:
        assert (spec.SPEC_DIR / rel).read_bytes() == (tmp_path / rel).read_bytes(), (
            f"{rel} differs from a fresh extract; run python tests/contract/extract_spec.py"
        )
