"""Enveloped signatures: signing, pinned verification, and the shapes the verifier refuses."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from signxml import SignatureConfiguration, XMLVerifier  # type: ignore[attr-defined]

from bridge.errors import AssertionRejected, XmlRejected
from bridge.idp.assertion import SamlVersion
from bridge.idpsim.tokens import TokenClaims, build_saml11_assertion, build_saml20_assertion, signed_token
from bridge.xml.signature import (
    NS_DS,
    NS_SAML1,
    NS_SAML2,
    SignatureAlgorithm,
    SignaturePolicy,
    certificate_sha256,
    sign_enveloped,
    verify_in_tree,
    verify_signed_node,
)
from tests.keys import make_key_and_cert
from tests.paths import VECTORS

DS = {"ds": NS_DS}
ALL = SignaturePolicy(algorithms=frozenset(SignatureAlgorithm))
DEFAULT = SignaturePolicy()
NOW = datetime.now(UTC)


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


KEY, CERT_PEM = make_key_and_cert("idp-signer")
CERT = _cert(CERT_PEM)
OTHER_KEY, OTHER_CERT_PEM = make_key_and_cert("attacker")
OTHER_CERT = _cert(OTHER_CERT_PEM)


def _claims(**overrides: object) -> TokenClaims:
    values: dict[str, object] = {
        "issuer": "https://idp.example.org/adfs/services/trust",
        "audience": "urn:loginbridge",
        "subject": "alice@example.org",
        "issued_at": NOW,
    }
    values.update(overrides)
    return TokenClaims(**values)  # type: ignore[arg-type]


def _envelope(token: etree._Element) -> bytes:
    env = etree.Element("{urn:test:env}Envelope", nsmap={"e": "urn:test:env"})
    etree.SubElement(env, "{urn:test:env}Body").append(token)
    return etree.tostring(env)


def _id(token: etree._Element) -> str:
    return token.get("AssertionID") or token.get("ID") or ""


def _signed_doc(
    version: SamlVersion = SamlVersion.SAML20, algorithm: SignatureAlgorithm = SignatureAlgorithm.RSA_SHA256
) -> tuple[bytes, str]:
    token = signed_token(_claims(), version=version, key_pem=KEY, cert_pem=CERT_PEM, algorithm=algorithm)
    return _envelope(token), _id(token)


def _reason(
    raw: bytes, signed_id: str, *, certs: list[x509.Certificate] | None = None, policy: SignaturePolicy = ALL
) -> str:
    with pytest.raises(AssertionRejected) as info:
        verify_signed_node(raw, signed_id, certificates=certs or [CERT], policy=policy)
    return info.value.reason


@pytest.mark.parametrize("version", list(SamlVersion))
@pytest.mark.parametrize(
    "algorithm", [SignatureAlgorithm.RSA_SHA1, SignatureAlgorithm.RSA_SHA256, SignatureAlgorithm.RSA_SHA512]
)
def test_sign_then_verify(version: SamlVersion, algorithm: SignatureAlgorithm) -> None:
    raw, signed_id = _signed_doc(version, algorithm)
    node = verify_signed_node(raw, signed_id, certificates=[CERT], policy=ALL)
    assert node.algorithm is algorithm
    assert node.certificate_sha256 == certificate_sha256(CERT)
    assert _id(node.element) == signed_id
    # The enveloped signature is not part of what was signed.
    assert node.element.find("ds:Signature", DS) is None


def test_signature_placement_follows_the_schemas() -> None:
    saml2 = signed_token(_claims(), version=SamlVersion.SAML20, key_pem=KEY, cert_pem=CERT_PEM)
    assert [etree.QName(c).localname for c in saml2][:3] == ["Issuer", "Signature", "Subject"]
    saml1 = signed_token(_claims(), version=SamlVersion.SAML11, key_pem=KEY, cert_pem=CERT_PEM)
    assert etree.QName(saml1[-1]).localname == "Signature"
    reference = saml1.find("ds:Signature/ds:SignedInfo/ds:Reference", DS)
    assert reference is not None and reference.get("URI") == "#" + _id(saml1)
    transforms = [t.get("Algorithm") for t in saml1.iterfind(".//ds:Transform", DS)]
    assert transforms == [
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        "http://www.w3.org/2001/10/xml-exc-c14n#",
    ]
    assert saml1.find("ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate", DS) is not None


def test_sha1_refused_unless_policy_allows_it() -> None:
    raw, signed_id = _signed_doc(SamlVersion.SAML11, SignatureAlgorithm.RSA_SHA1)
    assert _reason(raw, signed_id, policy=DEFAULT) == "signature_algorithm"
    allowed = SignaturePolicy(algorithms=frozenset({SignatureAlgorithm.RSA_SHA1}))
    assert verify_signed_node(raw, signed_id, certificates=[CERT], policy=allowed).algorithm is (
        SignatureAlgorithm.RSA_SHA1
    )


def test_ecdsa_signatures_verify() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec-signer")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    token = signed_token(
        _claims(),
        version=SamlVersion.SAML20,
        key_pem=key_pem,
        cert_pem=cert_pem,
        algorithm=SignatureAlgorithm.ECDSA_SHA256,
    )
    raw = _envelope(token)
    policy = SignaturePolicy(algorithms=frozenset({SignatureAlgorithm.ECDSA_SHA256}))
    assert verify_signed_node(raw, _id(token), certificates=[cert], policy=policy).algorithm is (
        SignatureAlgorithm.ECDSA_SHA256
    )
    # An RSA certificate cannot verify an ECDSA signature: not ours.
    assert _reason(raw, _id(token), certs=[CERT], policy=policy) == "certificate_mismatch"


def test_tampered_content_is_refused() -> None:
    raw, signed_id = _signed_doc()
    assert (
        _reason(raw.replace(b"alice@example.org", b"mallory@example.org"), signed_id) == "signature_invalid"
    )


def test_tampered_signed_info_is_refused() -> None:
    raw, signed_id = _signed_doc()
    root = etree.fromstring(raw)
    digest = root.find(".//ds:DigestValue", DS)
    assert digest is not None and digest.text
    digest.text = ("B" if digest.text[0] != "B" else "C") + digest.text[1:]
    assert _reason(etree.tostring(root), signed_id) == "signature_invalid"


def test_signature_by_an_unpinned_key_is_refused_even_with_its_cert_in_keyinfo() -> None:
    token = signed_token(_claims(), version=SamlVersion.SAML20, key_pem=OTHER_KEY, cert_pem=OTHER_CERT_PEM)
    assert _reason(_envelope(token), _id(token)) == "certificate_mismatch"


def test_keyinfo_naming_the_pinned_cert_does_not_help_a_forger() -> None:
    token = signed_token(_claims(), version=SamlVersion.SAML20, key_pem=OTHER_KEY, cert_pem=OTHER_CERT_PEM)
    x509_el = token.find(".//ds:X509Certificate", DS)
    assert x509_el is not None
    x509_el.text = b"".join(CERT_PEM.splitlines()[1:-1]).decode()
    assert _reason(_envelope(token), _id(token)) == "signature_invalid"


def test_keyinfo_is_not_needed_the_pinned_cert_is_used() -> None:
    token = signed_token(_claims(), version=SamlVersion.SAML20, key_pem=KEY, cert_pem=CERT_PEM)
    key_info = token.find("ds:Signature/ds:KeyInfo", DS)
    assert key_info is not None
    signature = key_info.getparent()
    assert signature is not None
    signature.remove(key_info)  # KeyInfo is outside SignedInfo: removing it keeps the signature
    node = verify_signed_node(_envelope(token), _id(token), certificates=[CERT], policy=ALL)
    assert node.certificate_sha256 == certificate_sha256(CERT)


def test_rollover_second_pinned_certificate_verifies() -> None:
    raw, signed_id = _signed_doc()
    node = verify_signed_node(raw, signed_id, certificates=[OTHER_CERT, CERT], policy=ALL)
    assert node.certificate_sha256 == certificate_sha256(CERT)
    assert _reason(raw, signed_id, certs=[OTHER_CERT]) == "certificate_mismatch"


def test_no_pinned_certificate_is_refused() -> None:
    raw, signed_id = _signed_doc()
    with pytest.raises(AssertionRejected) as info:
        verify_signed_node(raw, signed_id, certificates=[], policy=ALL)
    assert info.value.reason == "certificate_mismatch"


def test_certificate_validity_is_a_policy_choice() -> None:
    old_key, old_pem = make_key_and_cert(
        "expired-signer", days=30, not_before=datetime(2014, 1, 1, tzinfo=UTC)
    )
    token = signed_token(_claims(), version=SamlVersion.SAML20, key_pem=old_key, cert_pem=old_pem)
    raw, cert = _envelope(token), _cert(old_pem)
    assert verify_signed_node(raw, _id(token), certificates=[cert], policy=ALL).element is not None
    strict = SignaturePolicy(algorithms=ALL.algorithms, check_certificate_validity=True)
    assert _reason(raw, _id(token), certs=[cert], policy=strict) == "certificate_mismatch"
    in_window = verify_signed_node(
        raw, _id(token), certificates=[cert], policy=strict, now=datetime(2014, 1, 15, tzinfo=UTC)
    )
    assert in_window.certificate_sha256 == certificate_sha256(cert)


def test_unsigned_node_is_signature_missing() -> None:
    token = build_saml20_assertion(_claims())
    assert _reason(_envelope(token), _id(token)) == "signature_missing"
    assert _reason(_envelope(token), "_no_such_id") == "signature_missing"


def test_duplicate_id_is_wrapping() -> None:
    token = signed_token(_claims(), version=SamlVersion.SAML20, key_pem=KEY, cert_pem=CERT_PEM)
    env = etree.fromstring(_envelope(token))
    decoy = etree.SubElement(env, "{urn:test:env}Decoy", ID=_id(token))
    decoy.text = "x"
    assert _reason(etree.tostring(env), _id(token)) == "wrapped"


def test_reference_to_another_node_is_wrapping() -> None:
    token = signed_token(_claims(), version=SamlVersion.SAML20, key_pem=KEY, cert_pem=CERT_PEM)
    signature = token.find("ds:Signature", DS)
    assert signature is not None
    holder = etree.Element(f"{{{NS_SAML2}}}Assertion", ID="_attacker", Version="2.0")
    etree.SubElement(holder, f"{{{NS_SAML2}}}Issuer").text = "x"
    holder.append(copy.deepcopy(signature))  # the signature moved onto another node
    env = etree.fromstring(_envelope(token))
    env.append(holder)
    assert _reason(etree.tostring(env), "_attacker") == "wrapped"


def _resign_with(token: etree._Element, mutate: Callable[[etree._Element], None]) -> bytes:
    """Change SignedInfo then re-sign it by hand, so only the shape check can refuse it."""
    signed_info = token.find("ds:Signature/ds:SignedInfo", DS)
    assert signed_info is not None
    mutate(signed_info)
    key = load_pem_private_key(KEY, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    c14n = etree.tostring(signed_info, method="c14n", exclusive=True)
    value = key.sign(c14n, PKCS1v15(), hashes.SHA256())
    sv = token.find("ds:Signature/ds:SignatureValue", DS)
    assert sv is not None
    sv.text = base64.b64encode(value).decode()
    return _envelope(token)


def _fresh() -> etree._Element:
    return signed_token(_claims(), version=SamlVersion.SAML20, key_pem=KEY, cert_pem=CERT_PEM)


def test_resign_helper_itself_yields_a_valid_signature() -> None:
    token = _fresh()
    raw = _resign_with(token, lambda si: None)
    assert verify_signed_node(raw, _id(token), certificates=[CERT], policy=ALL).element is not None


def test_extra_transform_is_refused() -> None:
    token = _fresh()

    def add_xpath(si: etree._Element) -> None:
        transforms = si.find("ds:Reference/ds:Transforms", DS)
        assert transforms is not None
        xpath = etree.SubElement(
            transforms, f"{{{NS_DS}}}Transform", Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"
        )
        etree.SubElement(xpath, f"{{{NS_DS}}}XPath").text = "not(ancestor-or-self::saml:Subject)"

    assert _reason(_resign_with(token, add_xpath), _id(token)) == "signature_algorithm"


def test_inclusive_c14n_is_refused() -> None:
    token = _fresh()

    def inclusive(si: etree._Element) -> None:
        method = si.find("ds:CanonicalizationMethod", DS)
        assert method is not None
        method.set("Algorithm", "http://www.w3.org/TR/2001/REC-xml-c14n-20010315")

    assert _reason(_resign_with(token, inclusive), _id(token)) == "signature_algorithm"


def test_two_references_are_refused() -> None:
    token = _fresh()

    def second(si: etree._Element) -> None:
        reference = si.find("ds:Reference", DS)
        assert reference is not None
        si.append(copy.deepcopy(reference))

    assert _reason(_resign_with(token, second), _id(token)) == "signature_invalid"


def test_namespaces_declared_on_ancestors_still_verify() -> None:
    token = _fresh()
    env = etree.Element("{urn:test:env}Envelope", nsmap={"e": "urn:test:env", "saml": NS_SAML2, "ds": NS_DS})
    etree.SubElement(env, "{urn:test:env}Body").append(token)
    etree.cleanup_namespaces(env)
    raw = etree.tostring(env)
    assert raw.count(b"xmlns:saml=") == 1  # the declaration lives on the envelope now
    assert verify_signed_node(raw, _id(token), certificates=[CERT], policy=ALL).element is not None


def test_comments_are_not_in_the_verified_node_and_text_is_whole() -> None:
    raw, signed_id = _signed_doc()
    injected = raw.replace(
        b"alice@example.org</saml:NameID>", b"alice@example.org<!-- x -->.evil</saml:NameID>"
    )
    assert injected != raw
    # The comment injection changes the text content, so the digest no longer matches ...
    assert _reason(injected, signed_id) == "signature_invalid"
    # ... while a comment that splits nothing is ignored by exclusive C14N, and removed from the result.
    harmless = raw.replace(b"</saml:NameID>", b"<!-- note --></saml:NameID>", 1)
    node = verify_signed_node(harmless, signed_id, certificates=[CERT], policy=ALL)
    assert not [c for c in node.element.iter() if isinstance(c, etree._Comment)]


def test_tree_is_restored_after_verification() -> None:
    raw, signed_id = _signed_doc()
    root = etree.fromstring(raw)
    before = etree.tostring(root)
    verify_in_tree(root, signed_id, certificates=[CERT], policy=ALL)
    assert etree.tostring(root) == before


def test_unsigned_builders_carry_their_ids() -> None:
    assert build_saml11_assertion(_claims(assertion_id="_fixed")).get("AssertionID") == "_fixed"
    assert build_saml20_assertion(_claims(assertion_id="_fixed")).get("ID") == "_fixed"
    assert build_saml11_assertion(_claims()).tag == f"{{{NS_SAML1}}}Assertion"


def test_sign_enveloped_signs_a_response_after_its_issuer() -> None:
    protocol = "urn:oasis:names:tc:SAML:2.0:protocol"
    response = etree.Element(f"{{{protocol}}}Response", nsmap={"samlp": protocol}, ID="_resp", Version="2.0")
    etree.SubElement(response, f"{{{NS_SAML2}}}Issuer").text = "https://idp.example.org"
    etree.SubElement(response, f"{{{protocol}}}Status")
    signed = sign_enveloped(response, key_pem=KEY, cert_pem=CERT_PEM)
    assert [etree.QName(c).localname for c in signed] == ["Issuer", "Signature", "Status"]
    node = verify_signed_node(etree.tostring(signed), "_resp", certificates=[CERT], policy=DEFAULT)
    assert node.element.tag == f"{{{protocol}}}Response"


def test_garbage_raises_xml_rejected() -> None:
    with pytest.raises(XmlRejected):
        verify_signed_node(b"\x00\xffnot xml", "_x", certificates=[CERT], policy=ALL)


# The verifier must never accept what signxml (the reference implementation) refuses.
_BASE_RAW, _BASE_ID = _signed_doc()
# We never read KeyInfo, while signxml schema-checks it: mutations there are not comparable.
_KEYINFO = range(_BASE_RAW.index(b"<ds:KeyInfo"), _BASE_RAW.index(b"</ds:KeyInfo>") + len(b"</ds:KeyInfo>"))


def _signxml_accepts(raw: bytes) -> bool:
    try:
        root = etree.fromstring(raw, parser=etree.XMLParser(resolve_entities=False))
        token = root.find(f".//{{{NS_SAML2}}}Assertion")
        if token is None:
            return False
        config = SignatureConfiguration(
            location="./", verification_time=CERT.not_valid_before_utc, ignore_ambiguous_key_info=True
        )
        XMLVerifier().verify(etree.tostring(token), x509_cert=CERT, id_attribute="ID", expect_config=config)
    except Exception:
        return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=len(_BASE_RAW) - 1), st.binary(min_size=0, max_size=2))
def test_never_accepts_what_signxml_refuses(position: int, replacement: bytes) -> None:
    raw = _BASE_RAW[:position] + replacement + _BASE_RAW[position + 1 :]
    if position in _KEYINFO:
        return
    try:
        verify_signed_node(raw, _BASE_ID, certificates=[CERT], policy=DEFAULT)
    except (AssertionRejected, XmlRejected):
        return
    assert _signxml_accepts(raw)


def test_signxml_agrees_on_the_unmodified_document() -> None:
    assert _signxml_accepts(_BASE_RAW)


def _vector(name: str) -> bytes:
    path = VECTORS / "adfs" / name
    if not path.is_file():
        pytest.skip(f"shared vectors not available at {VECTORS} (run beside ../shared)")
    return path.read_bytes()


def _embedded_cert(raw: bytes) -> x509.Certificate:
    text = etree.fromstring(raw).findtext(".//ds:X509Certificate", namespaces=DS)
    assert text
    pem = b"-----BEGIN CERTIFICATE-----\n" + "".join(text.split()).encode() + b"\n-----END CERTIFICATE-----\n"
    return _cert(pem)


def test_real_adfs_rstr_signature_verifies_with_sha1_policy() -> None:
    raw = _vector("adal-common.rstr.xml")
    sha1 = SignaturePolicy(algorithms=frozenset({SignatureAlgorithm.RSA_SHA1}))
    node = verify_signed_node(
        raw, "_bf137f90-7dd7-4668-8a39-8bf55eb52017", certificates=[_embedded_cert(raw)], policy=sha1
    )
    assert node.algorithm is SignatureAlgorithm.RSA_SHA1
    assert node.element.get("Issuer") == "http://fs.naturalcauses.com/adfs/services/trust"
    assert _reason(
        raw, "_bf137f90-7dd7-4668-8a39-8bf55eb52017", certs=[_embedded_cert(raw)], policy=DEFAULT
    ) == ("signature_algorithm")


def test_real_prettyprinted_rstr_does_not_verify() -> None:
    raw = _vector("adal-RSTR-prettyprinted.xml")
    assertion = etree.fromstring(raw).find(f".//{{{NS_SAML1}}}Assertion")
    assert assertion is not None
    signed_id = assertion.get("AssertionID", "")
    assert _reason(raw, signed_id, certs=[_embedded_cert(raw)]) == "signature_invalid"


def test_text_after_the_signature_stays_in_the_signed_content() -> None:
    """Pretty-printed IdPs sign with whitespace after ds:Signature; the enveloped transform keeps it."""
    from signxml import XMLSigner  # type: ignore[attr-defined]
    from signxml.algorithms import CanonicalizationMethod

    unsigned = build_saml20_assertion(_claims())
    etree.indent(unsigned)
    issuer = unsigned.find(f"{{{NS_SAML2}}}Issuer")
    assert issuer is not None
    placeholder = etree.Element(f"{{{NS_DS}}}Signature", Id="placeholder", nsmap={"ds": NS_DS})
    placeholder.tail = "\n  "
    issuer.addnext(placeholder)
    signer = XMLSigner(c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
    signed = signer.sign(unsigned, key=KEY, cert=CERT_PEM.decode(), reference_uri="#" + _id(unsigned))
    signature = signed.find("ds:Signature", DS)
    assert signature is not None and signature.tail == "\n  "
    raw = _envelope(signed)
    root = etree.fromstring(raw)
    before = etree.tostring(root)
    node = verify_in_tree(root, _id(unsigned), certificates=[CERT], policy=DEFAULT)
    assert node.element.get("ID") == _id(unsigned)
    assert etree.tostring(root) == before
