"""scim2-tester, the SCIM RFCs' conformance checker, against the live endpoint: no failure.

The checker fills resources with random values. Its ``userName`` values come from the field's
``examples`` (the checker's own hook for values a server constrains): fresh addresses in the
tenant's domain, because the bridge refuses a user that has no email address in one of the tenant's
domains (devices sign users in with it). Everything else is the checker's random data, sent over
real HTTP to the bridge on loopback.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterator, Sequence
from importlib.metadata import version
from typing import Any, overload

import pytest
import requests
from scim2_client import BaseSyncSCIMClient
from scim2_tester import Status, check_server

from tests.scim.conftest import ScimBridge


class RequestsSCIMClient(BaseSyncSCIMClient):
    """scim2-client over ``requests`` (the suite's HTTP client), for the checker."""

    def __init__(self, base_url: str, token: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        target = url if url.startswith("http") else self.base_url + "/" + url.lstrip("/")
        return self.session.request(method, target, timeout=30, **kwargs)


class FreshAddresses(Sequence[str]):
    """As many distinct addresses in the domain as the checker may draw (random.choice indexes them)."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self._serial = itertools.count()

    def __len__(self) -> int:
        return 2**40

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            raise TypeError("no slices")
        return f"tester-{index:x}-{next(self._serial)}@{self.domain}"

    def __iter__(self) -> Iterator[str]:  # never a full walk
        raise TypeError("not iterable")


def run_checker(base_url: str, token: str, domain: str) -> list[Any]:
    client = RequestsSCIMClient(base_url, token)
    client.discover()
    addresses = FreshAddresses(domain)
    models = [*client.provider.models, *(client.provider.model_for(rt) for rt in client.provider.resource_types)]
    for model in models:
        if isinstance(model, type) and "user_name" in getattr(model, "model_fields", {}):
            model.model_fields["user_name"].examples = addresses  # type: ignore[assignment]
    return check_server(client)


async def test_scim2_tester_finds_no_failure(scim: ScimBridge, capsys: pytest.CaptureFixture[str]) -> None:
    results = await asyncio.to_thread(run_checker, scim.base, scim.token, "example.com")
    counts = Counter(result.status.name for result in results)
    failures = [r for r in results if r.status in (Status.ERROR, Status.CRITICAL)]
    lines = [f"scim2-tester {version('scim2-tester')} summary: {len(results)} checks: "
             + ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))]
    lines += [f"  {r.status.name} {r.resource_type or '-'} {r.title}: {r.reason}" for r in results
              if r.status not in (Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE)]
    with capsys.disabled():  # in the test output whatever the capture mode
        print("\n" + "\n".join(lines))
    assert not failures, f"{len(failures)} scim2-tester failures"
    assert counts["SUCCESS"] > 50
