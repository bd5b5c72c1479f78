"""WS-Federation passive requestor profile (``wsignin1.0``), as AD FS speaks it at ``/adfs/ls/``.

Pure: the request's parameters in, a :class:`SigninRequest` (or a
:class:`WsFedRefused` carrying the page to show) out; a user and an
:class:`~bridge.idpsim.issuance.IssueContext` in, the ``wresult`` out.

The ``wresult`` is what AD FS posts: a bare WS-Trust 2005
``t:RequestSecurityTokenResponse`` (Lifetime, AppliesTo = wtrealm,
RequestedSecurityToken, TokenType, RequestType, KeyType) around the same signed
SAML 1.1 token the WS-Trust endpoints issue.  In the 2005 namespace a bearer
token's KeyType is ``…/identity/NoProofKey``, which is what AD FS writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from lxml import etree

from bridge.errors import RequestError
from bridge.idpsim import namespaces as ns
from bridge.idpsim.config import SimUser
from bridge.idpsim.documents import SamlTokenKind, fill_rstr
from bridge.idpsim.issuance import IssueContext, issue_for
from bridge.idpsim.namespaces import TrustVersion

WSFED_PATH = "/adfs/ls/"
WSIGNIN = "wsignin1.0"
MAX_PARAMETER_CHARS = 4096


class WsFedRefused(RequestError):
    """A sign-in request AD FS would answer with its error page (HTTP 400); ``detail`` is shown."""

    code = "wsfed_request_refused"


@dataclass(frozen=True, kw_only=True, slots=True)
class SigninRequest:
    """The parameters of a ``wsignin1.0`` request the simulator acts on."""

    realm: str
    reply: str
    context: str | None
    login_hint: str


def read_signin(params: Mapping[str, str], *, relying_parties: tuple[str, ...]) -> SigninRequest:
    """Check a sign-in request's parameters (query or form); WsFedRefused says what is wrong."""
    for name, value in params.items():
        if len(value) > MAX_PARAMETER_CHARS:
            raise WsFedRefused(f"The parameter {name} is too long.")
    action = params.get("wa", "")
    if action != WSIGNIN:
        raise WsFedRefused(f"The action wa='{action}' is not supported; this endpoint takes wa={WSIGNIN}.")
    realm = params.get("wtrealm", "").strip()
    if not realm or realm not in relying_parties:
        # AD FS's words for a wtrealm that matches no relying party trust.
        raise WsFedRefused(f"MSIS7007: The requested relying party trust '{realm}' is unspecified or unsupported.")
    reply = params.get("wreply", "").strip()
    if not reply:
        raise WsFedRefused("This simulator needs wreply: the address the token is posted to.")
    parts = urlsplit(reply)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise WsFedRefused("wreply must be an http or https URL.")
    hint = params.get("username") or params.get("login_hint") or ""
    return SigninRequest(realm=realm, reply=reply, context=params.get("wctx"), login_hint=hint.strip())


def build_wresult(user: SimUser, context: IssueContext, *, realm: str, now: datetime) -> str:
    """The ``wresult`` for ``user`` and relying party ``realm``: an RSTR with one signed SAML 1.1 token.

    Signs (through :func:`~bridge.idpsim.issuance.issue_for`): callers on the
    event loop run it in a worker thread.
    """
    token = issue_for(user, context, applies_to=realm, kind=SamlTokenKind.SAML11, now=now)
    response = etree.Element(
        f"{{{ns.WST2005}}}RequestSecurityTokenResponse", nsmap={"t": ns.WST2005, "wsu": ns.WSU}
    )
    fill_rstr(
        response,
        version=TrustVersion.WS_TRUST_2005,
        applies_to=realm,
        token=token,
        token_type=ns.SAML11_TOKEN_TYPE,
        references=False,
    )
    return str(etree.tostring(response, encoding="unicode"))
