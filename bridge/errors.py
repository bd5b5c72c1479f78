"""The one exception tree of loginbridge.

Every error the service can answer with is a subclass of :class:`BridgeError`.
Each class carries a stable ``code`` (the JSON ``error`` field devices switch
on), the HTTP status, the IPP status a printer answers with, and a short
``panel_message`` that is safe to show on an MFP panel.  The optional
``detail`` is for administrators: it is logged, and only sent to the client
when the class says it is safe (``expose_detail``).  The optional ``cause`` is
the specific reason the audit trail records with the attempt: short plain text
the bridge wrote (which throttle, which address, which status), never a secret
nor text an IdP sent.

Third-party exceptions (aiohttp, lxml, signxml, yaml, sqlite3 ...) are turned
into these at one boundary each, with ``raise ... from exc``.

    BridgeError                         500 internal_error
    ├── ConfigError                     (start-up only; names file, key, line)
    │   └── ConfigErrors                (every mistake of one load; reads as the first, ``errors`` lists all)
    ├── RequestError                    400 bad_request
    │   ├── EmailRequired               400 email_required
    │   ├── InvalidText                 400 invalid_request
    │   ├── RequestTimeout              408 request_timeout
    │   ├── PayloadTooLarge             413 payload_too_large
    │   └── UnsupportedMediaType        415 unsupported_media_type
    ├── DeviceAuthError                 401 device_unauthorized
    │   ├── WrongMode                   403 wrong_mode
    │   └── SourceNotAllowed            403 source_not_allowed
    ├── SessionError                    401 session_invalid
    ├── LoginRefused                    403 login_refused
    │   ├── UnknownDomain               403 unknown_domain
    │   ├── UserNotProvisioned          403 user_not_provisioned
    │   ├── UserDisabled                403 user_disabled
    │   ├── InvalidCredentials          401 invalid_credentials
    │   ├── AccessDenied                403 access_denied
    │   ├── IdpRefused                  403 idp_refused
    │   ├── TemporarilyLocked           429 temporarily_locked
    │   │   └── DeviceThrottled         429 device_throttled
    │   ├── PasswordLoginUnsupported    403 password_login_unsupported
    │   ├── MfaRequired                 403 mfa_required  (the IdP wants MFA: sign in with the phone instead)
    │   └── BadgeUnknown                401 badge_unknown  (no live badge binding)
    ├── PairingError                    400 pairing_error  (RFC 8628 section 3.5 answers to a device's poll)
    │   ├── AuthorizationPending        400 authorization_pending
    │   ├── SlowDown                    400 slow_down
    │   ├── ExpiredToken                400 expired_token
    │   ├── PairingDenied               400 access_denied  (RFC 8628 names it so)
    │   └── PairingCodeUnknown          400 invalid_grant  (no such device code, another device's, or used)
    ├── BrowserSigninError              400 signin_failed  (the phone and web sign-in pages; shown as a page)
    │   ├── UserCodeUnknown             400 user_code_unknown
    │   ├── UserCodeGuesses             429 user_code_guesses
    │   └── ReturnToRefused             400 return_to_refused  (not on web_signin.return_to: no open redirect)
    ├── IdpError                        502 idp_error
    │   ├── IdpNotWhitelisted           502 idp_not_whitelisted
    │   ├── IdpUnreachable              502 idp_unreachable
    │   ├── IdpTimeout                  504 idp_timeout
    │   ├── IdpRejectedRequest          502 idp_rejected_request
    │   │   └── SpNotRegistered         502 sp_not_registered
    │   └── IdpProtocolError            502 idp_protocol_error
    │       ├── XmlRejected             502 idp_protocol_error
    │       └── AssertionRejected       502 assertion_invalid
    ├── StoreError                      500 store_error
    │   ├── StoreConflict               500 store_error  (a unique key already taken)
    │   └── StoreUnavailable            503 service_unavailable
    └── AdminApiError                   400 bad_request  (the admin API, /admin/v1; detail always sent)
        ├── AdminUnauthorized           401 admin_unauthorized
        ├── AdminForbidden              403 admin_forbidden
        ├── ResourceNotFound            404 resource_not_found
        ├── ResourceConflict            409 resource_conflict
        ├── InvalidTenant               422 invalid_tenant  (names the JSON path)
        └── InvalidImport               422 invalid_import  (lists the CSV lines)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

# IPP status codes (RFC 8011 section 4.1.6) used by the mapping below.
IPP_CLIENT_BAD_REQUEST = 0x0400
IPP_CLIENT_FORBIDDEN = 0x0401
IPP_CLIENT_NOT_AUTHENTICATED = 0x0402
IPP_CLIENT_NOT_AUTHORIZED = 0x0403
IPP_CLIENT_TOO_LARGE = 0x0408  # client-error-request-entity-too-large (RFC 8011 4.1.6.2)
IPP_SERVER_INTERNAL = 0x0500
IPP_SERVER_UNAVAILABLE = 0x0502
IPP_SERVER_BUSY = 0x0507


class BridgeError(Exception):
    """Root of every error loginbridge raises on purpose."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    ipp_status: ClassVar[int] = IPP_SERVER_INTERNAL
    panel_message: ClassVar[str] = "Sign-in is not available right now. Try again later."
    expose_detail: ClassVar[bool] = False

    def __init__(self, detail: str = "", *, message: str | None = None, cause: str = "") -> None:
        super().__init__(detail or self.panel_message)
        self.detail = detail
        self._message = message
        self.cause = cause

    @property
    def message(self) -> str:
        """Text safe to show to the device user."""
        return self._message or self.panel_message

    def to_json(self) -> dict[str, str]:
        body = {"error": self.code, "message": self.message}
        if self.expose_detail and self.detail:
            body["detail"] = self.detail
        return body


class ConfigError(BridgeError):
    """Invalid configuration; raised at start-up, never while serving."""

    code = "config_error"

    def __init__(self, detail: str, *, file: str = "", key: str = "", line: int | None = None) -> None:
        where = file
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        if key:
            where = f"{where}: {key}" if where else key
        super().__init__(f"{where}: {detail}" if where else detail)
        self.file = file
        self.key = key
        self.line = line


class ConfigErrors(ConfigError):
    """Every mistake one load of the configuration found (``loginbridge config check`` lists them all).

    It reads as the first of them (message, ``file``, ``key``, ``line``), so a caller that reports one
    error reports the one it always did; ``errors`` holds them all, in the order they were found.
    """

    errors: tuple[ConfigError, ...]

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        flat = tuple(inner for error in errors
                     for inner in (error.errors if isinstance(error, ConfigErrors) else (error,)))
        if not flat:
            raise ValueError("ConfigErrors needs at least one error")
        first = flat[0]
        super().__init__(first.detail)  # already "file:line: key: detail"
        self.file = first.file
        self.key = first.key
        self.line = first.line
        self.errors = flat


class RequestError(BridgeError):
    code = "bad_request"
    http_status = 400
    ipp_status = IPP_CLIENT_BAD_REQUEST
    panel_message = "The request was not understood."
    expose_detail = True


class EmailRequired(RequestError):
    code = "email_required"
    panel_message = "Sign in with your email address (for example name@company.com), not a user name."
    expose_detail = False


class InvalidText(RequestError):
    """A field holds code points no text can carry: lone surrogates, NUL, other control characters.

    They cannot be encoded as UTF-8 or placed in XML (XML 1.0 section 2.2, ``Char``), so
    no IdP could ever check them; the field is named, the offending text is not.
    """

    code = "invalid_request"
    panel_message = "The sign-in details contain characters that cannot be used."


class RequestTimeout(RequestError):
    """The client did not send its (small) request body within the listener's header timeout."""

    code = "request_timeout"
    http_status = 408
    panel_message = "The request took too long to arrive. Try again."


class PayloadTooLarge(RequestError):
    code = "payload_too_large"
    http_status = 413
    ipp_status = IPP_CLIENT_TOO_LARGE
    panel_message = "The request is too large."


class UnsupportedMediaType(RequestError):
    """A JSON endpoint was sent a body that is not ``application/json`` (UTF-8)."""

    code = "unsupported_media_type"
    http_status = 415
    panel_message = "The request was sent in a format the sign-in service does not accept."


class DeviceAuthError(BridgeError):
    code = "device_unauthorized"
    http_status = 401
    ipp_status = IPP_CLIENT_NOT_AUTHENTICATED
    panel_message = "This device is not registered with the sign-in service. Ask your administrator."


class WrongMode(DeviceAuthError):
    code = "wrong_mode"
    http_status = 403
    ipp_status = IPP_CLIENT_FORBIDDEN
    panel_message = "This device is not set up for this sign-in mode."


class SourceNotAllowed(DeviceAuthError):
    code = "source_not_allowed"
    http_status = 403
    ipp_status = IPP_CLIENT_FORBIDDEN
    panel_message = "This device's network is not allowed to sign in."


class SessionError(BridgeError):
    code = "session_invalid"
    http_status = 401
    ipp_status = IPP_CLIENT_NOT_AUTHENTICATED
    panel_message = "Your session has ended. Sign in again."


class LoginRefused(BridgeError):
    code = "login_refused"
    http_status = 403
    ipp_status = IPP_CLIENT_NOT_AUTHORIZED
    panel_message = "Sign-in was refused."


class UnknownDomain(LoginRefused):
    code = "unknown_domain"
    panel_message = "This email domain is not set up for sign-in. Check the address or ask your administrator."


class UserNotProvisioned(LoginRefused):
    code = "user_not_provisioned"
    panel_message = "No account exists for this email address. Ask your administrator to create it."


class UserDisabled(LoginRefused):
    code = "user_disabled"
    panel_message = "This account is disabled. Ask your administrator."


class InvalidCredentials(LoginRefused):
    code = "invalid_credentials"
    http_status = 401
    ipp_status = IPP_CLIENT_NOT_AUTHENTICATED
    panel_message = "Wrong email address or password."


class AccessDenied(LoginRefused):
    """The IdP refused the account itself: disabled, locked, expired or denied by its rules."""

    code = "access_denied"
    panel_message = "Your company's sign-in service refused access for this account."


class IdpRefused(LoginRefused):
    """The IdP refused this sign-in with an answer the bridge cannot classify.

    It counts toward the lockout throttles like a wrong password (fail closed),
    but the panel does not claim the password was wrong.
    """

    code = "idp_refused"
    panel_message = ("Your company's sign-in service refused this sign-in. Check your details, or contact "
                     "your administrator if it keeps happening.")


class TemporarilyLocked(LoginRefused):
    code = "temporarily_locked"
    http_status = 429
    ipp_status = IPP_SERVER_BUSY
    panel_message = "Too many sign-in attempts. Wait a few minutes and try again."

    def __init__(self, detail: str = "", *, retry_after: int = 60, throttle: str = "", cause: str = "") -> None:
        super().__init__(detail, cause=cause)
        self.retry_after = retry_after
        self.throttle = throttle  # which one refused: user, device, source or spray (bridge.login.throttle.LockKind)


class PasswordLoginUnsupported(LoginRefused):
    code = "password_login_unsupported"
    panel_message = "Password sign-in at this device is not available for your company."
    expose_detail = True


class MfaRequired(LoginRefused):
    """The IdP checked the password and wants a second factor this channel cannot give.

    AD FS (MSIS7102 under an additional-authentication rule), Entra (AADSTS50076/50079/50074),
    or a SAML Responder/NoAuthnContext status.  It is not a wrong password: it feeds no
    lockout throttle and no stale-password memory.  The panel points to phone sign-in.
    """

    code = "mfa_required"
    panel_message = "Your company requires a second sign-in step. Choose \"Sign in with phone\" on this device."


class BadgeUnknown(LoginRefused):
    """No live binding for this badge in the device's tenant (never bound, expired, revoked)."""

    code = "badge_unknown"
    http_status = 401
    ipp_status = IPP_CLIENT_NOT_AUTHENTICATED
    panel_message = "This badge is not linked to an account. Choose \"Sign in with phone\" to link it."


class PairingError(BridgeError):
    """A device's poll for a phone pairing that has no session yet (RFC 8628 section 3.5)."""

    code = "pairing_error"
    http_status = 400
    ipp_status = IPP_CLIENT_BAD_REQUEST
    panel_message = "Phone sign-in did not complete. Start again."


class AuthorizationPending(PairingError):
    code = "authorization_pending"
    panel_message = "Waiting for you to sign in on your phone."


class SlowDown(PairingError):
    """Polled faster than the interval given; the device must add 5 seconds to it (RFC 8628 section 3.5)."""

    code = "slow_down"
    panel_message = "Waiting for you to sign in on your phone."

    def __init__(self, detail: str = "", *, interval: int = 10, cause: str = "") -> None:
        super().__init__(detail, cause=cause)
        self.interval = interval


class ExpiredToken(PairingError):
    code = "expired_token"
    panel_message = "The code has expired. Start phone sign-in again."


class PairingDenied(PairingError):
    """The user answered "No" on the phone, or the IdP refused the sign-in."""

    code = "access_denied"
    panel_message = "Phone sign-in was refused."


class PairingCodeUnknown(PairingError):
    code = "invalid_grant"
    panel_message = "Phone sign-in did not complete. Start again."


class BrowserSigninError(BridgeError):
    """A problem of the browser pages (/pair, /v1/web/login, the ACS): answered as a page, not JSON."""

    code = "signin_failed"
    http_status = 400
    panel_message = "The sign-in could not be completed. Start again on the device."
    expose_detail = True


class UserCodeUnknown(BrowserSigninError):
    code = "user_code_unknown"
    panel_message = "That code is not valid. Check the code on the device and try again."
    expose_detail = False


class UserCodeGuesses(BrowserSigninError):
    code = "user_code_guesses"
    http_status = 429
    panel_message = "Too many wrong codes. Wait a few minutes and try again."
    expose_detail = False

    def __init__(self, detail: str = "", *, retry_after: int = 60, cause: str = "") -> None:
        super().__init__(detail, cause=cause)
        self.retry_after = retry_after


class ReturnToRefused(BrowserSigninError):
    code = "return_to_refused"
    panel_message = "This sign-in link does not lead back to an application of the platform."


class IdpError(BridgeError):
    code = "idp_error"
    http_status = 502
    ipp_status = IPP_SERVER_UNAVAILABLE
    panel_message = "Your company's sign-in service could not be reached. Try again later."


class IdpNotWhitelisted(IdpError):
    code = "idp_not_whitelisted"
    panel_message = "Sign-in is not set up correctly for your company. Contact your administrator."


class IdpUnreachable(IdpError):
    code = "idp_unreachable"


class IdpTimeout(IdpError):
    code = "idp_timeout"
    http_status = 504
    panel_message = "Your company's sign-in service did not answer in time. Try again later."


class IdpRejectedRequest(IdpError):
    code = "idp_rejected_request"
    panel_message = "Your company's sign-in service refused the request. Contact your administrator."


class SpNotRegistered(IdpRejectedRequest):
    """The IdP does not know this bridge: no SAML SP registration, or no relying party trust for ``applies_to``."""

    code = "sp_not_registered"
    panel_message = ("Sign-in from this device is not yet registered with your company's sign-in service. "
                     "Contact your administrator.")


class IdpProtocolError(IdpError):
    code = "idp_protocol_error"
    panel_message = "Your company's sign-in service gave an answer that could not be read."


class XmlRejected(IdpProtocolError):
    """An XML document was refused before or while parsing (DOCTYPE, size, syntax)."""


class AssertionRejected(IdpProtocolError):
    """The token from the IdP failed validation; ``reason`` says which check."""

    code = "assertion_invalid"
    panel_message = "Your company's sign-in service gave an answer that could not be trusted."

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class StoreError(BridgeError):
    code = "store_error"


class StoreConflict(StoreError):
    """A write broke a unique constraint (primary key or UNIQUE): the row is already there.

    Raised by ``bridge.state.db`` on both engines, so the store can tell "already exists"
    from a failing database; the store normally answers with its own error instead.
    """


class StoreUnavailable(StoreError):
    """The database cannot be reached (no connection in time, connection lost, no answer in time).

    Fail closed: nothing that needs the store (a user lookup, the throttles, a
    session) is skipped, so no password reaches an IdP and no session is handed
    out that was not recorded.  Service resumes by itself when the database is back.
    """

    code = "service_unavailable"
    http_status = 503
    ipp_status = IPP_SERVER_UNAVAILABLE
    panel_message = "Sign-in is temporarily unavailable. Try again in a minute."


class DeviceThrottled(TemporarilyLocked):
    """One device or source address tried many different users: a password spray."""

    code = "device_throttled"
    panel_message = "Too many different accounts were tried from this device. Wait and try again later."


class AdminApiError(BridgeError):
    """An answer of the admin API (``/admin/v1``): its client is an administrator, so ``detail`` is sent."""

    code = "bad_request"
    http_status = 400
    ipp_status = IPP_CLIENT_BAD_REQUEST
    panel_message = "The request was not understood."
    expose_detail = True


class AdminUnauthorized(AdminApiError):
    """No admin token, or an unknown or revoked one (answered with ``WWW-Authenticate: Bearer``)."""

    code = "admin_unauthorized"
    http_status = 401
    ipp_status = IPP_CLIENT_NOT_AUTHENTICATED
    panel_message = "An admin token is required (Authorization: Bearer TOKEN)."


class AdminForbidden(AdminApiError):
    """The token is valid but may not do this (a tenant-scoped token writing tenant settings)."""

    code = "admin_forbidden"
    http_status = 403
    ipp_status = IPP_CLIENT_FORBIDDEN
    panel_message = "This admin token may not do this."


class ResourceNotFound(AdminApiError):
    """No such tenant, user or device, or one the token does not see (another tenant's)."""

    code = "resource_not_found"
    http_status = 404
    panel_message = "No such resource."


class ResourceConflict(AdminApiError):
    """The change clashes with what exists: a tenant id or domain taken, a tenant still holding accounts."""

    code = "resource_conflict"
    http_status = 409
    panel_message = "The change conflicts with existing data."


class InvalidTenant(AdminApiError):
    """A tenant document failed the tenant file's validation; ``path`` is the JSON pointer of the bad member."""

    code = "invalid_tenant"
    http_status = 422
    panel_message = "The tenant settings are not valid."

    def __init__(self, detail: str, *, path: str = "") -> None:
        super().__init__(detail)
        self.path = path

    def to_json(self) -> dict[str, str]:
        body = super().to_json()
        body["path"] = self.path
        return body


class InvalidImport(AdminApiError):
    """A CSV import refused because of bad rows (nothing was imported); ``errors`` lists line and reason."""

    code = "invalid_import"
    http_status = 422
    panel_message = "The import file has errors; nothing was imported."

    def __init__(self, detail: str, *, errors: list[tuple[int, str]]) -> None:
        super().__init__(detail)
        self.errors = errors
