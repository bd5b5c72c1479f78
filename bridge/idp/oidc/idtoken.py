"""ID token validation (OpenID Connect Core 1.0 sections 3.1.3.7 and 3.1.3.6): a signed JWT in, facts out.

Pure: the token, the provider's keys and what this sign-in expects go in; a
frozen value comes out, or :class:`~bridge.errors.AssertionRejected` whose
``reason`` names the check that failed (the audit trail and the tests switch
on it).  joserfc parses the JWS and checks the signature, and is told which
algorithms are allowed, so it never verifies one we did not allow; the claims
are checked here, each with its own reason.

Two steps, because the email claim may be missing from the ID token:
:func:`verify_id_token` checks everything the token itself proves and returns
:class:`IdTokenClaims` (``email`` may be None); the client then reads the
userinfo endpoint (Core 5.3) when it must, and :func:`identify` makes the
:class:`ValidatedIdToken` the login core uses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import OctKey

from bridge.errors import AssertionRejected, IdpProtocolError
from bridge.idp.oidc.jsondoc import clean, load_object
from bridge.idp.oidc.jwks import PublicKey, SigningKeys

MAX_ID_TOKEN_CHARS = 64 * 1024
MAX_TOKEN_AGE = timedelta(hours=24)  # an ID token issued longer ago than this (plus skew) is refused as stale
MAX_JTI_CHARS = 256

# Which key an algorithm is verified with (RFC 7518 section 3.1, RFC 8037 section 3.1): key type, curves.
_KEY_FOR_ALG: dict[str, tuple[str, frozenset[str] | None]] = {
    **{f"{family}{bits}": ("RSA", None) for family in ("RS", "PS") for bits in (256, 384, 512)},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
    **{f"HS{bits}": ("oct", None) for bits in (256, 384, 512)},
}
_COMPACT = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*){2,4}")
_JWT_TYPES = frozenset({"jwt", "application/jwt"})
# The one documented exception to "exactly": Google's ID tokens name their issuer with or without the
# scheme ("accounts.google.com" or "https://accounts.google.com", Google Identity's OpenID Connect guide),
# while its discovery document says https.  The bare spelling is taken for the https one, nothing else.
_GOOGLE_ISSUERS = {"accounts.google.com": "https://accounts.google.com"}


class _Registry(jws.JWSRegistry):
    """joserfc's JWS registry with room for a provider's larger headers (an x5c chain); payloads capped by us."""

    max_header_length = 16 * 1024
    max_payload_length = MAX_ID_TOKEN_CHARS
    max_signature_length = 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class IdTokenExpectations:
    """What an ID token for this tenant and this sign-in must be."""

    issuer: str
    client_id: str
    algorithms: tuple[str, ...]  # the tenant's allow-list (never "none")
    clock_skew: timedelta
    email_claim: str  # email, preferred_username or upn
    nonce: str | None  # the browser sign-in's nonce; None for the password grant (a nonce present is ignored)
    client_secret: str | None = field(default=None, repr=False)  # the HMAC key of HS256/384/512 (OIDC Core 10.1)
    max_age: timedelta = MAX_TOKEN_AGE


@dataclass(frozen=True, kw_only=True, slots=True)
class IdTokenClaims:
    """What a verified ID token says; ``email`` (the tenant's email claim) may still have to come from userinfo."""

    issuer: str
    sub: str
    token_id: str  # jti, else the base64url SHA-256 of the token: the replay cache's key
    expires_at: datetime
    issued_at: datetime
    auth_time: datetime | None
    amr: tuple[str, ...]
    email: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ValidatedIdToken:
    """A verified ID token and the user it names: ``subject`` is the email claim's value."""

    issuer: str
    subject: str  # the value of the tenant's email_claim
    sub: str  # the provider's own subject identifier
    token_id: str
    expires_at: datetime
    issued_at: datetime
    auth_time: datetime | None
    amr: tuple[str, ...]


def token_digest(token: str) -> str:
    """The base64url SHA-256 of the token (no padding): a replay key when the provider sets no jti."""
    digest = hashlib.sha256(token.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_id_token(token: str, keys: SigningKeys, expected: IdTokenExpectations, *, now: datetime) -> IdTokenClaims:
    """Check the signature and every claim of ``token``; AssertionRejected names the first check that failed."""
    payload = _verified_payload(token, keys, expected)
    try:
        claims = load_object(payload, what="the ID token's payload", limit=MAX_ID_TOKEN_CHARS)
    except IdpProtocolError as exc:
        raise AssertionRejected("malformed", exc.detail) from exc
    return _check_claims(claims, token, expected, now=now)


def identify(claims: IdTokenClaims, *, email: str | None = None) -> ValidatedIdToken:
    """The validated token naming its user by the email claim: the token's own, else ``email`` (from userinfo)."""
    subject = claims.email if claims.email is not None else email
    if not subject:
        raise AssertionRejected("claim_missing", "neither the ID token nor the userinfo answer has the email claim")
    return ValidatedIdToken(
        issuer=claims.issuer, subject=subject, sub=claims.sub, token_id=claims.token_id,
        expires_at=claims.expires_at, issued_at=claims.issued_at, auth_time=claims.auth_time, amr=claims.amr,
    )


def is_false(value: object) -> bool:
    """``email_verified`` says no: JSON false, or the string "false" some providers send."""
    return value is False or (isinstance(value, str) and value.strip().lower() == "false")


# --- the JWS ----------------------------------------------------------------------------------------


@contextmanager
def _quiet() -> Iterator[None]:
    """joserfc warns about EdDSA's new name (RFC 9864) and short HMAC secrets: allowed by the tenant's config."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        yield


def _verified_payload(token: str, keys: SigningKeys, expected: IdTokenExpectations) -> bytes:
    """The payload of a JWS compact token that one allowed key verifies.

    Every joserfc error becomes AssertionRejected here: while reading the
    token it is ``malformed``, while verifying it is ``signature``.
    """
    if not isinstance(token, str) or not token:
        raise AssertionRejected("malformed", "the ID token is missing or not a string")
    if len(token) > MAX_ID_TOKEN_CHARS:
        raise AssertionRejected("malformed", f"the ID token is {len(token)} characters, over {MAX_ID_TOKEN_CHARS}")
    if not _COMPACT.fullmatch(token):
        raise AssertionRejected("malformed", "the ID token is not in JWS compact serialization")
    segments = token.count(".") + 1
    if segments == 5:
        raise AssertionRejected("malformed", "the ID token is encrypted (JWE); only signed ID tokens are accepted")
    if segments != 3:
        raise AssertionRejected("malformed", f"the ID token has {segments} segments; a JWS has 3")
    if not expected.algorithms or any(a.lower() == "none" for a in expected.algorithms):
        raise AssertionRejected("algorithm", "the tenant's signing_algorithms must list real algorithms")
    stage = "malformed"
    try:
        with _quiet():
            obj = jws.extract_compact(token.encode("ascii"), registry=_Registry())
            header = obj.headers()
            alg = _check_header(header, expected)
            candidates = _candidates(header, alg, keys, expected)
            registry = _Registry(algorithms=expected.algorithms, strict_check_header=False)
            registry.check_header(header)
            stage = "signature"
            for candidate in candidates:
                if jws.validate_compact(obj, candidate, registry=registry):
                    return obj.payload
    except JoseError as exc:
        raise AssertionRejected(stage, f"the ID token could not be {'read' if stage == 'malformed' else 'verified'}"
                                       f" ({exc.error})") from exc
    raise AssertionRejected("signature", f"no key of the provider verifies the ID token's {alg} signature "
                                         f"({len(candidates)} tried)")


def _check_header(header: Mapping[str, object], expected: IdTokenExpectations) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise AssertionRejected("malformed", "the ID token's header has no alg")
    if alg.lower() == "none":
        raise AssertionRejected("algorithm", "the ID token is unsigned (alg none)")
    if alg not in expected.algorithms:
        raise AssertionRejected("algorithm", f"the ID token is signed with {clean(alg, 20)}, not one of the "
                                             f"tenant's signing_algorithms ({', '.join(expected.algorithms)})")
    if alg not in _KEY_FOR_ALG:
        raise AssertionRejected("algorithm", f"{clean(alg, 20)} is not an algorithm ID tokens are verified with")
    if "b64" in header or "zip" in header or "enc" in header:
        raise AssertionRejected("malformed", "the ID token's header asks for an unencoded, compressed or "
                                             "encrypted payload (b64, zip, enc)")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in _JWT_TYPES):
        # An access token (RFC 9068 "at+jwt") or a logout token must not pass as an ID token.
        raise AssertionRejected("malformed", f"the token's typ is {clean(str(typ), 40)!r}, not an ID token's JWT")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise AssertionRejected("malformed", "the ID token's kid is not a string")
    return alg


def _candidates(header: Mapping[str, object], alg: str, keys: SigningKeys,
                expected: IdTokenExpectations) -> Sequence[PublicKey | OctKey]:
    """The keys that may have signed a token with this header: by kid, of the algorithm's key type."""
    kty, curves = _KEY_FOR_ALG[alg]
    if kty == "oct":
        # HMAC: the key is the client secret (OIDC Core 10.1), never a key from the JWK Set.
        if not expected.client_secret:
            raise AssertionRejected("algorithm", f"{alg} is verified with the client secret, and there is none")
        return [OctKey.import_key(expected.client_secret.encode("utf-8"))]
    kid = header.get("kid")
    pool = [k for k in keys.keys if k.kid == kid] if isinstance(kid, str) else list(keys.keys)
    if isinstance(kid, str) and not pool:
        raise AssertionRejected("unknown_key", f"the provider's JWK Set has no key {clean(kid, 80)!r}")
    fitting = [k.key for k in pool
               if k.kty == kty and (curves is None or k.crv in curves) and (k.alg is None or k.alg == alg)]
    if not fitting:
        if isinstance(kid, str):
            raise AssertionRejected("algorithm", f"key {clean(kid, 80)!r} cannot verify {alg} (it is a {pool[0].kty}"
                                                 f" key{' for ' + pool[0].alg if pool[0].alg else ''})")
        raise AssertionRejected("unknown_key", f"the provider's JWK Set has no {kty} key for {alg}")
    return fitting


# --- the claims -------------------------------------------------------------------------------------


def _instant(claims: Mapping[str, object], name: str, *, required: bool) -> datetime | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise AssertionRejected("claim_missing", f"the ID token has no {name} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AssertionRejected("malformed", f"the ID token's {name} is not a NumericDate")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise AssertionRejected("malformed", f"the ID token's {name} is not a usable time") from exc


def _text(claims: Mapping[str, object], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise AssertionRejected("malformed", f"the ID token's {name} claim is not a string")
    return value


def _check_claims(claims: Mapping[str, object], token: str, expected: IdTokenExpectations, *,
                  now: datetime) -> IdTokenClaims:
    skew = expected.clock_skew
    # Core 3.1.3.7 step 2: the issuer, exactly.
    issuer = _text(claims, "iss")
    if not issuer:
        raise AssertionRejected("claim_missing", "the ID token has no iss claim")
    if issuer != expected.issuer and _GOOGLE_ISSUERS.get(issuer) != expected.issuer:
        raise AssertionRejected("issuer", f"the ID token's issuer is {clean(issuer, 200)!r}, "
                                          f"not {expected.issuer!r}")
    # Steps 3 to 5: our client_id among the audiences; azp when several, and azp always ours when present.
    aud = claims.get("aud")
    if aud is None:
        raise AssertionRejected("claim_missing", "the ID token has no aud claim")
    if isinstance(aud, str):
        audiences: tuple[str, ...] = (aud,)
    elif isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
        audiences = tuple(aud)
    else:
        raise AssertionRejected("malformed", "the ID token's aud is neither a string nor an array of strings")
    if expected.client_id not in audiences:
        raise AssertionRejected("audience", f"the ID token is not for client {expected.client_id!r} "
                                            f"({len(audiences)} audience(s) named)")
    azp = _text(claims, "azp")
    if len(set(audiences)) > 1 and azp is None:
        raise AssertionRejected("azp", "the ID token names several audiences and no azp (authorized party)")
    if azp is not None and azp != expected.client_id:
        raise AssertionRejected("azp", f"the ID token's authorized party is {clean(azp, 200)!r}, "
                                       f"not {expected.client_id!r}")
    # Steps 9 and 10: exp in the future, iat not in the future, both within the skew; not absurdly old.
    expires_at = _instant(claims, "exp", required=True)
    issued_at = _instant(claims, "iat", required=True)
    not_before = _instant(claims, "nbf", required=False)
    assert expires_at is not None and issued_at is not None
    if expires_at + skew <= now:
        raise AssertionRejected("expired", f"the ID token expired at {expires_at.isoformat()}")
    if issued_at - skew > now or (not_before is not None and not_before - skew > now):
        raise AssertionRejected("issued_in_future", f"the ID token is issued for {issued_at.isoformat()}, "
                                                    f"after now ({now.isoformat()}) plus the clock skew")
    if issued_at + expected.max_age + skew < now:
        raise AssertionRejected("stale", f"the ID token was issued at {issued_at.isoformat()}, more than "
                                         f"{expected.max_age} ago")
    # Step 11: the nonce of this browser sign-in (the password grant has none to compare).
    if expected.nonce is not None:
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode("utf-8", "replace"),
                                                                 expected.nonce.encode("utf-8")):
            raise AssertionRejected("nonce", "the ID token's nonce is missing or not this sign-in's")
    sub = _text(claims, "sub")
    if not sub:
        raise AssertionRejected("claim_missing", "the ID token has no sub claim")
    auth_time = _instant(claims, "auth_time", required=False)
    amr_value = claims.get("amr")
    if amr_value is None:
        amr: tuple[str, ...] = ()
    elif isinstance(amr_value, list) and all(isinstance(m, str) for m in amr_value):
        amr = tuple(amr_value)
    else:
        raise AssertionRejected("malformed", "the ID token's amr is not an array of strings")
    jti = _text(claims, "jti")
    if jti is not None and len(jti) > MAX_JTI_CHARS:
        raise AssertionRejected("malformed", f"the ID token's jti is over {MAX_JTI_CHARS} characters")
    email = _text(claims, expected.email_claim) or None
    if email is not None and expected.email_claim == "email" and is_false(claims.get("email_verified")):
        raise AssertionRejected("email_unverified", "the provider says the email address is not verified "
                                                    "(email_verified false)")
    return IdTokenClaims(
        issuer=issuer, sub=sub, token_id=jti or token_digest(token), expires_at=expires_at, issued_at=issued_at,
        auth_time=auth_time, amr=amr, email=email,
    )
