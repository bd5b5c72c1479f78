"""Reading a tenant's users from its directory: ldap3's synchronous API, meant for a worker thread.

One connection per sync: TLS first (``ldaps://``, or StartTLS before the bind), verified against the
configured CA (else the system's trust store) and the host name checked; then a simple bind as the
service account and paged searches (the simple paged results control, RFC 2696) under ``base_dn``.
With a ``disabled_filter`` a second paged search (no attributes) names the disabled entries; otherwise
AD's ``userAccountControl`` bit 2 (ACCOUNTDISABLE) says it.

Every failure becomes a :class:`DirectoryError` whose text says what to check; the bind password never
appears in one (nor in a log record: ldap3's own logging stays off).
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars

from bridge.config import DirectoryConfig
from bridge.directory.plan import DirectoryEntry
from bridge.errors import BridgeError

log = logging.getLogger(__name__)

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
IN_CHAIN_RULE = "1.2.840.113556.1.4.1941"  # AD's LDAP_MATCHING_RULE_IN_CHAIN (nested group membership)
ACCOUNTDISABLE = 0x2
UAC_ATTRIBUTE = "userAccountControl"


class DirectoryError(BridgeError):
    """The directory could not be read (connection, TLS, bind, search) or a sync could not run."""

    code = "directory_error"


@dataclass(frozen=True, kw_only=True, slots=True)
class DirectoryRead:
    entries: tuple[DirectoryEntry, ...]
    pages: int  # search requests made (paged results: one per page, both searches)


def bind_password(cfg: DirectoryConfig) -> str:
    """The service account's password, read now (a rotated file is picked up by the next sync)."""
    if cfg.bind_password_env is not None:
        value = os.environ.get(cfg.bind_password_env, "")
        where = f"environment variable {cfg.bind_password_env}"
    else:
        assert cfg.bind_password_file is not None
        try:
            value = cfg.bind_password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise DirectoryError(f"cannot read the bind password file {cfg.bind_password_file} "
                                 f"({exc.strerror or exc})") from None
        where = f"file {cfg.bind_password_file}"
    if not value:
        # An empty password would be an unauthenticated bind (RFC 4513 5.1.2): never send one.
        raise DirectoryError(f"no bind password: {where} is empty or not set")
    return value


def search_filter(cfg: DirectoryConfig) -> str:
    """The user filter, narrowed to the group's members when ``group_dn`` is set."""
    if cfg.group_dn is None:
        return cfg.user_filter
    rule = f":{IN_CHAIN_RULE}:" if cfg.nested_groups else ""
    return f"(&{cfg.user_filter}(memberOf{rule}={escape_filter_chars(cfg.group_dn)}))"


def _tls(cfg: DirectoryConfig) -> ldap3.Tls:
    return ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=None if cfg.ca_file is None else str(cfg.ca_file),
                     sni=cfg.host)


def _connection_error(cfg: DirectoryConfig, exc: Exception) -> DirectoryError:
    text = str(exc)
    where = f"cannot connect to the directory at {cfg.url}"
    if "CERTIFICATE_VERIFY_FAILED" in text or isinstance(exc, ssl.SSLCertVerificationError):
        trust = f"the CA in {cfg.ca_file}" if cfg.ca_file else "the system's trust store (set ca_file)"
        return DirectoryError(f"{where}: its TLS certificate is not trusted by {trust}")
    if isinstance(exc, ldap_errors.LDAPCertificateError) or "doesn't match" in text:
        return DirectoryError(f"{where}: its TLS certificate does not name {cfg.host}")
    if isinstance(exc, ldap_errors.LDAPStartTLSError):
        return DirectoryError(f"{where}: StartTLS failed ({text})")
    return DirectoryError(f"{where}: {text}")


def _open(cfg: DirectoryConfig, password: str) -> ldap3.Connection:
    server = ldap3.Server(cfg.host, port=cfg.port, use_ssl=cfg.use_ssl, tls=_tls(cfg), get_info=ldap3.NONE,
                          connect_timeout=max(1, int(cfg.timeout)))
    conn = ldap3.Connection(server, user=cfg.bind_dn, password=password, authentication=ldap3.SIMPLE,
                            auto_bind=ldap3.AUTO_BIND_NONE, raise_exceptions=False, read_only=True,
                            receive_timeout=max(1, int(cfg.timeout)), auto_referrals=False)
    try:
        conn.open()
        if cfg.starttls and not conn.start_tls():
            raise ldap_errors.LDAPStartTLSError(conn.last_error or "refused")
    except (ldap_errors.LDAPException, OSError) as exc:
        conn.unbind()
        raise _connection_error(cfg, exc) from None
    try:
        bound = conn.bind()
    except (ldap_errors.LDAPException, OSError) as exc:
        conn.unbind()
        raise DirectoryError(f"bind as {cfg.bind_dn} at {cfg.url} failed: {type(exc).__name__}") from None
    if not bound:
        result = conn.result or {}
        conn.unbind()
        description = str(result.get("description") or "refused")
        hint = (" (check bind_dn and the password in "
                + (f"${cfg.bind_password_env})" if cfg.bind_password_env else f"{cfg.bind_password_file})")
                if description == "invalidCredentials" else "")
        raise DirectoryError(f"the directory at {cfg.url} refused the bind as {cfg.bind_dn}: {description}{hint}")
    return conn


def _paged(conn: ldap3.Connection, cfg: DirectoryConfig, filter_: str, attributes: list[str]
           ) -> Iterator[tuple[str, dict[str, list[bytes]]]]:
    """(dn, raw attributes by lower-case name) of every entry, page by page; one count per page in ``pages``."""
    cookie: bytes | None = None
    while True:
        try:
            conn.search(cfg.base_dn, filter_, search_scope=ldap3.SUBTREE, attributes=attributes,
                             paged_size=cfg.page_size, paged_cookie=cookie, time_limit=max(1, int(cfg.timeout)))
        except (ldap_errors.LDAPException, OSError) as exc:
            raise DirectoryError(f"search of {cfg.base_dn} at {cfg.url} failed: {exc}") from None
        result = conn.result or {}
        # Anything but success is a failure, sizeLimitExceeded included (ldap3 calls it ok): a partial
        # read would make the entries it missed look deleted.
        if result.get("description") != "success":  # (ok is False for a search that found nothing)
            description = result.get("description")
            message = str(result.get("message") or "").strip()
            hint = " (check base_dn)" if description == "noSuchObject" else ""
            hint = " (check user_filter / disabled_filter)" if description == "filterError" else hint
            hint = " (the server limits this account's searches: raise its paged-results limits)" if description in (
                "sizeLimitExceeded", "adminLimitExceeded") else hint
            raise DirectoryError(f"search of {cfg.base_dn} with {filter_} at {cfg.url} failed: {description}"
                                 f"{': ' + message if message else ''}{hint}")
        yield "", {}  # a page boundary, for the count
        for item in conn.response or ():
            if item.get("type") != "searchResEntry":
                continue  # continuation references (AD's other partitions) are not followed
            raw = item.get("raw_attributes") or {}
            yield str(item["dn"]), {str(name).lower(): list(values) for name, values in raw.items()}
        control = (result.get("controls") or {}).get(PAGED_RESULTS_OID) or {}
        cookie = (control.get("value") or {}).get("cookie") or None
        if not cookie:
            return


def _first(attrs: dict[str, list[bytes]], name: str | None) -> str | None:
    if name is None:
        return None
    values = attrs.get(name.lower()) or []
    for value in values:
        text = value.decode("utf-8", errors="replace").strip()
        if text:
            return text
    return None


def _uac_disabled(attrs: dict[str, list[bytes]]) -> bool | None:
    raw = _first(attrs, UAC_ATTRIBUTE)
    try:
        return None if raw is None else bool(int(raw) & ACCOUNTDISABLE)
    except ValueError:
        return None


def read_directory(cfg: DirectoryConfig, password: str) -> DirectoryRead:
    """Every user entry under ``base_dn`` matching the filter, mapped (blocking: run it in a worker thread)."""
    wanted = search_filter(cfg)
    attributes = [cfg.email_attribute, cfg.username_attribute, cfg.display_name_attribute]
    if cfg.email_fallback_attribute:
        attributes.append(cfg.email_fallback_attribute)
    if cfg.disabled_filter is None:
        attributes.append(UAC_ATTRIBUTE)
    conn = _open(cfg, password)
    pages = 0
    try:
        found: list[tuple[str, dict[str, list[bytes]]]] = []
        for dn, attrs in _paged(conn, cfg, wanted, attributes):
            if not dn:
                pages += 1
            else:
                found.append((dn, attrs))
        disabled_dns: set[str] | None = None
        if cfg.disabled_filter is not None:
            disabled_dns = set()
            for dn, _ in _paged(conn, cfg, f"(&{wanted}{cfg.disabled_filter})", ["1.1"]):
                if not dn:
                    pages += 1
                else:
                    disabled_dns.add(dn.lower())
    finally:
        conn.unbind()
    entries = []
    for dn, attrs in found:
        email = _first(attrs, cfg.email_attribute) or _first(attrs, cfg.email_fallback_attribute)
        disabled = _uac_disabled(attrs) if disabled_dns is None else dn.lower() in disabled_dns
        entries.append(DirectoryEntry(dn=dn, email=email, username=_first(attrs, cfg.username_attribute),
                                      display_name=_first(attrs, cfg.display_name_attribute) or "",
                                      disabled=disabled))
    log.debug("directory %s: %s entries in %s pages", cfg.url, len(entries), pages)
    return DirectoryRead(entries=tuple(entries), pages=pages)
