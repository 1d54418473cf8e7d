"""HTTP front end of the emulator: routing, Shared Key checks, faults and error bodies.

client ──HTTP/1.1──▶ Handler.handle_one_request
                       ├─ fault plan (429 / 503 / dropped connection)
                       ├─ api-version and Shared Key signature
                       ├─ route (method, path) ─▶ operation handler (``_api``)
                       └─ Response or BatchServiceError ─▶ JSON body + Batch headers
"""

from __future__ import annotations

import json
import math
import re
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from ._auth import verify
from ._errors import BatchServiceError, invalid_body
from ._wire import utcnow

if TYPE_CHECKING:
    from ._api import Service

API_VERSIONS = frozenset({"2025-06-01", "2025-06-01.21.0"})
MAX_BODY = 1024 * 1024  # Batch rejects request bodies of 1 MB and more
MAX_DRAIN = 64 * 1024 * 1024  # larger rejected bodies are not read: the connection just closes
JSON_TYPE = "application/json;odata=minimalmetadata"


@dataclass
class Request:
    method: str
    target: str
    path: str
    params: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    path_params: dict[str, str] = field(default_factory=dict)
    operation: str = ""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)

    def json(self) -> Any:
        if not self.body:
            raise invalid_body("The request body is empty.")
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise invalid_body(f"The request body is not valid JSON: {error}") from None

    def json_object(self) -> dict[str, Any]:
        value = self.json()
        if not isinstance(value, dict):
            raise invalid_body("The request body must be a JSON object.")
        return value


@dataclass
class Response:
    status: int
    body: Any = None  # dict/list -> JSON, bytes -> raw
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    operation: str
    handler: Handler


def route(method: str, template: str, operation: str, handler: Handler) -> Route:
    """``/jobs/{jobId}/tasks/{taskId}/files/{filePath}``: ``filePath`` may hold slashes."""
    regex = re.sub(
        r"\{(\w+)\}",
        lambda m: (
            f"(?P<{m.group(1)}>.+)" if m.group(1) == "filePath" else f"(?P<{m.group(1)}>[^/]+)"
        ),
        template,
    )
    return Route(method, re.compile(f"^{regex}$"), operation, handler)


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], service: Service) -> None:
        self.service = service
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up (e.g. a streamed download closed early) is routine, not an error.
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorServer
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    # TCP_NODELAY: headers and body go out in two writes; with Nagle's algorithm the body
    # waits for the client's delayed ACK (40 ms on Linux) on every response that has one.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request logging goes through the service's request log

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _dispatch(self) -> None:
        service = self.server.service
        request_id = str(uuid.uuid4())
        method = self.command
        split = urlsplit(self.path)
        headers = {k: v for k, v in self.headers.items()}
        length = int(self.headers.get("Content-Length") or 0)
        too_large = length >= MAX_BODY
        body = b"" if too_large else self.rfile.read(length)
        if too_large and length <= MAX_DRAIN:
            # Read and drop the body, so the client finishes sending and gets the 413 (closing
            # on unread data would reset the connection before the client reads the answer).
            left = length
            while left > 0 and (chunk := self.rfile.read(min(left, 1 << 16))):
                left -= len(chunk)
        params = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        request = Request(method, self.path, unquote(split.path), params, headers, body)
        try:
            route_, path_params = service.match(method, request.path)
            request.path_params = path_params
            request.operation = route_.operation if route_ else ""
            fault = service.faults.request_fault(request.operation)
            service.log_request(request, fault)
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault is not None:
                raise _fault_error(fault, service.faults.plan.retry_after)
            if too_large:
                self.close_connection = True
                raise BatchServiceError(
                    413,
                    "RequestBodyTooLarge",
                    "The request body is too large and exceeds the maximum permissible limit.",
                    [("MaxLimit", str(MAX_BODY))],
                )
            verify(method, self.path, headers, service.account_name, service.account_key)
            _check_api_version(params)
            if route_ is None:
                raise BatchServiceError(
                    # Batch status and error codes: InvalidUri is 400, UnsupportedHttpVerb 405.
                    400 if _known_path(service, request.path) is None else 405,
                    "InvalidUri"
                    if _known_path(service, request.path) is None
                    else "UnsupportedHttpVerb",
                    "The requested URI does not represent any resource on the server."
                    if _known_path(service, request.path) is None
                    else "The resource doesn't support the specified HTTP verb.",
                )
            with service.state.lock:
                response = route_.handler(request)
        except BatchServiceError as error:
            response = _error_response(service.endpoint, error, request_id)
        except Exception as error:  # a bug: answer 500 like the service would, keep serving
            service.log_error(request, error)
            response = _error_response(
                service.endpoint,
                BatchServiceError(
                    500,
                    "InternalServerError",
                    "The server encountered an internal error. Please retry the request.",
                ),
                request_id,
            )
        self._send(response, request_id, request)

    def _send(self, response: Response, request_id: str, request: Request) -> None:
        # 204 and 304 responses cannot have content (RFC 9110); a 304 NotModified error
        # body would otherwise be left in the connection for the next response to trip on.
        body = None if response.status in (204, 304) else response.body
        if isinstance(body, (dict, list)):
            payload = json.dumps(body, separators=(",", ":")).encode()
            content_type = JSON_TYPE
        else:
            payload = body or b""
            content_type = response.headers.pop("Content-Type", "application/octet-stream")
        self.send_response(response.status)
        self.send_header("request-id", request_id)
        client_request_id = request.header("client-request-id")
        if (
            client_request_id
            and (request.header("return-client-request-id") or "").lower() == "true"
        ):
            self.send_header("client-request-id", client_request_id)
        self.send_header("DataServiceVersion", "3.0")
        self.send_header("X-Content-Type-Options", "nosniff")
        if payload or isinstance(body, (dict, list)):
            self.send_header("Content-Type", content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if "Content-Length" not in response.headers:
            self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if request.method != "HEAD" and payload:
            self.wfile.write(payload)


def _check_api_version(params: Mapping[str, str]) -> None:
    version = params.get("api-version")
    if version is None:
        raise BatchServiceError(
            400,
            "MissingRequiredQueryParameter",
            "A query parameter that's mandatory for this request is not specified.",
            [("QueryParameterName", "api-version")],
        )
    if version not in API_VERSIONS:
        raise BatchServiceError(
            400,
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid.",
            [
                ("QueryParameterName", "api-version"),
                ("QueryParameterValue", version),
                ("Reason", f"This emulator implements api-version {min(API_VERSIONS)}."),
            ],
        )


def _known_path(service: Service, path: str) -> str | None:
    for route_ in service.routes:
        if route_.pattern.match(path):
            return route_.operation
    return None


def _fault_error(fault: str, retry_after: float) -> BatchServiceError:
    headers = {
        "Retry-After": str(max(1, math.ceil(retry_after))),
        "retry-after-ms": str(int(retry_after * 1000)),
    }
    if fault == "throttle":
        return BatchServiceError(
            429, "TooManyRequests", "The server is busy; retry after the given time.", None, headers
        )
    return BatchServiceError(
        503,
        "ServerBusy",
        "The server is currently unable to receive requests. Please retry your request.",
        None,
        headers,
    )


def _error_response(endpoint: str, error: BatchServiceError, request_id: str) -> Response:
    stamp = utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"  # Batch shows 7 digits
    body: dict[str, Any] = {
        "odata.metadata": f"{endpoint}/$metadata#Microsoft.Azure.Batch.Protocol.Entities."
        "Container.errors/@Element",
        "code": error.code,
        "message": {
            "lang": "en-US",
            "value": f"{error.message}\nRequestId:{request_id}\nTime:{stamp}",
        },
    }
    if error.values:
        body["values"] = [{"key": k, "value": v} for k, v in error.values]
    # No Date here: send_response() already sends one, and Date is a singleton field.
    return Response(error.status, body, dict(error.headers))
