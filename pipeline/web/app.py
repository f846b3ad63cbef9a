"""What every wordpipe HTTP service shares: bearer-token auth, JSON errors, /metrics, /openapi.json.

Every error, the framework's own (404, 405) and the HTTP parser's (pipeline/web/server.py)
included, is a JSON body `{"error": <code>, "detail": <what was wrong>}`
(schemas/*.openapi.json: Error). The service's OpenAPI document is also the edge's rule
book: a query parameter it does not list for the route, or one given twice, is a 400, and
only a route that lists `token` (what a browser's EventSource calls) takes the token there.
"""

from __future__ import annotations

import hmac
import logging
import time
import urllib.parse
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
from pipeline.config import ServiceSettings
from pipeline.errors import ConfigError
from pipeline.web.server import REFUSED, error_response

log = logging.getLogger("wordpipe.web")

PUBLIC = ("/health", "/metrics", "/openapi.json")  # no token needed: probes, scrapers, clients discovering the API

QUERY = web.RequestKey("query", dict)  # the parsed query, once per request

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpError(Exception):
    """Raised by a handler: becomes a JSON error response; `close` ends the connection after it.
    An answer on its way out, not a caller's error: outside pipeline/errors.py's tree."""

    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None, close: bool = False
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers, self.close = status, code, detail, headers or {}, close


def tokens_of(service: ServiceSettings) -> list[str] | None:
    """The accepted tokens; None when auth is off. Refuses to run open by accident."""
    if service.auth == "none":
        return None
    tokens = service.token_list
    if not tokens:
        raise ConfigError(
            "tokens: auth is on but no token is configured; set WORDPIPE_TOKENS (comma-separated) "
            'or tokens in the config file, or turn auth off explicitly with auth = "none"'
        )
    return tokens


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def allowed(given: str | None, tokens: list[str]) -> bool:
    """Whether `given` is one of `tokens`, compared in constant time."""
    return given is not None and any(hmac.compare_digest(given.encode(), t.encode()) for t in tokens)


def query_of(request: web.Request) -> dict[str, str]:
    """The query parameters, each given once, as percent-encoded UTF-8; else a 400."""
    if QUERY in request:
        return request[QUERY]
    try:
        pairs = urllib.parse.parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise HttpError(400, "bad_query", "the query string is not percent-encoded UTF-8") from None
    query: dict[str, str] = {}
    for name, value in pairs:
        if name in query:
            raise HttpError(400, "repeated_parameter", f"{name!r:.40} is given more than once; give it once")
        query[name] = value
    request[QUERY] = query
    return query


def int_param(request: web.Request, name: str, default: int, low: int, high: int | None) -> int:
    """An integer query parameter in ASCII digits (no sign, spaces or other scripts' digits)."""
    raw = query_of(request).get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 30):
        raise HttpError(400, "bad_parameter", f"{name}: expected a whole number in ASCII digits, got {raw!r:.40}")
    value = int(raw)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise HttpError(400, "bad_parameter", f"{name}: must be {bound}, got {value}")
    return value


class Routes:
    """Each route's query parameters, as the service's OpenAPI document lists them."""

    def __init__(self, spec: dict) -> None:
        self.params: dict[str, set[str]] = {}
        for path, operations in spec["paths"].items():
            for operation in operations.values():
                if isinstance(operation, dict):
                    names = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
                    self.params[path] = self.params.get(path, set()) | names

    def check(self, route: str, query: dict[str, str]) -> None:
        known = self.params.get(route)
        if known is None:
            return
        for name in query:
            if name not in known:
                takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
                raise HttpError(400, "unknown_parameter", f"{name!r:.40} is not a query parameter of {route}; {takes}")

    def token_in_query(self, route: str) -> bool:
        """Only where a browser cannot send a header (EventSource) does the query carry the token."""
        return "token" in self.params.get(route, ())

    def unauthorized(self) -> HttpError:
        where = sorted(route for route, names in self.params.items() if "token" in names)
        also = f"; only {', '.join(where)} also takes it as ?token=, for browsers" if where else ""
        return HttpError(
            401,
            "unauthorized",
            f"missing or unknown bearer token (Authorization: Bearer <token>{also})",
            {"WWW-Authenticate": 'Bearer realm="wordpipe"'},
        )


def token_of(request: web.Request, query: dict[str, str], in_query: bool) -> str | None:
    token = bearer(request.headers.get("Authorization"))
    if token is None and in_query:
        return query.get("token")
    return token


def transfer_codings(request: web.Request) -> list[str]:
    return [
        c.strip().lower() for h in request.headers.getall("Transfer-Encoding", []) for c in h.split(",") if c.strip()
    ]


def make_app(
    service: str, tokens: list[str] | None, spec: str, registry: CollectorRegistry, public: tuple[str, ...] = ()
) -> web.Application:
    """An aiohttp app with auth, JSON errors, request metrics, /metrics and /openapi.json."""
    requests = Counter(
        "wordpipe_http_requests", "HTTP requests by route and status", ["service", "route", "status"], registry=registry
    )
    latency = Histogram(
        "wordpipe_http_request_seconds",
        "HTTP request latency by route",
        ["service", "route"],
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
    )
    open_paths = PUBLIC + public
    spec_body = schemas.load(spec)
    routes = Routes(spec_body)

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        try:
            codings = transfer_codings(request)
            if codings and codings != ["chunked"]:
                raise HttpError(
                    501,
                    "unsupported_transfer_encoding",
                    f"Transfer-Encoding {', '.join(codings)!r:.80} is not "
                    "supported; send chunked or a Content-Length (gzip goes in Content-Encoding)",
                    close=True,
                )
            query = query_of(request)
            if tokens is not None and request.path not in open_paths:
                if not allowed(token_of(request, query, routes.token_in_query(route)), tokens):
                    raise routes.unauthorized()
            routes.check(route, query)
            response = await handler(request)
        except HttpError as exc:
            response = error_response(exc.status, exc.code, exc.detail, exc.headers)
            if exc.close:
                response.force_close()
        except web.HTTPException as exc:  # the router's 404 and 405
            if exc.status < 400:
                raise
            detail = {
                404: f"no such path: {request.path}",
                405: f"{request.method} is not allowed on {request.path}",
            }.get(exc.status, exc.reason)
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            response = error_response(exc.status, exc.reason.lower().replace(" ", "_"), detail, headers)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            response = error_response(500, "internal", "the server failed; its log says why")
        requests.labels(service, route, str(response.status)).inc()
        latency.labels(service, route).observe(time.perf_counter() - started)
        return response

    app = web.Application(middlewares=[edge], client_max_size=1 << 20)
    app[REFUSED] = lambda status: requests.labels(service, "unparsed", str(status)).inc()

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(spec_body)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    return app
