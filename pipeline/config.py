"""Settings in sections, loaded from defaults < TOML file < WORDPIPE_* env < flags.

Users name settings flat (`workers`, `chunks_topic`, `kafka_sasl_username`); the code reads
them by section (`settings.worker.count`, `settings.topics.chunks`, `settings.kafka.sasl_username`).
`FLAT` maps one to the other, and each section validates itself, naming the flat name.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.source_topics import SourceTopic

ENV_PREFIX = "WORDPIPE_"
BACKENDS = ("local", "docker", "mesos")
EMBEDDED_SESSION_TIMEOUT_MS = 2000
CLUSTER_SESSION_TIMEOUT_MS = 6000
CLUSTER_TOTALS_INTERVAL = 2.0


MAX_CHUNK_SIZE = 960 * 1024  # librdkafka's message.max.bytes is 1,000,000 by default


def setting(default: Any, flat: str | None = None, secret: bool = False) -> Any:
    """A section's field; `flat` is its name in TOML, WORDPIPE_* and flags when that differs."""
    return field(default=default, repr=not secret, metadata={"flat": flat} if flat else {})


@dataclass(frozen=True)
class KafkaSettings:
    """How clients reach Kafka (see `Connection`, which resolves it once a broker is up)."""

    # The cluster; None starts an embedded Tansu broker on a free loopback port.
    bootstrap: str | None = None
    # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, with the settings below as needed; every
    # client (producers, consumers, admin, the faust aggregator) takes them.
    security_protocol: str = setting("PLAINTEXT", "kafka_security_protocol")
    sasl_mechanism: str | None = setting(None, "kafka_sasl_mechanism")  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    sasl_username: str | None = setting(None, "kafka_sasl_username")
    sasl_password: str | None = setting(None, "kafka_sasl_password", secret=True)
    ssl_ca_location: str | None = setting(None, "kafka_ssl_ca_location")  # PEM of the CA that signed the brokers
    ssl_certificate_location: str | None = setting(None, "kafka_ssl_certificate_location")  # mutual TLS...
    ssl_key_location: str | None = setting(None, "kafka_ssl_key_location")  # ...and its key
    ssl_key_password: str | None = setting(None, "kafka_ssl_key_password", secret=True)
    # The consumer groups' session. Tansu answers a group join only after about half of it,
    # which a new worker waits before it consumes. None: 2000 ms on the embedded broker,
    # 6000 ms on a cluster (Apache Kafka's group.min.session.timeout.ms).
    session_timeout_ms: int | None = None
    # Where `wordpipe up` keeps the embedded broker's topics and group offsets across stacks
    # (pipeline/statedir/): journaled as the broker takes them, durable before each 202.
    state_dir: str | None = None
    # Longest a fetch waits for data. Tansu answers a waiting fetch only at this deadline,
    # even when data arrives sooner, so every hop pays it: keep it short there.
    fetch_max_wait_ms: int = 50

    def __post_init__(self) -> None:
        if self.session_timeout_ms is not None:
            _at_least("session_timeout_ms", self.session_timeout_ms, 1000)
        _at_least("fetch_max_wait_ms", self.fetch_max_wait_ms, 1)
        protocols = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
        if self.security_protocol not in protocols:
            raise ConfigError(
                f"kafka_security_protocol: {self.security_protocol!r} is not one of {', '.join(protocols)}"
            )
        if self.security_protocol.startswith("SASL_"):
            mechanisms = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
            if self.sasl_mechanism not in mechanisms:
                raise ConfigError(
                    f"kafka_sasl_mechanism: {self.security_protocol} needs one of {', '.join(mechanisms)}, "
                    f"got {self.sasl_mechanism!r}"
                )
            if not (self.sasl_username and self.sasl_password):
                raise ConfigError(f"kafka_sasl_username and kafka_sasl_password: {self.security_protocol} needs both")
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ConfigError("kafka_ssl_certificate_location and kafka_ssl_key_location: give both or neither")

    @property
    def embedded(self) -> bool:
        return not self.bootstrap


@dataclass(frozen=True)
class TopicSettings:
    """wordpipe's topics and how the partials are laid out."""

    chunks: str = setting("chunks", "chunks_topic")
    partials: str = setting("partials", "partials_topic")
    totals: str = setting("totals", "totals_topic")
    deadletter: str = setting("deadletter", "deadletter_topic")
    status: str = setting("workers", "status_topic")  # workers' status reports (pipeline/observe/roster.py)
    documents: str = setting("documents", "documents_topic")  # ingest's receipts: accepted uploads, idempotency keys
    assignments: str = setting("assignments", "assignments_topic")  # which worker reads what (pipeline/assigner.py)
    chunk_partitions: int = 12
    # Chunks and partials live in topic generations (`chunks.g1`, `chunks.g2`, ...; see
    # pipeline/generations.py): writers start a new one after this many bytes of chunks, and
    # a generation whose every record is counted is deleted, the one way the embedded broker
    # frees memory. The broker holds about 2 to 3 generations of chunks while text flows.
    generation_bytes: int = 64 << 20
    partial_partitions: int = 8  # one shard of the totals per partition...
    buckets: int = 16  # ...and this many state buckets per shard: the unit of snapshot and deduplication
    replication_factor: int = 1
    # Topics other producers fill, counted beside ingest's chunks (pipeline/source_topics.py):
    # comma-separated `topic` or `topic:$.field` specs. Counting starts at their earliest or
    # latest offset when the worker group has none committed.
    sources: str | None = None
    source_start: str = "earliest"

    def __post_init__(self) -> None:
        for name in ("chunk_partitions", "partial_partitions", "buckets", "replication_factor"):
            _at_least(name, getattr(self, name), 1)
        _at_least("generation_bytes", self.generation_bytes, 1 << 20)
        names = [
            self.chunks,
            self.partials,
            self.totals,
            self.deadletter,
            self.status,
            self.documents,
            self.assignments,
        ]
        if len(set(names)) != len(names) or not all(names):
            raise ConfigError(f"topic names must be distinct and non-empty, got {names}")
        from pipeline import source_topics  # it reads text with tokenize, which reads settings

        try:
            source_topics.parse_all(self.sources, reserved=tuple(names))
        except source_topics.SourceTopicError as exc:
            raise ConfigError(f"sources: {exc}") from None
        if self.source_start not in ("earliest", "latest"):
            raise ConfigError(f"source_start: {self.source_start!r} is not one of earliest, latest")

    @property
    def source_list(self) -> list[SourceTopic]:
        from pipeline.source_topics import parse_all

        return parse_all(self.sources)


@dataclass(frozen=True)
class TextSettings:
    """How text is cut into chunks and read as words."""

    chunk_size: int = 64 * 1024
    # Extra words for segmenting Chinese (pipeline/tokenize.py): a file in jieba's user
    # dictionary format. Part of the tokenizer's identity: chunks say which one counts them.
    tokenizer_user_dict: str | None = None

    def __post_init__(self) -> None:
        _at_least("chunk_size", self.chunk_size, 16)
        if self.chunk_size > MAX_CHUNK_SIZE:
            raise ConfigError(
                f"chunk_size: {self.chunk_size} bytes; a chunk and its envelope must fit Kafka's default "
                f"1,000,000-byte message limit, so at most {MAX_CHUNK_SIZE} (960 KiB)"
            )


@dataclass(frozen=True)
class WorkerSettings:
    """The workers (pipeline/worker/worker.py): how many, their group, and how they batch."""

    # Worker processes `wordpipe run` starts. None: 2, or one per chunk an input of fewer
    # has (pipeline/worker/__init__.py: for_run).
    count: int | None = setting(None, "workers")
    group: str = setting("wordpipe-workers", "worker_group")
    batch: int = setting(32, "worker_batch")  # records taken from the consumer at a time
    # Chunks counted and published as one unit (pipeline/worker/windows.py). Each window's partials
    # carry its vocabulary once: 256 (16 MiB of 64 KiB chunks) rather than 64 cut the
    # aggregator's CPU on shakespeare by 40%; a crash replays up to one window per partition.
    window_chunks: int = 256
    window_max_words: int = 100_000  # ...or fewer, once a window holds this many distinct words
    status_interval: float = 1.0  # seconds between a worker's status reports
    # A source topic's records are many and small, so its windows span more offsets; one
    # that receives nothing for `source_idle_seconds` closes at once, so counts from a quiet
    # topic show within a second (its end is recorded first: pipeline/worker/worker.py).
    source_window_records: int = 4096
    source_idle_seconds: float = 0.5
    id: str | None = setting(None, "worker_id")  # set by the backend for each worker it launches

    def __post_init__(self) -> None:
        if self.count is not None:
            _at_least("workers", self.count, 0)
        for name, value in (("worker_batch", self.batch), ("window_chunks", self.window_chunks)):
            _at_least(name, value, 1)
        _at_least("window_max_words", self.window_max_words, 1)
        _at_least("source_window_records", self.source_window_records, 1)
        _positive("status_interval", self.status_interval)
        _positive("source_idle_seconds", self.source_idle_seconds)

    @property
    def ends_group(self) -> str:
        """The group whose offsets are idle source windows' recorded ends (pipeline/worker/worker.py)."""
        return f"{self.group}.ends"

    @property
    def resumes_group(self) -> str:
        """The group whose offsets say who last held each input, and whether it let go cleanly."""
        return f"{self.group}.resumes"

    @property
    def letters_group(self) -> str:
        """The group whose offsets say how far each input's refused records are dead-lettered."""
        return f"{self.group}.letters"


@dataclass(frozen=True)
class IngestSettings:
    """The ingest service (pipeline/ingest/api.py): uploads over HTTP."""

    host: str = setting("127.0.0.1", "ingest_host")
    port: int = setting(8080, "ingest_port")
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

    def __post_init__(self) -> None:
        for name in (
            "max_document_bytes",
            "max_uploads",
            "max_uploads_per_client",
            "max_inflate_ratio",
            "stream_segment_bytes",
            "document_max_span",
        ):
            _at_least(name, getattr(self, name), 1)
        _at_least("upload_min_rate", self.upload_min_rate, 0)
        _port("ingest_port", self.port)
        _positive("stream_segment_seconds", self.stream_segment_seconds)
        _positive("upload_stall_seconds", self.upload_stall_seconds)


@dataclass(frozen=True)
class ServiceSettings:
    """What every service shares: its HTTP connections, who may call it, its health file."""

    # Every HTTP service closes a connection with no request in progress (or whose headers
    # are still trickling in) after this long.
    http_idle_seconds: float = 30.0
    # HTTP APIs take `Authorization: Bearer <token>`, one of `tokens` (comma-separated;
    # WORDPIPE_TOKENS), unless auth = "none".
    auth: str = "token"
    tokens: str | None = setting(None, secret=True)  # secrets stay out of reprs and logs
    health_file: str | None = None  # a file each service touches while healthy (the image's HEALTHCHECK)

    def __post_init__(self) -> None:
        _positive("http_idle_seconds", self.http_idle_seconds)
        if self.auth not in ("token", "none"):
            raise ConfigError(f"auth: {self.auth!r} is not one of token, none")
        if self.tokens is not None and not all(t.strip() for t in self.tokens.split(",")):
            raise ConfigError("tokens: an empty token in the comma-separated list")

    @property
    def token_list(self) -> list[str]:
        return [t.strip() for t in (self.tokens or "").split(",") if t.strip()]

    @property
    def token_missing(self) -> bool:
        """Auth is on and no token is configured: a service refuses to start (web.tokens_of)."""
        return self.auth == "token" and not self.token_list


@dataclass(frozen=True)
class AggregatorSettings:
    """The aggregator (pipeline/aggregator/): its state, its flushes and the results API."""

    id: str = setting("wordpipe-aggregator", "aggregator_id")
    # Instances `wordpipe run` and `wordpipe up` start (one group: faust spreads the shards
    # over them, and any of them answers for all: pipeline/aggregator/peers.py). None: one,
    # or as many as a large run wants (pipeline/aggregator/__init__.py: for_run).
    count: int | None = setting(None, "aggregators")
    # The only instance there will ever be on these topics (a run's, or a stack's on its own
    # broker): it reads every partials partition itself rather than join a group, which
    # Tansu holds a second.
    alone: bool = setting(False, "aggregator_alone")
    host: str = setting("127.0.0.1", "aggregator_host")
    port: int = setting(8081, "aggregator_port")
    # Where the other instances reach this one's results API (each asks the others for the
    # shards they own); default http://host:port, with this machine's name for host 0.0.0.0.
    url: str | None = setting(None, "aggregator_url")
    datadir: str | None = setting(None, "aggregator_datadir")  # faust's; default <tmp>/wordpipe-faust/<id>
    flush_interval: float = 0.5  # seconds between durable state snapshots
    # Seconds between publications to the totals topic; 0: none (`wordpipe run`, whose topics
    # are its own). None: 2 s on a cluster, none on the embedded broker, which never compacts
    # and so would keep every total ever published (the results API has them all).
    totals_interval: float | None = None
    # The totals topic's values: msgpack (`total.v1`) or JSON (`{"word", "count"}`), for
    # consumers without a msgpack decoder (docs/totals-topic.md).
    totals_format: str = "msgpack"
    # Windowed totals: tumbling windows of event time (a chunk's or an upload's commit
    # timestamp in the log), the most recent `windows_kept` of them kept.
    window_seconds: int = 60
    windows_kept: int = 60
    # A shard's changelog starts a new generation with a checkpoint once the deltas since the
    # last one hold as many bytes as it did, or this many while the state is smaller
    # (pipeline/aggregator/changelog.py): the log stays under about twice the state.
    checkpoint_min_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        _port("aggregator_port", self.port)
        if self.count is not None:
            _at_least("aggregators", self.count, 1)
        if self.alone and (self.count or 1) > 1:
            raise ConfigError(f"aggregator_alone: one instance reads every shard, but aggregators is {self.count}")
        if self.url is not None and not re.fullmatch(r"https?://[^/\s]+", self.url):
            raise ConfigError(f"aggregator_url: expected http://host:port, got {self.url!r:.100}")
        _at_least("checkpoint_min_bytes", self.checkpoint_min_bytes, 1)
        _positive("flush_interval", self.flush_interval)
        if self.totals_interval is not None and self.totals_interval < 0:
            raise ConfigError(f"totals_interval: must be >= 0 seconds (0: no totals topic), got {self.totals_interval}")
        if self.totals_format not in ("msgpack", "json"):
            raise ConfigError(f"totals_format: {self.totals_format!r} is not one of msgpack, json")
        _at_least("window_seconds", self.window_seconds, 1)
        _at_least("windows_kept", self.windows_kept, 1)

    @property
    def peer_url(self) -> str:
        """The URL the other instances reach this one's results API at."""
        if self.url:
            return self.url
        return f"http://{socket.gethostname() if self.host in ('0.0.0.0', '::', '') else self.host}:{self.port}"


@dataclass(frozen=True)
class ClusterSettings:
    """Where workers run (pipeline/cluster/): "local" processes, "docker" containers, or
    containers that a "mesos" (or Clusterd) cluster schedules."""

    backend: str = "local"
    image: str = "wordpipe:latest"  # the workers' image (deploy/build-image.sh)
    worker_cpus: float = 1.0
    # A container's (and Mesos task's) memory limit. One worker counting hostile text (scripts
    # without spaces: jieba's dictionary alone is 57 MB) peaked near 320 MB, 216 since its
    # fetches are bounded (pipeline/worker/worker.py); with 256 the limit killed it over and over
    # (Docker, 200 MB, 1 worker).
    worker_mem_mb: int = 512

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend: {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if not self.worker_cpus > 0:
            raise ConfigError(f"worker_cpus: must be > 0, got {self.worker_cpus}")
        _at_least("worker_mem_mb", self.worker_mem_mb, 64)


@dataclass(frozen=True)
class MesosSettings:
    """The mesos backend (pipeline/cluster/mesos/): a framework on the v1 scheduler HTTP API."""

    # Comma-separated; a non-leader redirects to the leader.
    master: str = setting("http://127.0.0.1:5050", "mesos_master")
    # How long the master keeps our tasks running while the framework is away (Mesos' own
    # default, 0, kills them at the first disconnect). A one-shot `wordpipe run` uses 0.
    failover_timeout: float = setting(7 * 24 * 3600.0, "mesos_failover_timeout")
    role: str = setting("*", "mesos_role")
    user: str | None = setting(None, "mesos_user")  # the user tasks run as; default: the framework's own
    principal: str | None = setting(None, "mesos_principal")  # with the secret: HTTP basic auth to the master
    secret: str | None = setting(None, "mesos_secret", secret=True)
    # The framework id and launched task ids, kept so a restarted framework adopts its
    # tasks; default: $XDG_STATE_HOME/wordpipe/mesos-<worker group>.json
    state_file: str | None = setting(None, "mesos_state_file")
    refuse_seconds: float = setting(30.0, "mesos_refuse_seconds")  # how long a declined offer stays away

    def __post_init__(self) -> None:
        for url in self.master.split(","):
            if not re.fullmatch(r"https?://[^/\s]+/?", url.strip()):
                raise ConfigError(f"mesos_master: {url.strip()!r} is not a master address like http://host:5050")
        if self.failover_timeout < 0:
            raise ConfigError(f"mesos_failover_timeout: must be >= 0 seconds, got {self.failover_timeout}")
        if (self.principal is None) != (self.secret is None):
            raise ConfigError("mesos_principal and mesos_secret: give both or neither")
        _positive("mesos_refuse_seconds", self.refuse_seconds)


@dataclass(frozen=True)
class AutoscalerSettings:
    """The autoscaler (pipeline/autoscaler/): its status and metrics endpoint, and its tick."""

    host: str = setting("127.0.0.1", "autoscaler_host")
    port: int = setting(8082, "autoscaler_port")
    interval: float = setting(10.0, "autoscale_interval")

    def __post_init__(self) -> None:
        _port("autoscaler_port", self.port)
        _positive("autoscale_interval", self.interval)


SECTIONS: dict[str, type] = {
    "kafka": KafkaSettings,
    "topics": TopicSettings,
    "text": TextSettings,
    "worker": WorkerSettings,
    "ingest": IngestSettings,
    "service": ServiceSettings,
    "aggregator": AggregatorSettings,
    "cluster": ClusterSettings,
    "mesos": MesosSettings,
    "autoscaler": AutoscalerSettings,
}
# Users see one flat namespace (TOML keys, WORDPIPE_* variables, flags): flat name -> (section, field).
FLAT: dict[str, tuple[str, str]] = {
    f.metadata.get("flat", f.name): (section, f.name) for section, cls in SECTIONS.items() for f in fields(cls)
}
# The settings a worker reads (Settings.worker_env), and the health file its image checks.
WORKER_SECTIONS = ("kafka", "topics", "text", "worker")
WORKER_VARIABLES = frozenset(
    ENV_PREFIX + flat.upper() for flat, (section, _) in FLAT.items() if section in WORKER_SECTIONS
) | {ENV_PREFIX + "HEALTH_FILE"}


@dataclass(frozen=True, init=False)
class Settings:
    """Every setting, in sections; built from flat names (`Settings(workers=3)`) or sections."""

    kafka: KafkaSettings
    topics: TopicSettings
    text: TextSettings
    worker: WorkerSettings
    ingest: IngestSettings
    service: ServiceSettings
    aggregator: AggregatorSettings
    cluster: ClusterSettings
    mesos: MesosSettings
    autoscaler: AutoscalerSettings

    def __init__(self, **values: Any) -> None:
        changes: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
        for name, value in values.items():
            if name in SECTIONS:
                continue
            if name not in FLAT:
                raise ConfigError(f"{name}: unknown setting")
            section, attr = FLAT[name]
            changes[section][attr] = value
        for section, cls in SECTIONS.items():
            base = values.get(section) or cls()
            object.__setattr__(self, section, dataclasses.replace(base, **changes[section]))

    def resolved(self) -> Settings:
        """The defaults that depend on the broker, fixed before child processes inherit the
        settings (they get its address, embedded or not)."""
        if self.aggregator.totals_interval is None:
            return self.replace(totals_interval=0 if self.kafka.embedded else CLUSTER_TOTALS_INTERVAL)
        return self

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed, by flat name."""
        return Settings(**{section: getattr(self, section) for section in SECTIONS}, **changes)

    def to_env(self, connection: Connection | None = None) -> dict[str, str]:
        """The settings as WORDPIPE_* variables, to hand to child processes; with the
        `connection` they are to use (its address and resolved session) when given."""
        out = {}
        for flat, (section, attr) in FLAT.items():
            value = getattr(getattr(self, section), attr)
            if value is not None:
                out[ENV_PREFIX + flat.upper()] = str(value)
        return {**out, **connection.to_env()} if connection is not None else out

    def worker_env(self, connection: Connection | None = None) -> dict[str, str]:
        """What a worker is handed, whatever runs it: the variables of the settings it reads
        (the APIs' tokens and the framework's secrets stay put), and the words of the user
        dictionary, whose file is the launcher's."""
        env = {k: v for k, v in self.to_env(connection).items() if k in WORKER_VARIABLES}
        if self.text.tokenizer_user_dict:
            from pipeline import tokenize  # not at the top: every process reads settings, few tokenize

            env[ENV_PREFIX + "TOKENIZER_USER_DICT"] = tokenize.as_data_uri(self.text.tokenizer_user_dict)
        return env


@dataclass(frozen=True)
class Connection:
    """How every client reaches Kafka once a broker is up (Quix Streams' ConnectionConfig):
    the address, the security settings, and the group session that fits that broker."""

    bootstrap: str
    kafka: KafkaSettings  # with this address and session filled in
    session_timeout_ms: int

    @classmethod
    def to(
        cls, kafka: KafkaSettings, embedded: str | None = None, why: str = "this command needs a Kafka cluster"
    ) -> Connection:
        """The configured cluster's connection, or the embedded broker's at `embedded`;
        without either, a ConfigError that gives `why`."""
        bootstrap = embedded or kafka.bootstrap
        if not bootstrap:
            raise ConfigError(f"bootstrap: {why}; give --bootstrap or $WORDPIPE_BOOTSTRAP")
        session = kafka.session_timeout_ms
        if session is None:
            session = EMBEDDED_SESSION_TIMEOUT_MS if embedded else CLUSTER_SESSION_TIMEOUT_MS
        return cls(bootstrap, dataclasses.replace(kafka, bootstrap=bootstrap, session_timeout_ms=session), session)

    @property
    def fetch_max_wait_ms(self) -> int:
        return self.kafka.fetch_max_wait_ms

    def to_env(self) -> dict[str, str]:
        """What a child process needs beside the settings to connect the same way."""
        return {
            ENV_PREFIX + "BOOTSTRAP": self.bootstrap,
            ENV_PREFIX + "SESSION_TIMEOUT_MS": str(self.session_timeout_ms),
        }


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(f"{name}: must be >= {minimum}, got {value}")


def _positive(name: str, seconds: float) -> None:
    if not seconds > 0:
        raise ConfigError(f"{name}: must be > 0 seconds, got {seconds}")


def _port(name: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name}: {port} is not a TCP port")


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _coerce(name: str, raw: Any, origin: str) -> Any:
    section, attr = FLAT[name]
    field = _FIELDS[section][attr]
    kind = field.type.split(" | ")[0] if isinstance(field.type, str) else field.type
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in _BOOLS:
                return _BOOLS[raw.lower()]
            raise ValueError
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


_FIELDS = {section: {f.name: f for f in fields(cls)} for section, cls in SECTIONS.items()}


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
            if key not in FLAT:
                raise ConfigError(f"{key}: unknown setting (in {path}); known: {', '.join(sorted(FLAT))}")
            values[key] = _coerce(key, raw, str(path))
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_PREFIX + "CONFIG":
            continue
        key = var[len(ENV_PREFIX) :].lower()
        if key in FLAT:
            values[key] = _coerce(key, raw, f"${var}")
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in FLAT:
            raise ConfigError(f"{key}: unknown setting")
        values[key] = _coerce(key, raw, "command line") if isinstance(raw, str) else raw
    return Settings(**values)
