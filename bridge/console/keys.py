"""Typed keys of what the console sub-application holds."""

from __future__ import annotations

from aiohttp import web

from bridge.console.security import Signer, SignInLimiter

SIGNER = web.AppKey("console_signer", Signer)
LIMITER = web.AppKey("console_limiter", SignInLimiter)
