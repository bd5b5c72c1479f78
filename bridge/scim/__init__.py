"""SCIM 2.0 provisioning (RFC 7643/7644) per tenant at /scim/v2/{tenant}/ (bearer SCIM tokens).

:mod:`bridge.scim.http` mounts it on the device API (``mount_scim``); :mod:`bridge.scim.resources` says
what is served and how it maps to the accounts; :mod:`bridge.scim.storage` reads and writes them; the
protocol itself is scim2-server's and scim2-models'. ``loginbridge scim token ...``:
:mod:`bridge.scim.commands` (light: the CLI imports it at start).
"""

PREFIX = "/scim/v2"
