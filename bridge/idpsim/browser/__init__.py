"""Browser sign-in at the simulator: SAML 2.0 Web Browser SSO and WS-Federation passive.

A password typed at a device cannot satisfy an IdP's MFA; a browser on the
user's phone can.  This package plays the IdP side of that browser trip, over
the real protocols, so the bridge's phone pairing can be exercised without a
customer's IdP:

- SAML 2.0 Web Browser SSO (saml-profiles 4.1) at Shibboleth's paths, with the
  AuthnRequest by HTTP-Redirect or HTTP-POST and the Response by HTTP-POST,
  built by the ECP IdP's pysaml2 machinery (:class:`bridge.idpsim.ecp.idp.EcpIdp`);
- WS-Federation passive ``wsignin1.0`` at AD FS's ``/adfs/ls/``, answering a
  ``wresult`` that holds the same signed SAML 1.1 token the WS-Trust endpoints issue.

Both go through one login page (user name and password, then a TOTP code for
users marked ``mfa: totp``).  Mount it with :func:`bridge.idpsim.browser.routes.mount_browser`.
"""
