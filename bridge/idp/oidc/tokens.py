"""The token endpoint's and the userinfo endpoint's answers, read (RFC 6749 sections 5.1 and 5.2, OIDC Core 5.3).

Pure: status, body and content type in; the tokens, the email claim, or the
error the answer stands for.  The tokens are secrets: they are kept out of
``repr`` and never put in an error's text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.errors import AssertionRejected, BridgeError, IdpProtocolError, IdpRejectedRequest, IdpUnreachable
from bridge.idp.oidc.dialects import Grant, OAuthError, read_error_codes, token_error
from bridge.idp.oidc.idtoken import is_false
from bridge.idp.oidc.jsondoc import load_object, optional_text
from bridge.idp.refusals import describe_body, error_for_status


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenSet:
    """A successful token answer: the ID token to validate and the access token for userinfo."""

    id_token: str = field(repr=False)
    access_token: str = field(repr=False)


def _status_error(status: int, body: bytes, content_type: str, *, what: str) -> BridgeError:
    seen = f"{what} answered HTTP {status} ({describe_body(body, content_type)})"
    cause = f"{what} answered HTTP {status}"
    if status >= 500:
        return IdpUnreachable(f"{seen}: the IdP has a problem", cause=cause)
    if status == 429:
        # Rate limited (Entra ID and Okta throttle per client and per IP; Okta answers its own JSON, not
        # RFC 6749's): an outage for now, not a refusal of the user, so no lockout is counted.
        return IdpUnreachable(f"{seen}: the IdP is rate-limiting the bridge; try again later", cause=cause)
    return IdpProtocolError(f"{seen}, not an OAuth 2.0 JSON answer", cause=cause)


def read_token_response(status: int, body: bytes, content_type: str, *, grant: Grant) -> TokenSet:
    """The tokens of a 200 answer (section 5.1), or the error an error answer (section 5.2) stands for."""
    what = "the IdP's token endpoint"
    if status >= 500 or status == 429:
        raise _status_error(status, body, content_type, what=what)
    try:
        doc = load_object(body, what=f"{what}'s answer")
    except IdpProtocolError as exc:
        if status != 200:
            # An error page, not RFC 6749's JSON (a gateway, a WAF): judged by its status as the other
            # protocols' pages are, so 401/403 still feed the lockout throttles (fail closed).
            raise error_for_status(status, body, content_type, what=what) from exc
        raise _status_error(status, body, content_type, what=what) from exc
    error = doc.get("error")
    if error is not None or status != 200:
        if not isinstance(error, str):
            raise error_for_status(status, body, content_type, what=what)
        description = doc.get("error_description")
        raise token_error(OAuthError(
            error=error,
            description=description if isinstance(description, str) else "",
            error_codes=read_error_codes(doc.get("error_codes")),
        ), grant=grant)
    token_type = optional_text(doc, "token_type", what=what)
    if token_type is None or token_type.lower() != "bearer":
        raise IdpProtocolError(f"{what} answered with token_type {str(token_type)[:40]!r}, not Bearer "
                               "(RFC 6749 section 7.1)")
    id_token = optional_text(doc, "id_token", what=what)
    if not id_token:
        raise IdpProtocolError(f"{what} answered without an id_token: check that oidc.scopes includes openid")
    access_token = optional_text(doc, "access_token", what=what)
    if not access_token:
        raise IdpProtocolError(f"{what} answered without an access_token (RFC 6749 section 5.1)")
    return TokenSet(id_token=id_token, access_token=access_token)


def read_userinfo(status: int, body: bytes, content_type: str, *, sub: str, email_claim: str) -> str:
    """The email claim from a userinfo answer whose ``sub`` is the ID token's (OIDC Core 5.3.2)."""
    what = "the IdP's userinfo endpoint"
    if status in (401, 403):
        why = f"{what} refused the access token (HTTP {status})"
        raise IdpRejectedRequest(f"{why}: check that oidc.scopes asks for the claims the tenant needs "
                                 f"({email_claim}) and that the client may read them", cause=why)
    if status != 200:
        raise _status_error(status, body, content_type, what=what)
    if content_type.split(";", 1)[0].strip().lower() == "application/jwt":
        raise IdpProtocolError(f"{what} answered with a signed JWT; the bridge reads plain JSON userinfo only "
                               "(turn off signed userinfo for the client)")
    doc = load_object(body, what=f"{what}'s answer")
    said = optional_text(doc, "sub", what=what)
    if said != sub:
        raise AssertionRejected("subject_mismatch", "the userinfo answer is for another subject than the ID token")
    value = doc.get(email_claim)
    if value is None or value == "":
        raise AssertionRejected("claim_missing", f"neither the ID token nor userinfo has the {email_claim} claim: "
                                                 "ask for it in oidc.scopes, or map it at the IdP")
    if not isinstance(value, str):
        raise AssertionRejected("malformed", f"the userinfo {email_claim} claim is not a string")
    if email_claim == "email" and is_false(doc.get("email_verified")):
        raise AssertionRejected("email_unverified", "the provider says the email address is not verified "
                                                    "(email_verified false)")
    return value
