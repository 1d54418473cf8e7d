"""The committed Azure Batch spec extract, and strict validators built from it.

``spec/batch-2025-06-01.json`` is produced by ``extract_spec.py`` from Microsoft's OpenAPI 2.0
(Swagger) spec; this module only ever reads that committed copy.

Swagger schemas are validated with ``jsonschema``'s Draft 4 validator after a translation that
makes Swagger's conventions explicit and *strict*:

- An object schema that lists ``properties`` (and says nothing about ``additionalProperties``)
  gets ``additionalProperties: false``: a response may not carry a field the spec lacks.
- Without ``x-nullable: true`` a property may not be ``null`` (omit it instead); with it,
  ``null`` is allowed.
- ``enum`` is enforced even where ``x-ms-enum.modelAsString`` is true. SDKs tolerate unknown
  values there so that the service can add some; an emulator must not invent any.
- ``readOnly`` properties are allowed in responses. In request bodies they are errors (the SDK
  serialises requests with ``exclude_readonly=True``) and are not required.
- Formats are checked: ``date-time`` (RFC 3339, with a time-zone offset), ``duration``
  (ISO 8601), ``int32``/``int64`` ranges (``int64`` may be a decimal string), ``uri``
  (absolute) and ``byte`` (base64).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from jsonschema import Draft4Validator, FormatChecker, ValidationError, validators
from jsonschema.protocols import Validator
from referencing import Registry
from referencing.jsonschema import DRAFT4

SPEC_DIR = Path(__file__).resolve().parent / "spec"
SPEC_PATH = SPEC_DIR / "batch-2025-06-01.json"
EXAMPLES_DIR = SPEC_DIR / "examples"

_DEFINITIONS = "#/definitions/"
_BASE_URI = "urn:batchexecutor:contract:batch-2025-06-01:"
_RESPONSE = "response"
_REQUEST = "request"
#: Custom keyword marking a ``readOnly`` property inside a request schema.
_READ_ONLY_IN_REQUEST = "x-readOnlyInRequest"
#: Example parameter names that are not operation parameters: the host placeholder.
HOST_PARAMETERS = frozenset({"batchUrl", "endpoint"})


# --------------------------------------------------------------------------- the spec


@functools.cache
def load_spec() -> dict[str, Any]:
    """The committed extract (``spec/batch-2025-06-01.json``), parsed once."""
    with SPEC_PATH.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def operation_ids() -> list[str]:
    """The operationIds in the extract, sorted."""
    return sorted(load_spec()["operations"])


def operation(operation_id: str) -> dict[str, Any]:
    """The extracted operation: method, path, parameters, requestBody, responses."""
    try:
        op: dict[str, Any] = load_spec()["operations"][operation_id]
    except KeyError:
        raise KeyError(
            f"{operation_id!r} is not in the spec extract; known: {', '.join(operation_ids())}"
        ) from None
    return op


@dataclass(frozen=True)
class _Route:
    operation_id: str
    method: str
    template: str
    pattern: re.Pattern[str]
    literal_chars: int


@functools.cache
def _routes() -> tuple[_Route, ...]:
    routes = []
    for op_id, op in load_spec()["operations"].items():
        template: str = op["path"]
        regex = ""
        for part in re.split(r"(\{[^}]+\})", template):
            if part.startswith("{"):
                name = part[1:-1]
                # filePath is the only parameter that may span several segments.
                regex += f"(?P<{name}>.+)" if name == "filePath" else f"(?P<{name}>[^/]+)"
            else:
                regex += re.escape(part)
        literal = len(re.sub(r"\{[^}]+\}", "", template))
        routes.append(_Route(op_id, op["method"], template, re.compile(regex + r"\Z"), literal))
    # Prefer templates with more literal text, e.g. ".../subtasksinfo" over a parameter.
    return tuple(sorted(routes, key=lambda r: (-r.literal_chars, r.template, r.method)))


def find_operation(method: str, path: str) -> tuple[str, dict[str, str]]:
    """Match a concrete request to an operation.

    ``path`` is the request path (a full URL, or a query string, is accepted and ignored
    beyond the path). Path parameters are returned percent-decoded: ``/jobs/j1/tasks/t%2F1``
    gives ``{"jobId": "j1", "taskId": "t/1"}``; ``{filePath}`` may contain slashes. Raises
    ``LookupError`` when no implemented operation matches.
    """
    raw_path = urlsplit(path).path if "://" in path else path.split("?", 1)[0]
    method = method.upper()
    path_matches: list[str] = []
    for route in _routes():
        match = route.pattern.match(raw_path)
        if match is None:
            continue
        if route.method != method:
            path_matches.append(f"{route.method} {route.template}")
            continue
        return route.operation_id, {k: unquote(v) for k, v in match.groupdict().items()}
    hint = f"; the path matches {', '.join(path_matches)}" if path_matches else ""
    raise LookupError(f"no implemented operation for {method} {raw_path}{hint}")


def response_spec(operation_id: str, status: int) -> tuple[str, dict[str, Any]]:
    """The declared response for ``status``: ``(status key, {"schema"?, "headers"})``.

    Error statuses (4xx/5xx) not listed explicitly fall back to ``default``. A success or
    redirect status the operation does not declare is a contract violation: the SDK raises
    on any status other than the declared ones.
    """
    responses: dict[str, Any] = operation(operation_id)["responses"]
    key = str(status)
    if key in responses:
        return key, responses[key]
    if status >= 400 and "default" in responses:
        return "default", responses["default"]
    raise AssertionError(
        f"{operation_id} does not declare status {status}; declared: {', '.join(responses)}"
    )


# --------------------------------------------------------------------------- formats

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))\Z"
)
_ISO8601_DURATION = re.compile(
    r"-?P(?!\Z)(\d+(\.\d+)?Y)?(\d+(\.\d+)?M)?(\d+(\.\d+)?W)?(\d+(\.\d+)?D)?"
    r"(T(?=\d)(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?\Z"
)
_RFC7231 = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT\Z"
)
_INT_STRING = re.compile(r"-?\d+\Z")
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

FORMAT_CHECKER = FormatChecker(formats=())


def is_rfc3339(value: str) -> bool:
    """True if ``value`` is an RFC 3339 ``date-time`` (calendar-valid, offset required)."""
    match = _RFC3339.match(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return False
    if hour > 23 or minute > 59 or second > 60:  # 60: leap second
        return False
    offset_hour, offset_minute = match.group(9), match.group(10)
    return offset_hour is None or (int(offset_hour) <= 23 and int(offset_minute) <= 59)


def is_rfc7231(value: str) -> bool:
    """True if ``value`` is an RFC 7231 IMF-fixdate (``Fri, 17 Feb 2017 00:00:00 GMT``)."""
    if _RFC7231.match(value) is None:
        return False
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    # parsedate_to_datetime ignores the weekday; a wrong one is still a wrong date.
    return parsed.strftime("%a") == value[:3]


def _check_date_time(value: object) -> bool:
    return not isinstance(value, str) or is_rfc3339(value)


def _check_duration(value: object) -> bool:
    return not isinstance(value, str) or _ISO8601_DURATION.match(value) is not None


def _check_int(fmt: str, value: object) -> bool:
    low, high = _INT_RANGES[fmt]
    if isinstance(value, str):  # int64 values are sent as decimal strings in places
        if _INT_STRING.match(value) is None:
            return False
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return low <= value <= high
    return True


def _check_int32(value: object) -> bool:
    return _check_int("int32", value)


def _check_int64(value: object) -> bool:
    return _check_int("int64", value)


def _check_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not value or any(c.isspace() for c in value):
        return False
    parts = urlsplit(value)
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme)) and bool(
        parts.netloc or parts.path
    )


def _check_byte(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


for _format, _check in {
    "date-time": _check_date_time,
    "duration": _check_duration,
    "int32": _check_int32,
    "int64": _check_int64,
    "uri": _check_uri,
    "byte": _check_byte,
}.items():
    FORMAT_CHECKER.checks(_format)(_check)


# --------------------------------------------------------------------------- strict schemas


def _read_only_in_request(
    validator: Any, value: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if value:
        yield ValidationError("is readOnly in the spec and must not be sent in a request")


_StrictValidator = validators.extend(
    Draft4Validator, validators={_READ_ONLY_IN_REQUEST: _read_only_in_request}
)


def _strict(node: Any, mode: str) -> Any:
    """Translate one Swagger schema node into a strict Draft 4 schema (see module doc)."""
    if isinstance(node, list):
        return [_strict(item, mode) for item in node]
    if not isinstance(node, dict):
        return node
    unsupported = {"allOf", "discriminator", "anyOf", "oneOf", "not"} & node.keys()
    if unsupported:
        raise NotImplementedError(f"strict translation of {sorted(unsupported)} is not written")
    nullable = node.get("x-nullable") is True
    if "$ref" in node:
        ref = {"$ref": node["$ref"]}  # Draft 4 ignores $ref siblings; so does Swagger
        return {"anyOf": [ref, {"type": "null"}]} if nullable else ref

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            props: dict[str, Any] = {}
            for name, prop in value.items():
                if mode == _REQUEST and isinstance(prop, dict) and prop.get("readOnly"):
                    props[name] = {_READ_ONLY_IN_REQUEST: True}
                else:
                    props[name] = _strict(prop, mode)
            out[key] = props
        elif key == "required":
            read_only = {
                name
                for name, prop in node.get("properties", {}).items()
                if isinstance(prop, dict) and prop.get("readOnly")
            }
            required = [n for n in value if mode == _RESPONSE or n not in read_only]
            if required:
                out[key] = required
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _strict(value, mode)
        elif key == "default" or key.startswith("x-"):
            continue  # annotations only
        else:
            out[key] = value
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if nullable:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


def _absolute_refs(node: Any, base: str) -> Any:
    if isinstance(node, list):
        return [_absolute_refs(item, base) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _absolute_refs(v, base) for k, v in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        out["$ref"] = base + ref
    return out


@functools.cache
def _registry(mode: str) -> Registry[Any]:
    definitions = {
        name: _strict(schema, mode) for name, schema in load_spec()["definitions"].items()
    }
    resource = DRAFT4.create_resource({"definitions": definitions})
    registry: Registry[Any] = Registry().with_resource(_BASE_URI + mode, resource)
    return registry


def _validator(schema: dict[str, Any], mode: str) -> Validator:
    root = _absolute_refs(_strict(schema, mode), _BASE_URI + mode)
    validator: Validator = _StrictValidator(
        root, registry=_registry(mode), format_checker=FORMAT_CHECKER
    )
    return validator


@functools.cache
def response_validator(operation_id: str, status: int) -> Validator | None:
    """A strict validator for the JSON body of a response, or None if it has no JSON body.

    None means the declared response has no schema (e.g. 202/204, or ``Pools_PoolExists``)
    or a ``file`` schema (``Tasks_GetTaskFile``: raw bytes). Raises AssertionError when the
    operation does not declare ``status`` (see :func:`response_spec`).
    """
    _, response = response_spec(operation_id, status)
    schema = response.get("schema")
    if schema is None or schema.get("type") == "file":
        return None
    return _validator(schema, _RESPONSE)


@functools.cache
def request_validator(operation_id: str) -> Validator | None:
    """A strict validator for the request body, or None if the operation takes no body."""
    body = operation(operation_id)["requestBody"]
    return None if body is None else _validator(body["schema"], _REQUEST)


@functools.cache
def error_validator() -> Validator:
    """A strict validator for ``BatchError`` (every operation's ``default`` response)."""
    return _validator({"$ref": _DEFINITIONS + "BatchError"}, _RESPONSE)


def _leaf_errors(error: ValidationError) -> list[ValidationError]:
    """Replace an ``anyOf`` failure (from ``x-nullable``) by the failures that matter."""
    if error.validator == "anyOf" and error.context:
        relevant = [e for e in error.context if e.validator_value != "null"]
        if relevant:
            return [leaf for e in relevant for leaf in _leaf_errors(e)]
    return [error]


def schema_errors(validator: Validator, instance: Any) -> list[str]:
    """Every violation as ``"<JSON path>: <message>"``, sorted by path."""
    errors = [leaf for e in validator.iter_errors(instance) for leaf in _leaf_errors(e)]
    return sorted(f"{e.json_path}: {e.message}" for e in errors)


def _assert_valid(validator: Validator, instance: Any, what: str) -> None:
    problems = schema_errors(validator, instance)
    if problems:
        listing = "\n".join(f"  {p}" for p in problems)
        raise AssertionError(f"{what}: {len(problems)} schema violation(s):\n{listing}")


def _is_empty(body: Any) -> bool:
    return body is None or body == b"" or body == ""


def validate_response(operation_id: str, status: int, body: Any) -> None:
    """Assert that ``body`` (parsed JSON; None for no body) is valid for this response.

    JSON responses are validated strictly against their schema; error statuses against
    ``BatchError``; responses without a schema must have no body; ``file`` responses must be
    ``bytes`` or ``str``.
    """
    key, response = response_spec(operation_id, status)
    what = f"{operation_id} {status} response body"
    schema = response.get("schema")
    if schema is None:
        if not _is_empty(body):
            raise AssertionError(f"{what}: the spec declares no body, got {body!r:.200}")
        return
    if schema.get("type") == "file":
        if not isinstance(body, (bytes, str)):
            raise AssertionError(f"{what}: expected raw file content, got {type(body).__name__}")
        return
    validator = response_validator(operation_id, status)
    assert validator is not None
    _assert_valid(validator, body, f"{what} ({key}: {schema.get('$ref', 'inline schema')})")


def validate_error(body: Any) -> None:
    """Assert that ``body`` (parsed JSON) is a valid ``BatchError``."""
    _assert_valid(error_validator(), body, "error body (BatchError)")


def validate_request(operation_id: str, body: Any) -> None:
    """Assert that a request body (parsed JSON; None for none) is valid for the operation.

    Strict like responses, plus: ``readOnly`` properties are errors and are never required.
    """
    spec_body = operation(operation_id)["requestBody"]
    what = f"{operation_id} request body"
    if spec_body is None:
        if not _is_empty(body):
            raise AssertionError(f"{what}: the operation takes no body, got {body!r:.200}")
        return
    if _is_empty(body):
        if spec_body.get("required"):
            raise AssertionError(f"{what}: the body ({spec_body['name']}) is required")
        return
    validator = request_validator(operation_id)
    assert validator is not None
    _assert_valid(validator, body, f"{what} ({spec_body['schema'].get('$ref', 'inline')})")


def validate_headers(operation_id: str, status: int, headers: Mapping[str, str]) -> None:
    """Assert that the declared response headers present in ``headers`` are well formed.

    Checks ``date-time-rfc7231`` (IMF-fixdate, e.g. ``Last-Modified``), ``int64`` (e.g.
    ``Content-Length``) and ``boolean`` (``true``/``false``) headers; header names are
    case-insensitive. Undeclared headers (``Content-Type``, ...) are not checked, and no
    header is required: the spec does not say which ones are.
    """
    _, response = response_spec(operation_id, status)
    present = {name.lower(): value for name, value in headers.items()}
    problems = []
    for name, decl in sorted(response.get("headers", {}).items()):
        value = present.get(name.lower())
        if value is None:
            continue
        fmt, kind = decl.get("format"), decl.get("type")
        if fmt == "date-time-rfc7231" and not is_rfc7231(value):
            problems.append(f"{name}: {value!r} is not an RFC 7231 date")
        elif fmt in _INT_RANGES and not _check_int(fmt, value):
            problems.append(f"{name}: {value!r} is not an {fmt} integer")
        elif kind == "boolean" and value.lower() not in ("true", "false"):
            problems.append(f"{name}: {value!r} is not a boolean")
    if problems:
        listing = "\n".join(f"  {p}" for p in problems)
        raise AssertionError(f"{operation_id} {status} response headers:\n{listing}")


# --------------------------------------------------------------------------- examples


@dataclass(frozen=True)
class ExampleResponse:
    """One status of an example. ``body`` is None when the example shows no body."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Example:
    """A Microsoft example file (``spec/examples/*.json``)."""

    file: str
    title: str
    operation_id: str
    parameters: dict[str, Any]
    responses: tuple[ExampleResponse, ...]

    @property
    def undeclared_parameters(self) -> list[str]:
        """Example parameters the operation does not declare (host placeholder excluded)."""
        declared = {p["name"] for p in operation(self.operation_id)["parameters"]}
        return sorted(set(self.parameters) - declared - HOST_PARAMETERS)

    @property
    def request_body(self) -> Any:
        """The request body, or None.

        Looked up under the operation's body parameter name; failing that, an example from
        an older spec revision may name it differently (``Jobs_TerminateJob.json`` says
        ``jobTerminateParameter`` where the spec says ``options``), so a single undeclared
        object-valued parameter is taken as the body.
        """
        body = operation(self.operation_id)["requestBody"]
        if body is None:
            return None
        if body["name"] in self.parameters:
            return self.parameters[body["name"]]
        candidates = [
            self.parameters[n]
            for n in self.undeclared_parameters
            if isinstance(self.parameters[n], dict)
        ]
        return candidates[0] if len(candidates) == 1 else None


def _example_response(status: str, raw: dict[str, Any]) -> ExampleResponse:
    # The standard layout is {"headers": {...}, "body": ...}; several Microsoft examples put
    # the headers directly next to "body" instead, so both are read.
    headers = {k: str(v) for k, v in raw.get("headers", {}).items()}
    headers.update({k: str(v) for k, v in raw.items() if k not in ("body", "headers")})
    return ExampleResponse(status=int(status), body=raw.get("body"), headers=headers)


@functools.cache
def _load_examples() -> tuple[Example, ...]:
    found = []
    for path in sorted(EXAMPLES_DIR.glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        found.append(
            Example(
                file=path.name,
                title=raw.get("title", path.stem),
                operation_id=raw["operationId"],
                parameters=raw.get("parameters", {}),
                responses=tuple(
                    _example_response(status, resp)
                    for status, resp in sorted(raw["responses"].items())
                ),
            )
        )
    return tuple(found)


def examples() -> list[Example]:
    """The committed example files, sorted by file name."""
    return list(_load_examples())
