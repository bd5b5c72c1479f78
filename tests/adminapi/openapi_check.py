"""Check an answer of the admin API against its OpenAPI document (every test's AdminClient.call does)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker

from bridge.adminapi import PREFIX
from bridge.adminapi.document import build_document
from tests.connectors.openapi_check import _inline


def _path_item(path: str) -> dict[str, Any]:
    wanted = urlsplit(path).path
    assert wanted.startswith(PREFIX + "/"), f"{path} is not under {PREFIX}"
    wanted = wanted[len(PREFIX):]
    paths: dict[str, dict[str, Any]] = build_document()["paths"]
    if wanted in paths:
        return paths[wanted]
    for template, item in paths.items():
        if re.fullmatch(re.sub(r"\\{\w+\\}", "[^/]+", re.escape(template)), wanted):
            return item
    return {}


def check_admin_response(method: str, path: str, status: int, body: Any, headers: Mapping[str, str],
                         content_type: str = "application/json") -> None:
    """AssertionError naming each way the answer differs from the document (schema, required headers)."""
    item = _path_item(path)
    operation = item.get(method.lower())
    if operation is None and status == 405 and item:
        operation = next(iter(item.values()))
    assert operation is not None, f"{method} {path} is not described in the admin OpenAPI document"
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {path} answered {status}, which the admin document does not describe"
    response = _inline(response, build_document())
    assert content_type in response["content"], f"{method} {path} {status}: {content_type} is not described"
    schema = response["content"][content_type]["schema"]
    problems = sorted(Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(body),
                      key=lambda e: list(e.path))
    assert not problems, f"{method} {path} {status} does not match the admin OpenAPI schema: " + "; ".join(
        f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in problems[:5])
    for name, spec in response.get("headers", {}).items():
        assert not spec.get("required") or name in headers, f"{method} {path} {status}: no {name} header"
