"""The scheduler API's calls as plain data, and the pure decisions about offers.

Every function returns the JSON form of a `mesos.v1.scheduler.Call` (include/mesos/v1/
scheduler/scheduler.proto): nested messages, enum names as strings, bytes in base64.
Nothing here does I/O; scheduler.py sends what these build.
"""

from __future__ import annotations

from dataclasses import dataclass

# TaskState (mesos.proto). A task in a terminal state is gone for good; TASK_UNKNOWN
# (the master has never heard of it) means the same to us.
TERMINAL_STATES = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_LOST",
        "TASK_ERROR",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
    }
)
GONE_STATES = TERMINAL_STATES | {"TASK_UNKNOWN"}
CAPABILITIES = ("MULTI_ROLE", "TASK_KILLING_STATE", "PARTITION_AWARE")

# The worker container's hardening, as `docker run` flags the DOCKER containerizer passes
# through (DockerInfo.parameters): the same limits the docker backend sets.
DOCKER_PARAMETERS = (
    ("init", "true"),
    ("read-only", "true"),
    ("tmpfs", "/tmp:size=16m"),
    ("cap-drop", "ALL"),
    ("security-opt", "no-new-privileges"),
    ("pids-limit", "256"),
)


@dataclass(frozen=True)
class Framework:
    name: str
    user: str
    role: str = "*"
    failover_timeout: float = 0.0
    principal: str | None = None


def framework_info(framework: Framework, framework_id: str | None) -> dict:
    info = {
        "user": framework.user,
        "name": framework.name,
        "roles": [framework.role],
        "failover_timeout": framework.failover_timeout,
        "checkpoint": True,  # agents keep tasks running across their own restarts
        "capabilities": [{"type": c} for c in CAPABILITIES],
    }
    if framework_id:
        info["id"] = {"value": framework_id}
    if framework.principal:
        info["principal"] = framework.principal
    return info


def subscribe(framework: Framework, framework_id: str | None, suppressed: bool) -> dict:
    body: dict[str, dict[str, object]] = {"subscribe": {"framework_info": framework_info(framework, framework_id)}}
    if suppressed:
        body["subscribe"]["suppressed_roles"] = [framework.role]
    return _call("SUBSCRIBE", None, **body)


def accept(framework_id: str, offer_id: str, tasks: list[dict], refuse_seconds: float) -> dict:
    operations = [{"type": "LAUNCH", "launch": {"task_infos": tasks}}] if tasks else []
    return _call(
        "ACCEPT",
        framework_id,
        accept={
            "offer_ids": [{"value": offer_id}],
            "operations": operations,
            "filters": {"refuse_seconds": refuse_seconds},
        },
    )


def decline(framework_id: str, offer_ids: list[str], refuse_seconds: float) -> dict:
    return _call(
        "DECLINE",
        framework_id,
        decline={
            "offer_ids": [{"value": o} for o in offer_ids],
            "filters": {"refuse_seconds": refuse_seconds},
        },
    )


def revive(framework_id: str, role: str) -> dict:
    return _call("REVIVE", framework_id, revive={"roles": [role]})


def suppress(framework_id: str, role: str) -> dict:
    return _call("SUPPRESS", framework_id, suppress={"roles": [role]})


def kill(framework_id: str, task_id: str, agent_id: str | None, grace: float) -> dict:
    body: dict = {"task_id": {"value": task_id}, "kill_policy": {"grace_period": {"nanoseconds": int(grace * 1e9)}}}
    if agent_id:
        body["agent_id"] = {"value": agent_id}
    return _call("KILL", framework_id, kill=body)


def acknowledge(framework_id: str, status: dict) -> dict | None:
    """The ACKNOWLEDGE for a status update, or None when it must not be acknowledged:
    only updates with a uuid are retried until acknowledged, and only those may be."""
    if not status.get("uuid"):
        return None
    return _call(
        "ACKNOWLEDGE",
        framework_id,
        acknowledge={
            "agent_id": status["agent_id"],
            "task_id": status["task_id"],
            "uuid": status["uuid"],
        },
    )


def reconcile(framework_id: str, tasks: dict[str, str | None]) -> dict:
    """Ask for the state of `tasks` (task id -> agent id); none: of every task the master knows."""
    listed = []
    for task_id, agent_id in sorted(tasks.items()):
        entry: dict = {"task_id": {"value": task_id}}
        if agent_id:
            entry["agent_id"] = {"value": agent_id}
        listed.append(entry)
    return _call("RECONCILE", framework_id, reconcile={"tasks": listed})


def teardown(framework_id: str) -> dict:
    return _call("TEARDOWN", framework_id)


def _call(kind: str, framework_id: str | None, **body) -> dict:
    call = {"type": kind, **body}
    if framework_id:
        call["framework_id"] = {"value": framework_id}
    return call


# --- offers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerTask:
    """What one worker task needs and runs: the resource request, the image, its environment."""

    cpus: float
    mem_mb: int
    image: str
    env: dict[str, str]


def scalar(resources: list[dict], name: str) -> float:
    return sum(
        r.get("scalar", {}).get("value", 0.0) for r in resources if r.get("name") == name and r.get("type") == "SCALAR"
    )


def fits(offer: dict, worker: WorkerTask) -> int:
    """How many workers the offer can hold."""
    resources = offer.get("resources", [])
    by_cpu = int(scalar(resources, "cpus") / worker.cpus + 1e-9)
    by_mem = int(scalar(resources, "mem") / worker.mem_mb + 1e-9)
    return max(0, min(by_cpu, by_mem))


def task_info(task_id: str, offer: dict, worker: WorkerTask) -> dict:
    """A TaskInfo running the worker image under the DOCKER containerizer, on host networking."""
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": offer["agent_id"],
        "resources": [
            _take(offer, "cpus", worker.cpus),
            _take(offer, "mem", float(worker.mem_mb)),
        ],
        # shell false: the image's entrypoint (`wordpipe`) runs with `value` as its argument.
        "command": {
            "shell": False,
            "value": "worker",
            "environment": {
                "variables": [
                    {"name": k, "value": v} for k, v in sorted({**worker.env, "WORDPIPE_WORKER_ID": task_id}.items())
                ]
            },
        },
        "container": {
            "type": "DOCKER",
            "docker": {
                "image": worker.image,
                "network": "HOST",
                "force_pull_image": False,
                "parameters": [
                    *({"key": k, "value": v} for k, v in DOCKER_PARAMETERS),
                    {"key": "memory-swap", "value": f"{worker.mem_mb}m"},  # no swap: over the limit is an OOM kill
                ],
            },
        },
        "labels": {"labels": [{"key": "wordpipe.role", "value": "worker"}]},
    }


def _take(offer: dict, name: str, amount: float) -> dict:
    """`amount` of the offer's resource `name`, allocated to the same role the offer is for."""
    source = next(r for r in offer["resources"] if r.get("name") == name)
    resource = {"name": name, "type": "SCALAR", "scalar": {"value": amount}}
    for key in ("allocation_info", "reservations"):  # the role and reservation they were offered under
        if key in source:
            resource[key] = source[key]
    return resource


def offer_id(offer: dict) -> str:
    return offer["id"]["value"]
