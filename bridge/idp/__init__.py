"""Talking to a tenant's IdP: whitelisted HTTP, assertion checks, and one package per protocol.

``wstrust`` (AD FS) and ``saml`` (ECP) never import each other; what both need
(``http``, ``allowlist``, ``assertion``, ``policy``) lives here.  May import
``bridge.xml`` and the ground modules; never ``bridge.state`` or the login core.
"""
