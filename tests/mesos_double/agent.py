"""The double's agent: runs each task as a real container on the local Docker engine, the
way the DOCKER containerizer and docker executor do (src/docker/docker.cpp in apache/mesos):
`docker run` of the task's image with its environment, `--cpu-shares` and `--memory` from
its resources, the DockerInfo parameters as extra flags, and the command as arguments to
the image's entrypoint when `shell` is false. A kill is `docker stop -t <grace>`."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

LABEL = "wordpipe.mesos-double"  # every container of the double carries it, for cleanup
CPU_SHARES_PER_CPU = 1024
MIN_MEMORY_MB = 32

Report = Callable[[str, str, str], None]  # (state, message, reason)


class DockerAgent:
    def __init__(
        self, agent_id: str = "agent-S0", cpus: float = 8.0, mem_mb: float = 8192.0, hostname: str = "127.0.0.1"
    ) -> None:
        self.id = agent_id
        self.cpus = cpus
        self.mem_mb = mem_mb
        self.hostname = hostname
        self.client = docker.from_env()
        self.containers: dict[str, object] = {}  # task id -> container
        self.killing: set[str] = set()
        self.lock = threading.Lock()

    def run(self, task: dict, report: Report) -> None:
        threading.Thread(
            target=self._run, args=(task, report), daemon=True, name=f"task-{task['task_id']['value']}"
        ).start()

    def kill(self, task_id: str, grace: float) -> bool:
        """Stop the task's container; False when the agent has no such container."""
        with self.lock:
            container = self.containers.get(task_id)
            self.killing.add(task_id)
        if container is None:
            return False
        try:
            container.stop(timeout=max(0, round(grace)))
        except (NotFound, APIError):
            pass  # already gone
        return True

    def crash(self, task_id: str) -> bool:
        """SIGKILL the task's container, as the OOM killer or a failing machine would: the
        task fails (TASK_FAILED), it was not killed by the framework. False when no such container."""
        with self.lock:
            container = self.containers.get(task_id)
        if container is None:
            return False
        try:
            container.kill()
        except (NotFound, APIError):
            return False
        return True

    def destroy_all(self) -> None:
        for c in self.client.containers.list(all=True, sparse=True, filters={"label": f"{LABEL}={self.id}"}):
            try:
                c.remove(force=True)
            except (NotFound, APIError):
                pass

    def running_containers(self) -> list:
        # sparse: no inspect per container, which races with containers being removed
        return self.client.containers.list(sparse=True, filters={"label": f"{LABEL}={self.id}"})

    def _run(self, task: dict, report: Report) -> None:
        task_id = task["task_id"]["value"]
        try:
            options = run_options(task, self.id)
        except ValueError as exc:
            report("TASK_FAILED", f"Failed to launch container: {exc}", "REASON_CONTAINER_LAUNCH_FAILED")
            return
        report("TASK_STARTING", "", "")
        try:
            # The real containerizer pulls a missing image; nothing may leave this machine, so the double fails.
            self.client.images.get(options["image"])
        except ImageNotFound:
            report(
                "TASK_FAILED",
                f"Failed to launch container: Failed to pull image {options['image']!r}: "
                "not present, and this agent never pulls",
                "REASON_CONTAINER_LAUNCH_FAILED",
            )
            return
        try:
            container = self.client.containers.run(**options, detach=True)
        except (APIError, DockerException) as exc:
            report("TASK_FAILED", f"Failed to launch container: {exc}", "REASON_CONTAINER_LAUNCH_FAILED")
            return
        with self.lock:
            self.containers[task_id] = container
            killed_early = task_id in self.killing
        if killed_early:
            container.stop(timeout=0)
        else:
            report("TASK_RUNNING", "", "")
        try:
            code = container.wait()["StatusCode"]
        except (NotFound, APIError, DockerException):
            code = 137
        with self.lock:
            self.containers.pop(task_id, None)
            killed = task_id in self.killing
            self.killing.discard(task_id)
        try:
            container.remove(force=True)
        except (NotFound, APIError):
            pass
        message = f"Container exited with status {code}"
        if killed:
            report("TASK_KILLED", message, "")
        elif code == 0:
            report("TASK_FINISHED", message, "")
        else:
            report("TASK_FAILED", message, "REASON_COMMAND_EXECUTOR_FAILED")


# `docker run` flags (DockerInfo.parameters) the double understands, as Docker SDK arguments.
def _flag(options: dict, key: str, value: str) -> None:
    if key == "init":
        options["init"] = value == "true"
    elif key == "read-only":
        options["read_only"] = value == "true"
    elif key == "tmpfs":
        path, _, opts = value.partition(":")
        options.setdefault("tmpfs", {})[path] = opts
    elif key in ("cap-drop", "cap-add", "security-opt"):
        options.setdefault(key.replace("-", "_"), []).append(value)
    elif key == "pids-limit":
        options["pids_limit"] = int(value)
    elif key == "memory-swap":
        options["memswap_limit"] = value
    elif key == "user":
        options["user"] = value
    else:
        raise ValueError(f"unknown flag: --{key}")


def run_options(task: dict, agent_id: str) -> dict:
    container = task.get("container", {})
    docker_info = container.get("docker")
    if container.get("type") != "DOCKER" or not docker_info:
        raise ValueError("the double's agent runs DOCKER containers only")
    if docker_info.get("network", "HOST") != "HOST":
        raise ValueError("only HOST networking exists on this machine")
    command = task.get("command", {})
    resources = {r["name"]: r["scalar"]["value"] for r in task.get("resources", []) if r.get("type") == "SCALAR"}
    env = {v["name"]: v.get("value", "") for v in command.get("environment", {}).get("variables", [])}
    env.update(MESOS_TASK_ID=task["task_id"]["value"], MESOS_AGENT_ID=agent_id, MESOS_SANDBOX="/mnt/mesos/sandbox")
    options = {
        "image": docker_info["image"],
        "name": f"mesos-{uuid.uuid4()}",
        "network_mode": "host",
        "environment": env,
        "labels": {LABEL: agent_id, "wordpipe.mesos-task": task["task_id"]["value"]},
        "cpu_shares": max(2, int(resources.get("cpus", 0.1) * CPU_SHARES_PER_CPU)),
        "mem_limit": f"{int(max(MIN_MEMORY_MB, resources.get('mem', MIN_MEMORY_MB)))}m",
        "privileged": docker_info.get("privileged", False),
    }
    if command.get("shell", True):
        if "value" not in command:
            raise ValueError("Shell specified but no command value provided")
        options["entrypoint"] = "/bin/sh"
        options["command"] = ["-c", command["value"]]
    else:
        args = ([command["value"]] if "value" in command else []) + command.get("arguments", [])
        if args:
            options["command"] = args
    for p in docker_info.get("parameters", []):
        _flag(options, p["key"], p["value"])
    return options
