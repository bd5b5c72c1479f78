"""Session tokens: random, 256 bits, only their hash is stored."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_BYTES = 32


def new_token() -> tuple[str, bytes]:
    """A fresh bearer token and the hash to store for it."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_hash(token)


def token_hash(token: str) -> bytes:
    # The token is 256 random bits, so a plain SHA-256 is enough: there is
    # nothing to brute-force, and lookups stay one indexed equality.
    return hashlib.sha256(token.encode("utf-8")).digest()
