"""Protocol steps against a tenant's IdP, over the same whitelisted, pinned client as logins.

WS-Trust: the MEX document and the https usernamemixed endpoints it lists,
FederationMetadata.xml's signing certificates against the pinned ones.
SAML: the IdP metadata, its ECP endpoint, its signing certificates.  Every
answer's ``Date`` header is kept for the clock-skew step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.config import Saml2Config, WsTrustConfig, WsTrustVersionSetting
from bridge.errors import BridgeError, IdpProtocolError
from bridge.idp.http import IdpHttp, IdpResponse
from bridge.idp.saml.metadata import IdpMetadata, parse_idp_metadata
from bridge.idp.wstrust.client import FEDMETA_PATH, MEX_PATH, base_url, version_from_url
from bridge.idp.wstrust.fedmeta import FederationMetadata, parse_federation_metadata
from bridge.idp.wstrust.messages import WsTrustVersion
from bridge.idp.wstrust.mex import MexEndpoint, parse_mex
from bridge.toolkit.certs import compare_signing_certificates, earliest_expiry
from bridge.toolkit.report import Status, Step, error_step

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpSample:
    """When a request left and its answer came back, with the IdP's ``Date``."""

    date_header: str | None
    sent_at: datetime
    received_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class ProtocolResult:
    steps: tuple[Step, ...]
    samples: tuple[HttpSample, ...]
    signing_not_after: datetime | None


class Fetcher:
    """GETs through the tenant's client, keeping each answer's ``Date`` for the clock-skew step."""

    def __init__(self, http: IdpHttp) -> None:
        self.http = http
        self.samples: list[HttpSample] = []

    async def get(self, url: str) -> tuple[IdpResponse, float]:
        sent = datetime.now(UTC)
        started = time.perf_counter()
        resp = await self.http.request("GET", url)
        self.samples.append(HttpSample(date_header=resp.date_header, sent_at=sent, received_at=datetime.now(UTC)))
        return resp, time.perf_counter() - started


def _http_failure(name: str, exc: BridgeError, elapsed: float, *, required: bool, hint: str) -> Step:
    step = error_step(name, exc, hint=hint, seconds=elapsed)
    if required:
        return step
    return Step(name=name, status=Status.WARN, summary=step.summary, hint=hint + " (not needed by this tenant's "
                "settings, so logins are not affected)", seconds=elapsed, code=step.code)


def _endpoint_list(endpoints: tuple[MexEndpoint, ...]) -> str:
    return "; ".join(f"{e.version.value} {e.address}" for e in endpoints)


async def wstrust_steps(cfg: WsTrustConfig, http: IdpHttp) -> ProtocolResult:
    fetch = Fetcher(http)
    steps: list[Step] = []
    base = base_url(cfg)
    discovering = cfg.endpoint is None and cfg.version is WsTrustVersionSetting.AUTO
    endpoints: tuple[MexEndpoint, ...] | None = None
    started = time.perf_counter()
    try:
        resp, elapsed = await fetch.get(base + MEX_PATH)
        if resp.status != 200:
            raise IdpProtocolError(f"MEX answered HTTP {resp.status}")
        endpoints = parse_mex(resp.body)
        steps.append(Step(name="mex", status=Status.PASS, summary=f"{base + MEX_PATH} answered "
                          f"({len(resp.body)} bytes)", seconds=elapsed))
    except BridgeError as exc:
        steps.append(_http_failure("mex", exc, time.perf_counter() - started, required=discovering,
                                   hint="AD FS must publish /adfs/services/trust/mex (and the Web Application "
                                        "Proxy must forward it), or set version / endpoint in the tenant file"))
    steps.append(_endpoint_step(cfg, base, endpoints))

    meta: FederationMetadata | None = None
    needs_meta = cfg.federation_metadata or cfg.issuer is None
    started = time.perf_counter()
    try:
        resp, elapsed = await fetch.get(base + FEDMETA_PATH)
        if resp.status != 200:
            raise IdpProtocolError(f"FederationMetadata.xml answered HTTP {resp.status}")
        meta = parse_federation_metadata(resp.body)
        steps.append(Step(name="federation metadata", status=Status.PASS,
                          summary=f"entity {meta.entity_id}, {len(meta.signing_certificates)} signing "
                                  "certificate(s)", seconds=elapsed))
    except BridgeError as exc:
        steps.append(_http_failure("federation metadata", exc, time.perf_counter() - started, required=needs_meta,
                                   hint="AD FS must publish /FederationMetadata/2007-06/FederationMetadata.xml, "
                                        "or pin signing_certificates and set issuer"))
    published = meta.signing_certificates if meta is not None else ()
    certs_step = compare_signing_certificates(
        name="signing certificates", pinned=cfg.signing_certificates, published=published,
        trust_published=cfg.federation_metadata, now=datetime.now(UTC), config_key="wstrust.signing_certificates")
    if meta is None and cfg.signing_certificates and certs_step.status is Status.WARN:
        certs_step = Step(name=certs_step.name, status=Status.WARN, summary="only the pinned certificates are "
                          "known (no metadata)", hint="cannot tell whether the IdP still signs with them")
    steps.append(certs_step)
    if cfg.issuer is not None and meta is not None and meta.entity_id != cfg.issuer:
        steps.append(Step(name="issuer", status=Status.FAIL,
                          summary=f"the metadata names {meta.entity_id}, the tenant expects {cfg.issuer}",
                          hint="set wstrust.issuer to the IdP's entity id (or remove it to take it from the metadata)",
                          code="assertion_invalid"))
    accepted = list(cfg.signing_certificates) + (list(published) if cfg.federation_metadata else [])
    return ProtocolResult(steps=tuple(steps), samples=tuple(fetch.samples),
                          signing_not_after=earliest_expiry(accepted))


def _endpoint_step(cfg: WsTrustConfig, base: str, endpoints: tuple[MexEndpoint, ...] | None) -> Step:
    name = "usernamemixed endpoints"
    if cfg.endpoint is not None or cfg.version is not WsTrustVersionSetting.AUTO:
        if cfg.endpoint is not None:
            used = cfg.endpoint
        else:
            version = WsTrustVersion(cfg.version.value)
            used = base + ("/adfs/services/trust/13/usernamemixed" if version is WsTrustVersion.V13
                           else "/adfs/services/trust/2005/usernamemixed")
        if endpoints is None:
            return Step(name=name, status=Status.WARN, summary=f"logins use {used} (configured; MEX not available "
                        "to confirm it is enabled)")
        if any(e.address == used for e in endpoints):
            return Step(name=name, status=Status.PASS, summary=f"logins use {used}, listed by MEX")
        return Step(name=name, status=Status.WARN, summary=f"logins use {used}, which MEX does not list "
                    f"(MEX lists: {_endpoint_list(endpoints) or 'none'})",
                    hint="the endpoint may be disabled at AD FS or the proxy; use one MEX lists")
    if endpoints is None:
        return Step(name=name, status=Status.SKIP, summary="not known: MEX failed")
    if not endpoints:
        return Step(name=name, status=Status.FAIL, summary="MEX lists no https usernamemixed endpoint",
                    hint="enable /adfs/services/trust/13/usernamemixed at AD FS (Enable-AdfsEndpoint) and on the "
                         "Web Application Proxy, or set endpoint in the tenant file",
                    code="idp_protocol_error")
    versions = {e.version for e in endpoints}
    shown = _endpoint_list(endpoints)
    chosen = next((e for e in endpoints if e.version is WsTrustVersion.V13), endpoints[0])
    found = " and ".join(v.value for v in WsTrustVersion if v in versions)
    summary = f"WS-Trust {found} found; logins use {chosen.address} ({shown})"
    if version_from_url(chosen.address) is None:
        return Step(name=name, status=Status.WARN, summary=summary, hint="unusual endpoint path")
    return Step(name=name, status=Status.PASS, summary=summary)


async def _saml_metadata(cfg: Saml2Config, fetch: Fetcher) -> tuple[IdpMetadata, float]:
    started = time.perf_counter()
    if cfg.metadata_file is not None:
        try:
            raw = await asyncio.to_thread(cfg.metadata_file.read_bytes)
        except OSError as exc:
            raise IdpProtocolError(f"cannot read {cfg.metadata_file} ({exc.strerror})") from exc
    else:
        assert cfg.metadata_url is not None
        resp, _ = await fetch.get(cfg.metadata_url)
        if resp.status != 200:
            raise IdpProtocolError(f"IdP metadata answered HTTP {resp.status}")
        raw = resp.body
    return parse_idp_metadata(raw, entity_id=cfg.entity_id), time.perf_counter() - started


async def saml_steps(cfg: Saml2Config, http: IdpHttp) -> ProtocolResult:
    fetch = Fetcher(http)
    steps: list[Step] = []
    meta: IdpMetadata | None = None
    where = cfg.metadata_url or (str(cfg.metadata_file) if cfg.metadata_file else "")
    if where:
        started = time.perf_counter()
        try:
            meta, elapsed = await _saml_metadata(cfg, fetch)
            now = datetime.now(UTC)
            status, hint = Status.PASS, ""
            if meta.valid_until is not None and meta.valid_until <= now:
                status, hint = Status.WARN, "the metadata's validUntil has passed: ask the IdP for fresh metadata"
            until = f", valid until {meta.valid_until:%Y-%m-%d}" if meta.valid_until is not None else ""
            steps.append(Step(name="saml metadata", status=status, summary=f"{where}: entity {meta.entity_id}{until}",
                              hint=hint, seconds=elapsed))
        except BridgeError as exc:
            steps.append(error_step("saml metadata", exc, seconds=time.perf_counter() - started,
                                    hint="check metadata_url / metadata_file and entity_id in the tenant file"))
    else:
        steps.append(Step(name="saml metadata", status=Status.SKIP, summary="none configured (entity_id, ecp_url "
                          "and signing_certificates are set by hand)"))
    ecp_url = cfg.ecp_url or (meta.ecp_url if meta is not None else None)
    steps.append(await _ecp_step(ecp_url, fetch, metadata_known=meta is not None or not where))
    published = meta.signing_certificates if meta is not None else ()
    steps.append(compare_signing_certificates(
        name="signing certificates", pinned=cfg.signing_certificates, published=published, trust_published=True,
        now=datetime.now(UTC), config_key="saml2.signing_certificates"))
    return ProtocolResult(steps=tuple(steps), samples=tuple(fetch.samples),
                          signing_not_after=earliest_expiry(list(cfg.signing_certificates) + list(published)))


async def _ecp_step(ecp_url: str | None, fetch: Fetcher, *, metadata_known: bool) -> Step:
    name = "ecp endpoint"
    if ecp_url is None:
        if not metadata_known:
            return Step(name=name, status=Status.SKIP, summary="not known: the metadata could not be read")
        return Step(name=name, status=Status.FAIL, summary="the IdP publishes no SAML ECP (SOAP) endpoint",
                    hint="password sign-in at devices cannot work for this IdP: enable ECP at the IdP (Shibboleth: "
                         "the SAML2.ECP profile) or use shared-account / device-login devices",
                    code="password_login_unsupported", panel_message=None)
    if not ecp_url.startswith("https://"):
        return Step(name=name, status=Status.FAIL, summary=f"{ecp_url} is not https; passwords are never sent there",
                    hint="publish the ECP endpoint over https, or set ecp_url", code="idp_protocol_error")
    started = time.perf_counter()
    try:
        resp, elapsed = await fetch.get(ecp_url)
    except BridgeError as exc:
        return error_step(name, exc, seconds=time.perf_counter() - started)
    # A GET without a SOAP body is refused by an ECP endpoint; any HTTP answer shows it is there.
    if resp.status == 404:
        return Step(name=name, status=Status.FAIL, summary=f"{ecp_url} answered HTTP 404", seconds=elapsed,
                    hint="the ECP profile is not enabled at that path", code="idp_unreachable")
    return Step(name=name, status=Status.PASS, summary=f"{ecp_url} answers (HTTP {resp.status} to a probe)",
                seconds=elapsed)
