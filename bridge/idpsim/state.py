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

    def snapshot(self) -> dict[str, object]:
        """JSON view for ``GET /_sim/stats``."""
        return {
            "counters": dict(sorted(self.counters.items())),
            "delay_seconds": self.delay_seconds,
            "fail_mode": None if self.fail_mode is None else self.fail_mode.value,
            "mischief": None if self.mischief is None else self.mischief.value,
            "mischief_subject": self.mischief_subject,
            "auth_failure": self.auth_failure.value,
        }

    def apply_control(self, body: object) -> None:
        """Apply a ``/_sim/control`` JSON body; all-or-nothing, RequestError on any bad field."""
        if not isinstance(body, dict):
            raise RequestError("control body must be a JSON object")
        allowed = {"delay_seconds", "fail_mode", "mischief", "mischief_subject", "auth_failure", "reset_counters",
                   "reset"}
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
        if body.get("reset") is True:
            delay, fail_mode, mischief, subject = 0.0, None, None, DEFAULT_MISCHIEF_SUBJECT
            auth_failure = AdfsAuthFailure.ID3242
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
