"""A SAML 2.0 ECP IdP inside the simulator, speaking ECP the way Shibboleth does.

Built on pysaml2's own IdP (``saml2.server.Server``); shares the simulator's
users, token-signing key and counters with the AD FS side.  Mount it with
:func:`bridge.idpsim.ecp.routes.mount_ecp` (the
simulator's app does); this package re-exports only the settings, which the
simulator's config module reads.
"""

from bridge.idpsim.ecp.settings import (
    AuthFailureMode,
    EcpControls,
    EcpMischief,
    EcpSettings,
    EncryptionAlgorithm,
    parse_ecp_settings,
)

__all__ = [
    "AuthFailureMode",
    "EcpControls",
    "EcpMischief",
    "EcpSettings",
    "EncryptionAlgorithm",
    "parse_ecp_settings",
]
