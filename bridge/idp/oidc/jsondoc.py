"""Reading the JSON documents an OpenID provider sends: one object, typed members, or IdpProtocolError.

Every document the OIDC client reads (discovery, JWK Set, token and userinfo
answers, the ID token's payload) is untrusted.  ``json`` raises several
unrelated exceptions on hostile input (ValueError, RecursionError for deep
nesting, and accepts NaN/Infinity, which are not JSON at all: RFC 8259 section 6);
they all become one project error here, so no caller has to know them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from bridge.errors import IdpProtocolError

MAX_DOCUMENT_BYTES = 256 * 1024


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def load_object(body: bytes | str, *, what: str, limit: int = MAX_DOCUMENT_BYTES) -> Mapping[str, object]:
    """The JSON object in ``body``; anything else (too large, not JSON, not an object) is IdpProtocolError."""
    if len(body) > limit:
        raise IdpProtocolError(f"{what} is {len(body)} bytes, over the {limit} byte limit")
    try:
        value = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise IdpProtocolError(f"{what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise IdpProtocolError(f"{what} is JSON but not an object ({type(value).__name__})")
    return value


def optional_text(doc: Mapping[str, object], name: str, *, what: str) -> str | None:
    """A string member, or None when absent (JSON null counts as absent); another type is refused."""
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise IdpProtocolError(f"{what}: member {name!r} is not a string")
    return value


def required_text(doc: Mapping[str, object], name: str, *, what: str) -> str:
    value = optional_text(doc, name, what=what)
    if not value:
        raise IdpProtocolError(f"{what}: required member {name!r} is missing or empty")
    return value


def optional_strings(doc: Mapping[str, object], name: str, *, what: str) -> tuple[str, ...] | None:
    """An array of strings, or None when absent; another type, or an item that is no string, is refused."""
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise IdpProtocolError(f"{what}: member {name!r} is not an array of strings")
    return tuple(value)


def clean(text: str, limit: int = 200) -> str:
    """Text an IdP sent, fit for a log line or an error detail: control characters dropped, clipped."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text[: limit * 2])
    printable = " ".join(printable.split())
    return printable if len(printable) <= limit else printable[: limit - 1] + "…"
