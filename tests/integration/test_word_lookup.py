"""Looking words up in a body (POST /v1/words): any length, many at once. A module of its
own: its words would change the totals test_results_api.py compares with the reference."""

from __future__ import annotations

import json

import pytest
import requests
from requests.utils import quote

from tests.helpers import wordpipe
from tests.services import TOKEN

pytestmark = pytest.mark.e2e


def test_a_word_too_long_for_a_url_is_looked_up_in_a_body(services):
    """~3,000 non-ASCII letters percent-encode past the 8 KiB request line: the GET says how
    to ask instead, and POST /v1/words answers it, with many words at once."""
    long = "é" * 3000
    services.client.ingest(f"{long} {long} short. The the".encode(), name="long words")
    services.client.wait_counted(timeout=120)
    reply = requests.get(services.results_url + "/v1/words/" + quote(long, safe=""), headers=services.auth())
    assert reply.status_code == 431 and reply.headers["Content-Type"].startswith("application/json")
    assert "POST /v1/words" in reply.json()["detail"], reply.json()
    assert services.client.count(long.upper()) == 2  # NFKC and casefold, as GET would
    answers = services.client.lookup([long, "The", "two words", "short"])
    assert answers == [
        {"asked": long, "word": long, "count": 2},
        {"asked": "The", "word": "the", "count": 2},
        {
            "asked": "two words",
            "word": None,
            "count": 0,
            "error": "not_a_word",
            "detail": "'two words' is 2 words by the tokenizer, so it has no total; ask for exactly one word",
        },
        {"asked": "short", "word": "short", "count": 1},
    ]
    url, auth = services.results_url + "/v1/words", services.auth()
    for body, headers, status, code in [
        (b"{not json", {"Content-Type": "application/json"}, 400, "bad_json"),
        (b'{"words": []}', {"Content-Type": "application/json"}, 400, "bad_words"),
        (json.dumps({"words": ["x"] * 1001}).encode(), {"Content-Type": "application/json"}, 400, "bad_words"),
        (b'{"words": [1]}', {"Content-Type": "application/json"}, 400, "bad_words"),
        (b"words=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        (b'{"words": ["' + b"a" * (1 << 20) + b'"]}', {"Content-Type": "application/json"}, 413, None),
    ]:
        reply = requests.post(url, data=body, headers={**auth, **headers}, timeout=30)
        assert reply.status_code == status and (code is None or reply.json()["error"] == code), reply.text[:300]
    done = wordpipe("count", long, "--url", services.results_url, "--token", TOKEN)
    assert done.returncode == 0 and done.stdout.strip() == b"2", done.stderr
