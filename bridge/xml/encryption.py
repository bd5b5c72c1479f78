"""Decrypting a SAML ``EncryptedAssertion`` with the SP's RSA key (XML Encryption 1.1).

The cryptography is python-xmlsec's (libxmlsec1 + OpenSSL).  What is ours is
the structure walk around it, so that libxmlsec never resolves anything on
its own: the algorithms are checked against an allow-list first, the
``EncryptedKey`` is located by us (inside ``EncryptedData/KeyInfo`` as
Shibboleth writes it, or beside ``EncryptedData`` as some IdPs do), and each
element is handed to libxmlsec as a detached copy without ``KeyInfo`` and with
the key set explicitly.  The data is decrypted to a byte buffer (``Type`` is
dropped from the copy), so the caller receives the plaintext exactly as the
IdP encrypted it: those are the bytes the IdP signed.

Every failure after the shape checks raises the same ``AssertionRejected("decryption")``
text, so a caller cannot be used as a padding or key-transport oracle (XML
Encryption CBC attacks, Jager and Somorovsky 2011); the assertion's own
signature, checked afterwards, is what makes the plaintext trustworthy.
RSA PKCS#1 v1.5 key transport is refused for the same reason.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from copy import deepcopy
from dataclasses import dataclass

import xmlsec
from lxml import etree

from bridge.errors import AssertionRejected
from bridge.xml.safe import full_text
from bridge.xml.signature import NS_DS, NS_SAML2

log = logging.getLogger(__name__)

NS_XENC = "http://www.w3.org/2001/04/xmlenc#"
NS_XENC11 = "http://www.w3.org/2009/xmlenc11#"

KEY_RSA_OAEP_MGF1P = f"{NS_XENC}rsa-oaep-mgf1p"
KEY_RSA_OAEP = f"{NS_XENC11}rsa-oaep"
DATA_AES128_CBC = f"{NS_XENC}aes128-cbc"
DATA_AES256_CBC = f"{NS_XENC}aes256-cbc"
DATA_AES128_GCM = f"{NS_XENC11}aes128-gcm"
DATA_AES256_GCM = f"{NS_XENC11}aes256-gcm"

# Data algorithm -> AES key length in bytes.
_DATA_ALGORITHMS: dict[str, int] = {
    DATA_AES128_CBC: 16,
    DATA_AES256_CBC: 32,
    DATA_AES128_GCM: 16,
    DATA_AES256_GCM: 32,
}
_KEY_ALGORITHMS = frozenset({KEY_RSA_OAEP_MGF1P, KEY_RSA_OAEP})
_OAEP_DIGESTS = frozenset(
    {
        f"{NS_DS}sha1",
        f"{NS_XENC}sha256",
        f"{NS_XENC}sha512",
        "http://www.w3.org/2001/04/xmldsig-more#sha384",
    }
)
_MGF_ALGORITHMS = frozenset(f"{NS_XENC11}mgf1sha{n}" for n in (1, 224, 256, 384, 512))
_TYPE_ELEMENT = f"{NS_XENC}Element"

MAX_CIPHERTEXT_CHARS = 512 * 1024  # base64 characters of one CipherValue
MAX_ENCRYPTED_KEYS = 4  # an IdP may encrypt the key once per SP key; more is abuse

_X = f"{{{NS_XENC}}}"
_ENCRYPTED_DATA = f"{_X}EncryptedData"
_ENCRYPTED_KEY = f"{_X}EncryptedKey"
_KEY_INFO = f"{{{NS_DS}}}KeyInfo"
_ENCRYPTED_ASSERTION = f"{{{NS_SAML2}}}EncryptedAssertion"
_FAILED = "the assertion could not be decrypted with the SP key"


@dataclass(frozen=True, kw_only=True, slots=True)
class DecryptedAssertion:
    """Plaintext of an EncryptedAssertion and the algorithms that protected it."""

    plaintext: bytes  # exactly the decrypted octets (the serialized saml:Assertion)
    data_algorithm: str
    key_algorithm: str


def decrypt_assertion(encrypted_assertion: etree._Element, *, key_pem: bytes) -> DecryptedAssertion:
    """Decrypt the ``xenc:EncryptedData`` of a ``saml:EncryptedAssertion`` with the SP key (PEM)."""
    if encrypted_assertion.tag != _ENCRYPTED_ASSERTION:
        raise AssertionRejected("decryption", "not a saml:EncryptedAssertion")
    data_nodes = encrypted_assertion.findall(_ENCRYPTED_DATA)
    if len(data_nodes) != 1:
        raise AssertionRejected("decryption", f"{len(data_nodes)} EncryptedData elements, expected 1")
    encrypted_data = data_nodes[0]
    data_type = encrypted_data.get("Type")
    if data_type is not None and data_type != _TYPE_ELEMENT:
        raise AssertionRejected("decryption", "EncryptedData Type is not Element")
    data_algorithm = _method(encrypted_data, _DATA_ALGORITHMS.keys(), "data")
    _check_cipher_value(encrypted_data)
    key_nodes = _encrypted_keys(encrypted_assertion, encrypted_data)
    key_algorithms = [_check_key_method(node) for node in key_nodes]
    for node in key_nodes:
        _check_cipher_value(node)

    try:
        rsa_key = xmlsec.Key.from_memory(key_pem, xmlsec.constants.KeyDataFormatPem, None)
    except (xmlsec.Error, ValueError, TypeError) as exc:
        raise AssertionRejected("decryption", "the SP private key could not be loaded") from exc

    session_key, key_algorithm = None, ""
    for node, algorithm in zip(key_nodes, key_algorithms, strict=True):
        candidate = _decrypt_detached(node, rsa_key)
        if candidate is not None and len(candidate) == _DATA_ALGORITHMS[data_algorithm]:
            session_key, key_algorithm = candidate, algorithm
            break
    if session_key is None:
        raise AssertionRejected("decryption", _FAILED)
    try:
        aes_key = xmlsec.Key.from_binary_data(xmlsec.constants.KeyDataAes, session_key)
    except (xmlsec.Error, ValueError, TypeError) as exc:
        raise AssertionRejected("decryption", _FAILED) from exc
    plaintext = _decrypt_detached(encrypted_data, aes_key)
    if plaintext is None:
        raise AssertionRejected("decryption", _FAILED)
    log.debug("EncryptedAssertion decrypted (%s, %s)", data_algorithm, key_algorithm)
    return DecryptedAssertion(plaintext=plaintext, data_algorithm=data_algorithm, key_algorithm=key_algorithm)


def _method(node: etree._Element, allowed: Collection[str], what: str) -> str:
    methods = node.findall(f"{_X}EncryptionMethod")
    if len(methods) != 1:
        raise AssertionRejected("decryption", f"{what} EncryptionMethod missing or repeated")
    algorithm = methods[0].get("Algorithm") or ""
    if algorithm not in allowed:
        raise AssertionRejected("decryption", f"unsupported {what} encryption algorithm {algorithm[:120]!r}")
    return algorithm


def _check_key_method(node: etree._Element) -> str:
    algorithm = _method(node, _KEY_ALGORITHMS, "key transport")
    method = node.find(f"{_X}EncryptionMethod")
    assert method is not None  # _method checked there is exactly one
    digests = method.findall(f"{{{NS_DS}}}DigestMethod")
    if len(digests) > 1 or any((d.get("Algorithm") or "") not in _OAEP_DIGESTS for d in digests):
        raise AssertionRejected("decryption", "unsupported OAEP digest")
    mgfs = method.findall(f"{{{NS_XENC11}}}MGF")
    if mgfs and algorithm != KEY_RSA_OAEP:
        raise AssertionRejected("decryption", "MGF is only defined for xmlenc11 rsa-oaep")
    if len(mgfs) > 1 or any((m.get("Algorithm") or "") not in _MGF_ALGORITHMS for m in mgfs):
        raise AssertionRejected("decryption", "unsupported OAEP mask generation function")
    return algorithm


def _check_cipher_value(node: etree._Element) -> None:
    """CipherValue only (a CipherReference would make libxmlsec fetch a URI), size-capped."""
    cipher_data = node.findall(f"{_X}CipherData")
    if len(cipher_data) != 1 or cipher_data[0].find(f"{_X}CipherReference") is not None:
        raise AssertionRejected("decryption", "CipherData must hold one CipherValue")
    values = cipher_data[0].findall(f"{_X}CipherValue")
    if len(values) != 1:
        raise AssertionRejected("decryption", "CipherData must hold one CipherValue")
    if len(full_text(values[0])) > MAX_CIPHERTEXT_CHARS:
        raise AssertionRejected("decryption", "CipherValue is over the size limit")


def _encrypted_keys(encrypted_assertion: etree._Element, encrypted_data: etree._Element) -> list[etree._Element]:
    """EncryptedKeys inside EncryptedData/KeyInfo, else the ones beside EncryptedData (saml-core 2.3.4)."""
    inside = encrypted_data.findall(f"{_KEY_INFO}/{_ENCRYPTED_KEY}")
    found = inside or encrypted_assertion.findall(_ENCRYPTED_KEY)
    if not found:
        raise AssertionRejected("decryption", "no EncryptedKey (pre-shared keys are not supported)")
    if len(found) > MAX_ENCRYPTED_KEYS:
        raise AssertionRejected("decryption", f"{len(found)} EncryptedKey elements is too many")
    return found


def _decrypt_detached(node: etree._Element, key: xmlsec.Key) -> bytes | None:
    """Decrypt a detached copy of ``node`` to bytes with ``key``; None when libxmlsec refuses."""
    copy = deepcopy(node)
    for key_info in copy.findall(_KEY_INFO):
        copy.remove(key_info)
    if "Type" in copy.attrib:
        del copy.attrib["Type"]  # no Type: libxmlsec returns the octets instead of splicing a tree
    holder = etree.Element("holder")
    holder.append(copy)
    ctx = xmlsec.EncryptionContext()
    ctx.key = key
    try:
        result: object = ctx.decrypt(copy)
    except (xmlsec.Error, ValueError, TypeError):
        return None
    return result if isinstance(result, bytes) else None
