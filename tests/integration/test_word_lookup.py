"""Looking words up in a body (POST /v1/words): any length, many at once. A module of its
own: its words would change the totals test_results_api.py compares with the reference."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

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


# Bodies of every shape but the one asked for: each is a 400 with the documented error body.
# Some are small enough to be read on the API's event loop, the others in its lookup process.
HOSTILE = {
    "arrays nested 100,000 deep": b"[" * 100_000,
    "objects nested 100,000 deep": b'{"a": ' * 100_000,
    "words nested 100,000 deep": b'{"words": ' + b"[" * 100_000,
    "arrays nested 1,000 deep, closed": b"[" * 1000 + b"]" * 1000,
    "an integer of 5,000 digits": b'{"words": [' + b"9" * 5000 + b"]}",
    "a number beyond a float": b'{"words": [1e999999]}',
    "NaN": b'{"words": [NaN]}',
    "invalid UTF-8": b'{"words": ["\xff\xfe"]}',
    "invalid UTF-8 in a large body": b'{"words": ["' + b"a" * 100_000 + b'\xc3"]}',
    "cut off": b'{"words": ["whale"',
    "empty": b"",
    "null": b"null",
    "a list of words": b'["whale"]',
    "words not a list": b'{"words": "whale"}',
    "words not strings": b'{"words": [["whale"], 1, null]}',
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_body_of_any_other_shape_is_a_400(services, body):
    reply = requests.post(
        services.results_url + "/v1/words",
        data=body,
        headers={**services.auth(), "Content-Type": "application/json"},
        timeout=60,
    )
    assert reply.status_code == 400, reply.text[:300]
    assert reply.headers["Content-Type"].startswith("application/json")
    error = reply.json()
    assert set(error) == {"error", "detail"} and error["error"] in ("bad_json", "bad_words"), error


def test_a_body_over_1_mib_gets_a_413_that_says_so(services):
    reply = requests.post(
        services.results_url + "/v1/words",
        data=b'{"words": ["' + b"a" * (1 << 20) + b'"]}',
        headers={**services.auth(), "Content-Type": "application/json"},
        timeout=60,
    )
    assert reply.status_code == 413, reply.text[:300]
    assert reply.json() == {
        "error": "too_large",
        "detail": "the body is over 1,048,576 bytes; send fewer words at a time (one word may take all of it)",
    }


def test_the_heaviest_lookups_do_not_stall_other_requests(services):
    """8 of the heaviest POST /v1/words at once, each ~1 s of the tokenizer's time (U+FDFA
    expands 18x under NFKC): another client's GET /v1/top is answered meanwhile, not behind
    them (up to 4 s when lookups ran on the API's event loop). A bound a loaded 2-core
    machine keeps; bench/lookup_stall.py measures the figure against its 100 ms target."""
    many = json.dumps({"words": ["\ufdfa" * 340] * 1000}, ensure_ascii=False).encode()  # 1,000 words
    one = json.dumps({"words": ["\ufdfa" * 327_680]}, ensure_ascii=False).encode()  # one word of 960 KiB
    headers = {**services.auth(), "Content-Type": "application/json"}

    def look_up(body: bytes) -> dict:
        reply = requests.post(services.results_url + "/v1/words", data=body, headers=headers, timeout=300)
        assert reply.status_code == 200, reply.text[:300]
        return reply.json()["words"][0]

    waits = []
    with ThreadPoolExecutor(8) as pool, requests.Session() as http:
        lookups = [pool.submit(look_up, body) for body in [many, one] * 4]
        while not all(lookup.done() for lookup in lookups):
            started = time.perf_counter()
            http.get(services.results_url + "/v1/top", headers=services.auth(), timeout=60).raise_for_status()
            waits.append(time.perf_counter() - started)
            time.sleep(0.01)
        answers = [lookup.result() for lookup in lookups]
    # 340 x U+FDFA is 3 x 340 + 1 words by the tokenizer: each gives 4, and the last runs into the next's first.
    assert [(a["word"], a["count"], a["detail"].split(" is ")[1]) for a in answers[:2]] == [
        (None, 0, "1021 words by the tokenizer, so it has no total; ask for exactly one word"),
        (None, 0, "983041 words by the tokenizer, so it has no total; ask for exactly one word"),
    ]
    assert max(waits) < 0.5, f"GET /v1/top waited up to {max(waits):.2f} s behind the lookups: {sorted(waits)[-5:]}"
    assert len(waits) >= 5, f"the lookups were over before GET /v1/top could be timed beside them: {waits}"
