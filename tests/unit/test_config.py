import pytest

from pipeline import aggregator, config, worker


def test_precedence_file_env_flags(tmp_path):
    f = tmp_path / "wp.toml"
    f.write_text('workers = 3\nchunk_size = 4096\nchunks_topic = "c"\n')
    s = config.load(f, env={"WORDPIPE_WORKERS": "5", "WORDPIPE_CHUNK_SIZE": "8192"}, overrides={"workers": 7})
    assert (s.worker.count, s.text.chunk_size, s.topics.chunks) == (7, 8192, "c")


def test_config_file_from_env(tmp_path):
    f = tmp_path / "wp.toml"
    f.write_text("partial_partitions = 4\n")
    assert config.load(env={"WORDPIPE_CONFIG": str(f)}).topics.partial_partitions == 4


def connect(env: dict[str, str], embedded: str | None = None) -> config.Connection:
    return config.Connection.to(config.load(env=env).kafka, embedded=embedded)


def test_the_group_session_defaults_to_short_on_the_embedded_broker_only():
    assert connect({}, embedded="127.0.0.1:9").session_timeout_ms == config.EMBEDDED_SESSION_TIMEOUT_MS
    assert connect({"WORDPIPE_BOOTSTRAP": "k:9092"}).session_timeout_ms == config.CLUSTER_SESSION_TIMEOUT_MS
    given = {"WORDPIPE_BOOTSTRAP": "k:9092", "WORDPIPE_SESSION_TIMEOUT_MS": "9000"}
    assert connect(given).session_timeout_ms == 9000


def test_a_connection_hands_children_the_address_and_the_session_it_resolved():
    """A child sees an address, not "embedded": it must keep the embedded broker's short session."""
    child_env = connect({}, embedded="127.0.0.1:9").to_env()
    assert child_env == {"WORDPIPE_BOOTSTRAP": "127.0.0.1:9", "WORDPIPE_SESSION_TIMEOUT_MS": "2000"}
    child = connect(child_env)
    assert (child.bootstrap, child.session_timeout_ms) == ("127.0.0.1:9", 2000)
    env = config.Settings(session_timeout_ms=9000).to_env(connect({}, embedded="127.0.0.1:9"))
    # The connection the children are to use wins over the settings it was not made from.
    assert (env["WORDPIPE_BOOTSTRAP"], env["WORDPIPE_SESSION_TIMEOUT_MS"]) == ("127.0.0.1:9", "2000")
    assert env["WORDPIPE_CHUNKS_TOPIC"] == "chunks"


def test_no_connection_without_an_address_says_why():
    with pytest.raises(config.ConfigError, match=r"bootstrap: workers need one; give --bootstrap"):
        config.Connection.to(config.load(env={}).kafka, why="workers need one")


def test_empty_bootstrap_means_embedded():
    assert config.load(env={"WORDPIPE_BOOTSTRAP": ""}).kafka.embedded
    assert not config.load(env={"WORDPIPE_BOOTSTRAP": "k:9092"}).kafka.embedded


def test_settings_come_in_sections_under_their_flat_names():
    s = config.Settings(workers=3, chunks_topic="c", kafka_sasl_username="u", aggregator_port=9)
    assert (s.worker.count, s.topics.chunks, s.kafka.sasl_username, s.aggregator.port) == (3, "c", "u", 9)
    changed = s.replace(workers=4)
    assert (changed.worker.count, changed.topics.chunks, s.worker.count) == (4, "c", 3)
    assert config.Settings(**{name: getattr(s, name) for name in config.SECTIONS}) == s
    assert config.load(env=s.to_env()) == s  # children rebuild the same settings from the variables
    assert len(config.FLAT) == len(set(config.FLAT.values())), "two flat names for one setting"
    assert config.Settings().service.token_missing
    assert (
        not config.Settings(tokens="t").service.token_missing and not config.Settings(auth="none").service.token_missing
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"env": {"WORDPIPE_WORKERS": "two"}}, "workers: expected int, got 'two' (from $WORDPIPE_WORKERS)"),
        ({"env": {"WORDPIPE_CHUNK_SIZE": "2000000"}}, "chunk_size: 2000000 bytes; a chunk and its envelope must fit"),
        ({"env": {"WORDPIPE_CHUNK_SIZE": "1000000"}}, "message limit, so at most 983040 (960 KiB)"),
        ({"env": {"WORDPIPE_FLUSH_INTERVAL": "0"}}, "flush_interval: must be > 0"),
        ({"env": {"WORDPIPE_AGGREGATORS": "0"}}, "aggregators: must be >= 1"),
        ({"env": {"WORDPIPE_AGGREGATOR_URL": "127.0.0.1:8081/x"}}, "aggregator_url: expected http://host:port"),
        ({"overrides": {"partial_partitions": 0}}, "partial_partitions: must be >= 1"),
        ({"overrides": {"totals_topic": "chunks"}}, "topic names must be distinct"),
        ({"overrides": {"nope": 1}}, "nope: unknown setting"),
        ({"env": {"WORDPIPE_BACKEND": "k8s"}}, "backend: 'k8s' is not one of local, docker"),
        ({"env": {"WORDPIPE_WORKER_CPUS": "0"}}, "worker_cpus: must be > 0"),
        ({"env": {"WORDPIPE_WORKER_MEM_MB": "32"}}, "worker_mem_mb: must be >= 64"),
        ({"env": {"WORDPIPE_SESSION_TIMEOUT_MS": "500"}}, "session_timeout_ms: must be >= 1000"),
        ({"env": {"WORDPIPE_AGGREGATOR_ALONE": "maybe"}}, "aggregator_alone: expected bool, got 'maybe'"),
        (
            {"env": {"WORDPIPE_AGGREGATOR_ALONE": "true", "WORDPIPE_AGGREGATORS": "2"}},
            "aggregator_alone: one instance reads every shard, but aggregators is 2",
        ),
    ],
)
def test_bad_settings_name_the_field(kwargs, message):
    with pytest.raises(config.ConfigError) as info:
        config.load(**{"env": {}, **kwargs})
    assert message in str(info.value)


def test_bad_file_names_key_and_file(tmp_path):
    f = tmp_path / "wp.toml"
    f.write_text("workerz = 3\n")
    with pytest.raises(config.ConfigError, match="workerz: unknown setting"):
        config.load(f, env={})
    f.write_text("workers = 'many'\n")
    with pytest.raises(config.ConfigError, match=r"workers: expected int, got 'many' \(from .*wp.toml\)"):
        config.load(f, env={})
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.toml", env={})


def test_a_state_dir_is_for_the_embedded_broker_only(tmp_path):
    from pipeline.stack import Stack

    with pytest.raises(config.ConfigError, match="state_dir: keeps the embedded broker's contents"):
        Stack(config.Settings(state_dir=str(tmp_path), bootstrap="kafka:9092"), tmp_path)


def test_a_large_run_starts_two_aggregators_unless_told_how_many():
    unset, three = config.load(env={}).aggregator, config.load(env={"WORDPIPE_AGGREGATORS": "3"}).aggregator
    large = aggregator.LARGE_RUN_BYTES
    assert [aggregator.for_run(unset, size, 2) for size in (None, 60_000, large - 1, large)] == [1, 1, 1, 2]
    assert aggregator.for_run(unset, large, cores=1) == 1  # a second instance would only contend
    assert aggregator.for_run(three, 60_000, 2) == 3
    assert [name for name, _ in aggregator.instances(unset)] == ["aggregator"]  # `up`: one


def test_a_flag_setting_reads_true_and_false_from_a_file_or_the_environment(tmp_path):
    f = tmp_path / "wp.toml"
    f.write_text("aggregator_alone = true\n")
    assert config.load(f, env={}).aggregator.alone
    assert [config.load(env={"WORDPIPE_AGGREGATOR_ALONE": v}).aggregator.alone for v in ("1", "True", "no")] == [
        True,
        True,
        False,
    ]
    alone = config.Settings(aggregator_alone=True)
    assert config.load(env=alone.to_env()).aggregator.alone  # as a child process reads it
    assert not config.load(env={}).aggregator.alone


def test_a_run_starts_no_more_workers_than_its_input_has_chunks():
    unset, three = config.load(env={}).worker, config.load(env={"WORDPIPE_WORKERS": "3"}).worker
    chunk = 64 << 10
    assert [worker.for_run(unset, size, 1, chunk) for size in (None, 0, 60_000, chunk + 1, 50 << 20)] == [2, 1, 1, 2, 2]
    assert worker.for_run(unset, 60_000, 2, chunk) == 2  # each file starts a chunk
    assert worker.for_run(three, 60_000, 1, chunk) == 3
