"""A provider's JWK Set (RFC 7517 section 5), read into the public keys ID tokens may be verified with.

Pure: bytes in, a frozen :class:`SigningKeys` out, or IdpProtocolError.  A JWK
Set may hold keys that are not for us: encryption keys (``use: enc``), key
types joserfc or we do not verify with, curves outside the JOSE registry.  Those
are skipped (INFO), not fatal: RFC 7517 section 5 asks a reader to ignore what
it does not understand, and providers publish such keys next to their signing
keys.  A key published with its private members is never used: whoever reads
the JWK Set could sign with it, so a token verified by it proves nothing.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey

from bridge.errors import IdpProtocolError
from bridge.idp.oidc.jsondoc import MAX_DOCUMENT_BYTES, clean, load_object

log = logging.getLogger(__name__)

Kty = Literal["RSA", "EC", "OKP"]
PublicKey = RSAKey | ECKey | OKPKey

MAX_KEYS = 100
MIN_RSA_BITS = 2048  # RFC 7518 section 3.3: 2048 bits or larger
_WHAT = "the provider's JWK Set"
# Members that only a private key has (RFC 7518 sections 6.2.2, 6.3.2; RFC 8037 section 2).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_CURVES: dict[str, frozenset[str]] = {"EC": frozenset({"P-256", "P-384", "P-521"}),
                                      "OKP": frozenset({"Ed25519", "Ed448"})}


@dataclass(frozen=True, kw_only=True, slots=True)
class SigningKey:
    """One public verification key of the provider."""

    kid: str | None
    kty: Kty
    crv: str | None  # EC and OKP keys
    alg: str | None  # the JWK's own "alg": when present, the only algorithm it may verify (RFC 7517 4.4)
    key: PublicKey


@dataclass(frozen=True, kw_only=True, slots=True)
class SigningKeys:
    """The usable keys of one JWK Set, in document order."""

    keys: tuple[SigningKey, ...]

    def kids(self) -> frozenset[str]:
        return frozenset(k.kid for k in self.keys if k.kid is not None)


def parse_jwks(body: bytes) -> SigningKeys:
    """The verification keys of a JWK Set document; none usable is IdpProtocolError."""
    doc = load_object(body, what=_WHAT, limit=MAX_DOCUMENT_BYTES)
    entries = doc.get("keys")
    if not isinstance(entries, list):
        raise IdpProtocolError(f"{_WHAT} has no \"keys\" array (RFC 7517 section 5)")
    if len(entries) > MAX_KEYS:
        raise IdpProtocolError(f"{_WHAT} lists {len(entries)} keys, more than the {MAX_KEYS} the bridge reads")
    keys: list[SigningKey] = []
    for index, entry in enumerate(entries):
        key = _read_key(entry, index)
        if key is not None:
            keys.append(key)
    if not keys:
        raise IdpProtocolError(f"{_WHAT} holds no usable public signing key ({len(entries)} listed)")
    return SigningKeys(keys=tuple(keys))


def _skip(index: int, kid: object, why: str) -> None:
    shown = clean(kid, 80) if isinstance(kid, str) else "(none)"
    log.info("JWK Set: key #%d (kid %s) skipped: %s", index, shown, why)


def _read_key(entry: object, index: int) -> SigningKey | None:
    if not isinstance(entry, dict):
        _skip(index, None, "not a JSON object")
        return None
    jwk: Mapping[str, object] = entry
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        _skip(index, None, "its kid is not a string")
        return None
    use = jwk.get("use")
    if use is not None and use != "sig":
        _skip(index, kid, f"use is {clean(str(use), 20)!r}, not sig")
        return None
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        _skip(index, kid, "its key_ops do not include verify")
        return None
    kty = jwk.get("kty")
    if kty not in ("RSA", "EC", "OKP"):
        _skip(index, kid, f"key type {clean(str(kty), 20)!r} is not one ID tokens are verified with")
        return None
    private = sorted(_PRIVATE_MEMBERS.intersection(jwk))
    if private:
        log.warning("JWK Set: key #%d (kid %s) refused: it carries private key members (%s); the provider "
                    "publishes a private key, so tokens signed with it prove nothing",
                    index, clean(kid, 80) if kid else "(none)", ", ".join(private))
        return None
    alg = jwk.get("alg")
    if alg is not None and not isinstance(alg, str):
        _skip(index, kid, "its alg is not a string")
        return None
    crv = jwk.get("crv")
    if kty != "RSA" and crv not in _CURVES[str(kty)]:
        _skip(index, kid, f"curve {clean(str(crv), 20)!r} is not one ID tokens are verified with")
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # a small RSA key: refused below, with a reason
            imported = JWKRegistry.import_key(entry)
    except (JoseError, ValueError, TypeError, KeyError, UnsupportedAlgorithm) as exc:
        _skip(index, kid, f"not a valid {kty} key ({type(exc).__name__})")
        return None
    if not isinstance(imported, RSAKey | ECKey | OKPKey) or imported.is_private:
        _skip(index, kid, "not a public key")
        return None
    if isinstance(imported, RSAKey):
        public = imported.public_key
        if isinstance(public, rsa.RSAPublicKey) and public.key_size < MIN_RSA_BITS:
            _skip(index, kid, f"RSA key of {public.key_size} bits, under {MIN_RSA_BITS}")
            return None
    return SigningKey(kid=kid, kty=kty, crv=crv if isinstance(crv, str) else None, alg=alg, key=imported)
