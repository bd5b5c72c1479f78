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


_HTML = {"text/html": {"schema": _STRING}}
_FORM = "application/x-www-form-urlencoded"


def _page_operation(op_id: str, summary: str, description: str, *, answers: dict[str, str],
                    form: dict[str, str] | None = None, parameters: list[Schema] | None = None) -> Schema:
    """A page for people's browsers (phone pairing, the IdP's return): HTML answers, form bodies, no JSON."""
    responses: dict[str, Schema] = {}
    for status, text in answers.items():
        if status in ("302", "303"):
            responses[status] = {"description": text, "headers": {"Location": {"required": True, "schema": _STRING}}}
        else:
            responses[status] = {"description": text, "content": _HTML}
            if int(status) in _HEADERS:
                responses[status]["headers"] = _HEADERS[int(status)]
    op: Schema = {"operationId": op_id, "tags": ["browser"], "summary": summary, "description": description,
                  "security": [], "responses": {**responses, **_errors(internal=False)}}
    if parameters:
        op["parameters"] = parameters
    if form is not None:
        op["requestBody"] = {"required": True, "content": {_FORM: {"schema": {
            "type": "object", "properties": {name: {"type": "string", "description": text}
                                             for name, text in form.items()}}}}}
    return op


def _browser_paths() -> dict[str, Schema]:
    """The pages of phone pairing and browser sign-in (docs/pairing.md)."""
    tenant = [{"name": "tenant", "in": "path", "required": True, "schema": _STRING}]
    refused = "A page saying why (expired, another browser, refused by the IdP, an answer that failed a check)"
    return {
        "/pair": {
            "get": _page_operation(
                "pairPage", "The phone page: enter the device's code, or confirm it (`?code=`)",
                "With `?code=` (the QR code's link): which device, where and for which company, and Yes/No. "
                "Wrong codes are throttled per address and in total (429 with Retry-After).",
                answers={"200": "The code form or the confirmation", "400": "The code form, saying the code is "
                         "not valid", "429": "Too many wrong codes"},
                parameters=[{"name": "code", "in": "query", "required": False, "schema": _STRING}]),
            "post": _page_operation(
                "pairAnswer", "The phone's answer",
                "`answer=yes`: 303 to the tenant's IdP (a sign-in cookie binds the browser); `answer=no`: the "
                "pairing is refused (the device gets access_denied); without answer: the confirmation page.",
                answers={"200": "The confirmation, or 'Nothing was signed in'", "303": "To the IdP",
                         "400": "The code is not valid", "403": "The form expired (CSRF)",
                         "429": "Too many wrong codes"},
                form={"csrf": "the form's token", "code": "the user code", "answer": "yes or no"}),
        },
        "/pair/static/pair.css": {"get": {
            "operationId": "pairStyle", "tags": ["browser"], "summary": "The pages' style sheet", "security": [],
            "responses": {"200": {"description": "CSS", "content": {"text/css": {"schema": _STRING}}},
                          **_errors(internal=False)}}},
        "/saml/{tenant}/acs": {"post": _page_operation(
            "samlAcs", "SAML 2.0 assertion consumer (HTTP-POST binding)",
            "The IdP's answer to a browser sign-in, posted by the user's browser. Validated like every assertion "
            "(pinned certificates, Destination, InResponseTo, Recipient, audience, replay).",
            answers={"303": "To /signin/done", "400": refused, "403": refused, "502": refused},
            form={"SAMLResponse": "base64 of the samlp:Response", "RelayState": "the sign-in's state"},
            parameters=tenant)},
        "/wsfed/{tenant}": {"post": _page_operation(
            "wsfedReply", "WS-Federation passive reply (AD FS)",
            "The `wsignin1.0` answer posted by the user's browser: `wresult` holds the signed token.",
            answers={"303": "To /signin/done", "400": refused, "403": refused, "502": refused},
            form={"wa": "wsignin1.0", "wresult": "the RequestSecurityTokenResponse", "wctx": "the sign-in's state"},
            parameters=tenant)},
        "/oidc/{tenant}/callback": {"get": _page_operation(
            "oidcCallback", "OpenID Connect redirection endpoint (authorization code with PKCE)",
            "The authorization response, brought by the user's browser: the code is exchanged at the token "
            "endpoint (with the PKCE verifier and the client's authentication) and the ID token validated "
            "(signature against the JWKS, iss, aud, azp, exp, iat, nonce, algorithm allow-list, replay). "
            "An `error` answer (access_denied, login_required, interaction_required, consent_required) "
            "refuses the pairing.",
            answers={"303": "To /signin/done", "400": refused, "403": refused, "502": refused},
            parameters=[*tenant, *({"name": name, "in": "query", "required": False, "schema": _STRING}
                                   for name in ("code", "state", "iss", "error", "error_description"))])},
        "/signin/done": {"get": _page_operation(
            "signinDone", "The end of a browser sign-in, in the browser that started it",
            "A pairing: approved, 'You can return to the device'. A web sign-in: 303 to return_to with ?code=.",
            answers={"200": "You are signed in", "303": "To return_to with the one-time code", "400": refused,
                     "403": refused},
            parameters=[{"name": "s", "in": "query", "required": True, "schema": _STRING}])},
    }


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
        "/v1/mfp/pairing": {"post": {
            "operationId": "startPairing", "tags": ["mfp"], "summary": "Start phone pairing (MFA at the device)",
            "description": "Any enrolled device. The panel shows `user_code` (and the QR code of "
                           "`verification_uri_complete`); the user approves on the phone and signs in at the IdP, "
                           "then `/v1/mfp/pairing/poll` gives the session. With `badge`, the completed pairing binds "
                           "the badge to the user for `/v1/mfp/badge-login`. RFC 8628 semantics.",
            "security": device,
            "requestBody": {"required": False, "description": "Optional; an empty body is a pairing without badge.",
                            "content": {JSON: {"schema": _ref("PairingRequest")}}},
            "responses": {"200": _json_response("The codes to show.", _ref("PairingStart")),
                          **_errors(400, 401, 403, 408, 413, 415)}}},
        "/v1/mfp/pairing/poll": {"post": {
            **_login_operation(
                "Poll a phone pairing",
                "Every `interval` seconds. Until the user finishes: 400 `authorization_pending`; polled too fast: "
                "400 `slow_down` with the new `interval`; then the session (once), or 400 `expired_token`, "
                "`access_denied` (refused on the phone or by the IdP) or `invalid_grant` (unknown, another "
                "device's or already used code).",
                security=device, body="PairingPollRequest", errors=(400, 401, 403, 408, 413, 415, 429),
                op_id="pollPairing", tag="mfp")}},
        "/v1/mfp/badge-login": {"post": _login_operation(
            "Badge login",
            "A badge a phone pairing bound to a user opens a session for that user, without the IdP, until the "
            "binding expires or is revoked (or the user is disabled). Unknown badges are counted per device.",
            security=device, body="BadgeLoginRequest", errors=(400, 401, 403, 408, 413, 415, 429),
            op_id="badgeLogin", tag="mfp")},
        "/v1/web/login": {"get": {
            "operationId": "webLogin", "tags": ["web"], "summary": "Browser sign-in for the platform's web apps",
            "description": "Sends the browser to the tenant's IdP (SAML Web SSO or WS-Federation); afterwards to "
                           "`return_to` with `?code=`, a one-time code for `POST /v1/web/session` (60 s). "
                           "`return_to` must be on `web_signin.return_to`; anything else is a 400 page.",
            "security": [],
            "parameters": [
                {"name": "email", "in": "query", "required": True, "schema": _STRING},
                {"name": "return_to", "in": "query", "required": True, "schema": {"type": "string",
                                                                                  "format": "uri"}}],
            "responses": {
                "303": {"description": "To the IdP", "headers": {"Location": {"required": True, "schema": _STRING}}},
                "400": {"description": "A page saying why (return_to refused, not an email address)",
                        "content": {"text/html": {"schema": _STRING}}},
                "403": {"description": "A page: unknown domain, account not provisioned or disabled",
                        "content": {"text/html": {"schema": _STRING}}},
                **_errors(internal=False),
            }}},
        "/v1/web/print-login": {"get": {
            "operationId": "printLogin", "tags": ["web"],
            "summary": "Browser sign-in for a personal printer URL (accounts no password can sign in)",
            "description": "From `/print/setup`: sends the browser to the tenant's IdP (SAML Web SSO, WS-Federation "
                           "or OpenID Connect, where MFA applies); afterwards to `/print/setup/finish?code=`, "
                           "which makes the user's personal printer URL.",
            "security": [],
            "parameters": [{"name": "email", "in": "query", "required": True, "schema": _STRING}],
            "responses": {
                "303": {"description": "To the IdP", "headers": {"Location": {"required": True, "schema": _STRING}}},
                "400": {"description": "A page saying why (not an email address)",
                        "content": {"text/html": {"schema": _STRING}}},
                "403": {"description": "A page: unknown domain, account not provisioned or disabled",
                        "content": {"text/html": {"schema": _STRING}}},
                **_errors(internal=False),
            }}},
        "/v1/web/session": {"post": _login_operation(
            "Exchange a web sign-in code",
            "The code `/v1/web/login` appended to `return_to`: once, within 60 seconds.",
            security=[], body="WebSessionRequest", errors=(400, 403, 408, 413, 415), op_id="webSession",
            tag="web")},
        **_browser_paths(),
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
                       "detail": _STRING,
                       "interval": {"type": "integer", "minimum": 1,
                                    "description": "slow_down: the polling interval from now on (seconds)"}},
                      required=["error", "message"]),
        "PairingRequest": {"type": "object", "description": _TEXT_RULE, "properties": {
            "badge": {"type": "string", "minLength": 1, "maxLength": 256,
                      "description": "The badge (card) id read at the device, to bind on success"}}},
        "PairingStart": _obj({
            "device_code": {"type": "string", "minLength": 43},
            "user_code": {"type": "string", "pattern": "^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$"},
            "verification_uri": {"type": "string", "format": "uri"},
            "verification_uri_complete": {"type": "string", "format": "uri"},
            "qr_svg": {"type": "string", "description": "An SVG document: the QR code of verification_uri_complete"},
            "expires_in": {"type": "integer", "minimum": 1, "maximum": 300},
            "interval": {"type": "integer", "minimum": 1}}),
        "PairingPollRequest": {"type": "object", "required": ["device_code"], "properties": {
            "device_code": {"type": "string", "minLength": 1, "maxLength": 64}}},
        "BadgeLoginRequest": {"type": "object", "required": ["badge"], "description": _TEXT_RULE, "properties": {
            "badge": {"type": "string", "minLength": 1, "maxLength": 256}}},
        "WebSessionRequest": {"type": "object", "required": ["code"], "properties": {
            "code": {"type": "string", "minLength": 1, "maxLength": 64}}},
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
        "tags": [{"name": name} for name in ("mfp", "apps", "web", "browser", "session", "service")],
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
