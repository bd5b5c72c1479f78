"""Shared pieces of the phone-pairing flows: a bridge whose public URL is its real address, and the device's side."""

from __future__ import annotations

import re
import socket
import ssl
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import aiohttp
import pyotp

from bridge.idpsim.server import RunningSimulator
from tests.flows.conftest import KNOWN_SECRETS, Bridge, BridgeFactory, saml_tenant_yaml, tenant_yaml

DEVICE = ("demo-mfp", "demo-mfp-secret")
ORG_DEVICE = ("demo-mfp-org", "demo-mfp-org-secret")
APP_ORIGIN = "https://app.example.net"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def pairing_bridge(make_bridge: BridgeFactory, sim: RunningSimulator, **main: Any) -> Bridge:
    """Both demo tenants; ``public_url`` is the address the bridge really listens on (the IdP posts back to it)."""
    port = free_port()
    return await make_bridge(
        tenants=[tenant_yaml(sim), saml_tenant_yaml(sim)], listen={"port": port},
        main_extra={"public_url": f"http://127.0.0.1:{port}", "web_signin": {"return_to": [APP_ORIGIN]}, **main})


async def start_pairing(bridge: Bridge, device: tuple[str, str] = DEVICE, *,
                        badge: str | None = None) -> dict[str, Any]:
    status, body = await bridge.call("POST", "/v1/mfp/pairing", json={} if badge is None else {"badge": badge},
                                     auth=device)
    assert status == 200, body
    KNOWN_SECRETS.add(body["device_code"])
    return body


async def poll(bridge: Bridge, device_code: str, device: tuple[str, str] = DEVICE) -> tuple[int, dict[str, Any]]:
    status, body = await bridge.call("POST", "/v1/mfp/pairing/poll", json={"device_code": device_code}, auth=device)
    token = body.get("session", {}).get("token") if isinstance(body, dict) else None
    if token:
        KNOWN_SECRETS.add(token)
    return status, body


class Forms(HTMLParser):
    """The forms of a page: action, method and the named fields with their values (hidden ones included)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": a.get("method", "get").lower(),
                               "fields": {}, "buttons": []})
        elif tag in ("input", "button") and self.forms:
            if tag == "button" or a.get("type") == "submit":
                self.forms[-1]["buttons"].append((a.get("name", ""), a.get("value", "")))
            elif a.get("name"):
                self.forms[-1]["fields"][a["name"]] = a.get("value", "")


def forms_of(html: str) -> list[dict[str, Any]]:
    parser = Forms()
    parser.feed(html)
    return parser.forms


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def phone() -> aiohttp.ClientSession:
    """A browser-like client: keeps cookies of an IP-address host (aiohttp's default jar drops them)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


class Browser:
    """Follows redirects and submits forms; stops when a redirect leaves for ``stop_at``."""

    def __init__(self, http: aiohttp.ClientSession, sim: RunningSimulator) -> None:
        self.http = http
        self.tls = ssl.create_default_context(cafile=str(sim.ca_file))
        self.url = ""
        self.html = ""
        self.status = 0

    async def go(self, method: str, url: str, data: dict[str, str] | None = None, *,
                 stop_at: str | None = None) -> None:
        for _ in range(10):
            kwargs: dict[str, Any] = {"allow_redirects": False}
            if url.startswith("https:"):
                kwargs["ssl"] = self.tls
            async with self.http.request(method, url, data=data, **kwargs) as resp:
                self.url, self.status = url, resp.status
                if resp.status in (302, 303):
                    url, method, data = urljoin(url, resp.headers["Location"]), "GET", None
                    if stop_at is not None and url.startswith(stop_at):
                        self.url = url
                        return
                    continue
                self.html = await resp.text()
                return
        raise AssertionError("too many redirects")

    async def submit(self, fields: dict[str, str] | None = None, *, button: str | None = None,
                     stop_at: str | None = None) -> None:
        form = forms_of(self.html)[0]
        data = {**form["fields"], **(fields or {})}
        for name, value in form["buttons"]:
            if name and (button is None or value == button):
                data[name] = value
                break
        await self.go("POST", urljoin(self.url, form["action"]), data, stop_at=stop_at)


async def idp_sign_in(browser: Browser, email: str, password: str, otp_secret: str | None, *,
                       stop_at: str | None = None) -> None:
    KNOWN_SECRETS.add(password)
    await browser.submit({"username": email, "password": password})
    if otp_secret is not None:
        assert "otp" in forms_of(browser.html)[0]["fields"] or 'name="otp"' in browser.html
        await browser.submit({"otp": pyotp.TOTP(otp_secret).now()})
    # The auto-post page: a browser's script submits it; here its Continue button.
    assert forms_of(browser.html)[0]["action"].startswith("http://127.0.0.1")
    await browser.submit(stop_at=stop_at)
