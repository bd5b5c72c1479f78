"""Validation of the SAML 1.1 / 2.0 assertion an IdP returns (WS-Trust RSTR or ECP response).

Order matters: find the single assertion, verify the signature that covers it
against the pinned certificates, then read every value ONLY from the node the
signature covers (signature-wrapping defence), with the full string value of
each element (comment-injection defence).  A samlp:Response that carries its
own signature must have it verify as well, even around a separately signed
assertion.  The replay cache (a :class:`ReplayCache`: the bridge's store) is
consulted last, so a refused token never occupies it.  The caller compares the
subject with the typed email; this module only returns it.
"""

from __future__ import annotations

import enum
import heapq
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Protocol

from cryptography import x509
from lxml import etree

from bridge.errors import AssertionRejected, XmlRejected
from bridge.xml.safe import full_text, parse_untrusted
from bridge.xml.signature import (
    NS_DS,
    NS_SAML1,
    NS_SAML2,
    NS_SAMLP2,
    SignatureAlgorithm,
    SignaturePolicy,
    verify_in_tree,
)

log = logging.getLogger(__name__)


def signature_policy(algorithms: tuple[str, ...]) -> SignaturePolicy:
    """The tenant's allowed signature algorithms (config names) as the verifier's policy; both protocols use it."""
    return SignaturePolicy(algorithms=frozenset(SignatureAlgorithm(a) for a in algorithms))


MAX_TOKEN_DOCUMENT_BYTES = 256 * 1024
MAX_ENVELOPE_BYTES = 1024 * 1024  # an ECP envelope with an encrypted assertion (the HTTP layer's cap)

CLAIM_UPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
CLAIM_EMAIL = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
_CLAIM_ALIASES = {"upn": CLAIM_UPN, "email": CLAIM_EMAIL}
_BEARER_11 = "urn:oasis:names:tc:SAML:1.0:cm:bearer"
_BEARER_20 = "urn:oasis:names:tc:SAML:2.0:cm:bearer"

_A1 = f"{{{NS_SAML1}}}"
_A2 = f"{{{NS_SAML2}}}"
_ASSERTION_TAGS = frozenset({f"{_A1}Assertion", f"{_A2}Assertion"})
_ENCRYPTED_TAG = f"{_A2}EncryptedAssertion"
_RESPONSE_TAG = f"{{{NS_SAMLP2}}}Response"
_SIGNATURE_TAG = f"{{{NS_DS}}}Signature"


class SamlVersion(enum.Enum):
    """SAML version of a token, read from its namespace."""

    SAML11 = "1.1"
    SAML20 = "2.0"


@dataclass(frozen=True, kw_only=True, slots=True)
class AssertionExpectations:
    """What a tenant requires of its IdP's tokens."""

    issuer: str | None  # None only when the tenant pins no issuer (then any)
    audience: str  # our AppliesTo / SP entity id
    certificates: tuple[x509.Certificate, ...]
    policy: SignaturePolicy
    clock_skew: timedelta
    subject_claim: str  # "nameid", "upn", "email", or a full claim URI
    recipient: str | None = None  # SAML 2.0 SubjectConfirmationData/@Recipient; None = not checked
    recipient_required: bool = True  # False: a missing Recipient passes, a present one must equal ``recipient``
    in_response_to: str | None = None  # ECP request id; None = not checked (WS-Trust)


@dataclass(frozen=True, kw_only=True, slots=True)
class ValidatedAssertion:
    """The facts of a token that passed every check."""

    assertion_id: str
    issuer: str
    subject: str
    version: SamlVersion
    not_on_or_after: datetime
    authn_instant: datetime | None
    attributes: Mapping[str, tuple[str, ...]]


class ReplayCache(Protocol):
    """Where the ids of accepted assertions are remembered until their token can no longer be valid.

    The IdP clients need only this; the bridge keeps it in its store
    (:meth:`bridge.state.store.Store.check_and_remember`), so a token stays
    refused across a restart.  The key is (issuer, assertion id): ids are only
    unique per issuer (saml-core 1.3.4).
    """

    async def check_and_remember(self, issuer: str, assertion_id: str, expires_at: datetime, *,
                                 now: datetime) -> bool:
        """True, and remember the pair until ``expires_at``, when it is not known (or its entry has
        expired by ``now``); False when it is a replay."""
        ...


class MemoryReplayCache:
    """A :class:`ReplayCache` in memory, for tools and tests (lost on restart).

    Bounded: when full of live entries the one closest to expiry is dropped
    (logged), which trades a tiny replay window for not refusing every login.
    """

    def __init__(self, *, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._max = max_entries
        self._expiry: dict[tuple[str, str], datetime] = {}
        self._heap: list[tuple[datetime, tuple[str, str]]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    async def check_and_remember(self, issuer: str, assertion_id: str, expires_at: datetime, *,
                                 now: datetime) -> bool:
        key = (issuer, assertion_id)
        with self._lock:
            self._purge(now)
            if key in self._expiry:
                return False
            while len(self._expiry) >= self._max:
                expires, victim = heapq.heappop(self._heap)
                if self._expiry.get(victim) == expires:
                    del self._expiry[victim]
                    log.warning("replay cache full (%s entries): dropped a live entry early", self._max)
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return True

    def _purge(self, now: datetime) -> None:
        while self._heap and self._heap[0][0] <= now:
            expires, key = heapq.heappop(self._heap)
            if self._expiry.get(key) == expires:
                del self._expiry[key]


def validate_assertion(
    raw: bytes,
    expectations: AssertionExpectations,
    *,
    now: datetime,
    document: etree._Element | None = None,
) -> ValidatedAssertion:
    """Validate the one assertion inside ``raw`` (the whole document, bytes as received).

    Pure: no replay check here (it needs the store); the IdP clients call
    :func:`remember_once` with the result before they trust it.

    ``document`` may be the tree :func:`bridge.xml.safe.parse_untrusted` already
    made from exactly these bytes (the RSTR reader's), so they are parsed once;
    it is never a re-serialised or modified tree.
    """
    now = _aware(now)
    if document is not None and len(raw) <= MAX_TOKEN_DOCUMENT_BYTES:
        root = document
    else:
        try:
            root = parse_untrusted(raw, what="IdP token document", max_bytes=MAX_TOKEN_DOCUMENT_BYTES)
        except XmlRejected as exc:
            reason = "doctype" if "DOCTYPE" in str(exc) else "malformed"
            raise AssertionRejected(reason, "the document was refused by the XML parser") from exc

    found = _find_assertion(root)
    version = SamlVersion.SAML11 if found.tag == f"{_A1}Assertion" else SamlVersion.SAML20
    assertion_id = _own_id(found, version)
    signed = _signed_node(found)
    signed_id = assertion_id if signed is found else (signed.get("ID") or "")
    if not signed_id:
        raise AssertionRejected("malformed", "the signed element has no ID")
    verified = verify_in_tree(
        root, signed_id, certificates=expectations.certificates, policy=expectations.policy, now=now
    )
    # From here on, read only the verified copy.
    assertion = _assertion_in_verified(verified.element, signed is found, found.tag, assertion_id)
    if signed is not found:
        _check_response(verified.element, expectations)
    else:
        # A Response that carries its own signature must have it verify too, even though the
        # assertion inside is signed separately: a broken outer signature is a changed answer.
        _check_response_signature(root, found.getparent(), expectations, now)

    if version is SamlVersion.SAML11:
        facts = _read_saml11(assertion, expectations, now)
    else:
        facts = _read_saml20(assertion, expectations, now)
    log.debug("assertion accepted: version=%s issuer=%s", version.value, facts.issuer)
    return ValidatedAssertion(
        assertion_id=assertion_id,
        issuer=facts.issuer,
        subject=facts.subject,
        version=version,
        not_on_or_after=facts.not_on_or_after,
        authn_instant=facts.authn_instant,
        attributes=MappingProxyType(facts.attributes),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class _Facts:
    issuer: str
    subject: str
    not_on_or_after: datetime
    authn_instant: datetime | None
    attributes: dict[str, tuple[str, ...]]


async def remember_once(
    replay: ReplayCache, validated: ValidatedAssertion, expectations: AssertionExpectations, *, now: datetime
) -> ValidatedAssertion:
    """The replay check of a validated assertion: remembered until NotOnOrAfter plus skew, refused if seen."""
    expires = validated.not_on_or_after + expectations.clock_skew
    if not await replay.check_and_remember(validated.issuer, validated.assertion_id, expires, now=_aware(now)):
        raise AssertionRejected("replayed", "assertion id already used")
    return validated


def _find_assertion(root: etree._Element) -> etree._Element:
    assertions: list[etree._Element] = []
    for el in root.iter():
        if el.tag == _ENCRYPTED_TAG:
            raise AssertionRejected("malformed", "EncryptedAssertion is not supported")
        if el.tag in _ASSERTION_TAGS:
            assertions.append(el)
    if not assertions:
        raise AssertionRejected("malformed", "no SAML assertion in the document")
    if len(assertions) > 1:
        raise AssertionRejected("wrapped", f"{len(assertions)} assertions in the document, expected 1")
    return assertions[0]


def _own_id(assertion: etree._Element, version: SamlVersion) -> str:
    value = assertion.get("AssertionID" if version is SamlVersion.SAML11 else "ID")
    if not value:
        raise AssertionRejected("malformed", "assertion has no ID")
    return value


def _signed_node(assertion: etree._Element) -> etree._Element:
    """The assertion when it carries its own signature, else its signed samlp:Response parent."""
    if assertion.find(_SIGNATURE_TAG) is not None:
        return assertion
    parent = assertion.getparent()
    if parent is not None and parent.tag == _RESPONSE_TAG and parent.find(_SIGNATURE_TAG) is not None:
        return parent
    raise AssertionRejected("signature_missing", "neither the assertion nor its Response is signed")


def _assertion_in_verified(
    node: etree._Element, is_assertion: bool, tag: str, assertion_id: str
) -> etree._Element:
    if is_assertion:
        candidate = node
    else:
        inner = [el for el in node.iter() if el.tag in _ASSERTION_TAGS]
        if len(inner) != 1 or inner[0].getparent() is not node:
            raise AssertionRejected("wrapped", "the signed Response does not hold exactly the one assertion")
        candidate = inner[0]
    own = candidate.get("AssertionID") if tag == f"{_A1}Assertion" else candidate.get("ID")
    if candidate.tag != tag or own != assertion_id:
        raise AssertionRejected("wrapped", "the signed node is not the assertion")
    return candidate


def _check_response(response: etree._Element, expectations: AssertionExpectations) -> None:
    got = response.get("InResponseTo")
    if expectations.in_response_to is not None and got is not None and got != expectations.in_response_to:
        raise AssertionRejected("in_response_to", "Response answers another request")


def _check_response_signature(
    root: etree._Element, response: etree._Element | None, expectations: AssertionExpectations, now: datetime
) -> bool:
    """Verify the samlp:Response's own ds:Signature when it has one; True when it had one."""
    if response is None or response.tag != _RESPONSE_TAG or response.find(_SIGNATURE_TAG) is None:
        return False
    response_id = response.get("ID") or ""
    if not response_id:
        raise AssertionRejected("malformed", "the signed Response has no ID")
    verified = verify_in_tree(
        root, response_id, certificates=expectations.certificates, policy=expectations.policy, now=now
    )
    _check_response(verified.element, expectations)
    return True


def verify_response_signature(
    raw: bytes, expectations: AssertionExpectations, *, now: datetime, max_bytes: int = MAX_ENVELOPE_BYTES
) -> bool:
    """Verify the signature of the one samlp:Response in ``raw`` (an ECP envelope, as received), if it has one.

    For an encrypted assertion: :func:`validate_assertion` then sees only the
    decrypted plaintext, so the Response's own signature (over the ciphertext)
    is checked here, on the original bytes.  Returns whether there was one;
    raises :class:`AssertionRejected` when it does not verify.
    """
    now = _aware(now)
    try:
        root = parse_untrusted(raw, what="IdP response", max_bytes=max_bytes)
    except XmlRejected as exc:
        raise AssertionRejected("malformed", "the document was refused by the XML parser") from exc
    responses = [el for el in root.iter(_RESPONSE_TAG)]
    if len(responses) != 1:
        raise AssertionRejected("wrapped", f"{len(responses)} samlp:Response elements, expected 1")
    return _check_response_signature(root, responses[0], expectations, now)


# --- SAML 1.1 (AD FS WS-Trust) -------------------------------------------------------------


def _read_saml11(a: etree._Element, exp: AssertionExpectations, now: datetime) -> _Facts:
    if a.get("MajorVersion") != "1":
        raise AssertionRejected("malformed", "SAML 1.x assertion without MajorVersion 1")
    issuer = (a.get("Issuer") or "").strip()
    _check_issuer(issuer, exp)
    conditions = _at_most_one(a, f"{_A1}Conditions")
    if conditions is None:
        raise AssertionRejected("malformed", "Conditions are required")
    not_on_or_after = _check_window(conditions, exp.clock_skew, now)
    if not_on_or_after is None:
        raise AssertionRejected("malformed", "Conditions/@NotOnOrAfter is required")
    _check_audience(conditions, f"{_A1}AudienceRestrictionCondition", f"{_A1}Audience", exp.audience)

    statements = [el for el in a if isinstance(el.tag, str) and el.find(f"{_A1}Subject") is not None]
    if not statements:
        raise AssertionRejected("confirmation", "no statement has a Subject")
    name_ids: set[str] = set()
    for statement in statements:
        subject = statement.find(f"{_A1}Subject")
        assert subject is not None
        methods = [
            full_text(m).strip()
            for m in subject.iterfind(f"{_A1}SubjectConfirmation/{_A1}ConfirmationMethod")
        ]
        if _BEARER_11 not in methods:
            raise AssertionRejected("confirmation", "a Subject lacks bearer confirmation")
        name_id = subject.find(f"{_A1}NameIdentifier")
        if name_id is not None:
            name_ids.add(full_text(name_id).strip())
    if len(name_ids) > 1:
        raise AssertionRejected("malformed", "statements name different subjects")

    attributes: dict[str, list[str]] = {}
    for attribute in a.iterfind(f"{_A1}AttributeStatement/{_A1}Attribute"):
        namespace, name = attribute.get("AttributeNamespace") or "", attribute.get("AttributeName") or ""
        uri = f"{namespace}/{name}" if namespace else name
        attributes.setdefault(uri, []).extend(
            full_text(v) for v in attribute.iterfind(f"{_A1}AttributeValue")
        )
    frozen = {k: tuple(v) for k, v in attributes.items()}

    authn = a.find(f"{_A1}AuthenticationStatement")
    instant = authn.get("AuthenticationInstant") if authn is not None else None
    return _Facts(
        issuer=issuer,
        subject=_subject(exp.subject_claim, next(iter(name_ids), ""), frozen),
        not_on_or_after=not_on_or_after,
        authn_instant=parse_saml_datetime(instant) if instant is not None else None,
        attributes=frozen,
    )


# --- SAML 2.0 (ECP, or WS-Trust with TokenType SAML 2.0) --------------------------------------


def _read_saml20(a: etree._Element, exp: AssertionExpectations, now: datetime) -> _Facts:
    if a.get("Version") != "2.0":
        raise AssertionRejected("malformed", "SAML 2 assertion without Version 2.0")
    issuer_el = _at_most_one(a, f"{_A2}Issuer")
    issuer = full_text(issuer_el).strip()
    _check_issuer(issuer, exp)
    conditions = _at_most_one(a, f"{_A2}Conditions")
    if conditions is None:
        raise AssertionRejected("audience", "no Conditions, so no AudienceRestriction")
    conditions_end = _check_window(conditions, exp.clock_skew, now)
    _check_audience(conditions, f"{_A2}AudienceRestriction", f"{_A2}Audience", exp.audience)

    subject = _at_most_one(a, f"{_A2}Subject")
    if subject is None:
        raise AssertionRejected("subject_missing", "no Subject")
    confirmation_end = _check_bearer(subject, exp, now)
    not_on_or_after = min(d for d in (conditions_end, confirmation_end) if d is not None)

    attributes: dict[str, list[str]] = {}
    for attribute in a.iterfind(f"{_A2}AttributeStatement/{_A2}Attribute"):
        attributes.setdefault(attribute.get("Name") or "", []).extend(
            full_text(v) for v in attribute.iterfind(f"{_A2}AttributeValue")
        )
    frozen = {k: tuple(v) for k, v in attributes.items()}
    authn = a.find(f"{_A2}AuthnStatement")
    instant = authn.get("AuthnInstant") if authn is not None else None
    return _Facts(
        issuer=issuer,
        subject=_subject(exp.subject_claim, full_text(subject.find(f"{_A2}NameID")).strip(), frozen),
        not_on_or_after=not_on_or_after,
        authn_instant=parse_saml_datetime(instant) if instant is not None else None,
        attributes=frozen,
    )


def _check_bearer(subject: etree._Element, exp: AssertionExpectations, now: datetime) -> datetime:
    """SAML profiles section 4.1.4.2: one bearer confirmation must hold; returns its NotOnOrAfter."""
    first_failure: AssertionRejected | None = None
    for confirmation in subject.iterfind(f"{_A2}SubjectConfirmation"):
        if confirmation.get("Method") != _BEARER_20:
            continue
        data = _at_most_one(confirmation, f"{_A2}SubjectConfirmationData")
        try:
            if data is None or data.get("NotOnOrAfter") is None:
                raise AssertionRejected("confirmation", "bearer confirmation without NotOnOrAfter")
            end = parse_saml_datetime(data.get("NotOnOrAfter", ""))
            if now - exp.clock_skew >= end:
                raise AssertionRejected("expired", "bearer confirmation has expired")
            start = data.get("NotBefore")
            if start is not None and now + exp.clock_skew < parse_saml_datetime(start):
                raise AssertionRejected("not_yet_valid", "bearer confirmation is not yet valid")
            recipient = data.get("Recipient")
            if exp.recipient is not None and (recipient is not None or exp.recipient_required) and (
                recipient != exp.recipient
            ):
                raise AssertionRejected("recipient", "Recipient is not this relying party")
            if exp.in_response_to is not None and data.get("InResponseTo") != exp.in_response_to:
                raise AssertionRejected("in_response_to", "InResponseTo is not our request")
        except AssertionRejected as exc:
            first_failure = first_failure or exc
            continue
        return end
    if first_failure is not None:
        raise first_failure
    raise AssertionRejected("confirmation", "no bearer SubjectConfirmation")


# --- shared checks ------------------------------------------------------------------------------


def _at_most_one(parent: etree._Element, tag: str) -> etree._Element | None:
    found = parent.findall(tag)
    if len(found) > 1:
        raise AssertionRejected("malformed", f"{etree.QName(tag).localname} repeated")
    return found[0] if found else None


def _check_issuer(issuer: str, exp: AssertionExpectations) -> None:
    if not issuer:
        raise AssertionRejected("issuer", "the assertion names no issuer")
    if exp.issuer is not None and issuer != exp.issuer:
        raise AssertionRejected("issuer", f"issuer {issuer[:200]!r} is not the tenant's IdP")


def _check_window(conditions: etree._Element, skew: timedelta, now: datetime) -> datetime | None:
    start, end = conditions.get("NotBefore"), conditions.get("NotOnOrAfter")
    if start is not None and now + skew < parse_saml_datetime(start):
        raise AssertionRejected("not_yet_valid", "Conditions/@NotBefore is in the future")
    end_at = parse_saml_datetime(end) if end is not None else None
    if end_at is not None and now - skew >= end_at:
        raise AssertionRejected("expired", "Conditions/@NotOnOrAfter has passed")
    return end_at


def _check_audience(conditions: etree._Element, restriction_tag: str, audience_tag: str, ours: str) -> None:
    """Every audience restriction must name us (saml-core 2.5.1.4: restrictions AND, audiences OR)."""
    restrictions = conditions.findall(restriction_tag)
    if not restrictions:
        raise AssertionRejected("audience", "no audience restriction")
    for restriction in restrictions:
        if ours not in {full_text(a).strip() for a in restriction.iterfind(audience_tag)}:
            raise AssertionRejected("audience", "the token is for another relying party")


def _subject(claim: str, name_id: str, attributes: Mapping[str, tuple[str, ...]]) -> str:
    if claim == "nameid":
        if not name_id:
            raise AssertionRejected("subject_missing", "no NameID")
        return name_id
    uri = _CLAIM_ALIASES.get(claim, claim)
    values = {v.strip() for v in attributes.get(uri, ()) if v.strip()}
    if len(values) != 1:
        raise AssertionRejected("subject_missing", f"claim {uri[:200]!r} has {len(values)} distinct values")
    return values.pop()


_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})",
    re.ASCII,
)


def parse_saml_datetime(text: str) -> datetime:
    """Strict xs:dateTime with a zone (Z or offset) and any number of fractional digits."""
    match = _DATETIME.fullmatch(text.strip())
    if match is None:
        raise AssertionRejected("malformed", "a date is not an xs:dateTime with a time zone")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    if not 1900 <= year <= 9000:
        raise AssertionRejected("malformed", "a date is out of range")
    fraction, zone = match.group(7), match.group(8)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        if zone == "Z":
            tz: timezone = UTC
        else:
            sign = 1 if zone[0] == "+" else -1
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 14 or minutes > 59:
                raise ValueError("offset out of range")
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise AssertionRejected("malformed", "a date is out of range") from exc


def _aware(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
