"""Request and tenant ids on every log record, added by a filter.

Handlers set the ids in context variables once (the middleware sets the
request id, the login path sets the tenant id); :class:`ContextFilter` copies
them onto each record so that no call site formats them by hand.
"""

from __future__ import annotations

import contextvars
import logging

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
tenant_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("tenant_id", default="-")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s tenant=%(tenant_id)s] %(message)s"


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``tenant_id`` attributes to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.tenant_id = tenant_id_var.get()
        return True


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once for the service process."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log would print the Authorization-free request line only;
    # keep it but at the configured level.
    logging.getLogger("aiohttp.access").setLevel(level.upper())
