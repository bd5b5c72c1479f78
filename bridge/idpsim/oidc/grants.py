"""The token endpoint's logic: client authentication, then the authorization_code or password grant.

No aiohttp here: the form's pairs and the Authorization header in, either an
:class:`OAuthErrorAnswer` or an :class:`Issuance` (what to sign and answer)
out.  Signing happens after, off the event loop, in the routes.

Client authentication follows the client's registered ``auth_method`` only
(OIDC Core section 9): ``client_secret_basic`` (RFC 6749 section 2.3.1, the id
and secret form-urlencoded before base64), ``client_secret_post``,
``private_key_jwt`` (RFC 7523 sections 2.2 and 3) or ``none``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, unquote_plus

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from bridge.idpsim.config import SimConfig, SimUser
from bridge.idpsim.oidc.authorize import CODE_CHALLENGE
from bridge.idpsim.oidc.dialects import OAuthErrorAnswer, PasswordRefusal, oauth_error, password_refusal
from bridge.idpsim.oidc.settings import ClientAuthMethod, OidcClient, OidcSettings
from bridge.idpsim.oidc.store import CodeGrant, OidcStore, Redemption
from bridge.idpsim.oidc.tokens import SCOPE_OPENID, IdTokenOrder, granted_scopes
from bridge.idpsim.state import OidcDialect, OidcRefusal

log = logging.getLogger(__name__)

JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
MAX_ASSERTION_MEMORY_SECONDS = 86_400.0
BASIC_CHALLENGE = 'Basic realm="idp-sim oidc"'
GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_PASSWORD = "password"  # noqa: S105 - a grant type's name


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenContext:
    """What one token request is judged against."""

    settings: OidcSettings
    directory: SimConfig
    store: OidcStore
    issuer: str
    token_endpoint: str  # as this request reached the simulator: an accepted private_key_jwt audience
    lifetime_seconds: int
    dialect: OidcDialect
    refusal: OidcRefusal | None
    now: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class Issuance:
    """A granted token request: the access token is stored; the ID token is still to be signed."""

    client: OidcClient
    user: SimUser
    grant_type: str
    access_token: str
    scope: str
    expires_in: int
    id_token: IdTokenOrder | None


def parse_form(body: bytes) -> dict[str, str] | OAuthErrorAnswer:
    """The token request's parameters; each at most once (RFC 6749 section 3.2)."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError):
        return oauth_error("invalid_request", "the body is not application/x-www-form-urlencoded UTF-8")
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            return oauth_error("invalid_request", f"parameter {name} is repeated")
        params[name] = value
    return params


def token_request(params: dict[str, str], authorization: str | None,
                  context: TokenContext) -> Issuance | OAuthErrorAnswer:
    """Authenticate the client, then run its grant."""
    client = authenticate_client(params, authorization, context)
    if isinstance(client, OAuthErrorAnswer):
        return client
    grant_type = params.get("grant_type")
    if not grant_type:
        return oauth_error("invalid_request", "grant_type is missing")
    if grant_type == GRANT_AUTHORIZATION_CODE:
        return _code_grant(client, params, context)
    if grant_type == GRANT_PASSWORD:
        return _password_grant(client, params, context)
    return oauth_error("unsupported_grant_type", f"grant_type {grant_type} is not supported")


# --------------------------------------------------------------------------- client authentication


def _invalid_client(description: str, *, basic: bool) -> OAuthErrorAnswer:
    # RFC 6749 5.2: 401, and a WWW-Authenticate of the scheme the client used when that was Basic.
    return oauth_error("invalid_client", description, status=401,
                       www_authenticate=BASIC_CHALLENGE if basic else None)


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """RFC 6749 2.3.1: base64 of form-urlencoded id ":" form-urlencoded secret; None if not Basic or unreadable."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if ":" not in decoded:
        return None
    raw_id, raw_secret = decoded.split(":", 1)
    return unquote_plus(raw_id), unquote_plus(raw_secret)


def authenticate_client(params: dict[str, str], authorization: str | None,
                        context: TokenContext) -> OidcClient | OAuthErrorAnswer:
    """The client, authenticated by the one method it registered; else invalid_client (or invalid_request)."""
    uses_basic = authorization is not None and authorization.strip().lower().startswith("basic")
    assertion = params.get("client_assertion")
    used: ClientAuthMethod
    if uses_basic:
        if "client_secret" in params or assertion is not None:
            return oauth_error("invalid_request", "more than one client authentication method was used")
        credentials = basic_credentials(authorization)
        if credentials is None:
            return _invalid_client("the Authorization header could not be read", basic=True)
        client_id, secret = credentials
        used = ClientAuthMethod.CLIENT_SECRET_BASIC
    elif assertion is not None:
        if "client_secret" in params:
            return oauth_error("invalid_request", "more than one client authentication method was used")
        if params.get("client_assertion_type") != JWT_BEARER_ASSERTION:
            return _invalid_client("client_assertion_type must be " + JWT_BEARER_ASSERTION, basic=False)
        client_id = _assertion_issuer(assertion) or ""
        secret = ""
        used = ClientAuthMethod.PRIVATE_KEY_JWT
    elif "client_secret" in params:
        client_id, secret = params.get("client_id", ""), params["client_secret"]
        used = ClientAuthMethod.CLIENT_SECRET_POST
    else:
        client_id, secret = params.get("client_id", ""), ""
        used = ClientAuthMethod.NONE
    if not client_id:
        return _invalid_client("no client authentication", basic=uses_basic)
    if "client_id" in params and params["client_id"] != client_id:
        return _invalid_client("client_id does not match the client's credentials", basic=uses_basic)
    client = context.settings.client(client_id)
    if client is None:
        log.info("token request from unknown client %s", client_id)
        return _invalid_client("unknown client", basic=uses_basic)
    if used is not client.auth_method:
        log.info("client %s used %s, registered %s", client_id, used.value, client.auth_method.value)
        return _invalid_client(f"this client authenticates with {client.auth_method.value}", basic=uses_basic)
    if used in (ClientAuthMethod.CLIENT_SECRET_BASIC, ClientAuthMethod.CLIENT_SECRET_POST):
        expected = (client.client_secret or "").encode("utf-8")
        if not hmac.compare_digest(expected, secret.encode("utf-8")):
            log.info("wrong client secret from %s", client_id)
            return _invalid_client("client authentication failed", basic=uses_basic)
    elif used is ClientAuthMethod.PRIVATE_KEY_JWT:
        problem = _check_assertion(client, assertion or "", context)
        if problem is not None:
            log.info("client assertion of %s refused: %s", client_id, problem)
            return _invalid_client(f"client assertion refused: {problem}", basic=False)
    return client


def _assertion_issuer(assertion: str) -> str | None:
    """The unverified ``iss`` of a client assertion, to find the client whose key verifies it."""
    try:
        payload = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None


def client_public_keys(client: OidcClient) -> KeySet | RSAKey | ECKey:
    """The client's registered verification key(s); ValueError when they cannot be imported."""
    if client.jwks_json is not None:
        return KeySet.import_key_set(json.loads(client.jwks_json))
    pem = client.public_key_pem or b""
    if b"CERTIFICATE" in pem:
        pem = x509.load_pem_x509_certificate(pem).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    public = serialization.load_pem_public_key(pem)
    if isinstance(public, rsa.RSAPublicKey):
        return RSAKey.import_key(pem)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return ECKey.import_key(pem)
    raise ValueError("the client's key is neither RSA nor EC")


def _check_assertion(client: OidcClient, assertion: str, context: TokenContext) -> str | None:
    """RFC 7523 section 3 for a client assertion; None when good, else what is wrong."""
    try:
        keys = client_public_keys(client)
        token = jwt.decode(assertion, keys, algorithms=list(ASSERTION_ALGORITHMS))
    except (JoseError, ValueError, TypeError) as exc:
        return f"signature or format ({type(exc).__name__})"
    claims = token.claims
    if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
        return "iss and sub must both be the client_id"
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    accepted = {context.token_endpoint, context.issuer, context.issuer + "/token"}
    if not any(isinstance(a, str) and a in accepted for a in audiences):
        return "aud must be the token endpoint or the issuer"
    now = context.now.timestamp()
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float) or exp <= now:
        return "exp is missing or in the past"
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and not isinstance(nbf, bool) and nbf > now + 60:
        return "nbf is in the future"
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        return "jti is missing"
    remember = min(float(exp) - now, MAX_ASSERTION_MEMORY_SECONDS)
    if not context.store.first_use_of_jti(client.client_id, jti, context.store.clock() + remember):
        return "jti was used before"
    return None


# --------------------------------------------------------------------------- grants


def _issue(client: OidcClient, user: SimUser, *, grant_type: str, scope: str, nonce: str | None,
           auth_time: datetime, mfa: bool, code: str | None, issuer: str, context: TokenContext) -> Issuance:
    scopes = granted_scopes(scope)
    access_token = context.store.issue_access_token(
        client_id=client.client_id, user_upn=user.upn, scope=" ".join(scopes),
        lifetime=float(context.lifetime_seconds), code=code,
    )
    order = None
    if SCOPE_OPENID in scopes:
        order = IdTokenOrder(
            issuer=issuer,
            client_id=client.client_id,
            user=user,
            scopes=scopes,
            auth_time=auth_time,
            mfa=mfa,
            nonce=nonce,
            access_token=access_token,
            lifetime=_seconds(context.lifetime_seconds),
            include_email=client.id_token_email,
            algorithm=client.id_token_signed_response_alg or context.settings.signing_algorithm,
        )
    return Issuance(client=client, user=user, grant_type=grant_type, access_token=access_token,
                    scope=" ".join(scopes), expires_in=context.lifetime_seconds, id_token=order)


def s256_challenge(verifier: str) -> str:
    """RFC 7636 section 4.2: BASE64URL(SHA256(ASCII(code_verifier))), unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _seconds(value: int) -> timedelta:
    return timedelta(seconds=value)


def _code_grant(client: OidcClient, params: dict[str, str], context: TokenContext) -> Issuance | OAuthErrorAnswer:
    code = params.get("code")
    if not code:
        return oauth_error("invalid_request", "code is missing")
    redeemed = context.store.redeem_code(code)
    if redeemed is Redemption.REUSED:
        log.info("authorization code of %s used again: tokens of its first use revoked", client.client_id)
        return oauth_error("invalid_grant", "the code was already used")
    if redeemed is Redemption.EXPIRED:
        return oauth_error("invalid_grant", "the code has expired")
    if isinstance(redeemed, Redemption):
        return oauth_error("invalid_grant", "the code is not valid")
    grant: CodeGrant = redeemed
    if grant.client_id != client.client_id:
        return oauth_error("invalid_grant", "the code was issued to another client")
    if params.get("redirect_uri") != grant.redirect_uri:
        # RFC 6749 4.1.3: required, and identical to the authorization request's.
        return oauth_error("invalid_grant", "redirect_uri does not match the authorization request")
    verifier = params.get("code_verifier")
    if grant.code_challenge is not None:
        if verifier is None or not CODE_CHALLENGE.match(verifier):
            return oauth_error("invalid_grant", "code_verifier is missing or malformed")
        computed = s256_challenge(verifier)
        if not hmac.compare_digest(computed.encode("ascii"), grant.code_challenge.encode("ascii")):
            return oauth_error("invalid_grant", "code_verifier does not match the code_challenge")
    elif verifier is not None:
        return oauth_error("invalid_grant", "code_verifier sent for a code issued without code_challenge")
    user = context.directory.find_user(grant.user_upn)
    if user is None or not user.enabled:
        return oauth_error("invalid_grant", "the user can no longer sign in")
    return _issue(client, user, grant_type=GRANT_AUTHORIZATION_CODE, scope=grant.scope, nonce=grant.nonce,
                  auth_time=grant.auth_time, mfa=grant.mfa, code=code, issuer=grant.issuer, context=context)


def _password_grant(client: OidcClient, params: dict[str, str],
                    context: TokenContext) -> Issuance | OAuthErrorAnswer:
    if not client.password_grant:
        return oauth_error("unauthorized_client", "this client may not use the password grant")
    username, password = params.get("username"), params.get("password")
    if not username or password is None:
        return oauth_error("invalid_request", "username and password are required")
    if context.refusal is not None:
        log.info("password grant for %s refused by the oidc_refusal control (%s)", username, context.refusal.value)
        return password_refusal(context.dialect, PasswordRefusal.forced(context.refusal))
    user = context.directory.authenticate(username, password)
    if user is None:
        log.info("password grant: wrong password or unknown user %s", username)
        return password_refusal(context.dialect, PasswordRefusal.CREDENTIALS)
    if not user.enabled:
        log.info("password grant refused for disabled user %s", user.upn)
        return password_refusal(context.dialect, PasswordRefusal.DISABLED)
    if user.password_logins_need_mfa:
        log.info("password grant refused for %s: its policy requires MFA", user.upn)
        enrolled = user.totp() is not None
        return password_refusal(
            context.dialect, PasswordRefusal.MFA_REQUIRED_ENROLLED if enrolled else PasswordRefusal.MFA_REQUIRED
        )
    return _issue(client, user, grant_type=GRANT_PASSWORD, scope=params.get("scope", ""), nonce=None,
                  auth_time=context.now, mfa=False, code=None, issuer=context.issuer, context=context)

