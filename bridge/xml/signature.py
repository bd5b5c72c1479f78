"""Enveloped XML signatures for SAML tokens: signing (signxml; simulator, tests, signed AuthnRequests) and
pinned verification (our own narrow SAML-profile code over lxml's exclusive C14N and ``cryptography``).

Verification trusts only the certificates the tenant pinned, never the KeyInfo
in the document, and returns only the node the signature covers (re-parsed
from the canonical bytes whose digest was checked, so comments and unsigned
siblings are gone).  The shape of the signature is checked before any crypto: one
Reference, pointing at the Signature's own parent (enveloped), transforms
limited to enveloped-signature + exclusive C14N (XML-DSig 1.1 section 6.6).
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import hmac
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import cryptography.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.signer import XMLSigner

from bridge.errors import AssertionRejected
from bridge.xml.safe import DEFAULT_MAX_BYTES, full_text, parse_untrusted

log = logging.getLogger(__name__)
# signxml logs every canonicalized string at DEBUG: that is the whole signed
# token, which must never reach a log.
logging.getLogger("signxml").setLevel(logging.WARNING)

NS_DS = "http://www.w3.org/2000/09/xmldsig#"
NS_SAML1 = "urn:oasis:names:tc:SAML:1.0:assertion"
NS_SAML2 = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_SAMLP2 = "urn:oasis:names:tc:SAML:2.0:protocol"

_DS_SIGNATURE = f"{{{NS_DS}}}Signature"
_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_EXC_C14N = frozenset(
    {
        CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0.value,
        CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0_WITH_COMMENTS.value,
    }
)
# Attributes SAML uses as XML IDs: AssertionID (SAML 1.1), ID (SAML 2.0), Id (WS-Security).
_ID_ATTRIBUTES = ("AssertionID", "ID", "Id")


class SignatureAlgorithm(enum.Enum):
    """Signature algorithms a tenant policy may allow."""

    RSA_SHA256 = "rsa-sha256"
    RSA_SHA1 = "rsa-sha1"
    RSA_SHA512 = "rsa-sha512"
    ECDSA_SHA256 = "ecdsa-sha256"


_METHODS: dict[SignatureAlgorithm, SignatureMethod] = {
    SignatureAlgorithm.RSA_SHA256: SignatureMethod.RSA_SHA256,
    SignatureAlgorithm.RSA_SHA1: SignatureMethod.RSA_SHA1,
    SignatureAlgorithm.RSA_SHA512: SignatureMethod.RSA_SHA512,
    SignatureAlgorithm.ECDSA_SHA256: SignatureMethod.ECDSA_SHA256,
}
_BY_URI: dict[str, SignatureAlgorithm] = {m.value: a for a, m in _METHODS.items()}
_DIGESTS: dict[SignatureAlgorithm, DigestAlgorithm] = {
    SignatureAlgorithm.RSA_SHA256: DigestAlgorithm.SHA256,
    SignatureAlgorithm.RSA_SHA1: DigestAlgorithm.SHA1,
    SignatureAlgorithm.RSA_SHA512: DigestAlgorithm.SHA512,
    SignatureAlgorithm.ECDSA_SHA256: DigestAlgorithm.SHA256,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class SignaturePolicy:
    """What a tenant accepts from its IdP's signatures."""

    algorithms: frozenset[SignatureAlgorithm] = frozenset(
        {SignatureAlgorithm.RSA_SHA256, SignatureAlgorithm.RSA_SHA512}
    )
    # AD FS signing certs are long-lived self-signed ones; pinning is the trust decision.
    check_certificate_validity: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class VerifiedNode:
    """The node a verified signature covers, and how it was verified."""

    element: etree._Element  # detached copy, rebuilt from the canonical signed bytes
    algorithm: SignatureAlgorithm
    certificate_sha256: str  # hex fingerprint of the pinned certificate that verified it


class _Signer(XMLSigner):
    """signxml refuses SHA-1 in its constructor; its documented escape is to override this hook.

    Only the simulator and tests sign; AD FS SAML 1.1 tokens are rsa-sha1, so it must be reproducible.
    """

    def check_deprecated_methods(self) -> None:
        return None


def element_id(element: etree._Element) -> tuple[str, str]:
    """Return ``(attribute name, value)`` of the element's SAML ID attribute."""
    for name in _ID_ATTRIBUTES:
        value = element.get(name)
        if value is not None:
            return name, value
    raise ValueError(f"{element.tag} has none of the ID attributes {_ID_ATTRIBUTES}")


def sign_enveloped(
    element: etree._Element,
    *,
    key_pem: bytes,
    cert_pem: bytes,
    algorithm: SignatureAlgorithm = SignatureAlgorithm.RSA_SHA256,
) -> etree._Element:
    """Sign ``element`` with an enveloped signature; returns the signed element (a new tree).

    The Signature goes where the schema wants it: right after saml:Issuer for
    SAML 2.0 (saml-core section 2.3.3 / 3.2.1), last child for SAML 1.1.
    """
    id_name, id_value = element_id(element)
    work = etree.fromstring(etree.tostring(element, with_tail=False))
    placeholder = etree.Element(_DS_SIGNATURE, Id="placeholder", nsmap={"ds": NS_DS})
    if etree.QName(work).namespace in (NS_SAML2, NS_SAMLP2):
        issuer = work.find(f"{{{NS_SAML2}}}Issuer")
        if issuer is not None:
            issuer.addnext(placeholder)
        else:
            work.insert(0, placeholder)
    else:
        work.append(placeholder)
    signer = _Signer(
        signature_algorithm=_METHODS[algorithm],
        digest_algorithm=_DIGESTS[algorithm],
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signed: etree._Element = signer.sign(
        work,
        key=_private_key(key_pem),
        cert=cert_pem.decode("ascii"),
        reference_uri=f"#{id_value}",
        id_attribute=id_name,
    )
    return signed


@functools.lru_cache(maxsize=16)
def _private_key(key_pem: bytes) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    # Loading a PEM key validates the RSA key, ~70 ms: once per key, not per token.
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("signing key must be RSA or ECDSA")
    return key


@functools.lru_cache(maxsize=256)
def certificate_sha256(cert: x509.Certificate) -> str:
    """Hex SHA-256 fingerprint of a certificate's DER encoding (cached: pinned certs repeat)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def verify_signed_node(
    raw: bytes,
    signed_id: str,
    *,
    certificates: Sequence[x509.Certificate],
    policy: SignaturePolicy,
    now: datetime | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> VerifiedNode:
    """Verify the one ds:Signature that is a direct child of the element whose ID is ``signed_id``.

    ``raw`` is the document exactly as received.  Raises :class:`AssertionRejected`
    (or :class:`XmlRejected` when ``raw`` is not acceptable XML).
    """
    root = parse_untrusted(raw, what="signed document", max_bytes=max_bytes)
    return verify_in_tree(root, signed_id, certificates=certificates, policy=policy, now=now)


def verify_in_tree(
    root: etree._Element,
    signed_id: str,
    *,
    certificates: Sequence[x509.Certificate],
    policy: SignaturePolicy,
    now: datetime | None = None,
) -> VerifiedNode:
    """Like :func:`verify_signed_node`, on the tree just parsed (unmodified) from the received bytes.

    The tree is briefly changed (the Signature is detached for the digest, as the
    enveloped transform says) and restored before returning.
    """
    if not certificates:
        raise AssertionRejected("certificate_mismatch", "no certificate is pinned")
    signed = _find_by_id(root, signed_id)
    signature = _the_signature(signed)
    shape = _check_shape(signature, signed_id, policy)
    signed_info_c14n = _c14n(shape.signed_info, shape.signed_info_comments, shape.signed_info_prefixes)
    cert = _pinned_signer(signature, signed_info_c14n, shape, certificates, policy, now)
    # Bare-name "#id" references select the element without comments (XML-DSig 1.1 section 4.4.3.3),
    # whichever exclusive C14N flavour the transform names.
    payload = _c14n_without(signed, signature, shape.ref_prefixes)
    if not hmac.compare_digest(hashlib.new(shape.digest_name, payload).digest(), shape.digest_value):
        raise AssertionRejected("signature_invalid", "digest mismatch: the signed content was changed")
    try:
        element = etree.fromstring(payload, parser=_canonical_parser())
    except etree.XMLSyntaxError as exc:  # pragma: no cover - C14N output is well-formed
        raise AssertionRejected("signature_invalid", "canonical form does not parse") from exc
    log.debug("signature on %s verified with %s", signed_id, certificate_sha256(cert)[:16])
    return VerifiedNode(
        element=element, algorithm=shape.algorithm, certificate_sha256=certificate_sha256(cert)
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class _Shape:
    signed_info: etree._Element
    signed_info_comments: bool
    signed_info_prefixes: list[str] | None
    algorithm: SignatureAlgorithm
    ref_prefixes: list[str] | None
    digest_name: str
    digest_value: bytes
    signature_value: bytes


_HASHES: dict[SignatureAlgorithm, type[hashes.HashAlgorithm]] = {
    SignatureAlgorithm.RSA_SHA256: hashes.SHA256,
    SignatureAlgorithm.RSA_SHA1: hashes.SHA1,
    SignatureAlgorithm.RSA_SHA512: hashes.SHA512,
    SignatureAlgorithm.ECDSA_SHA256: hashes.SHA256,
}
_DIGEST_NAMES: dict[str, str] = {
    DigestAlgorithm.SHA1.value: "sha1",
    DigestAlgorithm.SHA256.value: "sha256",
    DigestAlgorithm.SHA512.value: "sha512",
}
_DS = {"ds": NS_DS, "ec": "http://www.w3.org/2001/10/xml-exc-c14n#"}


def _c14n_without(signed: etree._Element, signature: etree._Element, prefixes: list[str] | None) -> bytes:
    """The enveloped-signature transform: C14N of ``signed`` minus the Signature element.

    Only the element goes; the text after it stays (lxml would move it with the
    element), and the tree is put back exactly as it was.
    """
    index, tail = signed.index(signature), signature.tail
    previous = signature.getprevious()
    saved = previous.tail if previous is not None else signed.text
    if tail:
        if previous is not None:
            previous.tail = (saved or "") + tail
        else:
            signed.text = (saved or "") + tail
    signature.tail = None
    signed.remove(signature)
    try:
        return _c14n(signed, False, prefixes)
    finally:
        signed.insert(index, signature)
        signature.tail = tail
        if previous is not None:
            previous.tail = saved
        else:
            signed.text = saved


def _c14n(element: etree._Element, with_comments: bool, prefixes: list[str] | None) -> bytes:
    try:
        return etree.tostring(
            element,
            method="c14n",
            exclusive=True,
            with_comments=with_comments,
            inclusive_ns_prefixes=prefixes,
        )
    except (etree.C14NError, ValueError) as exc:  # e.g. a relative namespace URI (C14N 1.0 section 2.3)
        raise AssertionRejected("signature_invalid", "the signed content cannot be canonicalized") from exc


_local = threading.local()


def _canonical_parser() -> etree.XMLParser:
    """One parser per thread (lxml parsers are reusable but not thread-safe); a new one per token cost as
    much as the parse."""
    parser: etree.XMLParser | None = getattr(_local, "canonical_parser", None)
    if parser is None:
        parser = _local.canonical_parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, remove_comments=False)
    return parser


def _find_by_id(root: etree._Element, signed_id: str) -> etree._Element:
    """The one element carrying ``signed_id`` in an ID attribute; a duplicate is a wrapping attempt."""
    found: list[etree._Element] = []
    hits = _ATTRS_EQUAL(root, v=signed_id)
    for hit in hits if isinstance(hits, list) else ():
        name = getattr(hit, "attrname", None)
        owner = hit.getparent() if isinstance(hit, etree._ElementUnicodeResult) else None
        if (isinstance(name, str) and name.rpartition("}")[2] in _ID_ATTRIBUTES and owner is not None
                and not any(owner is seen for seen in found)):
            found.append(owner)
    if not found:
        raise AssertionRejected("signature_missing", "no element has the signed ID")
    if len(found) > 1:
        raise AssertionRejected("wrapped", "the signed ID occurs more than once")
    element = found[0]
    if not any(element.get(n) == signed_id for n in _ID_ATTRIBUTES):
        raise AssertionRejected("wrapped", "the signed ID is in a namespaced attribute")
    return element


# Every attribute whose value is the ID; the names (ID, AssertionID, Id in any namespace) are then
# checked in Python.  A predicate on local-name() of every attribute took four times as long.
_ATTRS_EQUAL = etree.XPath("//@*[.=$v]")


def _the_signature(signed: etree._Element) -> etree._Element:
    signatures = signed.findall(_DS_SIGNATURE)
    if not signatures:
        raise AssertionRejected("signature_missing", "no enveloped signature on the signed node")
    if len(signatures) > 1:
        raise AssertionRejected("signature_invalid", "more than one signature on the signed node")
    return signatures[0]


def _one(parent: etree._Element, local: str) -> etree._Element:
    """The one ``ds:<local>`` child of ``parent``."""
    found = list(parent.iterchildren(_DS_PREFIX + local))
    if len(found) != 1:
        raise AssertionRejected("signature_invalid", f"{local} missing or repeated")
    return found[0]


_DS_PREFIX = f"{{{NS_DS}}}"


def _prefixes(transform: etree._Element) -> list[str] | None:
    inclusive = transform.findall("ec:InclusiveNamespaces", _DS)
    if not inclusive:
        return None
    if len(inclusive) > 1:
        raise AssertionRejected("signature_invalid", "InclusiveNamespaces repeated")
    prefix_list = (inclusive[0].get("PrefixList") or "").split()
    return [p for p in prefix_list if p != "#default"] or None


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AssertionRejected("signature_invalid", f"{what} is not base64") from exc


def _check_shape(signature: etree._Element, signed_id: str, policy: SignaturePolicy) -> _Shape:
    """Refuse every signature shape but the SAML profile's, before any crypto (saml-core section 5.4)."""
    signed_info = _one(signature, "SignedInfo")
    c14n = _one(signed_info, "CanonicalizationMethod")
    if c14n.get("Algorithm") not in _EXC_C14N:
        raise AssertionRejected("signature_algorithm", "SignedInfo canonicalization is not exclusive C14N")
    method = _one(signed_info, "SignatureMethod")
    algorithm = _BY_URI.get(method.get("Algorithm") or "")
    if algorithm is None or algorithm not in policy.algorithms:
        raise AssertionRejected("signature_algorithm", "signature method not allowed by policy")
    reference = _one(signed_info, "Reference")
    if reference.get("URI") != f"#{signed_id}":
        raise AssertionRejected("wrapped", "the reference does not name the signature's parent")
    transforms = _one(reference, "Transforms").findall("ds:Transform", _DS)
    names = [t.get("Algorithm") for t in transforms]
    if len(names) != 2 or names[0] != _ENVELOPED or names[1] not in _EXC_C14N or len(transforms[0]):
        raise AssertionRejected("signature_algorithm", "transforms other than enveloped + exclusive C14N")
    digest_uri = _one(reference, "DigestMethod").get("Algorithm") or ""
    if digest_uri not in {_DIGESTS[a].value for a in policy.algorithms} or digest_uri not in _DIGEST_NAMES:
        raise AssertionRejected("signature_algorithm", "digest method not allowed by policy")
    return _Shape(
        signed_info=signed_info,
        signed_info_comments=c14n.get("Algorithm", "").endswith("#WithComments"),
        signed_info_prefixes=_prefixes(c14n),
        algorithm=algorithm,
        ref_prefixes=_prefixes(transforms[1]),
        digest_name=_DIGEST_NAMES[digest_uri],
        digest_value=_b64(full_text(_one(reference, "DigestValue")), "DigestValue"),
        signature_value=_b64(
            full_text(_one(signature, "SignatureValue")), "SignatureValue"
        ),
    )


def _pinned_signer(
    signature: etree._Element,
    signed_info_c14n: bytes,
    shape: _Shape,
    certificates: Sequence[x509.Certificate],
    policy: SignaturePolicy,
    now: datetime | None,
) -> x509.Certificate:
    """The first pinned certificate whose key verifies SignedInfo; KeyInfo only orders the attempts."""
    hinted = _keyinfo_fingerprint(signature)
    ordered = sorted(certificates, key=lambda c: certificate_sha256(c) != hinted)
    when = now or datetime.now(UTC)
    out_of_validity = 0
    for cert in ordered:
        if policy.check_certificate_validity and not (
            cert.not_valid_before_utc <= when <= cert.not_valid_after_utc
        ):
            out_of_validity += 1
            continue
        if _key_verifies(cert, shape.signature_value, signed_info_c14n, shape.algorithm):
            return cert
    if out_of_validity:
        raise AssertionRejected(
            "certificate_mismatch", f"{out_of_validity} pinned certificate(s) outside validity"
        )
    if hinted is not None and any(certificate_sha256(c) == hinted for c in certificates):
        raise AssertionRejected("signature_invalid", "signature value does not verify")
    raise AssertionRejected("certificate_mismatch", "no pinned certificate verifies the signature")


@functools.lru_cache(maxsize=256)
def _public_key(cert: x509.Certificate) -> CertificatePublicKeyTypes:
    """The certificate's public key, decoded once per pinned certificate rather than once per token."""
    return cert.public_key()


def _key_verifies(cert: x509.Certificate, value: bytes, data: bytes, algorithm: SignatureAlgorithm) -> bool:
    key = _public_key(cert)
    digest = _HASHES[algorithm]()
    try:
        if algorithm is SignatureAlgorithm.ECDSA_SHA256:
            if not isinstance(key, ec.EllipticCurvePublicKey) or len(value) % 2:
                return False
            half = len(value) // 2  # XML-DSig carries r || s, not DER (RFC 4050 section 3.3)
            der = encode_dss_signature(
                int.from_bytes(value[:half], "big"), int.from_bytes(value[half:], "big")
            )
            key.verify(der, data, ec.ECDSA(digest))
        else:
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            key.verify(value, data, PKCS1v15(), digest)
    except (cryptography.exceptions.InvalidSignature, ValueError):
        return False
    return True


def _keyinfo_fingerprint(signature: etree._Element) -> str | None:
    """Fingerprint of the KeyInfo certificate: orders pinned certs and names errors, nothing more."""
    text = full_text(signature.find("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _DS))
    if not text:
        return None
    if len(text) <= _CACHED_CERT_CHARS:
        return _cached_fingerprint(text)
    return _fingerprint_of_base64(text)


_CACHED_CERT_CHARS = 8192  # a real signing certificate is 1-3 KB of base64; bigger ones are not cached


@functools.lru_cache(maxsize=64)
def _cached_fingerprint(text: str) -> str | None:
    """An IdP sends the same certificate in every token: decode and hash it once."""
    return _fingerprint_of_base64(text)


def _fingerprint_of_base64(text: str) -> str | None:
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return hashlib.sha256(der).hexdigest()
