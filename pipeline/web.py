"""What every wordpipe HTTP service shares: bearer-token auth, JSON errors, /metrics, /openapi.json.

Every error, the framework's own (404, 405) included, is a JSON body
`{"error": <code>, "detail": <what was wrong>}` (schemas/*.openapi.json: Error).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

import schemas
from pipeline.config import ConfigError, Settings

log = logging.getLogger("wordpipe.web")

PUBLIC = ("/health", "/metrics", "/openapi.json")  # no token needed: probes, scrapers, clients discovering the API

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """Raised by a handler: becomes a JSON error response."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers or {}


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status, headers=headers)


def tokens_of(settings: Settings) -> list[str] | None:
    """The accepted tokens; None when auth is off. Refuses to run open by accident."""
    if settings.auth == "none":
        return None
    tokens = settings.token_list
    if not tokens:
        raise ConfigError("tokens: auth is on but no token is configured; set WORDPIPE_TOKENS (comma-separated) "
                          "or tokens in the config file, or turn auth off explicitly with auth = \"none\"")
    return tokens


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def allowed(given: str | None, tokens: list[str]) -> bool:
    """Whether `given` is one of `tokens`, compared in constant time."""
    return given is not None and any(hmac.compare_digest(given.encode(), t.encode()) for t in tokens)


def token_of(request: web.Request) -> str | None:
    token = bearer(request.headers.get("Authorization"))
    # Browsers' EventSource cannot set headers: the dashboard passes its token in the query.
    if token is None and request.method == "GET":
        return request.query.get("token")
    return token


def make_app(service: str, tokens: list[str] | None, spec: str, registry: CollectorRegistry, public: tuple[str, ...] = ()) -> web.Application:
    """An aiohttp app with auth, JSON errors, request metrics, /metrics and /openapi.json."""
    requests = Counter("wordpipe_http_requests", "HTTP requests by route and status", ["service", "route", "status"],
                       registry=registry)
    latency = Histogram("wordpipe_http_request_seconds", "HTTP request latency by route", ["service", "route"],
                        registry=registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60))
    open_paths = PUBLIC + public

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        try:
            if tokens is not None and request.path not in open_paths:
                if not allowed(token_of(request), tokens):
                    raise ApiError(401, "unauthorized", "missing or unknown bearer token (Authorization: Bearer <token>)",
                                   {"WWW-Authenticate": 'Bearer realm="wordpipe"'})
            response = await handler(request)
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.detail, exc.headers)
        except web.HTTPException as exc:  # the router's 404 and 405
            if exc.status < 400:
                raise
            detail = {404: f"no such path: {request.path}",
                      405: f"{request.method} is not allowed on {request.path}"}.get(exc.status, exc.reason)
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            response = error_response(exc.status, exc.reason.lower().replace(" ", "_"), detail, headers)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            response = error_response(500, "internal", "the server failed; its log says why")
        requests.labels(service, route, str(response.status)).inc()
        latency.labels(service, route).observe(time.perf_counter() - started)
        return response

    app = web.Application(middlewares=[edge], client_max_size=1 << 20)
    spec_body = schemas.load(spec)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(spec_body)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving `app`; the caller keeps the runner to `cleanup()` it."""
    # auto_decompress off: the ingest service inflates gzip itself, so that an unknown
    # encoding or a broken body gets our JSON error rather than the parser's plain text.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return runner
