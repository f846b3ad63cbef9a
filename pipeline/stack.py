"""`wordpipe up`: the long-running stack, supervised until Ctrl-C.

    broker (embedded unless a bootstrap address is given) -> topics
    aggregator (results API)  ingest service  autoscaler (workers on the chosen backend)

Each service is its own process, as in a deployment; one that exits is restarted, after a
growing back-off when it crashes again and again, and every crash is logged and reported
on the status topic (shown by the results API, the autoscaler and the dashboard). A service
that crashes 5 times in a row (never up 5 minutes in between) stops the stack with its last
log lines (the rule: pipeline.supervisor). With a state directory (pipeline/statedir/), the
directory is taken and verified before anything starts, its last durable cut is written
back into the fresh broker before the services start, and the journal keeps it from then on.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import requests

from pipeline.aggregator import instances as aggregator_instances
from pipeline.aggregator.changelog import topics_prefix
from pipeline.config import Connection, Settings, WorkerSettings
from pipeline.errors import ConfigError, UnavailableError
from pipeline.kafka import broker as broker_mod
from pipeline.observe.crash_reports import CrashReporter
from pipeline.observe.roster import Roster
from pipeline.statedir.directory import Contents, Directory
from pipeline.statedir.journal import Journal, Levels, restore
from pipeline.supervisor import Child, Supervisor

log = logging.getLogger("wordpipe.up")


class StackError(UnavailableError):
    pass


class Stack:
    def __init__(self, settings: Settings, log_dir: Path, policy: str | None = None) -> None:
        self.settings = settings.resolved()
        self.instances = aggregator_instances(self.settings.aggregator)  # (name, results port)
        self.log_dir = log_dir
        self.policy = policy
        self.broker: broker_mod.EmbeddedBroker | None = None
        self.connection: Connection | None = None  # once the broker is up
        self.supervisor = Supervisor(log_dir, StackError)
        self.reporter: CrashReporter | None = None  # once the broker is up
        self.roster: Roster | None = None  # for the crash reports of what others relaunch: the workers
        self._warned: dict[str, int] = {}  # by role: the crashes warned of
        directory = settings.kafka.state_dir
        if directory and settings.kafka.bootstrap:
            raise ConfigError(
                "state_dir: keeps the embedded broker's contents, and a Kafka cluster (bootstrap) keeps its own; give one"
            )
        self.directory = Directory(Path(directory)) if directory else None
        self.contents: Contents | None = None  # the directory's, verified before anything starts
        self.journal: Journal | None = None
        self.restored = 0  # records restored from the state directory

    @property
    def services(self) -> list[Child]:
        return list(self.supervisor.children.values())

    @property
    def other_results(self) -> dict[str, str]:
        """The results API of each aggregator instance beside the first, by instance name."""
        host = self.settings.aggregator.host
        return {name: f"http://{host}:{port}" for name, port in self.instances[1:]}

    @property
    def urls(self) -> dict[str, str]:
        s = self.settings
        return {
            "ingest": f"http://{s.ingest.host}:{s.ingest.port}",
            "results": f"http://{s.aggregator.host}:{s.aggregator.port}",
            "dashboard": f"http://{s.aggregator.host}:{s.aggregator.port}/",
            "autoscaler": f"http://{s.autoscaler.host}:{s.autoscaler.port}/v1/status",
        }

    def claim(self) -> None:
        """Take the state directory and verify it: refused (in use, damaged, not writable)
        before anything starts. `start` claims it if its caller did not."""
        if self.directory is None or self.contents is not None:
            return
        self.directory.lock()
        try:
            self.contents = self.directory.verify()
            self.directory.check_writable()
        except BaseException:
            self.directory.unlock()
            raise
        self.directory.note_holder()

    def start(self, timeout: float = 120.0) -> Stack:
        self.claim()
        try:
            self.broker, self.connection = broker_mod.start_kafka(
                self.settings.kafka, self.settings.topics, self.log_dir, reached=self._restore
            )
            self.reporter = CrashReporter(self.connection, self.settings.topics)
            self.supervisor.report = self.reporter.publish
            self.roster = Roster(self.connection, self.settings.topics)
            # The stack's own files stay together, in its log directory. One aggregator on the
            # stack's own broker is the only one there can be: it joins no group.
            self.settings = self.settings.replace(
                aggregator_datadir=self.settings.aggregator.datadir or str(self.log_dir / "faust"),
                aggregator_alone=self.broker is not None and len(self.instances) == 1,
            )
            self._spawn_services()
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _restore(self, connection: Connection) -> None:
        """The directory's last cut into the fresh broker, then the journal from there on."""
        if self.directory is None or self.contents is None:
            return
        cut = self.contents.cut
        self.restored = restore(self.directory, self.contents, connection, self.settings.topics)
        self.directory.initialize()
        if cut is not None and not cut.clean:
            cut = self.directory.compact(cut)  # what a crash left after its last cut goes
        levels = Levels(self.settings.topics, topics_prefix(self.settings.aggregator.id))
        self.journal = Journal(
            self.directory,
            connection,
            levels,
            groups_of(self.settings.worker, self.settings.aggregator.id),
            self.settings.worker.ends_group,
            cut,
        ).start()
        log.info("%s", self.state_line())

    def state_line(self) -> str:
        """How the state directory was found: what the start says about it, in one line."""
        cut = self.contents.cut if self.contents else None
        if cut is None:
            return "a new state directory: nothing to restore"
        when = datetime.fromtimestamp(cut.at).isoformat(sep=" ", timespec="milliseconds")
        records = f"{self.restored:,} records of {len(cut.topics)} topics"
        if cut.clean:
            return f"the last stop was clean (cut {cut.n}, {when}): restored {records}"
        return (
            f"the last stop was not clean: restored its last durable cut (cut {cut.n}, {when}), {records}; "
            "nothing after it had been acknowledged"
        )

    def _spawn_services(self) -> None:
        assert self.connection is not None  # the broker is up
        env = {**os.environ, **self.settings.to_env(self.connection)}
        cli = [sys.executable, "-m", "pipeline.cli"]
        # Ctrl-C stops the workers too; a restarted autoscaler adopts them instead.
        autoscale = [*cli, "autoscale", "run", "--stop-workers", "--log-dir", str(self.log_dir / "workers")]
        autoscale += ["--policy", self.policy] if self.policy else []
        for name, port in self.instances:
            self.supervisor.spawn(name, [*cli, "aggregator", "--port", str(port)], env, own_session=True)
        for name, args in {"ingest": [*cli, "ingest-server"], "autoscaler": autoscale}.items():
            self.supervisor.spawn(name, args, env, own_session=True)

    def _wait_healthy(self, timeout: float) -> None:
        urls = self.urls
        pending = {
            "aggregator": urls["results"] + "/health",
            **{name: url + "/health" for name, url in self.other_results.items()},
            "ingest": urls["ingest"] + "/health",
            "autoscaler": urls["autoscaler"].replace("/v1/status", "/health"),
        }
        deadline = time.monotonic() + timeout
        while pending:
            self.supervise()
            pending = {name: url for name, url in pending.items() if not _healthy(url)}
            if pending and time.monotonic() > deadline:
                names = ", ".join(pending)
                raise StackError(f"{names} did not become healthy within {timeout:.0f} s; logs in {self.log_dir}")
            time.sleep(0.2)

    def supervise(self) -> None:
        """Restart services that exited, once their back-off has passed; give up on one that
        keeps crashing; say when a role others relaunch is in a crash loop."""
        self.supervisor.poll()
        self._warn_of_loops()

    def _warn_of_loops(self) -> None:
        """The autoscaler relaunches the workers and never gives up on them, so a crash loop of
        theirs is said here too, where `up` runs: once per crash while it lasts."""
        if self.roster is None:
            return
        self.roster.refresh()
        for role, report in self.roster.crashes.items():
            if role in self.supervisor.roles or not report.looping or report.crashes <= self._warned.get(role, 0):
                continue
            self._warned[role] = report.crashes
            log.warning(
                "%s: in a crash loop, %d crashes in a row (%d in all), the last %s; still relaunched, at most once "
                "a minute (%s; logs in %s)",
                role,
                report.in_a_row,
                report.crashes,
                report.last_exit,
                self.urls["autoscaler"],
                self.log_dir,
            )

    def stop(self) -> None:
        # The autoscaler first, so that no worker is launched while the rest goes.
        self.supervisor.stop(grace=45.0)  # the autoscaler drains its workers
        if self.reporter is not None:
            self.reporter.close()
            self.reporter = None
        if self.roster is not None:
            self.roster.close()
            self.roster = None
        if self.journal is not None:
            self.journal.stop()  # everything is quiet: its last cut is a clean stop's
            self.journal = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.directory is not None:
            self.directory.unlock()


def groups_of(worker: WorkerSettings, aggregator_id: str) -> list[str]:
    """The consumer groups whose offsets a cut of a stack holds, in the order a round reads
    them: idle source windows' recorded ends before the workers' offsets (statedir/journal.py)."""
    return [worker.ends_group, worker.group, worker.resumes_group, worker.letters_group, aggregator_id]


def _healthy(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
