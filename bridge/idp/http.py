"""HTTP to a tenant's IdP: pooled, whitelisted, address-pinned, TLS-verified.

One :class:`IdpHttp` per tenant holds one aiohttp session (so one pool of
keep-alive connections per IdP).  Its connector resolves through
:class:`~bridge.idp.allowlist.WhitelistResolver`, so no byte leaves the bridge for
an address outside the tenant's whitelist; aiohttp's errors become ours here,
at this one boundary.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

from bridge.errors import IdpProtocolError, IdpTimeout, IdpUnreachable
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


def make_ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verification always on; ``ca_file`` adds a trust anchor (e.g. the simulator's CA)."""
    ctx = ssl.create_default_context()
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
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
        try:
            async with self._get_session().request(
                method, target, data=body, headers=dict(headers or {}), allow_redirects=False
            ) as resp:
                payload = await self._read_capped(resp)
                return IdpResponse(
                    status=resp.status,
                    body=payload,
                    content_type=resp.headers.get("Content-Type", ""),
                    date_header=resp.headers.get("Date"),
                    elapsed=time.perf_counter() - started,
                )
        except TimeoutError as exc:
            raise IdpTimeout(f"IdP {host} did not answer within {self._timeout.total} s") from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            raise IdpUnreachable(f"TLS certificate of IdP {host} did not verify: {exc.certificate_error}") from exc
        except aiohttp.ClientSSLError as exc:
            raise IdpUnreachable(f"TLS handshake with IdP {host} failed: {exc}") from exc
        except aiohttp.ClientConnectorError as exc:
            raise IdpUnreachable(f"cannot connect to IdP {host}: {exc.os_error.strerror or exc}") from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
            raise IdpUnreachable(f"connection to IdP {host} failed: {type(exc).__name__}") from exc
        except aiohttp.ClientError as exc:
            raise IdpUnreachable(f"HTTP error talking to IdP {host}: {type(exc).__name__}") from exc
        except asyncio.CancelledError:
            raise

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
