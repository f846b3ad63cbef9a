"""The other aggregator instances, asked over HTTP for their shards' part of an answer.

Every member of the aggregators' consumer group gets the whole assignment from faust,
with each member's results API URL (its `canonical_url`), so any instance knows which
instance owns each shard (app.py: `Aggregator.peers`). api.py asks those peers with
POST /v1/shards and merges their parts (views.py). A peer that does not answer makes the
question unanswerable for now: 503 with Retry-After, as while shards move.
"""

from __future__ import annotations

import aiohttp

from pipeline.web.app import HttpError

TIMEOUT = 10.0  # seconds for a peer's part: a part is computed like a local answer


class Peers:
    def __init__(self, token: str | None) -> None:
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.session: aiohttp.ClientSession | None = None  # made on the serving loop

    async def ask(self, url: str, question: dict) -> dict:
        """The part of the instance at `url` (a results API) for `question`."""
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT), headers=self.headers)
        try:
            async with self.session.post(f"{url}/v1/shards", json=question) as response:
                if response.status == 200:
                    part = await response.json()
                    if isinstance(part, dict) and isinstance(part.get("shards"), list):
                        return part
                    why = f"answered with what is not a part: {str(part)[:200]}"
                else:
                    why = f"answered {response.status}: {(await response.text())[:200]}"
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            why = f"did not answer ({type(exc).__name__}: {exc})"
        raise HttpError(503, "peer_unavailable", f"the aggregator at {url} {why}; ask again", {"Retry-After": "1"})

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
