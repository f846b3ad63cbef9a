"""Workers as containers on the Docker engine (Docker SDK).

Containers use host networking (workers reach the broker on 127.0.0.1), the CPU and
memory limits of the resource request, no-new-privileges, no capabilities, a read-only
root with a small tmpfs, and no restart policy: the autoscaler owns their lifecycle.
Labels name the pipeline, role and worker; list() reads them back from the engine, so a
restarted controller adopts the containers an earlier one launched.
"""

from __future__ import annotations

import builtins
import logging
import os
import re
import time
from pathlib import Path

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from pipeline.cluster.backend import BackendError, Resources, WorkerInfo, new_worker_id

log = logging.getLogger(__name__)

LABEL_PIPELINE = "wordpipe.pipeline"
LABEL_ROLE = "wordpipe.role"
LABEL_WORKER = "wordpipe.worker"
LABEL_OWNER_PID = "wordpipe.owner-pid"
_LIVE_STATES = {"created", "running", "restarting", "paused"}


class DockerBackend:
    def __init__(
        self, image: str, env: dict[str, str], pipeline: str, log_dir: Path | None = None, owner_pid: int | None = None
    ) -> None:
        """`owner_pid`: workers live only as long as this local process (a one-shot `wordpipe run`):
        containers of owners that died without cleaning up (SIGKILL) are removed here."""
        try:
            self.client = docker.from_env()
            self.client.ping()
        except DockerException as exc:
            raise BackendError(
                f"docker: cannot reach the Docker engine ({exc}); start one with deploy/docker-engine.sh"
            ) from None
        try:
            self.client.images.get(image)
        except ImageNotFound:
            raise BackendError(
                f"docker: image {image!r} does not exist here; build it with deploy/build-image.sh"
            ) from None
        self.image = image
        self.env = env
        self.pipeline = pipeline
        self.log_dir = log_dir
        self.owner_pid = owner_pid
        if owner_pid is not None:
            self._remove_orphans()

    def launch(self, count: int, resources: Resources = Resources()) -> list[str]:
        ids = []
        for _ in range(count):
            worker_id = new_worker_id()
            try:
                self.client.containers.run(
                    self.image,
                    ["worker"],
                    detach=True,
                    name=re.sub(r"[^a-zA-Z0-9_.-]", "-", f"wordpipe-{self.pipeline}-{worker_id}"),
                    labels=self._labels(worker_id),
                    environment={**self.env, "WORDPIPE_WORKER_ID": worker_id},
                    network_mode="host",
                    # An init as PID 1: a SIGTERM that comes before Python installs its handler
                    # then stops the worker, instead of being ignored as PID 1's would be.
                    init=True,
                    nano_cpus=int(resources.cpus * 1e9),
                    mem_limit=f"{resources.mem_mb}m",
                    memswap_limit=f"{resources.mem_mb}m",  # no swap: over the limit is an OOM kill, not a crawl
                    pids_limit=256,
                    security_opt=["no-new-privileges"],
                    cap_drop=["ALL"],
                    read_only=True,
                    tmpfs={"/tmp": "size=16m"},
                )
            except APIError as exc:
                raise BackendError(
                    f"docker: could not start a worker from {self.image!r}: {exc.explanation or exc}"
                ) from None
            ids.append(worker_id)
        return ids

    def kill(self, ids: list[str], grace: float = 10.0) -> None:
        wanted = set(ids)
        victims = [c for c in self._containers() if c.labels[LABEL_WORKER] in wanted]
        for c in victims:  # signal all first so they drain in parallel
            if c.status in _LIVE_STATES:
                self._signal(c, "SIGTERM")
        deadline = time.monotonic() + grace
        for c in victims:
            try:
                c.wait(timeout=max(0.1, deadline - time.monotonic()))
            except NotFound:
                continue  # removed meanwhile by someone else
            except requests.RequestException:  # still running after the grace period
                log.warning("%s did not stop within %.0f s; killing it", c.labels[LABEL_WORKER], grace)
                self._signal(c, "SIGKILL")
            self._keep_logs(c)
            try:
                c.remove(force=True)
            except NotFound:
                pass  # removed meanwhile by someone else

    def list(self) -> list[WorkerInfo]:
        out = []
        for c in self._containers():
            state = c.attrs["State"]
            live = state["Status"] in _LIVE_STATES
            code = None if live else state["ExitCode"]
            if code is not None and code > 128:
                code = -(code - 128)  # the engine reports death by signal N as 128 + N
            oom = bool(state.get("OOMKilled"))
            detail = f"container {c.short_id}" + (" (out of memory)" if oom else "")
            out.append(
                WorkerInfo(c.labels[LABEL_WORKER], "running" if live else "exited", detail, code, oom and not live)
            )
        return out

    def close(self) -> None:
        self.client.close()

    def _labels(self, worker_id: str) -> dict[str, str]:
        labels = {LABEL_PIPELINE: self.pipeline, LABEL_ROLE: "worker", LABEL_WORKER: worker_id}
        if self.owner_pid is not None:
            labels[LABEL_OWNER_PID] = str(self.owner_pid)
        return labels

    def _remove_orphans(self) -> None:
        for c in self.client.containers.list(all=True, filters={"label": LABEL_OWNER_PID}):
            try:
                os.kill(int(c.labels[LABEL_OWNER_PID]), 0)
                continue  # its owner runs
            except ProcessLookupError:
                pass
            except (PermissionError, ValueError):
                continue  # someone else's process, or not ours to judge
            log.warning("removing %s: the run that launched it is gone", c.name)
            try:
                c.remove(force=True)
            except NotFound:
                pass

    def _containers(self) -> builtins.list[Container]:
        labels = [f"{LABEL_PIPELINE}={self.pipeline}", f"{LABEL_ROLE}=worker"]
        found = []
        # List, then inspect each ourselves: the SDK's own inspect fails the whole listing
        # when a container is removed in between (a concurrent kill, the engine's cleanup).
        for c in self.client.containers.list(all=True, sparse=True, filters={"label": labels}):
            try:
                c.reload()
            except NotFound:
                continue
            found.append(c)
        return found

    def _signal(self, container, signal: str) -> None:
        try:
            container.kill(signal=signal)
        except APIError:
            pass  # it exited meanwhile

    def _keep_logs(self, container) -> None:
        if self.log_dir is not None:
            try:
                logs = container.logs()
            except APIError:
                return
            (self.log_dir / f"{container.labels[LABEL_WORKER]}.log").write_bytes(logs)
