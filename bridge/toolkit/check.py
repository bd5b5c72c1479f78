"""``loginbridge check TENANT``: every link between the bridge and a tenant's IdP, one step each.

Configuration, name resolution, the IP whitelist, TCP, TLS, the protocol
documents (MEX and FederationMetadata for WS-Trust; metadata and the ECP
endpoint for SAML; the discovery document and the JWK Set for OpenID Connect,
plus the network steps of every endpoint host it names), signing certificates
against the pins, clock skew, and optionally a real login.  The login goes
through ``LoginService.verify_password`` (the path devices use: whitelist-pinned
connection, throttles, audit), so its failure is the very code and panel
message a device would get.  An OpenID Connect tenant without the password
grant has no password path at all: its login step is SKIP, not FAIL.

The last report of each tenant is kept in ``STATE_DIR/checks/TENANT.json``
for the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bridge.config import BridgeConfig, OidcClientAuth, Protocol, TenantConfig
from bridge.errors import AssertionRejected, BridgeError, IdpRejectedRequest, MfaRequired, SpNotRegistered
from bridge.idp.http import IdpHttp, make_ssl_context
from bridge.idp.oidc.authorize import redirect_uri
from bridge.idp.oidc.discovery import ProviderMetadata
from bridge.idp.saml.metadata import parse_idp_metadata
from bridge.idp.saml.spkeys import ensure_sp_keys
from bridge.idp.wstrust.client import base_url
from bridge.login.guard import LoginGuard, LoginMode
from bridge.login.service import IdpRegistry, LoginService, split_email
from bridge.login.throttle import LoginThrottle
from bridge.state.audit import AuditLog
from bridge.state.store import Store
from bridge.toolkit.clock import skew_step
from bridge.toolkit.idp import ProtocolResult, saml_steps, wstrust_steps
from bridge.toolkit.network import Target, resolve_step, targets_from_urls, tcp_step, tls_step, whitelist_step
from bridge.toolkit.oidc import DISCOVERY, JWKS, endpoint_urls, oidc_steps, redirect_step
from bridge.toolkit.report import Report, Status, Step, error_step

log = logging.getLogger(__name__)

CHECKS_DIR = "checks"


@dataclass(frozen=True, kw_only=True, slots=True)
class Credentials:
    """A technician's test account; the password never reaches argv, logs or reports."""

    email: str
    password: str = field(repr=False)


def idp_urls(tenant: TenantConfig, provider: ProviderMetadata | None = None) -> list[str]:
    """Every IdP URL the tenant's logins may contact (hosts for the network steps).

    An OpenID Connect tenant names only its issuer; the endpoints come from the discovery
    document, so they are listed when the caller has read it (``provider``).
    """
    if tenant.wstrust is not None:
        cfg = tenant.wstrust
        return [base_url(cfg)] + ([cfg.endpoint] if cfg.endpoint else [])
    if tenant.oidc is not None:
        return [tenant.oidc.issuer] + (endpoint_urls(provider) if provider is not None else [])
    assert tenant.saml2 is not None
    s = tenant.saml2
    urls = [u for u in (s.metadata_url, s.ecp_url) if u]
    if s.ecp_url is None and s.metadata_file is not None:
        with contextlib.suppress(OSError, BridgeError):
            meta = parse_idp_metadata(s.metadata_file.read_bytes(), entity_id=s.entity_id)
            if meta.ecp_url:
                urls.append(meta.ecp_url)
    return urls


def ca_file_of(tenant: TenantConfig) -> Path | None:
    settings = tenant.wstrust or tenant.saml2 or tenant.oidc
    return settings.ca_file if settings is not None else None


def config_step(config: BridgeConfig, tenant: TenantConfig) -> Step:
    mine = [w for w in config.warnings if tenant.source.name in w]
    summary = f"{tenant.source} loaded: {tenant.name} ({tenant.protocol.value}), domains {', '.join(tenant.domains)}"
    if mine:
        return Step(name="configuration", status=Status.WARN, summary=summary, hint="; ".join(mine))
    return Step(name="configuration", status=Status.PASS, summary=summary)


class _Network:
    """The network steps of each IdP host, once per host however many URLs name it.

    ``any_inside``, ``reachable`` and ``tls_not_after`` are those of the hosts stepped through so far
    (an OpenID provider's endpoint hosts are only known once its discovery document is read).
    """

    def __init__(self, config: BridgeConfig, tenant: TenantConfig) -> None:
        self.config = config
        self.tenant = tenant
        self.seen: set[Target] = set()
        self.any_inside = False
        self.reachable = False
        self.tls_not_after: datetime | None = None

    async def steps_for(self, urls: Sequence[str]) -> list[Step]:
        steps: list[Step] = []
        for target in targets_from_urls(urls):
            if target in self.seen:
                continue
            self.seen.add(target)
            steps.extend(await self._target(target))
        return steps

    async def _target(self, target: Target) -> list[Step]:
        timeout = self.config.idp_client.connect_timeout
        step, addresses = await resolve_step(target)
        steps = [step]
        if not addresses:
            return steps
        step, inside = whitelist_step(target, addresses, self.tenant.idp_whitelist)
        steps.append(step)
        self.any_inside = self.any_inside or bool(inside)
        for address in inside:
            step = await tcp_step(target, address, timeout)
            steps.append(step)
            if step.status is Status.FAIL:
                continue
            self.reachable = True
            step, not_after = await tls_step(target, address, ca_file_of(self.tenant), timeout)
            steps.append(step)
            if not_after is not None and (self.tls_not_after is None or not_after < self.tls_not_after):
                self.tls_not_after = not_after
        return steps


async def _protocol(config: BridgeConfig, tenant: TenantConfig, network: _Network) -> ProtocolResult:
    client = config.idp_client
    try:
        context = make_ssl_context(ca_file_of(tenant))
    except BridgeError as exc:  # the ca_file changed since the configuration was checked
        return ProtocolResult(steps=(error_step("tls trust anchors", exc),), samples=(), signing_not_after=None)
    http = IdpHttp(whitelist=tenant.idp_whitelist, ssl_context=context,
                   connect_timeout=client.connect_timeout, timeout=client.timeout, max_connections=2)
    try:
        if tenant.wstrust is not None:
            return await wstrust_steps(tenant.wstrust, http)
        if tenant.oidc is not None:
            return await oidc_steps(tenant.oidc, http, network=network.steps_for)
        assert tenant.saml2 is not None
        return await saml_steps(tenant.saml2, http)
    finally:
        await http.close()


def _allowed_skew(tenant: TenantConfig) -> timedelta:
    settings = tenant.wstrust or tenant.saml2 or tenant.oidc
    return settings.clock_skew if settings is not None else timedelta(seconds=300)


async def login_step(login: LoginService, tenant: TenantConfig, credentials: Credentials) -> Step:
    """A real login on the devices' path; a failure carries the device's code and panel message."""
    name = f"login {credentials.email}"
    started = time.perf_counter()
    try:
        _, domain = split_email(credentials.email)
        owner = login.config.tenant_for_domain(domain)
        if owner is not None and owner.id != tenant.id:
            return Step(name=name, status=Status.FAIL,
                        summary=f"{domain} belongs to tenant {owner.id}, not {tenant.id}",
                        hint=f"run: loginbridge check {owner.id} --email {credentials.email} --password-stdin")
        _, user = await login.verify_password(identifier=credentials.email, password=credentials.password,
                                              mode=LoginMode.PASSWORD, source=None)
    except BridgeError as exc:
        return error_step(name, exc, hint=_login_hint(login.config, tenant, exc), seconds=time.perf_counter() - started)
    return Step(name=name, status=Status.PASS, seconds=time.perf_counter() - started,
                summary=f"the IdP accepted the password; its signed subject is {user.email}, an enabled account "
                        f"of tenant {tenant.id}")


def no_password_grant_step(tenant: TenantConfig, credentials: Credentials) -> Step:
    """The login step of an OpenID Connect tenant without the password grant: nothing to try, nothing wrong."""
    return Step(name=f"login {credentials.email}", status=Status.SKIP,
                summary=f"tenant {tenant.id} has no password sign-in (oidc.password_grant is false): no password "
                        "was sent",
                hint="its users sign in with \"Sign in with phone\" (pairing) at the provider's own page; set "
                     "password_grant: true only if the provider allows the password grant for the bridge's "
                     "client and the users have no MFA")


def _login_hint(config: BridgeConfig, tenant: TenantConfig, exc: BridgeError) -> str:
    """What to change for a failed login, where this tenant's settings say more than the catalogue ("" if not)."""
    if isinstance(exc, SpNotRegistered):
        if tenant.saml2 is not None:
            return (f"register this bridge at the IdP as a SAML service provider: give it the SP metadata from "
                    f"{config.public_url}/saml/{tenant.id}/metadata (entity {tenant.saml2.sp_entity_id}); "
                    "Keycloak: import it as a SAML client and allow the ECP flow")
        if tenant.wstrust is not None:
            return (f"add a relying party trust at AD FS whose identifier is {tenant.wstrust.applies_to} "
                    "(the tenant's wstrust.applies_to), or set applies_to to the identifier of the existing trust")
    if tenant.oidc is not None:
        return _oidc_login_hint(tenant, exc)
    return ""


_CLIENT_CREDENTIAL = {
    OidcClientAuth.CLIENT_SECRET_BASIC: "the client secret (its value, not its id; not expired) and that the "
                                        "provider expects client_secret_basic",
    OidcClientAuth.PRIVATE_KEY_JWT: "that the provider has the public half of oidc.private_key_file (and "
                                    "private_key_id as its kid) and expects private_key_jwt",
    OidcClientAuth.NONE: "that the provider accepts the client without a secret (a public client)",
}


def _oidc_login_hint(tenant: TenantConfig, exc: BridgeError) -> str:
    """An OpenID Connect tenant's refusals point at the client registration, the ID token or the phone."""
    assert tenant.oidc is not None
    if isinstance(exc, MfaRequired):
        return ("the provider wants a second factor, which the password grant cannot give: this user signs in "
                "with \"Sign in with phone\" (pairing)")
    if isinstance(exc, IdpRejectedRequest):
        credential = _CLIENT_CREDENTIAL[tenant.oidc.client_auth]
        return (f"the provider refused the bridge's client {tenant.oidc.client_id}: check the client id, "
                f"{credential}, that the password grant is enabled for the client (Entra ID: Allow public client "
                "flows; Keycloak: Direct access grants; Okta: Resource Owner Password) and that consent is "
                "granted; docs/troubleshooting.md lists the provider codes")
    if isinstance(exc, AssertionRejected):
        return ("the ID token was refused: compare oidc.issuer (trailing /), client_id and signing_algorithms "
                "with the provider, and the clocks (the clock skew step); docs/troubleshooting.md lists the "
                "reasons")
    return ""


async def run_check(config: BridgeConfig, tenant_id: str, *, login: LoginService | None = None,
                    credentials: Credentials | None = None) -> Report:
    """Every step for one tenant; ``login`` is needed when ``credentials`` are given."""
    started_at = datetime.now(UTC)
    tenant = config.tenant(tenant_id)
    steps = [config_step(config, tenant)]
    targets = targets_from_urls(idp_urls(tenant))
    network = _Network(config, tenant)
    steps.extend(await network.steps_for(idp_urls(tenant)))
    reachable = network.reachable
    signing_not_after = None
    if reachable or (tenant.saml2 is not None and tenant.saml2.metadata_url is None and not targets):
        result = await _protocol(config, tenant, network)
        steps.extend(result.steps)
        signing_not_after = result.signing_not_after
        dated = [s for s in result.samples if s.date_header]
        if dated:
            sample = dated[-1]
            steps.append(skew_step(date_header=sample.date_header, sent_at=sample.sent_at,
                                   received_at=sample.received_at, allowed=_allowed_skew(tenant)))
        elif reachable:
            steps.append(Step(name="clock skew", status=Status.WARN, summary="no answer carried a Date header",
                              hint="cannot measure; make sure both clocks are synchronised with NTP"))
    else:
        why = "the address is outside idp_whitelist" if not network.any_inside else "the IdP host cannot be reached"
        for name in _protocol_step_names(tenant):
            steps.append(Step(name=name, status=Status.SKIP, summary=f"not contacted: {why} (see above)"))
    if tenant.oidc is not None:
        steps.append(redirect_step(redirect_uri(config.public_url, tenant.id, tenant.oidc.redirect_uri)))
    if credentials is not None:
        if login is None:
            raise ValueError("a login check needs the LoginService")
        if tenant.oidc is not None and not tenant.oidc.password_grant:
            steps.append(no_password_grant_step(tenant, credentials))
        else:
            steps.append(await login_step(login, tenant, credentials))
    return Report(tool="check", subject=tenant.id, started_at=started_at, steps=tuple(steps),
                  tls_not_after=network.tls_not_after, signing_not_after=signing_not_after)


def _protocol_step_names(tenant: TenantConfig) -> tuple[str, ...]:
    if tenant.protocol is Protocol.WSTRUST:
        return ("mex", "usernamemixed endpoints", "federation metadata", "signing certificates", "clock skew")
    if tenant.protocol is Protocol.OIDC:
        return (DISCOVERY, JWKS, "clock skew")
    return ("saml metadata", "ecp endpoint", "signing certificates", "clock skew")


# --------------------------------------------------------------------------
# The last report per tenant, for the console.


def _report_path(state_dir: Path, tenant_id: str) -> Path:
    return state_dir / CHECKS_DIR / f"{tenant_id}.json"


def save_report(state_dir: Path, report: Report) -> None:
    path = _report_path(state_dir, report.subject)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report.to_json(), ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def load_report(state_dir: Path, tenant_id: str) -> Report | None:
    try:
        raw = json.loads(_report_path(state_dir, tenant_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Report.from_json(raw)


# --------------------------------------------------------------------------
# The command.


@contextlib.asynccontextmanager
async def standalone_login(config: BridgeConfig) -> AsyncIterator[LoginService]:
    """A LoginService like the server's (same store, SP keys, audit file) for a command-line run.

    Throttle state is the store's: the command sees (and feeds) the server's
    current locks, as any instance of the cluster does.
    """
    store = await Store.open(config.store_url)
    idps = IdpRegistry(config, await asyncio.to_thread(ensure_sp_keys, config.state_dir))
    audit = AuditLog(config.audit_file, store)
    audit.open()
    login = LoginService(config, store, idps)
    login.guard = LoginGuard(config, LoginThrottle(store, config.hmac_key), audit=audit)
    try:
        yield login
    finally:
        audit.close()
        await idps.close()
        await store.close()


async def check_command(config: BridgeConfig, tenant_id: str, credentials: Credentials | None) -> Report:
    config.tenant(tenant_id)  # an unknown tenant is an error before anything runs
    if credentials is None:
        report = await run_check(config, tenant_id)
    else:
        async with standalone_login(config) as login:
            report = await run_check(config, tenant_id, login=login, credentials=credentials)
    try:
        save_report(config.state_dir, report)
    except OSError as exc:
        log.warning("cannot save the check report in %s: %s", config.state_dir, exc.strerror)
    return report
