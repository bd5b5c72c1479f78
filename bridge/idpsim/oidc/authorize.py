"""Checking an authorization request (RFC 6749 section 4.1.1, RFC 7636 section 4.3, OIDC Core section 3.1.2).

The order matters, as at a real OP: until the client and its redirect URI are
known good, a refusal is a page for the user and never a redirect (RFC 6749
section 4.1.2.1: an unchecked redirect would be an open redirector); after
that, refusals go back to the client as ``error`` parameters with ``state``
and ``iss`` (RFC 9207).  Pure: the query's pairs in, a decision out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bridge.idpsim.oidc.settings import OidcClient, OidcSettings
from bridge.idpsim.oidc.tokens import SCOPE_OPENID, granted_scopes

MAX_PARAMETER_CHARS = 2048
# RFC 7636 section 4.2: BASE64URL(SHA256(verifier)) is 43 characters; section 4.1 bounds verifiers to 43-128.
CODE_CHALLENGE = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
S256 = "S256"


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthorizationRequest:
    """A request that passed every check: the login page comes next."""

    client: OidcClient
    redirect_uri: str
    scope: str  # the granted scopes, space-separated
    state: str | None
    nonce: str | None
    code_challenge: str | None
    login_hint: str


@dataclass(frozen=True, kw_only=True, slots=True)
class PageRefusal:
    """Refused before the redirect URI could be trusted: an error page, no redirect."""

    message: str
    detail: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RedirectRefusal:
    """Refused with the redirect URI known good: back to the client with ``error``."""

    redirect_uri: str
    error: str
    description: str
    state: str | None


def check_authorization_request(
    pairs: Sequence[tuple[str, str]], settings: OidcSettings
) -> AuthorizationRequest | PageRefusal | RedirectRefusal:
    """Validate the query of ``GET /oidc/authorize`` like Keycloak or Entra would."""
    params: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in pairs:
        if name in params:
            repeated.add(name)
        params.setdefault(name, value)
    if any(len(value) > MAX_PARAMETER_CHARS for value in params.values()):
        return PageRefusal(message="The request could not be read.", detail="a parameter is too long")
    client_id = params.get("client_id", "")
    if not client_id or "client_id" in repeated:
        return PageRefusal(message="The request could not be read.", detail="client_id is missing")
    client = settings.client(client_id)
    if client is None:
        return PageRefusal(message="The application is not registered here.", detail=f"unknown client_id {client_id}")
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri or "redirect_uri" in repeated:
        # OIDC Core 3.1.2.1 makes redirect_uri REQUIRED; a client with one URI gets no guessing either.
        return PageRefusal(message="The request could not be read.", detail="redirect_uri is missing")
    if redirect_uri not in client.redirect_uris:
        # RFC 6749 3.1.2.3: compared as strings with the registered ones, exactly.
        return PageRefusal(
            message="The application asked to send you somewhere it did not register.",
            detail="redirect_uri is not registered for this client",
        )
    state = params.get("state")

    def back(error: str, description: str) -> RedirectRefusal:
        return RedirectRefusal(redirect_uri=redirect_uri, error=error, description=description, state=state)

    if repeated:
        # RFC 6749 3.1: request and response parameters MUST NOT be included more than once.
        return back("invalid_request", f"repeated parameter(s): {', '.join(sorted(repeated))}")
    if "request" in params:
        return back("request_not_supported", "request objects are not supported")
    if "request_uri" in params:
        return back("request_uri_not_supported", "request_uri is not supported")
    response_type = params.get("response_type")
    if not response_type:
        return back("invalid_request", "response_type is missing")
    if response_type != "code":
        return back("unsupported_response_type", "only response_type=code is supported")
    if params.get("response_mode", "query") != "query":
        return back("invalid_request", "only response_mode=query is supported")
    scope = granted_scopes(params.get("scope"))
    if SCOPE_OPENID not in (params.get("scope") or "").split(" "):
        return back("invalid_scope", "the scope must include openid")
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if challenge is None:
        if method is not None:
            return back("invalid_request", "code_challenge_method without code_challenge")
        if client.require_pkce:
            return back("invalid_request", "PKCE is required: code_challenge and code_challenge_method=S256")
    else:
        if method != S256:
            # RFC 7636 4.3 defaults a missing method to plain, which this OP (like Entra) does not accept.
            return back("invalid_request", "code_challenge_method must be S256")
        if not CODE_CHALLENGE.match(challenge):
            return back("invalid_request", "code_challenge is malformed")
    if params.get("prompt") is not None and "none" in params["prompt"].split(" "):
        # OIDC Core 3.1.2.6: no session here, so a sign-in without a page cannot happen.
        return back("login_required", "the user must sign in")
    return AuthorizationRequest(
        client=client,
        redirect_uri=redirect_uri,
        scope=" ".join(scope),
        state=state,
        nonce=params.get("nonce"),
        code_challenge=challenge,
        login_hint=params.get("login_hint", ""),
    )


def redirect_with(redirect_uri: str, params: Sequence[tuple[str, str | None]]) -> str:
    """``redirect_uri`` with ``params`` added to its query (RFC 6749 4.1.2: keep the query it already has)."""
    parts = urlsplit(redirect_uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.extend((name, value) for name, value in params if value is not None)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
