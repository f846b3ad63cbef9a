"""Source topics, pure: specs, a record's text, and what the run waits on."""

import json

import pytest

from pipeline import codec, config, source_topics
from pipeline.aggregator.state import ShardState, pack, unpack
from pipeline.progress import records_counted, sources_counted
from pipeline.source_topics import NoText, SourceTopicError, parse
from tests.unit.test_codec import conforms


def test_a_spec_is_a_topic_and_maybe_a_path():
    assert parse("lines") == source_topics.SourceTopic("lines", (), "lines")
    assert parse("tweets:$.user.bio[2].text").path == ("user", "bio", 2, "text")


@pytest.mark.parametrize(
    "spec, says",
    [
        ("bad topic", "not a Kafka topic name"),
        ("t:text", "starts with '$'"),
        ("t:$", "names no field"),
        ("t:$.a..b", "cannot read the path at '..b'"),
        ("t:$.a[x]", "cannot read the path at '[x]'"),
    ],
)
def test_a_bad_spec_says_what_is_wrong(spec, says):
    with pytest.raises(SourceTopicError, match=f"source {spec!r}.*{says}".replace("[", r"\[").replace("$", r"\$")):
        parse(spec)


def test_the_setting_refuses_a_topic_twice_or_one_of_wordpipes_own():
    with pytest.raises(config.ConfigError, match="named twice"):
        config.Settings(sources="a,a:$.x")
    with pytest.raises(config.ConfigError, match="'partials' is one of wordpipe's own topics"):
        config.Settings(sources="partials")
    assert [s.topic for s in config.Settings(sources="a, b:$.t").topics.source_list] == ["a", "b"]


def test_the_text_of_a_value_is_read_as_a_file_is():
    assert parse("t").text("der Bär".encode()) == ("der Bär", 0)
    assert parse("t").text(b"caf\xc3 ok\x0b\x1b[1m") == ("caf\ufffd ok\x0b\x1b[1m", 1)  # as tokenize.decode
    body = json.dumps({"user": {"bio": ["x", "y", {"text": "hello"}]}}).encode()
    assert parse("t:$.user.bio[2].text").text(body) == ("hello", 0)


@pytest.mark.parametrize(
    "spec, value, reason",
    [
        ("t", None, "no value (a tombstone)"),
        ("t", b"\x02\x00\x08avro", "binary (a NUL byte at 1), not text"),
        ("t:$.text", b'{"text": "\xff"}', "not JSON"),
        ("t:$.text", b"plain words", "not JSON"),
        ("t:$.text", b'{"body": "x"}', "has no field $.text"),
        ("t:$.a[3]", b'{"a": [1]}', "has no field $.a[3]"),
        ("t:$.text", b'{"text": 42}', "field $.text is int, not text"),
    ],
)
def test_a_value_without_text_says_why(spec, value, reason):
    with pytest.raises(
        NoText, match=reason.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("$", r"\$")
    ):
        parse(spec).text(value)


def test_partials_of_a_source_window_round_trip_and_a_bad_input_is_refused():
    part = codec.PartialMessage(("tweets:3", 10, 20), 0, {1: {"a": 2}}, {}, {}, 5)
    (record,) = codec.encode_partials(0, [part])
    conforms(record, "partials.v1.json")
    assert codec.decode_partials(record, 0) == [part]
    bad = codec.PartialMessage(("no partition", 10, 20), 0, {}, {}, {}, 5)
    with pytest.raises(codec.CodecError, match="topic:partition"):
        codec.decode_partials(codec.encode_partials(0, [bad])[0], 0)


def test_a_source_window_is_applied_once_and_survives_a_checkpoint():
    state = ShardState(0)
    part = codec.PartialMessage(("tweets:3", 10, 20), 0, {1: {"a": 2}}, {}, {}, 5)
    assert state.apply(part) and not state.apply(part)
    loaded = ShardState.load(0, [unpack(pack(state.take_batch(checkpoint=True)))])
    assert not loaded.apply(part), "a replay after recovery counted again"
    assert loaded.totals() == {"a": 2}
    assert loaded.progress()["tweets:3"].to_list() == [[10, 20]]


def test_a_run_waits_for_every_shard_to_reach_each_source_end():
    progress = {"partitions": 2, "shards": {"0": {"t:0": [[0, 6]], "t:1": [[0, 3]]}, "1": {"t:0": [[0, 4]]}}}
    extents = {"t:0": (0, 6), "t:1": (0, 3), "t:2": (5, 5)}  # t:2 is empty
    assert not sources_counted(progress, extents)
    assert records_counted(progress, extents) == 4  # what both shards have: t:0's first 4
    progress["shards"]["1"] = {"t:0": [[0, 2], [4, 6]], "t:1": [[0, 3]]}  # a gap no record fills
    assert sources_counted(progress, extents)
    assert not sources_counted({"partitions": 3, "shards": progress["shards"]}, extents), "a shard unowned"
