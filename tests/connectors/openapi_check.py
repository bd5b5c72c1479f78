"""Check an answer of the app against the OpenAPI document (used by every flow test's Bridge.call)."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker

from bridge.openapi import build_document


@functools.cache
def document() -> dict[str, Any]:
    return build_document()


def _inline(node: Any, doc: dict[str, Any]) -> Any:
    """Replace local ``$ref``s by what they point to (the document has no recursive schemas)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = doc
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            return _inline(target, doc)
        return {key: _inline(value, doc) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, doc) for item in node]
    return node


def _path_item(path: str) -> dict[str, Any]:
    """The document's item for a concrete path (templates such as ``/saml/{tenant}/metadata`` match a segment)."""
    paths: dict[str, dict[str, Any]] = document()["paths"]
    wanted = urlsplit(path).path
    if wanted in paths:
        return paths[wanted]
    for template, item in paths.items():
        if re.fullmatch(re.sub(r"\\{\w+\\}", "[^/]+", re.escape(template)), wanted):
            return item
    return {}


def allowed_methods(path: str) -> set[str]:
    """The methods the document describes for a path, as an ``Allow`` header lists them (GET brings HEAD)."""
    item = _path_item(path)
    methods = {method.upper() for method in item}
    return methods | {"HEAD"} if "GET" in methods else methods


def _response(method: str, path: str, status: int) -> dict[str, Any]:
    doc = document()
    item = _path_item(path)
    operation = item.get(method.lower())
    if operation is None and status == 405 and item:
        # A method the path does not take: every operation of the path describes that answer alike.
        operation = next(iter(item.values()))
    assert operation is not None, f"{method} {path} is not described in the OpenAPI document"
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {path} answered {status}, which the OpenAPI document does not describe"
    return _inline(response, doc)


def response_schema(method: str, path: str, status: int, content_type: str = "application/json") -> dict[str, Any]:
    """The schema the document gives for this answer; AssertionError when it describes none."""
    content = _response(method, path, status).get("content", {})
    assert content_type in content, f"{method} {path} {status}: {content_type} is not described"
    schema: dict[str, Any] = content[content_type]["schema"]
    return schema


def check_response(method: str, path: str, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
    """AssertionError naming every mismatch between a JSON answer and its described schema.

    With ``headers`` (case-insensitive, e.g. aiohttp's), the headers the document marks required must be
    there, and a 405's ``Allow`` must list exactly the path's described methods.
    """
    validator = Draft202012Validator(response_schema(method, path, status), format_checker=FormatChecker())
    problems = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not problems, f"{method} {path} {status} does not match the OpenAPI schema: " + "; ".join(
        f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in problems[:5]
    )
    if headers is None:
        return
    for name, spec in _response(method, path, status).get("headers", {}).items():
        assert not spec.get("required") or name in headers, f"{method} {path} {status}: no {name} header"
    if status == 405:
        listed = {m.strip().upper() for m in headers.get("Allow", "").split(",") if m.strip()}
        assert listed == allowed_methods(path), f"{method} {path} 405: Allow {sorted(listed)}, described " \
                                                f"{sorted(allowed_methods(path))}"
