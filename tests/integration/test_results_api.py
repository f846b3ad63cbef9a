"""The results API on a live pipeline: words, top-K, paged totals, the event stream, metrics."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter

import pytest
import requests

from pipeline import tokenize
from pipeline.aggregator import paging
from pipeline.aggregator.ranking import rank
from tests.chinese import chinese_bytes
from tests.helpers import SAMPLE, wait_for, wordpipe
from tests.services import TOKEN

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def counted(services):
    """The sample, uploaded and counted; returns the totals."""
    services.client.ingest(SAMPLE.read_bytes(), name="sample")
    services.client.wait_counted(timeout=120)
    return Counter(dict(services.client.totals()))


def test_a_word_is_looked_up_through_the_tokenizer(services, counted):
    assert services.client.count("The") == services.client.count("the") == counted["the"] > 0
    assert services.client.count("neverseenword") == 0
    for not_one_word in ("two words", "!!!"):
        reply = requests.get(f"{services.results_url}/v1/words/{not_one_word}", headers=services.auth())
        assert reply.status_code == 404 and reply.json()["error"] == "not_a_word"


def test_top_k_is_shaped_like_run_json_and_exact(services, counted):
    top = services.client.top(7)
    assert list(top) == ["total_words", "distinct_words", "counts"]
    assert top["total_words"] == sum(counted.values()) and top["distinct_words"] == len(counted)
    assert list(top["counts"].items()) == rank(counted, 7)
    for bad in ("0", "10001", "x"):
        reply = requests.get(services.results_url + "/v1/top", params={"k": bad}, headers=services.auth())
        assert reply.status_code == 400 and "k:" in reply.json()["detail"]


def test_totals_page_through_every_word_once_in_order(services, counted):
    pages, cursor = [], ""
    while True:
        body = requests.get(
            services.results_url + "/v1/totals", params={"limit": 333, "cursor": cursor}, headers=services.auth()
        ).json()
        pages.append(body["totals"])
        if body["next"] is None:
            break
        cursor = body["next"]
    words = [w for page in pages for w in page]
    assert words == sorted(counted) and len(pages) == -(-len(counted) // 333)
    assert Counter({w: n for page in pages for w, n in page.items()}) == counted


def test_wordpipe_totals_exports_every_total_as_json_csv_or_a_table(services, counted):
    """`wordpipe totals`: the JSON is `wordpipe run --json`'s; CSV and the table say the same."""
    import csv
    import io

    flags = ["--url", services.results_url, "--token", TOKEN]
    exported = wordpipe("totals", "--json", *flags)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout) == json.loads(wordpipe("reference", str(SAMPLE), "--json").stdout)
    rows = list(csv.reader(io.StringIO(wordpipe("totals", "--csv", "--min-count", "5", *flags).stdout.decode())))
    assert rows[0] == ["word", "count"]
    assert [(w, int(n)) for w, n in rows[1:]] == [(w, n) for w, n in rank(counted, len(counted)) if n >= 5]
    table = wordpipe("totals", "--min-count", "100", *flags).stdout.decode().splitlines()
    assert len(table) == 2 + sum(1 for n in counted.values() if n >= 100)
    assert table[-1] == f"{sum(counted.values())} words, {len(counted)} distinct"
    both = wordpipe("totals", "--json", "--csv", *flags)
    assert both.returncode == 2 and b"not allowed with argument" in both.stderr


def test_the_event_stream_sends_the_top_k_as_it_changes(services, counted):
    events = []
    got_two = threading.Event()

    def listen():
        with requests.get(
            services.results_url + "/v1/top/events", params={"k": 3, "token": TOKEN}, stream=True, timeout=60
        ) as reply:
            assert reply.headers["Content-Type"].startswith("text/event-stream")
            for line in reply.iter_lines(decode_unicode=True):
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if len(events) == 2:
                        got_two.set()
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    first_word = next(iter(services.client.top(1)["counts"]))
    services.client.ingest(f"{first_word} ".encode() * 1000, name="more")
    assert got_two.wait(60), events
    assert events[0]["status"]["complete"] and "counts" in events[0]
    assert events[1]["counts"][first_word] == events[0]["counts"][first_word] + 1000


def test_every_service_serves_prometheus_metrics(services, counted):
    ingest = requests.get(services.ingest_url + "/metrics").text
    results = requests.get(services.results_url + "/metrics").text
    assert "wordpipe_ingest_documents_total" in ingest and "wordpipe_ingest_broker_up 1.0" in ingest
    assert 'wordpipe_http_requests_total{route="/v1/documents",service="ingest",status="202"}' in ingest
    distinct = services.client.top(1)["distinct_words"]
    assert f"wordpipe_aggregator_distinct_words {float(distinct)}" in results
    assert 'wordpipe_aggregator_parts_total{outcome="applied"}' in results

    def workers():  # the workers' own figures, from their periodic reports
        found = re.findall(
            r'^wordpipe_worker_chunks_total\{worker="([^"]+)"\} (\S+)',
            requests.get(services.results_url + "/metrics").text,
            re.M,
        )
        return len(found) == 2 and sum(float(n) for _, n in found) > 0

    wait_for(workers, 30, "both workers' chunk counts in the metrics")


def test_windowed_totals_add_up_to_the_totals(services, counted):
    body = requests.get(services.results_url + "/v1/windows", params={"k": 5}, headers=services.auth()).json()
    assert body["window_seconds"] == services.settings.aggregator.window_seconds and body["starts"]
    per_window = [
        requests.get(
            services.results_url + "/v1/windows", params={"start": start, "k": 10_000}, headers=services.auth()
        ).json()
        for start in body["starts"]
    ]
    assert sum(w["total_words"] for w in per_window) == services.client.top(1)["total_words"]
    the = requests.get(services.results_url + "/v1/windows/The", headers=services.auth()).json()
    assert the["word"] == "the" and [w["start"] for w in the["windows"]] == body["starts"]
    assert sum(w["count"] for w in the["windows"]) == services.client.count("the")
    missing = requests.get(services.results_url + "/v1/windows", params={"start": 1}, headers=services.auth())
    assert missing.status_code == 404 and "no kept window" in missing.json()["detail"]


def test_chinese_words_are_looked_up_as_the_workers_count_them(services, counted):
    """After the tests that compare with `counted`: it adds to the totals."""
    text = chinese_bytes(7, 30_000)
    expected = tokenize.count(tokenize.decode(text).text)
    before = services.client.count("数据")
    services.client.ingest(text, name="chinese")
    services.client.wait_counted(timeout=120)
    assert services.client.count("数据") == before + expected["数据"] > 0
    assert services.client.count("数据处理") == expected["数据处理"] > 0
    done = wordpipe("count", "数据", "--url", services.results_url, "--token", TOKEN)
    assert done.returncode == 0 and done.stdout.decode().strip() == str(before + expected["数据"])
    reply = requests.get(f"{services.results_url}/v1/words/Mesos和Docker", headers=services.auth())
    assert reply.status_code == 404 and "3 words by the tokenizer" in reply.json()["detail"]
    # jieba finds 中出 in this sentence, but cuts it apart alone: asked for, it is still found.
    assert tokenize.tokens("中出") == ["中", "出"]
    services.client.ingest("我们中出了一个叛徒。".encode(), name="in context")
    services.client.wait_counted(timeout=120)
    assert services.client.count("中出") == 1


def test_totals_page_past_words_too_long_for_a_url(services, counted):
    """A page may end on a word of 20,000 characters: its cursor still fits in the URL (a
    client sends it back as a query parameter)."""
    long = ["q" * 20_000, "q" * 300 + "a", "q" * 300 + "b", "q" * paging.CURSOR_CHARS + "é", "q" * paging.CURSOR_CHARS]
    services.client.ingest(" ".join(long).encode(), name="long words")
    services.client.wait_counted(timeout=120)
    seen, cursor = [], "pzz"  # just before them: a client may start after any word
    while len(seen) < len(long) + 1:
        reply = requests.get(
            services.results_url + "/v1/totals", params={"limit": 1, "cursor": cursor}, headers=services.auth()
        )
        assert reply.status_code == 200, reply.text[:300]
        seen += reply.json()["totals"]
        cursor = reply.json()["next"]
        assert len(cursor) <= paging.CURSOR_CHARS + paging.DIGEST_CHARS
    assert set(seen[: len(long)]) == set(long) and len(set(seen)) == len(seen)
    assert not seen[-1].startswith("q" * 300)
