"""The OpenAPI 3.1 description of the admin API, served (without a token: it holds no data) at
``/admin/v1/openapi.json``. Written as code, like the device API's (bridge/openapi.py): the error codes come
from the exception tree, and tests check every route is described and every answer they get matches it."""

from __future__ import annotations

import functools
import json
from typing import Any

from aiohttp import web

from bridge.adminapi.http import MAX_CSV_BYTES, MAX_JSON_BYTES, PREFIX
from bridge.errorcatalog import all_codes
from bridge.state.records import MAX_LOCATION_CHARS
from bridge.state.store import DeviceMode

Schema = dict[str, Any]
JSON = "application/json"
_STRING: Schema = {"type": "string"}
_TIME: Schema = {"type": "string", "format": "date-time"}
_NULLABLE_STRING: Schema = {"type": ["string", "null"]}
_MODES = [m.value for m in DeviceMode]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Schema], *, required: list[str] | None = None, extra: bool = False) -> Schema:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required, "additionalProperties": extra}


def _list_of(name: str, key: str) -> Schema:
    return _obj({key: {"type": "array", "items": _ref(name)}})


_ERRORS: dict[int, str] = {
    400: "Malformed request: not a JSON object, an unknown or refused member, a bad value (`bad_request`).",
    401: "No admin token, or an unknown or revoked one (`admin_unauthorized`).",
    403: "A tenant-scoped token tried what takes a global one (`admin_forbidden`).",
    404: "No such tenant, user or device, or one the token does not see (`resource_not_found`); or no such "
         "path (`not_found`).",
    405: "This path does not take the method used; `Allow` lists the methods it takes.",
    408: "The body did not arrive in time (`request_timeout`).",
    409: "The change clashes with existing data (`resource_conflict`); the detail names what.",
    413: "The body is too large (`payload_too_large`).",
    415: "The body is not of the media type described (`unsupported_media_type`).",
    422: "The tenant document is not valid (`invalid_tenant`, with `path`), or the CSV has bad rows "
         "(`invalid_import`, with `errors`).",
    500: "Internal error.",
    503: "The store (database) cannot be reached (`service_unavailable`).",
}
_HEADERS: dict[int, dict[str, Schema]] = {
    401: {"WWW-Authenticate": {"description": "The Bearer challenge.", "required": True, "schema": _STRING}},
    405: {"Allow": {"description": "The methods this path takes.", "required": True, "schema": _STRING}},
}
_BODY_ERRORS = (400, 408, 413, 415)


def _answer(description: str, schema: Schema, headers: dict[str, Schema] | None = None) -> Schema:
    answer: Schema = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _op(op_id: str, tag: str, summary: str, ok: tuple[int, str, str], *, errors: tuple[int, ...] = (),
        body: Schema | None = None, description: str = "", public: bool = False,
        parameters: list[Schema] | None = None, created: bool = False) -> Schema:
    status, schema, what = ok
    statuses = {*errors, 400, 404, 405, 500, 503, *(() if public else (401,)), *(_BODY_ERRORS if body else ())}
    responses: Schema = {str(status): _answer(what, _ref(schema), {
        "Location": {"description": "The new resource", "required": True, "schema": _STRING}} if created else None)}
    for code in sorted(statuses):
        responses[str(code)] = _answer(_ERRORS[code], _ref("Error"), _HEADERS.get(code))
    op: Schema = {"operationId": op_id, "tags": [tag], "summary": summary,
                  "security": [] if public else [{"adminBearer": []}], "responses": responses}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    return op


def _json_body(name: str) -> Schema:
    return {JSON: {"schema": _ref(name)}}


def _path(*names: str) -> list[Schema]:
    return [{"name": name, "in": "path", "required": True, "schema": _STRING} for name in names]


@functools.cache
def build_document() -> Schema:
    t, tu, tdd = _path("tenant"), _path("tenant", "email"), _path("tenant", "device")
    td = t
    write = (403, 409, 422)
    paths: dict[str, Schema] = {
        "/openapi.json": {"get": _op("adminOpenapi", "service", "This document", (200, "Document", "OpenAPI"),
                                     public=True)},
        "/tenants": {
            "get": _op("listTenants", "tenants", "The tenants the token sees", (200, "TenantList", "Tenants")),
            "post": _op("createTenant", "tenants", "Create a tenant (global token)",
                        (201, "Tenant", "Created and served"), errors=write, body=_json_body("TenantDocument"),
                        created=True,
                        description="The keys of a tenant YAML file, as JSON, validated like a file; errors name "
                                    "the JSON path. A domain another tenant claims, or an id taken, is 409."),
        },
        "/tenants/{tenant}": {
            "get": _op("getTenant", "tenants", "A tenant and its document", (200, "Tenant", "The tenant"),
                       parameters=t),
            "put": _op("replaceTenant", "tenants", "Replace a tenant's settings (global token)",
                       (200, "Tenant", "Replaced and served"), errors=write, body=_json_body("TenantDocument"),
                       parameters=t),
            "delete": _op("deleteTenant", "tenants", "Delete a tenant without users or devices (global token)",
                          (200, "TenantDeleted", "Deleted"), errors=(403, 409), parameters=t),
        },
        "/tenants/{tenant}/users": {
            "get": _op("listUsers", "users", "The tenant's accounts", (200, "UserList", "Accounts"), parameters=t),
            "post": _op("createUser", "users", "Create an account (never with a password)",
                        (201, "User", "Created"), errors=(409,), body=_json_body("UserCreate"), parameters=t,
                        created=True),
        },
        "/tenants/{tenant}/user-imports": {"post": _op(
            "importUsers", "users", "Import accounts from CSV", (200, "ImportResult", "Imported"), errors=(422,),
            body={"text/csv": {"schema": {"type": "string", "maxLength": MAX_CSV_BYTES}}},
            description="Header `username,email,group[,password,language,fax_number,display_name]`; a file with "
                        "any bad row imports nothing (422 lists them) unless `skip_invalid=true`.",
            parameters=[*t, {"name": "skip_invalid", "in": "query", "required": False,
                             "schema": {"type": "string", "enum": ["true", "false"]}}])},
        "/tenants/{tenant}/users/{email}": {
            "get": _op("getUser", "users", "An account", (200, "User", "The account"), parameters=tu),
            "patch": _op("updateUser", "users", "Change an account's names, group, language or fax number",
                         (200, "User", "Changed"), body=_json_body("UserUpdate"), parameters=tu),
            "delete": _op("deleteUser", "users", "Delete an account; its sessions end at once",
                          (200, "UserDeleted", "Deleted"), errors=(409,), parameters=tu),
        },
        "/tenants/{tenant}/users/{email}/disable": {"post": _op(
            "disableUser", "users", "Disable an account: its sessions and the printer's verifications end at once",
            (200, "UserState", "Disabled"), parameters=tu)},
        "/tenants/{tenant}/users/{email}/enable": {"post": _op(
            "enableUser", "users", "Enable an account", (200, "UserState", "Enabled"), parameters=tu)},
        "/tenants/{tenant}/devices": {
            "get": _op("listDevices", "devices", "The tenant's devices", (200, "DeviceList", "Devices"),
                       parameters=td),
            "post": _op("createDevice", "devices", "Register a device; its secret is answered this once",
                        (201, "DeviceWithSecret", "Registered"), errors=(409,), body=_json_body("DeviceCreate"),
                        parameters=td, created=True),
        },
        "/tenants/{tenant}/devices/{device}": {
            "get": _op("getDevice", "devices", "A device", (200, "Device", "The device"), parameters=tdd),
            "patch": _op("updateDevice", "devices",
                         "Rename or move a device, or change its mode (a new mode ends its sessions)",
                         (200, "Device", "Changed"), body=_json_body("DeviceUpdate"), parameters=tdd),
        },
        "/tenants/{tenant}/devices/{device}/rotate-secret": {"post": _op(
            "rotateDeviceSecret", "devices", "A new secret, answered this once; the old one stops at once",
            (200, "DeviceWithSecret", "Rotated"), parameters=tdd)},
        "/tenants/{tenant}/devices/{device}/disable": {"post": _op(
            "disableDevice", "devices", "Disable a device, end its sessions and deny its unfinished pairings",
            (200, "Device", "Disabled"),
            parameters=tdd)},
        "/tenants/{tenant}/devices/{device}/enable": {"post": _op(
            "enableDevice", "devices", "Enable a device", (200, "Device", "Enabled"), parameters=tdd)},
        "/tenants/{tenant}/printer-links": {"get": _op(
            "listPrinterLinks", "printer-links", "The tenant's personal printer URLs (never their tokens)",
            (200, "PrinterLinkList", "Links"),
            parameters=[*t, {"name": "email", "in": "query", "required": False, "schema": _STRING,
                             "description": "Only this user's links"}])},
        "/tenants/{tenant}/users/{email}/printer-links": {"post": _op(
            "createPrinterLink", "printer-links", "A personal printer URL for the user, answered this once",
            (201, "PrinterLinkWithUrl", "Created"), body=_json_body("PrinterLinkCreate"), parameters=tu,
            created=True,
            description="The URL prints as the user without a password until it expires (at most the tenant's "
                        "`printer_link_days`), is revoked, or the user is disabled or deleted.")},
        "/tenants/{tenant}/printer-links/{link}": {"delete": _op(
            "revokePrinterLink", "printer-links", "Revoke a personal printer URL at once",
            (200, "PrinterLinkRevoked", "Revoked"),
            parameters=[*t, {"name": "link", "in": "path", "required": True, "schema": {"type": "integer"}}])},
        "/tenants/{tenant}/badge-bindings": {"get": _op(
            "listBadgeBindings", "badge-bindings", "The tenant's badge bindings (never the badges)",
            (200, "BadgeBindingList", "Bindings"),
            description="A user who pairs at a badge-reading device with the phone binds the badge to the account; "
                        "tapping it opens sessions until the binding expires (the tenant's `badge_binding_days`), "
                        "is revoked, or the user is disabled or deleted. Newest first.",
            parameters=[*t, {"name": "email", "in": "query", "required": False, "schema": _STRING,
                             "description": "Only this user's bindings"}])},
        "/tenants/{tenant}/badge-bindings/{binding}": {"delete": _op(
            "revokeBadgeBinding", "badge-bindings", "Revoke a badge binding at once (a lost card)",
            (200, "BadgeBindingRevoked", "Revoked"),
            parameters=[*t, {"name": "binding", "in": "path", "required": True, "schema": {"type": "integer"}}])},
        "/tenants/{tenant}/attempts": {"get": _op(
            "listAttempts", "attempts", "Recent login attempts, newest first", (200, "AttemptPage", "Attempts"),
            parameters=[*t, {"name": "limit", "in": "query", "required": False,
                             "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
                        {"name": "before", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1},
                         "description": "Only attempts with an id below this (the previous page's next_before)"}])},
    }
    user = _obj({"tenant": _STRING, "email": _STRING, "username": _STRING, "display_name": _STRING,
                 "group": _STRING, "enabled": {"type": "boolean"}, "has_password": {"type": "boolean"},
                 "language": _NULLABLE_STRING, "fax_number": _NULLABLE_STRING, "created_at": _TIME})
    location: Schema = {"type": "string", "maxLength": MAX_LOCATION_CHARS,
                        "description": "Where the device stands (\"Reception, ground floor\"): shown on the phone "
                                       "before a user approves a pairing at it; \"\" when not set"}
    device = _obj({"device_id": _STRING, "tenant": _STRING, "name": _STRING, "mode": {"enum": _MODES},
                   "enabled": {"type": "boolean"}, "shared_user": _NULLABLE_STRING,
                   "allowed_networks": {"type": "array", "items": _STRING}, "created_at": _TIME,
                   "last_seen_at": {"type": ["string", "null"], "format": "date-time"},
                   "last_seen_addr": _NULLABLE_STRING, "location": location})
    summary = {"id": _STRING, "name": _STRING, "domains": {"type": "array", "items": _STRING}, "protocol": _STRING,
               "origin": {"type": "string", "description": "file:PATH, api:TOKEN-NAME or console:USER"},
               "updated_at": _TIME}
    line_errors = {"type": "array", "items": _obj({"line": {"type": "integer"}, "reason": _STRING})}
    text_field: Schema = {"type": "string", "maxLength": 256}
    schemas: dict[str, Schema] = {
        "Error": _obj({"error": {"type": "string", "enum": all_codes()}, "message": _STRING, "detail": _STRING,
                       "path": {"type": "string", "description": "JSON pointer of the member to fix"},
                       "errors": line_errors}, required=["error", "message"]),
        "Document": {"type": "object"},
        "TenantDocument": {
            "type": "object", "required": ["id", "name", "domains", "protocol", "idp_whitelist"],
            "description": "The keys of a tenant YAML file (docs/configuration.md), as JSON.",
            "properties": {"id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}, "name": _STRING,
                           "domains": {"type": "array", "items": _STRING, "minItems": 1},
                           "protocol": {"enum": ["wstrust", "saml2"]},
                           "idp_whitelist": {"type": "array", "items": _STRING, "minItems": 1},
                           "wstrust": {"type": "object"}, "saml2": {"type": "object"}}},
        "TenantSummary": _obj(summary),
        "Tenant": _obj({**summary, "document": {"type": "object"}, "warnings": {"type": "array", "items": _STRING}}),
        "TenantList": _list_of("TenantSummary", "tenants"),
        "TenantDeleted": _obj({"deleted": _STRING, "warnings": {"type": "array", "items": _STRING}}),
        "User": user,
        "UserList": _list_of("User", "users"),
        "UserCreate": _obj({"email": {"type": "string", "format": "email"}, "username": text_field,
                            "display_name": text_field, "group": text_field, "language": text_field,
                            "fax_number": text_field}, required=["email"]),
        "UserUpdate": _obj({"username": text_field, "display_name": text_field, "group": text_field,
                            "language": text_field, "fax_number": text_field}, required=[]),
        "UserState": _obj({"user": _ref("User"), "sessions_ended": {"type": "integer", "minimum": 0}}),
        "UserDeleted": _obj({"deleted": _STRING, "sessions_ended": {"type": "integer", "minimum": 0}}),
        "ImportResult": _obj({"imported": {"type": "array", "items": _ref("User")}, "errors": line_errors}),
        "Device": device,
        "DeviceList": _list_of("Device", "devices"),
        "DeviceCreate": _obj({"name": text_field, "mode": {"enum": _MODES}, "shared_user": _STRING,
                              "allowed_networks": {"type": "array", "items": _STRING}, "device_id": _STRING,
                              "location": location}, required=["name", "mode"]),
        "DeviceUpdate": _obj({"name": text_field, "mode": {"enum": _MODES}, "shared_user": _STRING,
                              "location": location}, required=[]),
        "DeviceWithSecret": _obj({"device": _ref("Device"), "secret": {"type": "string", "minLength": 8}}),
        "PrinterLink": _obj({"id": {"type": "integer"}, "tenant": _STRING, "email": _STRING, "label": _STRING,
                             "created_by": _STRING, "created_at": _TIME, "expires_at": _TIME,
                             "last_used_at": {"type": ["string", "null"], "format": "date-time"}}),
        "PrinterLinkList": _list_of("PrinterLink", "printer_links"),
        "PrinterLinkCreate": _obj({"label": {"type": "string", "maxLength": 64},
                                   "days": {"type": "integer", "minimum": 1}}, required=[]),
        "PrinterLinkWithUrl": _obj({"link": _ref("PrinterLink"), "url": {"type": "string", "format": "uri"}}),
        "PrinterLinkRevoked": _obj({"revoked": _ref("PrinterLink")}),
        "BadgeBinding": _obj({"id": {"type": "integer"}, "tenant": _STRING, "email": _STRING,
                              "device_id": {"type": ["string", "null"],
                                            "description": "The device the pairing that made it was at"},
                              "created_at": _TIME, "expires_at": _TIME,
                              "last_used_at": {"type": ["string", "null"], "format": "date-time"}}),
        "BadgeBindingList": _list_of("BadgeBinding", "badge_bindings"),
        "BadgeBindingRevoked": _obj({"revoked": _ref("BadgeBinding")}),
        "Attempt": _obj({"id": {"type": "integer"}, "time": _TIME, "event": {"const": "login"},
                         "tenant": _NULLABLE_STRING, "device": _NULLABLE_STRING, "mode": _NULLABLE_STRING,
                         "email": _NULLABLE_STRING, "source": _NULLABLE_STRING, "result": _STRING,
                         "idp_latency_ms": {"type": ["integer", "null"]}, "request_id": _NULLABLE_STRING,
                         "distinct_users": {"type": "integer"}, "actor": _STRING, "reason": _STRING},
                        required=["id", "time", "event", "tenant", "result"]),
        "AttemptPage": _obj({"attempts": {"type": "array", "items": _ref("Attempt")},
                             "next_before": {"type": ["integer", "null"]}}),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "loginbridge admin API", "version": "1",
                 "description": "Tenants, users, devices and login attempts, for administrators. Bearer admin "
                                "tokens from `loginbridge admin token create`. JSON bodies of at most "
                                f"{MAX_JSON_BYTES} bytes. Errors: docs/errors.md."},
        "servers": [{"url": PREFIX}],
        "tags": [{"name": n} for n in ("tenants", "users", "devices", "printer-links", "badge-bindings", "attempts",
                                      "service")],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "adminBearer": {"type": "http", "scheme": "bearer",
                            "description": "An admin token (`loginbridge admin token create --name NAME`)"}}},
    }


@functools.cache
def document_bytes() -> bytes:
    return json.dumps(build_document(), indent=2).encode("utf-8")


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=document_bytes(), content_type=JSON)


def routes() -> list[web.RouteDef]:
    return [web.get("/openapi.json", openapi)]
