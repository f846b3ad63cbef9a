"""A service's SIGTERM is taken by its event loop between callbacks (pipeline/cli/deployment.py).

aiohttp's body parser turns whatever is raised inside it into a broken request body; a
SystemExit raised there by a plain signal handler was swallowed, and the ingest service
served on after its SIGTERM (seen in CI: it outlived its test)."""

import asyncio
import os
import signal
import time

from pipeline.cli.deployment import _until_signalled
from pipeline.cli.main import _terminate


async def _parsing() -> None:
    """Serves as aiohttp's parser would: the signal arrives while it runs, and it swallows
    anything raised inside it."""
    sent = False
    while True:
        try:
            if not sent:
                sent = True
                os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # a plain handler raises by here
        except BaseException:  # noqa: BLE001, S110 - what aiohttp's parser does
            pass
        await asyncio.sleep(0)


def test_sigterm_stops_a_service_even_when_it_lands_inside_a_parser():
    before = signal.signal(signal.SIGTERM, _terminate)  # as `wordpipe` installs it
    try:
        assert asyncio.run(asyncio.wait_for(_until_signalled(_parsing()), 5)) == signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, before)
