"""The browser pages of phone pairing and web sign-in: ``/pair``, the IdP's return, ``/v1/web/login``.

A phone opens ``/pair`` (the code the device shows, or its QR code), sees which device,
where and for which company it is about to approve, and is sent to the tenant's IdP; the
IdP posts its answer to ``/saml/{tenant}/acs`` or ``/wsfed/{tenant}`` (an OpenID Connect provider
redirects it to ``/oidc/{tenant}/callback``), and the browser
that approved finishes at ``/signin/done``.  The logic is the login core's
(:mod:`bridge.login.pairing`); these handlers only read forms, set cookies and render.
"""

from __future__ import annotations

from bridge.websignin.pages import mount_web_signin

__all__ = ["mount_web_signin"]
