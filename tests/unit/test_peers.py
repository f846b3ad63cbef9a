"""What one aggregator instance makes of a peer's answer to POST /v1/shards: a part, or a
503 `peer_unavailable` that names what was wrong; never a crash (a real HTTP server here)."""

import asyncio

import pytest
from aiohttp import web

from pipeline.aggregator.peers import Peers
from pipeline.kafka.broker import free_port
from pipeline.web.app import HttpError


async def asked(answer: web.Response | None) -> dict:
    """Peers.ask against a server that gives `answer` (None: no server on the port)."""
    port = free_port()
    runner = None
    if answer is not None:
        app = web.Application()
        app.router.add_post("/v1/shards", lambda request: asyncio.sleep(0, answer))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    peers = Peers("t")
    try:
        return await peers.ask(f"http://127.0.0.1:{port}", {"view": "progress"})
    finally:
        await peers.close()
        if runner is not None:
            await runner.cleanup()


def test_a_part_is_taken():
    part = {"shards": [1, 3], "progress": {}}
    assert asyncio.run(asked(web.json_response(part))) == part


@pytest.mark.parametrize(
    "answer, says",
    [
        (web.json_response([1, 2]), "not a part"),
        (web.json_response({"counts": {}}), "not a part"),
        (web.Response(text="{not json", content_type="application/json"), "did not answer"),
        (web.json_response({"error": "rebalancing"}, status=503), "answered 503"),
        (None, "did not answer"),
    ],
)
def test_a_bad_answer_is_a_503_that_says_why(answer, says):
    with pytest.raises(HttpError) as info:
        asyncio.run(asked(answer))
    assert info.value.status == 503 and info.value.code == "peer_unavailable" and says in info.value.detail
