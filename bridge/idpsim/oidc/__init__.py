"""The simulator's OpenID Provider: discovery, JWKS, authorization code flow with PKCE, token, userinfo.

It plays Entra ID, Okta or Keycloak for a relying party (the bridge's OIDC
client) over the real protocols: RFC 6749 and RFC 7636 for the code flow,
OpenID Connect Core 1.0 and Discovery 1.0, RFC 7517/7518 keys, RFC 7523
``private_key_jwt`` client authentication and RFC 9207's ``iss`` on the
redirect.  The browser step reuses the SAML/WS-Federation login and TOTP
pages (:mod:`bridge.idpsim.browser`).  The JOSE work is joserfc's.

Mount it with :func:`bridge.idpsim.oidc.routes.mount_oidc` (imported from
there, not here: the users file's parser imports :mod:`.settings`).
"""
