"""Judging certificates: the IdP's published signing certificates against the pinned ones, and expiry.

Pure: certificates and a time in, a :class:`~bridge.toolkit.report.Step` out.
AD FS rolls its token-signing certificate over by publishing the next one
(as secondary) in FederationMetadata.xml some days before it switches: a
published certificate that is not pinned is a rollover on its way, and a
tenant that pins without trusting the metadata must add it before the switch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509

from bridge.config import fingerprint
from bridge.toolkit.report import Status, Step

EXPIRY_WARNING = timedelta(days=30)


def short_fingerprint(cert: x509.Certificate) -> str:
    """The first bytes of the SHA-256 fingerprint: enough to tell certificates apart on a screen."""
    return fingerprint(cert)[:23]


def describe(cert: x509.Certificate, now: datetime) -> str:
    days = (cert.not_valid_after_utc - now).days
    return f"sha256 {short_fingerprint(cert)}... ({cert.subject.rfc4514_string()}, {days} days left)"


def days_left(not_after: datetime, now: datetime) -> int:
    return (not_after - now).days


def expiry_status(not_after: datetime, now: datetime) -> Status:
    if not_after <= now:
        return Status.FAIL
    if not_after - now <= EXPIRY_WARNING:
        return Status.WARN
    return Status.PASS


def _worst(*statuses: Status) -> Status:
    for status in (Status.FAIL, Status.WARN):
        if status in statuses:
            return status
    return Status.PASS


def compare_signing_certificates(
    *, name: str, pinned: Sequence[x509.Certificate], published: Sequence[x509.Certificate],
    trust_published: bool, now: datetime, config_key: str,
) -> Step:
    """Is the certificate the IdP signs with one the bridge will accept, now and after the next rollover?

    ``trust_published``: the tenant takes certificates from the metadata too
    (``federation_metadata: true``, or SAML metadata), so a rollover needs no
    change; otherwise only ``pinned`` certificates are accepted.
    """
    pinned_fp = {fingerprint(c) for c in pinned}
    published_fp = {fingerprint(c) for c in published}
    accepted = list(pinned) + [c for c in published if trust_published and fingerprint(c) not in pinned_fp]
    if not published:
        if not pinned:
            return Step(name=name, status=Status.FAIL, summary="no signing certificate published or pinned",
                        hint=f"pin the IdP's token-signing certificate under {config_key}")
        return Step(name=name, status=Status.WARN, summary="the metadata lists no signing certificate",
                    hint="only the pinned certificates will be accepted; check the IdP's metadata")
    if not trust_published:
        in_use = [c for c in published if fingerprint(c) in pinned_fp]
        unpinned = [c for c in published if fingerprint(c) not in pinned_fp]
        if not in_use:
            lines = "; ".join(describe(c, now) for c in unpinned)
            return Step(name=name, status=Status.FAIL,
                        summary=f"no published certificate matches the pinned ones; the IdP publishes {lines}",
                        hint=f"save the IdP's current token-signing certificate and list it under {config_key}"
                             " (logins fail with assertion_invalid until then)",
                        code="assertion_invalid")
        if unpinned:
            lines = "; ".join(describe(c, now) for c in unpinned)
            return Step(name=name, status=Status.WARN,
                        summary=f"pending rollover: the IdP also publishes {lines}, which is not pinned",
                        hint=f"add the new certificate to {config_key} before the IdP switches to it")
        accepted = in_use
    stale = [c for c in pinned if fingerprint(c) not in published_fp]
    expiry = _worst(*(expiry_status(c.not_valid_after_utc, now) for c in accepted))
    if trust_published and expiry is Status.FAIL and any(
            expiry_status(c.not_valid_after_utc, now) is not Status.FAIL for c in accepted):
        expiry = Status.WARN  # an expired one beside a valid one: the rollover already happened
    summary = f"{len(accepted)} accepted: " + "; ".join(describe(c, now) for c in accepted)
    if expiry is Status.FAIL:
        return Step(name=name, status=Status.FAIL, summary=summary,
                    hint="every accepted signing certificate has expired; the IdP must publish a new one")
    if expiry is Status.WARN:
        return Step(name=name, status=Status.WARN, summary=summary,
                    hint="a signing certificate expires within 30 days: expect a rollover soon")
    if stale:
        return Step(name=name, status=Status.WARN, summary=summary,
                    hint=f"pinned but no longer published: {', '.join(short_fingerprint(c) for c in stale)}; "
                         f"remove it from {config_key} once the rollover is over")
    return Step(name=name, status=Status.PASS, summary=summary)


def earliest_expiry(certs: Sequence[x509.Certificate]) -> datetime | None:
    return min((c.not_valid_after_utc for c in certs), default=None)
