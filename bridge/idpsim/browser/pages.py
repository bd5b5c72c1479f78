"""The HTML pages of the simulator's browser sign-in: login, one-time code, auto-post, error.

Pure: values in, a :class:`Page` out.  Everything shown is escaped, since the
relying party's name and the user name come from the request.  The pages use
no external assets (a phone on a guest network may reach nothing else) and fit
a 390 px wide screen.  Each page carries its own Content-Security-Policy: the
only script allowed is the auto-post one, by its hash.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

FLOW_FIELD = "flow"
USERNAME_FIELD = "username"
PASSWORD_FIELD = "password"  # noqa: S105 - a form field name
OTP_FIELD = "otp"
ACTION_FIELD = "action"
ACTION_SIGN_IN = "signin"
ACTION_CANCEL = "cancel"

WRONG_PASSWORD = "Incorrect user ID or password."  # noqa: S105 - the message shown, no secret
ACCOUNT_DISABLED = "Your account is disabled."
WRONG_OTP = "The code is not correct. Try again with the current code from your authenticator app."

_AUTOPOST_SCRIPT = 'document.getElementById("autopost").submit();'
_STYLE = (
    "*{box-sizing:border-box}"
    "body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;"
    "background:#f2f2f2;color:#1b1b1b;font-size:16px}"
    "main{max-width:26rem;margin:0 auto;padding:1.5rem 1rem}"
    ".card{background:#fff;border-radius:6px;padding:1.25rem;box-shadow:0 1px 3px rgba(0,0,0,.15)}"
    ".idp{font-size:.85rem;color:#555;margin:0 0 .5rem}"
    "h1{font-size:1.4rem;margin:0 0 .75rem}"
    ".rp{margin:0 0 1rem;word-break:break-all}"
    "label{display:block;margin:.75rem 0 .25rem;font-weight:600}"
    "input[type=text],input[type=password],input[type=email]{width:100%;padding:.6rem;font-size:1rem;"
    "border:1px solid #888;border-radius:4px}"
    ".buttons{display:flex;gap:.5rem;margin-top:1.25rem;flex-wrap:wrap}"
    "button{flex:1 1 8rem;padding:.7rem;font-size:1rem;border-radius:4px;border:1px solid #0b5cad;"
    "background:#0b5cad;color:#fff}"
    "button.secondary{background:#fff;color:#0b5cad}"
    ".error{color:#a4000f;background:#fde7e9;padding:.6rem;border-radius:4px;margin:0 0 .75rem}"
    ".hint{font-size:.9rem;color:#555}"
)
_BASE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"


@dataclass(frozen=True, kw_only=True, slots=True)
class Page:
    """An HTML page and the Content-Security-Policy it was written for."""

    html: str
    csp: str


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _document(*, title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def _header(idp_name: str, relying_party: str | None) -> str:
    parts = [f'<p class="idp">{_e(idp_name)}</p>', "<h1>Sign in</h1>"]
    if relying_party:
        parts.append(f'<p class="rp">to continue to <strong>{_e(relying_party)}</strong></p>')
    return "".join(parts)


def _error_line(error: str | None) -> str:
    return "" if not error else f'<p class="error" role="alert">{_e(error)}</p>'


def _buttons(submit: str, *, can_cancel: bool) -> str:
    cancel = (
        f'<button class="secondary" type="submit" name="{ACTION_FIELD}" value="{ACTION_CANCEL}" '
        "formnovalidate>Cancel</button>"
        if can_cancel
        else ""
    )
    # The submit button comes first: Enter in a field presses the form's first button.
    return (
        f'<div class="buttons"><button type="submit" name="{ACTION_FIELD}" value="{ACTION_SIGN_IN}">'
        f"{_e(submit)}</button>{cancel}</div>"
    )


def login_page(
    *,
    action: str,
    flow: str,
    idp_name: str,
    relying_party: str,
    username: str = "",
    error: str | None = None,
    can_cancel: bool = True,
    redirects_to: str | None = None,
) -> Page:
    """The user name and password page (also shown again with ``error`` after a refusal).

    ``redirects_to``: where this form's answer may redirect the browser (an OpenID Connect client's
    redirect URI).  Browsers apply ``form-action`` to a form's redirects too, so that origin is allowed.
    """
    body = (
        '<div class="card">'
        + _header(idp_name, relying_party)
        + _error_line(error)
        + f'<form method="post" action="{_e(action)}" autocomplete="on">'
        f'<input type="hidden" name="{FLOW_FIELD}" value="{_e(flow)}">'
        f'<label for="username">User ID</label>'
        f'<input type="text" id="username" name="{USERNAME_FIELD}" value="{_e(username)}" '
        'autocomplete="username" autocapitalize="none" spellcheck="false" required '
        'placeholder="someone@example.com">'
        f'<label for="password">Password</label>'
        f'<input type="password" id="password" name="{PASSWORD_FIELD}" autocomplete="current-password" required>'
        + _buttons("Sign in", can_cancel=can_cancel)
        + "</form>"
        '<p class="hint">Sign in with your user principal name, e-mail address or account name.</p>'
        "</div>"
    )
    return Page(html=_document(title="Sign in", body=body), csp=_form_csp(redirects_to))


def _form_csp(redirects_to: str | None) -> str:
    """The CSP of a page whose form posts here, and whose answer may redirect to ``redirects_to``'s origin."""
    parts = urlsplit(redirects_to or "")
    extra = f" {parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""
    return f"{_BASE_CSP}; form-action 'self'{extra}"


def otp_page(
    *,
    action: str,
    flow: str,
    idp_name: str,
    relying_party: str,
    error: str | None = None,
    can_cancel: bool = True,
    redirects_to: str | None = None,
) -> Page:
    """The second factor: the six-digit code of the user's authenticator app (``redirects_to``: as login_page)."""
    body = (
        '<div class="card">'
        + _header(idp_name, relying_party)
        + _error_line(error)
        + f'<form method="post" action="{_e(action)}" autocomplete="off">'
        f'<input type="hidden" name="{FLOW_FIELD}" value="{_e(flow)}">'
        f'<label for="otp">Verification code</label>'
        f'<input type="text" id="otp" name="{OTP_FIELD}" inputmode="numeric" pattern="[0-9]{{6}}" maxlength="6" '
        'autocomplete="one-time-code" required placeholder="123456">'
        '<p class="hint">Enter the 6-digit code your authenticator app shows for this account.</p>'
        + _buttons("Verify", can_cancel=can_cancel)
        + "</form></div>"
    )
    return Page(html=_document(title="Sign in", body=body), csp=_form_csp(redirects_to))


def autopost_page(*, url: str, fields: Sequence[tuple[str, str]]) -> Page:
    """The page that carries the answer to the relying party: a form POSTed by a tiny script.

    The visible Continue button is what works when scripts are off (saml-bindings 3.5.5.1).
    """
    inputs = "".join(f'<input type="hidden" name="{_e(name)}" value="{_e(value)}">' for name, value in fields)
    body = (
        '<div class="card"><h1>Signing in</h1>'
        '<p class="hint">If nothing happens, press Continue.</p>'
        f'<form id="autopost" method="post" action="{_e(url)}">{inputs}'
        '<div class="buttons"><button type="submit">Continue</button></div></form></div>'
        f"<script>{_AUTOPOST_SCRIPT}</script>"
    )
    digest = base64.b64encode(hashlib.sha256(_AUTOPOST_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    parts = urlsplit(url)
    target = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "'none'"
    csp = f"{_BASE_CSP}; script-src 'sha256-{digest}'; form-action {target}"
    return Page(html=_document(title="Signing in", body=body), csp=csp)


def error_page(*, idp_name: str, message: str, detail: str | None = None) -> Page:
    """A dead end the user can read (an AD FS or Shibboleth error page), nothing to submit."""
    extra = "" if not detail else f'<p class="hint">Error details: {_e(detail)}</p>'
    body = (
        f'<div class="card"><p class="idp">{_e(idp_name)}</p><h1>An error occurred</h1>'
        f'<p class="error" role="alert">{_e(message)}</p>{extra}</div>'
    )
    return Page(html=_document(title="Sign in", body=body), csp=f"{_BASE_CSP}; form-action 'none'")
