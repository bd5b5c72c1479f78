"""Prometheus metrics of one bridge app, in a registry the app owns (not the global one).

Labels are only configuration-bound values (tenant id, mode, result code,
throttle kind): never an email, a device secret or anything a client typed,
so cardinality stays bounded and nothing personal leaves through /metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "BridgeMetrics"]

UNKNOWN_TENANT = "unknown"
# IdP round trips: tens of milliseconds on a LAN up to the client timeout.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)


class BridgeMetrics:
    """The counters and histograms the login path updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.logins = Counter(
            "loginbridge_logins", "Login attempts by tenant, mode and result code ('ok' on success).",
            ["tenant", "mode", "result"], registry=self.registry)
        self.idp_latency = Histogram(
            "loginbridge_idp_latency_seconds", "Time spent at the tenant's identity provider per password check.",
            ["tenant"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.throttle_hits = Counter(
            "loginbridge_throttle_hits", "Attempts refused by a throttle without contacting the IdP.",
            ["tenant", "kind"], registry=self.registry)
        self.stale_password_hits = Counter(
            "loginbridge_stale_password_hits", "Attempts refused locally: the IdP already rejected that password.",
            ["tenant"], registry=self.registry)
        self.spray_detections = Counter(
            "loginbridge_spray_detections", "Devices or sources blocked for trying many different users.",
            ["tenant"], registry=self.registry)

        # Label children by label values: ``labels()`` validates and locks on every call; the set of
        # values is bounded (configuration-bound labels), so each child is looked up once.
        self._login_children: dict[tuple[str, str, str], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}

    def count_login(self, *, tenant: str, mode: str, result: str) -> None:
        key = (tenant, mode, result)
        child = self._login_children.get(key)
        if child is None:
            child = self._login_children[key] = self.logins.labels(tenant=tenant, mode=mode, result=result)
        child.inc()

    def observe_idp_latency(self, *, tenant: str, seconds: float) -> None:
        child = self._latency_children.get(tenant)
        if child is None:
            child = self._latency_children[tenant] = self.idp_latency.labels(tenant=tenant)
        child.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
