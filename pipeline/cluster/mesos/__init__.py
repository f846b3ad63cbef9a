"""Workers as Docker containers that a Mesos (or Clusterd) cluster schedules.

scheduler.py   the framework: subscription, offers, status updates (the HTTP adapter)
calls.py       the scheduler API's calls as plain data; which offers fit
recordio.py    the event stream's framing
"""

from __future__ import annotations

import dataclasses
import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.cluster.backend import BackendError, Resources, WorkerInfo, new_worker_id
from pipeline.cluster.mesos.calls import GONE_STATES, Framework, WorkerTask
from pipeline.cluster.mesos.scheduler import PENDING, Scheduler, exit_code

if TYPE_CHECKING:  # sections handed in; a backend needs nothing else of the settings
    from pipeline.config import ClusterSettings, MesosSettings

SUBSCRIBE_TIMEOUT = 30.0
OUT_OF_MEMORY = "REASON_CONTAINER_LIMITATION_MEMORY"  # a task's reason when its container outgrew its memory


class MesosBackend:
    """The Backend interface over a Mesos framework named after the pipeline.

    `one_shot`: the workers must not outlive this process (`wordpipe run`): failover
    timeout 0, so the master kills them when we disconnect, and a TEARDOWN on close.
    Otherwise (the autoscaler) the framework id and tasks are kept in a state file and
    a restarted process adopts its running tasks.
    """

    def __init__(
        self, mesos: MesosSettings, cluster: ClusterSettings, env: dict[str, str], pipeline: str, one_shot: bool = False
    ) -> None:
        self.one_shot = one_shot
        framework = Framework(
            name=f"wordpipe-{pipeline}",
            user=mesos.user or getpass.getuser(),
            role=mesos.role,
            failover_timeout=0.0 if one_shot else mesos.failover_timeout,
            principal=mesos.principal,
        )
        state_file = None if one_shot else Path(mesos.state_file or _default_state_file(pipeline))
        auth = None
        if mesos.principal:
            assert mesos.secret is not None  # Settings takes both or neither
            auth = (mesos.principal, mesos.secret)
        masters = [m.strip() for m in mesos.master.split(",")]
        try:
            self.scheduler = Scheduler(
                masters,
                framework,
                WorkerTask(cluster.worker_cpus, cluster.worker_mem_mb, cluster.image, env),
                state_file,
                mesos.refuse_seconds,
                auth,
            )
        except ValueError as exc:
            raise BackendError(f"mesos: {exc}") from None
        self.scheduler.start()
        if not self.scheduler.wait_ready(SUBSCRIBE_TIMEOUT):
            error = self.scheduler.last_error
            self.scheduler.close()
            raise BackendError(
                f"mesos: not subscribed to {', '.join(masters)} within {SUBSCRIBE_TIMEOUT:.0f} s: {error}"
            )

    def launch(self, count: int, resources: Resources = Resources()) -> list[str]:
        worker = self.scheduler.worker
        if (resources.cpus, resources.mem_mb) != (worker.cpus, worker.mem_mb):
            self.scheduler.worker = dataclasses.replace(worker, cpus=resources.cpus, mem_mb=resources.mem_mb)
        ids = [new_worker_id() for _ in range(count)]
        self.scheduler.launch(ids)
        return ids

    def kill(self, ids: list[str], grace: float = 10.0) -> None:
        self.scheduler.kill(ids, grace)

    def list(self) -> list[WorkerInfo]:
        out = []
        for task in self.scheduler.snapshot():
            if task.state == PENDING:
                out.append(WorkerInfo(task.id, "running", "task waiting for an offer"))
                continue
            gone = task.state in GONE_STATES
            detail = f"task {task.state} on agent {task.agent_id}" + (f": {task.message}" if task.message else "")
            oom = gone and task.reason == OUT_OF_MEMORY
            out.append(
                WorkerInfo(task.id, "exited" if gone else "running", detail, exit_code(task) if gone else None, oom)
            )
        return out

    def close(self) -> None:
        self.scheduler.close(teardown=self.one_shot)


def _default_state_file(pipeline: str) -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "wordpipe" / f"mesos-{pipeline}.json"
