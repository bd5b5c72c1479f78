"""Three ``loginbridge serve`` instances on one configuration and one PostgreSQL, behind a real HAProxy.

Each instance is a real process (``serve --port``), the load balancer round-robins and health-checks
``/readyz``, the database is a throwaway PostgreSQL 15, the IdP is the simulator (in this process, over
loopback https). What one instance does, the others see: sessions and their revocation, accepted
assertion ids (a replayed token is refused by another instance), the audit trail; and when the
database goes away the service answers 503 and comes back by itself.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bridge.config import load_config
from bridge.demo import seed
from bridge.idpsim.config import SimConfig
from bridge.idpsim.server import RunningSimulator, run_simulator
from bridge.idpsim.state import Mischief
from bridge.state.store import Store
from tests.flows.conftest import DEMO_SEED, KNOWN_SECRETS, tenant_yaml
from tests.flows.oidc_support import DEVICE as NET_DEVICE
from tests.flows.oidc_support import (
    NINA,
    NINA_PASSWORD,
    oidc_sim_config,
    oidc_tenant_yaml,
    sign_in_at_provider,
    totp_secret,
)
from tests.flows.pairing_support import Browser, idp_sign_in
from tests.paths import REPO
from tests.servers.haproxy import HAProxy, haproxy_factory
from tests.servers.postgres import PgDatabase, pg_database, postgres_server

__all__ = ["haproxy_factory", "pg_database", "postgres_server"]  # the real-server fixtures, used by name

ALICE = ("alice@example.com", "alice-demo-pass")
MFP = ("demo-mfp", "demo-mfp-secret")
INSTANCES = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    lb: HAProxy
    ports: list[int]
    procs: list[subprocess.Popen[bytes]]
    db: PgDatabase
    sim: RunningSimulator
    http: aiohttp.ClientSession

    def instance(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    async def post(self, base: str, path: str, body: Any, auth: tuple[str, str] = MFP) -> tuple[int, Any]:
        KNOWN_SECRETS.add(auth[1])
        basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        async with self.http.post(base + path, json=body, headers={"Authorization": f"Basic {basic}"}) as resp:
            return resp.status, await resp.json(content_type=None) if resp.content_type == "application/json" else {}

    async def login(self, base: str | None = None, password: str = ALICE[1]) -> tuple[int, Any]:
        KNOWN_SECRETS.add(password)
        return await self.post(base or self.lb.url, "/v1/mfp/user-prompt", {"email": ALICE[0], "password": password})

    async def app_login(self, base: str, email: str, password: str) -> tuple[int, Any]:
        """``POST /v1/apps/login``: no device credential, so the throttles' actor is the source address."""
        KNOWN_SECRETS.add(password)
        async with self.http.post(base + "/v1/apps/login", json={"email": email, "password": password}) as resp:
            return resp.status, await resp.json(content_type=None)

    async def metric_total(self, name: str) -> float:
        """One counter summed over every instance (each exposes its own /metrics)."""
        total = 0.0
        for index in range(INSTANCES):
            async with self.http.get(self.instance(index) + "/metrics") as resp:
                text = await resp.text()
            total += sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))
        return total

    async def session(self, base: str, token: str, method: str = "GET") -> int:
        async with self.http.request(method, base + "/v1/session", headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status

    def trust_calls(self) -> int:
        return self.sim.state.counters["trust13"] + self.sim.state.counters["trust2005"]


async def stop_instances(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every instance still running, then wait (20 s each) or kill."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _wait_ready(url: str, proc: subprocess.Popen[bytes], within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if proc.poll() is not None:
                raise AssertionError(f"instance exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} not ready within {within} s")
            await asyncio.sleep(0.2)


@pytest.fixture
def lb_port() -> int:
    """The balancer's port, chosen first: the instances' public_url, and the OIDC callback the simulator allows."""
    return free_port()


@pytest.fixture
async def sim(sim_config: SimConfig, sim_keys_dir: Path, lb_port: int) -> AsyncIterator[RunningSimulator]:
    async with run_simulator(oidc_sim_config(sim_config, f"http://127.0.0.1:{lb_port}"), sim_keys_dir) as running:
        yield running


@pytest.fixture
async def cluster(request: pytest.FixtureRequest, tmp_path: Path, sim: RunningSimulator, pg_database: PgDatabase,
                  haproxy_factory: Any, lb_port: int) -> AsyncIterator[Cluster]:
    """The cluster; ``indirect`` parameters: ``{"throttle": {...}}`` for the tenant, ``{"users": [email, ...]}`` more
    users of tenant ``example`` (beside the demo's)."""
    options: dict[str, Any] = getattr(request, "param", {})
    conf = tmp_path / "conf"
    (conf / "tenants").mkdir(parents=True)
    state = tmp_path / "state"  # shared by the instances on this machine (hmac key, SP keys)
    main = {
        "public_url": f"http://127.0.0.1:{lb_port}",
        "listen": {"host": "127.0.0.1", "port": 8080},
        "state_dir": str(state),
        "secrets": {"hmac_key": {"file": str(state / "hmac.key"), "generate": True}},
        "idp_client": {"connect_timeout_seconds": 2, "timeout_seconds": 10},
        "store": {"url": pg_database.url},
    }
    (conf / "bridge.yaml").write_text(yaml.safe_dump(main))
    overrides = {"throttle": options["throttle"]} if "throttle" in options else {}
    (conf / "tenants" / "example.yaml").write_text(yaml.safe_dump(tenant_yaml(sim, **overrides)))
    (conf / "tenants" / "example-net.yaml").write_text(yaml.safe_dump(oidc_tenant_yaml(sim)))
    config = load_config(conf / "bridge.yaml")  # also generates the shared hmac key once
    async with await Store.open(config.store_url) as store:
        await seed(config, store, DEMO_SEED)
        for email in options.get("users", ()):
            await store.add_user(config.tenant("example"), email=email, username=email.split("@")[0])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LOGINBRIDGE_STORE_URL", None)
    ports = [free_port() for _ in range(INSTANCES)]
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []
    http = aiohttp.ClientSession()
    try:
        for index, port in enumerate(ports):
            log = open(tmp_path / f"instance-{index}.log", "wb")  # noqa: ASYNC230 (closed after the process)
            logs.append(log)
            procs.append(subprocess.Popen(  # noqa: ASYNC220 (the instances run beside this loop)
                [sys.executable, "-m", "bridge", "serve", "--config", str(conf / "bridge.yaml"), "--port", str(port)],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
            if index == 0:  # the first alone: it makes the SP keys the others read; then the others together
                await _wait_ready(f"http://127.0.0.1:{port}", procs[-1])
        await asyncio.gather(*(_wait_ready(f"http://127.0.0.1:{port}", proc) for port, proc in zip(ports, procs,
                                                                                                   strict=True)))
        lb = haproxy_factory({f"i{n}": port for n, port in enumerate(ports)}, port=lb_port)
        await lb.wait_until_up_async(INSTANCES, within=20)
        yield Cluster(lb=lb, ports=ports, procs=procs, db=pg_database, sim=sim, http=http)
    finally:
        await http.close()
        await stop_instances(procs)
        for log in logs:
            log.close()


async def test_sessions_are_shared_and_revoked_everywhere(cluster: Cluster) -> None:
    tokens = []
    for _ in range(INSTANCES):  # round robin: one login on each instance
        status, body = await cluster.login()
        assert status == 200, body
        tokens.append(body["session"]["token"])
    stats = cluster.lb.stats()
    assert sorted(stat.sessions_total for stat in stats.values()) == [1] * INSTANCES, stats
    token = tokens[0]
    KNOWN_SECRETS.add(token)
    assert [await cluster.session(cluster.instance(i), token) for i in range(INSTANCES)] == [200] * INSTANCES
    assert await cluster.session(cluster.instance(0), token, "DELETE") == 200  # log out on one instance
    assert [await cluster.session(cluster.instance(i), token) for i in range(INSTANCES)] == [401] * INSTANCES
    assert [await cluster.session(cluster.instance(i), tokens[1]) for i in range(INSTANCES)] == [200] * INSTANCES


async def test_a_token_replayed_to_another_instance_is_refused(cluster: Cluster) -> None:
    status, body = await cluster.login(cluster.instance(0))
    assert status == 200, body
    cluster.sim.state.mischief = Mischief.REPLAY  # the IdP answers the token it issued before, unchanged
    try:
        status, body = await cluster.login(cluster.instance(1))
    finally:
        cluster.sim.state.mischief = None
    assert (status, body["error"]) == (502, "assertion_invalid"), body
    assert cluster.sim.state.counters["mischief.replay"] == 1
    status, body = await cluster.login(cluster.instance(2))  # a fresh token is fine
    assert status == 200, body


async def test_postgres_stopped_and_started_during_logins(cluster: Cluster) -> None:
    assert (await cluster.login())[0] == 200
    await cluster.db.server.stop_async()
    try:
        seen: set[int] = set()
        calls = cluster.trust_calls()
        for _ in range(4):
            started = time.monotonic()
            status, _ = await cluster.login()
            seen.add(status)
            assert time.monotonic() - started < 8  # fail fast, whether an instance or HAProxy answers
        assert seen == {503}, seen  # the instance (service_unavailable) or HAProxy (no ready server)
        assert cluster.trust_calls() == calls  # fail closed: nothing reached the IdP
    finally:
        await cluster.db.server.start_async()
    deadline = time.monotonic() + 30
    while (status := (await cluster.login())[0]) != 200:
        assert status == 503 and time.monotonic() < deadline, status
        await asyncio.sleep(0.5)
    await cluster.lb.wait_until_up_async(INSTANCES, within=20)  # every instance ready again, none restarted
    assert all(proc.poll() is None for proc in cluster.procs)


async def test_wrong_passwords_spread_over_the_instances_meet_one_lockout(cluster: Cluster) -> None:
    """12 wrong passwords through the balancer (round robin over 3 instances): at most 5 reach the IdP."""
    calls = cluster.trust_calls()
    answers = [await cluster.login(password=f"wrong-{n}") for n in range(12)]
    statuses = [status for status, _ in answers]
    assert cluster.trust_calls() - calls <= 5, statuses
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429] * 7, statuses
    assert {body["error"] for status, body in answers if status == 429} == {"temporarily_locked"}
    for i in range(INSTANCES):  # every instance refuses her now, without the IdP
        status, body = await cluster.login(cluster.instance(i))
        assert (status, body["error"]) == (429, "temporarily_locked")
    assert cluster.trust_calls() - calls <= 5


async def test_a_stale_password_retried_across_instances_reaches_the_idp_once(cluster: Cluster) -> None:
    calls = cluster.trust_calls()
    statuses = [(await cluster.login(cluster.instance(n % INSTANCES), password="alice-old-password"))[0]
                for n in range(50)]
    assert cluster.trust_calls() - calls == 1  # the first instance asked; every other answer was remembered
    assert set(statuses) <= {401, 429} and statuses[0] == 401, statuses
    assert (await cluster.login())[0] == 200  # her current password still works (the guard keys the pair)


SPRAY = 7  # not a multiple of the instance count: per-instance counting would trip at 21, or never
SPRAY_USERS = [f"sprayed{n:02d}@example.com" for n in range(1, 3 * SPRAY + 1)]


@pytest.mark.parametrize("cluster", [{"throttle": {"spray_distinct_users": SPRAY}, "users": SPRAY_USERS}],
                         indirect=True)
async def test_a_spray_through_the_balancer_trips_at_the_configured_count(cluster: Cluster) -> None:
    """Wrong passwords for many users from one source, round robin over the instances: one detector, one block.

    The bridge takes the peer address as the source (it does not trust X-Forwarded-For), so behind HAProxy
    every request comes from 127.0.0.1, the balancer's address, and the tests' direct requests do too.
    """
    calls = cluster.trust_calls()
    answers = []
    for email in SPRAY_USERS:  # 21 distinct users, each once, each provisioned: each reaches the IdP until the trip
        answers.append(await cluster.app_login(cluster.lb.url, email, "Spring2024!"))
        assert cluster.trust_calls() - calls <= SPRAY, answers
    statuses = [status for status, _ in answers]
    assert statuses == [401] * SPRAY + [429] * (len(SPRAY_USERS) - SPRAY), answers  # the SPRAY-th failure trips it
    assert {body["error"] for _, body in answers[:SPRAY]} == {"invalid_credentials"}
    assert {body["error"] for _, body in answers[SPRAY:]} == {"device_throttled"}
    assert cluster.trust_calls() - calls == SPRAY
    assert sorted(stat.sessions_total for stat in cluster.lb.stats().values()) == [7, 7, 7]  # spread evenly
    for index in range(INSTANCES):  # every instance refuses the source, even alice with her right password
        status, body = await cluster.app_login(cluster.instance(index), *ALICE)
        assert (status, body["error"]) == (429, "device_throttled"), index
    status, body = await cluster.app_login(cluster.lb.url, *ALICE)
    assert (status, body["error"]) == (429, "device_throttled")
    assert cluster.trust_calls() - calls == SPRAY
    assert await cluster.metric_total("loginbridge_spray_detections_total") == 1  # one instance tripped, once
    async with await Store.open(cluster.db.url) as store:
        sprays = [e for e in await store.audit_events(tenant_id="example") if e.kind.value == "spray_detected"]
    assert [(e.distinct_users, e.source, e.result) for e in sprays] == [(SPRAY, "127.0.0.1", "device_throttled")]
    # The block is the source's: a registered MFP is another actor, and alice signs in from it.
    status, body = await cluster.login()
    assert status == 200, body


async def test_a_phone_pairing_spread_over_the_instances(cluster: Cluster, sim_config: SimConfig) -> None:
    """Every step of a pairing may land on another instance: the state is the store's, not a process's."""
    status, started = await cluster.post(cluster.instance(0), "/v1/mfp/pairing", {})
    assert status == 200, started
    KNOWN_SECRETS.add(started["device_code"])
    assert started["verification_uri_complete"].startswith(cluster.lb.url + "/pair?code=")
    before = {name: stat.sessions_total for name, stat in cluster.lb.stats().items()}
    user = sim_config.find_user("alice@example.com")
    assert user is not None and user.totp_secret
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        phone = Browser(http, cluster.sim)
        await phone.go("GET", started["verification_uri_complete"])  # through the balancer
        await phone.submit(button="yes")
        await idp_sign_in(phone, "alice@example.com", "alice-demo-pass", user.totp_secret)
    assert phone.url.startswith(cluster.lb.url + "/signin/done") and "You can return to the device" in phone.html
    served = {name: stat.sessions_total - before[name] for name, stat in cluster.lb.stats().items()}
    assert sum(1 for n in served.values() if n > 0) >= 2, served  # the phone's requests met several instances
    status, body = await cluster.post(cluster.instance(2), "/v1/mfp/pairing/poll",
                                      {"device_code": started["device_code"]})
    assert status == 200 and body["user"]["email"] == "alice@example.com", body
    KNOWN_SECRETS.add(body["session"]["token"])
    assert await cluster.session(cluster.instance(1), body["session"]["token"]) == 200


async def test_an_oidc_pairing_spread_over_the_instances(cluster: Cluster, sim_config: SimConfig) -> None:
    """OpenID Connect: the PKCE verifier is derived from the state with the shared key, the nonce is in the store,
    so the instance that takes the provider's callback need not be the one that sent the phone there."""
    status, started = await cluster.post(cluster.instance(1), "/v1/mfp/pairing", {}, auth=NET_DEVICE)
    assert status == 200, started
    KNOWN_SECRETS.add(started["device_code"])
    before = {name: stat.sessions_total for name, stat in cluster.lb.stats().items()}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        phone = Browser(http, cluster.sim)
        await phone.go("GET", started["verification_uri_complete"])
        await phone.submit(button="yes")
        assert phone.url.startswith(cluster.sim.base_url + "/oidc/authorize"), phone.url
        await sign_in_at_provider(phone, NINA, NINA_PASSWORD, totp_secret(sim_config, NINA))
    assert phone.url.startswith(cluster.lb.url + "/signin/done") and "You can return to the device" in phone.html
    served = {name: stat.sessions_total - before[name] for name, stat in cluster.lb.stats().items()}
    assert sum(1 for n in served.values() if n > 0) >= 2, served  # confirm, callback and finish met several
    assert cluster.sim.state.counters["oidc.token.code"] == 1
    status, body = await cluster.post(cluster.instance(0), "/v1/mfp/pairing/poll",
                                      {"device_code": started["device_code"]}, auth=NET_DEVICE)
    assert status == 200 and body["user"]["email"] == NINA, body
    KNOWN_SECRETS.add(body["session"]["token"])
