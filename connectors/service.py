"""Service endpoints beside the device API: Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from bridge.appkeys import METRICS
from bridge.metrics import CONTENT_TYPE_LATEST
from bridge.openapi import document_bytes


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=document_bytes(), content_type="application/json")


def routes() -> list[web.RouteDef]:
    return [web.get("/metrics", metrics), web.get("/v1/openapi.json", openapi)]
