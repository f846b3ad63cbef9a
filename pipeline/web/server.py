"""The HTTP server under every service: aiohttp's, with a connection that a careless or
hostile client cannot turn against the service.

- A request the parser refuses (oversized or too many headers, a URL too long, bad
  framing) gets the documented JSON error, and the log one line without the request's
  bytes: the parser's own messages quote them, tokens included.
- A client that half-closes after its request (legal HTTP) gets its answer; one that ends
  its side mid-body is cut off, and nothing of that upload counts.
- A connection without a request in progress closes after `idle_seconds`, headers that
  trickle in included: idle sockets cannot pile up.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import StreamReader, web
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadStatusLine,
    ContentLengthError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)
from aiohttp.web_protocol import RequestHandler

from pipeline.errors import ConfigError, UnavailableError

log = logging.getLogger("wordpipe.web")

Refused = Callable[[int], None]  # counts a request the parser refused, by status
REFUSED: web.AppKey[Refused] = web.AppKey("refused")
# What a service adds to the error for a request line too long: how to ask without one.
TOO_LONG_HINT: web.AppKey[str] = web.AppKey("too_long_hint")


@dataclass(frozen=True)
class ServerLimits:
    idle_seconds: float = 30.0  # a connection with no request in progress closes after this


def parse_error(exc: BaseException | None) -> tuple[int, str, str]:
    """(status, code, detail) for a request the HTTP parser refused, never quoting it."""
    what = str(getattr(exc, "message", "") or "").split(":", 1)[0].strip()  # the message before its quote
    lowered = what.lower()
    if isinstance(exc, LineTooLong):
        return 431, "header_too_large", f"the request line or a header is too long ({lowered})"
    if isinstance(exc, BadHttpMessage) and "too many headers" in lowered:
        return 431, "too_many_headers", "too many headers (at most 128)"
    if isinstance(exc, TransferEncodingError) or "chunk" in lowered:
        return 400, "bad_chunking", f"the chunked body is malformed ({what})"
    if isinstance(exc, ContentLengthError) or "content-length" in lowered:
        return 400, "bad_content_length", f"Content-Length is malformed or conflicts with the framing ({what})"
    if "transfer-encoding" in lowered:
        return 400, "bad_transfer_encoding", f"Transfer-Encoding is malformed; chunked must be its last coding ({what})"
    if isinstance(exc, InvalidURLError):
        return 400, "bad_target", f"the request target is malformed ({what}); percent-encode non-ASCII characters"
    if isinstance(exc, BadStatusLine):
        return 400, "bad_request_line", f"the request line is malformed ({what})"
    if isinstance(exc, InvalidHeader) or "header" in lowered:
        return 400, "bad_header", f"a header is malformed ({what})"
    return 400, "bad_request", f"the request is not valid HTTP/1.1 ({what or 'unparsable'})"


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    """The documented error body, `{"error": <code>, "detail": <what was wrong>}`."""
    return web.json_response({"error": code, "detail": detail}, status=status, headers=headers)


class HttpConnection(RequestHandler):
    """One client connection: aiohttp's, answering its errors as JSON and half-closes."""

    def __init__(self, *args: Any, refused: Callable[[int], None], too_long_hint: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = refused
        self.too_long_hint = too_long_hint
        self.body: StreamReader | None = None  # the latest request's body, maybe not yet handed to a handler

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages:
            self.body = self._messages[-1][1]

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio's protocol returns a bool: keep open
        if self._waiter is not None and not self._waiter.done() and not self._messages:
            return None  # between requests (or inside unfinished headers): the transport closes, as before
        # The client finished sending (or gave up): answer what it sent, then close.
        self._close = True
        if self.body is not None and not self.body.is_eof():
            self.body.set_exception(
                ConnectionResetError("the client ended its side of the connection before the body's end")
            )
        return True  # keep the write side open for the answer

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        if isinstance(kwargs.get("exc_info"), ConnectionError):  # a client that left: not our failure
            return
        super().log_exception(*args, **kwargs)

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if status >= 500 and not isinstance(exc, BadHttpMessage):
            log.error("%s %s failed", request.method, request.path, exc_info=exc)
            status, code, detail = 500, "internal", "the server failed; its log says why"
        else:
            status, code, detail = parse_error(exc)
            if isinstance(exc, LineTooLong) and self.too_long_hint:
                detail = f"{detail}; {self.too_long_hint}"
            log.info("refused a malformed request from %s: %s %s", request.remote, status, code)
        if request.writer.output_size > 0:
            raise ConnectionError("the response had started: no error response can follow")
        self.refused(status)
        response = error_response(status, code, detail)
        response.force_close()
        return response


class _Site(web.BaseSite):
    def __init__(self, runner: web.AppRunner, host: str, port: int, limits: ServerLimits) -> None:
        super().__init__(runner)
        self.host, self.port, self.limits = host, port, limits

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        runner = self._runner
        assert isinstance(runner, web.AppRunner) and runner.server is not None
        manager = runner.server
        refused = runner.app.get(REFUSED, lambda status: None)
        too_long_hint = runner.app.get(TOO_LONG_HINT, "")

        def connection() -> HttpConnection:
            return HttpConnection(
                manager,
                loop=loop,
                refused=refused,
                too_long_hint=too_long_hint,
                access_log=None,
                auto_decompress=False,
                keepalive_timeout=self.limits.idle_seconds,
                lingering_time=5.0,
            )

        self._server = await loop.create_server(connection, self.host, self.port, reuse_address=True)


async def serve(app: web.Application, host: str, port: int, limits: ServerLimits = ServerLimits()) -> web.AppRunner:
    """Start serving `app`; the caller keeps the runner to `cleanup()` it."""
    # auto_decompress off: the ingest service inflates gzip itself, bounded and with our JSON errors.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
    await runner.setup()
    try:
        await _Site(runner, host, port, limits).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return runner


class PortUnavailable(UnavailableError):
    """A service could not listen where it is told to: its port is in use, or its host is not this machine's."""


def check_listen(service: str, host: str, port: int) -> None:
    """Raise PortUnavailable if `service` could not listen on host:port now. Bound as `serve`
    binds (every address of `host`, SO_REUSEADDR: a port a stopped stack left in TIME_WAIT is
    free) and let go at once: a program that takes the port in between still makes the
    service's own start fail (`serve`'s error)."""
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:  # as asyncio's server: IPv4 is bound on its own
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
    except OSError as exc:
        raise PortUnavailable(f"{service} cannot listen on {host}:{port}: {exc.strerror}") from None
