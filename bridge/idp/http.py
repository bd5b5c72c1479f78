"""HTTP to a tenant's IdP: pooled, whitelisted, address-pinned, TLS-verified.

One :class:`IdpHttp` per tenant holds one aiohttp session (so one pool of
keep-alive connections per IdP).  Its connector resolves through
:class:`~bridge.idp.allowlist.WhitelistResolver`, so no byte leaves the bridge for
an address outside the tenant's whitelist; aiohttp's, ssl's and the socket's
errors become ours here, at this one boundary (every TLS or connection failure
is :class:`IdpUnreachable`, never an unhandled 500).

Whether the IdP was actually contacted is reported through
:func:`track_idp_contact`: a request refused by the whitelist (or whose host
did not resolve) never reached it, so a login's IdP latency is only recorded
when one did.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

from bridge.errors import IdpError, IdpProtocolError, IdpTimeout, IdpUnreachable
from bridge.idp.allowlist import IPNetwork, WhitelistResolver, check_literal

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 1024 * 1024
MAX_CHECKED_URLS = 64


@dataclass(frozen=True, kw_only=True, slots=True)
class IdpResponse:
    status: int
    body: bytes
    content_type: str
    date_header: str | None
    elapsed: float


@dataclass(kw_only=True, slots=True)
class IdpContact:
    """What one login's requests did at the IdP (filled in by :class:`IdpHttp`)."""

    requests: int = 0  # requests that got past the whitelist towards an IdP address
    seconds: float = 0.0  # their time, from the connection attempt to the last byte or the error

    @property
    def contacted(self) -> bool:
        return self.requests > 0


_contact: ContextVar[IdpContact | None] = ContextVar("idp_contact", default=None)


@contextmanager
def track_idp_contact(record: IdpContact | None = None) -> Iterator[IdpContact]:
    """Count, in the returned record (a new one unless given), the IdP requests made inside the block."""
    record = record if record is not None else IdpContact()
    token = _contact.set(record)
    try:
        yield record
    finally:
        _contact.reset(token)


def note_idp_contact(seconds: float) -> None:
    """Count a contact made on this task's behalf elsewhere (a shared fetch it waited on)."""
    _contacted(seconds)


def _contacted(seconds: float) -> None:
    record = _contact.get()
    if record is not None:
        record.requests += 1
        record.seconds += seconds


def make_ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verification always on; ``ca_file`` adds a trust anchor (e.g. the simulator's CA).

    A ``ca_file`` that cannot be read or holds no certificate is refused when the
    configuration is loaded (``bridge.config``); if it changed since, a login gets
    :class:`IdpUnreachable` naming it, not an internal error.
    """
    ctx = ssl.create_default_context()
    if ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(ca_file))
        except (ssl.SSLError, OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
            why = f"ca_file {ca_file} cannot be used as a TLS trust anchor ({reason})"
            raise IdpUnreachable(why, cause=f"TLS: {why}") from exc
    return ctx


class IdpHttp:
    """The pooled, whitelisted HTTP client of one tenant's IdP."""

    def __init__(
        self,
        *,
        whitelist: Sequence[IPNetwork],
        ssl_context: ssl.SSLContext,
        connect_timeout: float,
        timeout: float,
        max_connections: int,
    ) -> None:
        self._whitelist = tuple(whitelist)
        self._ssl = ssl_context
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        # URLs already parsed and found https + whitelisted (a literal address cannot change; host
        # names are checked by the resolver on every new connection).  Bounded: a handful per IdP.
        self._checked_urls: dict[str, URL] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=WhitelistResolver(self._whitelist),
                use_dns_cache=False,
                ssl=self._ssl,
                limit_per_host=self._max_connections,
            )
            # No cookie jar: one pool serves every user of the tenant, so an IdP cookie set for one
            # login must not ride along with the next (and filtering a jar per request costs CPU).
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=True, trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, method: str, url: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> IdpResponse:
        target = self._checked_urls.get(url)
        if target is None:
            target = URL(url)
            if target.scheme != "https":
                raise IdpProtocolError(f"refusing to send to a non-https IdP URL {target.with_query(None)}")
            check_literal(target.raw_host or "", self._whitelist)
            if len(self._checked_urls) < MAX_CHECKED_URLS:
                self._checked_urls[url] = target
        host = target.raw_host or ""
        started = time.perf_counter()
        answered = False
        reached = True
        try:
            async with self._get_session().request(
                method, target, data=body, headers=dict(headers or {}), allow_redirects=False
            ) as resp:
                answered = True
                payload = await self._read_capped(resp)
                return IdpResponse(
                    status=resp.status,
                    body=payload,
                    content_type=resp.headers.get("Content-Type", ""),
                    date_header=resp.headers.get("Date"),
                    elapsed=time.perf_counter() - started,
                )
        except IdpError:
            # Before an answer, only the WhitelistResolver raises ours (not whitelisted, or the name
            # does not resolve): no connection was attempted, the IdP was not contacted.
            reached = answered
            raise
        except TimeoutError as exc:  # before OSError: TimeoutError is one
            raise IdpTimeout(f"IdP {host} did not answer within {self._timeout.total} s",
                             cause=self._timeout_cause(host, exc)) from exc
        except (aiohttp.ClientError, ssl.SSLError, OSError) as exc:
            raise _unreachable(host, exc) from exc
        finally:
            if reached:
                _contacted(time.perf_counter() - started)

    def _timeout_cause(self, host: str, exc: TimeoutError) -> str:
        """Which limit ran out: connecting (aiohttp's connection timeout), or the whole request."""
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return (f"no connection to IdP {host} in time (idp_client.connect_timeout_seconds "
                    f"{self._timeout.sock_connect:g} s, timeout_seconds {self._timeout.total:g} s)")
        return f"no answer from IdP {host} within {self._timeout.total:g} s (idp_client.timeout_seconds)"

    @staticmethod
    async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
        if resp.content_length is not None and resp.content_length > MAX_RESPONSE_BYTES:
            raise IdpProtocolError(f"IdP answer of {resp.content_length} bytes is over the limit")
        if resp.content_length is not None and resp.headers.get("Content-Encoding", "identity") == "identity":
            # Uncompressed, length known and under the cap: one read (aiohttp stops at Content-Length).
            return await resp.read()
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise IdpProtocolError("IdP answer is over the size limit")
            chunks.append(chunk)
        return b"".join(chunks)


def _unreachable(host: str, exc: BaseException) -> IdpUnreachable:
    """Every TLS or connection failure on the way to the IdP, in words an administrator can act on."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        error = exc.certificate_error
        why = error.verify_message if isinstance(error, ssl.SSLCertVerificationError) else None
        return IdpUnreachable(f"TLS certificate of IdP {host} did not verify: {exc.certificate_error}",
                              cause=f"TLS: the certificate of IdP {host} did not verify "
                                    f"({why or type(error).__name__})")
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        ssl_error = exc.os_error if isinstance(exc, aiohttp.ClientSSLError) else exc
        why = ssl_error.reason if isinstance(ssl_error, ssl.SSLError) else None
        return IdpUnreachable(f"TLS handshake with IdP {host} failed: {exc}",
                              cause=f"TLS: handshake with IdP {host} failed ({why or type(ssl_error).__name__})")
    if isinstance(exc, aiohttp.ClientConnectorError):
        text = f"cannot connect to IdP {host}: {exc.os_error.strerror or exc}"
        return IdpUnreachable(text, cause=text)
    if isinstance(exc, aiohttp.ClientError):
        text = f"connection to IdP {host} failed: {type(exc).__name__}"
        return IdpUnreachable(text, cause=text)
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    text = f"connection to IdP {host} failed: {reason}"
    return IdpUnreachable(text, cause=text)
