"""Shared pieces of the OpenID Connect flows: the demo tenant example.net at the simulator's OpenID Provider."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pyotp

from bridge.idpsim.config import SimConfig
from bridge.idpsim.oidc.settings import ClientAuthMethod, OidcClient
from bridge.idpsim.server import RunningSimulator
from tests.flows.conftest import KNOWN_SECRETS
from tests.flows.pairing_support import Browser, forms_of, text_of
from tests.paths import REPO

CLIENT_ID = "loginbridge-example-net"
SECRET_CLIENT_ID = "loginbridge-example-net-basic"
SECRET_CLIENT_SECRET = "example-net-basic-secret:with/odd+chars"
DEVICE = ("demo-mfp-net", "demo-mfp-net-secret")
NINA, NINA_PASSWORD = "nina@example.net", "nina-demo-pass"
OSCAR, OSCAR_PASSWORD = "oscar@example.net", "oscar-demo-pass"
CLIENT_KEY = REPO / "conf" / "demo" / "example-net-client.key"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}")

KNOWN_SECRETS.update({"demo-mfp-net-secret", SECRET_CLIENT_SECRET})


def oidc_sim_config(sim_config: SimConfig, bridge_url: str) -> SimConfig:
    """The demo simulator's configuration, whose OIDC clients also accept ``bridge_url``'s callback.

    A second client, with a client secret full of characters Basic authentication must encode, is added.
    """
    callback = f"{bridge_url}/oidc/example-net/callback"
    config = sim_config.with_oidc_redirect_uris(CLIENT_ID, callback)
    secret_client = OidcClient(client_id=SECRET_CLIENT_ID, auth_method=ClientAuthMethod.CLIENT_SECRET_BASIC,
                               client_secret=SECRET_CLIENT_SECRET, redirect_uris=(callback,), password_grant=True)
    return dataclasses.replace(config, oidc=config.oidc.with_client(secret_client))


def oidc_tenant_yaml(sim: RunningSimulator, **oidc: Any) -> dict[str, Any]:
    """The example.net tenant as conf/tenants/example-net.yaml has it, at this simulator (None drops a key)."""
    settings: dict[str, Any] = {
        "issuer": f"{sim.base_url}/oidc",
        "client_id": CLIENT_ID,
        "client_auth": "private_key_jwt",
        "private_key_file": str(CLIENT_KEY),
        "private_key_algorithm": "ES256",
        "email_claim": "email",
        "signing_algorithms": ["RS256", "ES256"],
        "password_grant": True,
        "ca_file": str(sim.ca_file),
        **oidc,
    }
    settings = {key: value for key, value in settings.items() if value is not None}
    return {"id": "example-net", "name": "Example Net", "domains": ["example.net"], "protocol": "oidc",
            "idp_whitelist": ["127.0.0.1/32"], "oidc": settings}


def totp_secret(sim_config: SimConfig, email: str) -> str:
    user = sim_config.find_user(email)
    assert user is not None and user.totp_secret is not None
    return user.totp_secret


async def sign_in_at_provider(browser: Browser, email: str, password: str, otp_secret: str | None) -> None:
    """The simulator's login page (and TOTP page); its redirect back is followed to the bridge's page."""
    KNOWN_SECRETS.add(password)
    await browser.submit({"username": email, "password": password}, button="signin")
    if otp_secret is not None:
        assert "otp" in forms_of(browser.html)[0]["fields"] or 'name="otp"' in browser.html, text_of(browser.html)
        await browser.submit({"otp": pyotp.TOTP(otp_secret).now()}, button="signin")
