"""Run the HTTP services the way tests need them: an ingest service on a thread, a whole stack."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import requests

from pipeline.broker import free_port
from pipeline.client import Client
from pipeline.config import Settings
from pipeline.ingest.service import IngestService
from pipeline.web import serve
from tests.conftest import wait_for

TOKEN = "test-token"


class IngestThread:
    """An ingest service on its own event loop and thread; `url` once started."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings.replace(ingest_port=free_port())
        self.service = IngestService(self.settings, bootstrap)
        self.url = f"http://127.0.0.1:{self.settings.ingest_port}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> IngestThread:
        self.thread.start()
        self.runner = asyncio.run_coroutine_threadsafe(
            serve(self.service.app(), "127.0.0.1", self.settings.ingest_port), self.loop).result(30)
        return self

    def wait_healthy(self) -> IngestThread:
        wait_for(lambda: requests.get(self.url + "/health", timeout=5).status_code == 200, 60, "the ingest service's health")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Services:
    settings: Settings
    bootstrap: str
    ingest_url: str
    results_url: str
    client: Client

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}
