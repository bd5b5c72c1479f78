"""What an IdP's "no" means, whatever dialect it speaks: one of five classes, or "cannot tell".

Every answer that carries no token is, for the bridge, one of:

* **MFA required** - the password was right, but the IdP wants a second factor a password
  channel cannot give (:class:`~bridge.errors.MfaRequired`: not a wrong password, so it
  feeds no throttle; the user is pointed to phone sign-in);
* **credentials** - wrong email or password (:class:`~bridge.errors.InvalidCredentials`);
* **account** - the account is disabled, locked, expired or denied (:class:`~bridge.errors.AccessDenied`);
* **configuration** - the IdP refused *our* request: it does not know this SP or relying
  party (:class:`~bridge.errors.SpNotRegistered`), or another setting is wrong
  (:class:`~bridge.errors.IdpRejectedRequest`);
* **outage** - an HTTP error page instead of a protocol answer (:class:`~bridge.errors.IdpUnreachable`,
  :class:`~bridge.errors.IdpTimeout`).

Credentials and account feed the lockout protection.  A refusal that fits none of them
(:class:`~bridge.errors.IdpRefused`) feeds the throttles too: an IdP whose
dialect for a wrong password the bridge does not know must not give a guesser
free attempts.

The protocol readers (:mod:`bridge.idp.wstrust.messages`, :mod:`bridge.idp.saml.ecp`)
map their protocol's codes; this module holds what both share: the wording
real IdPs put in their messages, and the HTTP status table for answers
without a protocol document.  Pure: text and numbers in, a class or an error out.
"""

from __future__ import annotations

import enum
import logging
import re

from bridge.errors import (
    AccessDenied,
    BridgeError,
    IdpError,
    IdpProtocolError,
    IdpRefused,
    IdpRejectedRequest,
    IdpTimeout,
    IdpUnreachable,
    InvalidCredentials,
    MfaRequired,
    SpNotRegistered,
)

DETAIL_CHARS = 300
_SNIFF_BYTES = 16 * 1024  # how much of an error page is searched for an "unknown SP" phrase


class Refusal(enum.Enum):
    """The class of an IdP refusal (what it teaches the lockout protection)."""

    MFA_REQUIRED = "mfa_required"
    CREDENTIALS = "credentials"
    ACCOUNT = "account"
    SP_NOT_REGISTERED = "sp_not_registered"
    CONFIGURATION = "configuration"


def _any(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


# The password was accepted, a second factor is wanted.  AD FS answers an active (WS-Trust) request
# that an additional-authentication rule applies to with MSIS7102 ("Requested Authentication Method is
# not supported on the STS"): it cannot prompt for MFA there.  Entra ID: AADSTS50076 and AADSTS50079
# (MFA, or enrolment in it, required), AADSTS50074 (strong authentication required), AADSTS50158 (an
# external security challenge not satisfied).  Other IdPs say it in words.  Checked before every other
# class: such an answer may also name the account, and it is never a wrong password.
_MFA = _any(
    r"\bMSIS7102\b",
    r"\brequested\s+authentication\s+method\s+is\s+not\s+supported\s+on\s+the\s+STS\b",
    r"\bAADSTS50(?:074|076|079|158)\b",
    r"\bmulti[-\s]?factor\s+authentication\s+(?:is\s+)?required\b",
    r"\b(?:must|needs?\s+to)\s+(?:use|enroll\s+in|register\s+for)\s+multi[-\s]?factor\s+authentication\b",
    r"\bMFA\s+(?:is\s+)?required\b",
    r"\badditional\s+authentication\s+(?:is\s+)?required\b",
    r"\bstrong\s+authentication\s+(?:is\s+)?required\b",
)
# The IdP does not know the requester.  AD FS: MSIS7007 "The requested relying party trust '...' is
# unspecified or unsupported", and WIF's ID3082 / WS-Trust 1.3 section 11 InvalidScope when AppliesTo
# names no relying party trust.  SimpleSAMLphp: METADATANOTFOUND "Unable to locate metadata for ...".
# Keycloak: "Unknown login requester." on its error page; on the ECP SOAP path the untranslated key
# invalidRequestMessage for an issuer that is no client (also its answer to an unreadable request,
# which ours is not).  Shibboleth: no metadata for the SP, or no registered endpoint to answer to.
_SP_UNKNOWN = _any(
    r"\bunknown\s+(?:service\s+provider|relying\s+party|login\s+requester|requester|issuer|sp)\b",
    r"\bunknownLoginRequesterMessage\b",
    r"\binvalidRequestMessage\b",
    r"\bunable\s+to\s+locate\s+metadata\b",
    r"\bMETADATANOTFOUND\b",
    r"\bno\s+metadata\s+(?:found|available|returned)\b",
    r"\bmetadata\b[^.]{0,80}?\bnot\s+found\b",
    r"\brelying\s+party(?:\s+trust)?\b[^.]{0,120}?\b(?:unspecified\s+or\s+unsupported|unknown|does\s+not\s+exist"
    r"|not\s+(?:found|registered|configured|known|recogni[sz]ed))",
    r"\bservice\s+provider\b[^.]{0,80}?\bnot\s+(?:found|registered|known|trusted|recogni[sz]ed)",
    r"\bassertion\s*consumer\s*service(?:\s*url)?\b[^.]{0,80}?\bnot\s+(?:registered|in|found|known|allowed)\b",
    r"\bMSIS7007\b",
    r"\bID3082\b",
    r"\brequest\s+scope\s+is\s+not\s+valid\b",
    r"\bEndpointResolutionFailed\b",
)
# The account, not the password: locked, disabled, expired; AD FS MSIS7068 (issuance authorization).
# Shibboleth's authentication events AccountLocked / AccountDisabled / ExpiredPassword, Keycloak's
# user_disabled / user_temporarily_disabled events and accountDisabledMessage keys.
_ACCOUNT = _any(
    r"\baccount\b[^.]{0,40}?\b(?:locked|disabled|expired|suspended|inactive|deactivated)\b",
    r"\b(?:user|principal)\s+(?:account\s+)?(?:is\s+)?(?:locked|disabled|suspended|deactivated)\b",
    r"\bAccount(?:Locked|Disabled|Expired)\b",
    r"\buser_(?:temporarily_)?disabled\b",
    r"\baccount(?:Temporarily)?DisabledMessage\b",
    r"\bpassword\s+(?:has\s+)?expired\b",
    r"\b(?:ExpiredPassword|passwordExpired)\b",
    r"\bMSIS7068\b",
    r"\baccess\s+(?:is\s+)?denied\b",
)
# Wrong user or password.  AD FS: ID3242, and the older WCF wording of keystoneauth's captured fault.
# SimpleSAMLphp: WRONGUSERPASS (in a Responder StatusMessage).  Shibboleth: InvalidPassword /
# UnknownUsername events.  Keycloak: invalidUserMessage / invalid_user_credentials.
_CREDENTIALS = _any(
    r"\bID3242\b",
    r"\bat\s+least\s+one\s+security\s+token\s+in\s+the\s+message\s+could\s+not\s+be\s+validated\b",
    r"\bsecurity\s+token\s+could\s+not\s+be\s+authenticated\b",
    r"\bWRONGUSERPASS\b",
    r"\bauthentication\s+failed\b",
    r"\b(?:invalid|incorrect|wrong|bad)\s+(?:user\s*name|user|credentials?|password|login)\b",
    r"\b(?:invalidUser(?:Message|Credentials)|invalid_user_credentials)\b",
    r"\b(?:InvalidPassword|UnknownUsername|InvalidCredentials)\b",
    r"\bunknown\s+user(?:\s*name)?\b",
)
# Our settings, not the user: Keycloak client switches (ECP flow, signatures, protocol), SimpleSAMLphp's
# NOACCESS (endpoint disabled), unsupported bindings, WCF's refusal of the WS-Security header (clock).
_CONFIGURATION = _any(
    r"\bnot\s+allowed\s+to\s+use\s+(?:the\s+)?ECP\b",
    r"\b(?:loginRequesterNotEnabledMessage|invalidRequesterMessage|bearerOnlyMessage|standardFlowDisabledMessage"
    r"|realmNotEnabledMessage|httpsRequiredMessage)\b",
    r"\bwrong\s+client\s+protocol\b",
    r"\bunsupported\s+binding\b|\b(?:UnsupportedBinding|RequestUnsupported)\b",
    r"\berror\s+occurred\s+when\s+verifying\s+security\s+for\s+the\s+message\b",
    r"\bmessage\s+(?:has\s+)?expired\b|\bMessageExpired\b",
    r"\bNOACCESS\b",
)
_BY_TEXT = (
    (Refusal.MFA_REQUIRED, _MFA),
    (Refusal.SP_NOT_REGISTERED, _SP_UNKNOWN),
    (Refusal.ACCOUNT, _ACCOUNT),
    (Refusal.CREDENTIALS, _CREDENTIALS),
    (Refusal.CONFIGURATION, _CONFIGURATION),
)


def refusal_from_text(text: str) -> Refusal | None:
    """The class an IdP's message names, most specific first (MFA, an unknown SP, then the account, ...)."""
    if not text:
        return None
    for refusal, pattern in _BY_TEXT:
        if pattern.search(text):
            return refusal
    return None


def refusal_error(refusal: Refusal | None, detail: str) -> BridgeError:
    """The error a refusal of this class answers with; None (unclassified) is :class:`IdpRefused`."""
    if refusal is Refusal.MFA_REQUIRED:
        return MfaRequired(f"the IdP wants a second factor (MFA) a password cannot give: {detail}")
    if refusal is Refusal.CREDENTIALS:
        return InvalidCredentials(detail)
    if refusal is Refusal.ACCOUNT:
        return AccessDenied(detail)
    if refusal is Refusal.SP_NOT_REGISTERED:
        return SpNotRegistered(f"the IdP does not know this service provider: {detail}")
    if refusal is Refusal.CONFIGURATION:
        return IdpRejectedRequest(detail)
    return IdpRefused(f"the IdP refused with an answer the bridge cannot classify: {detail}")


def refusal_from_status(status: int) -> Refusal | None:
    """What an HTTP status alone says about a refused login (401: the credentials; 403: the account)."""
    if status == 401:
        return Refusal.CREDENTIALS
    if status == 403:
        return Refusal.ACCOUNT
    return None


def clip(text: str, limit: int = DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_body(body: bytes, content_type: str) -> str:
    """``text/html, 1234 bytes`` - what an answer was, never what it said."""
    kind = content_type.split(";", 1)[0].strip() or "no content type"
    return f"{kind}, {len(body)} bytes"


def error_for_status(status: int, body: bytes, content_type: str, *, what: str) -> BridgeError:
    """The error of a non-200 answer that holds no protocol document (an error page, an empty body).

    An error page that names an unknown SP or relying party is that (Keycloak's
    and SimpleSAMLphp's pages say so); otherwise the status decides: 401 and
    403 are the user's refusals, a 5xx page is an outage, other 4xx refuse our
    request.  The admin detail names the status, content type and size.
    """
    seen = f"{what} answered HTTP {status} ({describe_body(body, content_type)})"
    said = f"{what} answered HTTP {status}"  # the audit trail's reason (``cause``): the status, nothing it sent
    if status >= 300:
        page = body[:_SNIFF_BYTES].decode("utf-8", "replace")
        match = _SP_UNKNOWN.search(page)
        if match is not None:
            return SpNotRegistered(f"{seen}; the page says {clip(' '.join(match.group(0).split()), 120)!r}",
                                   cause=f"{said}, a page naming an unknown service provider")
    refusal = refusal_from_status(status)
    if refusal is not None:
        return refusal_error(refusal, seen)
    kind: type[IdpError]
    if 300 <= status < 400:
        kind, why = IdpProtocolError, ", a redirect: the URL is not the protocol endpoint"
    elif status in (404, 405):
        kind, why = IdpRejectedRequest, ": the endpoint is not enabled at this URL"
    elif status == 504:
        kind, why = IdpTimeout, ": a gateway in front of the IdP timed out"
    elif status >= 500:
        kind, why = IdpUnreachable, ", an error page, not a SOAP answer"
    elif 400 <= status < 500:
        kind, why = IdpRejectedRequest, " to the request"
    else:
        kind, why = IdpProtocolError, ": an unexpected status"
    return kind(seen + why, cause=said + why)


_FIRST_ELEMENT = re.compile(rb"<([A-Za-z_][A-Za-z0-9_.:-]{0,63})")


def first_element_name(body: bytes) -> str:
    """The name of the first element in ``body`` (``soap11:Envelope``, ``html``), or ``(none)``.

    A cheap look at the first 4 KiB, for log lines: the name only, never text.
    """
    match = _FIRST_ELEMENT.search(body[:4096])
    return match.group(1).decode("ascii") if match is not None else "(none)"


def log_unreadable(
    logger: logging.Logger, what: str, *, status: int, content_type: str, body: bytes, exc: BridgeError
) -> None:
    """INFO line for an answer that could not be read: enough to explain it later, nothing it said."""
    logger.info(
        "%s answer not usable (%s): HTTP %s, content type %s, %d bytes, first element %s",
        what, exc.code, status, content_type or "(none)", len(body), first_element_name(body),
    )
