"""OpenID Connect steps of ``loginbridge check``: the discovery document, the JWK Set, the redirect URI.

They read what the login path reads, through the same whitelisted, pinned
client (so a document the check can fetch is one logins can fetch), with the
project's own parsers (bridge/idp/oidc): ``discovery`` fails exactly where a
sign-in would.  On top, the document is compared with the tenant's settings,
because a provider that does not offer what the tenant asks for (its client
authentication, the password grant, its signature algorithms, PKCE with S256)
refuses sign-ins later with a less telling answer.

The judgements (:func:`judge_provider`, :func:`judge_keys`,
:func:`redirect_step`) are pure; only :func:`oidc_steps` does I/O.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from bridge.config import OIDC_HMAC_ALGORITHMS, OidcClientAuth, OidcConfig
from bridge.errors import BridgeError, IdpProtocolError
from bridge.idp.http import IdpHttp
from bridge.idp.oidc.discovery import ProviderMetadata, discovery_url, parse_provider_metadata
from bridge.idp.oidc.jsondoc import clean, load_object, optional_text
from bridge.idp.oidc.jwks import SigningKey, SigningKeys, parse_jwks
from bridge.toolkit.idp import Fetcher, ProtocolResult
from bridge.toolkit.report import Status, Step, error_step

log = logging.getLogger(__name__)

DISCOVERY = "discovery"
JWKS = "jwks"
REDIRECT_URI = "redirect uri"
S256 = "S256"  # RFC 7636 section 4.2: the only code challenge method the bridge sends
PASSWORD_GRANT = "password"  # noqa: S105 (a grant type: RFC 6749 section 4.3, RFC 8414 section 2)
AUTHORIZATION_CODE = "authorization_code"

# Which JWS algorithms (RFC 7518 section 3.1, RFC 8037 section 3.1) a public key of each kind can verify.
_RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_ALGORITHMS = {"P-256": ("ES256",), "P-384": ("ES384",), "P-521": ("ES512",)}

NetworkSteps = Callable[[Sequence[str]], Awaitable[list[Step]]]


def endpoint_urls(meta: ProviderMetadata) -> list[str]:
    """The provider's endpoints the bridge contacts or sends browsers to (hosts for the network steps)."""
    urls = [meta.authorization_endpoint, meta.token_endpoint, meta.jwks_uri]
    return urls + ([meta.userinfo_endpoint] if meta.userinfo_endpoint else [])


def _worst(findings: Sequence[tuple[Status, str]]) -> Status:
    for status in (Status.FAIL, Status.WARN):
        if any(s is status for s, _ in findings):
            return status
    return Status.PASS


def judge_provider(cfg: OidcConfig, meta: ProviderMetadata, *, listed: frozenset[str]) -> tuple[Status, list[str]]:
    """What in the provider's document does not fit the tenant's settings: the verdict and one hint per finding.

    ``listed``: the members the document actually has.  Where Discovery lets a member be left out, its
    absence says nothing about the provider (Entra ID lists neither code challenge methods nor grant types),
    so only a member that is there and lacks the value needed is held against it.
    """
    findings: list[tuple[Status, str]] = []
    methods = meta.token_endpoint_auth_methods_supported
    auth = cfg.client_auth.value
    if "token_endpoint_auth_methods_supported" in listed and auth not in methods:
        if cfg.client_auth is OidcClientAuth.NONE:
            # Public clients are often accepted without "none" being listed (Entra ID): a warning only.
            findings.append((Status.WARN, f"the token endpoint lists {', '.join(methods)}, not none: if the "
                                          "provider refuses the public client, register the bridge as a "
                                          "confidential client and set client_auth to one of those"))
        else:
            findings.append((Status.FAIL, f"oidc.client_auth is {auth}, but the token endpoint accepts only "
                                          f"{', '.join(methods)}: set client_auth to one of them (and give the "
                                          "secret or key it needs)"))
    challenges = meta.code_challenge_methods_supported
    if challenges and S256 not in challenges:
        findings.append((Status.WARN, f"the provider lists code challenge methods {', '.join(challenges)}, not "
                                      "S256: phone sign-in sends PKCE with S256 (RFC 7636) and may be refused"))
    grants = meta.grant_types_supported
    if "grant_types_supported" in listed:
        if cfg.password_grant and PASSWORD_GRANT not in grants:
            findings.append((Status.WARN, f"oidc.password_grant is true, but the provider lists the grants "
                                          f"{', '.join(grants)}, not password: password prompts will be refused "
                                          "unless it is enabled for the bridge's client (Keycloak: Direct access "
                                          "grants; Okta: Resource Owner Password; Entra ID: Allow public client "
                                          "flows)"))
        if AUTHORIZATION_CODE not in grants:
            findings.append((Status.WARN, f"the provider lists the grants {', '.join(grants)}, not "
                                          "authorization_code: phone sign-in needs it"))
    offered = meta.id_token_signing_alg_values_supported
    if not set(cfg.signing_algorithms) & set(offered):
        findings.append((Status.WARN, f"oidc.signing_algorithms is {', '.join(cfg.signing_algorithms)}, but the "
                                      f"provider signs ID tokens with {', '.join(offered)}: add the one its client "
                                      "registration uses to signing_algorithms, or every ID token is refused"))
    return _worst(findings), [hint for _, hint in findings]


def _named_issuer(body: bytes) -> str | None:
    """The issuer a discovery document names, read on its own to explain a mismatch (None: unreadable)."""
    try:
        return optional_text(load_object(body, what="the OpenID provider configuration"), "issuer",
                             what="the OpenID provider configuration")
    except IdpProtocolError:
        return None


def _members(body: bytes) -> frozenset[str]:
    try:
        return frozenset(load_object(body, what="the OpenID provider configuration"))
    except IdpProtocolError:
        return frozenset()


def _issuer_mismatch(configured: str, named: str) -> Step:
    if configured.rstrip("/") == named.rstrip("/"):
        why = "they differ only in the trailing /, which counts"
    else:
        why = "they must be identical (OpenID Connect Discovery 1.0 section 4.3)"
    return Step(name=DISCOVERY, status=Status.FAIL,
                summary=f"the provider's document names issuer {clean(named)}, the tenant's oidc.issuer is "
                        f"{configured}: {why}",
                hint=f"set oidc.issuer to {clean(named)} exactly, if this is the right provider (Entra ID: "
                     "https://login.microsoftonline.com/TENANT-ID/v2.0; Keycloak: https://HOST/realms/REALM)",
                code="idp_protocol_error")


async def discovery_step(cfg: OidcConfig, fetch: Fetcher) -> tuple[Step, ProviderMetadata | None]:
    """Fetch and judge ``{issuer}/.well-known/openid-configuration``."""
    url = discovery_url(cfg.issuer)
    started = time.perf_counter()
    try:
        resp, elapsed = await fetch.get(url)
    except BridgeError as exc:
        return error_step(DISCOVERY, exc, seconds=time.perf_counter() - started), None
    if resp.status != 200:
        return Step(name=DISCOVERY, status=Status.FAIL, summary=f"{url} answered HTTP {resp.status}",
                    hint="the issuer is wrong or the provider does not publish discovery there: check oidc.issuer "
                         "(Entra ID ends in /v2.0, Keycloak is https://HOST/realms/REALM, Okta's custom "
                         "servers are https://ORG.okta.com/oauth2/SERVER-ID)",
                    seconds=elapsed, code="idp_protocol_error"), None
    named = _named_issuer(resp.body)
    if named is not None and named != cfg.issuer:
        return _issuer_mismatch(cfg.issuer, named), None
    try:
        meta = parse_provider_metadata(resp.body, issuer=cfg.issuer)
    except BridgeError as exc:
        return error_step(DISCOVERY, exc, seconds=elapsed,
                          hint=f"{url} is not a usable OpenID provider configuration: is oidc.issuer the "
                               "provider's issuer (not its sign-in page)?"), None
    status, hints = judge_provider(cfg, meta, listed=_members(resp.body))
    hosts = sorted({urlsplit(u).hostname or "" for u in endpoint_urls(meta)} - {urlsplit(cfg.issuer).hostname})
    elsewhere = f"; endpoints also on {', '.join(hosts)}" if hosts else ""
    summary = (f"{url}: issuer matches; token endpoint {meta.token_endpoint}; client authentication "
               f"{', '.join(meta.token_endpoint_auth_methods_supported)}; ID tokens signed with "
               f"{', '.join(meta.id_token_signing_alg_values_supported)}{elsewhere}")
    code = "idp_rejected_request" if status is Status.FAIL else None
    return Step(name=DISCOVERY, status=status, summary=summary, hint="\n".join(hints), seconds=elapsed,
                code=code), meta


def key_algorithms(key: SigningKey) -> tuple[str, ...]:
    """The JWS algorithms a published key can verify: its own ``alg`` when it has one (RFC 7517 section 4.4)."""
    if key.alg is not None:
        return (key.alg,)
    if key.kty == "RSA":
        return _RSA_ALGORITHMS
    if key.kty == "EC":
        return _EC_ALGORITHMS.get(key.crv or "", ())
    return ("EdDSA",)


def _shown(key: SigningKey) -> str:
    kind = key.kty if key.crv is None else f"{key.kty} {key.crv}"
    alg = key.alg or "any " + ("RSA algorithm" if key.kty == "RSA" else "algorithm of its curve")
    return f"{clean(key.kid, 60) if key.kid else '(no kid)'} ({kind}, {alg})"


def judge_keys(cfg: OidcConfig, keys: SigningKeys, where: str) -> Step:
    """Whether some published key can verify an ID token signed with an algorithm the tenant allows."""
    listed = "; ".join(_shown(k) for k in keys.keys)
    summary = f"{where}: {len(keys.keys)} usable signing key(s): {listed}"
    wanted = [a for a in cfg.signing_algorithms if a not in OIDC_HMAC_ALGORITHMS]
    fitting = [k for k in keys.keys if set(key_algorithms(k)) & set(wanted)]
    if wanted and not fitting and len(wanted) == len(cfg.signing_algorithms):
        return Step(name=JWKS, status=Status.FAIL, summary=summary, code="assertion_invalid",
                    hint=f"no published key verifies {', '.join(wanted)} (oidc.signing_algorithms): every ID "
                         "token would be refused; allow the algorithm the provider signs with")
    return Step(name=JWKS, status=Status.PASS, summary=summary)


async def jwks_step(cfg: OidcConfig, meta: ProviderMetadata, fetch: Fetcher) -> Step:
    started = time.perf_counter()
    try:
        resp, elapsed = await fetch.get(meta.jwks_uri)
        if resp.status != 200:
            raise IdpProtocolError(f"the JWK Set at {meta.jwks_uri} answered HTTP {resp.status}")
        keys = parse_jwks(resp.body)
    except BridgeError as exc:
        return error_step(JWKS, exc, seconds=time.perf_counter() - started,
                          hint="the provider's signing keys cannot be read, so no ID token can be verified: "
                               "check that jwks_uri answers from the bridge (whitelist, proxy)")
    step = judge_keys(cfg, keys, meta.jwks_uri)
    return Step(name=step.name, status=step.status, summary=step.summary, hint=step.hint, seconds=elapsed,
                code=step.code)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redirect_step(redirect_uri: str) -> Step:
    """The redirect URI the administrator registers at the provider (phone sign-in comes back there)."""
    summary = f"register {redirect_uri} as a redirect URI of the bridge's client (a Web platform)"
    parts = urlsplit(redirect_uri)
    if parts.scheme != "https" and not _loopback(parts.hostname or ""):
        return Step(name=REDIRECT_URI, status=Status.WARN, summary=summary,
                    hint="providers accept plain http redirect URIs for localhost only: set public_url (or "
                         "oidc.redirect_uri) to the bridge's https address")
    return Step(name=REDIRECT_URI, status=Status.PASS, summary=summary)


async def oidc_steps(cfg: OidcConfig, http: IdpHttp, *, network: NetworkSteps) -> ProtocolResult:
    """Discovery, the network steps of endpoint hosts not seen yet (``network``), the JWK Set."""
    fetch = Fetcher(http)
    steps: list[Step] = []
    step, meta = await discovery_step(cfg, fetch)
    steps.append(step)
    if meta is None:
        steps.append(Step(name=JWKS, status=Status.SKIP, summary="not known: the discovery document failed"))
    else:
        steps.extend(await network(endpoint_urls(meta)))
        steps.append(await jwks_step(cfg, meta, fetch))
    return ProtocolResult(steps=tuple(steps), samples=tuple(fetch.samples), signing_not_after=None)
