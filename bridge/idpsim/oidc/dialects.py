"""Error answers of the token endpoint (RFC 6749 section 5.2), and how Entra, Keycloak and Okta word them.

A relying party that classifies a refused password grant (wrong password,
disabled, locked, MFA wanted) must be trained on the answers real products
give, not on one tidy invention: the same refusal is a 401 at Keycloak and a
400 at Entra and Okta; Entra adds ``error_codes`` (the AADSTS number), trace
ids and a ``suberror``; Okta does not tell a disabled account from a wrong
password.  Pure: values in, :class:`OAuthErrorAnswer` out.
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.idpsim.state import OidcDialect, OidcRefusal

ENTRA_ERROR_URI = "https://login.microsoftonline.com/error?code="
# The resource Entra names in its MFA messages when a client asks for openid/profile/email: Microsoft Graph.
ENTRA_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


class PasswordRefusal(enum.Enum):
    """Why a password grant is refused, before it is put into a product's words."""

    CREDENTIALS = "credentials"  # wrong password or unknown user
    DISABLED = "disabled"
    MFA_REQUIRED = "mfa_required"  # the user's password_logins: mfa_required; no second factor enrolled
    MFA_REQUIRED_ENROLLED = "mfa_required_enrolled"  # the same, for a user with a TOTP enrolled
    LOCKED = "locked"
    CA_BLOCKED = "ca_blocked"
    NOT_SET_UP = "not_set_up"
    MFA_ENROLMENT = "mfa_enrolment"  # the oidc_refusal mfa_required: Entra's "register for MFA"

    @classmethod
    def forced(cls, refusal: OidcRefusal) -> PasswordRefusal:
        return {
            OidcRefusal.LOCKED: cls.LOCKED,
            OidcRefusal.CA_BLOCKED: cls.CA_BLOCKED,
            OidcRefusal.NOT_SET_UP: cls.NOT_SET_UP,
            OidcRefusal.MFA_REQUIRED: cls.MFA_ENROLMENT,
        }[refusal]


@dataclass(frozen=True, kw_only=True, slots=True)
class OAuthErrorAnswer:
    """An error answer of the token (or userinfo) endpoint."""

    status: int
    error: str
    description: str
    entra_code: int | None = None  # Entra's AADSTS number: adds its error_codes, trace ids and error_uri
    suberror: str | None = None
    www_authenticate: str | None = None

    def body(self, *, now: datetime | None = None) -> str:
        """The JSON body; Entra's carries fresh trace and correlation ids, as every Entra answer does."""
        if self.entra_code is None:
            return json.dumps({"error": self.error, "error_description": self.description})
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        timestamp = moment.strftime("%Y-%m-%d %H:%M:%SZ")
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        description = (
            f"AADSTS{self.entra_code}: {self.description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {timestamp}"
        )
        body: dict[str, object] = {
            "error": self.error,
            "error_description": description,
            "error_codes": [self.entra_code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{ENTRA_ERROR_URI}{self.entra_code}",
        }
        if self.suberror is not None:
            body["suberror"] = self.suberror
        return json.dumps(body)


def oauth_error(error: str, description: str, *, status: int = 400,
                www_authenticate: str | None = None) -> OAuthErrorAnswer:
    """A plain RFC 6749 section 5.2 answer (the same at every product)."""
    return OAuthErrorAnswer(status=status, error=error, description=description, www_authenticate=www_authenticate)


_ENTRA_MFA = (
    "Due to a configuration change made by your administrator, or because you moved to a new location, "
    "you must use multi-factor authentication to access '{resource}'."
)
_ENTRA_ENROL = (
    "Due to a configuration change made by your administrator, or because you moved to a new location, "
    "you must enroll in multi-factor authentication to access '{resource}'."
)
_ENTRA: dict[PasswordRefusal, tuple[int, str, str | None]] = {
    PasswordRefusal.CREDENTIALS: (50126, "Error validating credentials due to invalid username or password.", None),
    PasswordRefusal.DISABLED: (50057, "The user account is disabled.", None),
    PasswordRefusal.MFA_REQUIRED: (50076, _ENTRA_MFA, "basic_action"),
    PasswordRefusal.MFA_REQUIRED_ENROLLED: (50076, _ENTRA_MFA, "basic_action"),
    PasswordRefusal.LOCKED: (
        50053,
        "The account is locked, you've tried to sign in too many times with an incorrect user ID or password.",
        None,
    ),
    PasswordRefusal.CA_BLOCKED: (
        53003,
        "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        None,
    ),
    PasswordRefusal.NOT_SET_UP: (50079, _ENTRA_ENROL, "basic_action"),
    PasswordRefusal.MFA_ENROLMENT: (50079, _ENTRA_ENROL, "basic_action"),
}

_KC_CREDENTIALS = (401, "invalid_grant", "Invalid user credentials")
_KC_NOT_SET_UP = (400, "invalid_grant", "Account is not fully set up")
_KEYCLOAK: dict[PasswordRefusal, tuple[int, str, str]] = {
    PasswordRefusal.CREDENTIALS: _KC_CREDENTIALS,
    PasswordRefusal.DISABLED: (400, "invalid_grant", "Account disabled"),
    # A policy wanting a second factor from a user with none enrolled is a pending CONFIGURE_TOTP action;
    # one with an OTP enrolled fails the direct grant's OTP step, which Keycloak words as bad credentials.
    PasswordRefusal.MFA_REQUIRED: _KC_NOT_SET_UP,
    PasswordRefusal.MFA_REQUIRED_ENROLLED: _KC_CREDENTIALS,
    PasswordRefusal.LOCKED: (400, "invalid_grant", "Account temporarily disabled"),
    PasswordRefusal.CA_BLOCKED: (400, "access_denied", "Access denied"),
    PasswordRefusal.NOT_SET_UP: _KC_NOT_SET_UP,
    PasswordRefusal.MFA_ENROLMENT: _KC_NOT_SET_UP,
}

_OKTA_CREDENTIALS = (400, "invalid_grant", "The credentials provided were invalid.")
_OKTA_POLICY = (
    400, "access_denied", "Policy evaluation failed for this request, please check the policy configurations."
)
_OKTA: dict[PasswordRefusal, tuple[int, str, str]] = {
    # Okta words every account problem as bad credentials: it does not reveal a disabled or locked account.
    PasswordRefusal.CREDENTIALS: _OKTA_CREDENTIALS,
    PasswordRefusal.DISABLED: _OKTA_CREDENTIALS,
    PasswordRefusal.LOCKED: _OKTA_CREDENTIALS,
    PasswordRefusal.NOT_SET_UP: _OKTA_CREDENTIALS,
    # A sign-on or access policy that wants more than a password fails the policy evaluation.
    PasswordRefusal.MFA_REQUIRED: _OKTA_POLICY,
    PasswordRefusal.MFA_REQUIRED_ENROLLED: _OKTA_POLICY,
    PasswordRefusal.MFA_ENROLMENT: _OKTA_POLICY,
    PasswordRefusal.CA_BLOCKED: _OKTA_POLICY,
}


def password_refusal(dialect: OidcDialect, refusal: PasswordRefusal) -> OAuthErrorAnswer:
    """The token endpoint's answer to a refused password grant, in ``dialect``'s words."""
    if dialect is OidcDialect.ENTRA:
        code, text, suberror = _ENTRA[refusal]
        return OAuthErrorAnswer(
            status=400,
            error="invalid_grant",
            description=text.format(resource=ENTRA_GRAPH_APP_ID),
            entra_code=code,
            suberror=suberror,
        )
    status, error, text = (_KEYCLOAK if dialect is OidcDialect.KEYCLOAK else _OKTA)[refusal]
    return OAuthErrorAnswer(status=status, error=error, description=text)
