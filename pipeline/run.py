"""`wordpipe run`: broker (if embedded), aggregator and workers around one ingest.

    with Pipeline(settings) as p:
        report = p.ingest(sources)
        p.wait_counted(report)
        totals = p.totals()

Workers or an aggregator that die are relaunched while the pipeline waits, so a run
survives crashes; exactness does not depend on it (see pipeline.aggregator). Crashes are
relaunched with a back-off, and a role's 5th crash in the run fails it, however slowly they
came (the rule: pipeline.supervisor).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pipeline import codec, kafka, processes
from pipeline.aggregator import instances as aggregator_instances
from pipeline.assigner import Assigner
from pipeline.cluster import (
    Backend,
    BackendError,
    Resources,
    forget_exited,
    open_backend,
)
from pipeline.config import Connection, Settings
from pipeline.errors import UnavailableError
from pipeline.ingest.publisher import ChunkPublisher, IngestReport
from pipeline.ingest.sources import Source
from pipeline.kafka import broker as broker_mod
from pipeline.observe.crash_reports import CrashReporter
from pipeline.observe.roster import Roster
from pipeline.progress import (
    Extents,
    Produced,
    all_counted,
    chunks_counted,
    in_deleted_generations,
    records_counted,
    sources_counted,
    uncounted,
)
from pipeline.supervisor import Supervisor
from pipeline.worker import RUN_WORKERS

if TYPE_CHECKING:
    import requests

    from pipeline.client import Client

log = logging.getLogger("wordpipe.run")
T = TypeVar("T")


class RunError(UnavailableError):
    pass


class Pipeline:
    def __init__(self, settings: Settings, log_dir: Path | None = None) -> None:
        # Logs of a temporary directory are kept only when the run fails (errors name it).
        self._own_log_dir = log_dir is None
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="wordpipe-run-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = f"run-{uuid.uuid4().hex[:8]}"
        settings = settings.resolved().replace(
            aggregator_datadir=settings.aggregator.datadir or str(self.log_dir / "faust"),
            # Its topics and group are this run's, and a crashed instance is relaunched once gone.
            aggregator_alone=(settings.aggregator.count or 1) == 1,
        )
        if settings.service.token_missing:  # this run's aggregator answers only to this run
            settings = settings.replace(tokens=secrets.token_urlsafe(24))
        if settings.kafka.embedded:
            settings = settings.replace(aggregator_port=broker_mod.free_port(settings.aggregator.host))
        else:  # a one-shot job on a shared cluster gets topics and groups of its own
            run = f"wordpipe-{self.run_id}"
            settings = settings.replace(
                chunks_topic=f"{run}.chunks",
                partials_topic=f"{run}.partials",
                totals_topic=f"{run}.totals",
                deadletter_topic=f"{run}.deadletter",
                status_topic=f"{run}.status",
                documents_topic=f"{run}.documents",
                worker_group=f"{run}.workers",
                aggregator_id=f"{run}.aggregator",
                aggregator_port=broker_mod.free_port(settings.aggregator.host),
            )
        self.settings = settings
        self.worker_count = RUN_WORKERS if settings.worker.count is None else settings.worker.count
        self.instances = aggregator_instances(settings.aggregator)
        self.broker: broker_mod.EmbeddedBroker | None = None
        self._connection: Connection | None = None  # once the broker is up
        self._publisher: ChunkPublisher | None = None
        self.workers: Backend | None = None
        self.roster: Roster | None = None
        self.assigner: Assigner | None = None
        self.env: dict[str, str] = {}
        self.supervisor = Supervisor(self.log_dir, RunError, one_shot=True)
        self._reporter: CrashReporter | None = None  # once the broker is up
        # "": no header, not the environment's token.
        self._token = settings.service.token_list[0] if settings.service.auth == "token" else ""
        self._results: Client | None = None
        self.counted_at: float | None = None
        self._awaited: IngestReport | None = None  # what wait_counted last saw counted ...
        self._counted_by: tuple[subprocess.Popen | None, ...] = ()  # ... and by which aggregator processes
        self._created_topics = False
        self._admin: kafka.AdminClient | None = None  # once asked which generations are deleted

    @property
    def results_url(self) -> str:
        return f"http://{self.settings.aggregator.host}:{self.settings.aggregator.port}"

    @property
    def results(self) -> Client:
        """The results API's client, made when first asked for: requests takes ~0.1 s to
        import, which a run spends once its aggregator, the process it waits on, is launched."""
        if self._results is None:
            from pipeline.client import Client

            self._results = Client(results_url=self.results_url, token=self._token)
        return self._results

    @property
    def http(self) -> requests.Session:
        """The results API's session, token included: for the endpoints the client does not wrap."""
        return self.results.http

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            raise RunError("this pipeline is not started")
        return self._connection

    @property
    def aggregator(self) -> subprocess.Popen | None:
        """The first instance's process (the only one unless `aggregators` is set)."""
        return self.aggregators[0]

    @property
    def aggregators(self) -> tuple[subprocess.Popen | None, ...]:
        """Each instance's process now (a relaunch is another)."""
        children = [self.supervisor.children.get(name) for name, _ in self.instances]
        return tuple(child.proc if child else None for child in children)

    @property
    def restarts(self) -> dict[str, int]:
        """Relaunches so far, by role: "workers" and "aggregator"."""
        return {"workers": 0, "aggregator": 0, **self.supervisor.restarts}

    # -- lifecycle ---------------------------------------------------------------

    def start(self, ready: bool = True) -> Pipeline:
        """Launch the broker (if embedded), the aggregator and the workers; with `ready`, wait
        until they own every partition. Chunks wait in Kafka for them, so a one-shot run can
        send its input while they join (seconds on Tansu) rather than after."""
        if self.workers is not None:
            raise RunError("this pipeline is already started")
        s = self.settings
        try:
            self.broker, self._connection = broker_mod.start_kafka(
                s.kafka, s.topics, self.log_dir, reached=self._reached
            )
            self.workers = open_backend(
                s.cluster, s.mesos, s.worker_env(self._connection), self.run_id, self.log_dir, owner_pid=os.getpid()
            )
            # The processes first: they import (the aggregator for half a second) while the rest is made here.
            launched = self.launch_workers(self.worker_count)
            self.roster = Roster(self._connection, s.topics)
            self.assigner = Assigner(self._connection, s.topics, s.worker)
            self.assigner.expect(launched)
            self._reporter = CrashReporter(self._connection, s.topics)
            self.supervisor.report = self._reporter.publish
            # Made now, its producer has its id (pipeline/kafka/clients.py) before the input is read.
            self._publisher = ChunkPublisher(self._connection, s.topics, s.text)
            if ready:
                self.wait_ready()
        except BaseException as exc:
            self.stop()
            if not isinstance(exc, RunError):  # a RunError points at the logs
                self._discard_logs()
            if isinstance(exc, BackendError):  # says all there is to say
                raise RunError(str(exc)) from None
            raise
        return self

    def _reached(self, connection: Connection) -> None:
        self._created_topics = True  # from here on, a run on a shared cluster cleans up after itself
        self.env = self.settings.to_env(connection)
        # The run waits on the aggregator: it imports while the topics are made (it makes
        # any it reads before they are, as they would be, and finds the others made).
        self.start_aggregators()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the aggregator owns every shard and the workers share every chunks partition."""
        deadline = time.monotonic() + timeout
        partitions = self.settings.topics.chunk_partitions
        while time.monotonic() < deadline:
            self.supervise()
            workers, roster = self._started()
            live = [w.id for w in workers.list() if w.state == "running"]
            roster.refresh()
            assignments = roster.assignments(live)
            covered = sorted(p for a in assignments.values() for p in a) == list(range(partitions))
            balanced = all(assignments.values()) or len(assignments) > partitions
            progress = self.progress()
            aggregator_ready = progress is not None and len(progress["shards"]) == progress["partitions"]
            if covered and balanced and len(assignments) == self.worker_count and aggregator_ready:
                return
            time.sleep(0.05)
        raise RunError(f"the pipeline did not become ready within {timeout:.0f} s; logs in {self.log_dir}")

    def _started(self) -> tuple[Backend, Roster]:
        if self.workers is None or self.roster is None:
            raise RunError("this pipeline is not started")
        return self.workers, self.roster

    def launch_workers(self, count: int) -> list[str]:
        if self.workers is None:
            raise RunError("this pipeline is not started")
        launched = self.workers.launch(
            count, Resources(self.settings.cluster.worker_cpus, self.settings.cluster.worker_mem_mb)
        )
        if self.assigner is not None:  # at start it comes next, and is told then
            self.assigner.expect(launched)
        return launched

    def start_aggregators(self) -> None:
        for name, port in self.instances:
            env = {**os.environ, **self.env, "WORDPIPE_AGGREGATOR_PORT": str(port)}
            self.supervisor.spawn(name, [sys.executable, "-m", "pipeline.aggregator"], env)

    def stop(self) -> None:
        # A one-shot run stops once its answer is out (or it failed): nothing is left to drain,
        # so its processes are killed rather than each given time to leave in turn.
        if self.workers is not None:
            self.workers.kill([w.id for w in self.workers.list()], grace=0)
            self.workers.close()
        if self.roster is not None:
            self.roster.close()
            self.roster = None
        if self.assigner is not None:
            self.assigner.close()
            self.assigner = None
        self.supervisor.stop(grace=0)
        self._publisher = self._reporter = None  # their producers' connections closed: the broker stops at once
        if self.broker is not None:
            self.broker.stop(grace=0)  # it keeps nothing beyond the run
        elif self._created_topics:
            self._delete_run_topics()
        if self._results is not None:
            self._results.close()

    def _delete_run_topics(self) -> None:
        s = self.settings
        admin = kafka.admin(self.connection)
        prefix = s.topics.chunks.rsplit(".", 1)[0]
        topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        for future in admin.delete_topics(topics, operation_timeout=10).values():
            try:
                future.result()
            except Exception as exc:  # best effort: the run's answer is already out
                log.warning("could not delete run topic: %s", exc)

    def __enter__(self) -> Pipeline:
        return self if self.workers is not None else self.start()

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        self.stop()
        if exc_type is None or issubclass(exc_type, (KeyboardInterrupt, SystemExit)):  # success or interrupted
            self._discard_logs()

    def _discard_logs(self) -> None:
        """Remove the log directory if it is our temporary one (kept only when a run fails)."""
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    # -- the job -----------------------------------------------------------------

    def ingest(self, sources: list[Source], on_bytes: Callable[[int], None] | None = None) -> IngestReport:
        if self._publisher is None:
            raise RunError("this pipeline is not started")
        for source in sources:
            self._publisher.publish(source, on_bytes)
        return self._publisher.flush()

    def source_extents(self) -> Extents:
        """Each source topic partition's first and end offsets now: what a one-shot run counts."""
        topics = [source.topic for source in self.settings.topics.source_list]
        return kafka.topic_extents(self.connection, topics) if topics else {}

    def supervise(self) -> None:
        """Relaunch workers and the aggregator that died, once their back-off has passed; give
        up on a crash loop."""
        for w in forget_exited(self._started()[0]):  # relaunched through the backend, under the one rule
            self.supervisor.exited("workers", w.exit_code, self.log_dir / f"{w.id}.log", w.out_of_memory)
        due = self.supervisor.due("workers")
        if due:
            self.launch_workers(due)
        self.supervisor.poll()

    def progress(self) -> dict | None:
        return self.results.progress()  # None: starting or restarting

    def all_counted(self, report: IngestReport) -> bool:
        progress = self.progress()
        return progress is not None and all_counted(progress, report.produced)

    def wait_counted(
        self,
        report: IngestReport,
        timeout: float | None = None,
        on_counted: Callable[[int], None] | None = None,
        extents: Extents | None = None,
    ) -> None:
        """Until every chunk of `report`, and every source record within `extents`, is counted;
        `on_counted` hears how many (chunks and records) are, as it goes. Chunks in generations
        deleted since are counted (`in_deleted_generations`): a run longer than a generation
        once waited for them for ever."""
        deadline = None if timeout is None else time.monotonic() + timeout
        extents = extents or {}
        waiting, gone, looked = dict(report.produced), 0, time.monotonic()  # a short run never asks
        while True:
            self.supervise()
            asked = self.aggregators
            progress = self.progress()
            if progress is not None:
                if on_counted:
                    on_counted(gone + chunks_counted(progress, waiting) + records_counted(progress, extents))
                if all_counted(progress, waiting) and sources_counted(progress, extents):
                    self.counted_at = time.monotonic()
                    self._awaited, self._counted_by = report, asked
                    return
                if time.monotonic() - looked >= 1.0:
                    looked = time.monotonic()
                    gone += sum(len(waiting.pop(name)) for name in self.in_deleted_generations(waiting))
            if deadline is not None and time.monotonic() > deadline:
                raise RunError(
                    f"not every chunk was counted within {timeout:.0f} s ({uncounted(progress, waiting)}); "
                    f"logs in {self.log_dir}"
                )
            time.sleep(0.05)

    def in_deleted_generations(self, produced: Produced) -> list[str]:
        if self._admin is None:
            self._admin = kafka.admin(self.connection)
        try:
            names = kafka.topic_names(self._admin)
        except kafka.KafkaUnavailable:  # the broker away a while: the next look asks again
            return []
        topics = self.settings.topics
        return in_deleted_generations(produced, names, topics.chunks, topics.partials)

    def check_nothing_refused(self) -> None:
        """Raise if a worker or the aggregator dead-lettered a chunk or partial of this run: its
        counts would be wrong. Source records with no text are only reported: they hold no words."""
        s = self.settings
        letters = [
            codec.decode_deadletter(m.value()) for m in kafka.read_partition(self.connection, s.topics.deadletter)
        ]
        sources = {source.topic for source in s.topics.source_list}
        ours = [letter for letter in letters if letter.topic not in sources]
        if ours:
            raise RunError(
                f"records were dead-lettered (on {s.topics.deadletter}), so the counts would be wrong; the first: "
                f"{ours[0].reason} (logs in {self.log_dir})"
            )
        # A window read again after its partition changed hands refuses its records again.
        refused = list({(letter.topic, letter.partition, letter.offset): letter for letter in letters}.values())
        if refused:
            log.warning(
                "%d source record(s) held no text and went to %s; the first, %s[%d]@%d: %s",
                len(refused),
                s.topics.deadletter,
                refused[0].topic,
                refused[0].partition,
                refused[0].offset,
                refused[0].reason,
            )

    def resources(self) -> dict:
        """CPU and memory used so far: each live worker's own report (any backend; up to
        one status interval old), and the aggregator's, from /proc."""
        time.sleep(self.settings.worker.status_interval)  # a report that covers the last chunks
        workers, roster = self._started()
        statuses = roster.refresh(timeout=0.5)
        live = {w.id for w in workers.list() if w.state == "running"}
        if None in self.aggregators:
            raise RunError("an aggregator is not running")
        usage = [processes.usage(proc.pid) for proc in self.aggregators if proc is not None]
        cpu, rss = sum(cpu for cpu, _ in usage), max(rss for _, rss in usage)
        return {
            "workers": [
                {
                    "worker": w,
                    "chunks": st.chunks,
                    "busy_seconds": st.busy_seconds,
                    "peak_rss_mb": st.peak_rss_kb / 1024,
                }
                for w, st in sorted(statuses.items())
                if w in live
            ],
            "aggregator": {"cpu_seconds": cpu, "peak_rss_mb": rss},
        }

    def totals(self) -> dict[str, int]:
        """Every word's total (see `read`)."""
        return self.read(lambda: dict(self.results.totals(page=100_000)))

    def top(self, k: int) -> dict:
        """The k most frequent words, with the total and distinct words (see `read`)."""
        return self.read(lambda: self.results.top(k))

    def read(self, ask: Callable[[], T]) -> T:
        """An answer from an aggregator that counted all that `wait_counted` waited for. One
        that crashed since (even just after the count was complete) recovers what was durable
        and replays the rest: it is waited for again."""
        while True:
            self.supervise()
            asked = self.aggregators
            if self._awaited is not None and asked != self._counted_by:
                self.wait_counted(self._awaited, timeout=120)
                continue
            try:
                answer = ask()
            except UnavailableError:  # RequestFailed, the client's only error
                if self._awaited is None:
                    raise
                time.sleep(0.05)  # it died while answering: the next loop waits for its successor
                continue
            self.supervise()
            if self.aggregators == asked:
                return answer
