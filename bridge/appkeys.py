"""Typed keys for what the aiohttp application holds (no globals)."""

from __future__ import annotations

from aiohttp import web

from bridge.config import BridgeConfig
from bridge.login.guard import LoginGuard
from bridge.login.pairing import PairingService
from bridge.login.service import IdpRegistry, LoginService
from bridge.metrics import BridgeMetrics
from bridge.state.audit import AuditLog
from bridge.state.store import Store

CONFIG = web.AppKey("config", BridgeConfig)
STORE = web.AppKey("store", Store)
IDPS = web.AppKey("idps", IdpRegistry)
LOGIN = web.AppKey("login", LoginService)
METRICS = web.AppKey("metrics", BridgeMetrics)
AUDIT = web.AppKey("audit", AuditLog)
GUARD = web.AppKey("guard", LoginGuard)
PRINTER_PORT = web.AppKey("printer_port", int)  # the printer listener's bound port, once it listens
PAIRING = web.AppKey("pairing", PairingService)  # phone pairing and browser sign-in (bridge/login/pairing.py)
