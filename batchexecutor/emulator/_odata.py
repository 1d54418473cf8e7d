"""OData ``$filter`` and ``$select`` for the emulator's list operations.

Azure Batch accepts a small OData dialect on its list operations (list jobs, tasks, pools,
nodes, task files). This module compiles a ``$filter`` string once into a predicate over the
emulator's stored wire dicts (camelCase keys, date-times as RFC 3339 strings), and parses
``$select`` into a tuple of top-level property names.

Sources:

* "OData filters in Azure Batch" (learn.microsoft.com/rest/api/batchservice/odata-filters-in-batch):
  the filterable properties of each list operation, their types and allowed operators. The
  ``$filter`` parameter of every list operation in the 2025-06-01 spec links to this page.
* "Create queries to list Batch resources efficiently" (learn.microsoft.com/azure/batch/
  batch-efficient-list-queries), section "Rules for filter, select, and expand strings":
  property names are case-sensitive but property *values* are case-insensitive; date-times
  are written ``DateTime'2011-05-08T08:49:37Z'`` (W3C-DTF) or
  ``DateTime'Sun, 08 May 2011 08:49:37 GMT'`` (RFC 1123); Booleans are ``true``/``false``;
  an invalid property or operator gives ``400 (Bad Request)``.
* The spec (BatchService.json, 2025-06-01): top-level properties of ``BatchJob``,
  ``BatchTask``, ``BatchPool`` and ``BatchNode`` for ``$select``.

Grammar (keywords case-insensitive, see "Case" below)::

    filter     := <empty> | or
    or         := and ("or" and)*
    and        := unary ("and" unary)*
    unary      := "not" unary | primary
    primary    := "(" or ")" | startswith | comparison
    startswith := "startswith" "(" path "," string ")" [("eq" | "ne") ("true" | "false")]
    comparison := path op literal | literal op path
    op         := "eq" | "ne" | "gt" | "ge" | "lt" | "le"
    path       := name ("/" name)*
    literal    := string | integer | "true" | "false" | "null" | datetime
    string     := "'" ("''" | any character but "'")* "'"
    datetime   := ("datetime" | "datetimeoffset") string

``not`` binds tighter than ``and``, which binds tighter than ``or``; ``not`` applies to the
whole comparison that follows it, so ``not state eq 'active'`` means
``not (state eq 'active')``. Comparing two properties, or two literals, is not supported.

Case. Property names are case-sensitive (``State`` is not ``state``), as Microsoft documents.
Keywords (``and or not eq ne gt ge lt le true false null datetime startswith``) are accepted in
any case: Microsoft's own pages write ``AND``/``OR`` and ``DateTime'...'`` as well as the
lower-case forms. String *values* follow Microsoft's rule "property values are case
insensitive" -- so ``state eq 'Active'`` matches a task whose state is ``active`` -- except
for identifiers (``id``, ``executionInfo/poolId`` and file ``name``), which are compared
exactly (ordinal, case-sensitive), including by ``startswith``. That exception is this
emulator's choice, not documented behaviour: Batch IDs are case-preserving but unique
regardless of case, so the real service may well match ``id eq 'TASK-1'`` against ``task-1``;
code that relies on either behaviour should not.

Missing values. A property that is absent from the resource, or JSON ``null`` (for example
``executionInfo`` on a task that never ran), compares *false* with every operator except
``ne``, for which it is *true*: a task that has not run "has no exit code", so
``executionInfo/exitCode ne 0`` selects it and ``executionInfo/exitCode eq 0`` does not.
``startswith`` on a missing value is false. ``eq null`` is true exactly when the value is
missing or null, ``ne null`` when it is present.

Types. The documented filterable properties have known types (string, enum-like string,
date-time, integer, Boolean). Comparing one with a literal of another type, using an
operator Microsoft does not list for that type (``gt`` on ``state`` or on a Boolean, for
instance), or ``startswith`` on anything but an identifier, is rejected when the filter is
compiled. For other properties (reachable only when ``filterable`` is ``None``) the type is
not known in advance; a value whose type does not match the literal compares *false* with
every operator, ``ne`` included (a missing value still satisfies ``ne``).

Date-times. A ``datetime'...'`` literal is parsed once, at compile time, to UTC and turned
into a fixed-width key ``YYYY-MM-DDTHH:MM:SS.ffffff``; resource values are turned into the
same key (the emulator's canonical ``...T13:05:01.123456Z`` form by slicing, anything else by
a cached parse) and compared as strings, which orders them in time. Precision is one
microsecond (a seventh fractional digit is dropped). A date-time without an offset is UTC.
"""

from __future__ import annotations

import enum
import functools
import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple, TypeAlias

__all__ = [
    "FILE_FILTERABLE",
    "JOB_FILTERABLE",
    "JOB_SELECTABLE",
    "NODE_FILTERABLE",
    "NODE_SELECTABLE",
    "POOL_FILTERABLE",
    "POOL_SELECTABLE",
    "TASK_FILTERABLE",
    "TASK_SELECTABLE",
    "ODataError",
    "Predicate",
    "apply_select",
    "compile_filter",
    "parse_select",
]

Predicate: TypeAlias = Callable[[Mapping[str, Any]], bool]
_Getter: TypeAlias = Callable[[Mapping[str, Any]], Any]
_Compare: TypeAlias = Callable[[Any, Any], bool]


class ODataError(ValueError):
    """Invalid ``$filter``/``$select``; the emulator turns it into 400 InvalidQueryParameterValue.

    ``parameter`` is ``"$filter"`` or ``"$select"``, ``value`` the text as the client sent it,
    ``message`` a reason naming the offending token and ``position`` its 0-based character
    offset in ``value`` (``None`` when the problem is not at one place).
    """

    def __init__(
        self, parameter: str, message: str, *, value: str = "", position: int | None = None
    ) -> None:
        super().__init__(f"invalid {parameter}: {message}")
        self.parameter = parameter
        self.message = message
        self.value = value
        self.position = position


# --------------------------------------------------------------------------------------------
# Property sets (Microsoft's "OData filters in Azure Batch" page and the 2025-06-01 spec)
# --------------------------------------------------------------------------------------------

#: "List jobs".
JOB_FILTERABLE: frozenset[str] = frozenset(
    {
        "id",
        "state",
        "stateTransitionTime",
        "creationTime",
        "lastModified",
        "executionInfo/startTime",
        "executionInfo/endTime",
        "executionInfo/poolId",
    }
)

#: "List tasks". Microsoft's table names the last-modified property ``lastModifiedTime``,
#: while the task resource calls it ``lastModified``; both are accepted and read
#: ``lastModified``.
TASK_FILTERABLE: frozenset[str] = frozenset(
    {
        "id",
        "state",
        "stateTransitionTime",
        "creationTime",
        "lastModified",
        "lastModifiedTime",
        "executionInfo/startTime",
        "executionInfo/endTime",
        "executionInfo/exitCode",
        "executionInfo/result",
    }
)

#: "List pools".
POOL_FILTERABLE: frozenset[str] = frozenset(
    {
        "id",
        "state",
        "stateTransitionTime",
        "allocationState",
        "allocationStateTransitionTime",
        "creationTime",
        "enableAutoScale",
        "lastModified",
        "vmSize",
        "enableInterNodeCommunication",
    }
)

#: "List nodes in a pool" (Microsoft lists no ``id`` here).
NODE_FILTERABLE: frozenset[str] = frozenset(
    {
        "state",
        "stateTransitionTime",
        "lastBootTime",
        "allocationTime",
        "startTaskInfo/state",
        "startTaskInfo/result",
        "startTaskInfo/exitCode",
        "startTaskInfo/startTime",
        "startTaskInfo/endTime",
    }
)

#: "List task files" (and "List compute node files"): ``startswith(name, '...')``.
FILE_FILTERABLE: frozenset[str] = frozenset({"name"})

#: Top-level properties of the spec's ``BatchJob`` (CloudJob).
JOB_SELECTABLE: frozenset[str] = frozenset(
    {
        "id",
        "displayName",
        "usesTaskDependencies",
        "url",
        "eTag",
        "lastModified",
        "creationTime",
        "state",
        "stateTransitionTime",
        "previousState",
        "previousStateTransitionTime",
        "priority",
        "allowTaskPreemption",
        "maxParallelTasks",
        "constraints",
        "jobManagerTask",
        "jobPreparationTask",
        "jobReleaseTask",
        "commonEnvironmentSettings",
        "poolInfo",
        "onAllTasksComplete",
        "onTaskFailure",
        "networkConfiguration",
        "metadata",
        "executionInfo",
        "stats",
    }
)

#: Top-level properties of the spec's ``BatchTask`` (CloudTask).
TASK_SELECTABLE: frozenset[str] = frozenset(
    {
        "id",
        "displayName",
        "url",
        "eTag",
        "lastModified",
        "creationTime",
        "exitConditions",
        "state",
        "stateTransitionTime",
        "previousState",
        "previousStateTransitionTime",
        "commandLine",
        "containerSettings",
        "resourceFiles",
        "outputFiles",
        "environmentSettings",
        "affinityInfo",
        "constraints",
        "requiredSlots",
        "userIdentity",
        "executionInfo",
        "nodeInfo",
        "multiInstanceSettings",
        "stats",
        "dependsOn",
        "applicationPackageReferences",
        "authenticationTokenSettings",
    }
)

#: Top-level properties of the spec's ``BatchPool`` (CloudPool).
POOL_SELECTABLE: frozenset[str] = frozenset(
    {
        "id",
        "displayName",
        "url",
        "eTag",
        "lastModified",
        "creationTime",
        "state",
        "stateTransitionTime",
        "allocationState",
        "allocationStateTransitionTime",
        "vmSize",
        "virtualMachineConfiguration",
        "resizeTimeout",
        "resizeErrors",
        "resourceTags",
        "currentDedicatedNodes",
        "currentLowPriorityNodes",
        "targetDedicatedNodes",
        "targetLowPriorityNodes",
        "enableAutoScale",
        "autoScaleFormula",
        "autoScaleEvaluationInterval",
        "autoScaleRun",
        "enableInterNodeCommunication",
        "networkConfiguration",
        "startTask",
        "certificateReferences",
        "applicationPackageReferences",
        "taskSlotsPerNode",
        "taskSchedulingPolicy",
        "userAccounts",
        "metadata",
        "stats",
        "mountConfiguration",
        "identity",
        "targetNodeCommunicationMode",
        "currentNodeCommunicationMode",
        "upgradePolicy",
    }
)

#: Top-level properties of the spec's ``BatchNode`` (ComputeNode).
NODE_SELECTABLE: frozenset[str] = frozenset(
    {
        "id",
        "url",
        "state",
        "schedulingState",
        "stateTransitionTime",
        "lastBootTime",
        "allocationTime",
        "ipAddress",
        "ipv6Address",
        "affinityId",
        "vmSize",
        "totalTasksRun",
        "runningTasksCount",
        "runningTaskSlotsCount",
        "totalTasksSucceeded",
        "recentTasks",
        "startTask",
        "startTaskInfo",
        "certificateReferences",
        "errors",
        "isDedicated",
        "endpointConfiguration",
        "nodeAgentInfo",
        "virtualMachineInfo",
    }
)


class _Kind(enum.Enum):
    """The type of a documented filterable property."""

    ID = "identifier"  # string compared exactly; eq ne gt ge lt le startswith
    ENUM = "enumerated string"  # string compared case-insensitively; eq ne
    DATETIME = "date-time"  # eq ne gt ge lt le
    INT = "integer"  # eq ne gt ge lt le
    BOOL = "Boolean"  # eq ne


_PROPERTY_KINDS: dict[str, _Kind] = {
    # identifiers: compared exactly (a deliberate choice, see "Case" in the module docstring)
    "id": _Kind.ID,
    "executionInfo/poolId": _Kind.ID,
    "name": _Kind.ID,
    # enumerations and other strings Microsoft allows only eq/ne on
    "state": _Kind.ENUM,
    "allocationState": _Kind.ENUM,
    "executionInfo/result": _Kind.ENUM,
    "startTaskInfo/state": _Kind.ENUM,
    "startTaskInfo/result": _Kind.ENUM,
    "vmSize": _Kind.ENUM,
    # date-times
    "stateTransitionTime": _Kind.DATETIME,
    "creationTime": _Kind.DATETIME,
    "lastModified": _Kind.DATETIME,
    "lastModifiedTime": _Kind.DATETIME,
    "allocationStateTransitionTime": _Kind.DATETIME,
    "lastBootTime": _Kind.DATETIME,
    "allocationTime": _Kind.DATETIME,
    "executionInfo/startTime": _Kind.DATETIME,
    "executionInfo/endTime": _Kind.DATETIME,
    "startTaskInfo/startTime": _Kind.DATETIME,
    "startTaskInfo/endTime": _Kind.DATETIME,
    # integers
    "executionInfo/exitCode": _Kind.INT,
    "startTaskInfo/exitCode": _Kind.INT,
    # Booleans
    "enableAutoScale": _Kind.BOOL,
    "enableInterNodeCommunication": _Kind.BOOL,
}

#: Filter names that read a differently named wire property.
_ALIASES: dict[str, str] = {"lastModifiedTime": "lastModified"}

_ORDERING = frozenset({"gt", "ge", "lt", "le"})
_EQUALITY = frozenset({"eq", "ne"})
_COMPARE: dict[str, _Compare] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
#: ``literal op path`` is rewritten as ``path flipped-op literal``.
_FLIPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
_KEYWORDS = frozenset({"and", "or", "not", *_COMPARE})
_MAX_DEPTH = 100


# --------------------------------------------------------------------------------------------
# Date-times
# --------------------------------------------------------------------------------------------

_ISO_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|z|[+-]\d{2}(?::?\d{2})?)?",
    re.ASCII,
)


def _parse_iso(text: str) -> datetime | None:
    """RFC 3339 / W3C-DTF to an aware UTC datetime; no offset means UTC. ``None`` if invalid.

    Written out rather than ``datetime.fromisoformat`` because Python 3.10's does not take
    ``Z`` or fractions other than 3 or 6 digits (Batch and .NET write 7).
    """
    match = _ISO_RE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "")[:6].ljust(6, "0"))
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            micro,
            tzinfo=timezone.utc,
        )
        if offset is not None and offset not in ("Z", "z"):
            digits = offset[1:].replace(":", "")
            hours, minutes = int(digits[:2]), int(digits[2:] or 0)
            if hours > 23 or minutes > 59:
                return None
            shift = timedelta(hours=hours, minutes=minutes)
            moment = moment - shift if offset[0] == "+" else moment + shift
    except (ValueError, OverflowError):
        return None
    return moment


def _key_of(moment: datetime) -> str:
    """Fixed-width UTC key ``YYYY-MM-DDTHH:MM:SS.ffffff``: string order is time order."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds")


@functools.lru_cache(maxsize=65536)
def _parsed_key(text: str) -> str | None:
    moment = _parse_iso(text)
    return None if moment is None else _key_of(moment)


def _datetime_key(value: Any) -> str | None:
    """Comparison key of a resource's date-time value; ``None`` if missing or not a date-time."""
    if type(value) is str:
        # The emulator's own form, 2026-11-24T13:05:01.123456Z, and the same without fraction.
        size = len(value)
        if size == 27 and value[26] == "Z" and value[19] == "." and value[10] == "T":
            return value[:26]
        if size == 20 and value[19] == "Z" and value[10] == "T":
            return value[:19] + ".000000"
        return _parsed_key(value)
    if isinstance(value, datetime):
        return _key_of(value)
    return None


def _literal_datetime_key(text: str) -> str | None:
    """Key of a ``datetime'...'`` literal: W3C-DTF/RFC 3339, or RFC 1123 as Microsoft documents."""
    moment = _parse_iso(text.strip())
    if moment is None and "," in text:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return None if moment is None else _key_of(moment)


# --------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------


class _T(enum.Enum):
    LPAREN = "'('"
    RPAREN = "')'"
    COMMA = "','"
    STRING = "string"
    INT = "integer"
    DATETIME = "date-time"
    WORD = "word"
    END = "end of filter"


class _Token(NamedTuple):
    kind: _T
    text: str  # as written
    pos: int
    value: str | int = ""  # STRING: unescaped text; INT: number; DATETIME: key; WORD: text

    def describe(self) -> str:
        return "end of filter" if self.kind is _T.END else repr(self.text)


_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*")
_INT_RE = re.compile(r"-?[0-9]+")
_INT_TAIL_RE = re.compile(r"[A-Za-z0-9_.]+")
_PUNCT = {"(": _T.LPAREN, ")": _T.RPAREN, ",": _T.COMMA}


def _filter_error(text: str, message: str, pos: int | None, note: str = "") -> ODataError:
    where = "" if pos is None else f" at position {pos}"
    return ODataError("$filter", message + where + note, value=text, position=pos)


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in ("a", "e", "i", "o", "u") else f"a {noun}"


def _scan_string(text: str, start: int) -> tuple[str, int]:
    """The string literal whose opening quote is at ``start``: (unescaped value, end index)."""
    parts: list[str] = []
    i = start + 1
    while True:
        j = text.find("'", i)
        if j < 0:
            raise _filter_error(text, "unterminated string literal", start)
        parts.append(text[i:j])
        if text.startswith("'", j + 1):  # '' is an escaped quote
            parts.append("'")
            i = j + 2
            continue
        return "".join(parts), j + 1


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, size = 0, len(text)
    while i < size:
        char = text[i]
        if char.isspace():
            i += 1
            continue
        if char in _PUNCT:
            tokens.append(_Token(_PUNCT[char], char, i))
            i += 1
            continue
        if char == "'":
            value, end = _scan_string(text, i)
            tokens.append(_Token(_T.STRING, text[i:end], i, value))
            i = end
            continue
        match = _INT_RE.match(text, i)
        if match is not None:
            end = match.end()
            tail = _INT_TAIL_RE.match(text, end)
            if tail is not None:
                bad = text[i : tail.end()]
                raise _filter_error(
                    text, f"invalid number {bad!r} (only integers are supported)", i
                )
            tokens.append(_Token(_T.INT, match.group(), i, int(match.group())))
            i = end
            continue
        match = _WORD_RE.match(text, i)
        if match is not None:
            word, end = match.group(), match.end()
            if text.startswith("'", end):  # typed literal: datetime'...'
                if word.lower() not in ("datetime", "datetimeoffset"):
                    raise _filter_error(text, f"unsupported typed literal {word}'...'", i)
                raw, end = _scan_string(text, end)
                key = _literal_datetime_key(raw)
                if key is None:
                    raise _filter_error(text, f"invalid date-time literal {text[i:end]!r}", i)
                tokens.append(_Token(_T.DATETIME, text[i:end], i, key))
            else:
                tokens.append(_Token(_T.WORD, word, i, word))
            i = end
            continue
        raise _filter_error(text, f"unexpected character {char!r}", i)
    tokens.append(_Token(_T.END, "", size))
    return tokens


# --------------------------------------------------------------------------------------------
# Parser: builds the predicate closures directly, no tree is kept
# --------------------------------------------------------------------------------------------


class _Lit(enum.Enum):
    STRING = "string"
    INT = "integer"
    BOOL = "Boolean"
    NULL = "null"
    DATETIME = "date-time"


@dataclass(frozen=True)
class _Literal:
    kind: _Lit
    value: str | int | bool | None
    text: str
    pos: int


@dataclass(frozen=True)
class _Path:
    name: str
    pos: int


def _match_all(resource: Mapping[str, Any]) -> bool:
    return True


def _getter(name: str) -> _Getter:
    keys = tuple(_ALIASES.get(name, name).split("/"))
    if len(keys) == 1:
        key = keys[0]

        def get_one(resource: Mapping[str, Any]) -> Any:
            return resource.get(key)

        return get_one
    if len(keys) == 2:
        outer, inner = keys

        def get_two(resource: Mapping[str, Any]) -> Any:
            value = resource.get(outer)
            if value is None:
                return None
            if type(value) is dict or isinstance(value, Mapping):
                return value.get(inner)
            return None

        return get_two

    def get_path(resource: Mapping[str, Any]) -> Any:
        value: Any = resource
        for key in keys:
            if value is None or not (type(value) is dict or isinstance(value, Mapping)):
                return None
            value = value.get(key)
        return value

    return get_path


def _negate(predicate: Predicate) -> Predicate:
    def negated(resource: Mapping[str, Any]) -> bool:
        return not predicate(resource)

    return negated


def _both(first: Predicate, second: Predicate) -> Predicate:
    def both(resource: Mapping[str, Any]) -> bool:
        return first(resource) and second(resource)

    return both


def _either(first: Predicate, second: Predicate) -> Predicate:
    def either(resource: Mapping[str, Any]) -> bool:
        return first(resource) or second(resource)

    return either


def _combine(
    predicates: list[Predicate], pair: Callable[[Predicate, Predicate], Predicate]
) -> Predicate:
    """Join with ``pair`` as a balanced tree: short-circuits left to right, nests log2(n) deep."""
    while len(predicates) > 1:
        predicates = [
            pair(predicates[i], predicates[i + 1]) if i + 1 < len(predicates) else predicates[i]
            for i in range(0, len(predicates), 2)
        ]
    return predicates[0]


def _compare_null(get: _Getter, op: str) -> Predicate:
    if op == "eq":

        def is_null(resource: Mapping[str, Any]) -> bool:
            return get(resource) is None

        return is_null

    def is_not_null(resource: Mapping[str, Any]) -> bool:
        return get(resource) is not None

    return is_not_null


def _compare_string(get: _Getter, op: str, literal: str, exact: bool) -> Predicate:
    compare = _COMPARE[op]
    if exact:
        if op == "eq":

            def str_eq(resource: Mapping[str, Any]) -> bool:
                value = get(resource)
                return type(value) is str and value == literal

            return str_eq
        if op == "ne":

            def str_ne(resource: Mapping[str, Any]) -> bool:
                value = get(resource)
                return value is None or (type(value) is str and value != literal)

            return str_ne

        def str_cmp(resource: Mapping[str, Any]) -> bool:
            value = get(resource)
            return type(value) is str and compare(value, literal)

        return str_cmp

    folded = literal.lower()
    if op == "ne":

        def text_ne(resource: Mapping[str, Any]) -> bool:
            value = get(resource)
            return value is None or (type(value) is str and value.lower() != folded)

        return text_ne

    def text_cmp(resource: Mapping[str, Any]) -> bool:
        value = get(resource)
        return type(value) is str and compare(value.lower(), folded)

    return text_cmp


def _compare_int(get: _Getter, op: str, literal: int) -> Predicate:
    compare = _COMPARE[op]
    if op == "ne":

        def int_ne(resource: Mapping[str, Any]) -> bool:
            value = get(resource)
            return value is None or (type(value) is int and value != literal)

        return int_ne

    def int_cmp(resource: Mapping[str, Any]) -> bool:
        value = get(resource)
        return type(value) is int and compare(value, literal)  # bool is not an int here

    return int_cmp


def _compare_bool(get: _Getter, op: str, literal: bool) -> Predicate:
    if op == "eq":

        def bool_eq(resource: Mapping[str, Any]) -> bool:
            return get(resource) is literal

        return bool_eq

    def bool_ne(resource: Mapping[str, Any]) -> bool:
        value = get(resource)
        return value is None or (type(value) is bool and value is not literal)

    return bool_ne


def _compare_datetime(get: _Getter, op: str, key: str) -> Predicate:
    compare = _COMPARE[op]
    if op == "ne":

        def time_ne(resource: Mapping[str, Any]) -> bool:
            value = get(resource)
            if value is None:
                return True
            found = _datetime_key(value)
            return found is not None and found != key

        return time_ne

    def time_cmp(resource: Mapping[str, Any]) -> bool:
        found = _datetime_key(get(resource))
        return found is not None and compare(found, key)

    return time_cmp


def _startswith(get: _Getter, prefix: str, exact: bool) -> Predicate:
    if exact:

        def starts(resource: Mapping[str, Any]) -> bool:
            value = get(resource)
            return type(value) is str and value.startswith(prefix)

        return starts

    folded = prefix.lower()

    def starts_folded(resource: Mapping[str, Any]) -> bool:
        value = get(resource)
        return type(value) is str and value.lower().startswith(folded)

    return starts_folded


# A literal of each kind may be compared with properties of these kinds.
_COMPATIBLE: dict[_Lit, frozenset[_Kind]] = {
    _Lit.STRING: frozenset({_Kind.ID, _Kind.ENUM}),
    _Lit.INT: frozenset({_Kind.INT}),
    _Lit.BOOL: frozenset({_Kind.BOOL}),
    _Lit.DATETIME: frozenset({_Kind.DATETIME}),
    _Lit.NULL: frozenset(_Kind),
}


class _Parser:
    def __init__(self, text: str, filterable: Collection[str] | None) -> None:
        self.text = text
        self.filterable = filterable
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0

    # -- token helpers ------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind is not _T.END:
            self.index += 1
        return token

    def keyword(self, token: _Token) -> str | None:
        """The lower-cased keyword ``token`` spells, if it is a word."""
        return token.text.lower() if token.kind is _T.WORD else None

    def error(self, message: str, pos: int | None, note: str = "") -> ODataError:
        return _filter_error(self.text, message, pos, note)

    def expect(self, kind: _T, context: str) -> _Token:
        token = self.advance()
        if token.kind is not kind:
            raise self.error(
                f"expected {kind.value} {context}, found {token.describe()}", token.pos
            )
        return token

    # -- grammar ------------------------------------------------------------------------------

    def parse(self) -> Predicate:
        predicate = self.parse_or()
        token = self.peek()
        if token.kind is not _T.END:
            raise self.error(
                f"unexpected {token.describe()}, expected 'and', 'or' or the end of the filter",
                token.pos,
            )
        return predicate

    def parse_or(self) -> Predicate:
        parts = [self.parse_and()]
        while self.keyword(self.peek()) == "or":
            self.advance()
            parts.append(self.parse_and())
        return _combine(parts, _either)

    def parse_and(self) -> Predicate:
        parts = [self.parse_unary()]
        while self.keyword(self.peek()) == "and":
            self.advance()
            parts.append(self.parse_unary())
        return _combine(parts, _both)

    def parse_unary(self) -> Predicate:
        negate = False
        while self.keyword(self.peek()) == "not":
            self.advance()
            negate = not negate
        predicate = self.parse_primary()
        return _negate(predicate) if negate else predicate

    def parse_primary(self) -> Predicate:
        token = self.peek()
        if token.kind is _T.LPAREN:
            self.advance()
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise self.error(f"parentheses nested more than {_MAX_DEPTH} deep", token.pos)
            predicate = self.parse_or()
            closing = self.advance()
            if closing.kind is not _T.RPAREN:
                raise self.error(
                    f"expected ')' to close the '(' at position {token.pos}, "
                    f"found {closing.describe()}",
                    closing.pos,
                )
            self.depth -= 1
            return predicate
        if token.kind is _T.WORD and self.peek(1).kind is _T.LPAREN:
            if token.text.lower() == "startswith":
                return self.parse_startswith()
            raise self.error(f"unsupported function {token.text!r}", token.pos)
        return self.parse_comparison()

    def parse_startswith(self) -> Predicate:
        name = self.advance()
        self.advance()  # (
        path = self.parse_operand()
        if not isinstance(path, _Path):
            raise self.error(
                f"the first argument of startswith must be a property, not {path.text!r}", path.pos
            )
        self.expect(_T.COMMA, "between the arguments of startswith")
        prefix = self.parse_operand()
        if not isinstance(prefix, _Literal) or prefix.kind is not _Lit.STRING:
            text = prefix.text if isinstance(prefix, _Literal) else prefix.name
            raise self.error(
                f"the second argument of startswith must be a string literal, not {text!r}",
                prefix.pos,
            )
        self.expect(_T.RPAREN, "to close startswith")
        kind = _PROPERTY_KINDS.get(path.name)
        if kind is not None and kind is not _Kind.ID:
            raise self.error(
                f"startswith is not supported for property {path.name!r}, "
                f"which is {_a(kind.value)}",
                name.pos,
            )
        assert isinstance(prefix.value, str)
        predicate = _startswith(_getter(path.name), prefix.value, exact=kind is _Kind.ID)
        # OData also allows "startswith(...) eq true"
        op = self.keyword(self.peek())
        if op in _EQUALITY:
            op_token = self.advance()
            value = self.advance()
            if self.keyword(value) not in ("true", "false"):
                raise self.error(
                    f"startswith(...) {op_token.text} must be followed by true or false, "
                    f"found {value.describe()}",
                    value.pos,
                )
            if (op == "eq") != (self.keyword(value) == "true"):
                predicate = _negate(predicate)
        return predicate

    def parse_operand(self) -> _Path | _Literal:
        token = self.advance()
        if token.kind is _T.STRING:
            return _Literal(_Lit.STRING, token.value, token.text, token.pos)
        if token.kind is _T.INT:
            return _Literal(_Lit.INT, token.value, token.text, token.pos)
        if token.kind is _T.DATETIME:
            return _Literal(_Lit.DATETIME, token.value, token.text, token.pos)
        if token.kind is _T.WORD:
            word = token.text.lower()
            if word in ("true", "false"):
                return _Literal(_Lit.BOOL, word == "true", token.text, token.pos)
            if word == "null":
                return _Literal(_Lit.NULL, None, token.text, token.pos)
            if word in _KEYWORDS:
                raise self.error(
                    f"expected a property or a value, found keyword {token.text!r}", token.pos
                )
            if self.filterable is not None and token.text not in self.filterable:
                allowed = ", ".join(sorted(self.filterable)) or "none"
                raise self.error(
                    f"unknown property {token.text!r}",
                    token.pos,
                    f" (filterable properties: {allowed})",
                )
            return _Path(token.text, token.pos)
        raise self.error(f"expected a property or a value, found {token.describe()}", token.pos)

    def parse_comparison(self) -> Predicate:
        left = self.parse_operand()
        op_token = self.advance()
        op = self.keyword(op_token)
        if op not in _COMPARE:
            shown = left.name if isinstance(left, _Path) else left.text
            raise self.error(
                f"expected a comparison operator (eq, ne, gt, ge, lt, le) after {shown!r}, "
                f"found {op_token.describe()}",
                op_token.pos,
            )
        right = self.parse_operand()
        if isinstance(left, _Path) and isinstance(right, _Literal):
            return self.compile_comparison(left, op, right)
        if isinstance(left, _Literal) and isinstance(right, _Path):
            return self.compile_comparison(right, _FLIPPED[op], left)
        if isinstance(left, _Path):
            raise self.error("comparing two properties is not supported", op_token.pos)
        raise self.error("a comparison needs a property on one side", op_token.pos)

    def compile_comparison(self, path: _Path, op: str, literal: _Literal) -> Predicate:
        kind = _PROPERTY_KINDS.get(path.name)
        if kind is not None and kind not in _COMPATIBLE[literal.kind]:
            raise self.error(
                f"type mismatch: property {path.name!r} is {_a(kind.value)} "
                f"but {literal.text} is {_a(literal.kind.value)}",
                literal.pos,
            )
        if op in _ORDERING:
            if literal.kind in (_Lit.NULL, _Lit.BOOL):
                raise self.error(
                    f"operator {op!r} cannot be used with {literal.text}",
                    literal.pos,
                )
            if kind is _Kind.ENUM:
                raise self.error(
                    f"operator {op!r} is not supported for property {path.name!r}; use eq or ne",
                    path.pos,
                )
        get = _getter(path.name)
        value = literal.value
        if literal.kind is _Lit.NULL:
            return _compare_null(get, op)
        if literal.kind is _Lit.BOOL:
            assert isinstance(value, bool)
            return _compare_bool(get, op, value)
        if literal.kind is _Lit.INT:
            assert isinstance(value, int)
            return _compare_int(get, op, value)
        assert isinstance(value, str)
        if literal.kind is _Lit.DATETIME:
            return _compare_datetime(get, op, value)
        return _compare_string(get, op, value, exact=kind is _Kind.ID)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def compile_filter(text: str, *, filterable: Collection[str] | None = None) -> Predicate:
    """Compile an OData ``$filter`` into a predicate over wire dicts.

    ``filterable`` is the set of property paths the list operation allows (``TASK_FILTERABLE``
    and so on); any other property is an :class:`ODataError`. With ``None`` every path is
    allowed. An empty or all-whitespace filter matches everything. Raises :class:`ODataError`
    for any syntax or type error; the returned predicate itself never raises for a mapping.
    """
    if not text or text.isspace():
        return _match_all
    return _Parser(text, filterable).parse()


_SELECT_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_select(
    text: str | None, *, selectable: Collection[str] | None = None
) -> tuple[str, ...] | None:
    """Parse ``$select`` (comma-separated top-level property names) into a tuple.

    ``None`` means "no $select: every property" (for ``None``, empty or all-whitespace text).
    Duplicates are dropped, order kept. Names are case-sensitive; a name not in
    ``selectable`` (when given), a nested path or an empty item is an :class:`ODataError`.
    """
    if text is None or not text.strip():
        return None
    names: list[str] = []
    start = 0
    for item in text.split(","):
        name = item.strip()
        pos = start + len(item) - len(item.lstrip())
        start += len(item) + 1
        if not name:
            raise _select_error(text, "empty property name", pos)
        if "/" in name:
            raise _select_error(
                text, f"only top-level properties can be selected, not {name!r}", pos
            )
        if _SELECT_NAME_RE.fullmatch(name) is None:
            raise _select_error(text, f"invalid property name {name!r}", pos)
        if selectable is not None and name not in selectable:
            raise _select_error(text, f"unknown property {name!r}", pos)
        if name not in names:
            names.append(name)
    return tuple(names)


def _select_error(text: str, message: str, pos: int) -> ODataError:
    return ODataError("$select", f"{message} at position {pos}", value=text, position=pos)


def apply_select(resource: Mapping[str, Any], fields: tuple[str, ...] | None) -> dict[str, Any]:
    """A new dict with only ``fields`` of ``resource`` (those present), in the resource's order.

    ``None`` selects everything. The copy is shallow: nested values are shared with
    ``resource``, which is never modified.
    """
    if fields is None:
        return dict(resource)
    return {name: value for name, value in resource.items() if name in fields}
