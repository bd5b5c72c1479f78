"""The error catalogue: every code a client can get, from bridge/errors.py, plus what an admin should do.

``docs/errors.md`` is generated from here (``python -m bridge.errorcatalog >
docs/errors.md``) and a test fails when it drifts from the exception tree, or
when an error class has no administrator's note below.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from bridge import errors

# What the administrator should know or do; the panel message is for the user.
ADMIN_DETAIL: dict[str, str] = {
    "internal_error": "A bug or an unexpected failure; the log has the traceback under the request id.",
    "config_error": "Start-up only, never sent to a device: the message names the file, key and line to fix.",
    "bad_request": "The client sent malformed JSON or a missing field; the `detail` field says which.",
    "email_required": "The user typed a user name; SSO sign-in at devices needs the email address.",
    "invalid_request": "A field held text no system can carry (lone UTF-16 surrogates, NUL or other control "
                       "characters): a broken client or a probe. The attempt is audited with those characters "
                       "escaped as `\\uXXXX`.",
    "request_timeout": "The client sent its headers but not its JSON body within `listen.header_timeout_seconds`; "
                       "a slow or stalled client (the connection is closed).",
    "payload_too_large": "The body exceeds the limit (16 KiB of JSON); a misbehaving client.",
    "unsupported_media_type": "A JSON endpoint got a body without `Content-Type: application/json` "
                              "(a `charset` other than utf-8 is refused too): fix the client's request.",
    "device_unauthorized": "Unknown device id, wrong or rotated secret, or a disabled device. "
                           "Check `loginbridge devices list`; re-enter the secret after `rotate-secret`.",
    "wrong_mode": "The device called the endpoint of a mode it is not enrolled in; fix the device's "
                  "connector setting or re-enrol it with the right `--mode`.",
    "source_not_allowed": "The device called from outside the tenant's `device_networks` or its own "
                          "`--allow-network` list; the log names the address and the networks.",
    "session_invalid": "Unknown, expired, revoked (logout, user or device disabled) or another tenant's session.",
    "login_refused": "Generic refusal (base of the codes below).",
    "unknown_domain": "No tenant lists the email's domain under `domains`.",
    "user_not_provisioned": "No such account in the tenant (SSO never creates users): import or add the user. "
                            "Also answered when a device of one tenant names a user of another.",
    "user_disabled": "The account is disabled in the tenant (`loginbridge users list`).",
    "invalid_credentials": "The IdP refused the password or the email (AD FS ID3242; SAML AuthnFailed, "
                           "UnknownPrincipal or NoPassive; SimpleSAMLphp WRONGUSERPASS; HTTP 401), or the "
                           "stale-password guard refused a password the IdP already rejected (no IdP call; audit "
                           "shows it).",
    "mfa_required": "The IdP checked the password and asked for a second factor (AD FS MSIS7102 under an "
                    "additional-authentication rule, Entra AADSTS50076/50079, SAML NoAuthnContext). Not counted as "
                    "a wrong password. The user signs in with the phone instead (`POST /v1/mfp/pairing`).",
    "badge_unknown": "The badge has no live binding in the device's tenant: never paired, expired "
                     "(`badge_binding_days`), revoked, or the user was disabled or deleted. Pair it again by phone.",
    "pairing_error": "A device's poll for a phone pairing (base of the codes below, RFC 8628 section 3.5).",
    "authorization_pending": "The user has not finished on the phone yet: the device polls again after `interval`.",
    "slow_down": "The device polled faster than `interval`; it must wait 5 seconds longer from now on.",
    "expired_token": "The pairing's code expired (5 minutes) before the user finished: start a new pairing.",
    "invalid_grant": "No such device code, a code of another device, or one already used: start a new pairing.",
    "signin_failed": "A browser sign-in page could not finish (a missing or expired sign-in, a refused assertion: "
                     "the log has the reason under the request id).",
    "user_code_unknown": "The code typed on the phone matches no live pairing (a typo, or it expired).",
    "user_code_guesses": "Too many wrong codes from this address (or in total): the phone page waits. "
                         "A burst of these is someone guessing codes.",
    "return_to_refused": "`/v1/web/login` was asked to return to an address not listed in `web_signin.return_to`: "
                         "the bridge never redirects elsewhere (no open redirect). Add the platform's origin there.",
    "access_denied": "The IdP refused the account: issuance rules (AD FS MSIS7068), SAML RequestDenied, HTTP 403, "
                     "or a locked, disabled or expired account. Counts toward the throttles like a wrong password, "
                     "and the stale-password guard answers the same pair locally for `stale_password_ttl_seconds`. "
                     "To a device polling a phone pairing (HTTP 400): the user answered No on the phone, or the IdP "
                     "refused the browser sign-in.",
    "idp_refused": "The IdP refused the sign-in with an answer the bridge cannot classify (e.g. AD FS MSIS3127, a "
                   "bare SAML Responder status, an unknown SOAP fault); the log line of the attempt has the IdP's "
                   "codes and text. It counts toward the throttles (fail closed) but is not remembered as a stale "
                   "password. If it keeps coming, the IdP administrator can say what it means.",
    "temporarily_locked": "Per-user, per-device or per-source throttle (tenant `throttle:`), kept below the "
                          "IdP's lockout threshold; answered with Retry-After and no IdP call.",
    "device_throttled": "Spray detection: one device or source failed for many distinct users within "
                        "`spray_window_seconds`; a `spray_detected` audit event names it.",
    "password_login_unsupported": "The tenant's protocol or IdP cannot check passwords (e.g. SAML without ECP).",
    "idp_error": "Generic IdP failure (base of the codes below).",
    "idp_not_whitelisted": "The IdP resolved to an address outside `idp_whitelist`; the log names the CIDR to add.",
    "idp_unreachable": "Connection refused, TLS failure, or an HTTP error page from the IdP (5xx without a SOAP "
                       "answer; the detail names the HTTP status, content type and size).",
    "idp_timeout": "The IdP did not answer within `idp_client.timeout_seconds`.",
    "idp_rejected_request": "The IdP refused the request itself: a configuration problem (ECP not enabled for the "
                            "SP or at the URL, unsupported binding or NameID policy, WS-Security header or clock "
                            "refused); the detail has the IdP's answer.",
    "sp_not_registered": "The IdP does not know this bridge. SAML: register the SP metadata served at "
                         "`GET /saml/{tenant}/metadata` at the IdP (Keycloak: a SAML client with ECP allowed). "
                         "WS-Trust: add a relying party trust at AD FS whose identifier is the tenant's `applies_to`.",
    "idp_protocol_error": "The IdP's answer could not be read (malformed, DOCTYPE, too large).",
    "assertion_invalid": "The signed token failed validation (signature, issuer, audience, time, subject); "
                         "the log says which check.",
    "store_error": ("The database failed (SQLite: disk full, permissions; PostgreSQL: a refused statement); "
                    "see the log."),
    "service_unavailable": ("The database cannot be reached or does not answer: logins are refused with 503 until "
                            "it is back (fail closed, no IdP call). Check the database and the network to it."),
    "admin_unauthorized": "Admin API: no `Authorization: Bearer` admin token, or an unknown or revoked one "
                          "(`loginbridge admin token list`; create one with `admin token create`).",
    "admin_forbidden": "Admin API: a tenant-scoped admin token tried what only a global one may do (create, "
                       "change or delete a tenant's settings).",
    "resource_not_found": "Admin API: no such tenant, user or device, or one of a tenant the token does not see.",
    "resource_conflict": "Admin API: the change clashes with existing data: a tenant id or domain already taken "
                         "(the detail names the other tenant), an email or device id already used, a tenant that "
                         "still has users or devices, a user a shared-account device signs in as.",
    "invalid_tenant": "Admin API: the tenant document failed the tenant file's validation; `path` is the JSON "
                      "pointer of the member to fix (e.g. `/wstrust/adfs_url`), `detail` says what is wrong.",
    "invalid_import": "Admin API: a CSV import had bad rows and imported nothing; `errors` lists each line and "
                      "why (or send `?skip_invalid=true` to import the good rows).",
}

MISSING_DETAIL = "(no administrator's note yet)"

# Answers the middleware gives for aiohttp's own HTTP errors (no BridgeError class).
FRAMEWORK_CODES: tuple[tuple[str, int, str, str], ...] = (
    ("not_found", 404, "Not Found", "No such path."),
    ("method_not_allowed", 405, "Method Not Allowed", "The path exists with other methods."),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class CatalogueEntry:
    code: str
    http_status: int
    panel_message: str
    admin_detail: str
    exception: str


def error_classes() -> list[type[errors.BridgeError]]:
    """Every class of the tree, depth first in definition order."""
    out: list[type[errors.BridgeError]] = []

    def walk(cls: type[errors.BridgeError]) -> None:
        out.append(cls)
        for sub in cls.__subclasses__():
            if sub.__module__ == errors.__name__:
                walk(sub)

    walk(errors.BridgeError)
    return out


def catalogue() -> list[CatalogueEntry]:
    """One entry per code (classes sharing a code, like XmlRejected, appear once)."""
    entries: dict[str, CatalogueEntry] = {}
    for cls in error_classes():
        if cls.code in entries:
            continue
        # A new class without a note still gets listed; tests/connectors/test_openapi.py insists on the note.
        detail = ADMIN_DETAIL.get(cls.code, MISSING_DETAIL)
        entries[cls.code] = CatalogueEntry(code=cls.code, http_status=cls.http_status,
                                           panel_message=cls.panel_message, admin_detail=detail,
                                           exception=cls.__name__)
    for code, status, message, detail in FRAMEWORK_CODES:
        entries[code] = CatalogueEntry(code=code, http_status=status, panel_message=message, admin_detail=detail,
                                       exception="(aiohttp)")
    return list(entries.values())


def all_codes() -> list[str]:
    return [entry.code for entry in catalogue()]


def render_markdown() -> str:
    lines = [
        "# Error catalogue",
        "",
        "Every error answer is JSON `{\"error\": CODE, \"message\": PANEL_MESSAGE}` with the HTTP status below",
        "(`detail` is added only for request errors). `429` answers carry `Retry-After`.",
        "Generated from `bridge/errors.py` by `python -m bridge.errorcatalog > docs/errors.md`;",
        "a test fails when this file and the code disagree.",
        "",
        "| code | HTTP | panel message | admin detail | exception |",
        "|---|---|---|---|---|",
    ]
    for e in catalogue():
        cells = [f"`{e.code}`", str(e.http_status), e.panel_message, e.admin_detail, f"`{e.exception}`"]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    sys.stdout.write(render_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
