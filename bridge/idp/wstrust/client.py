"""The WS-Trust exchange with one tenant's AD FS (the I/O around bridge.idp.wstrust.messages).

Endpoint: explicit, derived from the AD FS base URL and version, or found by
MEX discovery (``version: auto``).  Signing certificates: pinned files and/or
the IdP's FederationMetadata.xml, fetched over the same whitelisted TLS
connection.  Both are looked up by one shared fetch (concurrent logins wait on
it together, see :mod:`bridge.idp.lookup`) and cached; a lookup that timed out
or could not connect is retried after a few seconds.  The token is validated
on the raw bytes of the answer; ``Recipient``, when the token names one, must
be this relying party.

It is also the tenant's :class:`~bridge.idp.browser.BrowserSignin`: WS-Federation
passive sign-in (:mod:`bridge.idp.wstrust.passive`) on the user's phone, where
AD FS's MFA applies.  The issuer and certificates (one shared lookup of
FederationMetadata.xml) and the expectations are the password path's; the
browser path does not need, and does not look up, the WS-Trust endpoint (farms
that require MFA often disable it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from yarl import URL

from bridge.config import TenantConfig, TokenTypeSetting, WsTrustConfig, WsTrustVersionSetting
from bridge.errors import BridgeError, IdpError, IdpProtocolError
from bridge.idp.allowlist import require_whitelisted_url
from bridge.idp.assertion import (
    AssertionExpectations,
    ReplayCache,
    ValidatedAssertion,
    remember_once,
    signature_policy,
    validate_assertion,
)
from bridge.idp.browser import BrowserRedirect
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
from bridge.idp.wstrust.passive import ADFS_PASSIVE_PATH, read_wsfed_post, signin_url

log = logging.getLogger(__name__)

MEX_PATH = "/adfs/services/trust/mex"
FEDMETA_PATH = "/FederationMetadata/2007-06/FederationMetadata.xml"
_ENDPOINT_PATHS = {
    WsTrustVersion.V13: "/adfs/services/trust/13/usernamemixed",
    WsTrustVersion.V2005: "/adfs/services/trust/2005/usernamemixed",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class TrustFacts:
    """Who signs the tenant's tokens: what both the password and the browser path trust."""

    issuer: str | None
    certificates: tuple[x509.Certificate, ...]
    passive_url: str | None  # FederationMetadata's PassiveRequestorEndpoint (federation_metadata: true only)


@dataclass(frozen=True, kw_only=True, slots=True)
class ResolvedIdp:
    endpoint: str
    version: WsTrustVersion
    expectations: AssertionExpectations


def wsfed_reply_url(tenant: TenantConfig, public_url: str) -> str:
    """Where AD FS posts a tenant's WS-Federation answer (``wreply``); register it on the relying party trust."""
    return f"{public_url}/wsfed/{tenant.id}"


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

    def __init__(self, tenant: TenantConfig, http: IdpHttp, public_url: str | None = None) -> None:
        """``public_url`` (the bridge's, as IdPs reach it) is needed for browser sign-in only (``wreply``)."""
        if tenant.wstrust is None:
            raise ValueError(f"tenant {tenant.id} has no wstrust settings")
        self.tenant = tenant
        self.cfg: WsTrustConfig = tenant.wstrust
        self.http = http
        self.reply_url = wsfed_reply_url(tenant, public_url) if public_url is not None else None
        max_age = self.cfg.metadata_refresh.total_seconds()
        self._trust: SharedLookup[TrustFacts] = SharedLookup(
            self._load_trust, max_age=max_age, what=f"AD FS federation metadata of {tenant.id}"
        )
        self._lookup: SharedLookup[ResolvedIdp] = SharedLookup(
            self._load, max_age=max_age, what=f"AD FS metadata of {tenant.id}"
        )

    def close(self) -> None:
        self._lookup.close()
        self._trust.close()

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
        facts = await self._trust.get()
        # AD FS names no Recipient in WS-Trust tokens as a rule; one that does must mean us.
        expectations = self.expectations(facts, recipient=cfg.recipient or cfg.applies_to)
        return ResolvedIdp(endpoint=endpoint, version=version, expectations=expectations)

    async def _load_trust(self, previous: TrustFacts | None) -> TrustFacts:
        if previous is None:
            return await self._read_trust()
        try:
            return await self._read_trust()
        except IdpError as exc:
            log.warning("AD FS federation metadata refresh failed, keeping the previous one: %s", exc)
            return previous

    async def _read_trust(self) -> TrustFacts:
        """Pinned certificates and issuer, completed from FederationMetadata.xml when the tenant says so."""
        cfg = self.cfg
        certs: list[x509.Certificate] = list(cfg.signing_certificates)
        issuer = cfg.issuer
        passive_url = None
        if cfg.federation_metadata or issuer is None:
            meta = await self.federation_metadata()
            issuer = issuer or meta.entity_id
            if cfg.federation_metadata:
                pinned = {c.fingerprint(hashes.SHA256()) for c in certs}
                certs.extend(c for c in meta.signing_certificates if c.fingerprint(hashes.SHA256()) not in pinned)
                passive_url = meta.passive_url
        return TrustFacts(issuer=issuer, certificates=tuple(certs), passive_url=passive_url)

    def expectations(self, facts: TrustFacts, *, recipient: str) -> AssertionExpectations:
        """What the tenant's tokens must be, by either path; ``recipient`` is checked only when a token names one."""
        cfg = self.cfg
        return AssertionExpectations(
            issuer=facts.issuer,
            audience=cfg.applies_to,
            certificates=facts.certificates,
            policy=signature_policy(cfg.signature_algorithms),
            clock_skew=cfg.clock_skew,
            subject_claim=cfg.subject_claim,
            recipient=recipient,
            recipient_required=False,
        )

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


    # --- browser sign-in (BrowserSignin) -------------------------------------------------------

    def _reply_url(self) -> str:
        if self.reply_url is None:
            raise BridgeError(f"WsTrustIdp of tenant {self.tenant.id} was built without public_url: "
                              "browser sign-in needs it for wreply")
        return self.reply_url

    async def passive_url(self) -> str:
        """``wstrust.passive_url``, else FederationMetadata's passive endpoint, else ``{adfs_url}/adfs/ls/``."""
        if self.cfg.passive_url is not None:
            return self.cfg.passive_url
        if self.cfg.federation_metadata:
            facts = await self._trust.get()
            if facts.passive_url is not None:
                return facts.passive_url
        return base_url(self.cfg) + ADFS_PASSIVE_PATH

    async def begin_browser_signin(self, *, state: str, login_hint: str | None = None) -> BrowserRedirect:
        """The passive sign-in URL (``wa=wsignin1.0``), ``state`` as ``wctx``; ``login_hint`` as ``username``.

        The passive endpoint must be https and its host must resolve inside the
        tenant's ``idp_whitelist`` (a DNS lookup, no request: the phone's browser,
        not the bridge, connects to it).  WS-Federation has no request id.
        """
        reply = self._reply_url()
        url = await self.passive_url()
        await require_whitelisted_url(url, self.tenant.idp_whitelist,
                                      refusing="send a browser to the AD FS sign-in URL")
        return BrowserRedirect(
            url=signin_url(passive_url=url, realm=self.cfg.applies_to, reply_url=reply, state=state,
                           login_hint=login_hint),
            request_id=None,
        )

    async def finish_browser_signin(self, *, form: Mapping[str, str], request_id: str | None,
                                    replay: ReplayCache) -> ValidatedAssertion:
        """Check the POSTed ``wresult`` and remember its token; ``request_id`` is not used (WS-Fed has none).

        The token is validated on the bytes of ``wresult`` as received, against the
        password path's issuer and certificates; a Recipient it names must be
        ``wstrust.recipient`` or our ``wreply``.
        """
        del request_id
        reply = self._reply_url()
        answer = read_wsfed_post(form)
        facts = await self._trust.get()
        expectations = self.expectations(facts, recipient=self.cfg.recipient or reply)
        now = datetime.now(UTC)
        validated = validate_assertion(answer.wresult, expectations, now=now, document=answer.token.document)
        return await remember_once(replay, validated, expectations, now=now)
