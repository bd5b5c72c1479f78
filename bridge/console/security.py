"""Console sessions and CSRF tokens: HMAC-signed, keyed from the server secret.

The session cookie holds the console user's name, an expiry and a random
nonce, signed with a key derived from ``secrets.hmac_key`` (so restarting
keeps technicians signed in and no extra secret is needed).  A CSRF token is
the HMAC of the session nonce (or, before sign-in, of a pre-session nonce in
its own cookie) and must come back in every POSTed form.  Signing out revokes
the nonce in the shared store (``bridge.console.shared``), so on every instance.
Cookies are HttpOnly and SameSite=Strict; Secure whenever the console is
reached over https (or ``public_url`` is https).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

SESSION_COOKIE = "lb_console"
PRE_COOKIE = "lb_console_pre"
SESSION_SECONDS = 8 * 3600
MAX_FAILURES = 10
FAILURE_WINDOW = 15 * 60.0


def derive_key(hmac_key: bytes, purpose: str) -> bytes:
    """One key per purpose from the server secret (HMAC as a KDF, RFC 2104 keyed)."""
    return hmac.new(hmac_key, f"loginbridge console {purpose} v1".encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsoleSession:
    user: str
    nonce: str
    expires: int


class Signer:
    """Issues and checks console session cookies and CSRF tokens."""

    def __init__(self, hmac_key: bytes) -> None:
        self._session_key = derive_key(hmac_key, "session")
        self._csrf_key = derive_key(hmac_key, "csrf")

    def issue(self, user: str, now: float | None = None) -> tuple[str, ConsoleSession]:
        expires = int((now if now is not None else time.time()) + SESSION_SECONDS)
        session = ConsoleSession(user=user, nonce=secrets.token_urlsafe(18), expires=expires)
        payload = _b64(json.dumps({"u": user, "n": session.nonce, "e": expires}, separators=(",", ":")).encode())
        mac = _b64(hmac.new(self._session_key, payload.encode(), hashlib.sha256).digest())
        return f"{payload}.{mac}", session

    def read(self, cookie: str | None, now: float | None = None) -> ConsoleSession | None:
        if not cookie or cookie.count(".") != 1 or len(cookie) > 1024:
            return None
        payload, mac = cookie.split(".")
        expected = _b64(hmac.new(self._session_key, payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            raw = json.loads(_unb64(payload))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(raw, dict):
            return None
        user, nonce, expires = raw.get("u"), raw.get("n"), raw.get("e")
        if not isinstance(user, str) or not isinstance(nonce, str) or not isinstance(expires, int):
            return None
        current = now if now is not None else time.time()
        if expires <= current:
            return None
        return ConsoleSession(user=user, nonce=nonce, expires=expires)

    def csrf_token(self, nonce: str) -> str:
        return _b64(hmac.new(self._csrf_key, nonce.encode(), hashlib.sha256).digest())

    def csrf_ok(self, nonce: str | None, token: object) -> bool:
        if not nonce or not isinstance(token, str):
            return False
        return hmac.compare_digest(self.csrf_token(nonce), token)
