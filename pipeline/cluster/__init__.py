"""Cluster backends: where workers run. One interface (backend.py), one module each."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.cluster.backend import Backend, BackendError, Resources, WorkerInfo, forget_exited

if TYPE_CHECKING:  # sections handed in; a backend needs nothing else of the settings
    from pipeline.config import ClusterSettings, MesosSettings

__all__ = ["Backend", "BackendError", "Resources", "WorkerInfo", "forget_exited", "open_backend"]


def open_backend(
    cluster: ClusterSettings,
    mesos: MesosSettings,
    env: dict[str, str],
    pipeline: str,
    log_dir: Path,
    owner_pid: int | None = None,
) -> Backend:
    """The backend `cluster.backend` names, for the workers of `pipeline`, each handed `env`
    (a worker's: Settings.worker_env).

    `owner_pid`: the workers are this process's alone and must not outlive it (`wordpipe run`).
    """
    if cluster.backend == "mesos":
        from pipeline.cluster.mesos import MesosBackend

        return MesosBackend(mesos, cluster, env, pipeline, one_shot=owner_pid is not None)
    if cluster.backend == "docker":
        from pipeline.cluster.docker import DockerBackend

        return DockerBackend(cluster.image, env, pipeline, log_dir, owner_pid)
    from pipeline.cluster.local import LocalBackend

    return LocalBackend(env, log_dir)
