"""Run the HTTP services the way tests need them: an ingest service on a thread, a whole stack."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import requests

from pipeline.client import Client
from pipeline.config import Connection, Settings
from pipeline.ingest.api import IngestService
from pipeline.kafka.broker import free_port
from pipeline.run import Pipeline
from pipeline.web.server import serve
from tests.helpers import wait_for

TOKEN = "test-token"


class IngestThread:
    """An ingest service on its own event loop and thread; `url` once started."""

    def __init__(self, connection: Connection, settings: Settings) -> None:
        self.settings = settings.replace(ingest_port=free_port())
        self.service = IngestService(connection, self.settings)
        self.url = f"http://127.0.0.1:{self.settings.ingest.port}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> IngestThread:
        self.thread.start()
        self.runner = asyncio.run_coroutine_threadsafe(
            serve(self.service.app(), "127.0.0.1", self.settings.ingest.port), self.loop
        ).result(30)
        return self

    def wait_healthy(self) -> IngestThread:
        wait_for(
            lambda: requests.get(self.url + "/health", timeout=5).status_code == 200, 60, "the ingest service's health"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Services:
    settings: Settings
    connection: Connection
    ingest_url: str
    results_url: str
    client: Client

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}


class IngestProcess:
    """`wordpipe ingest-server` as its own process beside `pipeline`, its log kept, `env` added,
    on `port` (default: a free one)."""

    def __init__(
        self, pipeline: Pipeline, log: Path, env: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {
            **os.environ,
            **pipeline.settings.to_env(pipeline.connection),
            "WORDPIPE_INGEST_PORT": str(self.port),
            **(env or {}),
        }
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "ingest-server"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_for(self.healthy, 60, "the ingest service")

    def healthy(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return requests.get(self.url + "/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def chunks_sent(self) -> float:
        metrics = requests.get(self.url + "/metrics", timeout=5).text
        return float(re.search(r"^wordpipe_ingest_chunks_total (\S+)$", metrics, re.M).group(1))

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1)) / 1024

    def raw(self, request: bytes, source: str = "127.0.0.1", half_close: bool = False, timeout: float = 30) -> bytes:
        """Send `request` on a fresh connection from `source`; the response."""
        with socket.create_connection(("127.0.0.1", self.port), source_address=(source, 0)) as sock:
            sock.settimeout(timeout)
            sock.sendall(request)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            return read_response(sock)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def read_response(sock: socket.socket) -> bytes:
    """One HTTP response with a Content-Length (every error has one); b"" if the connection closed first."""
    answer = b""
    try:
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    except (ConnectionResetError, TimeoutError):
        pass
    return answer


def _length(answer: bytes) -> int:
    found = re.search(rb"(?im)^content-length: *(\d+)", answer.partition(b"\r\n\r\n")[0])
    return int(found.group(1)) if found else 0
