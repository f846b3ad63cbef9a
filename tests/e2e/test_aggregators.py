"""Two aggregator instances share the shards, and either answers every question for all of
them, exactly as one aggregator would (issue 32): top-K, words, the whole /v1/totals,
POST /v1/words, windows, status and progress."""

import json
import random

import pytest
import requests

from pipeline import config
from pipeline.client import Client
from pipeline.ingest.sources import resolve
from pipeline.reference import count_sources
from pipeline.run import Pipeline

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def counted(corpora, tmp_path_factory):
    """shakespeare.txt and the Chinese seed article counted by 2 workers and 2 aggregators."""
    paths = [corpora / "shakespeare.txt", corpora / "seed-mesos-docker-zh.txt"]
    sources = resolve(map(str, paths))
    with Pipeline(config.Settings(workers=2, aggregators=2, tokens="t")) as p:
        report = p.ingest(sources)
        p.wait_counted(report, timeout=240)
        urls = [f"http://127.0.0.1:{port}" for _, port in p.instances]
        yield urls, count_sources(resolve(map(str, paths))), p


def ask(url: str, path: str, **params) -> dict:
    response = requests.get(url + path, params=params, headers={"Authorization": "Bearer t"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_each_instance_owns_some_shards_and_answers_for_all(counted):
    urls, _, _ = counted
    owned = [set(ask(url, "/health")["shards"]) for url in urls]
    assert all(owned) and owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == set(range(8)), owned
    progress = [ask(url, "/v1/progress") for url in urls]
    assert progress[0] == progress[1] and progress[0]["shards"].keys() == {str(s) for s in range(8)}
    statuses = [{k: v for k, v in ask(url, "/v1/status").items() if k != "pipeline"} for url in urls]
    assert statuses[0] == statuses[1]
    assert statuses[0]["complete"] and statuses[0]["shards"]["owned"] == list(range(8))


def test_top_and_every_total_equal_the_reference_on_either_instance(counted):
    urls, expected, _ = counted
    ranked = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))
    for url in urls:
        top = ask(url, "/v1/top", k=25)
        assert top["counts"] == dict(ranked[:25])
        assert top["total_words"] == sum(expected.values()) and top["distinct_words"] == len(expected)
        totals = dict(Client(results_url=url, token="t").totals(page=3000))  # pages cross the shards' words
        assert totals == expected


def test_words_asked_of_either_instance(counted):
    urls, expected, _ = counted
    rng = random.Random(7)
    sample = rng.sample(sorted(expected), 200) + ["docker", "的", "notawordanywhere"]
    for url in urls:
        client = Client(results_url=url, token="t")
        answers = client.lookup(sample)
        assert [a["count"] for a in answers] == [expected.get(w, 0) for w in sample]
        for word in sample[:20]:
            assert ask(url, f"/v1/words/{requests.utils.quote(word, safe='')}")["count"] == expected[word]


def test_windows_asked_of_either_instance(counted):
    urls, expected, _ = counted
    answers = [ask(url, "/v1/windows", k=10) for url in urls]
    assert answers[0] == answers[1]
    assert sum(ask(urls[0], "/v1/windows", start=s)["total_words"] for s in answers[0]["starts"]) == sum(
        expected.values()
    )
    for word in ("the", "docker", "容器"):
        per_window = [ask(url, f"/v1/windows/{requests.utils.quote(word)}") for url in urls]
        assert per_window[0] == per_window[1]
        assert sum(w["count"] for w in per_window[0]["windows"]) == expected[word]


def test_a_question_for_peers_is_checked(counted):
    urls, _, _ = counted
    response = requests.post(
        urls[0] + "/v1/shards", data=json.dumps({"view": "nothing"}), headers={"Authorization": "Bearer t"}, timeout=5
    )
    assert response.status_code == 400 and response.json()["error"] == "bad_question", response.text
