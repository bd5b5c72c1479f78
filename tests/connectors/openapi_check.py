"""Check an answer of the app against the OpenAPI document (used by every flow test's Bridge.call)."""

from __future__ import annotations

import functools
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


def response_schema(method: str, path: str, status: int, content_type: str = "application/json") -> dict[str, Any]:
    """The schema the document gives for this answer; AssertionError when it describes none."""
    doc = document()
    operation = doc["paths"].get(urlsplit(path).path, {}).get(method.lower())
    assert operation is not None, f"{method} {path} is not described in the OpenAPI document"
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {path} answered {status}, which the OpenAPI document does not describe"
    content = response.get("content", {})
    assert content_type in content, f"{method} {path} {status}: {content_type} is not described"
    return _inline(content[content_type]["schema"], doc)


def check_response(method: str, path: str, status: int, body: Any) -> None:
    """AssertionError naming every mismatch between a JSON answer and its described schema."""
    validator = Draft202012Validator(response_schema(method, path, status), format_checker=FormatChecker())
    problems = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not problems, f"{method} {path} {status} does not match the OpenAPI schema: " + "; ".join(
        f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in problems[:5]
    )
