"""Headless Chromium driven over the DevTools protocol (aiohttp's websocket client): wait
until a page shows something, read it, screenshot it. No browser download: Debian's Chromium."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import tempfile
import time

import aiohttp

from pipeline.kafka.broker import free_port

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def _session(
    chromium: str, url: str, expression: str, timeout: float, size: tuple[int, int]
) -> tuple[object, bytes]:
    port = free_port()
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [
                chromium,
                *FLAGS,
                f"--remote-debugging-port={port}",
                f"--user-data-dir={profile}",
                f"--window-size={size[0]},{size[1]}",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            async with aiohttp.ClientSession() as http:
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/json") as reply:
                            pages = [t for t in await reply.json() if t["type"] == "page"]
                        if pages:
                            break
                    except aiohttp.ClientError:
                        pass
                    assert time.monotonic() < deadline, "chromium did not open its debugging port"
                    await asyncio.sleep(0.2)
                async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    calls = 0

                    async def call(method: str, **params: object) -> dict:
                        nonlocal calls
                        calls += 1
                        await ws.send_str(json.dumps({"id": calls, "method": method, "params": params}))
                        async for msg in ws:
                            body = json.loads(msg.data)
                            if body.get("id") == calls:
                                return body["result"]
                        raise AssertionError("chromium closed the debugging connection")

                    while True:
                        result = await call("Runtime.evaluate", expression=expression, returnByValue=True)
                        value = result["result"].get("value")
                        if value:
                            break
                        assert time.monotonic() < deadline, f"the page never showed {expression!r}"
                        await asyncio.sleep(0.2)
                    shot = await call("Page.captureScreenshot", format="png")
                    return value, base64.b64decode(shot["data"])
        finally:
            # Chromium forks renderers and helpers that keep writing the profile: stop them all.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            gone_by = time.monotonic() + 10
            while time.monotonic() < gone_by:
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)


def render(
    chromium: str, url: str, expression: str, timeout: float = 60, size: tuple[int, int] = (1100, 900)
) -> tuple[object, bytes]:
    """Open `url`, wait until the JavaScript `expression` is truthy; returns its value and a PNG screenshot."""
    return asyncio.run(_session(chromium, url, expression, timeout, size))
