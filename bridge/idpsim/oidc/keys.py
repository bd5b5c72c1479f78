"""The OpenID Provider's signing keys: generated in memory, published as a JWK Set, rotated on demand.

Real OPs publish the key that signs now and keep publishing the previous one
for a while, so tokens issued just before a rotation still verify; a relying
party that caches the JWKS must fetch it again when it meets an unknown
``kid``.  :meth:`OidcKeyRing.rotate` does the same, and ``drop_old`` plays the
OP that removed the old key at once.

Each generation holds one RSA key (RS256, or PS256 when that is the default)
and one P-256 key (ES256).  ``kid`` is the key's RFC 7638 thumbprint.  Key
generation is CPU work: call :meth:`OidcKeyRing.rotate` and
:func:`stray_key` off the event loop.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from joserfc.jwk import ECKey, KeyParameters, RSAKey

from bridge.idpsim.oidc.settings import SigningAlgorithm, supported_algorithms

RSA_BITS = 2048
EC_CURVE = "P-256"

SigningKey = RSAKey | ECKey


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyGeneration:
    """The keys made at one rotation, by algorithm."""

    keys: tuple[tuple[SigningAlgorithm, SigningKey], ...]

    def key_for(self, algorithm: SigningAlgorithm) -> SigningKey | None:
        for alg, key in self.keys:
            if alg is algorithm:
                return key
        return None


def new_key(algorithm: SigningAlgorithm) -> SigningKey:
    """A fresh private key for ``algorithm``, with ``use``, ``alg`` and a thumbprint ``kid``."""
    key: SigningKey
    # use and alg make the JWK say what it is for (RFC 7517 4.2, 4.4); auto_kid sets the RFC 7638 thumbprint.
    # Given at generation: importing the key again would re-validate an RSA private key (~0.15 s each).
    parameters: KeyParameters = {"use": "sig", "alg": algorithm.value}
    if algorithm.is_rsa:
        key = RSAKey.generate_key(RSA_BITS, parameters=parameters, private=True, auto_kid=True)
    else:
        key = ECKey.generate_key(EC_CURVE, parameters=parameters, private=True, auto_kid=True)
    key.ensure_kid()
    return key


def stray_key(algorithm: SigningAlgorithm) -> SigningKey:
    """A key no JWKS lists (the ``unknown_key`` mischief signs with it)."""
    return new_key(algorithm)


class OidcKeyRing:
    """The published keys, newest generation first; thread-safe (rotation runs in a worker thread).

    The first generation is made when first needed: most simulator runs (WS-Trust, ECP) never
    speak OpenID Connect, and an RSA key costs a noticeable fraction of a second to make.
    """

    def __init__(self, default: SigningAlgorithm) -> None:
        self.default = default
        self.algorithms = supported_algorithms(default)
        self._lock = threading.Lock()
        self._made: list[KeyGeneration] = []

    @property
    def _generations(self) -> list[KeyGeneration]:
        """The generations, the first one made on first use (call with the lock held)."""
        if not self._made:
            self._made.append(self._generate())
        return self._made

    def _generate(self) -> KeyGeneration:
        # supported_algorithms holds exactly one RSA algorithm and ES256: one key each.
        return KeyGeneration(keys=tuple((alg, new_key(alg)) for alg in self.algorithms))

    def signing_key(self, algorithm: SigningAlgorithm) -> SigningKey:
        """The key that signs ``algorithm`` now (newest generation)."""
        with self._lock:
            key = self._generations[0].key_for(algorithm)
        if key is None:
            raise KeyError(algorithm.value)
        return key

    def rotate(self, *, drop_old: bool) -> tuple[str, ...]:
        """Make a new generation that signs from now on; returns the new kids."""
        fresh = self._generate()
        with self._lock:
            self._made[:] = [fresh] if drop_old else [fresh, self._generations[0]]
        return tuple(key.kid or "" for _, key in fresh.keys)

    def kids(self) -> tuple[str, ...]:
        """Every published kid, newest first."""
        with self._lock:
            return tuple(key.kid or "" for generation in self._generations for _, key in generation.keys)

    def jwks_json(self) -> str:
        """The public JWK Set (RFC 7517 section 5), as JSON text."""
        with self._lock:
            keys = [key.as_dict(private=False) for generation in self._generations for _, key in generation.keys]
        return json.dumps({"keys": keys})
