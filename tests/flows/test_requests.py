"""Requests as networks deliver them: split and chunked bodies, text that is not text, media types,
405s, and the listeners' deadlines, on the bridge's own listeners (API and printer) over loopback.

The bridge here runs as ``loginbridge run`` serves it (``bridge.app.make_runner``), with short listener
timeouts so the deadlines can be watched.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from pyipp.enums import IppOperation as Op
from pyipp.enums import IppStatus

from bridge.app import make_app, make_runner
from bridge.appkeys import STORE
from bridge.cli import main as cli_main
from bridge.config import BridgeConfig, load_config
from bridge.console.passwords import hash_console_password
from bridge.demo import seed
from bridge.idpsim.server import RunningSimulator
from bridge.state.store import Store
from printers.ipp import Attribute, ValueTag, decode
from printers.server import PRINTER_RUNNER
from tests.adminapi.openapi_check import check_admin_response
from tests.connectors.openapi_check import check_response
from tests.connectors.rawhttp import (
    chunk,
    connect,
    exchange,
    parse_response,
    read_answer,
    request,
    seconds_until_closed,
    write_parts,
)
from tests.flows.conftest import DEMO_SEED, KNOWN_SECRETS, tenant_yaml
from tests.flows.print_support import ALICE, ipp_request, minimal_pdf

HEADER = 0.6
IDLE = 1.5
MAX_JSON_BYTES = 16 * 1024
USER_PROMPT = "/v1/mfp/user-prompt"
APP_LOGIN = "/v1/apps/login"
DEVICE_LOGIN = "/v1/mfp/device-login"
MFP = ("demo-mfp", "demo-mfp-secret")
BADGE = ("demo-badge", "demo-badge-secret")


@dataclass
class Listening:
    api: int
    printer: int
    app: web.Application
    config: BridgeConfig
    conf: Path
    store: Store
    sim: RunningSimulator

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api}"

    def trust_calls(self) -> int:
        return self.sim.state.counters["trust13"] + self.sim.state.counters["trust2005"]


@pytest.fixture
async def bridge(tmp_path: Path, sim: RunningSimulator) -> AsyncIterator[Listening]:
    conf = tmp_path / "conf"
    (conf / "tenants").mkdir(parents=True)
    main = {
        "listen": {"host": "127.0.0.1", "port": 0, "header_timeout_seconds": HEADER, "idle_timeout_seconds": IDLE},
        "state_dir": str(tmp_path / "state"),
        "secrets": {"hmac_key": {"file": str(tmp_path / "state" / "hmac.key"), "generate": True}},
        "idp_client": {"connect_timeout_seconds": 2, "timeout_seconds": 15},
        "printer": {"enabled": True, "host": "127.0.0.1", "port": 0,
                    "delivery": {"outbox_dir": str(tmp_path / "outbox")}},
        "console": {"users": [{"name": "tech", "password_hash": hash_console_password("tech-test-pass")}]},
    }
    (conf / "bridge.yaml").write_text(yaml.safe_dump(main))
    (conf / "tenants" / "example.yaml").write_text(yaml.safe_dump(tenant_yaml(sim)))
    config = load_config(conf / "bridge.yaml")
    app = make_app(config)
    runner = make_runner(app, config, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        await seed(config, app[STORE], DEMO_SEED)
        yield Listening(api=runner.addresses[0][1], printer=app[PRINTER_RUNNER].addresses[0][1], app=app,
                        config=config, conf=conf / "bridge.yaml", store=app[STORE], sim=sim)
    finally:
        await runner.cleanup()


def basic(creds: tuple[str, str]) -> str:
    KNOWN_SECRETS.add(creds[1])
    return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()


def login_body(email: str = ALICE[0], password: str = ALICE[1], **extra: Any) -> bytes:
    return json.dumps({"email": email, "password": password, **extra}).encode()


async def post(bridge: Listening, path: str, body: bytes, *, content_type: str | None = "application/json",
               device: tuple[str, str] | None = MFP) -> tuple[int, Any]:
    """POST raw body bytes; the answer is checked against the OpenAPI document, headers included."""
    headers = {"Content-Type": content_type} if content_type else {}
    if device is not None:
        headers["Authorization"] = basic(device)
    async with aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as http, http.post(
        bridge.url + path, data=body, headers=headers
    ) as resp:
        answer = await resp.json(content_type=None)
        check_response("POST", path, resp.status, answer, resp.headers)
        return resp.status, answer


async def audit_lines(bridge: Listening, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """What `loginbridge audit tail` prints (run in a thread, as from a shell: it has its own event loop)."""
    capsys.readouterr()
    assert await asyncio.to_thread(cli_main, ["audit", "tail", "--config", str(bridge.conf)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


# -- bodies as they arrive ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_in_two_segments_is_read_whole(bridge: Listening, framing: str) -> None:
    body = login_body()
    half = len(body) // 2
    headers = {"Authorization": basic(MFP), "Content-Type": "application/json"}
    if framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        parts = (request("POST", USER_PROMPT, headers=headers), chunk(body[:half]), chunk(body[half:]) + chunk(b""))
    else:
        headers["Content-Length"] = str(len(body))
        parts = (request("POST", USER_PROMPT, headers=headers), body[:half], body[half:])
    answer = await exchange(bridge.api, *parts, pause=0.05)
    assert answer.status == 200, answer.body
    check_response("POST", USER_PROMPT, 200, answer.json(), answer.headers)
    assert answer.json()["user"]["email"] == ALICE[0]
    KNOWN_SECRETS.add(answer.json()["session"]["token"])


async def test_the_size_cap_holds_for_declared_and_chunked_bodies(bridge: Listening) -> None:
    filler = MAX_JSON_BYTES - len(login_body(pad=""))
    exact = login_body(pad="p" * filler)
    assert len(exact) == MAX_JSON_BYTES
    status, answer = await post(bridge, USER_PROMPT, exact)  # exactly at the cap: read, extra member ignored
    assert status == 200, answer
    KNOWN_SECRETS.add(answer["session"]["token"])

    over = login_body(pad="p" * (filler + 1))
    status, answer = await post(bridge, USER_PROMPT, over)
    assert (status, answer["error"]) == (413, "payload_too_large")

    headers = {"Authorization": basic(MFP), "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    pieces = [chunk(over[i:i + 4096]) for i in range(0, len(over), 4096)]
    answer_raw = await exchange(bridge.api, request("POST", USER_PROMPT, headers=headers), *pieces, chunk(b""),
                                pause=0.01)
    assert (answer_raw.status, answer_raw.json()["error"]) == (413, "payload_too_large")


async def test_a_stalled_body_gets_408_with_connection_close(
        bridge: Listening, capsys: pytest.CaptureFixture[str]) -> None:
    head = request("POST", USER_PROMPT, headers={"Authorization": basic(MFP), "Content-Type": "application/json",
                                                 "Content-Length": "100"})
    reader, writer = await connect(bridge.api)
    try:
        started = time.monotonic()
        await write_parts(writer, (head, b'{"email": "alice@'), pause=0.01)
        answer = await read_answer(reader)
        elapsed = time.monotonic() - started
    finally:
        writer.close()
    assert (answer.status, answer.json()["error"]) == (408, "request_timeout")
    check_response("POST", USER_PROMPT, 408, answer.json(), answer.headers)
    # aiohttp still lingers a few seconds for the unread body (so the client can read this), then closes.
    assert answer.headers["Connection"].lower() == "close"
    assert HEADER * 0.9 <= elapsed < HEADER + 3, elapsed
    assert (await audit_lines(bridge, capsys))[-1]["result"] == "request_timeout"


async def test_an_unreadable_body_is_a_bad_request_not_an_error(bridge: Listening) -> None:
    status, answer = await post(bridge, USER_PROMPT, b'{"email": "\xed\xa0\x80@example.com", "password": "p"}')
    assert (status, answer["error"]) == (400, "bad_request")  # a UTF-8-encoded surrogate is not UTF-8
    headers = {"Authorization": basic(MFP), "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    reader, writer = await connect(bridge.api)
    try:
        await write_parts(writer, (request("POST", USER_PROMPT, headers=headers), b"zz\r\n{}\r\n0\r\n\r\n"), 0.01)
        answer_raw = await read_answer(reader)
    finally:
        writer.close()
    # A malformed chunk size: aiohttp's parser queues its own 400 behind this request and never ends the
    # body, so the body deadline answers; either way a 4xx in bounded time, never a 500 or a hang.
    assert (answer_raw.status, answer_raw.json()["error"]) in {(400, "bad_request"), (408, "request_timeout")}


# -- text that is not text -------------------------------------------------------------------------------------


async def test_a_lone_surrogate_is_refused_and_still_audited(
        bridge: Listening, capsys: pytest.CaptureFixture[str]) -> None:
    calls = bridge.trust_calls()
    body = b'{"email":"\\ud800@example.com","password":"x"}'  # as a client writes it: a JSON escape
    status, answer = await post(bridge, USER_PROMPT, body)
    assert (status, answer["error"]) == (400, "invalid_request")
    assert "'email'" in answer["detail"]
    (line,) = [e for e in await audit_lines(bridge, capsys) if e["result"] == "invalid_request"]
    assert line["email"] == "\\ud800@example.com"  # the bad code point escaped, the rest as typed
    assert (line["device"], line["mode"], line["tenant"]) == ("demo-mfp", "user-prompt", "example")
    assert bridge.config.audit_file is not None
    file_lines = [json.loads(raw) for raw in bridge.config.audit_file.read_text(encoding="utf-8").splitlines()]
    assert file_lines[-1]["email"] == "\\ud800@example.com" and file_lines[-1]["result"] == "invalid_request"
    assert bridge.trust_calls() == calls


@pytest.mark.parametrize(("path", "device", "body", "audited_email"), [
    (USER_PROMPT, MFP, login_body(password="alice-\x00-pass"), ALICE[0]),
    (USER_PROMPT, MFP, login_body(email="\x00alice@example.com"), "\\u0000alice@example.com"),
    (USER_PROMPT, MFP, login_body(password="\ufffe"), ALICE[0]),
    (APP_LOGIN, None, login_body(email="bob\ud83d@example.com"), "bob\\ud83d@example.com"),
    (APP_LOGIN, None, login_body(email="alice", password="\x01"), None),  # not an email: not recorded
    (DEVICE_LOGIN, BADGE, json.dumps({"user": "alice\x00"}).encode(), None),
], ids=["nul-in-password", "nul-in-email", "non-character", "app-surrogate", "app-user-name", "device-login"])
async def test_text_no_system_can_carry_is_invalid_request(
        bridge: Listening, capsys: pytest.CaptureFixture[str], path: str, device: tuple[str, str] | None,
        body: bytes, audited_email: str | None) -> None:
    status, answer = await post(bridge, path, body, device=device)
    assert (status, answer["error"]) == (400, "invalid_request")
    last = (await audit_lines(bridge, capsys))[-1]
    mode = {USER_PROMPT: "user-prompt", APP_LOGIN: "app", DEVICE_LOGIN: "device-login"}[path]
    assert (last["result"], last["mode"], last["email"]) == ("invalid_request", mode, audited_email)
    assert bridge.trust_calls() == 0


async def test_an_empty_password_is_refused_as_the_document_says(bridge: Listening) -> None:
    status, answer = await post(bridge, USER_PROMPT, login_body(password=""))
    assert (status, answer["error"]) == (400, "bad_request")


# -- media types ---------------------------------------------------------------------------------------------


async def test_only_json_is_accepted(bridge: Listening) -> None:
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded",
                         "application/json; charset=iso-8859-1", "application/jsonx", "application/problem+json"):
        for path, device in ((USER_PROMPT, MFP), (APP_LOGIN, None), (DEVICE_LOGIN, BADGE)):
            status, answer = await post(bridge, path, login_body(user=ALICE[0]), content_type=content_type,
                                        device=device)
            assert (status, answer["error"]) == (415, "unsupported_media_type"), (content_type, path)
    assert bridge.trust_calls() == 0


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", 'Application/JSON; charset="UTF-8"'])
async def test_json_with_a_utf8_charset_is_accepted(bridge: Listening, content_type: str) -> None:
    status, answer = await post(bridge, USER_PROMPT, login_body(), content_type=content_type)
    assert status == 200, answer
    KNOWN_SECRETS.add(answer["session"]["token"])


# -- 405 and Allow, on every route of both listeners ---------------------------------------------------------------


def _routes(app: web.Application) -> Iterator[tuple[str, set[str]]]:
    """(a concrete path, the methods its resource takes) for every resource, sub-applications included."""
    for resource in app.router.resources():
        info = resource.get_info()
        if "app" in info:  # a mounted sub-application: its resources carry the prefix already
            yield from _routes(info["app"])
            continue
        methods = {route.method for route in resource}
        if "directory" in info:  # static files: any name under the prefix
            yield info["prefix"] + "/style.css", methods
            continue
        yield _concrete(resource.canonical, info.get("pattern")), methods


def _concrete(formatter: str, pattern: re.Pattern[str] | None) -> str:
    names = re.findall(r"{(\w+)}", formatter)
    if pattern is None or not names:
        return formatter
    for values in itertools.product(["1", "enable", "example"], repeat=len(names)):
        path = formatter.format(**dict(zip(names, values, strict=True)))
        if pattern.fullmatch(path):
            return path
    raise AssertionError(f"no sample path for {formatter}")


# PATCH /console answers 404, not 405: aiohttp lets the console sub-application mounted at the same prefix answer
# for the path, and it has no such route (bridge/console/app.py's redirect; left to its owner, see the report).
NOT_WALKED = {"/console"}


async def test_every_405_names_the_allowed_methods(bridge: Listening) -> None:
    # SCIM (bridge/scim) answers every method itself, in SCIM's error format (tests/scim checks its 405s).
    api = [(path, methods) for path, methods in _routes(bridge.app)
           if path not in NOT_WALKED and not path.startswith("/scim/v2/")]
    printer = list(_routes(bridge.app[PRINTER_RUNNER].app))
    assert any(path.startswith("/console/") for path, _ in api), "the console's routes are part of the walk"
    assert {"/ipp/print", "/"} <= {path for path, _ in printer}
    async with aiohttp.ClientSession() as http:
        for port, routes in ((bridge.api, api), (bridge.printer, printer)):
            for path, methods in routes:
                method = "PATCH" if "PATCH" not in methods else "PUT"  # the admin API takes PATCH on some paths
                async with http.request(method, f"http://127.0.0.1:{port}{path}") as resp:
                    assert resp.status == 405, (port, path, resp.status)
                    allow = {m.strip() for m in resp.headers.get("Allow", "").split(",") if m.strip()}
                    assert allow == methods, (port, path, allow)
                    if port == bridge.api:  # the error middleware's JSON answer kept the header
                        answer = await resp.json()
                        assert answer["error"] == "method_not_allowed", path
                        if path.startswith("/admin/v1/"):  # the admin API's own document
                            check_admin_response(method, path, 405, answer, resp.headers)
                        elif not path.startswith(("/console", "/print/")):  # pages for people, not the API
                            check_response(method, path, 405, answer, resp.headers)


# -- the listeners' deadlines ------------------------------------------------------------------------------------


async def test_both_listeners_close_half_a_request_line(bridge: Listening) -> None:
    for port, line in ((bridge.api, b"POST /v1/mfp/user-pr"), (bridge.printer, b"POST /ipp/pri")):
        elapsed, sent = await seconds_until_closed(port, line)
        assert sent == b"" and HEADER * 0.9 <= elapsed < IDLE, (port, elapsed)


async def test_an_idle_api_connection_is_closed_after_the_idle_timeout(bridge: Listening) -> None:
    elapsed, sent = await seconds_until_closed(bridge.api, request("GET", "/healthz", close=False))
    assert parse_response(sent).status == 200
    assert IDLE * 0.9 <= elapsed < IDLE + 3, elapsed


async def test_a_slow_steady_print_job_is_not_cut(bridge: Listening) -> None:
    # The document trickles in over about 3 s, twice the idle timeout and five times the header timeout.
    pdf = minimal_pdf(3)
    body = ipp_request(Op.PRINT_JOB, Attribute.of("document-format", ValueTag.MIME_MEDIA_TYPE, "application/pdf"),
                       data=pdf)
    step = -(-len(body) // 12)
    head = request("POST", "/ipp/print", headers={"Authorization": basic(ALICE), "Content-Type": "application/ipp",
                                                  "Content-Length": str(len(body))})
    answer = await exchange(bridge.printer, head, *[body[i:i + step] for i in range(0, len(body), step)], pause=0.25)
    assert answer.status == 200
    reply = decode(answer.body)
    assert reply.code == IppStatus.OK, reply
