"""What every server-rendered page for end users needs: CSRF tokens without a session, and strict headers.

The pages users reach with a browser outside the console (``/print/setup`` today,
the phone pairing page next) post passwords, so each form carries a CSRF token:
the HMAC of a random nonce kept in an HttpOnly, SameSite=Strict cookie of the
page's own path (the double-submit pattern with a keyed token, so a cookie
planted by a sibling subdomain is not enough). Keys are derived per purpose from
the server secret. The headers allow no script, no framing, no third-party
asset and no referrer (a page may show a secret URL).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

PAGE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def derive_key(hmac_key: bytes, purpose: str) -> bytes:
    """One key per purpose from the server secret (HMAC as a KDF)."""
    return hmac.new(hmac_key, f"loginbridge pages {purpose} v1".encode(), hashlib.sha256).digest()


class FormGuard:
    """CSRF tokens bound to a per-browser nonce cookie."""

    def __init__(self, hmac_key: bytes, purpose: str) -> None:
        self._key = derive_key(hmac_key, f"csrf {purpose}")

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(18)

    def token(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def ok(self, nonce: str | None, token: object) -> bool:
        if not nonce or not isinstance(token, str) or len(nonce) > 64:
            return False
        return hmac.compare_digest(self.token(nonce), token)


def is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address.split("%", 1)[0].strip("[]")).is_loopback
    except ValueError:
        return False
