"""Run-time controls of the simulator: counters, delay, failure and "mischief" modes, wrong-password dialect.

One mutable :class:`SimState` lives in the aiohttp app under :data:`SIM_STATE`;
tests change it directly, technicians through ``POST /_sim/control``.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import web

from bridge.errors import RequestError

log = logging.getLogger(__name__)

DEFAULT_MISCHIEF_SUBJECT = "mallory@example.com"
ERROR_PAGE_500 = (
    "<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head>"
    "<body><h1>Internal Server Error</h1><p>The server encountered an internal error.</p></body></html>\n"
)
MAX_DELAY_SECONDS = 600.0
_E = TypeVar("_E", bound=enum.Enum)


class FailMode(enum.Enum):
    """Transport-level failures, applied to every protocol endpoint."""

    HTTP_503 = "http-503"
    HTTP_500_PAGE = "http-500-page"  # HTTP 500 with an HTML error page, as a crashed container or proxy shows
    DROP_CONNECTION = "drop-connection"
    GARBAGE = "garbage"


class AdfsAuthFailure(enum.Enum):
    """How the AD FS endpoints answer a wrong password: the dialects real farms (and their proxies) speak."""

    ID3242 = "id3242"  # HTTP 500, Sender / wsse:FailedAuthentication, "ID3242: ..." (AD FS 2012 R2 and later)
    ADFS2_WORDING = "adfs2-wording"  # HTTP 500, same subcode, "At least one security token ... validated."
    HTTP_401 = "http-401"  # HTTP 401 around the ID3242 fault
    HTTP_401_BARE = "http-401-bare"  # HTTP 401 with an empty body (a proxy in front of the farm)
    HTTP_403 = "http-403"  # HTTP 403 around the ID3242 fault
    HTTP_403_BARE = "http-403-bare"  # HTTP 403 with an empty body
    REQUEST_FAILED = "request-failed"  # HTTP 500, Receiver / wst:RequestFailed, MSIS3127: says nothing of why


class Mischief(enum.Enum):
    """Forged or broken tokens a relying party must refuse."""

    TAMPER = "tamper"  # subject changed after signing
    WRONG_KEY = "wrong-key"  # signed with a key that is not in the metadata
    EXPIRED = "expired"  # properly signed, NotOnOrAfter in the past
    WRONG_AUDIENCE = "wrong-audience"  # properly signed, for another relying party
    WRAP = "wrap"  # unsigned forgery for the user, then a signed token for mischief_subject
    COMMENT_INJECTION = "comment-injection"  # signed "<upn>.evil.com", split by a comment after <upn>
    DOCTYPE = "doctype"  # answer starts with a DOCTYPE
    UNSIGNED = "unsigned"  # no signature at all
    REPLAY = "replay"  # the last RSTR issued, answered again byte for byte (a captured token replayed)


class OidcDialect(enum.Enum):
    """Whose words the OIDC token endpoint refuses a password grant in (bridge.idpsim.oidc.dialects)."""

    ENTRA = "entra"
    KEYCLOAK = "keycloak"
    OKTA = "okta"


class OidcRefusal(enum.Enum):
    """A refusal forced on the next password grants, whatever the password."""

    LOCKED = "locked"  # Entra AADSTS50053, Keycloak "Account temporarily disabled"
    CA_BLOCKED = "ca_blocked"  # Entra AADSTS53003 (Conditional Access)
    NOT_SET_UP = "not_set_up"  # Keycloak "Account is not fully set up" (a pending required action)
    MFA_REQUIRED = "mfa_required"  # Entra AADSTS50079 (MFA registration required)


class OidcMischief(enum.Enum):
    """Defective ID tokens a relying party must refuse (or, for the claims ones, must cope with)."""

    WRONG_AUD = "wrong_aud"
    WRONG_NONCE = "wrong_nonce"
    WRONG_ISS = "wrong_iss"
    ALG_NONE = "alg_none"  # unsigned: header alg none, empty signature
    EXPIRED = "expired"  # exp (and iat) well in the past
    UNKNOWN_KEY = "unknown_key"  # signed by a fresh key whose kid the JWKS does not list
    FUTURE_IAT = "future_iat"  # issued an hour from now
    NO_EMAIL = "no_email"  # no email nor email_verified
    EMAIL_UNVERIFIED = "email_unverified"  # email_verified false
    HS256_WITH_PUBLIC_KEY = "hs256_with_public_key"  # algorithm confusion: HMAC keyed with the public key PEM
    OTHER_USER = "other_user"  # names another user of the users file


class OidcKeyAction(enum.Enum):
    """A one-off change of the OIDC signing keys (not a mode: applied when the control is posted)."""

    ROTATE = "rotate"  # a new key signs from now on; the old one stays in the JWKS
    ROTATE_DROP_OLD = "rotate_drop_old"  # the same, and the old key leaves the JWKS


def oidc_key_action(raw: object) -> OidcKeyAction | None:
    """The ``oidc_keys`` control's value, checked; RequestError when it is not one of the actions."""
    return _enum_or_none(OidcKeyAction, raw, "oidc_keys")


@dataclass(kw_only=True, slots=True)
class SimState:
    """Mutable on purpose: the controls are changed while the simulator runs."""

    counters: Counter[str] = field(default_factory=Counter)
    delay_seconds: float = 0.0
    fail_mode: FailMode | None = None
    mischief: Mischief | None = None
    mischief_subject: str = DEFAULT_MISCHIEF_SUBJECT
    auth_failure: AdfsAuthFailure = AdfsAuthFailure.ID3242
    last_rstr: bytes | None = field(default=None, repr=False)  # what Mischief.REPLAY answers
    oidc_dialect: OidcDialect = OidcDialect.KEYCLOAK
    oidc_default_dialect: OidcDialect = OidcDialect.KEYCLOAK  # the users file's oidc.dialect: what a reset restores
    oidc_refusal: OidcRefusal | None = None
    oidc_mischief: OidcMischief | None = None

    def count(self, name: str) -> None:
        self.counters[name] += 1

    def reset_counters(self) -> None:
        self.counters.clear()

    def reset(self) -> None:
        """Back to well-behaved (counters kept)."""
        self.delay_seconds = 0.0
        self.fail_mode = None
        self.mischief = None
        self.mischief_subject = DEFAULT_MISCHIEF_SUBJECT
        self.auth_failure = AdfsAuthFailure.ID3242
        self.oidc_dialect = self.oidc_default_dialect
        self.oidc_refusal = None
        self.oidc_mischief = None

    def snapshot(self) -> dict[str, object]:
        """JSON view for ``GET /_sim/stats``."""
        return {
            "counters": dict(sorted(self.counters.items())),
            "delay_seconds": self.delay_seconds,
            "fail_mode": None if self.fail_mode is None else self.fail_mode.value,
            "mischief": None if self.mischief is None else self.mischief.value,
            "mischief_subject": self.mischief_subject,
            "auth_failure": self.auth_failure.value,
            "oidc_dialect": self.oidc_dialect.value,
            "oidc_refusal": None if self.oidc_refusal is None else self.oidc_refusal.value,
            "oidc_mischief": None if self.oidc_mischief is None else self.oidc_mischief.value,
        }

    def apply_control(self, body: object) -> None:
        """Apply a ``/_sim/control`` JSON body; all-or-nothing, RequestError on any bad field.

        ``oidc_keys`` is an action, not a mode: it is checked here, and carried
        out by the control endpoint (key generation is slow work) after the rest.
        """
        if not isinstance(body, dict):
            raise RequestError("control body must be a JSON object")
        allowed = {"delay_seconds", "fail_mode", "mischief", "mischief_subject", "auth_failure", "reset_counters",
                   "reset", "oidc_dialect", "oidc_refusal", "oidc_mischief", "oidc_keys"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise RequestError(f"unknown control field(s): {', '.join(map(str, unknown))}")
        delay, fail_mode, mischief, subject, auth_failure = (
            self.delay_seconds,
            self.fail_mode,
            self.mischief,
            self.mischief_subject,
            self.auth_failure,
        )
        dialect, refusal, oidc_mischief = self.oidc_dialect, self.oidc_refusal, self.oidc_mischief
        if body.get("reset") is True:
            delay, fail_mode, mischief, subject = 0.0, None, None, DEFAULT_MISCHIEF_SUBJECT
            auth_failure = AdfsAuthFailure.ID3242
            dialect, refusal, oidc_mischief = self.oidc_default_dialect, None, None
        if "delay_seconds" in body:
            raw = body["delay_seconds"]
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= MAX_DELAY_SECONDS:
                raise RequestError(f"delay_seconds must be a number from 0 to {MAX_DELAY_SECONDS:g}")
            delay = float(raw)
        if "fail_mode" in body:
            fail_mode = _enum_or_none(FailMode, body["fail_mode"], "fail_mode")
        if "mischief" in body:
            mischief = _enum_or_none(Mischief, body["mischief"], "mischief")
        if "mischief_subject" in body:
            raw_subject = body["mischief_subject"]
            if not isinstance(raw_subject, str) or "@" not in raw_subject:
                raise RequestError("mischief_subject must be an address like name@domain")
            subject = raw_subject
        if "auth_failure" in body:
            chosen = _enum_or_none(AdfsAuthFailure, body["auth_failure"], "auth_failure")
            auth_failure = chosen if chosen is not None else AdfsAuthFailure.ID3242
        if "oidc_dialect" in body:
            chosen_dialect = _enum_or_none(OidcDialect, body["oidc_dialect"], "oidc_dialect")
            dialect = chosen_dialect if chosen_dialect is not None else self.oidc_default_dialect
        if "oidc_refusal" in body:
            refusal = _enum_or_none(OidcRefusal, body["oidc_refusal"], "oidc_refusal")
        if "oidc_mischief" in body:
            oidc_mischief = _enum_or_none(OidcMischief, body["oidc_mischief"], "oidc_mischief")
        if "oidc_keys" in body:
            oidc_key_action(body["oidc_keys"])
        reset_counters = body.get("reset_counters", False)
        if not isinstance(reset_counters, bool):
            raise RequestError("reset_counters must be true or false")
        self.delay_seconds, self.fail_mode, self.mischief, self.mischief_subject, self.auth_failure = (
            delay,
            fail_mode,
            mischief,
            subject,
            auth_failure,
        )
        self.oidc_dialect, self.oidc_refusal, self.oidc_mischief = dialect, refusal, oidc_mischief
        if reset_counters:
            self.reset_counters()


def _enum_or_none(kind: type[_E], raw: object, name: str) -> _E | None:
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError as exc:
        choices = ", ".join(str(member.value) for member in kind)
        raise RequestError(f"{name} must be null or one of: {choices}") from exc


SIM_STATE = web.AppKey("SIM_STATE", SimState)


def is_loopback(remote: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback; False for anything else or unknown."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def refuse_remote(request: web.Request) -> web.Response | None:
    """The simulator's controls answer loopback clients only: a 403 for anyone else, else None."""
    if is_loopback(request.remote):
        return None
    log.warning("refused simulator control %s from %s", request.path, request.remote)
    return web.json_response({"error": "forbidden", "message": "controls answer loopback clients only"}, status=403)
