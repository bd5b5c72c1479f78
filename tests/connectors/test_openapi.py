"""The OpenAPI document: valid, complete (every route of the app), and the error catalogue in step."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate

from bridge import errors, openapi
from bridge.app import make_app
from bridge.config import load_config
from bridge.errorcatalog import ADMIN_DETAIL, FRAMEWORK_CODES, MISSING_DETAIL, catalogue, error_classes, render_markdown
from bridge.login.service import MAX_PASSWORD_CHARS
from bridge.openapi import build_document
from connectors import http, mfp
from tests.connectors.openapi_check import check_response, response_schema
from tests.paths import REPO


@pytest.fixture
def app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    (tmp_path / "tenants").mkdir()
    (tmp_path / "bridge.yaml").write_text(yaml.safe_dump({
        "state_dir": str(tmp_path / "state"),
        "secrets": {"hmac_key": {"file": str(tmp_path / "hmac.key"), "generate": True}},
    }))
    (tmp_path / "tenants" / "t.yaml").write_text(yaml.safe_dump({
        "id": "t", "name": "T", "domains": ["t.example"], "protocol": "wstrust", "idp_whitelist": ["192.0.2.0/24"],
        "wstrust": {"adfs_url": "https://adfs.t.example", "applies_to": "urn:t", "federation_metadata": True},
    }))
    app = make_app(load_config(tmp_path / "bridge.yaml", require_files=False))
    routes = set()
    for route in app.router.routes():
        if route.method == "HEAD":  # aiohttp's automatic twin of each GET
            continue
        if route.resource is not None and route.resource.canonical.startswith("/scim/v2/"):
            continue  # SCIM (bridge/scim) describes itself: /ServiceProviderConfig, /Schemas (RFC 7644 section 4)
        if route.resource is not None and route.resource.canonical.startswith("/admin/v1/"):
            continue  # the admin API has its own document (/admin/v1/openapi.json; tests/adminapi/test_auth.py)
        routes.add((route.method.lower(), route.resource.canonical if route.resource else ""))
    return routes


def test_document_is_valid_openapi() -> None:
    validate(build_document())


def test_every_route_is_described_and_nothing_else(app_routes: set[tuple[str, str]]) -> None:
    described = {(method, path) for path, item in build_document()["paths"].items() for method in item}
    assert app_routes - described == set(), "routes missing from the OpenAPI document"
    assert described - app_routes == set(), "the OpenAPI document describes routes the app does not have"


def test_error_schema_lists_every_code() -> None:
    schema = response_schema("POST", "/v1/mfp/user-prompt", 401)
    codes = set(schema["properties"]["error"]["enum"])
    assert {cls.code for cls in error_classes()} | {c[0] for c in FRAMEWORK_CODES} == codes
    assert "device_throttled" in codes


def test_check_response_catches_undescribed_shapes() -> None:
    check_response("GET", "/healthz", 200, {"status": "alive"})
    with pytest.raises(AssertionError, match="does not match"):
        check_response("GET", "/healthz", 200, {"status": "alive", "extra": 1})
    with pytest.raises(AssertionError, match="does not match"):
        check_response("POST", "/v1/apps/login", 401, {"error": "no_such_code", "message": "x"})
    with pytest.raises(AssertionError, match="does not describe"):
        check_response("GET", "/healthz", 418, {})
    with pytest.raises(AssertionError, match="not described"):
        check_response("GET", "/v1/nowhere", 200, {})


def test_error_catalogue_file_matches_the_code() -> None:
    assert (REPO / "docs" / "errors.md").read_text() == render_markdown(), (
        "docs/errors.md is out of date: run .venv/bin/python -m bridge.errorcatalog > docs/errors.md")


def test_catalogue_covers_every_error_class() -> None:
    entries = {e.code: e for e in catalogue()}
    for cls in error_classes():
        entry = entries[cls.code]
        assert entry.admin_detail != MISSING_DETAIL, f"add {cls.code} to ADMIN_DETAIL in bridge/errorcatalog.py"
        if entry.exception == cls.__name__:
            assert (entry.http_status, entry.panel_message) == (cls.http_status, cls.panel_message)
    assert set(ADMIN_DETAIL) == {cls.code for cls in error_classes()}, "ADMIN_DETAIL has stale codes"
    assert entries["device_throttled"].http_status == 429
    assert issubclass(errors.DeviceThrottled, errors.TemporarilyLocked)


def test_the_documented_limits_are_the_code_limits() -> None:
    schemas = build_document()["components"]["schemas"]
    password_login = schemas["PasswordLoginRequest"]["properties"]
    assert password_login["email"]["maxLength"] == http.MAX_EMAIL_CHARS
    assert password_login["password"]["maxLength"] == MAX_PASSWORD_CHARS
    assert password_login["password"]["minLength"] == 1  # the login service refuses an empty password
    assert schemas["DeviceLoginRequest"]["properties"]["user"]["maxLength"] == mfp.MAX_REPORTED_USER_CHARS
    assert openapi.MAX_JSON_BYTES == http.MAX_JSON_BYTES


def test_every_operation_names_its_transport_answers() -> None:
    for path, item in build_document()["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert responses["405"]["headers"]["Allow"]["required"] is True, (method, path)
            if "429" in responses:
                assert responses["429"]["headers"]["Retry-After"]["required"] is True, (method, path)
            body = operation.get("requestBody")
            if body is not None and operation["tags"] == ["browser"]:  # pages: forms posted by browsers
                assert list(body["content"]) == ["application/x-www-form-urlencoded"], (method, path)
            elif body is not None:
                assert list(body["content"]) == ["application/json"], (method, path)
                assert {"400", "408", "413", "415", "500"} <= set(responses), (method, path)


def test_a_405_is_checked_against_the_paths_methods() -> None:
    answer = {"error": "method_not_allowed", "message": "Method Not Allowed"}
    check_response("PUT", "/v1/session", 405, answer, {"Allow": "GET,HEAD,DELETE"})
    check_response("PATCH", "/saml/example/metadata", 405, answer, {"Allow": "GET, HEAD"})
    with pytest.raises(AssertionError, match="Allow"):
        check_response("PUT", "/v1/session", 405, answer, {"Allow": "GET,HEAD"})
    with pytest.raises(AssertionError, match="no Allow header"):
        check_response("GET", "/v1/apps/login", 405, answer, {})
    with pytest.raises(AssertionError, match="no Retry-After header"):
        check_response("POST", "/v1/apps/login", 429, {"error": "temporarily_locked", "message": "m"}, {})
