"""The WS-Trust exchange with one tenant's AD FS (the I/O around bridge.idp.wstrust.messages).

Endpoint: explicit, derived from the AD FS base URL and version, or found by
MEX discovery (``version: auto``).  Signing certificates: pinned files and/or
the IdP's FederationMetadata.xml, fetched over the same whitelisted TLS
connection.  Both are looked up by one shared fetch (concurrent logins wait on
it together, see :mod:`bridge.idp.lookup`) and cached; a lookup that timed out
or could not connect is retried after a few seconds.  The token is validated
on the raw bytes of the answer; ``Recipient``, when the token names one, must
be this relying party.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from yarl import URL

from bridge.config import TenantConfig, TokenTypeSetting, WsTrustConfig, WsTrustVersionSetting
from bridge.errors import IdpError, IdpProtocolError
from bridge.idp.assertion import (
    AssertionExpectations,
    ReplayCache,
    ValidatedAssertion,
    remember_once,
    signature_policy,
    validate_assertion,
)
from bridge.idp.http import IdpHttp
from bridge.idp.lookup import SharedLookup
from bridge.idp.wstrust.fedmeta import FederationMetadata, parse_federation_metadata
from bridge.idp.wstrust.messages import (
    SOAP12_CONTENT_TYPE,
    TokenType,
    WsTrustVersion,
    build_rst,
    read_rstr,
    soap_action,
)
from bridge.idp.wstrust.mex import parse_mex, pick_endpoint

log = logging.getLogger(__name__)

MEX_PATH = "/adfs/services/trust/mex"
FEDMETA_PATH = "/FederationMetadata/2007-06/FederationMetadata.xml"
_ENDPOINT_PATHS = {
    WsTrustVersion.V13: "/adfs/services/trust/13/usernamemixed",
    WsTrustVersion.V2005: "/adfs/services/trust/2005/usernamemixed",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class ResolvedIdp:
    endpoint: str
    version: WsTrustVersion
    expectations: AssertionExpectations


def version_from_url(url: str) -> WsTrustVersion | None:
    path = URL(url).path.lower()
    if "/13/" in path:
        return WsTrustVersion.V13
    if "/2005/" in path:
        return WsTrustVersion.V2005
    return None


def base_url(cfg: WsTrustConfig) -> str:
    source = cfg.adfs_url or cfg.endpoint or ""
    url = URL(source)
    return str(url.with_path("/").with_query(None).with_fragment(None)).rstrip("/")


class WsTrustIdp:
    """One tenant's AD FS: discovery, metadata, and the username/password exchange."""

    def __init__(self, tenant: TenantConfig, http: IdpHttp) -> None:
        if tenant.wstrust is None:
            raise ValueError(f"tenant {tenant.id} has no wstrust settings")
        self.tenant = tenant
        self.cfg: WsTrustConfig = tenant.wstrust
        self.http = http
        self._lookup: SharedLookup[ResolvedIdp] = SharedLookup(
            self._load, max_age=self.cfg.metadata_refresh.total_seconds(), what=f"AD FS metadata of {tenant.id}"
        )

    def close(self) -> None:
        self._lookup.close()

    async def federation_metadata(self) -> FederationMetadata:
        resp = await self.http.request("GET", base_url(self.cfg) + FEDMETA_PATH)
        if resp.status != 200:
            status = f"FederationMetadata.xml answered HTTP {resp.status}"
            raise IdpProtocolError(status, cause=status)
        return parse_federation_metadata(resp.body)

    async def discover_endpoint(self) -> tuple[str, WsTrustVersion]:
        cfg = self.cfg
        if cfg.endpoint:
            version = version_from_url(cfg.endpoint)
            if cfg.version is not WsTrustVersionSetting.AUTO:
                version = WsTrustVersion(cfg.version.value)
            if version is None:
                raise IdpProtocolError(f"cannot tell the WS-Trust version of {cfg.endpoint}; set version")
            return cfg.endpoint, version
        if cfg.version is not WsTrustVersionSetting.AUTO:
            version = WsTrustVersion(cfg.version.value)
            return base_url(cfg) + _ENDPOINT_PATHS[version], version
        resp = await self.http.request("GET", base_url(cfg) + MEX_PATH)
        if resp.status != 200:
            status = f"MEX answered HTTP {resp.status}"
            raise IdpProtocolError(status, cause=status)
        chosen = pick_endpoint(parse_mex(resp.body), WsTrustVersion.V13)
        log.info("MEX discovery chose %s (WS-Trust %s)", chosen.address, chosen.version.value)
        return chosen.address, chosen.version

    async def resolve(self) -> ResolvedIdp:
        """Endpoint and certificates, looked up again when older than the refresh interval.

        AD FS auto-rollover publishes the next signing certificate in
        FederationMetadata.xml before it signs with it, so a periodic re-read
        picks up a rollover without a restart.  A failed refresh keeps the
        previous answer (and is retried at the next interval).
        """
        return await self._lookup.get()

    async def _load(self, previous: ResolvedIdp | None) -> ResolvedIdp:
        if previous is None:
            return await self._resolve()
        try:
            return await self._resolve()
        except IdpError as exc:
            log.warning("AD FS metadata refresh failed, keeping the previous one: %s", exc)
            return previous

    async def _resolve(self) -> ResolvedIdp:
        cfg = self.cfg
        endpoint, version = await self.discover_endpoint()
        certs: list[x509.Certificate] = list(cfg.signing_certificates)
        issuer = cfg.issuer
        if cfg.federation_metadata or issuer is None:
            meta = await self.federation_metadata()
            issuer = issuer or meta.entity_id
            if cfg.federation_metadata:
                pinned = {c.fingerprint(hashes.SHA256()) for c in certs}
                certs.extend(c for c in meta.signing_certificates if c.fingerprint(hashes.SHA256()) not in pinned)
        expectations = AssertionExpectations(
            issuer=issuer,
            audience=cfg.applies_to,
            certificates=tuple(certs),
            policy=signature_policy(cfg.signature_algorithms),
            clock_skew=cfg.clock_skew,
            subject_claim=cfg.subject_claim,
            # AD FS names no Recipient in WS-Trust tokens as a rule; one that does must mean us.
            recipient=cfg.recipient or cfg.applies_to,
            recipient_required=False,
        )
        return ResolvedIdp(endpoint=endpoint, version=version, expectations=expectations)

    async def authenticate(self, *, username: str, password: str, replay: ReplayCache) -> ValidatedAssertion:
        """Send the credentials and return the validated assertion (its id now in ``replay``), or raise."""
        resolved = await self.resolve()
        now = datetime.now(UTC)
        token_type = TokenType.SAML20 if self.cfg.token_type is TokenTypeSetting.SAML2 else TokenType.SAML11
        envelope = build_rst(
            version=resolved.version,
            endpoint_url=resolved.endpoint,
            username=username,
            password=password,
            applies_to=self.cfg.applies_to,
            token_type=token_type,
            now=now,
        )
        resp = await self.http.request(
            "POST",
            resolved.endpoint,
            body=envelope,
            headers={"Content-Type": SOAP12_CONTENT_TYPE, "SOAPAction": soap_action(resolved.version)},
        )
        # Faults come with HTTP 500; a refusal may also be a bare 401/403, an outage an HTML error page.
        rstr = read_rstr(status=resp.status, body=resp.body, content_type=resp.content_type,
                         version=resolved.version)
        now = datetime.now(UTC)
        validated = validate_assertion(resp.body, resolved.expectations, now=now, document=rstr.document)
        return await remember_once(replay, validated, resolved.expectations, now=now)

