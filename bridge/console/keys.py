"""Typed keys of what the console sub-application holds."""

from __future__ import annotations

from aiohttp import web

from bridge.console.security import Signer
from bridge.console.shared import ConsoleState

SIGNER = web.AppKey("console_signer", Signer)
CONSOLE_STATE = web.AppKey("console_state", ConsoleState)
