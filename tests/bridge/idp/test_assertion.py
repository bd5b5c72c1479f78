"""Assertion validation: every pitfall of protocols.md section 3, on real signatures."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from bridge.errors import AssertionRejected, XmlRejected
from bridge.idp.assertion import (
    CLAIM_UPN,
    AssertionExpectations,
    MemoryReplayCache,
    ReplayCache,
    SamlVersion,
    ValidatedAssertion,
    parse_saml_datetime,
    remember_once,
    validate_assertion,
    verify_response_signature,
)
from bridge.idpsim.tokens import TokenClaims, build_saml11_assertion, build_saml20_assertion, signed_token
from bridge.xml.signature import (
    NS_DS,
    NS_SAML1,
    NS_SAML2,
    NS_SAMLP2,
    SignatureAlgorithm,
    SignaturePolicy,
    sign_enveloped,
)
from tests.keys import make_key_and_cert
from tests.paths import VECTORS

ISSUER = "https://adfs.example.org/adfs/services/trust"
AUDIENCE = "urn:loginbridge:tenant-a"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SKEW = timedelta(seconds=300)
DS = {"ds": NS_DS}
S = "http://www.w3.org/2003/05/soap-envelope"
TRUST = "http://docs.oasis-open.org/ws-sx/ws-trust/200512"

KEY, CERT_PEM = make_key_and_cert("adfs-signing")
CERT = x509.load_pem_x509_certificate(CERT_PEM)
OTHER_KEY, OTHER_CERT_PEM = make_key_and_cert("not-the-idp")
OTHER_CERT = x509.load_pem_x509_certificate(OTHER_CERT_PEM)
SHA1_AND_2 = SignaturePolicy(
    algorithms=frozenset(
        {SignatureAlgorithm.RSA_SHA1, SignatureAlgorithm.RSA_SHA256, SignatureAlgorithm.RSA_SHA512}
    )
)


def claims(**overrides: object) -> TokenClaims:
    values: dict[str, object] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "subject": "alice@example.org",
        "issued_at": NOW - timedelta(minutes=1),
        "attributes": MappingProxyType({"http://example.org/claims/group": ("staff", "print")}),
    }
    values.update(overrides)
    return TokenClaims(**values)  # type: ignore[arg-type]


def expect(**overrides: object) -> AssertionExpectations:
    values: dict[str, object] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "certificates": (CERT,),
        "policy": SHA1_AND_2,
        "clock_skew": SKEW,
        "subject_claim": "upn",
    }
    values.update(overrides)
    return AssertionExpectations(**values)  # type: ignore[arg-type]


def rstr(*tokens: etree._Element) -> bytes:
    """A WS-Trust 1.3 RSTRC envelope around the given token(s), as AD FS shapes it."""
    env = etree.Element(f"{{{S}}}Envelope", nsmap={"s": S})
    etree.SubElement(env, f"{{{S}}}Header")
    body = etree.SubElement(env, f"{{{S}}}Body")
    collection = etree.SubElement(
        body, f"{{{TRUST}}}RequestSecurityTokenResponseCollection", nsmap={"trust": TRUST}
    )
    response = etree.SubElement(collection, f"{{{TRUST}}}RequestSecurityTokenResponse")
    holder = etree.SubElement(response, f"{{{TRUST}}}RequestedSecurityToken")
    for token in tokens:
        holder.append(token)
    etree.SubElement(response, f"{{{TRUST}}}TokenType").text = "urn:oasis:names:tc:SAML:1.0:assertion"
    return etree.tostring(env)


def token(
    version: SamlVersion = SamlVersion.SAML20,
    *,
    algorithm: SignatureAlgorithm = SignatureAlgorithm.RSA_SHA256,
    key: bytes = KEY,
    cert: bytes = CERT_PEM,
    **overrides: object,
) -> etree._Element:
    return signed_token(claims(**overrides), version=version, key_pem=key, cert_pem=cert, algorithm=algorithm)


def sign_after(
    version: SamlVersion, change: Callable[[etree._Element], None], **overrides: object
) -> etree._Element:
    """Build an unsigned token, change it, then sign it: a validly signed but unacceptable token."""
    builder = build_saml11_assertion if version is SamlVersion.SAML11 else build_saml20_assertion
    unsigned = builder(claims(**overrides))
    change(unsigned)
    return sign_enveloped(unsigned, key_pem=KEY, cert_pem=CERT_PEM)


def ok(
    raw: bytes, expectations: AssertionExpectations | None = None, *, now: datetime = NOW
) -> ValidatedAssertion:
    return validate_assertion(raw, expectations or expect(), now=now)


def reason(raw: bytes, expectations: AssertionExpectations | None = None, *, now: datetime = NOW) -> str:
    with pytest.raises(AssertionRejected) as info:
        validate_assertion(raw, expectations or expect(), now=now)
    assert "<" not in str(info.value)  # the detail never carries the document
    return info.value.reason


VERSIONS = pytest.mark.parametrize("version", list(SamlVersion))


# --- accepted tokens ------------------------------------------------------------------------------------


def test_saml11_rsa_sha1_token_in_rstr_validates() -> None:
    raw = rstr(token(SamlVersion.SAML11, algorithm=SignatureAlgorithm.RSA_SHA1, assertion_id="_a11"))
    result = ok(raw)
    assert result.version is SamlVersion.SAML11
    assert result.assertion_id == "_a11"
    assert result.issuer == ISSUER
    assert result.subject == "alice@example.org"
    assert result.not_on_or_after == NOW - timedelta(minutes=1) + timedelta(hours=1)
    assert result.authn_instant == NOW - timedelta(minutes=1)
    assert result.attributes["http://example.org/claims/group"] == ("staff", "print")
    assert result.attributes[CLAIM_UPN] == ("alice@example.org",)
    with pytest.raises(TypeError):
        result.attributes["x"] = ("y",)  # type: ignore[index]


def test_saml11_sha1_refused_when_policy_excludes_it() -> None:
    raw = rstr(token(SamlVersion.SAML11, algorithm=SignatureAlgorithm.RSA_SHA1))
    assert reason(raw, expect(policy=SignaturePolicy())) == "signature_algorithm"


def test_saml20_token_validates_with_each_subject_mapping() -> None:
    raw = rstr(token(SamlVersion.SAML20, assertion_id="_a20"))
    assert ok(raw).version is SamlVersion.SAML20
    for claim in (
        "nameid",
        "upn",
        "email",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    ):
        assert ok(raw, expect(subject_claim=claim)).subject == "alice@example.org"


def test_signed_response_around_the_assertion_validates() -> None:
    """ECP "signed response": the Response carries the signature, the assertion none."""
    assertion = build_saml20_assertion(
        claims(recipient="https://bridge.example/ecp/acs", in_response_to="_req1", assertion_id="_inner")
    )
    response = etree.Element(
        f"{{{NS_SAMLP2}}}Response",
        nsmap={"samlp": NS_SAMLP2},
        ID="_resp",
        Version="2.0",
        InResponseTo="_req1",
    )
    etree.SubElement(response, f"{{{NS_SAML2}}}Issuer").text = ISSUER
    response.append(assertion)
    raw = etree.tostring(sign_enveloped(response, key_pem=KEY, cert_pem=CERT_PEM))
    strict = expect(recipient="https://bridge.example/ecp/acs", in_response_to="_req1")
    assert ok(raw, strict).assertion_id == "_inner"
    assert reason(raw, replace(strict, in_response_to="_other")) == "in_response_to"
    # A second, unsigned assertion slipped into the signed Response breaks its digest or is counted.
    extra = copy.deepcopy(assertion)
    extra.set("ID", "_evil")
    tampered = etree.fromstring(raw)
    tampered.append(extra)
    assert reason(etree.tostring(tampered), strict) == "wrapped"


def test_saml20_recipient_and_in_response_to() -> None:
    raw = rstr(token(recipient="https://bridge.example/acs", in_response_to="_req42"))
    assert ok(raw, expect(recipient="https://bridge.example/acs", in_response_to="_req42")).subject
    assert reason(raw, expect(recipient="https://evil.example/acs")) == "recipient"
    assert reason(raw, expect(in_response_to="_req43")) == "in_response_to"


def test_optional_recipient_must_name_us_when_present() -> None:
    """WS-Trust: AD FS tokens usually name no Recipient; one that does must name this relying party."""
    wstrust = expect(recipient=AUDIENCE, recipient_required=False)
    assert ok(rstr(token(assertion_id="_nr")), wstrust).subject == "alice@example.org"
    assert ok(rstr(token(recipient=AUDIENCE, assertion_id="_ours")), wstrust).subject == "alice@example.org"
    assert reason(rstr(token(recipient="https://other-rp.example/", assertion_id="_theirs")), wstrust) == "recipient"
    # Required (ECP): a missing Recipient is refused too.
    assert reason(rstr(token(assertion_id="_nr2")), expect(recipient=AUDIENCE)) == "recipient"


# --- a signed Response around a signed assertion ----------------------------------------------------------

ACS = "https://bridge.example/ecp/acs"


def signed_response(*, tamper_response: bool = False, response_key: bytes = KEY,
                    response_cert: bytes = CERT_PEM) -> bytes:
    """samlp:Response (signed) around a separately signed assertion, both with real keys."""
    assertion = token(recipient=ACS, in_response_to="_req7", assertion_id="_inner7")
    response = etree.Element(
        f"{{{NS_SAMLP2}}}Response", nsmap={"samlp": NS_SAMLP2}, ID="_resp7", Version="2.0", InResponseTo="_req7"
    )
    etree.SubElement(response, f"{{{NS_SAML2}}}Issuer").text = ISSUER
    response.append(assertion)
    signed = sign_enveloped(response, key_pem=response_key, cert_pem=response_cert)
    if tamper_response:
        # Outside the assertion: its own signature stays intact, the Response's digest does not.
        signed.find(f"{{{NS_SAML2}}}Issuer").text = "https://evil.example/"  # type: ignore[union-attr]
    return etree.tostring(signed)


def test_both_signatures_verify() -> None:
    strict = expect(recipient=ACS, in_response_to="_req7")
    assert ok(signed_response(), strict).assertion_id == "_inner7"


def test_tampered_response_signature_is_refused_even_with_an_intact_assertion_signature() -> None:
    strict = expect(recipient=ACS, in_response_to="_req7")
    raw = signed_response(tamper_response=True)
    assert reason(raw, strict) == "signature_invalid"
    # The assertion's own signature is intact: taken out of the tampered Response, it verifies.
    inner = etree.fromstring(raw).find(f"{{{NS_SAML2}}}Assertion")
    assert inner is not None
    assert ok(rstr(copy.deepcopy(inner)), strict).assertion_id == "_inner7"


def test_response_signed_by_an_unpinned_key_is_refused() -> None:
    strict = expect(recipient=ACS, in_response_to="_req7")
    raw = signed_response(response_key=OTHER_KEY, response_cert=OTHER_CERT_PEM)
    assert reason(raw, strict) == "certificate_mismatch"


def test_verify_response_signature_on_an_envelope() -> None:
    strict = expect(recipient=ACS, in_response_to="_req7")
    assert verify_response_signature(signed_response(), strict, now=NOW) is True
    with pytest.raises(AssertionRejected) as info:
        verify_response_signature(signed_response(tamper_response=True), strict, now=NOW)
    assert info.value.reason == "signature_invalid"
    unsigned = etree.Element(f"{{{NS_SAMLP2}}}Response", ID="_r", Version="2.0")
    assert verify_response_signature(etree.tostring(unsigned), strict, now=NOW) is False
    two = etree.Element("wrapper")
    two.append(copy.deepcopy(unsigned))
    two.append(copy.deepcopy(unsigned))
    with pytest.raises(AssertionRejected) as info:
        verify_response_signature(etree.tostring(two), strict, now=NOW)
    assert info.value.reason == "wrapped"


# --- signature ------------------------------------------------------------------------------------------


@VERSIONS
def test_tampered_content_is_refused(version: SamlVersion) -> None:
    raw = rstr(token(version))
    assert reason(raw.replace(b"alice@example.org", b"bob@example.org")) == "signature_invalid"


@VERSIONS
def test_other_key_with_its_cert_in_keyinfo_is_refused(version: SamlVersion) -> None:
    raw = rstr(token(version, key=OTHER_KEY, cert=OTHER_CERT_PEM))
    assert reason(raw) == "certificate_mismatch"


def test_rollover_second_pinned_certificate() -> None:
    raw = rstr(token())
    assert ok(raw, expect(certificates=(OTHER_CERT, CERT))).subject == "alice@example.org"


@VERSIONS
def test_unsigned_assertion_is_refused(version: SamlVersion) -> None:
    builder = build_saml11_assertion if version is SamlVersion.SAML11 else build_saml20_assertion
    assert reason(rstr(builder(claims()))) == "signature_missing"


# --- wrapping -------------------------------------------------------------------------------------------


def _attacker(version: SamlVersion, *, same_id: str | None = None) -> etree._Element:
    builder = build_saml11_assertion if version is SamlVersion.SAML11 else build_saml20_assertion
    return builder(claims(subject="mallory@example.org", assertion_id=same_id or "_attacker"))


@VERSIONS
@pytest.mark.parametrize("where", ["before", "after"])
def test_unsigned_attacker_assertion_beside_the_signed_one(version: SamlVersion, where: str) -> None:
    signed = token(version)
    pair = (_attacker(version), signed) if where == "before" else (signed, _attacker(version))
    assert reason(rstr(*pair)) == "wrapped"


@VERSIONS
def test_attacker_assertion_around_the_signed_one(version: SamlVersion) -> None:
    outer = _attacker(version)
    outer.append(token(version))
    assert reason(rstr(outer)) == "wrapped"


@VERSIONS
def test_signed_assertion_hidden_elsewhere_attacker_with_same_id(version: SamlVersion) -> None:
    signed = token(version)
    signed_id = signed.get("AssertionID") or signed.get("ID")
    raw = rstr(_attacker(version, same_id=signed_id))
    env = etree.fromstring(raw)
    header = env.find(f"{{{S}}}Header")
    assert header is not None
    header.append(signed)
    assert reason(etree.tostring(env)) == "wrapped"


@VERSIONS
def test_signature_moved_onto_the_attacker_assertion(version: SamlVersion) -> None:
    signed = token(version)
    signature = signed.find("ds:Signature", DS)
    assert signature is not None
    for same_id in (True, False):
        attacker = _attacker(
            version, same_id=(signed.get("AssertionID") or signed.get("ID")) if same_id else None
        )
        attacker.append(copy.deepcopy(signature))
        assert reason(rstr(attacker)) == ("signature_invalid" if same_id else "wrapped")


def test_encrypted_assertion_is_refused() -> None:
    env = etree.fromstring(rstr(token()))
    holder = env.find(f".//{{{TRUST}}}RequestedSecurityToken")
    assert holder is not None
    etree.SubElement(holder, f"{{{NS_SAML2}}}EncryptedAssertion")
    assert reason(etree.tostring(env)) == "malformed"


# --- comment injection ----------------------------------------------------------------------------------


def _with_comment(value: str, split_at: int) -> Callable[[etree._Element], None]:
    """Put ``value`` in every NameID/AttributeValue equal to it, split by an empty comment."""

    def change(assertion: etree._Element) -> None:
        for el in assertion.iter(
            f"{{{NS_SAML1}}}NameIdentifier",
            f"{{{NS_SAML2}}}NameID",
            f"{{{NS_SAML1}}}AttributeValue",
            f"{{{NS_SAML2}}}AttributeValue",
        ):
            if el.text == value:
                el.text = value[:split_at]
                comment = etree.Comment("")
                comment.tail = value[split_at:]
                el.append(comment)

    return change


@VERSIONS
@pytest.mark.parametrize("claim", ["nameid", "upn"])
def test_comment_injection_reads_the_whole_value(version: SamlVersion, claim: str) -> None:
    # The IdP signed "alice@example.org.evil.com"; a comment after "alice@example.org" must not shorten it.
    value = "alice@example.org.evil.com"
    signed = sign_after(version, _with_comment(value, len("alice@example.org")), subject=value)
    raw = rstr(signed)
    assert b"alice@example.org<!---->.evil.com" in raw
    assert ok(raw, expect(subject_claim=claim)).subject == value


@VERSIONS
def test_comment_added_after_signing_keeps_signature_and_whole_value(version: SamlVersion) -> None:
    value = "alice@example.org.evil.com"
    raw = rstr(token(version, subject=value))
    injected = raw.replace(value.encode(), b"alice@example.org<!---->.evil.com")
    assert injected != raw
    result = ok(injected, expect(subject_claim="upn"))
    assert result.subject == value
    assert ok(injected, expect(subject_claim="nameid")).subject == value


# --- parsing --------------------------------------------------------------------------------------------


def test_doctype_is_refused() -> None:
    raw = rstr(token())
    assert reason(b'<!DOCTYPE e [<!ENTITY x "alice">]>' + raw) == "doctype"


def test_oversize_is_refused() -> None:
    raw = rstr(token())
    padded = raw.replace(b"<s:Header/>", b"<s:Header>" + b"<!--" + b"x" * 300_000 + b"-->" + b"</s:Header>")
    assert len(padded) > 256 * 1024
    assert reason(padded) == "malformed"


@pytest.mark.parametrize("garbage", [b"", b"\x00\x01\x02", b"<a>", b"not xml at all", b"<a/>"])
def test_garbage_is_malformed(garbage: bytes) -> None:
    assert reason(garbage) == "malformed"


# --- time -----------------------------------------------------------------------------------------------


@VERSIONS
def test_expired_and_not_yet_valid(version: SamlVersion) -> None:
    raw = rstr(token(version))
    assert reason(raw, now=NOW + timedelta(hours=2)) == "expired"
    assert reason(raw, now=NOW - timedelta(minutes=10)) == "not_yet_valid"


@VERSIONS
def test_clock_skew_tolerated_on_both_sides(version: SamlVersion) -> None:
    early = rstr(token(version, issued_at=NOW + timedelta(minutes=4)))  # IdP clock 4 min ahead
    assert ok(early).subject
    assert reason(rstr(token(version, issued_at=NOW + timedelta(minutes=6)))) == "not_yet_valid"
    late = rstr(token(version, issued_at=NOW - timedelta(minutes=64)))  # expired 4 min ago
    assert ok(late).subject
    assert reason(rstr(token(version, issued_at=NOW - timedelta(minutes=66)))) == "expired"
    assert reason(early, expect(clock_skew=timedelta(0))) == "not_yet_valid"


def test_malformed_date_is_refused() -> None:
    def bad_date(a: etree._Element) -> None:
        conditions = a.find(f"{{{NS_SAML1}}}Conditions")
        assert conditions is not None
        conditions.set("NotOnOrAfter", "2026-03-02 10:30:00")

    assert reason(rstr(sign_after(SamlVersion.SAML11, bad_date))) == "malformed"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2014-01-27T08:15:45.003Z", datetime(2014, 1, 27, 8, 15, 45, 3000, tzinfo=UTC)),
        ("2014-01-27T08:15:45Z", datetime(2014, 1, 27, 8, 15, 45, tzinfo=UTC)),
        ("2014-01-27T08:15:45.1234567Z", datetime(2014, 1, 27, 8, 15, 45, 123456, tzinfo=UTC)),
        ("2014-01-27T10:15:45.5+02:00", datetime(2014, 1, 27, 8, 15, 45, 500000, tzinfo=UTC)),
    ],
)
def test_datetime_parsing(text: str, expected: datetime) -> None:
    assert parse_saml_datetime(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2014-01-27T08:15:45",
        "2014-01-27",
        "2014-13-27T08:15:45Z",
        "2014-01-27T08:15:45.Z",
        "tomorrow",
        "2014-01-27T08:15:45+25:00",
        "0001-01-01T00:00:00Z",
        "２０１４-01-27T08:15:45Z",
    ],
)
def test_datetime_parsing_is_strict(text: str) -> None:
    with pytest.raises(AssertionRejected) as info:
        parse_saml_datetime(text)
    assert info.value.reason == "malformed"


# --- issuer, audience, confirmation, subject ---------------------------------------------------------


@VERSIONS
def test_wrong_issuer(version: SamlVersion) -> None:
    raw = rstr(token(version))
    assert reason(raw, expect(issuer="https://other-idp.example/adfs/services/trust")) == "issuer"
    assert ok(raw, expect(issuer=None)).issuer == ISSUER


@VERSIONS
def test_wrong_audience(version: SamlVersion) -> None:
    raw = rstr(token(version))
    assert reason(raw, expect(audience="urn:someone-else")) == "audience"


@VERSIONS
def test_no_bearer_confirmation(version: SamlVersion) -> None:
    def holder_of_key(a: etree._Element) -> None:
        for method in a.iter(f"{{{NS_SAML1}}}ConfirmationMethod"):
            method.text = "urn:oasis:names:tc:SAML:1.0:cm:holder-of-key"
        for confirmation in a.iter(f"{{{NS_SAML2}}}SubjectConfirmation"):
            confirmation.set("Method", "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key")

    assert reason(rstr(sign_after(version, holder_of_key))) == "confirmation"


@VERSIONS
def test_missing_subject_claim(version: SamlVersion) -> None:
    raw = rstr(token(version))
    assert reason(raw, expect(subject_claim="http://example.org/claims/absent")) == "subject_missing"


def test_missing_nameid() -> None:
    def drop(a: etree._Element) -> None:
        for el in list(a.iter(f"{{{NS_SAML2}}}NameID")):
            el.getparent().remove(el)  # type: ignore[union-attr]

    assert (
        reason(rstr(sign_after(SamlVersion.SAML20, drop)), expect(subject_claim="nameid"))
        == "subject_missing"
    )


# --- replay ---------------------------------------------------------------------------------------------


async def accept_once(raw: bytes, expectations: AssertionExpectations, *, now: datetime,
                      replay: ReplayCache) -> ValidatedAssertion:
    """What the IdP clients do: validate (pure), then the replay check against the cache they were handed."""
    return await remember_once(replay, validate_assertion(raw, expectations, now=now), expectations, now=now)


async def test_replay_is_refused() -> None:
    raw = rstr(token())
    cache = MemoryReplayCache()
    await accept_once(raw, expect(), now=NOW, replay=cache)
    with pytest.raises(AssertionRejected) as info:
        await accept_once(raw, expect(), now=NOW + timedelta(seconds=5), replay=cache)
    assert info.value.reason == "replayed"


async def test_refused_token_does_not_enter_the_replay_cache() -> None:
    raw = rstr(token())
    cache = MemoryReplayCache()
    with pytest.raises(AssertionRejected):
        await accept_once(raw, expect(audience="urn:other"), now=NOW, replay=cache)
    assert len(cache) == 0
    await accept_once(raw, expect(), now=NOW, replay=cache)
    assert len(cache) == 1


async def test_replay_is_remembered_until_not_on_or_after_plus_skew() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str, datetime]] = []

        async def check_and_remember(self, issuer: str, assertion_id: str, expires_at: datetime, *,
                                     now: datetime) -> bool:
            self.calls.append((issuer, assertion_id, expires_at))
            return True

    recorder = Recorder()
    await accept_once(rstr(token(assertion_id="_r1")), expect(), now=NOW, replay=recorder)
    # claims(): issued a minute before NOW, TokenClaims' default lifetime (one hour).
    assert recorder.calls == [(ISSUER, "_r1", NOW - timedelta(minutes=1) + timedelta(hours=1) + SKEW)]


async def test_replay_cache_is_keyed_by_issuer_and_id() -> None:
    cache = MemoryReplayCache()
    assert await cache.check_and_remember("https://idp-a", "_same", NOW + timedelta(minutes=5), now=NOW)
    assert await cache.check_and_remember("https://idp-b", "_same", NOW + timedelta(minutes=5), now=NOW)
    assert not await cache.check_and_remember("https://idp-a", "_same", NOW + timedelta(minutes=5), now=NOW)


async def test_replay_cache_expires_and_is_bounded() -> None:
    cache = MemoryReplayCache(max_entries=2)
    assert await cache.check_and_remember(ISSUER, "_a", NOW + timedelta(minutes=1), now=NOW)
    assert not await cache.check_and_remember(ISSUER, "_a", NOW + timedelta(minutes=1), now=NOW + timedelta(seconds=30))
    # expired: free again
    assert await cache.check_and_remember(ISSUER, "_a", NOW + timedelta(minutes=5), now=NOW + timedelta(minutes=2))
    assert await cache.check_and_remember(ISSUER, "_b", NOW + timedelta(minutes=9), now=NOW + timedelta(minutes=2))
    assert await cache.check_and_remember(ISSUER, "_c", NOW + timedelta(minutes=9), now=NOW + timedelta(minutes=2))
    assert len(cache) == 2
    # the entry closest to expiry ("_a") made room; the others stay
    assert not await cache.check_and_remember(ISSUER, "_b", NOW + timedelta(minutes=9), now=NOW + timedelta(minutes=2))


# --- mutation fuzzing -----------------------------------------------------------------------------------

_FUZZ_BASE = rstr(token(SamlVersion.SAML11, algorithm=SignatureAlgorithm.RSA_SHA1, assertion_id="_fuzz"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=len(_FUZZ_BASE) - 1), st.binary(max_size=3)),
        min_size=1,
        max_size=3,
    )
)
def test_mutated_documents_give_a_result_or_a_project_error(edits: list[tuple[int, bytes]]) -> None:
    raw = _FUZZ_BASE
    for position, replacement in edits:
        position %= max(len(raw), 1)
        raw = raw[:position] + replacement + raw[position + 1 :]
    try:
        result = validate_assertion(raw, expect(), now=NOW)
    except (AssertionRejected, XmlRejected):
        return
    assert isinstance(result, ValidatedAssertion)
    assert result.subject == "alice@example.org"  # whatever still verifies says what the IdP signed


# --- real AD FS documents -------------------------------------------------------------------------------


def _vector(name: str) -> bytes:
    path = VECTORS / "adfs" / name
    if not path.is_file():
        pytest.skip(f"shared vectors not available at {VECTORS} (run beside ../shared)")
    return path.read_bytes()


def _embedded_cert(raw: bytes) -> x509.Certificate:
    text = etree.fromstring(raw).findtext(".//ds:X509Certificate", namespaces=DS)
    assert text
    pem = b"-----BEGIN CERTIFICATE-----\n" + "".join(text.split()).encode() + b"\n-----END CERTIFICATE-----\n"
    return x509.load_pem_x509_certificate(pem)


def _adfs_expectations(raw: bytes) -> AssertionExpectations:
    return expect(
        issuer="http://fs.naturalcauses.com/adfs/services/trust",
        audience="urn:federation:MicrosoftOnline",
        certificates=(_embedded_cert(raw),),
        subject_claim="http://schemas.xmlsoap.org/claims/UPN",
    )


def test_real_adfs_token_expired_at_real_time() -> None:
    raw = _vector("adal-common.rstr.xml")
    assert reason(raw, _adfs_expectations(raw), now=datetime.now(UTC)) == "expired"


def test_real_adfs_token_validates_inside_its_window() -> None:
    raw = _vector("adal-common.rstr.xml")
    result = ok(raw, _adfs_expectations(raw), now=datetime(2014, 1, 27, 8, 30, tzinfo=UTC))
    assert result.version is SamlVersion.SAML11
    assert result.assertion_id == "_bf137f90-7dd7-4668-8a39-8bf55eb52017"
    assert result.subject == "frizzo@naturalcauses.com"
    assert result.not_on_or_after == datetime(2014, 1, 27, 9, 15, 45, 3000, tzinfo=UTC)
    assert result.authn_instant == datetime(2014, 1, 27, 8, 15, 44, 987000, tzinfo=UTC)
    assert (
        ok(
            raw,
            replace(_adfs_expectations(raw), subject_claim="nameid"),
            now=datetime(2014, 1, 27, 8, 30, tzinfo=UTC),
        ).subject
        == "43YRzTrh+Ue8eTecnqLAxQ=="
    )
    # Pinning some other certificate (the document's own KeyInfo notwithstanding) fails.
    assert (
        reason(
            raw,
            replace(_adfs_expectations(raw), certificates=(CERT,)),
            now=datetime(2014, 1, 27, 8, 30, tzinfo=UTC),
        )
        == "certificate_mismatch"
    )


def test_real_prettyprinted_rstr_is_refused() -> None:
    raw = _vector("adal-RSTR-prettyprinted.xml")
    exp = expect(
        issuer="http://fs.richard-randall.com/adfs/services/trust",
        audience="https://login.microsoftonline.com/extSTS.srf",
        certificates=(_embedded_cert(raw),),
    )
    assert reason(raw, exp, now=datetime(2013, 11, 15, 3, 30, tzinfo=UTC)) == "signature_invalid"
