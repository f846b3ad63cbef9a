"""Settings: one typed object, loaded from defaults < TOML file < WORDPIPE_* env < flags."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError

ENV_PREFIX = "WORDPIPE_"
BACKENDS = ("local", "docker", "mesos")
EMBEDDED_SESSION_TIMEOUT_MS = 2000
CLUSTER_SESSION_TIMEOUT_MS = 6000


MAX_CHUNK_SIZE = 960 * 1024  # librdkafka's message.max.bytes is 1,000,000 by default


class ConfigError(UsageError):
    """A bad setting; the message names the setting, where it came from, and what is wrong."""


@dataclass(frozen=True)
class Settings:
    # Kafka cluster; None starts an embedded Tansu broker on a free loopback port.
    bootstrap: str | None = None
    replication_factor: int = 1
    # How every client (producers, consumers, admin, the faust aggregator) connects:
    # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, with the settings below as needed.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_ssl_ca_location: str | None = None  # PEM file of the CA that signed the brokers' certificates
    kafka_ssl_certificate_location: str | None = None  # the client's own certificate (mutual TLS)...
    kafka_ssl_key_location: str | None = None  # ...and its key
    kafka_ssl_key_password: str | None = field(default=None, repr=False)

    chunks_topic: str = "chunks"
    partials_topic: str = "partials"
    totals_topic: str = "totals"
    deadletter_topic: str = "deadletter"
    status_topic: str = "workers"  # workers' status reports (pipeline/roster.py)
    documents_topic: str = "documents"  # ingest's receipts: accepted uploads, idempotency keys
    chunk_partitions: int = 12
    partial_partitions: int = 8

    chunk_size: int = 64 * 1024
    # Extra words for segmenting Chinese (pipeline/tokenize.py): a file in jieba's user
    # dictionary format. Part of the tokenizer's identity: chunks say which one counts them.
    tokenizer_user_dict: str | None = None

    workers: int = 2
    worker_group: str = "wordpipe-workers"
    worker_batch: int = 32  # records taken from the consumer at a time
    window_chunks: int = 64  # chunks counted and published as one unit (workers/windows.py)
    window_max_words: int = 100_000  # ...or fewer, once a window holds this many distinct words
    # The workers' group session. Tansu answers a group join only after about half of it,
    # which a new worker waits before it consumes. None: 2000 ms on the embedded broker,
    # 6000 ms on a cluster (Apache Kafka's group.min.session.timeout.ms).
    session_timeout_ms: int | None = None
    status_interval: float = 1.0  # seconds between a worker's status reports
    # Longest a fetch waits for data. Tansu answers a waiting fetch only at this deadline,
    # even when data arrives sooner, so every hop pays it: keep it short there.
    fetch_max_wait_ms: int = 50

    # The ingest service (pipeline/ingest/service.py): uploads over HTTP.
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8080
    max_document_bytes: int = 4 << 30  # per upload, after gzip decoding: larger is a 413
    # A gzip body may inflate at most this many times its compressed size (beyond its first
    # MiB), checked as it inflates: a decompression bomb is a 413 before it fills the log.
    max_inflate_ratio: int = 100
    max_uploads: int = 64  # uploads at once; more get a 429
    max_uploads_per_client: int = 8  # uploads at once from one client address; more get a 429
    # An upload body that sends nothing for this long is cut off (408; nothing of it counts,
    # a stream keeps the segments it had committed)...
    upload_stall_seconds: float = 30.0
    # ...as is a document body that averages fewer bytes per second than this over that
    # long (time the service spends waiting on Kafka does not count against it). 0: off.
    upload_min_rate: int = 1024
    stream_segment_bytes: int = 1 << 20  # a stream commits what it received every this many bytes...
    stream_segment_seconds: float = 1.0  # ...or this often, whichever comes first
    # A held document commits only if its end lands fewer than this many offsets after its
    # first chunk on their partition; an upload left open longer is abandoned everywhere.
    document_max_span: int = 1_000_000
    # Every HTTP service closes a connection with no request in progress (or whose headers
    # are still trickling in) after this long.
    http_idle_seconds: float = 30.0
    # HTTP APIs take `Authorization: Bearer <token>`, one of `tokens` (comma-separated;
    # WORDPIPE_TOKENS), unless auth = "none".
    auth: str = "token"
    tokens: str | None = field(default=None, repr=False)  # secrets stay out of reprs and logs

    aggregator_id: str = "wordpipe-aggregator"
    aggregator_host: str = "127.0.0.1"  # the aggregator serves the results API
    aggregator_port: int = 8081
    aggregator_datadir: str | None = None  # faust's directory; default: <tmp>/wordpipe-faust/<aggregator_id>
    buckets: int = 16  # state buckets per shard: the unit of snapshot and deduplication
    flush_interval: float = 0.5  # seconds between durable state snapshots
    totals_interval: float = 2.0  # seconds between publications to the totals topic
    # Windowed totals: tumbling windows of event time (a chunk's or an upload's commit
    # timestamp in the log), the most recent `windows_kept` of them kept.
    window_seconds: int = 60
    windows_kept: int = 60

    # Where workers run (pipeline/cluster/): "local" processes, "docker" containers, or
    # containers that a "mesos" (or Clusterd) cluster schedules.
    backend: str = "local"
    image: str = "wordpipe:latest"  # the workers' image (deploy/build-image.sh)
    worker_cpus: float = 1.0
    worker_mem_mb: int = 256
    worker_id: str | None = None  # set by the backend for each worker it launches

    # The mesos backend (pipeline/cluster/mesos/): a framework on the v1 scheduler HTTP API.
    mesos_master: str = "http://127.0.0.1:5050"  # comma-separated; a non-leader redirects to the leader
    # How long the master keeps our tasks running while the framework is away (Mesos' own
    # default, 0, kills them at the first disconnect). A one-shot `wordpipe run` uses 0.
    mesos_failover_timeout: float = 7 * 24 * 3600.0
    mesos_role: str = "*"
    mesos_user: str | None = None  # the user tasks run as; default: the framework's own user
    mesos_principal: str | None = None  # with mesos_secret: HTTP basic auth to the master
    mesos_secret: str | None = field(default=None, repr=False)
    # The framework id and launched task ids, kept so a restarted framework adopts its
    # tasks; default: $XDG_STATE_HOME/wordpipe/mesos-<worker group>.json
    mesos_state_file: str | None = None
    mesos_refuse_seconds: float = 30.0  # how long a declined offer's resources stay away

    # The autoscaler (pipeline/autoscaler/): its status and metrics endpoint, and its tick.
    autoscaler_host: str = "127.0.0.1"
    autoscaler_port: int = 8082
    autoscale_interval: float = 10.0
    health_file: str | None = None  # a file each service touches while healthy (the image's HEALTHCHECK)

    def __post_init__(self) -> None:
        for name in (
            "chunk_partitions",
            "partial_partitions",
            "buckets",
            "worker_batch",
            "window_chunks",
            "window_max_words",
            "replication_factor",
            "max_document_bytes",
            "max_uploads",
            "max_uploads_per_client",
            "max_inflate_ratio",
            "stream_segment_bytes",
            "document_max_span",
            "window_seconds",
            "windows_kept",
        ):
            _at_least(name, getattr(self, name), 1)
        _at_least("workers", self.workers, 0)
        _at_least("upload_min_rate", self.upload_min_rate, 0)
        _at_least("chunk_size", self.chunk_size, 16)
        if self.chunk_size > MAX_CHUNK_SIZE:
            raise ConfigError(
                f"chunk_size: {self.chunk_size} bytes; a chunk and its envelope must fit Kafka's default "
                f"1,000,000-byte message limit, so at most {MAX_CHUNK_SIZE} (960 KiB)"
            )
        if self.session_timeout_ms is not None:
            _at_least("session_timeout_ms", self.session_timeout_ms, 1000)
        _at_least("fetch_max_wait_ms", self.fetch_max_wait_ms, 1)
        for name in ("ingest_port", "aggregator_port", "autoscaler_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{name}: {getattr(self, name)} is not a TCP port")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend: {self.backend!r} is not one of {', '.join(BACKENDS)}")
        for url in self.mesos_master.split(","):
            if not re.fullmatch(r"https?://[^/\s]+/?", url.strip()):
                raise ConfigError(f"mesos_master: {url.strip()!r} is not a master address like http://host:5050")
        if self.mesos_failover_timeout < 0:
            raise ConfigError(f"mesos_failover_timeout: must be >= 0 seconds, got {self.mesos_failover_timeout}")
        if (self.mesos_principal is None) != (self.mesos_secret is None):
            raise ConfigError("mesos_principal and mesos_secret: give both or neither")
        if not self.worker_cpus > 0:
            raise ConfigError(f"worker_cpus: must be > 0, got {self.worker_cpus}")
        _at_least("worker_mem_mb", self.worker_mem_mb, 64)
        protocols = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
        if self.kafka_security_protocol not in protocols:
            raise ConfigError(
                f"kafka_security_protocol: {self.kafka_security_protocol!r} is not one of {', '.join(protocols)}"
            )
        if self.kafka_security_protocol.startswith("SASL_"):
            mechanisms = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
            if self.kafka_sasl_mechanism not in mechanisms:
                raise ConfigError(
                    f"kafka_sasl_mechanism: {self.kafka_security_protocol} needs one of {', '.join(mechanisms)}, "
                    f"got {self.kafka_sasl_mechanism!r}"
                )
            if not (self.kafka_sasl_username and self.kafka_sasl_password):
                raise ConfigError(
                    f"kafka_sasl_username and kafka_sasl_password: {self.kafka_security_protocol} needs both"
                )
        if (self.kafka_ssl_certificate_location is None) != (self.kafka_ssl_key_location is None):
            raise ConfigError("kafka_ssl_certificate_location and kafka_ssl_key_location: give both or neither")
        if self.auth not in ("token", "none"):
            raise ConfigError(f"auth: {self.auth!r} is not one of token, none")
        if self.tokens is not None and not all(t.strip() for t in self.tokens.split(",")):
            raise ConfigError("tokens: an empty token in the comma-separated list")
        for name in (
            "flush_interval",
            "totals_interval",
            "status_interval",
            "autoscale_interval",
            "mesos_refuse_seconds",
            "stream_segment_seconds",
            "upload_stall_seconds",
            "http_idle_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}: must be > 0 seconds, got {getattr(self, name)}")
        topics = [
            self.chunks_topic,
            self.partials_topic,
            self.totals_topic,
            self.deadletter_topic,
            self.status_topic,
            self.documents_topic,
        ]
        if len(set(topics)) != len(topics) or not all(topics):
            raise ConfigError(f"topic names must be distinct and non-empty, got {topics}")

    @property
    def embedded(self) -> bool:
        return not self.bootstrap

    @property
    def token_list(self) -> list[str]:
        return [t.strip() for t in (self.tokens or "").split(",") if t.strip()]

    @property
    def worker_session_timeout_ms(self) -> int:
        if self.session_timeout_ms is not None:
            return self.session_timeout_ms
        return EMBEDDED_SESSION_TIMEOUT_MS if self.embedded else CLUSTER_SESSION_TIMEOUT_MS

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The settings as WORDPIPE_* variables, to hand to child processes."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[ENV_PREFIX + f.name.upper()] = str(value)
        return out


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(f"{name}: must be >= {minimum}, got {value}")


def _coerce(name: str, raw: Any, origin: str) -> Any:
    field = _FIELDS[name]
    kind = field.type.split(" | ")[0] if isinstance(field.type, str) else field.type
    try:
        if kind == "int":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if kind == "float":
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if kind == "str":
            if not isinstance(raw, str):
                raise ValueError
            optional = "None" in str(field.type)
            return (raw or None) if optional else raw  # an empty optional setting means "unset"
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected {kind}, got {raw!r} (from {origin})") from None
    raise AssertionError(f"unhandled setting type {field.type}")


_FIELDS = {f.name: f for f in fields(Settings)}


def read_toml(path: Path, what: str, error: type[ValueError]) -> dict[str, Any]:
    """A TOML file's table; a missing or malformed file raises `error` naming it as `what`."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {path}: {exc}") from None


def load(
    file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from a TOML file (or $WORDPIPE_CONFIG), WORDPIPE_* variables and flag overrides."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    file = file or env.get(ENV_PREFIX + "CONFIG")
    if file:
        path = Path(file)
        data = read_toml(path, "config file", ConfigError)
        for key, raw in data.items():
            if key not in _FIELDS:
                raise ConfigError(f"{key}: unknown setting (in {path}); known: {', '.join(sorted(_FIELDS))}")
            values[key] = _coerce(key, raw, str(path))
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_PREFIX + "CONFIG":
            continue
        key = var[len(ENV_PREFIX) :].lower()
        if key in _FIELDS:
            values[key] = _coerce(key, raw, f"${var}")
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in _FIELDS:
            raise ConfigError(f"{key}: unknown setting")
        values[key] = _coerce(key, raw, "command line") if isinstance(raw, str) else raw
    return Settings(**values)
