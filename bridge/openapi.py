"""The OpenAPI 3.1 description of the device API, served at ``/v1/openapi.json``.

Written as code so the error codes come from the exception tree; tests check
that every route of the app is described and that the flow tests' answers
match the schemas (tests/connectors/openapi_check.py).  The limits below
(body size, field lengths) are the code's: tests/connectors/test_openapi.py
holds them to connectors/http.py, connectors/mfp.py and the login service.
"""

from __future__ import annotations

import json
from typing import Any

from bridge.errorcatalog import all_codes

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Schema], *, required: list[str] | None = None) -> Schema:
    return {"type": "object", "properties": properties, "required": required or list(properties),
            "additionalProperties": False}


_STRING: Schema = {"type": "string"}
_TIME: Schema = {"type": "string", "format": "date-time"}

MAX_JSON_BYTES = 16 * 1024
MAX_EMAIL_CHARS = 254
MAX_PASSWORD_CHARS = 1024
MAX_REPORTED_USER_CHARS = 256
_TEXT_RULE = ("Text must be carriable as UTF-8 and XML 1.0: no NUL or other C0 control character but tab, LF and "
              "CR, no lone surrogate (`\\ud800`), no U+FFFE/U+FFFF; such text is answered `400 invalid_request`.")

_ERROR_TEXT = {
    400: "Malformed request: a body that is not UTF-8 JSON or not an object, a missing, non-string, empty or "
         "over-long field (`bad_request`), not an email address (`email_required`), text that cannot be carried "
         "(`invalid_request`).",
    401: "Device credentials or session token refused, or the IdP refused the password.",
    403: "Refused: wrong mode, source network, unknown domain, user not provisioned or disabled, IdP denial.",
    405: "This path does not take the method used; `Allow` lists the methods it takes.",
    408: "The body did not arrive within the listener's header timeout (`request_timeout`); the connection is closed.",
    413: f"Body over {MAX_JSON_BYTES} bytes (`payload_too_large`).",
    415: "The body is not `application/json`, or its `charset` parameter is not utf-8 (`unsupported_media_type`).",
    429: "Throttled (temporarily_locked, device_throttled); see Retry-After.",
    500: "Internal error.",
    502: "The IdP failed, refused the request or answered something untrustworthy.",
    503: "The store (database) cannot be reached: nothing was checked at the IdP (`service_unavailable`); retry.",
    504: "The IdP did not answer in time.",
}

_HEADERS: dict[int, dict[str, Schema]] = {
    401: {"WWW-Authenticate": {"description": "The Basic challenge.", "required": True, "schema": _STRING}},
    405: {"Allow": {"description": "The methods this path takes.", "required": True, "schema": _STRING}},
    429: {"Retry-After": {"description": "Seconds to wait.", "required": True,
                          "schema": {"type": "integer", "minimum": 1}}},
}


def _json_response(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*statuses: int, internal: bool = True) -> dict[str, Schema]:
    """Error answers, in status order; every operation also has 405, and the device API 500 and 503 (store down)."""
    out: dict[str, Schema] = {}
    for status in sorted({*statuses, 405, *((500, 503) if internal else ())}):
        response = _json_response(_ERROR_TEXT[status], _ref("Error"))
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        out[str(status)] = response
    return out


def _login_operation(summary: str, description: str, *, security: list[dict[str, list[str]]],
                     body: str | None, errors: tuple[int, ...], op_id: str, tag: str) -> Schema:
    op: Schema = {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        "description": description,
        "security": security,
        "responses": {"200": _json_response("A session is open.", _ref("LoginResult")), **_errors(*errors)},
    }
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "description": f"`Content-Type: {JSON}` (a `charset` parameter, if any, must be utf-8; anything else "
                           f"is answered 415): one UTF-8 JSON object of at most {MAX_JSON_BYTES} bytes (413 past "
                           "it), with Content-Length or chunked, due within the listener's header timeout (408). "
                           "Members not described are ignored.",
            "content": {JSON: {"schema": _ref(body)}},
        }
    return op


def build_document() -> Schema:
    device: list[dict[str, list[str]]] = [{"deviceBasic": []}]
    session_auth: list[dict[str, list[str]]] = [{"sessionBearer": []}, {"deviceBasic": [], "sessionToken": []}]
    session_errors = _errors(401, 403)
    service_errors = _errors(internal=False)
    paths: dict[str, Schema] = {
        "/v1/mfp/shared-account": {"post": _login_operation(
            "Shared-account login",
            "Device credentials alone open a session for the device's shared tenant user. No IdP call.",
            security=device, body=None, errors=(401, 403, 429), op_id="sharedAccountLogin", tag="mfp")},
        "/v1/mfp/device-login": {"post": _login_operation(
            "Device-login",
            "The device authenticated the user itself and reports the identity (email or user name, per "
            "tenant); it is mapped to an enabled tenant user. No IdP call.",
            security=device, body="DeviceLoginRequest", errors=(400, 401, 403, 408, 413, 415, 429),
            op_id="deviceLogin", tag="mfp")},
        "/v1/mfp/user-prompt": {"post": _login_operation(
            "User-prompt login",
            "The panel sends the email and password typed; the tenant's IdP checks them.",
            security=device, body="PasswordLoginRequest", errors=(400, 401, 403, 408, 413, 415, 429, 502, 504),
            op_id="userPromptLogin", tag="mfp")},
        "/v1/apps/login": {"post": _login_operation(
            "App login",
            "Mobile and desktop apps: email and password, no device credential; throttled per source address.",
            security=[], body="PasswordLoginRequest", errors=(400, 401, 403, 408, 413, 415, 429, 502, 504),
            op_id="appLogin", tag="apps")},
        "/v1/session": {
            "get": {"operationId": "getSession", "tags": ["session"], "summary": "Introspect a session",
                    "security": session_auth,
                    "responses": {"200": _json_response("The session is live.", _ref("SessionInfo")),
                                  **session_errors}},
            "delete": {"operationId": "endSession", "tags": ["session"], "summary": "Log out",
                       "security": session_auth,
                       "responses": {"200": _json_response("The session is ended.", _ref("LogoutResult")),
                                     **session_errors}},
        },
        "/v1/openapi.json": {"get": {"operationId": "openapi", "tags": ["service"], "summary": "This document",
                                     "security": [],
                                     "responses": {"200": _json_response("OpenAPI document", {"type": "object"}),
                                                   **service_errors}}},
        "/saml/{tenant}/metadata": {"get": {
            "operationId": "samlSpMetadata", "tags": ["service"], "summary": "The bridge's SAML SP metadata",
            "description": "For the administrator to register the bridge at a SAML tenant's IdP.",
            "security": [],
            "parameters": [{"name": "tenant", "in": "path", "required": True, "schema": _STRING}],
            "responses": {
                "200": {"description": "SAML 2.0 metadata",
                        "content": {"application/samlmetadata+xml": {"schema": _STRING}}},
                "404": _json_response("No SAML tenant with this id", _ref("Error")),
                **service_errors,
            }}},
        "/healthz": {"get": {"operationId": "healthz", "tags": ["service"], "summary": "Liveness", "security": [],
                             "responses": {"200": _json_response("Alive", _ref("Health")), **service_errors}}},
        "/readyz": {"get": {"operationId": "readyz", "tags": ["service"], "summary": "Readiness", "security": [],
                            "responses": {"200": _json_response("Ready", _ref("Readiness")),
                                          "503": _json_response("Not ready", _ref("Readiness")),
                                          **service_errors}}},
        "/metrics": {"get": {"operationId": "metrics", "tags": ["service"], "summary": "Prometheus metrics",
                             "security": [],
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {"schema": _STRING}}},
                                                   **service_errors}}},
    }
    schemas: dict[str, Schema] = {
        "Error": _obj({"error": {"type": "string", "enum": all_codes()}, "message": _STRING,
                       "detail": _STRING}, required=["error", "message"]),
        "PasswordLoginRequest": {
            "type": "object", "required": ["email", "password"], "description": _TEXT_RULE,
            "properties": {
                "email": {"type": "string", "format": "email", "minLength": 1, "maxLength": MAX_EMAIL_CHARS,
                          "description": "The email address typed (a user name is answered `email_required`)"},
                "password": {"type": "string", "format": "password", "minLength": 1,
                             "maxLength": MAX_PASSWORD_CHARS},
            }},
        "DeviceLoginRequest": {
            "type": "object", "required": ["user"], "description": _TEXT_RULE,
            "properties": {"user": {"type": "string", "maxLength": MAX_REPORTED_USER_CHARS,
                                    "description": "Email or user name, per tenant setting"}}},
        "LoginResult": _obj({
            "session": _obj({"token": {"type": "string", "minLength": 43}, "expires_at": _TIME}),
            "user": _obj({"email": _STRING, "display_name": _STRING, "tenant": _STRING}),
        }),
        "SessionInfo": _obj({
            "session": _obj({"created_at": _TIME, "expires_at": _TIME,
                             "device_id": {"type": ["string", "null"]}}),
            "user": _obj({"email": _STRING, "tenant": _STRING}),
        }),
        "LogoutResult": _obj({"status": {"const": "logged_out"}}),
        "Health": _obj({"status": {"const": "alive"}}),
        "Readiness": _obj({"status": {"enum": ["ready", "not_ready"]},
                           "checks": {"type": "object", "additionalProperties": _STRING},
                           "warnings": {"type": "array", "items": _STRING}}),
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "loginbridge device API", "version": "1",
                 "description": "Sign-in for MFP panels and apps through the enterprise's own IdP. "
                                "Errors: see docs/errors.md."},
        "tags": [{"name": "mfp"}, {"name": "apps"}, {"name": "session"}, {"name": "service"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "deviceBasic": {"type": "http", "scheme": "basic",
                                "description": "device_id:secret from `loginbridge devices add`"},
                "sessionBearer": {"type": "http", "scheme": "bearer",
                                  "description": "The session token a login returned"},
                "sessionToken": {"type": "apiKey", "in": "header", "name": "X-Session-Token",
                                 "description": "The session token, when the device authenticates with Basic"},
            },
        },
    }


def document_bytes() -> bytes:
    return json.dumps(build_document(), indent=2, sort_keys=False).encode("utf-8")
