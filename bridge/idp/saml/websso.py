"""SAML 2.0 Web Browser SSO, SP side (saml-profiles 4.1): the redirect out, the POSTed answer back.

A password typed at a device cannot satisfy MFA; the user's phone browser can.
The bridge (the SP) sends that browser to the IdP with an AuthnRequest in the
HTTP-Redirect binding (saml-bindings 3.4) and takes the IdP's answer from the
HTTP-POST binding (3.5) at its ACS.  The answer is checked exactly like an ECP
one (:mod:`bridge.idp.saml.response`: InResponseTo, Destination, status, one
assertion, decryption), then by the same assertion validator.

Pure: values in, a URL or typed values out, no I/O.  Reading the POST, a form
from the internet, raises only :class:`~bridge.errors.BridgeError` subclasses:
:class:`~bridge.errors.AssertionRejected` for an answer that fails a check,
:class:`~bridge.errors.AccessDenied` for the IdP's refusal.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote, urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from lxml import etree

from bridge.errors import AccessDenied, AssertionRejected, BridgeError, IdpProtocolError, XmlRejected
from bridge.idp.browser import MAX_STATE_CHARS
from bridge.idp.saml.ecp import authn_request_element, issue_instant, new_request_id
from bridge.idp.saml.metadata import BINDING_HTTP_POST
from bridge.idp.saml.response import (
    RESPONSE_TAG,
    STATUS_PREFIX,
    TakenAssertion,
    check_addressing,
    read_status,
    take_assertion,
)
from bridge.xml.safe import parse_untrusted

log = logging.getLogger(__name__)

NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
SIG_ALG_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
MAX_RELAY_STATE_BYTES = MAX_STATE_CHARS  # saml-bindings 3.4.3: at most 80 bytes

MAX_POST_RESPONSE_BYTES = 512 * 1024  # decoded; an encrypted assertion grows by base64 inside the XML too
# base64 of the cap, plus room for the line breaks some IdPs insert every 64 or 76 characters.
MAX_POST_RESPONSE_CHARS = (MAX_POST_RESPONSE_BYTES + 2) // 3 * 4 * 77 // 76 + 4

_OUR_PARAMETERS = frozenset({"SAMLRequest", "RelayState", "SigAlg", "Signature"})
_BASE64_SPACE = re.compile(r"[ \t\r\n]+")
# saml-core 3.2.2.2: the status codes a cause may name (the IdP's own codes are its text: not recorded).
_KNOWN_STATUS = frozenset({
    "Success", "Requester", "Responder", "VersionMismatch", "AuthnFailed", "InvalidAttrNameOrValue",
    "InvalidNameIDPolicy", "NoAuthnContext", "NoAvailableIDP", "NoPassive", "NoSupportedIDP", "PartialLogout",
    "ProxyCountExceeded", "RequestDenied", "RequestUnsupported", "RequestVersionDeprecated",
    "RequestVersionTooHigh", "RequestVersionTooLow", "ResourceNotRecognized", "TooManyResponses",
    "UnknownAttrProfile", "UnknownPrincipal", "UnsupportedBinding",
})


@dataclass(frozen=True, kw_only=True, slots=True)
class BrowserAuthnRequest:
    """The AuthnRequest for the browser and the id its Response must answer (InResponseTo)."""

    request_id: str
    xml: bytes  # the serialized samlp:AuthnRequest, unsigned (the Redirect binding signs the query)
    issued_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class PostedResponse:
    """A successful samlp:Response from the ACS form, checked up to the assertion's own validation.

    ``response_xml`` is the decoded SAMLResponse as received; ``assertion`` is what
    ``validate_assertion`` is to check (that same document, or the decrypted assertion).
    """

    response_xml: bytes
    assertion: TakenAssertion
    # The tree parsed from ``response_xml``, so the validator need not parse it again.
    document: etree._Element = field(repr=False, compare=False)


def build_browser_authn_request(
    *,
    sp_entity_id: str,
    acs_url: str,
    sso_url: str,
    now: datetime,
    name_id_format: str | None = NAMEID_EMAIL,
    request_id: str | None = None,
) -> BrowserAuthnRequest:
    """Our AuthnRequest asking for an HTTP-POST answer at ``acs_url`` (saml-profiles 4.1.4.1).

    No Subject is sent as a login hint: in SAML it is a demand, not a hint
    (saml-core 3.4.1.4: the IdP must authenticate exactly that subject or fail),
    and Entra ID refuses any request carrying one.  The email typed is checked
    against the signed subject afterwards instead.
    """
    rid = request_id if request_id is not None else new_request_id()
    issued = issue_instant(now)
    request = authn_request_element(
        request_id=rid, issued=issued, destination=sso_url, protocol_binding=BINDING_HTTP_POST,
        acs_url=acs_url, sp_entity_id=sp_entity_id, name_id_format=name_id_format,
    )
    return BrowserAuthnRequest(request_id=rid, xml=etree.tostring(request, encoding="UTF-8"), issued_at=issued)


def redirect_url(*, sso_url: str, request_xml: bytes, relay_state: str, signing_key_pem: bytes | None = None) -> str:
    """The IdP URL carrying ``request_xml`` in the HTTP-Redirect binding (saml-bindings 3.4.4.1).

    DEFLATE (raw, RFC 1951), base64, URL-encoded ``SAMLRequest``; ``RelayState``
    when given.  With ``signing_key_pem`` (the SP's RSA key): ``SigAlg`` rsa-sha256
    and ``Signature`` over exactly the encoded ``SAMLRequest=…&RelayState=…&SigAlg=…``
    string the URL carries, as the IdP will verify it.  A query the SSO URL
    already has is kept (minus any of these four names), outside the signature.
    """
    if len(relay_state.encode("utf-8")) > MAX_RELAY_STATE_BYTES:
        raise BridgeError(f"RelayState of {len(relay_state.encode('utf-8'))} bytes is over the "
                          f"{MAX_RELAY_STATE_BYTES}-byte limit of saml-bindings 3.4.3")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(request_xml) + compressor.flush()
    ours: list[tuple[str, str]] = [("SAMLRequest", base64.b64encode(deflated).decode("ascii"))]
    if relay_state:
        ours.append(("RelayState", relay_state))
    if signing_key_pem is not None:
        ours.append(("SigAlg", SIG_ALG_RSA_SHA256))
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in ours)
    if signing_key_pem is not None:
        signature = _rsa_key(signing_key_pem).sign(query.encode("ascii"), PKCS1v15(), hashes.SHA256())
        query += "&Signature=" + quote(base64.b64encode(signature).decode("ascii"), safe="")
    parts = urlsplit(sso_url)
    kept = [item for item in parts.query.split("&") if item and item.split("=", 1)[0] not in _OUR_PARAMETERS]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join([*kept, query]), ""))


@functools.lru_cache(maxsize=8)
def _rsa_key(key_pem: bytes) -> rsa.RSAPrivateKey:
    """The SP's private key, loaded once (loading validates the RSA key: tens of milliseconds)."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise BridgeError("the SP key cannot be loaded to sign the AuthnRequest") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise BridgeError("the SP key is not an RSA key: the Redirect binding is signed with rsa-sha256")
    return key


def read_post_response(
    form: Mapping[str, str], *, request_id: str, acs_url: str, sp_key_pem: bytes | None
) -> PostedResponse:
    """The IdP's HTTP-POST answer (the ACS form as received): checked, or the error it stands for.

    Order: the form field (strict base64, size cap), the XML (no DOCTYPE), the
    Response's Version, InResponseTo and Destination, then its status; a refusal
    for another request is not believed.  Only then the one assertion.
    """
    try:
        return _read(form, request_id=request_id, acs_url=acs_url, sp_key_pem=sp_key_pem)
    except BridgeError:
        raise
    except Exception as exc:  # a parser of untrusted input lets nothing else escape
        log.exception("unexpected failure reading a SAMLResponse")
        raise IdpProtocolError("the SAMLResponse could not be read") from exc


def _read(form: Mapping[str, str], *, request_id: str, acs_url: str, sp_key_pem: bytes | None) -> PostedResponse:
    raw = _decode_field(form.get("SAMLResponse"))
    try:
        root = parse_untrusted(raw, what="SAMLResponse", max_bytes=MAX_POST_RESPONSE_BYTES)
    except XmlRejected as exc:
        reason = "doctype" if "DOCTYPE" in str(exc) else "malformed"
        raise AssertionRejected(reason, "the SAMLResponse was refused by the XML parser") from exc
    if root.tag != RESPONSE_TAG:
        raise AssertionRejected("malformed", "the SAMLResponse is not a samlp:Response")
    status = read_status(root)
    if not status.success:
        _refused(root, status.codes, status.detail(), request_id=request_id, acs_url=acs_url)
    check_addressing(root, request_id=request_id, acs_url=acs_url)
    taken = take_assertion(root, root, raw, sp_key_pem=sp_key_pem, max_bytes=MAX_POST_RESPONSE_BYTES)
    return PostedResponse(response_xml=raw, assertion=taken, document=root)


def _decode_field(value: str | None) -> bytes:
    """The SAMLResponse form field: base64 (line breaks tolerated, nothing else), within the cap."""
    if value is None or not value.strip():
        raise IdpProtocolError("the POST holds no SAMLResponse")
    if len(value) > MAX_POST_RESPONSE_CHARS:
        raise AssertionRejected("malformed", f"the SAMLResponse of {len(value)} characters is over the limit")
    try:
        return base64.b64decode(_BASE64_SPACE.sub("", value), validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: characters outside ASCII
        raise AssertionRejected("malformed", "the SAMLResponse is not base64") from exc


def _refused(response: etree._Element, codes: tuple[str, ...], detail: str, *, request_id: str,
             acs_url: str) -> None:
    """A non-success status: the IdP's no (AccessDenied), once it is known to answer our request.

    In a browser the IdP could ask for any factor, so unlike the password path
    no status means "MFA required" or "wrong password" here: the user cancelled,
    failed at the IdP, or its policy said no.  An IdP that could not read our
    request may omit InResponseTo; one that names another request is not believed.
    """
    if response.get("Version") != "2.0":
        raise IdpProtocolError("samlp:Response without Version 2.0")
    answered = response.get("InResponseTo")
    if answered is not None and answered != request_id:
        raise AssertionRejected("in_response_to", "the Response answers another request")
    destination = response.get("Destination")
    if destination is not None and destination != acs_url:
        raise AssertionRejected("destination", "the Response is addressed to another consumer URL")
    log.debug("IdP refused the browser sign-in: %s", detail)
    named = "/".join(_status_name(code) for code in codes)
    raise AccessDenied(f"the IdP refused the browser sign-in: {detail}", cause=f"the IdP answered SAML status {named}")


def _status_name(code: str) -> str:
    """A saml-core status code's short name for the audit trail; any other value is the IdP's text: "other"."""
    local = code.removeprefix(STATUS_PREFIX)
    return local if code.startswith(STATUS_PREFIX) and local in _KNOWN_STATUS else "other"
