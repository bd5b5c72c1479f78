"""ID tokens (OpenID Connect Core 1.0 section 2) and userinfo claims, signed with joserfc; and their mischief.

Pure apart from the key ring: an :class:`IdTokenOrder` in, compact JWS text
out.  The claims follow what Entra v2 and Keycloak put in: ``preferred_username``
is the UPN, ``sub`` is an opaque, stable per-user value (never the e-mail: an
address can be reassigned, OIDC Core section 5.7), ``amr`` says how the user
signed in (RFC 8176).  Which profile claims appear depends on the scopes
granted (OIDC Core section 5.4): ``email`` gives ``email``/``email_verified``,
``profile`` gives ``name``/``preferred_username``/``upn``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import OctKey
from joserfc.jws import JWSRegistry

from bridge.idpsim.config import SimUser
from bridge.idpsim.oidc.keys import OidcKeyRing, SigningKey, stray_key
from bridge.idpsim.oidc.settings import SigningAlgorithm
from bridge.idpsim.state import OidcMischief

SCOPE_OPENID = "openid"
SCOPE_EMAIL = "email"
SCOPE_PROFILE = "profile"
SUPPORTED_SCOPES = (SCOPE_OPENID, SCOPE_EMAIL, SCOPE_PROFILE)
CLAIMS_SUPPORTED = (
    "sub", "iss", "aud", "azp", "exp", "iat", "auth_time", "nonce", "amr", "jti", "at_hash",
    "email", "email_verified", "name", "preferred_username", "upn",
)
WRONG_AUDIENCE = "some-other-client"
WRONG_ISSUER = "https://evil.example/oidc"
MISCHIEF_SHIFT = timedelta(hours=2)  # past any clock skew a relying party allows
# Keyed so the subject is opaque but the same for a user on every run and every simulator.
_SUBJECT_KEY = b"loginbridge idp-sim oidc subject v1"
_NONE_REGISTRY = JWSRegistry(algorithms=["none"])
_HS256_REGISTRY = JWSRegistry(algorithms=["HS256"])


@dataclass(frozen=True, kw_only=True, slots=True)
class IdTokenOrder:
    """Everything an ID token says, decided by the grant that issues it."""

    issuer: str
    client_id: str
    user: SimUser
    scopes: tuple[str, ...]
    auth_time: datetime
    mfa: bool
    nonce: str | None
    access_token: str
    lifetime: timedelta
    include_email: bool  # the client's id_token_email: False leaves email to userinfo
    algorithm: SigningAlgorithm


def subject_for(user: SimUser) -> str:
    """The user's ``sub``: an HMAC of the UPN, base64url, 43 characters like Entra's pairwise ids."""
    digest = hmac.new(_SUBJECT_KEY, user.upn.casefold().encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def granted_scopes(requested: str | None) -> tuple[str, ...]:
    """The scopes granted: the supported ones among those requested, in the request's order."""
    if not requested:
        return ()
    return tuple(dict.fromkeys(s for s in requested.split(" ") if s in SUPPORTED_SCOPES))


def _profile_claims(user: SimUser, scopes: tuple[str, ...], *, include_email: bool) -> dict[str, object]:
    claims: dict[str, object] = {"sub": subject_for(user)}
    if SCOPE_EMAIL in scopes and include_email:
        claims["email"] = user.email
        claims["email_verified"] = True
    if SCOPE_PROFILE in scopes:
        claims["name"] = user.display_name
        claims["preferred_username"] = user.upn
        claims["upn"] = user.upn
    return claims


def userinfo_json(user: SimUser, scopes: tuple[str, ...]) -> str:
    """The UserInfo response (OIDC Core section 5.3.2) for an access token of ``scopes``."""
    return json.dumps(_profile_claims(user, scopes, include_email=True))


def at_hash(access_token: str) -> str:
    """OIDC Core section 3.1.3.6: the left half of the SHA-256 of the token (all our algorithms use SHA-256)."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def issue_id_token(
    order: IdTokenOrder,
    keys: OidcKeyRing,
    *,
    now: datetime,
    mischief: OidcMischief | None = None,
    other_user: SimUser | None = None,
) -> str:
    """The signed ID token; ``mischief`` breaks it in the advertised way.  CPU work: call it off the loop."""
    user = other_user if mischief is OidcMischief.OTHER_USER and other_user is not None else order.user
    issued = now.astimezone(UTC)
    auth_time = order.auth_time
    if mischief is OidcMischief.EXPIRED:
        issued = issued - order.lifetime - MISCHIEF_SHIFT
        auth_time = issued
    elif mischief is OidcMischief.FUTURE_IAT:
        issued = issued + MISCHIEF_SHIFT
    claims: dict[str, object] = {
        "iss": WRONG_ISSUER if mischief is OidcMischief.WRONG_ISS else order.issuer,
        "aud": WRONG_AUDIENCE if mischief is OidcMischief.WRONG_AUD else order.client_id,
        "azp": order.client_id,
        "exp": int((issued + order.lifetime).timestamp()),
        "iat": int(issued.timestamp()),
        "auth_time": int(auth_time.timestamp()),
    }
    nonce = order.nonce
    if mischief is OidcMischief.WRONG_NONCE:
        nonce = secrets.token_urlsafe(16)
    if nonce is not None:
        claims["nonce"] = nonce
    claims.update(_profile_claims(user, order.scopes, include_email=order.include_email))
    if mischief is OidcMischief.NO_EMAIL:
        claims.pop("email", None)
        claims.pop("email_verified", None)
    elif mischief is OidcMischief.EMAIL_UNVERIFIED:
        claims.setdefault("email", user.email)
        claims["email_verified"] = False
    claims["amr"] = ["pwd", "otp", "mfa"] if order.mfa else ["pwd"]
    claims["at_hash"] = at_hash(order.access_token)
    claims["jti"] = secrets.token_urlsafe(18)
    return _sign(claims, order.algorithm, keys, mischief)


def _sign(claims: dict[str, object], algorithm: SigningAlgorithm, keys: OidcKeyRing,
          mischief: OidcMischief | None) -> str:
    if mischief is OidcMischief.ALG_NONE:
        with warnings.catch_warnings():
            # joserfc warns that "none" is deprecated: producing exactly that token is the point here.
            warnings.simplefilter("ignore", SecurityWarning)
            # "none" signs with no key; joserfc still wants one to hand the algorithm, which ignores it.
            return jwt.encode({"alg": "none", "typ": "JWT"}, claims, OctKey.generate_key(256), algorithms=["none"],
                              registry=_NONE_REGISTRY)
    if mischief is OidcMischief.HS256_WITH_PUBLIC_KEY:
        real = keys.signing_key(algorithm)
        # The published key's PEM as the HMAC secret (the classic algorithm-confusion forgery).  joserfc
        # refuses to import a PEM as an oct key, rightly; the key object is built directly for the attack.
        pem = public_pem(real)
        forged = OctKey(pem, pem)
        return jwt.encode({"alg": "HS256", "typ": "JWT", "kid": real.kid or ""}, claims, forged,
                          algorithms=["HS256"], registry=_HS256_REGISTRY)
    key: SigningKey = stray_key(algorithm) if mischief is OidcMischief.UNKNOWN_KEY else keys.signing_key(algorithm)
    header = {"alg": algorithm.value, "typ": "JWT", "kid": key.kid or ""}
    return jwt.encode(header, claims, key, algorithms=[algorithm.value])


def public_pem(key: SigningKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of a signing key (what an attacker fetches from the JWKS)."""
    return key.as_pem(private=False)

