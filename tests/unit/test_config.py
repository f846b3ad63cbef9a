import pytest

from pipeline import config


def test_precedence_file_env_flags(tmp_path):
    f = tmp_path / "wp.toml"
    f.write_text('workers = 3\nchunk_size = 4096\nchunks_topic = "c"\n')
    s = config.load(f, env={"WORDPIPE_WORKERS": "5", "WORDPIPE_CHUNK_SIZE": "8192"}, overrides={"workers": 7})
    assert (s.workers, s.chunk_size, s.chunks_topic) == (7, 8192, "c")


def test_config_file_from_env(tmp_path):
    f = tmp_path / "wp.toml"
    f.write_text("partial_partitions = 4\n")
    assert config.load(env={"WORDPIPE_CONFIG": str(f)}).partial_partitions == 4


def test_worker_session_defaults_to_short_on_the_embedded_broker_only():
    assert config.load(env={}).worker_session_timeout_ms == config.EMBEDDED_SESSION_TIMEOUT_MS
    assert (
        config.load(env={"WORDPIPE_BOOTSTRAP": "k:9092"}).worker_session_timeout_ms == config.CLUSTER_SESSION_TIMEOUT_MS
    )
    assert (
        config.load(
            env={"WORDPIPE_BOOTSTRAP": "k:9092", "WORDPIPE_SESSION_TIMEOUT_MS": "9000"}
        ).worker_session_timeout_ms
        == 9000
    )


def test_empty_bootstrap_means_embedded():
    assert config.load(env={"WORDPIPE_BOOTSTRAP": ""}).embedded
    assert not config.load(env={"WORDPIPE_BOOTSTRAP": "k:9092"}).embedded


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"env": {"WORDPIPE_WORKERS": "two"}}, "workers: expected int, got 'two' (from $WORDPIPE_WORKERS)"),
        ({"env": {"WORDPIPE_CHUNK_SIZE": "2000000"}}, "chunk_size: 2000000 bytes; a chunk and its envelope must fit"),
        ({"env": {"WORDPIPE_CHUNK_SIZE": "1000000"}}, "message limit, so at most 983040 (960 KiB)"),
        ({"env": {"WORDPIPE_FLUSH_INTERVAL": "0"}}, "flush_interval: must be > 0"),
        ({"overrides": {"partial_partitions": 0}}, "partial_partitions: must be >= 1"),
        ({"overrides": {"totals_topic": "chunks"}}, "topic names must be distinct"),
        ({"overrides": {"nope": 1}}, "nope: unknown setting"),
        ({"env": {"WORDPIPE_BACKEND": "k8s"}}, "backend: 'k8s' is not one of local, docker"),
        ({"env": {"WORDPIPE_WORKER_CPUS": "0"}}, "worker_cpus: must be > 0"),
        ({"env": {"WORDPIPE_WORKER_MEM_MB": "32"}}, "worker_mem_mb: must be >= 64"),
        ({"env": {"WORDPIPE_SESSION_TIMEOUT_MS": "500"}}, "session_timeout_ms: must be >= 1000"),
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
