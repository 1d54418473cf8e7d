"""The Batch service's error responses.

Every failure a handler wants to report is raised as :class:`BatchServiceError` and
rendered by the HTTP layer into the body Azure Batch sends (spec definition
``BatchError``)::

    {"odata.metadata": ".../$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container
                          .errors/@Element",
     "code": "JobNotFound",
     "message": {"lang": "en-US",
                 "value": "The specified job does not exist.\\nRequestId:...\\nTime:..."},
     "values": [{"key": "Reason", "value": "..."}]}
"""

from __future__ import annotations


class BatchServiceError(Exception):
    """An error the emulated service returns to the client."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        values: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.values = values or []
        self.headers = headers or {}


def not_found(kind: str, ident: str) -> BatchServiceError:
    """JobNotFound / TaskNotFound / PoolNotFound / NodeNotFound / FileNotFound."""
    words = {"Job": "job", "Task": "task", "Pool": "pool", "Node": "node", "File": "file"}
    return BatchServiceError(
        404, f"{kind}NotFound", f"The specified {words.get(kind, kind.lower())} does not exist."
    )


def exists(kind: str) -> BatchServiceError:
    """JobExists / PoolExists / TaskExists."""
    return BatchServiceError(409, f"{kind}Exists", f"The specified {kind.lower()} already exists.")


def invalid_property(name: str, value: object, reason: str) -> BatchServiceError:
    return BatchServiceError(
        400,
        "InvalidPropertyValue",
        "The value provided for one of the properties in the request body is invalid.",
        [("PropertyName", name), ("PropertyValue", _short(value)), ("Reason", reason)],
    )


def missing_property(name: str) -> BatchServiceError:
    return BatchServiceError(
        400,
        "MissingRequiredProperty",
        "A required property was not specified in the request body.",
        [("PropertyName", name)],
    )


def invalid_body(reason: str) -> BatchServiceError:
    return BatchServiceError(
        400,
        "InvalidRequestBody",
        "The specified Request Body is not syntactically valid.",
        [("Reason", reason)],
    )


def invalid_query(name: str, value: str, reason: str) -> BatchServiceError:
    return BatchServiceError(
        400,
        "InvalidQueryParameterValue",
        "Value for one of the query parameters specified in the request URI is invalid.",
        [("QueryParameterName", name), ("QueryParameterValue", value), ("Reason", reason)],
    )


def conflict(code: str, message: str) -> BatchServiceError:
    return BatchServiceError(409, code, message)


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 200 else text[:197] + "..."
