"""bridge.xml.encryption: EncryptedAssertion decryption, cross-checked against an independent encryptor.

The encryptor below uses ``cryptography`` directly (OAEP + AES), so the
libxmlsec-based decryption is tested against a second implementation of
XML Encryption 1.1 rather than against itself.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from bridge.errors import AssertionRejected
from bridge.idp.assertion import SamlVersion
from bridge.idpsim.tokens import TokenClaims, signed_token
from bridge.xml.encryption import (
    DATA_AES128_CBC,
    DATA_AES128_GCM,
    DATA_AES256_CBC,
    DATA_AES256_GCM,
    KEY_RSA_OAEP,
    KEY_RSA_OAEP_MGF1P,
    NS_XENC,
    NS_XENC11,
    decrypt_assertion,
)
from bridge.xml.signature import NS_DS, NS_SAML2
from tests.keys import make_key_and_cert

_HASHES: dict[str, hashes.HashAlgorithm] = {
    f"{NS_DS}sha1": hashes.SHA1(),
    f"{NS_XENC}sha256": hashes.SHA256(),
    f"{NS_XENC11}mgf1sha1": hashes.SHA1(),
    f"{NS_XENC11}mgf1sha256": hashes.SHA256(),
}
_KEY_LEN = {DATA_AES128_CBC: 16, DATA_AES256_CBC: 32, DATA_AES128_GCM: 16, DATA_AES256_GCM: 32}


def encrypt_assertion(
    plaintext: bytes,
    cert_pem: bytes,
    *,
    data_alg: str = DATA_AES128_CBC,
    key_alg: str = KEY_RSA_OAEP_MGF1P,
    digest: str | None = f"{NS_DS}sha1",
    mgf: str | None = None,
    key_beside_data: bool = False,
) -> etree._Element:
    """A saml:EncryptedAssertion holding ``plaintext`` the way Shibboleth (or xmlenc11) lays it out."""
    cek = os.urandom(_KEY_LEN.get(data_alg, 16))
    if data_alg in (DATA_AES128_GCM, DATA_AES256_GCM):
        iv = os.urandom(12)
        cipher = iv + AESGCM(cek).encrypt(iv, plaintext, None)  # ciphertext || 16-byte tag
    else:
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(plaintext) + padder.finalize()
        encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
        cipher = iv + encryptor.update(padded) + encryptor.finalize()
    public = x509.load_pem_x509_certificate(cert_pem).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    oaep_hash = _HASHES[digest or f"{NS_DS}sha1"]
    mgf_hash = _HASHES[mgf] if mgf else hashes.SHA1()
    wrapped = public.encrypt(cek, asym_padding.OAEP(mgf=asym_padding.MGF1(mgf_hash), algorithm=oaep_hash, label=None))

    x, ds = f"{{{NS_XENC}}}", f"{{{NS_DS}}}"
    enc_assertion = etree.Element(f"{{{NS_SAML2}}}EncryptedAssertion", nsmap={"saml2": NS_SAML2})
    data = etree.SubElement(
        enc_assertion, f"{x}EncryptedData", nsmap={"xenc": NS_XENC}, Id="_ed1", Type=f"{NS_XENC}Element"
    )
    etree.SubElement(data, f"{x}EncryptionMethod", Algorithm=data_alg)
    key_info = etree.SubElement(data, f"{ds}KeyInfo", nsmap={"ds": NS_DS})
    key_parent = enc_assertion if key_beside_data else key_info
    enc_key = etree.SubElement(key_parent, f"{x}EncryptedKey", nsmap={"xenc": NS_XENC}, Id="_ek1")
    method = etree.SubElement(enc_key, f"{x}EncryptionMethod", Algorithm=key_alg)
    if digest is not None:
        etree.SubElement(method, f"{ds}DigestMethod", Algorithm=digest)
    if mgf is not None:
        etree.SubElement(method, f"{{{NS_XENC11}}}MGF", nsmap={"xenc11": NS_XENC11}, Algorithm=mgf)
    cert_b64 = base64.b64encode(x509.load_pem_x509_certificate(cert_pem).public_bytes(Encoding.DER)).decode()
    ek_info = etree.SubElement(enc_key, f"{ds}KeyInfo")
    etree.SubElement(etree.SubElement(ek_info, f"{ds}X509Data"), f"{ds}X509Certificate").text = cert_b64
    etree.SubElement(etree.SubElement(enc_key, f"{x}CipherData"), f"{x}CipherValue").text = base64.encodebytes(
        wrapped
    ).decode()
    if key_beside_data:
        retrieval = etree.SubElement(key_info, f"{ds}RetrievalMethod", URI="#_ek1")
        retrieval.set("Type", f"{NS_XENC}EncryptedKey")
    etree.SubElement(etree.SubElement(data, f"{x}CipherData"), f"{x}CipherValue").text = base64.encodebytes(
        cipher
    ).decode()
    return enc_assertion


def _assertion_bytes() -> bytes:
    key, cert = make_key_and_cert("xmlenc-idp")
    claims = TokenClaims(
        issuer="https://idp.example.org/idp/shibboleth",
        audience="https://bridge.example/sp",
        subject="alice@example.org",
        issued_at=datetime.now(UTC),
    )
    signed = signed_token(claims, version=SamlVersion.SAML20, key_pem=key, cert_pem=cert)
    return etree.tostring(signed)


@pytest.mark.parametrize(
    ("data_alg", "key_alg", "digest", "mgf"),
    [
        (DATA_AES128_CBC, KEY_RSA_OAEP_MGF1P, f"{NS_DS}sha1", None),
        (DATA_AES256_CBC, KEY_RSA_OAEP_MGF1P, None, None),
        (DATA_AES128_GCM, KEY_RSA_OAEP, f"{NS_XENC}sha256", f"{NS_XENC11}mgf1sha256"),
        (DATA_AES256_GCM, KEY_RSA_OAEP, f"{NS_DS}sha1", None),
        (DATA_AES256_GCM, KEY_RSA_OAEP_MGF1P, f"{NS_XENC}sha256", None),
    ],
)
def test_round_trip_gives_the_exact_plaintext(data_alg: str, key_alg: str, digest: str | None, mgf: str | None) -> None:
    sp_key, sp_cert = make_key_and_cert("xmlenc-sp")
    plaintext = _assertion_bytes()
    enc = encrypt_assertion(plaintext, sp_cert, data_alg=data_alg, key_alg=key_alg, digest=digest, mgf=mgf)
    result = decrypt_assertion(enc, key_pem=sp_key)
    assert result.plaintext == plaintext
    assert result.data_algorithm == data_alg
    assert result.key_algorithm == key_alg


def test_encrypted_key_beside_encrypted_data() -> None:
    sp_key, sp_cert = make_key_and_cert("xmlenc-sp")
    plaintext = _assertion_bytes()
    enc = encrypt_assertion(plaintext, sp_cert, key_beside_data=True)
    assert decrypt_assertion(enc, key_pem=sp_key).plaintext == plaintext


def test_wrong_key_is_refused() -> None:
    _, sp_cert = make_key_and_cert("xmlenc-sp")
    other_key, _ = make_key_and_cert("xmlenc-other")
    enc = encrypt_assertion(_assertion_bytes(), sp_cert)
    with pytest.raises(AssertionRejected) as info:
        decrypt_assertion(enc, key_pem=other_key)
    assert info.value.reason == "decryption"


@pytest.mark.parametrize("data_alg", [DATA_AES128_GCM, DATA_AES256_GCM])
def test_tampered_gcm_ciphertext_fails_the_tag(data_alg: str) -> None:
    sp_key, sp_cert = make_key_and_cert("xmlenc-sp")
    enc = encrypt_assertion(_assertion_bytes(), sp_cert, data_alg=data_alg, key_alg=KEY_RSA_OAEP)
    value = enc.find(f"{{{NS_XENC}}}EncryptedData/{{{NS_XENC}}}CipherData/{{{NS_XENC}}}CipherValue")
    assert value is not None and value.text is not None
    raw = bytearray(base64.b64decode(value.text))
    raw[40] ^= 0x01
    value.text = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(AssertionRejected) as info:
        decrypt_assertion(enc, key_pem=sp_key)
    assert info.value.reason == "decryption"


def test_tampered_wrapped_key_is_refused() -> None:
    sp_key, sp_cert = make_key_and_cert("xmlenc-sp")
    enc = encrypt_assertion(_assertion_bytes(), sp_cert)
    value = enc.find(f".//{{{NS_XENC}}}EncryptedKey/{{{NS_XENC}}}CipherData/{{{NS_XENC}}}CipherValue")
    assert value is not None and value.text is not None
    raw = bytearray(base64.b64decode(value.text))
    raw[5] ^= 0xFF
    value.text = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(AssertionRejected, match="could not be decrypted"):
        decrypt_assertion(enc, key_pem=sp_key)


@pytest.mark.parametrize(
    ("where", "algorithm"),
    [
        ("data", "http://www.w3.org/2001/04/xmlenc#tripledes-cbc"),
        ("data", "http://www.w3.org/2001/04/xmlenc#aes192-cbc"),
        ("key", "http://www.w3.org/2001/04/xmlenc#rsa-1_5"),
        ("key", "http://www.w3.org/2001/04/xmlenc#kw-aes128"),
    ],
)
def test_unsupported_algorithm_is_refused(where: str, algorithm: str) -> None:
    sp_key, sp_cert = make_key_and_cert("xmlenc-sp")
    enc = encrypt_assertion(_assertion_bytes(), sp_cert)
    path = (
        f"{{{NS_XENC}}}EncryptedData/{{{NS_XENC}}}EncryptionMethod"
        if where == "data"
        else f".//{{{NS_XENC}}}EncryptedKey/{{{NS_XENC}}}EncryptionMethod"
    )
    method = enc.find(path)
    assert method is not None
    method.set("Algorithm", algorithm)
    with pytest.raises(AssertionRejected, match="unsupported"):
        decrypt_assertion(enc, key_pem=sp_key)


def test_unsupported_oaep_digest_is_refused() -> None:
    sp_key, sp_cert = make_key_and_cert("xmlenc-sp")
    enc = encrypt_assertion(_assertion_bytes(), sp_cert)
    digest = enc.find(f".//{{{NS_DS}}}DigestMethod")
    assert digest is not None
    digest.set("Algorithm", "http://www.w3.org/2001/04/xmldsig-more#md5")
    with pytest.raises(AssertionRejected, match="OAEP digest"):
        decrypt_assertion(enc, key_pem=sp_key)


def test_cipher_reference_is_refused_before_any_fetch() -> None:
    sp_key, sp_cert = make_key_and_cert("xmlenc-sp")
    enc = encrypt_assertion(_assertion_bytes(), sp_cert)
    cipher_data = enc.find(f"{{{NS_XENC}}}EncryptedData/{{{NS_XENC}}}CipherData")
    assert cipher_data is not None
    for child in list(cipher_data):
        cipher_data.remove(child)
    etree.SubElement(cipher_data, f"{{{NS_XENC}}}CipherReference", URI="http://127.0.0.1:9/x")
    with pytest.raises(AssertionRejected, match="CipherValue"):
        decrypt_assertion(enc, key_pem=sp_key)


def test_oversized_ciphertext_is_refused() -> None:
    sp_key, sp_cert = make_key_and_cert("xmlenc-sp")
    enc = encrypt_assertion(_assertion_bytes(), sp_cert)
    value = enc.find(f"{{{NS_XENC}}}EncryptedData/{{{NS_XENC}}}CipherData/{{{NS_XENC}}}CipherValue")
    assert value is not None
    value.text = "A" * (600 * 1024)
    with pytest.raises(AssertionRejected, match="size limit"):
        decrypt_assertion(enc, key_pem=sp_key)


def test_missing_encrypted_key_and_bad_sp_key() -> None:
    sp_key, sp_cert = make_key_and_cert("xmlenc-sp")
    enc = encrypt_assertion(_assertion_bytes(), sp_cert)
    with pytest.raises(AssertionRejected, match="private key"):
        decrypt_assertion(enc, key_pem=b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    key_info = enc.find(f"{{{NS_XENC}}}EncryptedData/{{{NS_DS}}}KeyInfo")
    assert key_info is not None
    key_info.getparent().remove(key_info)  # type: ignore[union-attr]
    with pytest.raises(AssertionRejected, match="no EncryptedKey"):
        decrypt_assertion(enc, key_pem=sp_key)


def test_not_an_encrypted_assertion() -> None:
    sp_key, _ = make_key_and_cert("xmlenc-sp")
    with pytest.raises(AssertionRejected):
        decrypt_assertion(etree.Element(f"{{{NS_SAML2}}}Assertion"), key_pem=sp_key)
