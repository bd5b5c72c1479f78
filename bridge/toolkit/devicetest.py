"""``loginbridge device-test``: play an MFP connector against a running bridge.

Steps, as a device would take them: the bridge is alive (``/healthz``); the
device's credentials are accepted (``GET /v1/session`` with Basic only: a
``session_invalid`` answer means the device passed and merely named no
session); the login of the device's mode; session introspection; logout; and
that the token is dead afterwards.  Each step shows what the panel would
show: the bridge's panel message and error code, with the time taken.

The mode is given with ``--mode`` or found by trying, in order, the modes the
given inputs allow (user-prompt needs an email and password, device-login an
email, shared-account nothing) and moving on only on ``wrong_mode``.
"""

from __future__ import annotations

import base64
import enum
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from bridge.errorcatalog import ADMIN_DETAIL
from bridge.toolkit.report import Report, Status, Step

log = logging.getLogger(__name__)


class ModeChoice(enum.Enum):
    AUTO = "auto"
    USER_PROMPT = "user-prompt"
    SHARED_ACCOUNT = "shared-account"
    DEVICE_LOGIN = "device-login"


_LOGIN_PATHS = {
    ModeChoice.USER_PROMPT: "/v1/mfp/user-prompt",
    ModeChoice.SHARED_ACCOUNT: "/v1/mfp/shared-account",
    ModeChoice.DEVICE_LOGIN: "/v1/mfp/device-login",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceTestInput:
    url: str
    device_id: str
    secret: str = field(repr=False)
    email: str | None = None
    password: str | None = field(default=None, repr=False)
    mode: ModeChoice = ModeChoice.AUTO


@dataclass(frozen=True, kw_only=True, slots=True)
class _Answer:
    status: int
    code: str | None
    message: str | None
    body: dict[str, Any]
    seconds: float


def basic_header(user: str, secret: str) -> str:
    """HTTP Basic credentials (RFC 7617, UTF-8), as the MFP connector sends its device id and secret."""
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")


def candidate_modes(inp: DeviceTestInput) -> list[ModeChoice]:
    """The modes to try, most specific first, given what the technician supplied."""
    if inp.mode is not ModeChoice.AUTO:
        return [inp.mode]
    modes = []
    if inp.email and inp.password is not None:
        modes.append(ModeChoice.USER_PROMPT)
    if inp.email:
        modes.append(ModeChoice.DEVICE_LOGIN)
    modes.append(ModeChoice.SHARED_ACCOUNT)
    return modes


class _Client:
    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base.rstrip("/")

    async def call(self, method: str, path: str, *, json: dict[str, str] | None = None,
                   auth: str | None = None, bearer: str | None = None) -> _Answer:
        headers = {}
        if auth is not None:
            headers["Authorization"] = auth
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        started = time.perf_counter()
        async with self.http.request(method, self.base + path, json=json, headers=headers,
                                     allow_redirects=False) as resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = None
            seconds = time.perf_counter() - started
        if not isinstance(body, dict):
            body = {}
        code = body.get("error") if isinstance(body.get("error"), str) else None
        message = body.get("message") if isinstance(body.get("message"), str) else None
        return _Answer(status=resp.status, code=code, message=message, body=body, seconds=seconds)


def _refused(name: str, answer: _Answer, hint: str = "") -> Step:
    return Step(name=name, status=Status.FAIL, summary=f"HTTP {answer.status} {answer.code or '(no error code)'}",
                hint=hint, seconds=answer.seconds, code=answer.code, panel_message=answer.message)


def _obj(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    return value if isinstance(value, dict) else {}


def _hint_for(code: str | None) -> str:
    """The administrator's note for a code (the same as docs/errors.md)."""
    return ADMIN_DETAIL.get(code or "", "")


async def run_device_test(inp: DeviceTestInput, *, limit_seconds: float = 30.0) -> Report:
    started_at = datetime.now(UTC)
    steps: list[Step] = []
    timeout = aiohttp.ClientTimeout(total=limit_seconds)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as http:
        client = _Client(http, inp.url)
        try:
            await _play(client, inp, steps)
        except (aiohttp.ClientError, TimeoutError) as exc:
            name = "bridge reachable" if not steps else "connection"
            steps.append(Step(name=name, status=Status.FAIL, summary=f"{type(exc).__name__}: {exc}",
                              hint="check --url (scheme, host, port) and that the bridge is running"))
    return Report(tool="device-test", subject=inp.device_id, started_at=started_at, steps=tuple(steps))


async def _play(client: _Client, inp: DeviceTestInput, steps: list[Step]) -> None:
    health = await client.call("GET", "/healthz")
    if health.status != 200 or health.body.get("status") != "alive":
        steps.append(_refused("health", health, "this URL is not a loginbridge service, or it is unwell"))
        return
    steps.append(Step(name="health", status=Status.PASS, summary=f"{client.base} is alive", seconds=health.seconds))

    auth = basic_header(inp.device_id, inp.secret)
    probe = await client.call("GET", "/v1/session", auth=auth)
    if probe.code != "session_invalid":
        steps.append(_refused("device authentication", probe, _hint_for(probe.code)))
        return
    steps.append(Step(name="device authentication", status=Status.PASS, seconds=probe.seconds,
                      summary=f"device {inp.device_id} accepted (its id, secret and network)"))

    token = await _login(client, inp, auth, steps)
    if token is None:
        return
    session = await client.call("GET", "/v1/session", bearer=token)
    if session.status != 200:
        steps.append(_refused("session", session, _hint_for(session.code)))
        return
    user = _obj(session.body, "user")
    info = _obj(session.body, "session")
    steps.append(Step(name="session", status=Status.PASS, seconds=session.seconds,
                      summary=f"{user.get('email')} of tenant {user.get('tenant')}, on device "
                              f"{info.get('device_id')}, until {info.get('expires_at')}"))
    logout = await client.call("DELETE", "/v1/session", bearer=token)
    if logout.status != 200:
        steps.append(_refused("logout", logout, _hint_for(logout.code)))
        return
    steps.append(Step(name="logout", status=Status.PASS, summary="session ended", seconds=logout.seconds,
                      panel_message="Signed out."))
    after = await client.call("GET", "/v1/session", bearer=token)
    if after.code == "session_invalid":
        steps.append(Step(name="token after logout", status=Status.PASS, seconds=after.seconds,
                          summary="refused (session_invalid), as it must be"))
    else:
        steps.append(Step(name="token after logout", status=Status.FAIL, seconds=after.seconds,
                          summary=f"HTTP {after.status}: the token still works after logout",
                          hint="a bridge defect: report it"))


async def _login(client: _Client, inp: DeviceTestInput, auth: str, steps: list[Step]) -> str | None:
    """The login of the device's mode; the session token, or None after a FAIL step."""
    modes = candidate_modes(inp)
    for mode in modes:
        name = f"login ({mode.value})"
        body: dict[str, str] | None = None
        if mode is ModeChoice.USER_PROMPT:
            if not inp.email or inp.password is None:
                steps.append(Step(name=name, status=Status.FAIL, summary="needs --email and --password-stdin"))
                return None
            body = {"email": inp.email, "password": inp.password}
        elif mode is ModeChoice.DEVICE_LOGIN:
            if not inp.email:
                steps.append(Step(name=name, status=Status.FAIL, summary="needs --email (the user the device "
                                  "authenticated)"))
                return None
            body = {"user": inp.email}
        answer = await client.call("POST", _LOGIN_PATHS[mode], json=body, auth=auth)
        if answer.status == 200:
            session = _obj(answer.body, "session")
            user = _obj(answer.body, "user")
            token = session.get("token")
            if not isinstance(token, str) or not token:
                steps.append(Step(name=name, status=Status.FAIL, summary="HTTP 200 without a session token",
                                  seconds=answer.seconds, hint="a bridge defect: report it"))
                return None
            shown = user.get("display_name") or user.get("email")
            steps.append(Step(name=name, status=Status.PASS, seconds=answer.seconds,
                              summary=f"session opened for {user.get('email')} (tenant {user.get('tenant')}), "
                                      f"expires {session.get('expires_at')}",
                              panel_message=f"Signed in as {shown}."))
            return token
        if answer.code == "wrong_mode" and inp.mode is ModeChoice.AUTO and mode is not modes[-1]:
            steps.append(Step(name=name, status=Status.SKIP, seconds=answer.seconds,
                              summary=f"the device is not enrolled in {mode.value} mode; trying the next"))
            continue
        hint = _hint_for(answer.code)
        if answer.code == "wrong_mode":
            hint = ("the device is enrolled in another mode: run with --mode, giving --email (device-login) or "
                    "--email and --password-stdin (user-prompt); `loginbridge devices list` shows the mode")
        steps.append(_refused(name, answer, hint))
        return None
    return None
