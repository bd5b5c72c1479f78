"""The technician console at /console: tenants' IdP health, devices, login attempts, a test login.

Server-rendered (aiohttp-jinja2, autoescaped), no script, no external assets;
mounted as a sub-application of the bridge's app so it shares its store,
login service and audit log.  See :mod:`bridge.console.views`.
"""

from bridge.console.app import PREFIX, mount_console

__all__ = ["PREFIX", "mount_console"]
