"""Workers as plain local processes: the embedded default.

They are our children and die with us (PR_SET_PDEATHSIG), so there is nothing to adopt
after a restart. Resource requests are not enforced here; the docker and mesos backends
enforce them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline import processes
from pipeline.cluster.backend import Resources, WorkerInfo, inherited, new_worker_id


class LocalBackend:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = {**inherited(), **env}
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def launch(self, count: int, resources: Resources = Resources()) -> list[str]:
        ids = []
        for _ in range(count):
            worker_id = new_worker_id()
            # Each its own health file beside its log: `wordpipe health` reads it as in a container.
            env = {
                **self.env,
                "WORDPIPE_WORKER_ID": worker_id,
                "WORDPIPE_HEALTH_FILE": str(self.log_dir / f"{worker_id}.health"),
            }
            with open(self.log_dir / f"{worker_id}.log", "ab") as out:
                self.procs[worker_id] = processes.spawn(
                    [sys.executable, "-m", "pipeline.worker"], env=env, stdout=out, stderr=subprocess.STDOUT
                )
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
            for worker_id, proc in list(self.procs.items())  # a copy: a controller may launch meanwhile
        ]

    def pid(self, worker_id: str) -> int:
        return self.procs[worker_id].pid

    def close(self) -> None:
        self.kill(list(self.procs), grace=10.0)
