"""What an OpenID provider's "no" means: OAuth 2.0 error answers mapped to the bridge's errors.

Pure.  Two places answer with an OAuth error: the authorization endpoint, through
the browser's redirect (RFC 6749 section 4.1.2.1, OIDC Core 3.1.2.6), and the
token endpoint (RFC 6749 section 5.2).  The ``error`` code alone rarely says
whether the password was wrong: providers answer ``invalid_grant`` for a wrong
password, a locked account and a second factor alike, and tell them apart in
``error_description`` (Keycloak, Okta) or in Entra ID's AADSTS codes.  Those
are classified first; what is left uses the shared wording of
:mod:`bridge.idp.refusals`, and an answer nothing classifies is
:class:`~bridge.errors.IdpRefused` (fail closed: it counts toward the lockout
throttles like a wrong password).

The ``detail`` of each error (for administrators) quotes the provider's
description, trimmed; the ``cause`` (the audit trail's reason) names only the
error code and AADSTS number, never text the provider sent.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.errors import (
    AccessDenied,
    AssertionRejected,
    BridgeError,
    IdpRefused,
    IdpRejectedRequest,
    IdpUnreachable,
    InvalidCredentials,
    MfaRequired,
    SpNotRegistered,
)
from bridge.idp.oidc.jsondoc import clean
from bridge.idp.refusals import Refusal, refusal_from_text

_DESCRIPTION_CHARS = 200
# RFC 6749 section 5.2: error codes are %x20-21 / %x23-5B / %x5D-7E; anything else is not echoed.
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}")
_AADSTS = re.compile(r"^\s*AADSTS(\d{4,9})\b")


class Grant(enum.Enum):
    """Which token request was answered: the password grant (a panel) or the code exchange (a browser)."""

    PASSWORD = "password"  # noqa: S105 - the grant type, RFC 6749 section 4.3.2
    AUTHORIZATION_CODE = "authorization_code"


@dataclass(frozen=True, kw_only=True, slots=True)
class OAuthError:
    """An error answer as sent: the code, its description, and Entra ID's ``error_codes``."""

    error: str
    description: str = ""
    error_codes: tuple[int, ...] = ()


# Entra ID (AADSTS) codes and what they say.  Facts from Microsoft's AADSTS error code reference.
_ENTRA: dict[int, tuple[Refusal, str]] = {
    50126: (Refusal.CREDENTIALS, "invalid user name or password"),
    50034: (Refusal.CREDENTIALS, "the user account does not exist in the directory"),
    50053: (Refusal.ACCOUNT, "the account is locked (smart lockout, or sign-in from a malicious address blocked)"),
    50057: (Refusal.ACCOUNT, "the account is disabled"),
    50055: (Refusal.ACCOUNT, "the password is expired"),
    50105: (Refusal.ACCOUNT, "the user is not assigned to the application"),
    53003: (Refusal.ACCOUNT, "blocked by a conditional access policy"),
    50076: (Refusal.MFA_REQUIRED, "multi-factor authentication is required"),
    50079: (Refusal.MFA_REQUIRED, "the user must enrol in multi-factor authentication"),
    50074: (Refusal.MFA_REQUIRED, "strong authentication is required"),
    50158: (Refusal.MFA_REQUIRED, "an external security challenge was not satisfied"),
    7000218: (Refusal.CONFIGURATION, "the request needs client_assertion or client_secret: allow public client "
                                     "flows for the app registration, or configure a client secret or key"),
    700016: (Refusal.CONFIGURATION, "no application with this client_id in the directory"),
    7000215: (Refusal.CONFIGURATION, "the client secret is invalid (expired, or the secret's ID was given "
                                     "instead of its value)"),
    65001: (Refusal.CONFIGURATION, "the user or an administrator has not consented to the application"),
    50011: (Refusal.CONFIGURATION, "the redirect URI is not registered for the application"),
    500113: (Refusal.CONFIGURATION, "no reply address is registered for the application"),
    7000112: (Refusal.CONFIGURATION, "the application is disabled"),
    700027: (Refusal.CONFIGURATION, "the client assertion's signature or key is not one of the application's "
                                    "credentials (upload the certificate; set oidc.client_certificate_file)"),
}
# Providers that say it in words only (error_description of invalid_grant).
_WORDS: tuple[tuple[re.Pattern[str], Refusal, str], ...] = (
    (re.compile(r"^\s*invalid user credentials\.?\s*$", re.I), Refusal.CREDENTIALS, "Keycloak: wrong credentials"),
    (re.compile(r"^\s*account (?:temporarily )?disabled\.?\s*$", re.I), Refusal.ACCOUNT,
     "Keycloak: the account is disabled"),
    (re.compile(r"^\s*account is not fully set up\.?\s*$", re.I), Refusal.ACCOUNT,
     "Keycloak: the account has required actions pending (it must be set up in a browser first)"),
    (re.compile(r"^\s*the credentials provided were invalid\.?\s*$", re.I), Refusal.CREDENTIALS,
     "Okta: wrong credentials"),
)
_USER_SIDE = frozenset({"access_denied", "interaction_required", "login_required", "consent_required",
                        "account_selection_required"})
_OUTAGE = frozenset({"server_error", "temporarily_unavailable"})
_ROPC_NOT_ENABLED = (
    "the IdP does not allow the password grant for this client: enable Direct Access Grants (Keycloak), the "
    "Resource Owner Password grant (Okta) or public client flows (Entra ID), or set password_grant: false")


def error_code(text: object) -> str:
    """The error code, if it is one (RFC 6749 section 5.2's characters); else a placeholder."""
    return text if isinstance(text, str) and _ERROR_CODE.fullmatch(text) else "(unreadable error code)"


def entra_code(answer: OAuthError) -> int | None:
    """The AADSTS number: the first of ``error_codes``, else the one the description starts with."""
    if answer.error_codes:
        return answer.error_codes[0]
    match = _AADSTS.match(answer.description)
    return int(match.group(1)) if match is not None else None


def _said(answer: OAuthError, code: int | None) -> tuple[str, str]:
    """(detail, cause): the detail quotes the description, the cause only what the bridge can vouch for."""
    name = error_code(answer.error)
    tag = f" (AADSTS{code})" if code is not None else ""
    cause = f"IdP answered {name}{tag}"
    description = clean(answer.description, _DESCRIPTION_CHARS)
    return (f"{cause}: {description}" if description else cause), cause


def _refusal(refusal: Refusal, detail: str, cause: str, *, browser: bool) -> BridgeError:
    if refusal is Refusal.MFA_REQUIRED and not browser:
        return MfaRequired(f"the IdP wants a second factor (MFA) a password cannot give: {detail}", cause=cause)
    if refusal is Refusal.CREDENTIALS:
        return InvalidCredentials(detail, cause=cause)
    if refusal in (Refusal.ACCOUNT, Refusal.MFA_REQUIRED):  # MFA in a browser: the IdP could have asked for it
        return AccessDenied(detail, cause=cause)
    if refusal is Refusal.SP_NOT_REGISTERED:
        return SpNotRegistered(f"the IdP does not know this client: {detail}", cause=cause)
    return IdpRejectedRequest(f"the IdP refused the bridge's request (check the client's settings at the IdP "
                              f"and in the tenant's oidc section): {detail}", cause=cause)


def _by_entra_code(answer: OAuthError, *, browser: bool) -> BridgeError | None:
    code = entra_code(answer)
    if code is None or code not in _ENTRA:
        return None
    refusal, meaning = _ENTRA[code]
    detail, cause = _said(answer, code)
    if code == 53003:
        cause += ", blocked by conditional access"
    return _refusal(refusal, f"{meaning}; {detail}", cause, browser=browser)


def authorization_error(answer: OAuthError) -> BridgeError:
    """The error for an authorization endpoint's ``error`` redirect (the user's browser brought it back)."""
    known = _by_entra_code(answer, browser=True)
    if known is not None:
        return known
    detail, cause = _said(answer, entra_code(answer))
    if answer.error in _OUTAGE:
        return IdpUnreachable(f"the IdP could not handle the sign-in now: {detail}", cause=cause)
    if answer.error in _USER_SIDE:
        return AccessDenied(detail, cause=cause)
    if answer.error in ("unauthorized_client", "invalid_request", "invalid_scope", "unsupported_response_type",
                        "invalid_request_uri", "invalid_request_object", "request_not_supported",
                        "request_uri_not_supported", "registration_not_supported", "invalid_client"):
        return IdpRejectedRequest(f"the IdP refused the bridge's sign-in request (check the client registration: "
                                  f"redirect URI, allowed flows and scopes): {detail}", cause=cause)
    return AccessDenied(detail, cause=cause)  # an unknown code from the browser: the user's refusal, not counted


def token_error(answer: OAuthError, *, grant: Grant) -> BridgeError:
    """The error for a token endpoint's error answer (RFC 6749 section 5.2), by code, then by wording."""
    browser = grant is Grant.AUTHORIZATION_CODE
    known = _by_entra_code(answer, browser=browser)
    if known is not None:
        return known
    code = entra_code(answer)
    detail, cause = _said(answer, code)
    error = answer.error
    if error in _OUTAGE:
        return IdpUnreachable(f"the IdP's token endpoint could not answer now: {detail}", cause=cause)
    if error == "invalid_client":
        return IdpRejectedRequest(
            "the IdP refused the bridge's client authentication: check oidc.client_id and oidc.client_auth, and "
            "the client secret (client_secret_basic) or the registered public key and private_key_id "
            f"(private_key_jwt) at the IdP; {detail}", cause=cause)
    if error in ("unauthorized_client", "unsupported_grant_type"):
        if grant is Grant.PASSWORD:
            return IdpRejectedRequest(f"{_ROPC_NOT_ENABLED}; {detail}", cause=cause)
        return IdpRejectedRequest(f"the IdP does not allow this client the authorization code flow: enable it "
                                  f"(standard flow, web platform) for the client; {detail}", cause=cause)
    if error == "invalid_scope":
        return IdpRejectedRequest(f"the IdP refused the requested scopes: check oidc.scopes against what the "
                                  f"client may ask for; {detail}", cause=cause)
    if browser:
        if error == "invalid_grant":
            # The code is unknown, used, expired, or its PKCE verifier or redirect_uri does not match.
            return AssertionRejected("code_refused", f"the IdP did not accept the authorization code; {detail}")
        if error in _USER_SIDE:
            return AccessDenied(detail, cause=cause)
        return IdpRejectedRequest(f"the IdP refused the code exchange; {detail}", cause=cause)
    if error == "interaction_required":
        return MfaRequired(f"the IdP wants an interactive sign-in (a second factor or a policy): {detail}",
                           cause=cause)
    if error == "consent_required":
        return IdpRejectedRequest(f"the application needs consent at the IdP (an administrator can grant it "
                                  f"for the organisation): {detail}", cause=cause)
    if error == "access_denied":
        return AccessDenied(detail, cause=cause)
    if code is not None:
        return IdpRefused(f"the IdP refused with an Entra ID code the bridge does not classify: {detail}",
                          cause=cause)
    return _by_words(answer, detail, cause)


def _by_words(answer: OAuthError, detail: str, cause: str) -> BridgeError:
    for pattern, refusal, meaning in _WORDS:
        if pattern.match(answer.description):
            return _refusal(refusal, f"{meaning}; {detail}", cause, browser=False)
    found = refusal_from_text(answer.description)
    if found is not None:
        return _refusal(found, detail, cause, browser=False)
    return IdpRefused(f"the IdP refused with an answer the bridge cannot classify: {detail}", cause=cause)


def read_error_codes(value: object) -> tuple[int, ...]:
    """Entra ID's ``error_codes``: an array of integers; anything else is ignored (it is only a hint)."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        codes = tuple(v for v in value[:8] if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10**10)
        return codes
    return ()
