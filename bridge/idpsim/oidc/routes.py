"""aiohttp routes of the OpenID Provider, mounted into the simulator's app by :func:`mount_oidc`.

- ``GET  /oidc/.well-known/openid-configuration``  Discovery 1.0 section 4
- ``GET  /oidc/jwks``                              the public keys (RFC 7517 section 5)
- ``GET|POST /oidc/authorize``                     the authorization request (query, or form per OIDC Core
  3.1.2.1); POST also carries the shared login form's steps (``flow``, ``username``, ``password``, ``otp``,
  ``action``), answered by :mod:`bridge.idpsim.browser.routes`
- ``POST /oidc/token``                             authorization_code and password grants
- ``GET|POST /oidc/userinfo``                      UserInfo (OIDC Core section 5.3) for a Bearer token

The simulator's ``delay_seconds`` and ``fail_mode`` apply to each.  Counters:
``oidc.discovery``, ``oidc.jwks``, ``oidc.authorize``, ``oidc.refused`` (error
page), ``oidc.redirect_error``, ``oidc.code_issued``, ``oidc.cancelled``,
``oidc.token``, ``oidc.token.code``, ``oidc.token.password``,
``oidc.token.error.<error>``, ``oidc.issued`` (ID tokens), ``oidc.mischief.<name>``,
``oidc.userinfo``, ``oidc.userinfo.refused``, ``oidc.keys.<action>``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from bridge.idpsim.browser.pages import FLOW_FIELD, error_page, login_page
from bridge.idpsim.browser.pending import OidcTarget, PendingSignin
from bridge.idpsim.browser.routes import (
    BROWSER_RUNTIME,
    OIDC_COMPLETION,
    OIDC_IDP_NAME,
    OidcCompletion,
    html_response,
    read_form,
    signin_step,
)
from bridge.idpsim.config import SimConfig, SimUser
from bridge.idpsim.ecp.routes import simulated_trouble
from bridge.idpsim.oidc.authorize import (
    PageRefusal,
    RedirectRefusal,
    check_authorization_request,
    redirect_with,
)
from bridge.idpsim.oidc.dialects import OAuthErrorAnswer, oauth_error
from bridge.idpsim.oidc.grants import (
    ASSERTION_ALGORITHMS,
    GRANT_AUTHORIZATION_CODE,
    GRANT_PASSWORD,
    Issuance,
    TokenContext,
    parse_form,
    token_request,
)
from bridge.idpsim.oidc.keys import OidcKeyRing
from bridge.idpsim.oidc.settings import OidcSettings
from bridge.idpsim.oidc.store import CodeGrant, OidcStore
from bridge.idpsim.oidc.tokens import (
    CLAIMS_SUPPORTED,
    SCOPE_OPENID,
    SUPPORTED_SCOPES,
    granted_scopes,
    issue_id_token,
    userinfo_json,
)
from bridge.idpsim.state import SIM_STATE, OidcKeyAction, OidcMischief

log = logging.getLogger(__name__)

PREFIX = "/oidc"
DISCOVERY_PATH = f"{PREFIX}/.well-known/openid-configuration"
JWKS_PATH = f"{PREFIX}/jwks"
AUTHORIZE_PATH = f"{PREFIX}/authorize"
TOKEN_PATH = f"{PREFIX}/token"
USERINFO_PATH = f"{PREFIX}/userinfo"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
BEARER_REALM = 'Bearer realm="idp-sim oidc"'
CANCELLED_DESCRIPTION = "The user cancelled the sign-in."
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, kw_only=True, slots=True)
class OidcRuntime:
    """The OP's configuration, keys and memory, kept in the app."""

    settings: OidcSettings
    directory: SimConfig
    keys: OidcKeyRing
    store: OidcStore


OIDC_RUNTIME = web.AppKey("OIDC_RUNTIME", OidcRuntime)


def mount_oidc(
    app: web.Application,
    *,
    config: SimConfig,
    keys: OidcKeyRing | None = None,
    store: OidcStore | None = None,
) -> None:
    """Add the OP's routes (after :func:`bridge.idpsim.browser.routes.mount_browser`: the login pages are its)."""
    if BROWSER_RUNTIME not in app:
        raise ValueError("mount the browser sign-in first: the OpenID Provider uses its login pages")
    settings = config.oidc
    app[OIDC_RUNTIME] = OidcRuntime(
        settings=settings,
        directory=config,
        keys=keys if keys is not None else OidcKeyRing(settings.signing_algorithm),
        store=store if store is not None else OidcStore(),
    )
    app[OIDC_COMPLETION] = OidcCompletion(path=AUTHORIZE_PATH, signed_in=_signed_in, cancelled=_cancelled)
    app.router.add_get(DISCOVERY_PATH, _guarded("oidc.discovery", _discovery))
    app.router.add_get(JWKS_PATH, _guarded("oidc.jwks", _jwks))
    app.router.add_get(AUTHORIZE_PATH, _guarded("oidc.authorize", _authorize))
    app.router.add_post(AUTHORIZE_PATH, _authorize_post)
    app.router.add_post(TOKEN_PATH, _guarded("oidc.token", _token))
    app.router.add_get(USERINFO_PATH, _guarded("oidc.userinfo", _userinfo))
    app.router.add_post(USERINFO_PATH, _guarded("oidc.userinfo", _userinfo))


def issuer_for(request: web.Request) -> str:
    """The configured issuer, else ``https://{host}/oidc`` as the request reached the simulator."""
    configured = request.app[OIDC_RUNTIME].settings.issuer
    if configured is not None:
        return configured
    scheme = "https" if request.secure else "http"
    return f"{scheme}://{request.host}{PREFIX}"


async def apply_key_action(app: web.Application, action: OidcKeyAction) -> tuple[str, ...]:
    """Rotate the signing keys now (the ``oidc_keys`` control); returns the new kids."""
    runtime = app[OIDC_RUNTIME]
    drop_old = action is OidcKeyAction.ROTATE_DROP_OLD
    # Key generation is CPU work: a worker thread keeps the loop answering meanwhile.
    kids = await asyncio.to_thread(runtime.keys.rotate, drop_old=drop_old)
    state = app.get(SIM_STATE)
    if state is not None:
        state.count(f"oidc.keys.{action.value}")
    log.info("OIDC signing keys rotated (%s): now signing with %s", action.value, ", ".join(kids))
    return kids


def failure_response(path: str) -> web.Response | None:
    """The simulator's own failure on an OIDC path: a page on the browser's path, JSON elsewhere (else None)."""
    if path == AUTHORIZE_PATH:
        page = error_page(idp_name=OIDC_IDP_NAME, message="The sign-in service could not process the request.")
        return html_response(page, 500)
    if path.startswith(PREFIX + "/"):
        body = {"error": "server_error", "error_description": "The OpenID Provider could not process the request."}
        return web.json_response(body, status=500, headers=_NO_STORE)
    return None


# --------------------------------------------------------------------------- helpers


def _count(request: web.Request, name: str) -> None:
    state = request.app.get(SIM_STATE)
    if state is not None:
        state.count(name)


def _guarded(name: str, handler: _Handler) -> _Handler:
    """Count the call, then apply the simulator's delay and failure controls before the real handler."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        trouble = await _trouble(request, name)
        return trouble if trouble is not None else await handler(request)

    return wrapped


async def _trouble(request: web.Request, name: str) -> web.StreamResponse | None:
    return await simulated_trouble(request, name, garbage=(b'{"\x89GARBAGE\x00', "application/json"))


def _json(text: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=text, status=status, content_type="application/json", charset="utf-8",
                        headers={**_NO_STORE, **(headers or {})})


def _error(request: web.Request, answer: OAuthErrorAnswer) -> web.Response:
    _count(request, f"oidc.token.error.{answer.error}")
    headers = {} if answer.www_authenticate is None else {"WWW-Authenticate": answer.www_authenticate}
    return _json(answer.body(), answer.status, headers)


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, **_NO_STORE})


# --------------------------------------------------------------------------- discovery and keys


async def _discovery(request: web.Request) -> web.StreamResponse:
    runtime = request.app[OIDC_RUNTIME]
    issuer = issuer_for(request)
    grant_types = [GRANT_AUTHORIZATION_CODE]
    if runtime.settings.password_grant_enabled:
        grant_types.append(GRANT_PASSWORD)
    document = {
        "issuer": issuer,
        "authorization_endpoint": issuer + "/authorize",
        "token_endpoint": issuer + "/token",
        "userinfo_endpoint": issuer + "/userinfo",
        "jwks_uri": issuer + "/jwks",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grant_types,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [alg.value for alg in runtime.keys.algorithms],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "private_key_jwt", "none",
        ],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": list(SUPPORTED_SCOPES),
        "claims_supported": list(CLAIMS_SUPPORTED),
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,
    }
    return web.json_response(document, headers={"Cache-Control": "public, max-age=300"})


async def _jwks(request: web.Request) -> web.StreamResponse:
    return web.Response(text=request.app[OIDC_RUNTIME].keys.jwks_json(), content_type="application/json",
                        charset="utf-8", headers={"Cache-Control": "public, max-age=300"})


# --------------------------------------------------------------------------- authorization endpoint


async def _authorize_post(request: web.Request) -> web.StreamResponse:
    """The login form's steps; or an authorization request sent as a form (OIDC Core 3.1.2.1)."""
    form = await read_form(request)
    if FLOW_FIELD in form:
        return await signin_step(request, form)
    trouble = await _trouble(request, "oidc.authorize")
    if trouble is not None:
        return trouble
    return await _start(request, list(form.items()))


async def _authorize(request: web.Request) -> web.StreamResponse:
    return await _start(request, list(request.query.items()))


async def _start(request: web.Request, pairs: list[tuple[str, str]]) -> web.StreamResponse:
    runtime = request.app[OIDC_RUNTIME]
    issuer = issuer_for(request)
    decision = check_authorization_request(pairs, runtime.settings)
    if isinstance(decision, PageRefusal):
        _count(request, "oidc.refused")
        log.info("OIDC authorization request refused with a page: %s", decision.detail)
        page = error_page(idp_name=OIDC_IDP_NAME, message=decision.message, detail=decision.detail)
        return html_response(page, 400)
    if isinstance(decision, RedirectRefusal):
        _count(request, "oidc.redirect_error")
        log.info("OIDC authorization request refused back to the client: %s (%s)", decision.error,
                 decision.description)
        return _redirect(redirect_with(decision.redirect_uri, [
            ("error", decision.error),
            ("error_description", decision.description),
            ("state", decision.state),
            ("iss", issuer),
        ]))
    target = OidcTarget(
        client_id=decision.client.client_id,
        redirect_uri=decision.redirect_uri,
        state=decision.state,
        nonce=decision.nonce,
        scope=decision.scope,
        code_challenge=decision.code_challenge,
        issuer=issuer,
    )
    pending = PendingSignin(target=target, relying_party=target.client_id, action=AUTHORIZE_PATH)
    flow = request.app[BROWSER_RUNTIME].pending.start(pending)
    log.info("OIDC sign-in for client %s begins", target.client_id)
    page = login_page(action=AUTHORIZE_PATH, flow=flow, idp_name=OIDC_IDP_NAME, relying_party=target.client_id,
                      username=decision.login_hint, can_cancel=True, redirects_to=target.redirect_uri)
    return html_response(page)


async def _signed_in(request: web.Request, target: OidcTarget, user: SimUser, mfa: bool) -> web.StreamResponse:
    """The login (and code) were right: a single-use code back to the client (RFC 6749 4.1.2, RFC 9207)."""
    runtime = request.app[OIDC_RUNTIME]
    code = runtime.store.issue_code(CodeGrant(
        client_id=target.client_id,
        redirect_uri=target.redirect_uri,
        code_challenge=target.code_challenge,
        nonce=target.nonce,
        user_upn=user.upn,
        scope=target.scope,
        auth_time=datetime.now(UTC),
        mfa=mfa,
        issuer=target.issuer,
    ))
    _count(request, "oidc.code_issued")
    log.info("OIDC sign-in: %s signed in to client %s (mfa=%s)", user.upn, target.client_id, mfa)
    return _redirect(redirect_with(target.redirect_uri, [("code", code), ("state", target.state),
                                                         ("iss", target.issuer)]))


async def _cancelled(request: web.Request, target: OidcTarget) -> web.StreamResponse:
    _count(request, "oidc.cancelled")
    log.info("OIDC sign-in for client %s cancelled by the user", target.client_id)
    return _redirect(redirect_with(target.redirect_uri, [
        ("error", "access_denied"),
        ("error_description", CANCELLED_DESCRIPTION),
        ("state", target.state),
        ("iss", target.issuer),
    ]))


# --------------------------------------------------------------------------- token endpoint


async def _token(request: web.Request) -> web.StreamResponse:
    runtime = request.app[OIDC_RUNTIME]
    state = request.app[SIM_STATE]
    if request.content_type != FORM_CONTENT_TYPE:
        return _error(request, oauth_error("invalid_request", f"the body must be {FORM_CONTENT_TYPE}"))
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(request, oauth_error("invalid_request", "the request is too large"))
    params = parse_form(body)
    if isinstance(params, OAuthErrorAnswer):
        return _error(request, params)
    grant_type = params.get("grant_type", "")
    if grant_type == GRANT_AUTHORIZATION_CODE:
        _count(request, "oidc.token.code")
    elif grant_type == GRANT_PASSWORD:
        _count(request, "oidc.token.password")
    issuer = issuer_for(request)
    scheme = "https" if request.secure else "http"
    context = TokenContext(
        settings=runtime.settings,
        directory=runtime.directory,
        store=runtime.store,
        issuer=issuer,
        token_endpoint=f"{scheme}://{request.host}{TOKEN_PATH}",
        lifetime_seconds=int(runtime.directory.token_lifetime.total_seconds()),
        dialect=state.oidc_dialect,
        refusal=state.oidc_refusal,
        now=datetime.now(UTC),
    )
    outcome = token_request(params, request.headers.get("Authorization"), context)
    if isinstance(outcome, OAuthErrorAnswer):
        return _error(request, outcome)
    answer: dict[str, object] = {
        "access_token": outcome.access_token,
        "token_type": "Bearer",
        "expires_in": outcome.expires_in,
        "scope": outcome.scope,
    }
    if outcome.id_token is not None:
        answer["id_token"] = await _signed_id_token(request, outcome)
    log.info("OIDC %s grant: tokens issued for %s to client %s", outcome.grant_type, outcome.user.upn,
             outcome.client.client_id)
    return _json(json.dumps(answer))


async def _signed_id_token(request: web.Request, outcome: Issuance) -> str:
    runtime = request.app[OIDC_RUNTIME]
    state = request.app[SIM_STATE]
    order = outcome.id_token
    assert order is not None
    mischief = state.oidc_mischief
    other = _other_user(runtime.directory, outcome.user, state.mischief_subject) \
        if mischief is OidcMischief.OTHER_USER else None
    # Signing (and, for unknown_key, generating a key) is CPU work: off the event loop.
    token = await asyncio.to_thread(issue_id_token, order, runtime.keys, now=datetime.now(UTC),
                                    mischief=mischief, other_user=other)
    _count(request, "oidc.issued")
    if mischief is not None:
        _count(request, f"oidc.mischief.{mischief.value}")
        log.info("OIDC ID token for %s issued with mischief %s", outcome.user.upn, mischief.value)
    return token


def _other_user(directory: SimConfig, user: SimUser, preferred: str) -> SimUser | None:
    """Another user of the file: ``mischief_subject`` when it is one, else the first other."""
    chosen = directory.find_user(preferred)
    if chosen is not None and chosen.upn != user.upn:
        return chosen
    return next((u for u in directory.users if u.upn != user.upn), None)


# --------------------------------------------------------------------------- userinfo


def _bearer_refusal(request: web.Request, status: int, error: str | None, description: str) -> web.Response:
    """RFC 6750 section 3: the challenge names the error only when a token was presented."""
    _count(request, "oidc.userinfo.refused")
    challenge = BEARER_REALM if error is None else f'{BEARER_REALM}, error="{error}", error_description="{description}"'
    body = {"error": error or "invalid_request", "error_description": description}
    return _json(json.dumps(body), status, {"WWW-Authenticate": challenge})


async def _userinfo(request: web.Request) -> web.StreamResponse:
    runtime = request.app[OIDC_RUNTIME]
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    token = value.strip() if scheme.lower() == "bearer" else ""
    if request.method == "POST" and request.content_type == FORM_CONTENT_TYPE:
        form = await read_form(request)
        if "access_token" in form:
            if token:
                # RFC 6750 section 2: a client MUST NOT use more than one method.
                return _bearer_refusal(request, 400, "invalid_request", "more than one token presentation method")
            token = form["access_token"]
    if not token:
        return _bearer_refusal(request, 401, None, "no access token")
    grant = runtime.store.access_grant(token)
    if grant is None:
        return _bearer_refusal(request, 401, "invalid_token", "the access token is not valid")
    scopes = granted_scopes(grant.scope)
    if SCOPE_OPENID not in scopes:
        return _bearer_refusal(request, 403, "insufficient_scope", "the access token was not issued for openid")
    user = runtime.directory.find_user(grant.user_upn)
    if user is None or not user.enabled:
        return _bearer_refusal(request, 401, "invalid_token", "the user can no longer sign in")
    return _json(userinfo_json(user, scopes))
