"""WS-Federation passive sign-in at AD FS (WS-Federation 1.2 section 13): the redirect out, the POST back.

A password typed at a device cannot satisfy AD FS's additional-authentication
rules; the user's phone browser can.  The bridge sends it to AD FS's passive
endpoint with ``wa=wsignin1.0`` and takes the answer AD FS POSTs back: ``wa``,
``wresult`` (a RequestSecurityTokenResponse holding the token) and ``wctx``
(our state, unchanged).  The token is then validated exactly like a WS-Trust
one, on the bytes of ``wresult`` as received.

Pure: values in, a URL or typed values out, no I/O.  Reading the POST, a form
from the internet, raises only :class:`~bridge.errors.BridgeError` subclasses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from lxml import etree

from bridge.errors import (
    AccessDenied,
    AssertionRejected,
    BridgeError,
    IdpProtocolError,
    IdpRejectedRequest,
    LoginRefused,
    XmlRejected,
)
from bridge.idp.wstrust.messages import (
    NS_SAML11,
    NS_SAML20,
    NS_SOAP11,
    NS_SOAP12,
    NS_TRUST13,
    NS_TRUST2005,
    RSTR_MAX_BYTES,
    RstrResult,
    parse_fault,
    read_requested_token,
)
from bridge.xml.safe import parse_untrusted

log = logging.getLogger(__name__)

WA_SIGNIN = "wsignin1.0"
ADFS_PASSIVE_PATH = "/adfs/ls/"
MAX_WRESULT_CHARS = RSTR_MAX_BYTES  # each character is at least one byte: the byte cap is checked after

_OUR_PARAMETERS = frozenset({"wa", "wtrealm", "wctx", "wreply", "username"})
_TRUST_NAMESPACES = (NS_TRUST13, NS_TRUST2005)
_ASSERTION_TAGS = (f"{{{NS_SAML11}}}Assertion", f"{{{NS_SAML20}}}Assertion")


@dataclass(frozen=True, kw_only=True, slots=True)
class WsFedAnswer:
    """A ``wsignin1.0`` answer whose wresult holds one SAML token, ready for ``validate_assertion``."""

    wresult: bytes  # the wresult field as received (UTF-8): the signature is checked on these bytes
    token: RstrResult  # its token facts, and the tree parsed from ``wresult``
    context: str | None  # wctx, as AD FS handed it back


def signin_url(*, passive_url: str, realm: str, reply_url: str, state: str, login_hint: str | None = None) -> str:
    """The passive endpoint's sign-in URL: ``wa``, ``wtrealm``, ``wctx``, ``wreply`` (and ``username``).

    ``wtrealm`` is the relying party trust's identifier (our ``applies_to``),
    ``wreply`` where AD FS posts the answer (it must be an endpoint of that trust),
    ``username`` pre-fills AD FS's sign-in form.  A query the passive URL already
    has is kept, minus these names.
    """
    ours: list[tuple[str, str]] = [("wa", WA_SIGNIN), ("wtrealm", realm), ("wctx", state), ("wreply", reply_url)]
    if login_hint:
        ours.append(("username", login_hint))
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in ours)
    parts = urlsplit(passive_url)
    kept = [item for item in parts.query.split("&") if item and item.split("=", 1)[0] not in _OUR_PARAMETERS]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join([*kept, query]), ""))


def read_wsfed_post(form: Mapping[str, str]) -> WsFedAnswer:
    """The POST AD FS sends to ``wreply``: the token it holds, or the error it stands for.

    ``wa`` must be ``wsignin1.0``; ``wresult`` a RequestSecurityTokenResponse (the
    2005 namespace AD FS uses, or a WS-Trust 1.3 collection holding one) with
    exactly one RequestedSecurityToken holding exactly one SAML assertion, and no
    other assertion anywhere (signature wrapping).  A SOAP fault in its place is
    the IdP's refusal.  The signature is not checked here.
    """
    try:
        return _read(form)
    except BridgeError:
        raise
    except Exception as exc:  # a parser of untrusted input lets nothing else escape
        log.exception("unexpected failure reading a WS-Federation answer")
        raise IdpProtocolError("the WS-Federation answer could not be read") from exc


def _read(form: Mapping[str, str]) -> WsFedAnswer:
    if form.get("wa") != WA_SIGNIN:
        raise IdpProtocolError("the POST is not a WS-Federation sign-in answer (wa is not wsignin1.0)")
    text = form.get("wresult")
    if text is None or not text.strip():
        raise IdpProtocolError("the WS-Federation answer holds no wresult")
    if len(text) > MAX_WRESULT_CHARS:
        raise AssertionRejected("malformed", f"the wresult of {len(text)} characters is over the limit")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates: no XML can hold them
        raise AssertionRejected("malformed", "the wresult is not text") from exc
    try:
        root = parse_untrusted(raw, what="wresult", max_bytes=RSTR_MAX_BYTES)
    except XmlRejected as exc:
        reason = "doctype" if "DOCTYPE" in str(exc) else "malformed"
        raise AssertionRejected(reason, "the wresult was refused by the XML parser") from exc
    _refuse_fault(root)
    assertions = [el for tag in _ASSERTION_TAGS for el in root.iter(tag)]
    if len(assertions) > 1:
        raise AssertionRejected("wrapped", f"{len(assertions)} assertions in the wresult, expected 1")
    rstr = _the_response(root)
    requested = [el for ns in _TRUST_NAMESPACES for el in root.iter(f"{{{ns}}}RequestedSecurityToken")]
    if not requested:
        raise IdpProtocolError("the wresult holds no RequestedSecurityToken")
    if len(requested) > 1:
        raise AssertionRejected("wrapped", f"{len(requested)} RequestedSecurityToken elements, expected 1")
    if requested[0].getparent() is not rstr or etree.QName(requested[0]).namespace != etree.QName(rstr).namespace:
        raise AssertionRejected("wrapped", "the RequestedSecurityToken is not the RequestSecurityTokenResponse's")
    token = read_requested_token(rstr, requested[0], document=root)
    return WsFedAnswer(wresult=raw, token=token, context=form.get("wctx"))


def _the_response(root: etree._Element) -> etree._Element:
    """The RequestSecurityTokenResponse: the root (AD FS's 2005 form), or the one in a 1.3 collection."""
    name = etree.QName(root)
    if name.namespace not in _TRUST_NAMESPACES:
        raise IdpProtocolError("the wresult is not a WS-Trust RequestSecurityTokenResponse")
    if name.localname == "RequestSecurityTokenResponse":
        return root
    if name.localname != "RequestSecurityTokenResponseCollection":
        raise IdpProtocolError("the wresult is not a WS-Trust RequestSecurityTokenResponse")
    children = [el for el in root if isinstance(el.tag, str)]
    responses = [el for el in children if el.tag == f"{{{name.namespace}}}RequestSecurityTokenResponse"]
    if len(children) != 1 or len(responses) != 1:
        raise IdpProtocolError(f"the wresult collection holds {len(children)} elements, expected one RSTR")
    return responses[0]


def _refuse_fault(root: etree._Element) -> None:
    """A SOAP fault in wresult is the IdP's no: access denied, unless it names our configuration."""
    name = etree.QName(root)
    if name.namespace not in (NS_SOAP12, NS_SOAP11):
        return
    if name.localname == "Fault":
        raise AccessDenied("the IdP answered the browser sign-in with a SOAP fault",
                           cause="the IdP answered the browser sign-in with a SOAP fault")
    error = parse_fault(root)
    if error is None:
        raise IdpProtocolError("the wresult is a SOAP message, not a RequestSecurityTokenResponse")
    log.debug("AD FS answered the browser sign-in with a SOAP fault: %s", error.detail)
    if isinstance(error, IdpRejectedRequest):  # an unknown relying party, a setting of ours: say so
        raise error
    if isinstance(error, LoginRefused):  # in a browser, every refusal of the user is a plain no
        raise AccessDenied(f"the IdP refused the browser sign-in: {error.detail}",
                           cause="the IdP answered the browser sign-in with a SOAP fault")
    raise error
