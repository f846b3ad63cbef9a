"""The autoscaler's HTTP API (schemas/autoscaler.openapi.json), on a thread of its own
beside the controller's loop.

    GET /v1/status   lag, rates, workers, decisions, and what the policy would do now
    GET /health      503 while the controller cannot see or act
    GET /metrics  /openapi.json
"""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from pipeline.autoscaler.controller import Controller
from pipeline.web.app import make_app
from pipeline.web.server import ServerLimits, serve


def app(controller: Controller, tokens: list[str] | None) -> web.Application:
    async def status(request: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(controller.status))  # it asks the backend: blocking

    async def health(request: web.Request) -> web.Response:
        problem = controller.problem
        return web.json_response({"ok": problem is None, "problem": problem}, status=200 if problem is None else 503)

    served = make_app("autoscaler", tokens, "autoscaler.openapi.json", controller.registry)
    served.router.add_get("/v1/status", status)
    served.router.add_get("/health", health)
    return served


class StatusServer:
    """The API served on a daemon thread until `shutdown()`."""

    def __init__(
        self, controller: Controller, host: str, port: int, tokens: list[str] | None, limits: ServerLimits
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="autoscaler-api", daemon=True)
        self.thread.start()
        self.runner = asyncio.run_coroutine_threadsafe(
            serve(app(controller, tokens), host, port, limits), self.loop
        ).result(30)

    def shutdown(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def serve_status(
    controller: Controller, host: str, port: int, *, tokens: list[str] | None, limits: ServerLimits = ServerLimits()
) -> StatusServer:
    """Serve the API (a bearer token from `tokens` on /v1/status unless None) until `shutdown()`."""
    return StatusServer(controller, host, port, tokens, limits)
