"""No record and no upload can stop the counting (issue 29's cases, each of which stopped it):
a record is counted exactly or dead-lettered with its reason, and everything around it is
counted as `wordpipe reference` counts it.

- a source record of JSON nested 100,000 deep (the worker died on it, forever);
- a word of 2 MB in a source record, and 24 words of 64,999 characters in one upload that
  fell in one state record (the aggregator's state record passed Kafka's 1 MB limit);
- a vocabulary whose state outgrew one record (no hostile input: just many words).
"""

from __future__ import annotations

import json
import random
import string
import time

import pytest
from kafka import KafkaProducer

from pipeline.sharding import Router
from tests.helpers import SAMPLE, create_topics, wordpipe

pytestmark = pytest.mark.e2e

LINES = SAMPLE.read_text(encoding="utf-8").splitlines()
# The state is made durable before a run can read its totals: an aggregator that cannot write
# it fails while the test still looks.
FAST_FLUSH = {"WORDPIPE_FLUSH_INTERVAL": "0.05"}


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    create_topics(bootstrap, {topic: 4})
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=16 << 20)
    for value in values:
        producer.send(topic, value)
    producer.flush()
    producer.close()


def reference(text: str) -> dict:
    done = wordpipe("reference", "-", "--json", input=text.encode())
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def run(*args: str, env: dict[str, str] | None = None):
    done = wordpipe("run", *args, "--json", "-q", timeout=300, env=env)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return json.loads(done.stdout), done.stderr.decode()


def test_json_nested_100000_deep_is_dead_lettered_and_the_rest_counted(broker):
    deep = b"[" * 100_000 + b"]" * 100_000
    texts = LINES[:500]
    values = [json.dumps({"text": line}).encode() for line in texts]
    values[250:250] = [deep, b'{"text": ' + deep + b"}"]
    produce(broker.bootstrap, "feed", values)
    counted, stderr = run("--source", "feed:$.text", "--bootstrap", broker.bootstrap)
    assert counted == reference("\n".join(texts))
    assert "2 source record(s) held no text" in stderr, stderr[-2000:]


def test_a_word_of_2_mb_in_a_record_is_counted_exactly(broker):
    word = "".join(random.Random(2).choices(string.ascii_lowercase, k=2_000_000))
    texts = [*LINES[:300], f"before {word} after", *(LINES * 20)]  # a tail: the state is made durable meanwhile
    produce(broker.bootstrap, "feed", [line.encode() for line in texts])
    counted, stderr = run("--source", "feed", "--bootstrap", broker.bootstrap, env=FAST_FLUSH)
    assert "exited with status" not in stderr, stderr[-3000:]  # no service died on the way
    assert counted == reference("\n".join(texts))
    assert counted["counts"][word] == 1


def colliding_words(count: int, length: int) -> list[str]:
    """Words of `length` characters that the former layout (8 shards of 16 buckets) kept in one
    state record."""
    router, rng, words = Router(8, 16), random.Random(5), []
    while len(words) < count:
        word = "".join(rng.choices(string.ascii_lowercase, k=length))
        if router.route(word) == (3, 7):
            words.append(word)
    return words


def test_long_words_in_one_upload_are_counted_and_the_stack_stays_up(services):
    words = colliding_words(24, 64_999)
    text = " ".join(words) + " " + " ".join(LINES[:200])
    services.client.ingest(text.encode(), name="long words")
    services.client.wait_counted(timeout=120)
    time.sleep(3)  # several flush intervals: the counts made durable, and the stack still up
    assert {w: services.client.count(w) for w in words} == dict.fromkeys(words, 1)
    assert services.client.count("the") == reference(" ".join(LINES[:200]))["counts"]["the"]


def test_a_vocabulary_larger_than_a_record_counts_exactly(tmp_path):
    """150,000 distinct words in one shard: the former layout's state record passed 1 MB."""
    rng = random.Random(3)
    words = sorted({"".join(rng.choices(string.ascii_lowercase, k=10)) for _ in range(150_000)})
    text = "\n".join(" ".join(words[i : i + 20]) for i in range(0, len(words), 20))
    path = tmp_path / "vocabulary.txt"
    path.write_text(text)
    env = {"WORDPIPE_PARTIAL_PARTITIONS": "1", "WORDPIPE_BUCKETS": "1", **FAST_FLUSH}
    counted, _ = run(str(path), env=env)
    assert counted == reference(text)
