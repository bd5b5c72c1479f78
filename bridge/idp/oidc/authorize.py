"""The start of the authorization code flow: PKCE from the state, and the authorization request URL.

Pure.  The PKCE code verifier (RFC 7636 section 4.1) is never stored: it is
derived from the sign-in's ``state`` with a key every bridge instance shares,
so whichever instance takes the callback can present it, and the state the
browser carries reveals nothing about it (HMAC-SHA256 is a PRF).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

_VERIFIER_LABEL = b"oidc pkce verifier\0"


def redirect_uri(public_url: str, tenant_id: str, configured: str | None) -> str:
    """Where the provider sends the browser back: ``oidc.redirect_uri``, else the bridge's callback route."""
    return configured or f"{public_url.rstrip('/')}/oidc/{tenant_id}/callback"


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7636 Appendix A)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def code_verifier(pkce_key: bytes, state: str) -> str:
    """43 characters of base64url: 256 bits, the high-entropy verifier RFC 7636 section 4.1 recommends."""
    return b64url(hmac.new(pkce_key, _VERIFIER_LABEL + state.encode("utf-8"), hashlib.sha256).digest())


def code_challenge(verifier: str) -> str:
    """The S256 challenge: base64url(SHA-256(verifier)) (RFC 7636 section 4.2)."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def authorization_url(endpoint: str, *, client_id: str, redirect_uri: str, scopes: Sequence[str], state: str,
                      nonce: str, challenge: str, login_hint: str | None = None) -> str:
    """The authorization request (OIDC Core 3.1.2.1) as a GET URL, keeping a query the endpoint already has."""
    ours = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(scopes),
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if login_hint:
        ours["login_hint"] = login_hint
    parts = urlsplit(endpoint)
    # A parameter the endpoint's own query repeats would be ambiguous (RFC 6749 section 3.1): ours wins.
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ours]
    query = urlencode([*kept, *ours.items()], quote_via=quote)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
