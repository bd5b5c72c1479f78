"""HAProxy as a pytest fixture; the starter itself is :mod:`bridge.localservers.haproxy`.

Fixture (import it into a conftest): ``haproxy_factory`` (function) — call it with the
servers, as many times as needed; each HAProxy is killed at teardown.

The starter's names are re-exported here, so ``from tests.servers.haproxy import HAProxy``
keeps working.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import pytest

from bridge.localservers.haproxy import (
    BACKEND,
    FRONTEND,
    HAProxy,
    HAProxyError,
    HealthCheck,
    ServerStat,
    find_haproxy,
    free_port,
    render_config,
    run_haproxy,
)

__all__ = [
    "BACKEND", "FRONTEND", "HAProxy", "HAProxyError", "HAProxyFactory", "HealthCheck", "ServerStat", "find_haproxy",
    "free_port", "haproxy_factory", "render_config", "run_haproxy",
]

HAProxyFactory = Callable[..., HAProxy]


@pytest.fixture
def haproxy_factory() -> Iterator[HAProxyFactory]:
    """``haproxy_factory(servers, **run_haproxy_options) -> HAProxy``; all killed at teardown."""
    with ExitStack() as stack:

        def factory(servers: Mapping[str, int] | Sequence[int], **options: Any) -> HAProxy:
            return stack.enter_context(run_haproxy(servers, **options))

        yield factory
