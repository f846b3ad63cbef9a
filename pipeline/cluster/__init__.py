"""Cluster backends: where workers run. One interface (backend.py), one module each."""

from __future__ import annotations

from pathlib import Path

from pipeline import tokenize
from pipeline.cluster.backend import (
    Backend,
    BackendError,
    Resources,
    WorkerInfo,
    forget_exited,
    worker_env,
)
from pipeline.config import Settings

__all__ = ["Backend", "BackendError", "Resources", "WorkerInfo", "forget_exited", "open_backend", "worker_env"]


def open_backend(
    settings: Settings, env: dict[str, str], pipeline: str, log_dir: Path, owner_pid: int | None = None
) -> Backend:
    """The backend `settings.cluster.backend` names, for the workers of `pipeline`, with `env` for each worker.

    `owner_pid`: the workers are this process's alone and must not outlive it (`wordpipe run`).
    """
    env = worker_env(env)
    if settings.text.tokenizer_user_dict:  # the file is the launcher's: its words travel with each worker
        env["WORDPIPE_TOKENIZER_USER_DICT"] = tokenize.as_data_uri(settings.text.tokenizer_user_dict)
    if settings.cluster.backend == "mesos":
        from pipeline.cluster.mesos import MesosBackend

        return MesosBackend(settings, env, pipeline, one_shot=owner_pid is not None)
    if settings.cluster.backend == "docker":
        from pipeline.cluster.docker import DockerBackend

        return DockerBackend(settings.cluster.image, env, pipeline, log_dir, owner_pid)
    from pipeline.cluster.local import LocalBackend

    return LocalBackend(env, log_dir)
