"""The SAML 2.0 bindings of Web Browser SSO, IdP side: reading ``SAMLRequest`` and checking its signature.

Pure: strings in, bytes or verdicts out, project errors only.

- HTTP-Redirect (saml-bindings 3.4): ``SAMLRequest`` = base64 of the raw
  DEFLATE of the AuthnRequest; when signed, ``SigAlg`` and ``Signature`` cover
  ``SAMLRequest=…&RelayState=…&SigAlg=…`` built from the values *as they were
  URL-encoded in the query* (3.4.4.1), so the check works on the raw query
  string, never on re-encoded values.
- HTTP-POST (3.5): ``SAMLRequest`` = base64 of the AuthnRequest, signed (if at
  all) by an enveloped XML signature.

Both inflate and decode within bounds before any XML parser sees the request.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import unquote_plus

import cryptography.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree

from bridge.errors import RequestError, XmlRejected
from bridge.xml.safe import full_text, parse_untrusted
from bridge.xml.signature import NS_DS, NS_SAML2, SignatureAlgorithm, SignaturePolicy, verify_in_tree

MAX_AUTHN_REQUEST_BYTES = 64 * 1024
MAX_ENCODED_CHARS = 128 * 1024
MAX_RELAY_STATE_CHARS = 4096  # saml-bindings asks SPs for at most 80 bytes; refuse only the absurd
_SIGNED_PARAMETERS = ("SAMLRequest", "RelayState", "SigAlg")
_HASHES: dict[str, tuple[type[hashes.HashAlgorithm], bool]] = {  # SigAlg URI -> (hash, is ECDSA)
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1": (hashes.SHA1, False),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": (hashes.SHA256, False),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": (hashes.SHA512, False),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": (hashes.SHA256, True),
}
# The SP chooses its algorithm; the simulator is not the place to refuse SHA-1.
_ANY_ALGORITHM = SignaturePolicy(algorithms=frozenset(SignatureAlgorithm))


@dataclass(frozen=True, kw_only=True, slots=True)
class RedirectMessage:
    """The HTTP-Redirect binding's parameters, decoded, with the octets a signature covers."""

    saml_request: str
    relay_state: str | None
    sig_alg: str | None
    signature: str | None = field(repr=False)
    signed_octets: bytes = field(repr=False)

    @property
    def is_signed(self) -> bool:
        return self.sig_alg is not None or self.signature is not None


def read_redirect_query(raw_query: str) -> RedirectMessage:
    """The binding's parameters from the raw (still URL-encoded) query string; RequestError if unusable."""
    raw: dict[str, str] = {}
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name = unquote_plus(name)
        if name in raw:
            raise RequestError(f"{name} is given twice")
        raw[name] = value
    if not raw.get("SAMLRequest"):
        raise RequestError("no SAMLRequest in the query")
    decoded = {name: unquote_plus(value) for name, value in raw.items()}
    if len(decoded["SAMLRequest"]) > MAX_ENCODED_CHARS:
        raise RequestError("SAMLRequest is too long")
    relay_state = decoded.get("RelayState")
    if relay_state is not None and len(relay_state) > MAX_RELAY_STATE_CHARS:
        raise RequestError("RelayState is too long")
    signed = "&".join(f"{name}={raw[name]}" for name in _SIGNED_PARAMETERS if name in raw)
    return RedirectMessage(
        saml_request=decoded["SAMLRequest"],
        relay_state=relay_state,
        sig_alg=decoded.get("SigAlg"),
        signature=decoded.get("Signature"),
        signed_octets=signed.encode("utf-8"),
    )


def redirect_signature_valid(message: RedirectMessage, certificates: Sequence[x509.Certificate]) -> bool:
    """Whether ``Signature`` verifies over the signed octets with one of the SP's certificates."""
    if message.sig_alg is None or message.signature is None:
        return False
    algorithm = _HASHES.get(message.sig_alg)
    if algorithm is None:
        return False
    try:
        value = base64.b64decode("".join(message.signature.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    digest, is_ecdsa = algorithm
    for cert in certificates:
        key = cert.public_key()
        try:
            if is_ecdsa and isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(value, message.signed_octets, ec.ECDSA(digest()))
                return True
            if not is_ecdsa and isinstance(key, rsa.RSAPublicKey):
                key.verify(value, message.signed_octets, padding.PKCS1v15(), digest())
                return True
        except cryptography.exceptions.InvalidSignature:
            continue
    return False


def inflate_request(encoded: str) -> bytes:
    """The AuthnRequest XML of a Redirect ``SAMLRequest`` (base64, raw DEFLATE), bounded."""
    compressed = _b64(encoded)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        xml = inflater.decompress(compressed, MAX_AUTHN_REQUEST_BYTES)
    except zlib.error as exc:
        raise RequestError("SAMLRequest is not DEFLATE-compressed") from exc
    if inflater.unconsumed_tail:
        raise RequestError("SAMLRequest inflates beyond the size limit")
    return xml


def deflate_request(xml: bytes) -> str:
    """The Redirect binding's encoding of ``xml`` (for pysaml2, after the simulator's own checks)."""
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return base64.b64encode(compressor.compress(xml) + compressor.flush()).decode("ascii")


def decode_posted_request(encoded: str) -> bytes:
    """The AuthnRequest XML of a POSTed ``SAMLRequest`` (base64), bounded."""
    if len(encoded) > MAX_ENCODED_CHARS:
        raise RequestError("SAMLRequest is too long")
    return _b64(encoded)


def _b64(encoded: str) -> bytes:
    try:
        return base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError("SAMLRequest is not base64") from exc


@dataclass(frozen=True, kw_only=True, slots=True)
class CheckedRequest:
    """An AuthnRequest after the simulator's own checks, ready for pysaml2."""

    xml: bytes  # without an enveloped signature (already checked, or uncheckable)
    issuer: str
    had_signature: bool


def parse_request(xml: bytes) -> etree._Element:
    """The AuthnRequest's root element, parsed safely; RequestError for anything unreadable."""
    try:
        return parse_untrusted(xml, what="AuthnRequest", max_bytes=MAX_AUTHN_REQUEST_BYTES)
    except XmlRejected as exc:
        raise RequestError(exc.detail) from exc


def request_issuer(root: etree._Element) -> str:
    issuer = full_text(root.find(f"{{{NS_SAML2}}}Issuer")).strip()
    if not issuer:
        raise RequestError("AuthnRequest has no Issuer")
    return issuer


def check_embedded_signature(
    root: etree._Element, certificates: Sequence[x509.Certificate], *, now: datetime
) -> CheckedRequest:
    """Verify the request's enveloped signature with the SP's certificates (when there are any); strip it.

    pysaml2 re-serialises a request before verifying it, which breaks signatures
    made by other libraries, so the check is made here on the parsed tree and
    pysaml2 is handed the request without it.  Raises AssertionRejected when a
    signature is present, the SP's certificates are known, and it does not verify.
    """
    issuer = request_issuer(root)
    signature = root.find(f"{{{NS_DS}}}Signature")
    if signature is not None and certificates:
        verify_in_tree(root, root.get("ID") or "", certificates=certificates, policy=_ANY_ALGORITHM, now=now)
    if signature is not None:
        root.remove(signature)
    return CheckedRequest(
        xml=bytes(etree.tostring(root, encoding="UTF-8", xml_declaration=True)),
        issuer=issuer,
        had_signature=signature is not None,
    )
