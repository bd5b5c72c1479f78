"""What every samlp:Response the bridge receives shares, whichever binding brought it (ECP or HTTP-POST).

Both answers are read the same way once their binding is taken off: the
addressing (InResponseTo, Destination), the top-level status, and the one
assertion, in the clear or encrypted for the SP.  Keeping these checks in one
place means the browser path cannot drift from the password path in what it
accepts.  What a *refusal* means differs by channel (a password prompt maps it
to a lockout class, a browser sign-in to access denied), so the status is
returned, not judged.

Pure: elements and bytes in, typed values out, or :class:`~bridge.errors.IdpProtocolError`
(:class:`~bridge.errors.AssertionRejected` for a failed check).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lxml import etree

from bridge.errors import AssertionRejected, IdpProtocolError, XmlRejected
from bridge.idp.refusals import clip
from bridge.xml.encryption import decrypt_assertion
from bridge.xml.safe import full_text, parse_untrusted
from bridge.xml.signature import NS_DS, NS_SAML2, NS_SAMLP2

log = logging.getLogger(__name__)

STATUS_PREFIX = "urn:oasis:names:tc:SAML:2.0:status:"
STATUS_SUCCESS = f"{STATUS_PREFIX}Success"
MAX_STATUS_DEPTH = 5  # nested StatusCode levels read; saml-core uses two, the rest is noise

_P = f"{{{NS_SAMLP2}}}"
_A = f"{{{NS_SAML2}}}"
RESPONSE_TAG = f"{_P}Response"
ASSERTION_TAG = f"{_A}Assertion"
ENCRYPTED_ASSERTION_TAG = f"{_A}EncryptedAssertion"


@dataclass(frozen=True, kw_only=True, slots=True)
class SamlStatus:
    """A Response's Status: the StatusCode values, top level first, and the StatusMessage (squashed)."""

    codes: tuple[str, ...]
    message: str

    @property
    def success(self) -> bool:
        return self.codes[0] == STATUS_SUCCESS

    def detail(self) -> str:
        """The codes and the IdP's message, clipped: for administrators, never shown unbounded."""
        return clip(" / ".join(self.codes) + (f": {self.message}" if self.message else ""))


@dataclass(frozen=True, kw_only=True, slots=True)
class TakenAssertion:
    """What ``validate_assertion`` is to check: the received document, or the decrypted assertion.

    When ``encrypted``, a signature the Response carries covers only ciphertext,
    so the caller also verifies it on the received bytes
    (:func:`bridge.idp.assertion.verify_response_signature`).
    """

    xml: bytes
    encrypted: bool


def read_status(response: etree._Element) -> SamlStatus:
    """The Status of a samlp:Response (saml-core 3.2.2.1); a Response without one is not SAML."""
    status = response.find(f"{_P}Status")
    code = status.find(f"{_P}StatusCode") if status is not None else None
    if status is None or code is None:
        raise IdpProtocolError("samlp:Response without Status/StatusCode")
    codes: list[str] = []
    node: etree._Element | None = code
    while node is not None and len(codes) < MAX_STATUS_DEPTH:
        codes.append((node.get("Value") or "").strip())
        node = node.find(f"{_P}StatusCode")
    message = " ".join(full_text(status.find(f"{_P}StatusMessage")).split())
    return SamlStatus(codes=tuple(codes), message=message)


def check_addressing(response: etree._Element, *, request_id: str, acs_url: str) -> None:
    """The Response must answer our request and be addressed to our consumer URL (when it names one).

    pysaml2 leaves both unchecked on some paths; an answer to another request, or
    one meant for another SP, is a replayed or redirected answer.
    """
    if response.get("Version") != "2.0":
        raise IdpProtocolError("samlp:Response without Version 2.0")
    if response.get("InResponseTo") != request_id:
        raise AssertionRejected("in_response_to", "the Response answers another request")
    destination = response.get("Destination")
    if destination is not None and destination != acs_url:
        raise AssertionRejected("destination", "the Response is addressed to another consumer URL")


def take_assertion(
    root: etree._Element, response: etree._Element, raw: bytes, *, sp_key_pem: bytes | None, max_bytes: int
) -> TakenAssertion:
    """The one assertion of a successful Response: ``raw`` itself, or the decrypted assertion.

    Exactly one Assertion or EncryptedAssertion in the whole document, a child
    of the Response: anything else is a wrapping attempt (or no answer at all).
    A decrypted assertion must be signed itself.
    """
    plain = [el for el in root.iter(ASSERTION_TAG)]
    encrypted = [el for el in root.iter(ENCRYPTED_ASSERTION_TAG)]
    if len(plain) + len(encrypted) != 1:
        raise AssertionRejected(
            "wrapped" if plain or encrypted else "malformed",
            f"{len(plain)} assertions and {len(encrypted)} encrypted assertions, expected exactly one",
        )
    holder = (plain or encrypted)[0]
    if holder.getparent() is not response:
        raise AssertionRejected("wrapped", "the assertion is not a child of the Response")
    if plain:
        return TakenAssertion(xml=bytes(raw), encrypted=False)
    if sp_key_pem is None:
        raise AssertionRejected("decryption", "the assertion is encrypted and no SP key is configured")
    decrypted = decrypt_assertion(holder, key_pem=sp_key_pem)
    require_signed_assertion(decrypted.plaintext, max_bytes=max_bytes)
    return TakenAssertion(xml=decrypted.plaintext, encrypted=True)


def require_signed_assertion(plaintext: bytes, *, max_bytes: int) -> None:
    """A decrypted assertion must be one saml:Assertion signed by itself: the outer Response's
    signature (if any) covers only the ciphertext, which says nothing once decrypted."""
    try:
        root = parse_untrusted(plaintext, what="decrypted assertion", max_bytes=max_bytes)
    except XmlRejected as exc:
        raise AssertionRejected("decryption", "the decrypted assertion is not acceptable XML") from exc
    if root.tag != ASSERTION_TAG:
        raise AssertionRejected("decryption", "the decrypted content is not a saml:Assertion")
    if root.find(f"{{{NS_DS}}}Signature") is None:
        raise AssertionRejected("signature_missing", "an encrypted assertion must be signed itself")
