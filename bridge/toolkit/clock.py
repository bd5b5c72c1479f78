"""Clock skew against the IdP, from the HTTP ``Date`` header of its answers.

Pure.  Assertions carry NotBefore/NotOnOrAfter; when the bridge's clock and
the IdP's disagree by more than the tenant's ``clock_skew_seconds``, every
valid token looks expired or not yet valid (``assertion_invalid``).  ``Date``
has one-second resolution (RFC 9110 section 5.6.7), so differences of a
second or two mean nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from bridge.toolkit.report import Status, Step

NOISE = timedelta(seconds=2)


def parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else None


def skew_step(*, date_header: str | None, sent_at: datetime, received_at: datetime, allowed: timedelta) -> Step:
    """Compare the IdP's ``Date`` with the middle of the request's round trip."""
    name = "clock skew"
    idp_time = parse_http_date(date_header)
    if idp_time is None:
        return Step(name=name, status=Status.WARN, summary="the IdP sent no readable Date header",
                    hint="cannot measure; make sure both clocks are synchronised with NTP")
    local = sent_at + (received_at - sent_at) / 2
    skew = idp_time - local
    seconds = skew.total_seconds()
    direction = "ahead of" if seconds > 0 else "behind"
    summary = (f"the IdP's clock is {abs(seconds):.0f} s {direction} the bridge's "
               f"(allowed {allowed.total_seconds():.0f} s)")
    if abs(skew) <= NOISE:
        return Step(name=name, status=Status.PASS, summary=f"within {NOISE.total_seconds():.0f} s of the IdP's clock")
    if abs(skew) > allowed:
        return Step(name=name, status=Status.FAIL, summary=summary,
                    hint="tokens will be refused as expired or not yet valid (assertion_invalid): synchronise "
                         "the bridge's clock with NTP (timedatectl set-ntp true), or ask the IdP's administrator",
                    code="assertion_invalid")
    if abs(skew) > allowed / 2:
        return Step(name=name, status=Status.WARN, summary=summary,
                    hint="close to the limit: synchronise the clocks with NTP")
    return Step(name=name, status=Status.PASS, summary=summary)
