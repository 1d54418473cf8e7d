"""Shared Key verification, mirroring how Azure Batch signs requests.

The string to sign is built exactly as ``azure.batch._patch.BatchSharedKeyAuthPolicy`` and
Microsoft's REST docs ("Authenticate requests to the Azure Batch service") describe it:
verb, eleven standard headers, the ``ocp-*`` headers sorted, ``/account/path`` and the
sorted query parameters. A request whose signature does not match gets 403
``AuthenticationFailed``, as on Azure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

from ._errors import BatchServiceError

_SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


def string_to_sign(method: str, target: str, headers: Mapping[str, str], account: str) -> str:
    """The canonical string for a request; ``target`` is the raw request-target."""
    url = urlsplit(target)
    lowered = {k.lower(): v for k, v in headers.items() if v}
    if method not in ("GET", "HEAD"):
        lowered.setdefault("content-length", "0")
    parts = [method, *(lowered.get(name, "") for name in _SIGNED_HEADERS)]
    text = "\n".join(parts) + "\n"
    for name, value in sorted((k, v) for k, v in lowered.items() if "ocp-" in k):
        text += f"{name}:{value}\n"
    text += f"/{account}{url.path}"
    query = parse_qs(url.query)
    for name in sorted(query):
        if query[name][0]:
            text += f"\n{name}:{query[name][0]}"
    return text


def sign(key: str, text: str) -> str:
    digest = hmac.new(base64.b64decode(key), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(method: str, target: str, headers: Mapping[str, str], account: str, key: str) -> None:
    """Raise 403 AuthenticationFailed unless the request carries a valid signature."""
    auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, credential = auth.partition(" ")
    name, _, signature = credential.partition(":")
    if scheme != "SharedKey" or not signature:
        raise _failed("The Authorization header is missing or is not a SharedKey credential.")
    if name != account:
        raise _failed(f"The account name in the Authorization header is not '{account}'.")
    expected = sign(key, string_to_sign(method, target, headers, account))
    if not hmac.compare_digest(expected, signature):
        raise _failed(
            "The MAC signature found in the HTTP request is not the same as any computed signature."
        )


def _failed(detail: str) -> BatchServiceError:
    return BatchServiceError(
        403,
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization header "
        "is formed correctly including the signature.",
        [("AuthenticationErrorDetail", detail)],
    )
