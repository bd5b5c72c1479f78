"""One tenant's OpenID provider: discovery, keys, the browser sign-in and the password grant (the I/O).

Everything the provider sends is read by the pure modules of this package; this
layer fetches it over the tenant's whitelisted, TLS-verified
:class:`~bridge.idp.http.IdpHttp` and keeps what may be kept.  The discovery
document and the JWK Set are cached for ``discovery_refresh`` and re-read by
one shared fetch; a failed re-read keeps the last good copy (a provider's
hiccup must not stop sign-ins), while with nothing cached the failure is the
answer.  An ID token signed with a key the cached JWK Set lacks (the provider
rotated its keys) re-reads the set at once, but at most once per
``jwks_refresh_interval``: tokens with made-up kids must not turn the bridge
into a tool for hammering the provider.

Both paths (the code exchange after the browser sign-in, and the password
grant for a panel) validate the ID token through :meth:`OidcIdp._accept`, so
neither accepts what the other would refuse.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import urlencode

from bridge.config import OidcConfig, TenantConfig
from bridge.errors import (
    AssertionRejected,
    BridgeError,
    IdpProtocolError,
    IdpUnreachable,
    PasswordLoginUnsupported,
)
from bridge.idp.allowlist import require_whitelisted_url
from bridge.idp.assertion import ReplayCache
from bridge.idp.browser import BrowserRedirect
from bridge.idp.http import IdpHttp, IdpResponse
from bridge.idp.lookup import SharedLookup
from bridge.idp.oidc.authorize import authorization_url, code_challenge, code_verifier, redirect_uri
from bridge.idp.oidc.clientauth import ClientCredentials
from bridge.idp.oidc.dialects import Grant, OAuthError, authorization_error
from bridge.idp.oidc.discovery import ProviderMetadata, discovery_url, parse_provider_metadata
from bridge.idp.oidc.idtoken import IdTokenExpectations, ValidatedIdToken, identify, verify_id_token
from bridge.idp.oidc.jwks import SigningKeys, parse_jwks
from bridge.idp.oidc.tokens import TokenSet, read_token_response, read_userinfo
from bridge.idp.refusals import describe_body

log = logging.getLogger(__name__)

MAX_CODE_CHARS = 4096
_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"


class OidcIdp:
    """One tenant's OpenID provider; also the tenant's :class:`~bridge.idp.browser.BrowserSignin`."""

    def __init__(self, tenant: TenantConfig, http: IdpHttp, public_url: str, *, pkce_key: bytes,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if tenant.oidc is None:
            raise ValueError(f"tenant {tenant.id} has no oidc settings")
        self.tenant = tenant
        self.cfg: OidcConfig = tenant.oidc
        self.http = http
        self._redirect_uri = redirect_uri(public_url, tenant.id, self.cfg.redirect_uri)
        self._pkce_key = pkce_key
        self._credentials = ClientCredentials(self.cfg)
        self._clock = clock
        max_age = self.cfg.discovery_refresh.total_seconds()
        self._provider: SharedLookup[ProviderMetadata] = SharedLookup(
            self._load_provider, max_age=max_age, what=f"OpenID configuration of {tenant.id}", clock=clock)
        self._keys: SharedLookup[SigningKeys] = SharedLookup(
            self._load_keys, max_age=max_age, what=f"JWK Set of {tenant.id}", clock=clock)
        self._keys_forced_at: float | None = None
        self._warned: set[str] = set()

    @property
    def redirect_uri(self) -> str:
        return self._redirect_uri

    def close(self) -> None:
        """Stop a fetch under way; the IdpHttp belongs to the caller."""
        self._provider.close()
        self._keys.close()

    # --- provider documents ----------------------------------------------------------------------

    async def provider(self, *, refresh: bool = False) -> ProviderMetadata:
        """The discovery document (cached for discovery_refresh; the last good one when a re-read fails)."""
        return await self._provider.get(refresh=refresh)

    async def signing_keys(self, *, refresh: bool = False) -> SigningKeys:
        """The provider's JWK Set (cached like the discovery document)."""
        return await self._keys.get(refresh=refresh)

    async def _get_json(self, url: str, what: str) -> IdpResponse:
        resp = await self.http.request("GET", url, headers={"Accept": _JSON})
        if resp.status != 200:
            said = f"{what} answered HTTP {resp.status} ({describe_body(resp.body, resp.content_type)})"
            kind = IdpUnreachable if resp.status >= 500 or resp.status == 429 else IdpProtocolError
            raise kind(said, cause=f"{what} answered HTTP {resp.status}")
        return resp

    async def _load_provider(self, previous: ProviderMetadata | None) -> ProviderMetadata:
        try:
            resp = await self._get_json(discovery_url(self.cfg.issuer), "the OpenID configuration")
            metadata = parse_provider_metadata(resp.body, issuer=self.cfg.issuer)
        except BridgeError as exc:
            if previous is None:
                raise
            log.warning("OpenID configuration of tenant %s: refresh failed, keeping the previous one: %s",
                        self.tenant.id, exc)
            return previous
        self._check_fit(metadata)
        return metadata

    def _check_fit(self, metadata: ProviderMetadata) -> None:
        """Warn (once each) about settings the provider says it does not support; the provider decides."""
        if metadata.code_challenge_methods_supported and "S256" not in metadata.code_challenge_methods_supported:
            self._warn_once("pkce", "the provider does not list PKCE S256 among its code_challenge_methods; "
                                    "the bridge sends it all the same (PKCE is not optional)")
        method = self.cfg.client_auth.value
        if method not in metadata.token_endpoint_auth_methods_supported:
            self._warn_once("auth", f"the provider does not list client_auth {method} among its "
                                    "token_endpoint_auth_methods_supported")
        if not set(self.cfg.signing_algorithms) & set(metadata.id_token_signing_alg_values_supported):
            self._warn_once("alg", f"none of signing_algorithms ({', '.join(self.cfg.signing_algorithms)}) is "
                                   "among the provider's id_token_signing_alg_values_supported")

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("OpenID provider of tenant %s: %s", self.tenant.id, text)

    async def _load_keys(self, previous: SigningKeys | None) -> SigningKeys:
        try:
            provider = await self.provider()
            resp = await self._get_json(provider.jwks_uri, "the JWK Set")
            keys = parse_jwks(resp.body)
        except BridgeError as exc:
            if previous is None:
                raise
            log.warning("JWK Set of tenant %s: refresh failed, keeping the previous one: %s", self.tenant.id, exc)
            return previous
        if previous is not None and keys.kids() != previous.kids():
            log.info("JWK Set of tenant %s changed: %d key(s) now", self.tenant.id, len(keys.keys))
        return keys

    # --- the browser sign-in ---------------------------------------------------------------------

    async def begin_browser_signin(self, *, state: str, login_hint: str | None = None) -> BrowserRedirect:
        """The authorization request URL (code flow, PKCE S256); its nonce is the request id to hand back."""
        if not state:
            raise ValueError("an OpenID Connect sign-in needs a state")
        provider = await self.provider()
        # The phone's browser, not the bridge, goes there; the rule still holds that the bridge only
        # points at whitelisted IdP addresses.
        await require_whitelisted_url(provider.authorization_endpoint, self.tenant.idp_whitelist,
                                      refusing="send a browser to the IdP sign-in page")
        nonce = secrets.token_urlsafe(24)
        url = authorization_url(
            provider.authorization_endpoint, client_id=self.cfg.client_id, redirect_uri=self.redirect_uri,
            scopes=self.cfg.scopes, state=state, nonce=nonce,
            challenge=code_challenge(code_verifier(self._pkce_key, state)), login_hint=login_hint,
        )
        return BrowserRedirect(url=url, request_id=nonce)

    async def finish_browser_signin(self, *, form: Mapping[str, str], request_id: str | None,
                                    replay: ReplayCache) -> ValidatedIdToken:
        """Check the callback's query, exchange the code (with the PKCE verifier), validate and remember the token."""
        if not request_id:
            raise AssertionRejected("nonce", "no sign-in is pending for this answer (no nonce was kept)")
        iss = form.get("iss")
        if iss is None and (await self.provider()).authorization_response_iss_parameter_supported:
            # RFC 9207 section 2.4: a provider that says it sends "iss" must be held to it (mix-up defence).
            raise AssertionRejected("issuer", "the authorization response names no issuer (iss), though the "
                                              "provider says it always does (RFC 9207)")
        if iss is not None and iss != self.cfg.issuer:
            # RFC 9207: the answer names the issuer that sent it; another one is a mix-up attack.
            raise AssertionRejected("issuer", f"the authorization response comes from issuer {iss[:200]!r}, "
                                              f"not {self.cfg.issuer!r}")
        error = form.get("error")
        if error is not None:
            raise authorization_error(OAuthError(error=error, description=form.get("error_description", "")))
        code, state = form.get("code"), form.get("state")
        if not code or not state:
            raise IdpProtocolError("the authorization response has neither an error nor a code and state")
        if len(code) > MAX_CODE_CHARS:
            raise IdpProtocolError(f"the authorization code is over {MAX_CODE_CHARS} characters")
        tokens = await self._token_request({
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": code_verifier(self._pkce_key, state),
        }, grant=Grant.AUTHORIZATION_CODE)
        return await self._accept(tokens, nonce=request_id, replay=replay)

    # --- the password grant ----------------------------------------------------------------------

    async def authenticate(self, *, username: str, password: str, replay: ReplayCache) -> ValidatedIdToken:
        """The OAuth 2.0 password grant (RFC 6749 section 4.3), where the tenant allows it."""
        if not self.cfg.password_grant:
            raise PasswordLoginUnsupported(
                f"tenant {self.tenant.id} does not allow the OAuth 2.0 password grant (oidc.password_grant is "
                "false): sign in by pairing the device with a phone instead")
        tokens = await self._token_request({
            "grant_type": "password",
            "username": username,
            "password": password,
            "scope": " ".join(self.cfg.scopes),
        }, grant=Grant.PASSWORD)
        return await self._accept(tokens, nonce=None, replay=replay)

    # --- shared by both paths --------------------------------------------------------------------

    async def _token_request(self, form: Mapping[str, str], *, grant: Grant) -> TokenSet:
        provider = await self.provider()
        auth = await self._credentials.for_token_request(provider.token_endpoint, now=datetime.now(UTC))
        body = urlencode({**form, **auth.form}).encode("ascii")
        headers = {"Content-Type": _FORM, "Accept": _JSON, **auth.headers}
        resp = await self.http.request("POST", provider.token_endpoint, body=body, headers=headers)
        return read_token_response(resp.status, resp.body, resp.content_type, grant=grant)

    async def _accept(self, tokens: TokenSet, *, nonce: str | None, replay: ReplayCache) -> ValidatedIdToken:
        """Validate the ID token (one JWK Set re-read on an unknown key), remember it once, find the email."""
        cfg = self.cfg
        secret = await self._credentials.secret() if any(a.startswith("HS") for a in cfg.signing_algorithms) \
            else None
        expected = IdTokenExpectations(
            issuer=cfg.issuer, client_id=cfg.client_id, algorithms=cfg.signing_algorithms,
            clock_skew=cfg.clock_skew, email_claim=cfg.email_claim, nonce=nonce, client_secret=secret,
        )
        keys = await self.signing_keys()
        try:
            claims = verify_id_token(tokens.id_token, keys, expected, now=datetime.now(UTC))
        except AssertionRejected as exc:
            if exc.reason != "unknown_key":
                raise
            newer = self._keys.value
            if newer is not None and newer is not keys:
                keys = newer  # another sign-in re-read the set while this one waited for its token
            elif self._may_reread_keys():
                log.info("ID token of tenant %s names a key the JWK Set lacks: re-reading it", self.tenant.id)
                keys = await self.signing_keys(refresh=True)
            else:
                raise
            claims = verify_id_token(tokens.id_token, keys, expected, now=datetime.now(UTC))
        now = datetime.now(UTC)
        if not await replay.check_and_remember(claims.issuer, claims.token_id, claims.expires_at + cfg.clock_skew,
                                               now=now):
            raise AssertionRejected("replayed", "this ID token was already used")
        email = None
        if claims.email is None:
            email = await self._userinfo_email(tokens, sub=claims.sub)
        return identify(claims, email=email)

    def _may_reread_keys(self) -> bool:
        """A forced JWK Set re-read is allowed once per jwks_refresh_interval (one under way is joined)."""
        if self._keys.loading:
            return True
        now = self._clock()
        interval = self.cfg.jwks_refresh_interval.total_seconds()
        if self._keys_forced_at is not None and now - self._keys_forced_at < interval:
            return False
        self._keys_forced_at = now
        return True

    async def _userinfo_email(self, tokens: TokenSet, *, sub: str) -> str:
        """The email claim from the userinfo endpoint (OIDC Core 5.3), for an ID token without it."""
        provider = await self.provider()
        if provider.userinfo_endpoint is None:
            raise AssertionRejected("claim_missing", f"the ID token has no {self.cfg.email_claim} claim and the "
                                                     "provider has no userinfo endpoint")
        resp = await self.http.request("GET", provider.userinfo_endpoint, headers={
            "Authorization": f"Bearer {tokens.access_token}", "Accept": _JSON})
        return read_userinfo(resp.status, resp.body, resp.content_type, sub=sub, email_claim=self.cfg.email_claim)
