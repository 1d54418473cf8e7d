"""The emulator's HTTP responses, as the unmodified azure-batch SDK receives them, against the spec.

- ``test_every_response_of_a_rich_scenario_matches_the_spec`` drives every operation the
  emulator routes through the SDK (pools with a start task, autoscale and resizes; jobs with a
  job preparation and release task; tasks with dependencies, exit conditions, constraints,
  environment settings, failures, retries, files; container pools, tasks, start and job
  preparation tasks; and 400/403/404/409/412 errors). A policy
  records every raw response (status, headers, body bytes); each one is then matched to its
  operation (:func:`spec.find_operation`) and checked: the JSON body strictly against the
  schema declared for its status, error bodies against ``BatchError``, the declared response
  headers' formats. All violations are reported at once, grouped by operation. The test also
  fails if an operation in the emulator's route table was not exercised successfully, so a
  route added later without contract coverage is caught.
- ``test_microsoft_example_replays`` sends each of Microsoft's example requests
  (``spec/examples``) to the emulator, after creating the pool/job/task it refers to, and checks
  the response the same way; for creates, updates and resizes a GET must return what was sent.
- ``test_bodiless_statuses_and_single_date_on_the_wire`` checks framing the SDK's transport
  hides (a 304 without content, one ``Date`` header); ``test_violations_are_detected_and_grouped``
  shows that the checks above fail on hand-made deviations.

Error bodies: real Azure Batch error responses carry an ``"odata.metadata"`` key that the
spec's ``BatchError`` definition does not declare (an OData v3 artefact the REST spec omits);
the emulator sends it because its error bodies mirror the real service. That one key is
required to be the service's metadata URL and removed before the rest of the body is validated
strictly as ``BatchError``. No other extra key is tolerated, and nested errors (in task
collection results) must not carry it.

``$select``: a response to ``$select=a,b`` holds only those properties of each resource, as on
Azure, so the spec's ``required`` is waived for unselected properties (and only for them);
properties outside the selection are errors, every other rule of the schema applies.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.batch.models._models import BatchJobTerminateOptions  # not re-exported by 15.1
from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy
from azure.core.rest import HttpRequest

from batchexecutor.emulator import BatchEmulator
from tests.conftest import wait_for
from tests.contract.spec import (
    Example,
    examples,
    find_operation,
    operation,
    operation_ids,
    response_spec,
    response_validator,
    schema_errors,
    validate_error,
    validate_headers,
    validate_response,
)

#: The one key real Batch error bodies have beyond the spec's BatchError (see module doc).
ODATA_METADATA = "odata.metadata"
_ERROR_METADATA = re.compile(
    r"https?://[^/]+/\$metadata#Microsoft\.Azure\.Batch\.Protocol\.Entities\.Container"
    r"\.errors/@Element\Z"
)
#: LRO pollers of azure-batch sleep this long between GETs (the SDK's default is 5 s; it only
#: ever passes the value to ``time.sleep``, so a fraction of a second is fine).
POLL: Any = 0.05
PY = "python3 -c"


# --------------------------------------------------------------------------- recording


@dataclass(frozen=True)
class Exchange:
    """One HTTP request the SDK sent and the raw response it received."""

    method: str
    url: str
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def label(self) -> str:
        query = urlsplit(self.url).query
        query = "&".join(p for p in query.split("&") if not p.startswith("api-version="))
        return f"{self.method} {unquote(self.path)}{'?' + unquote(query) if query else ''}"


class ExchangeRecorder(HTTPPolicy):  # type: ignore[type-arg]
    """Records every raw response; added as a per-retry policy, so it sits below the SDK's
    error-raising policy and sees each attempt, successful or not, before anything parses it.

    Streamed bodies (file downloads) are read into memory here; ``iter_bytes`` then serves
    the SDK from that copy.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.exchanges: list[Exchange] = []

    def send(self, request: PipelineRequest) -> PipelineResponse:  # type: ignore[type-arg]
        response: PipelineResponse = self.next.send(request)  # type: ignore[type-arg]
        http = response.http_response
        body = http.read() if request.http_request.method != "HEAD" else b""
        exchange = Exchange(
            method=request.http_request.method,
            url=request.http_request.url,
            status=http.status_code,
            headers=dict(http.headers.items()),
            body=body or b"",
        )
        with self._lock:
            self.exchanges.append(exchange)
        return response

    @property
    def last(self) -> Exchange:
        with self._lock:
            return self.exchanges[-1]


@pytest.fixture
def recorder() -> ExchangeRecorder:
    return ExchangeRecorder()


@pytest.fixture
def recording_client(emulator: BatchEmulator, recorder: ExchangeRecorder) -> Iterator[BatchClient]:
    batch = BatchClient(emulator.endpoint, emulator.credential, per_retry_policies=[recorder])
    yield batch
    batch.close()


# --------------------------------------------------------------------------- validation


def _error_body_problems(body: Any) -> list[str]:
    """A top-level error body: ``odata.metadata`` (required) + a strictly valid BatchError."""
    if not isinstance(body, dict):
        return [f"an error response needs a JSON object body (BatchError), got {body!r:.200}"]
    rest = dict(body)
    metadata = rest.pop(ODATA_METADATA, None)
    problems = []
    if not isinstance(metadata, str) or not _ERROR_METADATA.match(metadata):
        problems.append(
            f"{ODATA_METADATA}: expected the service's '<endpoint>/$metadata#Microsoft.Azure."
            f"Batch.Protocol.Entities.Container.errors/@Element', got {metadata!r}"
        )
    try:
        validate_error(rest)
    except AssertionError as error:
        problems.append(str(error))
    return problems


_NOT_SELECTED = re.compile(r"(\$|\$\.value\[\d+\]): '([^']+)' is a required property\Z")


def _selection(exchange: Exchange) -> frozenset[str] | None:
    """The properties of an OData ``$select``, or None without one."""
    values = parse_qs(urlsplit(exchange.url).query).get("$select")
    return None if not values else frozenset(p.strip() for p in values[0].split(","))


def _projection_problems(op_id: str, status: int, body: Any, selected: frozenset[str]) -> list[str]:
    """A ``$select`` response holds exactly the selected properties of each resource (the
    service returns no others), so the spec's ``required`` is waived for the unselected ones
    and only for them; every other rule of the schema still applies."""
    validator = response_validator(op_id, status)
    assert validator is not None
    problems = []
    for problem in schema_errors(validator, body):
        match = _NOT_SELECTED.match(problem)
        if match is None or match.group(2) in selected:
            problems.append(problem)
    resources = body.get("value") if isinstance(body, dict) and "value" in body else [body]
    for i, resource in enumerate(resources if isinstance(resources, list) else []):
        extra = sorted(set(resource) - selected) if isinstance(resource, dict) else []
        if extra:
            problems.append(f"resource {i}: properties that $select did not ask for: {extra}")
    if not problems:
        return []
    listing = "\n".join(f"  {p}" for p in problems)
    return [
        f"{op_id} {status} response body with $select={','.join(sorted(selected))}: "
        f"{len(problems)} violation(s):\n{listing}"
    ]


def exchange_problems(exchange: Exchange) -> tuple[str, list[str]]:
    """``(operationId, violations)`` of one recorded response."""
    try:
        op_id, _ = find_operation(exchange.method, exchange.path)
    except LookupError as error:
        return "(no operation)", [str(error)]
    try:
        key, declared = response_spec(op_id, exchange.status)
    except AssertionError as error:
        return op_id, [str(error)]
    problems: list[str] = []
    schema = declared.get("schema")
    body: Any = None
    if schema is not None and schema.get("type") == "file":
        body = exchange.body
    elif exchange.body:
        content_type = next(
            (v for k, v in exchange.headers.items() if k.lower() == "content-type"), ""
        )
        if not content_type.lower().startswith("application/json"):
            problems.append(
                f"a JSON body needs Content-Type application/json, got {content_type!r}"
            )
        try:
            body = json.loads(exchange.body)
        except ValueError as error:
            problems.append(f"the body is not JSON ({error}): {exchange.body!r:.200}")
            body = exchange.body
    if key == "default":
        # HEAD responses never carry a body (HTTP); their errors are status + headers only.
        if exchange.method != "HEAD":
            problems += _error_body_problems(body)
    elif (selected := _selection(exchange)) is not None and schema is not None and body:
        problems += _projection_problems(op_id, exchange.status, body, selected)
    else:
        try:
            validate_response(op_id, exchange.status, body)
        except AssertionError as error:
            problems.append(str(error))
    try:
        validate_headers(op_id, exchange.status, exchange.headers)
    except AssertionError as error:
        problems.append(str(error))
    return op_id, problems


def violations_report(exchanges: list[Exchange]) -> str:
    """Every violation, grouped by operation; identical ones are listed once, with a count."""
    grouped: dict[str, dict[str, tuple[str, int]]] = {}
    for exchange in exchanges:
        op_id, problems = exchange_problems(exchange)
        for problem in problems:
            seen = grouped.setdefault(op_id, {})
            first, count = seen.get(problem, (exchange.label, 0))
            seen[problem] = (first, count + 1)
    lines = []
    for op_id in sorted(grouped):
        lines.append(f"{op_id}:")
        for problem, (first, count) in grouped[op_id].items():
            times = f" (x{count})" if count > 1 else ""
            lines.append(f"  {first} ->{times}")
            lines.extend(f"      {line}" for line in problem.splitlines())
    return "\n".join(lines)


def routed_operations(emulator: BatchEmulator) -> dict[str, tuple[str, re.Pattern[str]]]:
    """The emulator's route table: operationId -> (method, path pattern)."""
    service = emulator._service
    assert service is not None, "the emulator is not running"
    return {r.operation: (r.method, r.pattern) for r in service.routes}


def emulator_operation(emulator: BatchEmulator, exchange: Exchange) -> str | None:
    service = emulator._service
    assert service is not None
    route_, _ = service.match(exchange.method, unquote(exchange.path))
    return None if route_ is None else route_.operation


def expect_error(status: int, code: str | None, call: Callable[[], object]) -> HttpResponseError:
    """``call()`` must fail with this HTTP status (and Batch error code, when given)."""
    with pytest.raises(HttpResponseError) as info:
        call()
    error = info.value
    assert error.status_code == status, f"expected {status}, got {error.status_code}: {error}"
    if code is not None:
        got = getattr(error.error, "code", None)
        assert got == code, f"expected error code {code}, got {got}: {error}"
    return error


# --------------------------------------------------------------------------- the scenario

POOL = "contract-pool"
SCALE_POOL = "contract-scale"
JOB = "contract-job"


def _env(**values: str) -> list[bm.EnvironmentSetting]:
    return [bm.EnvironmentSetting(name=k, value=v) for k, v in values.items()]


def _metadata(**values: str) -> list[bm.BatchMetadataItem]:
    return [bm.BatchMetadataItem(name=k, value=v) for k, v in values.items()]


def _completed(client: BatchClient, job_id: str, task_id: str) -> bm.BatchTask:
    task: bm.BatchTask = wait_for(
        lambda: (t := client.get_task(job_id, task_id)).state == "completed" and t
    )
    return task


def _pools_and_nodes(client: BatchClient) -> str:
    """Pools (CRUD, exists, resize, stop resize, autoscale, delete), nodes and node files.

    Returns the ID of the node of the main pool."""
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=POOL,
            display_name="contract pool",
            vm_size="standard_d2s_v3",
            virtual_machine_configuration=bm.VirtualMachineConfiguration(
                image_reference=bm.BatchVmImageReference(
                    publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts"
                ),
                node_agent_sku_id="batch.node.ubuntu 22.04",
            ),
            resize_timeout=timedelta(minutes=10),
            target_dedicated_nodes=1,
            task_slots_per_node=4,
            task_scheduling_policy=bm.BatchTaskSchedulingPolicy(node_fill_type="pack"),
            start_task=bm.BatchStartTask(
                command_line=f"{PY} \"import os; print('start', os.environ['STAGE'])\"",
                environment_settings=_env(STAGE="boot"),
                max_task_retry_count=1,
                wait_for_success=True,
                user_identity=bm.UserIdentity(
                    auto_user=bm.AutoUserSpecification(scope="pool", elevation_level="admin")
                ),
            ),
            metadata=_metadata(owner="contract", purpose="spec"),
        )
    )
    expect_error(
        409,
        "PoolExists",
        lambda: client.create_pool(bm.BatchPoolCreateOptions(id=POOL, vm_size="standard_d2s_v3")),
    )
    expect_error(
        400,
        None,
        lambda: client.create_pool(
            bm.BatchPoolCreateOptions(id="bad pool id!", vm_size="standard_d2s_v3")
        ),
    )
    wait_for(lambda: client.get_pool(POOL).allocation_state == "steady")
    node_id: str = wait_for(
        lambda: next((n.id for n in client.list_nodes(POOL) if n.state == "idle"), None)
    )

    assert client.pool_exists(POOL)
    # 404 (no body) is pool_exists' documented "no"; azure-batch 15.1's BatchExceptionPolicy
    # raises on it before pool_exists can return False, against Azure as here.
    expect_error(404, None, lambda: client.pool_exists("no-such-pool"))
    client.get_pool(POOL, select=["id", "state", "metadata", "startTask"])
    assert {p.id for p in client.list_pools(max_results=1)} >= {POOL}  # pages via nextLink
    list(client.list_pools(filter="state eq 'active'", select=["id", "allocationState"]))
    expect_error(404, "PoolNotFound", lambda: client.get_pool("no-such-pool"))
    expect_error(
        400,
        "InvalidQueryParameterValue",
        lambda: list(client.list_pools(filter="this is not odata")),
    )
    client.update_pool(
        POOL,
        bm.BatchPoolUpdateOptions(
            display_name="contract pool, updated", metadata=_metadata(owner="contract", rev="2")
        ),
    )

    # Resize, stop a resize, autoscale and delete on a second pool.
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=SCALE_POOL, vm_size="standard_d2s_v3", target_dedicated_nodes=0
        )
    )
    wait_for(lambda: client.get_pool(SCALE_POOL).allocation_state == "steady")
    client.begin_resize_pool(
        SCALE_POOL,
        bm.BatchPoolResizeOptions(
            target_dedicated_nodes=1,
            resize_timeout=timedelta(minutes=5),
            node_deallocation_option="requeue",
        ),
        polling_interval=POLL,
    ).result()
    expect_error(
        400,
        "InvalidPropertyValue",
        lambda: client.begin_resize_pool(
            SCALE_POOL, bm.BatchPoolResizeOptions(target_dedicated_nodes=-1)
        ),
    )
    client.begin_resize_pool(
        SCALE_POOL, bm.BatchPoolResizeOptions(target_dedicated_nodes=2), polling_interval=POLL
    )
    client.begin_stop_pool_resize(SCALE_POOL, polling_interval=POLL).result()
    client.enable_pool_auto_scale(
        SCALE_POOL,
        bm.BatchPoolEnableAutoScaleOptions(
            auto_scale_formula="$TargetDedicatedNodes = 1;",
            auto_scale_evaluation_interval=timedelta(minutes=5),
        ),
    )
    wait_for(lambda: client.get_pool(SCALE_POOL).allocation_state == "steady")
    client.get_pool(SCALE_POOL)  # with autoScaleRun
    expect_error(
        409,
        "AutoScalingEnabled",
        lambda: client.begin_resize_pool(
            SCALE_POOL, bm.BatchPoolResizeOptions(target_dedicated_nodes=3)
        ),
    )
    client.disable_pool_auto_scale(SCALE_POOL)
    client.begin_delete_pool(SCALE_POOL, polling_interval=POLL).result()  # ends with a 404
    expect_error(404, "PoolNotFound", lambda: client.disable_pool_auto_scale(SCALE_POOL))

    # Nodes and their files.
    list(client.list_nodes(POOL))
    list(client.list_nodes(POOL, select=["id", "state", "startTaskInfo"], filter="state eq 'idle'"))
    client.get_node(POOL, node_id)
    client.get_node(POOL, node_id, select=["id", "schedulingState"])
    expect_error(404, "NodeNotFound", lambda: client.get_node(POOL, "tvmps_missing_d"))
    names = {f.name: f for f in client.list_node_files(POOL, node_id, recursive=True)}
    assert "startup/stdout.txt" in names, sorted(names)
    list(client.list_node_files(POOL, node_id, recursive=False))
    content = b"".join(client.download_node_file(POOL, node_id, "startup/stdout.txt"))
    assert b"start boot" in content
    b"".join(client.download_node_file(POOL, node_id, "startup/stdout.txt", ocp_range="bytes=0-4"))
    client.get_node_file_properties(POOL, node_id, "startup/stdout.txt")
    client.get_node_file_properties(POOL, node_id, "startup")  # a directory
    expect_error(
        404, None, lambda: b"".join(client.download_node_file(POOL, node_id, "startup/missing.txt"))
    )
    expect_error(
        404, None, lambda: client.get_node_file_properties(POOL, node_id, "startup/missing.txt")
    )
    return node_id


def _jobs_and_tasks(client: BatchClient) -> None:
    """Jobs (CRUD, replace, disable/enable, terminate, counts, prep status) and tasks."""
    client.create_job(
        bm.BatchJobCreateOptions(
            id=JOB,
            display_name="contract job",
            priority=10,
            max_parallel_tasks=4,
            uses_task_dependencies=True,
            allow_task_preemption=False,
            constraints=bm.BatchJobConstraints(
                max_wall_clock_time=timedelta(hours=1), max_task_retry_count=1
            ),
            job_preparation_task=bm.BatchJobPreparationTask(
                id="prep",
                command_line=f"{PY} \"print('prep')\"",
                environment_settings=_env(PREP="1"),
                constraints=bm.BatchTaskConstraints(
                    max_wall_clock_time=timedelta(minutes=5),
                    retention_time=timedelta(days=1),
                    max_task_retry_count=0,
                ),
                wait_for_success=True,
                rerun_on_node_reboot_after_success=False,
            ),
            job_release_task=bm.BatchJobReleaseTask(
                id="release",
                command_line=f"{PY} \"print('release')\"",
                max_wall_clock_time=timedelta(minutes=5),
                retention_time=timedelta(days=1),
            ),
            common_environment_settings=_env(COMMON="shared"),
            pool_info=bm.BatchPoolInfo(pool_id=POOL),
            all_tasks_complete_mode="noaction",
            task_failure_mode="noaction",
            metadata=_metadata(kind="contract"),
        )
    )
    expect_error(
        409,
        "JobExists",
        lambda: client.create_job(
            bm.BatchJobCreateOptions(id=JOB, pool_info=bm.BatchPoolInfo(pool_id=POOL))
        ),
    )
    expect_error(
        400,
        "InvalidPropertyValue",
        lambda: client.create_job(
            bm.BatchJobCreateOptions(id="bad job id!", pool_info=bm.BatchPoolInfo(pool_id=POOL))
        ),
    )
    expect_error(404, "JobNotFound", lambda: client.get_job("no-such-job"))
    job = client.get_job(JOB)
    expect_error(
        412,
        "ConditionNotMet",
        lambda: client.get_job(
            JOB, etag="0x8D0000000000000", match_condition=MatchConditions.IfNotModified
        ),
    )
    client.get_job(JOB, etag=job.etag, match_condition=MatchConditions.IfNotModified)
    client.get_job(JOB, select=["id", "state", "executionInfo", "jobPreparationTask"])
    list(client.list_jobs())
    list(client.list_jobs(filter="state eq 'active'", select=["id", "state"], max_results=1))

    # Tasks: a success that writes files, a failure with retries and exit conditions,
    # dependents of both, numeric tasks with ID ranges, a long runner.
    exit_conditions = bm.ExitConditions(
        exit_codes=[
            bm.ExitCodeMapping(code=3, exit_options=bm.ExitOptions(dependency_action="satisfy"))
        ],
        exit_code_ranges=[
            bm.ExitCodeRangeMapping(
                start=4, end=9, exit_options=bm.ExitOptions(dependency_action="block")
            )
        ],
        pre_processing_error=bm.ExitOptions(dependency_action="block"),
        file_upload_error=bm.ExitOptions(dependency_action="block"),
        default=bm.ExitOptions(dependency_action="block"),
    )
    client.create_task(
        JOB,
        bm.BatchTaskCreateOptions(
            id="parent",
            display_name="writes files",
            command_line=f"{PY} \"import os; open('out.txt', 'w').write(os.environ['GREETING']); "
            "os.makedirs('sub', exist_ok=True); open('sub/x.txt', 'w').write('x'); "
            "print('parent done')\"",
            environment_settings=_env(GREETING="hello"),
            constraints=bm.BatchTaskConstraints(
                max_wall_clock_time=timedelta(minutes=5),
                retention_time=timedelta(days=2),
                max_task_retry_count=0,
            ),
            required_slots=1,
            user_identity=bm.UserIdentity(
                auto_user=bm.AutoUserSpecification(scope="task", elevation_level="nonadmin")
            ),
        ),
    )
    client.create_task(
        JOB,
        bm.BatchTaskCreateOptions(
            id="fails",
            command_line=f'{PY} "import sys; sys.exit(3)"',
            exit_conditions=exit_conditions,
            constraints=bm.BatchTaskConstraints(max_task_retry_count=1),
        ),
    )
    client.create_task(
        JOB,
        bm.BatchTaskCreateOptions(
            id="child",
            command_line=f"{PY} \"print('child')\"",
            depends_on=bm.BatchTaskDependencies(task_ids=["parent", "fails"]),
        ),
    )
    client.create_task(
        JOB,
        bm.BatchTaskCreateOptions(
            id="sleeper",
            command_line=f'{PY} "import time; time.sleep(120)"',
            constraints=bm.BatchTaskConstraints(max_wall_clock_time=timedelta(minutes=5)),
        ),
    )
    client.create_task(
        JOB,
        bm.BatchTaskCreateOptions(  # fails before its process starts
            id="no-program",
            command_line="no-such-program-on-this-host --flag",
            exit_conditions=exit_conditions,
        ),
    )
    client.create_task(
        JOB,
        bm.BatchTaskCreateOptions(  # ended by maxWallClockTime
            id="overtime",
            command_line=f'{PY} "import time; time.sleep(60)"',
            constraints=bm.BatchTaskConstraints(
                max_wall_clock_time=timedelta(seconds=1), max_task_retry_count=0
            ),
        ),
    )
    expect_error(
        409,
        "TaskExists",
        lambda: client.create_task(
            JOB, bm.BatchTaskCreateOptions(id="parent", command_line="true")
        ),
    )
    expect_error(
        400,
        "InvalidPropertyValue",
        lambda: client.create_task(
            JOB, bm.BatchTaskCreateOptions(id="bad task id!", command_line="true")
        ),
    )
    expect_error(
        404,
        "JobNotFound",
        lambda: client.create_task(
            "no-such-job", bm.BatchTaskCreateOptions(id="t", command_line="true")
        ),
    )

    result = client.create_task_collection(
        JOB,
        bm.BatchTaskGroup(
            task_values=[
                bm.BatchTaskCreateOptions(id="1", command_line=f'{PY} "print(1)"'),
                bm.BatchTaskCreateOptions(id="2", command_line=f'{PY} "print(2)"'),
                bm.BatchTaskCreateOptions(
                    id="3",
                    command_line=f'{PY} "print(3)"',
                    depends_on=bm.BatchTaskDependencies(
                        task_id_ranges=[bm.BatchTaskIdRange(start=1, end=2)]
                    ),
                ),
                bm.BatchTaskCreateOptions(
                    id="parent", command_line="true"
                ),  # exists: a client error
            ]
        ),
    )
    statuses = sorted(r.status for r in result.result_values or [])
    assert statuses == ["clienterror", "success", "success", "success"], statuses
    client.create_tasks(
        JOB, [bm.BatchTaskCreateOptions(id=f"bulk-{i}", command_line="true") for i in range(3)]
    )

    parent = _completed(client, JOB, "parent")
    assert parent.execution_info is not None and parent.execution_info.exit_code == 0
    failed = _completed(client, JOB, "fails")
    assert failed.execution_info is not None and failed.execution_info.retry_count == 1
    _completed(client, JOB, "child")
    _completed(client, JOB, "3")
    _completed(client, JOB, "no-program")
    _completed(client, JOB, "overtime")
    wait_for(lambda: client.get_task(JOB, "sleeper").state == "running")

    client.get_task(JOB, "parent")
    client.get_task(JOB, "parent", select=["id", "state", "executionInfo", "nodeInfo"])
    expect_error(404, "TaskNotFound", lambda: client.get_task(JOB, "no-such-task"))
    assert len(list(client.list_tasks(JOB, max_results=2))) == 12  # pages via nextLink
    list(client.list_tasks(JOB, filter="state eq 'completed'", select=["id", "executionInfo"]))
    list(client.list_subtasks(JOB, "parent"))
    client.get_job_task_counts(JOB)
    list(client.list_job_preparation_and_release_task_status(JOB))

    # Task files.
    files = {f.name for f in client.list_task_files(JOB, "parent", recursive=True)}
    assert {"stdout.txt", "wd/out.txt", "wd/sub/x.txt"} <= files, sorted(files)
    list(client.list_task_files(JOB, "parent", recursive=False))
    assert b"".join(client.download_task_file(JOB, "parent", "wd/out.txt")) == b"hello"
    b"".join(client.download_task_file(JOB, "parent", "stdout.txt", ocp_range="bytes=0-5"))
    client.get_task_file_properties(JOB, "parent", "wd/out.txt")
    client.get_task_file_properties(JOB, "parent", "wd/sub")
    expect_error(409, "DirectoryNotEmpty", lambda: client.delete_task_file(JOB, "parent", "wd/sub"))
    client.delete_task_file(JOB, "parent", "wd/out.txt")
    client.delete_task_file(JOB, "parent", "wd/sub", recursive=True)
    expect_error(404, None, lambda: client.delete_task_file(JOB, "parent", "wd/out.txt"))
    expect_error(404, None, lambda: client.get_task_file_properties(JOB, "parent", "wd/out.txt"))
    expect_error(
        404, None, lambda: b"".join(client.download_task_file(JOB, "parent", "wd/out.txt"))
    )

    # Replace, terminate, reactivate, delete.
    client.replace_task(
        JOB,
        "sleeper",
        bm.BatchTask(
            constraints=bm.BatchTaskConstraints(
                max_wall_clock_time=timedelta(minutes=10),
                retention_time=timedelta(days=1),
                max_task_retry_count=0,
            )
        ),
    )
    client.terminate_task(JOB, "sleeper")
    _completed(client, JOB, "sleeper")
    client.reactivate_task(JOB, "fails")
    _completed(client, JOB, "fails")
    expect_error(409, None, lambda: client.reactivate_task(JOB, "parent"))
    client.delete_task(JOB, "bulk-0")
    expect_error(404, "TaskNotFound", lambda: client.delete_task(JOB, "bulk-0"))

    # Job updates and state changes.
    client.update_job(
        JOB,
        bm.BatchJobUpdateOptions(
            priority=20,
            max_parallel_tasks=2,
            metadata=_metadata(kind="contract", rev="2"),
            constraints=bm.BatchJobConstraints(
                max_wall_clock_time=timedelta(hours=2), max_task_retry_count=2
            ),
        ),
    )
    client.replace_job(
        JOB,
        bm.BatchJob(
            pool_info=bm.BatchPoolInfo(pool_id=POOL),
            priority=30,
            max_parallel_tasks=3,
            allow_task_preemption=False,
            all_tasks_complete_mode="noaction",
            constraints=bm.BatchJobConstraints(
                max_wall_clock_time=timedelta(hours=3), max_task_retry_count=0
            ),
            metadata=_metadata(kind="contract", rev="3"),
        ),
    )
    expect_error(400, None, lambda: client.update_job(JOB, bm.BatchJobUpdateOptions(priority=5000)))
    client.begin_disable_job(
        JOB, bm.BatchJobDisableOptions(disable_tasks="requeue"), polling_interval=POLL
    ).result()
    client.get_job(JOB)
    client.begin_enable_job(JOB, polling_interval=POLL).result()
    client.begin_terminate_job(
        JOB, BatchJobTerminateOptions(termination_reason="contract done"), polling_interval=POLL
    ).result()
    expect_error(
        409,
        "JobCompleted",
        lambda: client.begin_terminate_job(
            JOB, BatchJobTerminateOptions(termination_reason="again")
        ),
    )  # 15.1 needs a body here
    expect_error(
        409,
        "JobCompleted",
        lambda: client.create_task(JOB, bm.BatchTaskCreateOptions(id="late", command_line="true")),
    )
    client.get_job(JOB)  # completed, with executionInfo.endTime and terminateReason
    client.get_job_task_counts(JOB)
    client.begin_delete_job(JOB, polling_interval=POLL).result()  # ends with a 404
    expect_error(404, "JobNotFound", lambda: client.begin_delete_job(JOB))

    # Exit options with job actions: a failure terminates the job, which then completes.
    client.create_job(
        bm.BatchJobCreateOptions(
            id="contract-actions",
            pool_info=bm.BatchPoolInfo(pool_id=POOL),
            task_failure_mode="performexitoptionsjobaction",
        )
    )
    client.create_task(
        "contract-actions",
        bm.BatchTaskCreateOptions(
            id="fatal",
            command_line=f'{PY} "import sys; sys.exit(2)"',
            exit_conditions=bm.ExitConditions(
                exit_code_ranges=[
                    bm.ExitCodeRangeMapping(
                        start=1,
                        end=5,
                        exit_options=bm.ExitOptions(
                            job_action="terminate", dependency_action="block"
                        ),
                    )
                ],
                default=bm.ExitOptions(job_action="none"),
            ),
        ),
    )
    wait_for(lambda: client.get_job("contract-actions").state == "completed")
    _completed(client, "contract-actions", "fatal")
    list(client.list_jobs(filter="state eq 'completed'"))


def _containers(client: BatchClient) -> None:
    """A container pool (registry, start task in a container), a job whose preparation task
    runs in a container, container tasks, and the pairing failure: ``containerInfo`` in a
    task's, a start task's and a job preparation task's execution info, ``failureInfo`` of a
    container task that cannot run. (The emulator fixture runs containers on the host.)"""
    registry = bm.ContainerRegistryReference(
        username="puller", password="not-returned", registry_server="https://contract.azurecr.io"
    )
    image = "contract.azurecr.io/worker:1"
    boxed = bm.BatchTaskContainerSettings(
        image_name=image,
        container_run_options="--memory 1g",
        registry=registry,
        working_directory="taskWorkingDirectory",
        container_host_batch_bind_mounts=[
            bm.ContainerHostBatchBindMountEntry(source="Task", is_read_only=False),
            bm.ContainerHostBatchBindMountEntry(source="Shared", is_read_only=True),
        ],
    )
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id="contract-containers",
            vm_size="standard_d2s_v3",
            virtual_machine_configuration=bm.VirtualMachineConfiguration(
                image_reference=bm.BatchVmImageReference(
                    publisher="microsoft-dsvm", offer="ubuntu-hpc", sku="2204"
                ),
                node_agent_sku_id="batch.node.ubuntu 22.04",
                container_configuration=bm.BatchContainerConfiguration(
                    type="dockerCompatible",
                    container_image_names=[image],
                    container_registries=[registry],
                ),
            ),
            target_dedicated_nodes=1,
            task_slots_per_node=2,
            start_task=bm.BatchStartTask(
                command_line=f"{PY} \"print('started')\"",
                container_settings=bm.BatchTaskContainerSettings(image_name=image),
            ),
        )
    )
    node_id: str = wait_for(
        lambda: next(
            (n.id for n in client.list_nodes("contract-containers") if n.state == "idle"), None
        )
    )
    node = client.get_node("contract-containers", node_id)
    assert node.start_task_info is not None and node.start_task_info.container_info is not None
    client.get_pool("contract-containers")
    client.create_job(
        bm.BatchJobCreateOptions(
            id="contract-containers",
            pool_info=bm.BatchPoolInfo(pool_id="contract-containers"),
            job_preparation_task=bm.BatchJobPreparationTask(
                command_line=f"{PY} \"print('prep')\"",
                container_settings=bm.BatchTaskContainerSettings(
                    image_name=image, working_directory="containerImageDefault"
                ),
            ),
        )
    )
    client.create_task(
        "contract-containers",
        bm.BatchTaskCreateOptions(
            id="boxed", command_line=f"{PY} \"print('boxed')\"", container_settings=boxed
        ),
    )
    client.create_task(  # no containerSettings on a container pool: fails on the node
        "contract-containers", bm.BatchTaskCreateOptions(id="bare", command_line="true")
    )
    task = _completed(client, "contract-containers", "boxed")
    assert task.execution_info is not None and task.execution_info.container_info is not None
    bare = _completed(client, "contract-containers", "bare")
    assert bare.execution_info is not None and bare.execution_info.failure_info is not None
    list(client.list_tasks("contract-containers"))
    client.get_task("contract-containers", "boxed", select=["id", "containerSettings"])
    [status] = list(client.list_job_preparation_and_release_task_status("contract-containers"))
    prep = status.job_preparation_task_execution_info
    assert prep is not None and prep.container_info is not None
    client.begin_delete_job("contract-containers", polling_interval=POLL).result()


def _unauthenticated(emulator: BatchEmulator, recorder: ExchangeRecorder) -> None:
    """A request signed with the wrong key gets 403 AuthenticationFailed."""
    wrong = AzureNamedKeyCredential(emulator.account_name, base64.b64encode(b"0" * 64).decode())
    with BatchClient(emulator.endpoint, wrong, per_retry_policies=[recorder]) as intruder:
        expect_error(403, "AuthenticationFailed", lambda: intruder.get_pool(POOL))


def test_every_response_of_a_rich_scenario_matches_the_spec(
    emulator: BatchEmulator, recording_client: BatchClient, recorder: ExchangeRecorder
) -> None:
    _pools_and_nodes(recording_client)
    _jobs_and_tasks(recording_client)
    _containers(recording_client)
    _unauthenticated(emulator, recorder)
    exchanges = list(recorder.exchanges)
    assert exchanges, "the recorder saw no responses"

    failures: list[str] = []
    report = violations_report(exchanges)
    if report:
        failures.append(f"responses that break the spec, by operation:\n{report}")

    # The emulator's route table: every route is a spec operation, labels the requests the
    # same way the spec does, and was exercised with a successful response here.
    routes = routed_operations(emulator)
    not_in_spec = sorted(set(routes) - set(operation_ids()))
    if not_in_spec:
        failures.append(f"routes whose operation the spec extract lacks: {not_in_spec}")
    for op_id, (method, _) in routes.items():
        if op_id in operation_ids() and operation(op_id)["method"] != method:
            failures.append(
                f"{op_id} is routed for {method}, the spec says {operation(op_id)['method']}"
            )
    mislabelled = sorted(
        {
            f"{x.label}: spec {find_operation(x.method, x.path)[0]}, emulator {routed}"
            for x in exchanges
            if (routed := emulator_operation(emulator, x)) != find_operation(x.method, x.path)[0]
        }
    )
    if mislabelled:
        failures.append(
            "requests the emulator routes to another operation than the spec:\n  "
            + "\n  ".join(mislabelled)
        )
    succeeded = {exchange_problems(x)[0] for x in exchanges if 200 <= x.status < 300}
    uncovered = sorted(set(routes) - succeeded)
    if uncovered:
        failures.append(
            f"routed operations the scenario never exercised successfully "
            f"(add them to the scenario): {uncovered}"
        )
    error_statuses = {x.status for x in exchanges if x.status >= 400}
    if not {400, 403, 404, 409, 412} <= error_statuses:
        failures.append(
            f"error statuses exercised: {sorted(error_statuses)}; "
            "expected at least 400, 403, 404, 409 and 412"
        )
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


def test_bodiless_statuses_and_single_date_on_the_wire(
    emulator: BatchEmulator, client: BatchClient
) -> None:
    """What the SDK's transport hides: a 304 (conditional GET) must not carry content, or the
    bytes stay in the keep-alive connection for the next response; error responses carry one
    ``Date`` header, not two."""
    from batchexecutor.emulator._auth import sign, string_to_sign

    client.create_pool(bm.BatchPoolCreateOptions(id=POOL, vm_size="standard_d2s_v3"))
    # The pool's ETag changes once more when its allocation settles: read it after that.
    wait_for(lambda: client.get_pool(POOL).allocation_state == "steady")
    etag = client.get_pool(POOL).etag
    assert etag is not None

    def raw_get(target: str, **headers: str) -> tuple[int, list[tuple[str, str]], bytes]:
        headers["ocp-date"] = formatdate(usegmt=True)
        signature = sign(
            emulator.account_key, string_to_sign("GET", target, headers, emulator.account_name)
        )
        headers["Authorization"] = f"SharedKey {emulator.account_name}:{signature}"
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()

    conn = http.client.HTTPConnection(urlsplit(emulator.endpoint).netloc, timeout=10)
    try:
        query = "?api-version=2025-06-01"
        status, headers, body = raw_get(f"/pools/{POOL}{query}", **{"If-None-Match": etag})
        assert (status, body) == (304, b"")
        assert [v for k, v in headers if k.lower() == "content-type"] == []
        # The same connection still frames the next response correctly.
        status, headers, body = raw_get(f"/pools/no-such-pool{query}")
        assert status == 404 and json.loads(body)["code"] == "PoolNotFound"
        dates = [v for k, v in headers if k.lower() == "date"]
        assert len(dates) == 1, dates
    finally:
        conn.close()


def test_violations_are_detected_and_grouped() -> None:
    """The checks above can fail: hand-made deviations are reported, grouped by operation."""
    ok_error = json.dumps(
        {
            ODATA_METADATA: "http://127.0.0.1:1/$metadata#Microsoft.Azure.Batch.Protocol.Entities"
            ".Container.errors/@Element",
            "code": "JobNotFound",
            "message": {"lang": "en-US", "value": "gone"},
        }
    ).encode()
    json_type = {"Content-Type": "application/json;odata=minimalmetadata"}
    base = "http://127.0.0.1:1"
    good = [
        Exchange("GET", f"{base}/jobs/j?api-version=2025-06-01", 404, json_type, ok_error),
        Exchange("HEAD", f"{base}/pools/p", 404, {}, b""),
        Exchange(
            "GET",
            f"{base}/jobs/j/taskcounts",
            200,
            json_type,
            json.dumps(
                {
                    "taskCounts": {
                        "active": 0,
                        "running": 0,
                        "completed": 0,
                        "succeeded": 0,
                        "failed": 0,
                    },
                    "taskSlotCounts": {
                        "active": 0,
                        "running": 0,
                        "completed": 0,
                        "succeeded": 0,
                        "failed": 0,
                    },
                }
            ).encode(),
        ),
    ]
    assert violations_report(good) == ""
    extra_key = json.loads(ok_error) | {"extra": 1}
    no_metadata = {k: v for k, v in json.loads(ok_error).items() if k != ODATA_METADATA}
    bad = [
        Exchange("GET", f"{base}/jobs/j", 404, json_type, json.dumps(extra_key).encode()),
        Exchange("GET", f"{base}/jobs/k", 404, json_type, json.dumps(no_metadata).encode()),
        Exchange(
            "GET",
            f"{base}/jobs/j/taskcounts",
            200,
            json_type,
            json.dumps({"taskCounts": {"active": "0"}}).encode(),
        ),
        Exchange("POST", f"{base}/jobs", 201, {"Last-Modified": "yesterday"}, b""),
        Exchange("GET", f"{base}/jobs/j/taskcounts", 200, {"Content-Type": "text/plain"}, b"{}"),
        Exchange("GET", f"{base}/nowhere", 200, {}, b""),
        Exchange("POST", f"{base}/jobs/j/tasks/t/terminate", 200, {}, b""),
    ]
    report = violations_report(bad)
    for needle in (
        "Jobs_GetJob:",
        "'extra' was unexpected",
        f"{ODATA_METADATA}: expected",
        "Jobs_GetJobTaskCounts:",
        "'taskSlotCounts' is a required property",
        "$.taskCounts.active: '0' is not of type 'integer'",
        "Jobs_CreateJob:",
        "Last-Modified: 'yesterday' is not an RFC 7231 date",
        "needs Content-Type application/json",
        "(no operation):",
        "Tasks_TerminateTask:",
        "does not declare status 200",
    ):
        assert needle in report, f"{needle!r} not in:\n{report}"


# --------------------------------------------------------------------------- Microsoft's examples

EXAMPLE_POOL_SIZE = 1
#: Examples whose request the emulator rejects by design, with the error it must give
#: (none at present: container settings, once rejected, are emulated).
UNSUPPORTED_BY_EMULATOR: dict[str, tuple[int, str, str]] = {}
#: Operations after which a GET of the resource must show every property that was sent.
_READ_BACK: dict[str, Callable[[dict[str, str], Any], list[tuple[str, Any]]]] = {
    "Pools_CreatePool": lambda p, body: [(f"/pools/{body['id']}", body)],
    "Jobs_CreateJob": lambda p, body: [(f"/jobs/{body['id']}", body)],
    "Tasks_CreateTask": lambda p, body: [(f"/jobs/{p['jobId']}/tasks/{body['id']}", body)],
    "Tasks_CreateTaskCollection": lambda p, body: [
        (f"/jobs/{p['jobId']}/tasks/{task['id']}", task) for task in body["value"]
    ],
    "Jobs_UpdateJob": lambda p, body: [(f"/jobs/{p['jobId']}", body)],
    "Jobs_ReplaceJob": lambda p, body: [(f"/jobs/{p['jobId']}", body)],
    "Pools_ResizePool": lambda p, body: [(f"/pools/{p['poolId']}", body)],
}


def _read_back_mismatches(sent: Any, got: Any, where: str = "$") -> list[str]:
    """Where ``got`` (a GET body) does not carry ``sent`` (a request body) unchanged."""
    if isinstance(sent, dict):
        if not isinstance(got, dict):
            return [f"{where}: sent an object, GET returns {got!r}"]
        return [
            m
            for key, value in sent.items()
            for m in _read_back_mismatches(value, got.get(key), f"{where}.{key}")
        ]
    if isinstance(sent, list):
        if not isinstance(got, list) or len(got) != len(sent):
            return [f"{where}: sent {sent!r}, GET returns {got!r}"]
        return [
            m
            for i, (s, g) in enumerate(zip(sent, got, strict=True))
            for m in _read_back_mismatches(s, g, f"{where}[{i}]")
        ]
    return [] if sent == got else [f"{where}: sent {sent!r}, GET returns {got!r}"]


def _raw(
    client: BatchClient,
    recorder: ExchangeRecorder,
    method: str,
    url: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> Exchange:
    """Send one request through the SDK's pipeline (signing, policies) and return what came
    back, error or not."""
    query = f"?{urlencode(params)}" if params else ""
    request = HttpRequest(
        method, url + query, headers=headers or {}, json=body if body is not None else None
    )
    before = len(recorder.exchanges)
    # BatchExceptionPolicy raises on non-2xx; the recorder has the response either way.
    with contextlib.suppress(HttpResponseError):
        client.send_request(request).read()
    assert len(recorder.exchanges) == before + 1, "expected exactly one HTTP exchange"
    return recorder.last


def _get_json(client: BatchClient, recorder: ExchangeRecorder, endpoint: str, path: str) -> Any:
    exchange = _raw(client, recorder, "GET", endpoint + path, params={"api-version": "2025-06-01"})
    assert exchange.status == 200, f"GET {path}: {exchange.status} {exchange.body!r:.300}"
    return json.loads(exchange.body)


def _prepare(client: BatchClient, example: Example) -> None:
    """Create what the example's request refers to, under the example's own IDs."""
    params = example.parameters
    op_id = example.operation_id
    pool_id = params.get("poolId")
    job_id = params.get("jobId")
    task_id = params.get("taskId")
    if op_id == "Pools_CreatePool":
        return
    if pool_id is not None:  # pool operations: the pool itself, steady
        client.create_pool(
            bm.BatchPoolCreateOptions(
                id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=EXAMPLE_POOL_SIZE
            )
        )
        wait_for(lambda: client.get_pool(pool_id).allocation_state == "steady")
        return
    if op_id in ("Pools_ListPools",):
        client.create_pool(bm.BatchPoolCreateOptions(id="listed", vm_size="standard_d2s_v3"))
        return
    # Job and task operations: a pool of one node and, unless it is to be created, the job.
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id="poolId", vm_size="standard_d2s_v3", target_dedicated_nodes=1, task_slots_per_node=4
        )
    )
    wait_for(lambda: any(n.state == "idle" for n in client.list_nodes("poolId")))
    job = job_id or "jobId"
    if op_id != "Jobs_CreateJob":
        client.create_job(
            bm.BatchJobCreateOptions(id=job, pool_info=bm.BatchPoolInfo(pool_id="poolId"))
        )
    if task_id is None:
        if op_id in ("Jobs_GetJobTaskCounts", "Tasks_ListTasks"):
            client.create_task(job, bm.BatchTaskCreateOptions(id="t1", command_line="true"))
        return
    if op_id == "Tasks_TerminateTask":
        command = f'{PY} "import time; time.sleep(120)"'
    elif op_id == "Tasks_ReactivateTask":
        command = f'{PY} "import sys; sys.exit(1)"'
    else:  # a task that leaves wd/testFile.txt behind (the file examples ask for it)
        command = f"{PY} \"open('testFile.txt', 'w').write('example')\""
    client.create_task(job, bm.BatchTaskCreateOptions(id=task_id, command_line=command))
    if op_id == "Tasks_TerminateTask":
        wait_for(lambda: client.get_task(job, task_id).state == "running")
    else:
        _completed(client, job, task_id)


def _request_parts(example: Example, missing: bool) -> tuple[str, dict[str, str], dict[str, str]]:
    """The example's path (IDs substituted; ``missing``: the last ID made unknown), query
    parameters and headers, from the operation's declared parameters."""
    op = operation(example.operation_id)
    path: str = op["path"]
    params: dict[str, str] = {}
    headers: dict[str, str] = {}
    path_names = re.findall(r"\{(\w+)\}", path)
    for name in path_names:
        value = str(example.parameters[name])
        if missing and name == path_names[-1]:
            value = f"missing-{value}"
        path = path.replace(f"{{{name}}}", quote(value, safe=""))
    for declared in op["parameters"]:
        name, where = declared["name"], declared.get("in")
        if name not in example.parameters or where not in ("query", "header"):
            continue
        value = example.parameters[name]
        text = str(value).lower() if isinstance(value, bool) else str(value)
        (params if where == "query" else headers)[name] = text
    return path, params, headers


@pytest.mark.parametrize("example", examples(), ids=lambda e: e.file.removesuffix(".json"))
def test_microsoft_example_replays(
    example: Example,
    emulator: BatchEmulator,
    recording_client: BatchClient,
    recorder: ExchangeRecorder,
) -> None:
    routes = routed_operations(emulator)
    if example.operation_id not in routes:
        pytest.skip(f"the emulator does not implement {example.operation_id}")
    client = recording_client
    _prepare(client, example)
    body = example.request_body
    failures: list[str] = []
    for expected in example.responses:
        # A second documented status (PoolExists: 404) is replayed against a missing resource.
        missing = expected.status >= 400
        path, params, headers = _request_parts(example, missing)
        exchange = _raw(
            client,
            recorder,
            operation(example.operation_id)["method"],
            emulator.endpoint + path,
            params=params,
            headers=headers,
            body=body,
        )
        _, problems = exchange_problems(exchange)
        failures += [f"{exchange.label} -> {exchange.status}: {p}" for p in problems]
        unsupported = UNSUPPORTED_BY_EMULATOR.get(example.file)
        if unsupported is not None:
            status, code, prop = unsupported
            error = json.loads(exchange.body) if exchange.body else {}
            values = {v.get("key"): v.get("value") for v in error.get("values", [])}
            if (exchange.status, error.get("code"), values.get("PropertyName")) != (
                status,
                code,
                prop,
            ):
                failures.append(
                    f"expected the documented rejection {unsupported}, got "
                    f"{exchange.status} {exchange.body!r:.300}"
                )
            continue
        if exchange.status != expected.status:
            failures.append(
                f"{exchange.label}: the example documents {expected.status}, the "
                f"emulator answered {exchange.status} {exchange.body!r:.300}"
            )
            continue
        read_back = _READ_BACK.get(example.operation_id)
        if read_back is not None and body is not None:
            if example.operation_id in ("Pools_CreatePool", "Pools_ResizePool"):
                pool = body.get("id") or example.parameters.get("poolId")
                wait_for(lambda p=pool: client.get_pool(p).allocation_state == "steady")
            for get_path, sent in read_back(example.parameters, body):
                got = _get_json(client, recorder, emulator.endpoint, get_path)
                failures += [
                    f"GET {get_path} after {example.operation_id}: {m}"
                    for m in _read_back_mismatches(sent, got)
                ]
    # Everything else the replay fetched (setup, read-backs) must match the spec too.
    report = violations_report(list(recorder.exchanges))
    if report:
        failures.append(f"responses that break the spec:\n{report}")
    if failures:
        pytest.fail(f"{example.file} ({example.title}):\n" + "\n".join(failures), pytrace=False)
