"""bridge.idp.saml.metadata: IdP metadata as Shibboleth, Keycloak and Okta publish it, and our SP metadata read by pysaml2."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from saml2.attribute_converter import ac_factory
from saml2.config import Config
from saml2.mdstore import InMemoryMetaData, MetadataStore

from bridge.errors import ConfigError, IdpProtocolError, XmlRejected
from bridge.idp.saml.metadata import BINDING_PAOS, BINDING_SOAP, NS_MD, build_sp_metadata, parse_idp_metadata
from bridge.xml.signature import NS_DS
from tests.keys import load_cert, make_key_and_cert

M, D = f"{{{NS_MD}}}", f"{{{NS_DS}}}"
SAML2P = "urn:oasis:names:tc:SAML:2.0:protocol"
B = "urn:oasis:names:tc:SAML:2.0:bindings:"


def _b64(cert_pem: bytes) -> str:
    return base64.b64encode(load_cert(cert_pem).public_bytes(Encoding.DER)).decode()


def _key_descriptor(parent: etree._Element, cert_pem: bytes, use: str | None, *, key_name: str | None = None) -> None:
    descriptor = etree.SubElement(parent, f"{M}KeyDescriptor")
    if use is not None:
        descriptor.set("use", use)
    key_info = etree.SubElement(descriptor, f"{D}KeyInfo")
    if key_name is not None:
        etree.SubElement(key_info, f"{D}KeyName").text = key_name
    data = etree.SubElement(key_info, f"{D}X509Data")
    # Shibboleth wraps the base64 over lines: whitespace must not matter.
    b64 = _b64(cert_pem)
    etree.SubElement(data, f"{D}X509Certificate").text = (
        "\n" + "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64)) + "\n"
    )


def _sso(parent: etree._Element, binding: str, location: str) -> None:
    etree.SubElement(parent, f"{M}SingleSignOnService", Binding=binding, Location=location)


def shibboleth_metadata() -> bytes:
    base = "https://idp.example.org/idp"
    entity = etree.Element(
        f"{M}EntityDescriptor",
        nsmap={"md": NS_MD, "ds": NS_DS, "shibmd": "urn:mace:shibboleth:metadata:1.0"},
        entityID=f"{base}/shibboleth",
    )
    idp = etree.SubElement(
        entity,
        f"{M}IDPSSODescriptor",
        protocolSupportEnumeration=f"{SAML2P} urn:oasis:names:tc:SAML:1.1:protocol urn:mace:shibboleth:1.0",
    )
    ext = etree.SubElement(idp, f"{M}Extensions")
    etree.SubElement(ext, "{urn:mace:shibboleth:metadata:1.0}Scope", regexp="false").text = "example.org"
    _key_descriptor(idp, make_key_and_cert("shib-backchannel")[1], "signing")
    _key_descriptor(idp, make_key_and_cert("shib-signing")[1], "signing")
    _key_descriptor(idp, make_key_and_cert("shib-encryption")[1], "encryption")
    etree.SubElement(idp, f"{M}NameIDFormat").text = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
    _sso(idp, "urn:mace:shibboleth:1.0:profiles:AuthnRequest", f"{base}/profile/Shibboleth/SSO")
    _sso(idp, f"{B}HTTP-POST", f"{base}/profile/SAML2/POST/SSO")
    _sso(idp, f"{B}HTTP-POST-SimpleSign", f"{base}/profile/SAML2/POST-SimpleSign/SSO")
    _sso(idp, f"{B}HTTP-Redirect", f"{base}/profile/SAML2/Redirect/SSO")
    _sso(idp, BINDING_SOAP, f"{base}/profile/SAML2/SOAP/ECP")
    aa = etree.SubElement(entity, f"{M}AttributeAuthorityDescriptor", protocolSupportEnumeration=SAML2P)
    etree.SubElement(aa, f"{M}AttributeService", Binding=BINDING_SOAP, Location=f"{base}/profile/SAML2/SOAP/AQ")
    return etree.tostring(entity, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def keycloak_metadata(*, realms: tuple[str, ...] = ("acme",)) -> bytes:
    group = etree.Element(f"{M}EntitiesDescriptor", nsmap={"md": NS_MD, "ds": NS_DS}, Name="urn:keycloak")
    for realm in realms:
        url = f"https://kc.example.com/realms/{realm}"
        entity = etree.SubElement(group, f"{M}EntityDescriptor", entityID=url)
        idp = etree.SubElement(
            entity, f"{M}IDPSSODescriptor", WantAuthnRequestsSigned="true", protocolSupportEnumeration=SAML2P
        )
        _key_descriptor(idp, make_key_and_cert(f"kc-{realm}")[1], "signing", key_name="kid-" + realm)
        etree.SubElement(
            idp,
            f"{M}ArtifactResolutionService",
            Binding=BINDING_SOAP,
            Location=f"{url}/protocol/saml/resolve",
            index="0",
        )
        etree.SubElement(idp, f"{M}SingleLogoutService", Binding=f"{B}HTTP-POST", Location=f"{url}/protocol/saml")
        etree.SubElement(idp, f"{M}NameIDFormat").text = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
        _sso(idp, f"{B}HTTP-POST", f"{url}/protocol/saml")
        _sso(idp, f"{B}HTTP-Redirect", f"{url}/protocol/saml")
        _sso(idp, BINDING_SOAP, f"{url}/protocol/saml")
        _sso(idp, f"{B}HTTP-Artifact", f"{url}/protocol/saml")
    return etree.tostring(group, xml_declaration=True, encoding="UTF-8")


def okta_metadata() -> bytes:
    entity = etree.Element(
        f"{M}EntityDescriptor", nsmap={"md": NS_MD}, entityID="http://www.okta.com/exk1abcdEFGH2345ij"
    )
    idp = etree.SubElement(
        entity, f"{M}IDPSSODescriptor", WantAuthnRequestsSigned="false", protocolSupportEnumeration=SAML2P
    )
    _key_descriptor(idp, make_key_and_cert("okta")[1], "signing")
    etree.SubElement(idp, f"{M}NameIDFormat").text = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
    sso = "https://acme.okta.com/app/acme_bridge_1/exk1abcdEFGH2345ij/sso/saml"
    _sso(idp, f"{B}HTTP-POST", sso)
    _sso(idp, f"{B}HTTP-Redirect", sso)
    return etree.tostring(entity, xml_declaration=True, encoding="UTF-8")


def _fingerprints(certs: tuple[object, ...]) -> set[bytes]:
    return {c.public_bytes(Encoding.DER) for c in certs}  # type: ignore[attr-defined]


def _der(cn: str) -> bytes:
    return load_cert(make_key_and_cert(cn)[1]).public_bytes(Encoding.DER)


def test_shibboleth() -> None:
    meta = parse_idp_metadata(shibboleth_metadata())
    assert meta.entity_id == "https://idp.example.org/idp/shibboleth"
    assert meta.ecp_url == "https://idp.example.org/idp/profile/SAML2/SOAP/ECP"
    assert _fingerprints(meta.signing_certificates) == {_der("shib-backchannel"), _der("shib-signing")}
    assert meta.valid_until is None


def test_keycloak_group_pick_by_entity_id() -> None:
    raw = keycloak_metadata(realms=("acme", "globex"))
    meta = parse_idp_metadata(raw, entity_id="https://kc.example.com/realms/globex")
    assert meta.entity_id == "https://kc.example.com/realms/globex"
    assert meta.ecp_url == "https://kc.example.com/realms/globex/protocol/saml"
    assert _fingerprints(meta.signing_certificates) == {_der("kc-globex")}
    with pytest.raises(IdpProtocolError, match="2 IdP entities"):
        parse_idp_metadata(raw)
    with pytest.raises(IdpProtocolError, match="no entity"):
        parse_idp_metadata(raw, entity_id="https://kc.example.com/realms/initech")


def test_keycloak_single_entity_group_needs_no_entity_id() -> None:
    assert parse_idp_metadata(keycloak_metadata()).entity_id == "https://kc.example.com/realms/acme"


def test_okta_has_no_ecp() -> None:
    meta = parse_idp_metadata(okta_metadata())
    assert meta.entity_id == "http://www.okta.com/exk1abcdEFGH2345ij"
    assert meta.ecp_url is None
    assert _fingerprints(meta.signing_certificates) == {_der("okta")}


def test_key_descriptor_without_use_counts_as_signing() -> None:
    root = etree.fromstring(okta_metadata())
    descriptor = root.find(f".//{M}KeyDescriptor")
    assert descriptor is not None
    del descriptor.attrib["use"]
    assert len(parse_idp_metadata(etree.tostring(root)).signing_certificates) == 1


def test_valid_until_is_the_earliest_of_entity_and_groups() -> None:
    root = etree.fromstring(keycloak_metadata())
    root.set("validUntil", "2030-01-01T00:00:00Z")
    entity = root.find(f"{M}EntityDescriptor")
    assert entity is not None
    entity.set("validUntil", "2031-06-01T00:00:00Z")
    assert parse_idp_metadata(etree.tostring(root)).valid_until == datetime(2030, 1, 1, tzinfo=UTC)
    root.set("validUntil", "next tuesday")
    with pytest.raises(IdpProtocolError, match="validUntil"):
        parse_idp_metadata(etree.tostring(root))


def test_unusable_ecp_location_is_ignored() -> None:
    raw = shibboleth_metadata().replace(b"https://idp.example.org/idp/profile/SAML2/SOAP/ECP", b"javascript:alert(1)")
    assert parse_idp_metadata(raw).ecp_url is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.replace(b"md:EntityDescriptor", b"md:RoleDescriptor"), "neither"),
        (lambda r: r.replace(b"urn:oasis:names:tc:SAML:2.0:protocol", b"urn:x"), "IDPSSODescriptor"),
        (lambda r: r.replace(b'use="signing"', b'use="encryption"'), "no signing certificate"),
        (lambda r: r.replace(b"\nMII", b"\n!!MII", 1), "cannot be read"),
        (lambda r: r.replace(b'entityID="http://www.okta.com/exk1abcdEFGH2345ij"', b'entityID=" "'), "entityID"),
    ],
)
def test_broken_metadata(mutate: object, message: str) -> None:
    raw = mutate(okta_metadata())  # type: ignore[operator]
    with pytest.raises(IdpProtocolError, match=message):
        parse_idp_metadata(raw)


def test_doctype_and_garbage() -> None:
    raw = okta_metadata().replace(b"?>", b'?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>', 1)
    with pytest.raises(XmlRejected):
        parse_idp_metadata(raw)
    with pytest.raises(XmlRejected):
        parse_idp_metadata(b"<md:EntityDescriptor")


# --- our SP metadata -----------------------------------------------------------------------------


def test_sp_metadata_is_read_by_pysaml2() -> None:
    _, signing = make_key_and_cert("meta-sp-signing")
    _, encryption = make_key_and_cert("meta-sp-encryption")
    sp_id, acs = "https://bridge.example/saml/sp", "https://bridge.example/saml/acs"
    xml = build_sp_metadata(entity_id=sp_id, acs_url=acs, signing_cert_pem=signing, encryption_cert_pem=encryption)
    store = MetadataStore(ac_factory(), Config())
    loaded = InMemoryMetaData(ac_factory(), metadata=xml.decode())
    loaded.load()
    store.metadata["bridge"] = loaded
    assert list(loaded.keys()) == [sp_id]
    (service,) = store.assertion_consumer_service(sp_id, binding=BINDING_PAOS)
    assert service["location"] == acs and service["index"] == "0"
    for use, pem in (("signing", signing), ("encryption", encryption)):
        assert ["".join(c[1].split()) for c in store.certs(sp_id, "spsso", use=use)] == [_b64(pem)]
    descriptor = loaded[sp_id]["spsso_descriptor"][0]
    assert descriptor["want_assertions_signed"] == "true"
    assert descriptor["authn_requests_signed"] == "false"
    assert SAML2P in descriptor["protocol_support_enumeration"]


def test_sp_metadata_refuses_a_non_certificate() -> None:
    with pytest.raises(ConfigError):
        build_sp_metadata(entity_id="x", acs_url="https://b/acs", signing_cert_pem=b"nope", encryption_cert_pem=b"nope")
