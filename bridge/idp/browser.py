"""Browser sign-in at a tenant's IdP: what the login core asks of either protocol.

A password typed at a panel cannot satisfy MFA; a browser on the user's phone can.
The bridge sends that browser to the IdP (SAML 2.0 Web Browser SSO by HTTP-Redirect,
or WS-Federation passive ``wsignin1.0`` for AD FS) and gets the answer back as an HTTP
POST (``/saml/{tenant}/acs``: ``SAMLResponse`` and ``RelayState``; ``/wsfed/{tenant}``:
``wa``, ``wresult`` and ``wctx``).  OpenID Connect sends it to ``/oidc/{tenant}/callback``
as a GET with ``code`` and ``state`` (authorization code with PKCE): the bridge then
exchanges the code at the token endpoint and validates the ID token.  The IdP's own MFA and conditional access apply.
The answer is checked by the same assertion code as the password paths
(:func:`bridge.idp.assertion.validate_assertion`: pinned certificates, audience,
recipient, InResponseTo, then the replay cache).

``state`` is the opaque value the IdP hands back unchanged (SAML RelayState, at most
80 bytes by saml-bindings section 3.4.3; WS-Federation ``wctx``): the login core
keeps what it stands for in the store, so any instance behind the balancer can take
the POST.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from bridge.idp.assertion import ReplayCache

MAX_STATE_CHARS = 80


class SignedIdentity(Protocol):
    """What a validated answer proves, whatever the protocol: who signed it, and which user it names.

    :class:`~bridge.idp.assertion.ValidatedAssertion` (SAML, WS-Fed) and
    :class:`~bridge.idp.oidc.idtoken.ValidatedIdToken` (OpenID Connect) both have these.
    """

    @property
    def issuer(self) -> str: ...

    @property
    def subject(self) -> str: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class BrowserRedirect:
    """Where to send the user's browser, and what its answer must refer to."""

    url: str  # an https URL at the IdP, to GET
    # What the answer must refer to: the SAML AuthnRequest ID (InResponseTo), the OpenID Connect nonce;
    # None for WS-Fed.  The login core keeps it with the sign-in and hands it back to finish_browser_signin.
    request_id: str | None


class BrowserSignin(Protocol):
    """One tenant's IdP, spoken to through the user's browser (SamlIdp, WsTrustIdp and OidcIdp implement it)."""

    async def begin_browser_signin(self, *, state: str, login_hint: str | None = None) -> BrowserRedirect:
        """The redirect that starts a sign-in; ``state`` comes back with the answer."""
        ...

    async def finish_browser_signin(self, *, form: Mapping[str, str], request_id: str | None,
                                    replay: ReplayCache) -> SignedIdentity:
        """Check the IdP's answer (the POSTed form fields, or an OpenID Connect callback's query, as received).

        Raises AssertionRejected for an answer that fails a check, AccessDenied when the IdP
        answered with a refusal (the user cancelled, or its policy denied), IdpProtocolError
        for a form that is not this protocol's answer.
        """
        ...
