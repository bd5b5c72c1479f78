"""Turning an authenticated user into the token the simulator answers with, honest or forged.

Honest tokens: SAML 1.1 unless SAML 2.0 was asked for, subject = UPN,
claims upn / emailaddress / name / group, signed with the configured key.
The :class:`~bridge.idpsim.state.Mischief` modes produce the classic attacks
and mistakes a relying party must refuse, each described in the enum.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

from lxml import etree

from bridge.idp.assertion import SamlVersion
from bridge.idpsim import namespaces as ns
from bridge.idpsim.config import SigningAlgorithmName, SimUser
from bridge.idpsim.documents import IssuedToken, RstRequest, SamlTokenKind
from bridge.idpsim.keys import generate_signing_pair
from bridge.idpsim.state import Mischief
from bridge.idpsim.tokens import TokenClaims, build_saml11_assertion, build_saml20_assertion, signed_token
from bridge.xml.signature import SignatureAlgorithm

WRONG_AUDIENCE = "urn:idp-sim:some-other-relying-party"
EVIL_SUFFIX = ".evil.com"
_SUBJECT_TAGS = ("NameIdentifier", "NameID")


@dataclass(frozen=True, kw_only=True, slots=True)
class SigningMaterial:
    key_pem: bytes = field(repr=False)
    cert_pem: bytes
    algorithm: SigningAlgorithmName


@dataclass(frozen=True, kw_only=True, slots=True)
class IssueContext:
    """Everything besides the request that decides what token is issued."""

    issuer: str
    lifetime: timedelta
    signing: SigningMaterial
    mischief: Mischief | None = None
    mischief_subject: str = "mallory@example.com"


@functools.cache
def _stranger_pair() -> tuple[bytes, bytes]:
    """A signing identity no metadata names (generated once per process: RSA keygen is slow)."""
    return generate_signing_pair("not-the-idp.invalid")


def _claims(
    user: SimUser,
    *,
    subject: str,
    issuer: str,
    audience: str,
    issued_at: datetime,
    lifetime: timedelta,
    assertion_id: str,
) -> TokenClaims:
    attributes: dict[str, tuple[str, ...]] = {
        ns.CLAIM_UPN: (subject,),
        ns.CLAIM_EMAIL: (user.email if subject == user.upn else subject,),
        ns.CLAIM_NAME: (user.display_name,),
    }
    if user.groups:
        attributes[ns.CLAIM_GROUP] = user.groups
    return TokenClaims(
        issuer=issuer,
        audience=audience,
        subject=subject,
        issued_at=issued_at,
        lifetime=lifetime,
        attributes=MappingProxyType(attributes),
        assertion_id=assertion_id,
    )


def _subject_nodes(assertion: etree._Element) -> list[etree._Element]:
    return [
        el
        for el in assertion.iter()
        if isinstance(el.tag, str) and etree.QName(el).localname in _SUBJECT_TAGS
    ]


def _value_nodes(assertion: etree._Element, value: str) -> list[etree._Element]:
    return [
        el
        for el in assertion.iter()
        if isinstance(el.tag, str) and etree.QName(el).localname == "AttributeValue" and el.text == value
    ]


def issue_token(request: RstRequest, user: SimUser, context: IssueContext, *, now: datetime) -> IssuedToken:
    """The token an RST asks for, for ``user``, shaped by ``context.mischief``."""
    return issue_for(user, context, applies_to=request.applies_to, kind=request.token_kind, now=now)


def issue_for(
    user: SimUser, context: IssueContext, *, applies_to: str | None, kind: SamlTokenKind, now: datetime
) -> IssuedToken:
    """The token for ``user`` and relying party ``applies_to``, whichever protocol carries it.

    WS-Trust (:func:`issue_token`) and the WS-Federation passive ``wresult`` issue
    the same tokens, mischief included, so a relying party meets one token shape.
    """
    mischief = context.mischief
    version = SamlVersion.SAML20 if kind is SamlTokenKind.SAML20 else SamlVersion.SAML11
    audience = applies_to or ""
    issued_at = now
    subject = user.upn
    key_pem, cert_pem = context.signing.key_pem, context.signing.cert_pem
    if mischief is Mischief.EXPIRED:
        issued_at = now - context.lifetime - timedelta(minutes=10)
    elif mischief is Mischief.WRONG_AUDIENCE:
        audience = WRONG_AUDIENCE
    elif mischief is Mischief.WRONG_KEY:
        key_pem, cert_pem = _stranger_pair()
    elif mischief is Mischief.WRAP:
        subject = context.mischief_subject
    elif mischief is Mischief.COMMENT_INJECTION:
        subject = user.upn + EVIL_SUFFIX
    assertion_id = "_" + str(uuid.uuid4())
    claims = _claims(
        user,
        subject=subject,
        issuer=context.issuer,
        audience=audience,
        issued_at=issued_at,
        lifetime=context.lifetime,
        assertion_id=assertion_id,
    )
    if mischief is Mischief.UNSIGNED:
        token = (
            build_saml20_assertion(claims)
            if version is SamlVersion.SAML20
            else build_saml11_assertion(claims)
        )
    else:
        token = signed_token(
            claims,
            version=version,
            key_pem=key_pem,
            cert_pem=cert_pem,
            algorithm=SignatureAlgorithm(context.signing.algorithm.value),
        )
    elements: tuple[etree._Element, ...] = (token,)
    if mischief is Mischief.TAMPER:
        for node in _subject_nodes(token) + _value_nodes(token, user.upn):
            node.text = context.mischief_subject
    elif mischief is Mischief.COMMENT_INJECTION:
        # Exclusive C14N without comments drops the comment, so the signature still holds.
        for node in _subject_nodes(token) + _value_nodes(token, subject):
            node.text = user.upn
            comment = etree.Comment("")
            comment.tail = EVIL_SUFFIX
            node.append(comment)
    elif mischief is Mischief.WRAP:
        forged_claims = _claims(
            user,
            subject=user.upn,
            issuer=context.issuer,
            audience=applies_to or "",
            issued_at=now,
            lifetime=context.lifetime,
            assertion_id="_" + str(uuid.uuid4()),
        )
        forged = (
            build_saml20_assertion(forged_claims)
            if version is SamlVersion.SAML20
            else build_saml11_assertion(forged_claims)
        )
        elements = (forged, token)
    return IssuedToken(
        elements=elements,
        assertion_id=assertion_id,
        kind=kind,
        created=issued_at,
        expires=issued_at + context.lifetime,
    )
