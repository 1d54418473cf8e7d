"""Tests for the emulator's OData $filter / $select support (batchexecutor.emulator._odata)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from batchexecutor.emulator import _odata
from batchexecutor.emulator._odata import (
    FILE_FILTERABLE,
    JOB_FILTERABLE,
    JOB_SELECTABLE,
    NODE_FILTERABLE,
    NODE_SELECTABLE,
    POOL_FILTERABLE,
    POOL_SELECTABLE,
    TASK_FILTERABLE,
    TASK_SELECTABLE,
    ODataError,
    apply_select,
    compile_filter,
    parse_select,
)

SPEC = Path("/work/shared/reference/azure-batch-2025-06-01/BatchService.json")


def completed_task(
    task_id: str = "task-1", exit_code: int = 0, end: str = "2026-11-24T13:05:01.123456Z"
) -> dict[str, Any]:
    return {
        "id": task_id,
        "state": "completed",
        "creationTime": "2026-11-24T13:00:00.000000Z",
        "lastModified": "2026-11-24T13:00:00.000000Z",
        "stateTransitionTime": end,
        "executionInfo": {
            "startTime": "2026-11-24T13:04:00.000000Z",
            "endTime": end,
            "exitCode": exit_code,
            "result": "success" if exit_code == 0 else "failure",
            "retryCount": 0,
            "requeueCount": 0,
        },
    }


def active_task(task_id: str = "task-2") -> dict[str, Any]:
    return {
        "id": task_id,
        "state": "active",
        "creationTime": "2026-11-24T13:00:00.000000Z",
        "lastModified": "2026-11-24T13:00:00.000000Z",
        "stateTransitionTime": "2026-11-24T13:00:00.000000Z",
    }


def matches(text: str, resource: Mapping[str, Any], filterable: Any = TASK_FILTERABLE) -> bool:
    return compile_filter(text, filterable=filterable)(resource)


def error_of(text: str, filterable: Any = TASK_FILTERABLE) -> ODataError:
    with pytest.raises(ODataError) as info:
        compile_filter(text, filterable=filterable)
    return info.value


# --------------------------------------------------------------------------------------------
# Basics
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "   \t\n "])
def test_empty_filter_matches_everything(text: str) -> None:
    predicate = compile_filter(text, filterable=TASK_FILTERABLE)
    assert predicate(completed_task())
    assert predicate(active_task())
    assert predicate({})


def test_predicate_returns_real_bools() -> None:
    for text in [
        "id eq 'task-1'",
        "state ne 'active'",
        "executionInfo/exitCode gt 0",
        "creationTime ge datetime'2026-01-01T00:00:00Z'",
        "startswith(id, 'task')",
        "not (id eq 'x' or id eq 'y')",
        "executionInfo eq null",
    ]:
        for resource in (completed_task(), active_task(), {}):
            result = compile_filter(text)(resource)
            assert type(result) is bool, (text, resource)


def test_odata_error_is_a_value_error_with_details() -> None:
    err = error_of("id eq 'abc")
    assert isinstance(err, ValueError)
    assert err.parameter == "$filter"
    assert err.value == "id eq 'abc"
    assert err.position == 6
    assert "unterminated string" in err.message
    assert "position 6" in err.message
    assert err.message in str(err)


# --------------------------------------------------------------------------------------------
# Comparison operators
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "expected"),
    [("eq", [2]), ("ne", [1, 3]), ("gt", [3]), ("ge", [2, 3]), ("lt", [1]), ("le", [1, 2])],
)
def test_integer_operators(op: str, expected: list[int]) -> None:
    tasks = [completed_task(f"t{code}", exit_code=code) for code in (1, 2, 3)]
    predicate = compile_filter(f"executionInfo/exitCode {op} 2", filterable=TASK_FILTERABLE)
    assert [t["executionInfo"]["exitCode"] for t in tasks if predicate(t)] == expected


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ("eq", ["b"]),
        ("ne", ["a", "c"]),
        ("gt", ["c"]),
        ("ge", ["b", "c"]),
        ("lt", ["a"]),
        ("le", ["a", "b"]),
    ],
)
def test_string_operators_on_id(op: str, expected: list[str]) -> None:
    tasks = [active_task(name) for name in ("a", "b", "c")]
    predicate = compile_filter(f"id {op} 'b'", filterable=TASK_FILTERABLE)
    assert [t["id"] for t in tasks if predicate(t)] == expected


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ("eq", [2]),
        ("ne", [1, 3]),
        ("gt", [3]),
        ("ge", [2, 3]),
        ("lt", [1]),
        ("le", [1, 2]),
    ],
)
def test_datetime_operators(op: str, expected: list[int]) -> None:
    tasks = [
        completed_task(f"t{minute}", end=f"2026-11-24T13:0{minute}:00.000000Z")
        for minute in (1, 2, 3)
    ]
    predicate = compile_filter(
        f"stateTransitionTime {op} datetime'2026-11-24T13:02:00Z'", filterable=TASK_FILTERABLE
    )
    assert [int(t["id"][1:]) for t in tasks if predicate(t)] == expected


def test_negative_integer_literal() -> None:
    task = completed_task(exit_code=-1)
    assert matches("executionInfo/exitCode eq -1", task)
    assert matches("executionInfo/exitCode lt 0", task)
    assert not matches("executionInfo/exitCode gt -1", task)
    assert matches("(executionInfo/exitCode lt 0) or (executionInfo/exitCode gt 0)", task)


@pytest.mark.parametrize(
    ("op", "expected"),
    [("eq", [5]), ("ne", [4, 6]), ("gt", [4]), ("ge", [4, 5]), ("lt", [6]), ("le", [5, 6])],
)
def test_literal_on_the_left(op: str, expected: list[int]) -> None:
    # "5 gt x" means x lt 5
    tasks = [completed_task(f"t{code}", exit_code=code) for code in (4, 5, 6)]
    predicate = compile_filter(f"5 {op} executionInfo/exitCode", filterable=TASK_FILTERABLE)
    assert [t["executionInfo"]["exitCode"] for t in tasks if predicate(t)] == expected


def test_literal_on_the_left_is_flipped() -> None:
    task = completed_task(exit_code=5)
    assert matches("3 lt executionInfo/exitCode", task)
    assert matches("5 le executionInfo/exitCode", task)
    assert not matches("5 gt executionInfo/exitCode", task)
    assert matches("'task-1' eq id", task)
    assert matches("datetime'2026-01-01T00:00:00Z' lt creationTime", task)


def test_boolean_properties() -> None:
    pool = {"id": "p", "enableAutoScale": True, "enableInterNodeCommunication": False}
    assert matches("enableAutoScale eq true", pool, POOL_FILTERABLE)
    assert not matches("enableAutoScale eq false", pool, POOL_FILTERABLE)
    assert matches("enableAutoScale ne false", pool, POOL_FILTERABLE)
    assert matches("enableInterNodeCommunication eq false", pool, POOL_FILTERABLE)
    assert matches(
        "enableAutoScale eq TRUE and enableInterNodeCommunication eq False", pool, POOL_FILTERABLE
    )


def test_boolean_is_not_an_integer() -> None:
    # Python's True == 1; OData's true is not 1.
    resource = {"flag": True, "count": 1}
    assert not matches("flag eq 1", resource, None)
    assert not matches("count eq true", resource, None)
    assert matches("count eq 1", resource, None)
    assert matches("flag eq true", resource, None)


# --------------------------------------------------------------------------------------------
# and / or / not, precedence and parentheses
# --------------------------------------------------------------------------------------------

ABC: dict[str, Any] = {"a": 1, "b": 2, "c": 3}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a eq 1 and b eq 2", True),
        ("a eq 1 and b eq 0", False),
        ("a eq 0 or b eq 2", True),
        ("a eq 0 or b eq 0", False),
        # and binds tighter than or
        ("a eq 1 or b eq 0 and c eq 0", True),  # a or (b and c)
        ("(a eq 1 or b eq 0) and c eq 0", False),
        ("a eq 0 and b eq 0 or c eq 3", True),  # (a and b) or c
        ("a eq 0 and (b eq 0 or c eq 3)", False),
        # not binds tighter than and / or, and covers the whole comparison
        ("not a eq 0", True),
        ("not a eq 1", False),
        ("not a eq 0 and b eq 0", False),  # (not a) and b
        ("not (a eq 0 and b eq 0)", True),
        ("not a eq 1 or b eq 2", True),  # (not a) or b
        ("not (a eq 1 or b eq 2)", False),
        ("not not a eq 1", True),
        ("not not not a eq 1", False),
        ("not(a eq 1)", False),
        # parentheses, nesting and redundant grouping
        ("((a eq 1))", True),
        ("(((a eq 1) and ((b eq 2))) or (c eq 0))", True),
        ("(a eq 0 or (b eq 0 or (c eq 0 or (a eq 1))))", True),
        # long chains
        ("a eq 0 or a eq 2 or a eq 3 or a eq 4 or a eq 5 or a eq 1", True),
        ("a eq 1 and b eq 2 and c eq 3 and a ne 0 and b ne 0", True),
        ("a eq 1 and b eq 2 and c eq 3 and a ne 0 and b ne 2", False),
    ],
)
def test_logic_and_precedence(text: str, expected: bool) -> None:
    assert matches(text, ABC, None) is expected


def test_logic_short_circuits_left_to_right() -> None:
    seen: list[str] = []

    class Recording(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            seen.append(key)
            return super().get(key, default)

    resource = Recording(a=1, b=2, c=3)
    assert compile_filter("a eq 1 or b eq 1 or c eq 1")(resource)
    assert seen == ["a"]
    seen.clear()
    assert not compile_filter("a eq 0 and b eq 2 and c eq 3")(resource)
    assert seen == ["a"]
    seen.clear()
    assert compile_filter("a eq 0 or b eq 0 or c eq 0 or a eq 1 or b eq 0")(resource)
    assert seen == ["a", "b", "c", "a"]


def test_many_or_terms_do_not_recurse_deeply() -> None:
    text = " or ".join(f"id eq 'task-{i}'" for i in range(3000))
    predicate = compile_filter(text, filterable=TASK_FILTERABLE)
    assert predicate(active_task("task-2999"))
    assert not predicate(active_task("task-3000"))


# --------------------------------------------------------------------------------------------
# Case sensitivity
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["active", "Active", "ACTIVE", "aCtIvE"])
def test_state_values_are_case_insensitive(value: str) -> None:
    # Microsoft: "All property names are case-sensitive, but property values are case
    # insensitive." The wire form is lower camel case ("active").
    assert matches(f"state eq '{value}'", active_task())
    assert not matches(f"state ne '{value}'", active_task())
    assert not matches(f"state eq '{value}'", completed_task())


def test_enum_values_with_inner_capitals() -> None:
    node = {"id": "n", "state": "waitingForStartTask", "startTaskInfo": {"result": "failure"}}
    assert matches("state eq 'waitingforstarttask'", node, NODE_FILTERABLE)
    assert matches("state eq 'WaitingForStartTask'", node, NODE_FILTERABLE)
    assert matches("startTaskInfo/result eq 'Failure'", node, NODE_FILTERABLE)
    assert matches("executionInfo/result eq 'FAILURE'", completed_task(exit_code=3))
    pool = {"id": "p", "vmSize": "standard_d2s_v3", "allocationState": "steady"}
    assert matches("vmSize eq 'Standard_D2s_v3'", pool, POOL_FILTERABLE)
    assert matches("allocationState eq 'Steady'", pool, POOL_FILTERABLE)


def test_ids_are_case_sensitive() -> None:
    task = active_task("Render-7")
    assert matches("id eq 'Render-7'", task)
    assert not matches("id eq 'render-7'", task)
    assert matches("id ne 'render-7'", task)
    assert matches("startswith(id, 'Render')", task)
    assert not matches("startswith(id, 'render')", task)
    job = {"id": "j", "executionInfo": {"poolId": "Pool-A"}}
    assert matches("executionInfo/poolId eq 'Pool-A'", job, JOB_FILTERABLE)
    assert not matches("executionInfo/poolId eq 'pool-a'", job, JOB_FILTERABLE)
    assert matches("startswith(name, 'std')", {"name": "stdout.txt"}, FILE_FILTERABLE)
    assert not matches("startswith(name, 'STD')", {"name": "stdout.txt"}, FILE_FILTERABLE)


def test_keywords_are_case_insensitive() -> None:
    task = completed_task()
    assert matches(
        "state EQ 'completed' AND NOT (id Eq 'x' Or id eQ 'y') aNd StartsWith(id, 'task')", task
    )
    assert matches("creationTime Gt DateTime'2026-01-01T00:00:00Z'", task)
    assert matches("creationTime gt DATETIME'2026-01-01T00:00:00Z'", task)
    assert matches("executionInfo/exitCode NE NULL", task)
    assert matches("enableAutoScale eq True", {"enableAutoScale": True}, POOL_FILTERABLE)


def test_property_names_are_case_sensitive() -> None:
    err = error_of("State eq 'active'")
    assert "unknown property 'State'" in err.message
    err = error_of("executionInfo/ExitCode eq 0")
    assert "unknown property 'executionInfo/ExitCode'" in err.message
    # without a property list, a wrongly cased name simply finds nothing
    assert not matches("State eq 'active'", active_task(), None)


# --------------------------------------------------------------------------------------------
# Missing properties and null
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "expected"),
    [("eq", False), ("ne", True), ("gt", False), ("ge", False), ("lt", False), ("le", False)],
)
def test_missing_property_is_false_except_ne(op: str, expected: bool) -> None:
    task = active_task()  # no executionInfo at all
    assert matches(f"executionInfo/exitCode {op} 0", task) is expected
    assert matches(f"executionInfo/startTime {op} datetime'2026-11-24T13:00:00Z'", task) is (
        expected
    )
    partial = {**active_task(), "executionInfo": {"retryCount": 0}}  # present, no exitCode
    assert matches(f"executionInfo/exitCode {op} 0", partial) is expected
    nulled = {**active_task(), "executionInfo": None}  # JSON null counts as missing
    assert matches(f"executionInfo/exitCode {op} 0", nulled) is expected
    job = {"id": "j"}
    assert matches(f"executionInfo/poolId {op} 'p'", job, JOB_FILTERABLE) is expected
    if op in ("eq", "ne"):  # the only operators Microsoft allows on these
        assert matches(f"state {op} 'active'", {}, JOB_FILTERABLE) is expected
        assert matches(f"enableAutoScale {op} true", {"id": "p"}, POOL_FILTERABLE) is expected


def test_missing_property_and_not() -> None:
    task = active_task()
    assert matches("not executionInfo/exitCode eq 0", task)
    assert not matches("not executionInfo/exitCode ne 0", task)
    assert not matches("startswith(executionInfo/poolId, 'p')", {}, JOB_FILTERABLE)
    assert matches("not startswith(executionInfo/poolId, 'p')", {}, JOB_FILTERABLE)


def test_null_literal() -> None:
    done, waiting = completed_task(), active_task()
    assert matches("executionInfo eq null", waiting, None)
    assert not matches("executionInfo eq null", done, None)
    assert matches("executionInfo ne null", done, None)
    assert matches("executionInfo/exitCode eq null", waiting)
    assert not matches("executionInfo/exitCode eq null", done)
    assert matches("executionInfo/exitCode ne null", done)
    assert matches("null eq executionInfo/exitCode", waiting)
    assert matches("executionInfo/endTime eq null", {"executionInfo": {"endTime": None}})
    assert matches("state ne null and id ne null", waiting)


def test_unknown_property_type_mismatch_is_false_even_for_ne() -> None:
    resource = {"custom": "5", "flag": "true", "when": "not a date"}
    for op in ("eq", "ne", "gt", "ge", "lt", "le"):
        assert not matches(f"custom {op} 5", resource, None)
        assert not matches(f"when {op} datetime'2026-11-24T13:00:00Z'", resource, None)
    for op in ("eq", "ne"):
        assert not matches(f"flag {op} true", resource, None)
        assert not matches(f"custom {op} 'x'", {"custom": 5}, None)
    # ...but a missing value still satisfies ne
    assert matches("absent ne 5", resource, None)


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------


def test_nested_paths() -> None:
    task = completed_task(exit_code=2)
    assert matches("executionInfo/result eq 'failure'", task)
    assert matches("executionInfo/exitCode eq 2 and executionInfo/result ne 'success'", task)
    stats = {"stats": {"userCPUTime": "PT1S", "numSucceededTasks": 4, "io": {"readOps": 7}}}
    assert matches("stats/numSucceededTasks ge 4", stats, None)
    assert matches("stats/io/readOps eq 7", stats, None)
    assert not matches("stats/io/readOps/deeper eq 7", stats, None)
    assert not matches("stats/missing/readOps eq 7", stats, None)
    assert matches("stats/missing/readOps ne 7", stats, None)
    assert not matches("id/length eq 3", {"id": "abc"}, None)  # not a mapping on the way


def test_nested_paths_through_any_mapping() -> None:
    resource = MappingProxyType(
        {"executionInfo": MappingProxyType({"exitCode": 0, "sub": MappingProxyType({"x": 1})})}
    )
    assert matches("executionInfo/exitCode eq 0", resource)
    assert matches("executionInfo/sub/x eq 1", resource, None)


def test_last_modified_time_alias() -> None:
    # Microsoft's "List tasks" table says lastModifiedTime; the task resource says lastModified.
    task = {**active_task(), "lastModified": "2026-11-24T13:30:00.000000Z"}
    assert matches("lastModifiedTime gt datetime'2026-11-24T13:29:00Z'", task)
    assert matches("lastModified gt datetime'2026-11-24T13:29:00Z'", task)
    assert not matches("lastModifiedTime gt datetime'2026-11-24T13:31:00Z'", task)
    with pytest.raises(ODataError, match="lastModifiedTime"):
        compile_filter(
            "lastModifiedTime gt datetime'2026-11-24T13:29:00Z'", filterable=JOB_FILTERABLE
        )


# --------------------------------------------------------------------------------------------
# Strings and startswith
# --------------------------------------------------------------------------------------------


def test_string_escapes_and_special_characters() -> None:
    resource = {"id": "it's", "name": "a (b) and 'c' or d", "empty": ""}
    assert matches("id eq 'it''s'", resource, None)
    assert not matches("id eq 'its'", resource, None)
    assert matches("name eq 'a (b) and ''c'' or d'", resource, None)
    assert matches("empty eq ''", resource, None)
    assert matches("id eq ''''", {"id": "'"}, None)
    assert matches("id eq ''''''", {"id": "''"}, None)
    assert matches("startswith(id, 'it''')", resource, None)
    assert matches("id eq 'tâche-é'", {"id": "tâche-é"}, None)


def test_startswith() -> None:
    tasks = [active_task(name) for name in ("render-1", "render-2", "merge-1", "rend")]
    predicate = compile_filter("startswith(id, 'render')", filterable=TASK_FILTERABLE)
    assert [t["id"] for t in tasks if predicate(t)] == ["render-1", "render-2"]
    assert matches("startswith(id,'')", tasks[0])  # every string starts with ''
    assert matches("startswith( id , 'rend' ) and id ne 'rend'", tasks[0])
    assert matches("(state eq 'running') or startswith(id, 'render')", tasks[0])
    assert matches("startswith(id, 'render') eq true", tasks[0])
    assert not matches("startswith(id, 'render') eq false", tasks[0])
    assert matches("startswith(id, 'render') ne false", tasks[0])
    assert not matches("startswith(id, 'render') ne true", tasks[0])
    assert matches("startswith(id, 'merge') eq false", tasks[0])
    assert not matches("startswith(custom, 'x')", {"custom": 5}, None)
    assert matches("startswith(custom, 'AB')", {"custom": "abc"}, None)  # not an id: folded


def test_files_filter() -> None:
    files = [{"name": n} for n in ("stdout.txt", "stderr.txt", "wd/out.bin", "certs")]
    predicate = compile_filter("startswith(name, 'std')", filterable=FILE_FILTERABLE)
    assert [f["name"] for f in files if predicate(f)] == ["stdout.txt", "stderr.txt"]
    predicate = compile_filter("startswith(name,'wd/')", filterable=FILE_FILTERABLE)
    assert [f["name"] for f in files if predicate(f)] == ["wd/out.bin"]


# --------------------------------------------------------------------------------------------
# Date-times
# --------------------------------------------------------------------------------------------

CANONICAL = "2026-11-24T13:05:01.123456Z"


@pytest.mark.parametrize(
    "literal",
    [
        "2026-11-24T13:05:01.123456Z",
        "2026-11-24T13:05:01.1234560Z",  # 7 digits, as .NET writes
        "2026-11-24T13:05:01.1234569Z",  # the 7th digit is below our resolution
        "2026-11-24T14:05:01.123456+01:00",
        "2026-11-24T08:05:01.123456-05:00",
        "2026-11-24T18:35:01.123456+05:30",
        "2026-11-24T14:05:01.123456+0100",
        "2026-11-25T00:05:01.123456+11",
        "2026-11-24t13:05:01.123456z",
        "2026-11-24T13:05:01.123456",  # no offset: UTC
    ],
)
def test_datetime_literal_forms_equal_the_canonical_value(literal: str) -> None:
    task = completed_task(end=CANONICAL)
    assert matches(f"stateTransitionTime eq datetime'{literal}'", task)
    assert not matches(f"stateTransitionTime ne datetime'{literal}'", task)
    assert matches(f"stateTransitionTime ge datetime'{literal}'", task)
    assert matches(f"stateTransitionTime le datetime'{literal}'", task)


@pytest.mark.parametrize(
    ("literal", "expected_gt"),
    [
        ("2026-11-24T13:05:01Z", True),  # no fraction
        ("2026-11-24T13:05:02Z", False),
        ("2026-11-24T13:05:01.1Z", True),
        ("2026-11-24T13:05:01.2Z", False),
        ("2026-11-24T13:05:01.123455Z", True),
        ("2026-11-24T13:05:01.123457Z", False),
        ("2026-11-24T13:05Z", True),  # no seconds
        ("2026-11-24T14:05:01+01:00", True),
        ("2026-11-24T14:05:02+01:00", False),
        ("2026-11-24T12:05:02-01:00", False),
        ("2025-12-31T23:59:59.999999Z", True),
        ("Tue, 24 Nov 2026 13:05:01 GMT", True),  # RFC 1123, as Microsoft documents
        ("Tue, 24 Nov 2026 13:05:02 GMT", False),
    ],
)
def test_datetime_ordering(literal: str, expected_gt: bool) -> None:
    task = completed_task(end=CANONICAL)
    assert matches(f"stateTransitionTime gt datetime'{literal}'", task) is expected_gt
    assert matches(f"stateTransitionTime le datetime'{literal}'", task) is not expected_gt


@pytest.mark.parametrize(
    "stored",
    [
        "2026-11-24T13:05:01.123456Z",
        "2026-11-24T13:05:01.1234560Z",
        "2026-11-24T14:05:01.123456+01:00",
        "2026-11-24T13:05:01.123456+00:00",
        "2026-11-24t13:05:01.123456z",
        datetime(2026, 11, 24, 13, 5, 1, 123456, tzinfo=timezone.utc),
        datetime(2026, 11, 24, 14, 5, 1, 123456, tzinfo=timezone(timedelta(hours=1))),
        datetime(2026, 11, 24, 13, 5, 1, 123456),  # naive: UTC
    ],
)
def test_resource_datetime_forms(stored: Any) -> None:
    task = {"stateTransitionTime": stored}
    assert matches(f"stateTransitionTime eq datetime'{CANONICAL}'", task)
    assert matches("stateTransitionTime gt datetime'2026-11-24T13:05:01Z'", task)
    assert matches("stateTransitionTime lt datetime'2026-11-24T13:05:01.2Z'", task)


def test_resource_datetime_without_fraction_or_with_milliseconds() -> None:
    whole = {"creationTime": "2026-11-24T13:05:01Z"}
    millis = {"creationTime": "2026-11-24T13:05:01.500Z"}
    assert matches("creationTime eq datetime'2026-11-24T13:05:01.000Z'", whole)
    assert matches("creationTime eq datetime'2026-11-24T13:05:01.5Z'", millis)
    assert matches("creationTime gt datetime'2026-11-24T13:05:01Z'", millis)
    assert matches("creationTime lt datetime'2026-11-24T13:05:01.500001Z'", millis)


def test_unparseable_resource_datetime_compares_false() -> None:
    for stored in ("yesterday", "", 17, ["2026-11-24T13:05:01Z"], "2026-13-24T13:05:01.5Z"):
        task = {"creationTime": stored}
        for op in ("eq", "ne", "gt", "lt"):
            assert not matches(f"creationTime {op} datetime'2026-11-24T13:05:01Z'", task)
    assert matches("creationTime ne datetime'2026-11-24T13:05:01Z'", {})


def test_datetime_literal_against_property_of_unknown_type() -> None:
    node = {"lastBootTime": "2026-11-24T13:05:01.123456Z", "custom": "2026-11-24T14:00:00+01:00"}
    assert matches("custom eq datetime'2026-11-24T13:00:00Z'", node, None)
    assert matches("custom lt datetime'2026-11-24T13:00:00.000001Z'", node, None)
    assert matches("lastBootTime gt datetime'2026-11-24T13:00:00Z'", node, NODE_FILTERABLE)


def test_datetime_literal_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # The literal is parsed when compiling; later evaluation does not touch the parser.
    predicate = compile_filter(
        "stateTransitionTime gt datetime'2026-11-24T13:00:00+01:00'", filterable=TASK_FILTERABLE
    )
    monkeypatch.setattr(_odata, "_literal_datetime_key", None)
    assert predicate(completed_task())


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment", "position"),
    [
        ("id eq 'abc", "unterminated string literal", 6),
        ("id eq 'it''s", "unterminated string literal", 6),
        ("id eq '", "unterminated string literal", 6),
        ("startswith(id, 'abc)", "unterminated string literal", 15),
        ("foo eq 1", "unknown property 'foo'", 0),
        ("state eq 'active' and bogus/path eq 1", "unknown property 'bogus/path'", 22),
        ("startswith(nope, 'a')", "unknown property 'nope'", 11),
        ("id eq 'a' id", "unexpected 'id'", 10),
        ("id eq 'a' )", "unexpected ')'", 10),
        ("id eq 'a' 'b'", "unexpected \"'b'\"", 10),
        ("id eq 'a' and", "expected a property or a value, found end of filter", 13),
        ("id eq 'a' or or id eq 'b'", "found keyword 'or'", 13),
        ("and id eq 'a'", "found keyword 'and'", 0),
        ("not", "found end of filter", 3),
        ("id", "expected a comparison operator", 2),
        ("id 'a'", "expected a comparison operator", 3),
        ("id equals 'a'", "expected a comparison operator (eq, ne, gt, ge, lt, le) after 'id'", 3),
        ("id eq", "expected a property or a value, found end of filter", 5),
        ("id eq eq", "found keyword 'eq'", 6),
        ("id eq 'a' eq 'b'", "unexpected 'eq'", 10),
        ("(id eq 'a'", "expected ')' to close the '(' at position 0", 10),
        ("((id eq 'a')", "expected ')' to close the '(' at position 0", 12),
        ("()", "expected a property or a value, found ')'", 1),
        ("id eq 'a')", "unexpected ')'", 9),
        ("creationTime gt datetime'2026-13-01T00:00:00Z'", "invalid date-time literal", 16),
        ("creationTime gt datetime'2026-02-30T00:00:00Z'", "invalid date-time literal", 16),
        ("creationTime gt datetime'2026-11-24T25:00:00Z'", "invalid date-time literal", 16),
        ("creationTime gt datetime'2026-11-24T13:00:00+24:00'", "invalid date-time literal", 16),
        ("creationTime gt datetime'yesterday'", "invalid date-time literal", 16),
        ("creationTime gt datetime''", "invalid date-time literal", 16),
        ("creationTime gt datetime'2026-11-24'", "invalid date-time literal", 16),
        ("creationTime gt datetime'Tue, 99 Nov 2026 13:05:01 GMT'", "invalid date-time", 16),
        ("creationTime gt datetime'2026-11-24T13:00:00Z", "unterminated string literal", 24),
        ("creationTime gt guid'0000'", "unsupported typed literal guid'...'", 16),
        ("executionInfo/exitCode eq 1.5", "invalid number '1.5'", 26),
        ("executionInfo/exitCode eq 5L", "invalid number '5L'", 26),
        ("executionInfo/exitCode eq 12abc", "invalid number '12abc'", 26),
        ("id = 'a'", "unexpected character '='", 3),
        ('id eq "a"', "unexpected character '\"'", 6),
        ("id eq 'a' && state eq 'active'", "unexpected character '&'", 10),
        ("executionInfo/ eq 0", "unexpected character '/'", 13),
        ("- 1 eq executionInfo/exitCode", "unexpected character '-'", 0),
        ("endswith(id, 'a')", "unsupported function 'endswith'", 0),
        ("substringof('a', id)", "unsupported function 'substringof'", 0),
        ("startswith('a', id)", "first argument of startswith must be a property", 11),
        ("startswith(id, 1)", "second argument of startswith must be a string literal", 15),
        ("startswith(id, state)", "second argument of startswith must be a string literal", 15),
        ("startswith(id 'a')", "expected ',' between the arguments of startswith", 14),
        ("startswith(id, 'a'", "expected ')' to close startswith, found end of filter", 18),
        ("startswith(id, 'a', 'b')", "expected ')' to close startswith, found ','", 18),
        ("startswith(id, 'a') eq 1", "must be followed by true or false", 23),
        ("startswith(state, 'a')", "startswith is not supported for property 'state'", 0),
        ("startswith(creationTime, '2026')", "not supported for property 'creationTime'", 0),
        ("id eq state", "comparing two properties is not supported", 3),
        ("1 eq 1", "a comparison needs a property on one side", 2),
        ("'a' eq 'a'", "a comparison needs a property on one side", 4),
        ("id eq 1", "type mismatch: property 'id' is an identifier but 1 is an integer", 6),
        ("state eq true", "property 'state' is an enumerated string but true is a Boolean", 9),
        ("executionInfo/exitCode eq '0'", "is an integer but '0' is a string", 26),
        ("executionInfo/exitCode eq true", "is an integer but true is a Boolean", 26),
        ("creationTime gt '2026-11-24T13:00:00Z'", "is a date-time but", 16),
        ("creationTime gt 5", "is a date-time but 5 is an integer", 16),
        ("id gt datetime'2026-11-24T13:00:00Z'", "is an identifier but datetime'", 6),
        ("state gt 'active'", "operator 'gt' is not supported for property 'state'", 0),
        ("executionInfo/result le 'success'", "operator 'le' is not supported", 0),
        ("executionInfo/exitCode gt null", "operator 'gt' cannot be used with null", 26),
        ("custom lt true", "operator 'lt' cannot be used with true", 10),
    ],
)
def test_filter_errors(text: str, fragment: str, position: int) -> None:
    err = error_of(text, None if text.startswith("custom") else TASK_FILTERABLE)
    assert err.parameter == "$filter"
    assert err.value == text
    assert fragment in err.message, err.message
    assert err.position == position, err.message
    assert f"position {position}" in err.message


def test_pool_and_node_type_errors() -> None:
    with pytest.raises(ODataError, match="operator 'ge' cannot be used with true"):
        compile_filter("enableAutoScale ge true", filterable=POOL_FILTERABLE)
    with pytest.raises(ODataError, match="is a Boolean but 'yes' is a string"):
        compile_filter("enableAutoScale eq 'yes'", filterable=POOL_FILTERABLE)
    with pytest.raises(ODataError, match="operator 'gt' is not supported for property 'vmSize'"):
        compile_filter("vmSize gt 'a'", filterable=POOL_FILTERABLE)
    with pytest.raises(ODataError, match="unknown property 'id'"):
        compile_filter("id eq 'node-1'", filterable=NODE_FILTERABLE)
    with pytest.raises(ODataError, match="is an integer but 'x' is a string"):
        compile_filter("startTaskInfo/exitCode eq 'x'", filterable=NODE_FILTERABLE)


def test_unknown_property_error_lists_the_allowed_ones() -> None:
    err = error_of("exitCode eq 0")
    assert "unknown property 'exitCode' at position 0" in err.message
    assert "executionInfo/exitCode" in err.message


def test_filterable_may_be_any_collection() -> None:
    assert matches("id eq 'a'", {"id": "a"}, ["id"])
    with pytest.raises(ODataError, match="unknown property 'state'"):
        compile_filter("state eq 'active'", filterable=("id",))
    with pytest.raises(ODataError, match="filterable properties: none"):
        compile_filter("id eq 'a'", filterable=frozenset())


def test_deep_nesting_is_refused_cleanly() -> None:
    text = "(" * 150 + "id eq 'a'" + ")" * 150
    with pytest.raises(ODataError, match="nested more than"):
        compile_filter(text)
    text = "(" * 50 + "id eq 'a'" + ")" * 50
    assert matches(text, {"id": "a"})


def test_errors_are_raised_at_compile_time_not_evaluation() -> None:
    # a valid filter never raises during evaluation, whatever the resource holds
    predicate = compile_filter(
        "executionInfo/exitCode gt 0 or creationTime lt datetime'2026-01-01T00:00:00Z' "
        "or startswith(id, 'x') or state eq 'active' or executionInfo/result ne 'failure'",
        filterable=TASK_FILTERABLE,
    )
    weird: list[Any] = [
        {},
        {"executionInfo": "text"},
        {"executionInfo": [1, 2]},
        {"executionInfo": {"exitCode": "3", "result": 7}},
        {"id": 5, "state": ["active"], "creationTime": {"x": 1}},
        {"id": None, "state": None, "creationTime": None, "executionInfo": None},
    ]
    for resource in weird:
        assert isinstance(predicate(resource), bool)


# --------------------------------------------------------------------------------------------
# Realistic filters (Microsoft's examples)
# --------------------------------------------------------------------------------------------


def test_microsoft_examples() -> None:
    running_render = {**active_task("renderTask-3"), "state": "running"}
    assert matches("(state eq 'running') and startswith(id, 'renderTask')", running_render)
    assert not matches("(state eq 'running') and startswith(id, 'renderTask')", active_task())
    failed = completed_task(exit_code=3)
    query = "(executionInfo/exitCode lt 0) or (executionInfo/exitCode gt 0)"
    assert matches(query, failed)
    assert not matches(query, completed_task(exit_code=0))
    assert not matches(query, active_task())
    assert matches("creationTime gt DateTime'2011-05-08T08:49:37Z'", failed)
    assert matches("creationTime gt DateTime'Sun, 08 May 2011 08:49:37 GMT'", failed)
    assert matches("startswith(id, 'test')", {"id": "test-pool"}, POOL_FILTERABLE)


def test_every_documented_property_has_a_type_and_compiles() -> None:
    sets = [JOB_FILTERABLE, TASK_FILTERABLE, POOL_FILTERABLE, NODE_FILTERABLE, FILE_FILTERABLE]
    for filterable in sets:
        for name in filterable:
            assert name in _odata._PROPERTY_KINDS, name
            assert compile_filter(f"{name} eq null", filterable=filterable)({})
            assert not compile_filter(f"{name} ne null", filterable=filterable)({})


def test_filterable_properties_exist_on_the_resource() -> None:
    pairs = [
        (JOB_FILTERABLE, JOB_SELECTABLE),
        (TASK_FILTERABLE - {"lastModifiedTime"}, TASK_SELECTABLE),
        (POOL_FILTERABLE, POOL_SELECTABLE),
        (NODE_FILTERABLE, NODE_SELECTABLE),
    ]
    for filterable, selectable in pairs:
        assert {name.split("/")[0] for name in filterable} <= selectable


@pytest.mark.skipif(not SPEC.exists(), reason="Batch spec reference copy not available")
def test_selectable_sets_match_the_spec() -> None:
    definitions = json.loads(SPEC.read_text())["definitions"]
    for name, selectable in [
        ("BatchJob", JOB_SELECTABLE),
        ("BatchTask", TASK_SELECTABLE),
        ("BatchPool", POOL_SELECTABLE),
        ("BatchNode", NODE_SELECTABLE),
    ]:
        assert selectable == frozenset(definitions[name]["properties"]), name
    assert "name" in definitions["BatchNodeFile"]["properties"]


# --------------------------------------------------------------------------------------------
# $select
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "  ", "\t"])
def test_select_absent_means_everything(text: str | None) -> None:
    assert parse_select(text, selectable=TASK_SELECTABLE) is None


def test_select_parsing() -> None:
    assert parse_select("id", selectable=TASK_SELECTABLE) == ("id",)
    assert parse_select("id,state,stateTransitionTime", selectable=TASK_SELECTABLE) == (
        "id",
        "state",
        "stateTransitionTime",
    )
    assert parse_select(" id , state ,\tcommandLine ", selectable=TASK_SELECTABLE) == (
        "id",
        "state",
        "commandLine",
    )
    assert parse_select("state,id,state", selectable=TASK_SELECTABLE) == ("state", "id")
    assert parse_select("id, stats", selectable=POOL_SELECTABLE) == ("id", "stats")
    assert parse_select("anything,goes_1", selectable=None) == ("anything", "goes_1")


@pytest.mark.parametrize(
    ("text", "fragment", "position"),
    [
        ("id,bogus", "unknown property 'bogus'", 3),
        ("ID", "unknown property 'ID'", 0),
        ("id, executionInfo/exitCode", "only top-level properties can be selected", 4),
        ("id,,state", "empty property name", 3),
        ("id,", "empty property name", 3),
        (",id", "empty property name", 0),
        ("id, ", "empty property name", 4),
        ("id state", "invalid property name 'id state'", 0),
        ("id,*", "invalid property name '*'", 3),
        ("id,'state'", "invalid property name", 3),
    ],
)
def test_select_errors(text: str, fragment: str, position: int) -> None:
    with pytest.raises(ODataError) as info:
        parse_select(text, selectable=TASK_SELECTABLE)
    err = info.value
    assert err.parameter == "$select"
    assert err.value == text
    assert fragment in err.message, err.message
    assert err.position == position
    assert f"position {position}" in err.message


def test_select_unknown_per_resource() -> None:
    with pytest.raises(ODataError, match="unknown property 'commandLine'"):
        parse_select("id,commandLine", selectable=JOB_SELECTABLE)
    with pytest.raises(ODataError, match="unknown property 'vmSize'"):
        parse_select("vmSize", selectable=TASK_SELECTABLE)
    assert parse_select("vmSize,isDedicated", selectable=NODE_SELECTABLE) == (
        "vmSize",
        "isDedicated",
    )


def test_apply_select() -> None:
    task = completed_task()
    original = json.loads(json.dumps(task))
    selected = apply_select(task, ("state", "id", "nodeInfo"))
    assert selected == {"id": "task-1", "state": "completed"}  # nodeInfo absent: left out
    assert list(selected) == ["id", "state"]  # the resource's order
    assert task == original  # input untouched
    selected["id"] = "changed"
    assert task["id"] == "task-1"


def test_apply_select_none_copies() -> None:
    task = completed_task()
    copy = apply_select(task, None)
    assert copy == task
    assert copy is not task
    copy["extra"] = 1
    assert "extra" not in task
    assert apply_select(MappingProxyType({"a": 1}), None) == {"a": 1}
    assert apply_select(task, ()) == {}


def test_select_round_trip() -> None:
    fields = parse_select("id, executionInfo", selectable=TASK_SELECTABLE)
    assert apply_select(completed_task(), fields) == {
        "id": "task-1",
        "executionInfo": completed_task()["executionInfo"],
    }
    assert apply_select(active_task(), fields) == {"id": "task-2"}


# --------------------------------------------------------------------------------------------
# Scale sanity (no timing assertions)
# --------------------------------------------------------------------------------------------


def test_compile_once_evaluate_over_100k_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    tasks: list[dict[str, Any]] = []
    base = datetime(2026, 11, 24, 13, 0, tzinfo=timezone.utc)
    for i in range(100_000):
        moment = (base + timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if i % 4 == 0:
            tasks.append({"id": f"task-{i}", "state": "active", "stateTransitionTime": moment})
        else:
            tasks.append(
                {
                    "id": f"task-{i}",
                    "state": "completed",
                    "stateTransitionTime": moment,
                    "executionInfo": {"exitCode": i % 3, "result": "success"},
                }
            )
    predicate = compile_filter(
        "state eq 'Completed' and (executionInfo/exitCode ne 0 or startswith(id, 'task-9')) "
        "and stateTransitionTime ge datetime'2026-11-24T13:00:50Z'",
        filterable=TASK_FILTERABLE,
    )
    # the filter is not re-parsed per resource
    monkeypatch.setattr(_odata, "_tokenize", None)
    monkeypatch.setattr(_odata, "_Parser", None)
    found = [t["id"] for t in tasks if predicate(t)]
    expected = [
        f"task-{i}"
        for i in range(50_000, 100_000)
        if i % 4 != 0 and (i % 3 != 0 or str(i).startswith("9"))
    ]
    assert found == expected
    fields = parse_select("id,state", selectable=TASK_SELECTABLE)
    page = [apply_select(t, fields) for t in tasks[:1000]]
    assert page[1] == {"id": "task-1", "state": "completed"}
