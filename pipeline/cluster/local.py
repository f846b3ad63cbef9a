"""Workers as plain local processes: the embedded default."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline import processes
from pipeline.cluster.backend import Resources, WorkerInfo


class LocalBackend:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self._ids = itertools.count(1)

    def launch(self, count: int, resources: Resources = Resources()) -> list[str]:
        ids = []
        for _ in range(count):
            worker_id = f"worker-{next(self._ids)}"
            out = open(self.log_dir / f"{worker_id}.log", "ab")
            env = {**self.env, "WORDPIPE_WORKER_STATUS_FILE": str(self._status_file(worker_id))}
            try:
                self.procs[worker_id] = processes.spawn([sys.executable, "-m", "workers"], env=env, stdout=out, stderr=subprocess.STDOUT)
            finally:
                out.close()
            ids.append(worker_id)
        return ids

    def kill(self, ids: list[str], grace: float = 10.0) -> None:
        procs = [self.procs.pop(i) for i in ids if i in self.procs]
        for proc in procs:  # signal all first so they drain in parallel
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            processes.terminate(proc, grace)

    def list(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(worker_id, "running" if proc.poll() is None else "exited", f"pid {proc.pid}", proc.returncode)
            for worker_id, proc in self.procs.items()
        ]

    def reap(self) -> list[WorkerInfo]:
        """Forget workers that have exited; returns them."""
        gone = [w for w in self.list() if w.state == "exited"]
        for w in gone:
            self.procs.pop(w.id).wait()
        return gone

    def _status_file(self, worker_id: str) -> Path:
        return self.log_dir / f"{worker_id}.status.json"

    def assignments(self) -> dict[str, list[int]]:
        """Chunks partitions each running worker reports as assigned to it."""
        out = {}
        for info in self.list():
            if info.state != "running":
                continue
            try:
                out[info.id] = json.loads(self._status_file(info.id).read_text())["assigned"]
            except (OSError, ValueError, KeyError):  # not written yet
                out[info.id] = []
        return out

    def pid(self, worker_id: str) -> int:
        return self.procs[worker_id].pid

    def close(self) -> None:
        self.kill(list(self.procs), grace=10.0)
