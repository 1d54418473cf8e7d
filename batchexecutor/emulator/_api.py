"""The emulated Batch service: its routes and what every operation shares.

Operation handlers live in ``_api_pools``, ``_api_jobs`` and ``_api_tasks``; each exports
``routes(service)``. Handlers run under the state lock and return a :class:`Response`
or raise :class:`BatchServiceError`.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlencode

from ._errors import BatchServiceError, invalid_query
from ._faults import FaultInjector
from ._http import Request, Response, Route
from ._odata import ODataError, apply_select, compile_filter, parse_select
from ._scheduler import Scheduler
from ._state import State, Wire
from ._wire import http_date, parse_iso

_log = logging.getLogger("batchexecutor.emulator")

MAX_RESULTS = 1000


class Service:
    """Everything a request handler needs: state, scheduler, identity, routes."""

    def __init__(
        self,
        state: State,
        scheduler: Scheduler,
        faults: FaultInjector,
        *,
        endpoint: str,
        account_name: str,
        account_key: str,
    ) -> None:
        from . import _api_jobs, _api_pools, _api_tasks

        self.state = state
        self.scheduler = scheduler
        self.faults = faults
        self.endpoint = endpoint
        self.account_name = account_name
        self.account_key = account_key
        self.requests: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self.routes: list[Route] = [
            *_api_pools.routes(self),
            *_api_jobs.routes(self),
            *_api_tasks.routes(self),
        ]

    # -- routing and logging ---------------------------------------------------------

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route_ in self.routes:
            if route_.method == method:
                found = route_.pattern.match(path)
                if found:
                    return route_, found.groupdict()
        return None, {}

    def log_request(self, request: Request, fault: str | None) -> None:
        with self._count_lock:
            self.requests[request.operation or "unknown"] += 1
        _log.debug(
            "%s %s -> %s%s",
            request.method,
            request.path,
            request.operation,
            f" (fault: {fault})" if fault else "",
        )

    def log_error(self, request: Request, error: BaseException) -> None:
        _log.error("internal error in %s %s", request.method, request.path, exc_info=error)

    # -- shared helpers --------------------------------------------------------------

    def url(self, *parts: str) -> str:
        return self.endpoint + "/" + "/".join(quote(p, safe="") for p in parts)


def resource_headers(wire: Wire, location: str | None = None) -> dict[str, str]:
    headers = {
        "ETag": str(wire["eTag"]),
        "Last-Modified": http_date(parse_iso(str(wire["lastModified"]))),
    }
    if location:
        headers["Location"] = location
        headers["DataServiceId"] = location
    return headers


def check_conditions(request: Request, wire: Wire | None) -> None:
    """If-Match / If-None-Match / If-(Un)Modified-Since, as Batch honours them."""
    if_match = _unquoted(request.header("If-Match"))
    if_none = _unquoted(request.header("If-None-Match"))
    modified = request.header("If-Modified-Since")
    unmodified = request.header("If-Unmodified-Since")
    etag = None if wire is None else str(wire.get("eTag"))
    reading = request.method in ("GET", "HEAD")
    if if_match is not None and (wire is None or (if_match != "*" and if_match != etag)):
        raise _condition_failed()
    if if_none is not None and wire is not None and (if_none == "*" or if_none == etag):
        if reading:
            raise BatchServiceError(304, "NotModified", "The resource has not been modified.")
        raise _condition_failed()
    if wire is None:
        return
    last = parse_iso(str(wire["lastModified"])).replace(microsecond=0)
    if unmodified is not None and last > _http_time(unmodified, "If-Unmodified-Since"):
        raise _condition_failed()
    if modified is not None and last <= _http_time(modified, "If-Modified-Since"):
        if reading:
            raise BatchServiceError(304, "NotModified", "The resource has not been modified.")
        raise _condition_failed()


def _unquoted(etag: str | None) -> str | None:
    """Batch's ETags are unquoted (``0x8D...``); azure-core sends them quoted (RFC 9110)."""
    if etag is not None and len(etag) >= 2 and etag[0] == etag[-1] == '"':
        return etag[1:-1]
    return etag


def _http_time(value: str, name: str) -> Any:
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise BatchServiceError(
            400,
            "InvalidHeaderValue",
            "The value for one of the HTTP headers is not in the correct format.",
            [("HeaderName", name), ("HeaderValue", value)],
        ) from None


def _condition_failed() -> BatchServiceError:
    return BatchServiceError(
        412,
        "ConditionNotMet",
        "The condition specified using HTTP conditional header(s) is not met.",
    )


def select_of(request: Request, selectable: Iterable[str]) -> tuple[str, ...] | None:
    try:
        return parse_select(request.params.get("$select"), selectable=frozenset(selectable))
    except ODataError as error:
        raise invalid_query("$select", request.params.get("$select", ""), str(error)) from None


def filter_of(request: Request, filterable: Iterable[str]) -> Callable[[Wire], bool]:
    text = request.params.get("$filter") or ""
    try:
        return compile_filter(text, filterable=frozenset(filterable))
    except ODataError as error:
        raise invalid_query("$filter", text, str(error)) from None


def max_results(request: Request) -> int:
    text = request.params.get("maxresults")
    if text is None:
        return MAX_RESULTS
    if not text.isdigit() or not 1 <= int(text) <= MAX_RESULTS:
        raise invalid_query("maxresults", text, f"Expected an integer from 1 to {MAX_RESULTS}.")
    return int(text)


def page(
    service: Service,
    request: Request,
    items: Iterable[tuple[int, Wire]],
    *,
    filterable: Iterable[str],
    selectable: Iterable[str],
) -> Response:
    """A list response: filtered, selected, paged by ``$skiptoken`` (the last key served).

    ``items`` yields ``(key, wire)`` in ascending key order. The ``odata.nextLink`` is an
    absolute URL carrying every parameter the next page needs.
    """
    predicate = filter_of(request, filterable)
    fields = select_of(request, selectable)
    limit = max_results(request)
    token = request.params.get("$skiptoken")
    after = -1
    if token is not None:
        if not token.isdigit():
            raise invalid_query("$skiptoken", token, "Not a continuation token of this service.")
        after = int(token)
    value: list[Wire] = []
    last = after
    more = False
    for key, wire in items:
        if key <= after or not predicate(wire):
            continue
        if len(value) == limit:
            more = True
            break
        value.append(apply_select(wire, fields))
        last = key
    body: dict[str, Any] = {"value": value}
    if more:
        params = {k: v for k, v in request.params.items() if k != "$skiptoken"}
        params["$skiptoken"] = str(last)
        params.setdefault("maxresults", str(limit))
        body["odata.nextLink"] = f"{service.endpoint}{quote(request.path)}?{urlencode(params)}"
    return Response(200, body)


def single(request: Request, wire: Wire, selectable: Iterable[str]) -> Response:
    check_conditions(request, wire)
    fields = select_of(request, selectable)
    return Response(200, apply_select(wire, fields), resource_headers(wire))
