"""The OpenAPI 3.1 description of the device API, served at ``/v1/openapi.json``.

Written as code so the error codes come from the exception tree; tests check
that every route of the app is described and that the flow tests' answers
match the schemas (tests/connectors/openapi_check.py).
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

_ERROR_TEXT = {
    400: "Malformed request (bad JSON, missing field, not an email address).",
    401: "Device credentials or session token refused, or the IdP refused the password.",
    403: "Refused: wrong mode, source network, unknown domain, user not provisioned or disabled, IdP denial.",
    413: "Body too large.",
    429: "Throttled (temporarily_locked, device_throttled); see Retry-After.",
    500: "Internal error.",
    502: "The IdP failed, refused the request or answered something untrustworthy.",
    504: "The IdP did not answer in time.",
}


def _json_response(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    for status in (*statuses, 500):
        response = _json_response(_ERROR_TEXT[status], _ref("Error"))
        if status == 429:
            response["headers"] = {"Retry-After": {"description": "Seconds to wait.",
                                                   "schema": {"type": "integer", "minimum": 1}}}
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
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(body)}}}
    return op


def build_document() -> Schema:
    device: list[dict[str, list[str]]] = [{"deviceBasic": []}]
    session_auth: list[dict[str, list[str]]] = [{"sessionBearer": []}, {"deviceBasic": [], "sessionToken": []}]
    session_errors = _errors(401, 403)
    paths: dict[str, Schema] = {
        "/v1/mfp/shared-account": {"post": _login_operation(
            "Shared-account login",
            "Device credentials alone open a session for the device's shared tenant user. No IdP call.",
            security=device, body=None, errors=(401, 403, 429), op_id="sharedAccountLogin", tag="mfp")},
        "/v1/mfp/device-login": {"post": _login_operation(
            "Device-login",
            "The device authenticated the user itself and reports the identity (email or user name, per "
            "tenant); it is mapped to an enabled tenant user. No IdP call.",
            security=device, body="DeviceLoginRequest", errors=(400, 401, 403, 413, 429), op_id="deviceLogin",
            tag="mfp")},
        "/v1/mfp/user-prompt": {"post": _login_operation(
            "User-prompt login",
            "The panel sends the email and password typed; the tenant's IdP checks them.",
            security=device, body="PasswordLoginRequest", errors=(400, 401, 403, 413, 429, 502, 504),
            op_id="userPromptLogin", tag="mfp")},
        "/v1/apps/login": {"post": _login_operation(
            "App login",
            "Mobile and desktop apps: email and password, no device credential; throttled per source address.",
            security=[], body="PasswordLoginRequest", errors=(400, 401, 403, 413, 429, 502, 504),
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
                                     "responses": {"200": _json_response("OpenAPI document", {"type": "object"})}}},
        "/saml/{tenant}/metadata": {"get": {
            "operationId": "samlSpMetadata", "tags": ["service"], "summary": "The bridge's SAML SP metadata",
            "description": "For the administrator to register the bridge at a SAML tenant's IdP.",
            "security": [],
            "parameters": [{"name": "tenant", "in": "path", "required": True, "schema": _STRING}],
            "responses": {
                "200": {"description": "SAML 2.0 metadata",
                        "content": {"application/samlmetadata+xml": {"schema": _STRING}}},
                "404": _json_response("No SAML tenant with this id", _ref("Error")),
            }}},
        "/healthz": {"get": {"operationId": "healthz", "tags": ["service"], "summary": "Liveness", "security": [],
                             "responses": {"200": _json_response("Alive", _ref("Health"))}}},
        "/readyz": {"get": {"operationId": "readyz", "tags": ["service"], "summary": "Readiness", "security": [],
                            "responses": {"200": _json_response("Ready", _ref("Readiness")),
                                          "503": _json_response("Not ready", _ref("Readiness"))}}},
        "/metrics": {"get": {"operationId": "metrics", "tags": ["service"], "summary": "Prometheus metrics",
                             "security": [],
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {"schema": _STRING}}}}}},
    }
    schemas: dict[str, Schema] = {
        "Error": _obj({"error": {"type": "string", "enum": all_codes()}, "message": _STRING,
                       "detail": _STRING}, required=["error", "message"]),
        "PasswordLoginRequest": {"type": "object", "required": ["email", "password"],
                                 "properties": {"email": {"type": "string", "format": "email"},
                                                "password": {"type": "string", "format": "password"}}},
        "DeviceLoginRequest": {"type": "object", "required": ["user"],
                               "properties": {"user": {"type": "string", "maxLength": 256,
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
