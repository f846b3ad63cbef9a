"""Strict parsing of scheduler Calls in their JSON form, for the part of mesos.v1 the
framework uses: every field known, every type right, every required field present.

Written from the v1 protos (include/mesos/v1/mesos.proto and scheduler/scheduler.proto in
apache/mesos); a field the framework starts sending must be added here, which keeps the
double honest about what the real master would parse. tests/integration/
test_mesos_protos.py checks the same bodies against the protos themselves when a checkout
is at hand.
"""

from __future__ import annotations

import base64
import binascii

# field -> (type, label); a type is a primitive, "enum:A|B|C", or a message name.
MESSAGES: dict[str, dict[str, tuple[str, str]]] = {
    "Call": {
        "framework_id": ("FrameworkID", "optional"),
        "type": (
            "enum:SUBSCRIBE|TEARDOWN|ACCEPT|DECLINE|REVIVE|KILL|SHUTDOWN|ACKNOWLEDGE|RECONCILE|MESSAGE|REQUEST|SUPPRESS",
            "optional",
        ),
        "subscribe": ("Call.Subscribe", "optional"),
        "accept": ("Call.Accept", "optional"),
        "decline": ("Call.Decline", "optional"),
        "revive": ("Call.Revive", "optional"),
        "suppress": ("Call.Suppress", "optional"),
        "kill": ("Call.Kill", "optional"),
        "acknowledge": ("Call.Acknowledge", "optional"),
        "reconcile": ("Call.Reconcile", "optional"),
    },
    "Call.Subscribe": {"framework_info": ("FrameworkInfo", "required"), "suppressed_roles": ("string", "repeated")},
    "Call.Accept": {
        "offer_ids": ("OfferID", "repeated"),
        "operations": ("Offer.Operation", "repeated"),
        "filters": ("Filters", "optional"),
    },
    "Call.Decline": {"offer_ids": ("OfferID", "repeated"), "filters": ("Filters", "optional")},
    "Call.Revive": {"roles": ("string", "repeated")},
    "Call.Suppress": {"roles": ("string", "repeated")},
    "Call.Kill": {
        "task_id": ("TaskID", "required"),
        "agent_id": ("AgentID", "optional"),
        "kill_policy": ("KillPolicy", "optional"),
    },
    "Call.Acknowledge": {
        "agent_id": ("AgentID", "required"),
        "task_id": ("TaskID", "required"),
        "uuid": ("bytes", "required"),
    },
    "Call.Reconcile": {"tasks": ("Call.Reconcile.Task", "repeated")},
    "Call.Reconcile.Task": {"task_id": ("TaskID", "required"), "agent_id": ("AgentID", "optional")},
    "FrameworkInfo": {
        "user": ("string", "required"),
        "name": ("string", "required"),
        "id": ("FrameworkID", "optional"),
        "failover_timeout": ("double", "optional"),
        "checkpoint": ("bool", "optional"),
        "role": ("string", "optional"),
        "roles": ("string", "repeated"),
        "hostname": ("string", "optional"),
        "principal": ("string", "optional"),
        "webui_url": ("string", "optional"),
        "capabilities": ("FrameworkInfo.Capability", "repeated"),
        "labels": ("Labels", "optional"),
    },
    "FrameworkInfo.Capability": {
        "type": (
            (
                "enum:UNKNOWN|REVOCABLE_RESOURCES|TASK_KILLING_STATE|GPU_RESOURCES|SHARED_RESOURCES|PARTITION_AWARE"
                "|MULTI_ROLE|RESERVATION_REFINEMENT|REGION_AWARE"
            ),
            "optional",
        ),
    },
    "FrameworkID": {"value": ("string", "required")},
    "OfferID": {"value": ("string", "required")},
    "AgentID": {"value": ("string", "required")},
    "TaskID": {"value": ("string", "required")},
    "Filters": {"refuse_seconds": ("double", "optional")},
    "KillPolicy": {"grace_period": ("DurationInfo", "optional")},
    "DurationInfo": {"nanoseconds": ("int64", "required")},
    "Offer.Operation": {
        "type": ("enum:UNKNOWN|LAUNCH|LAUNCH_GROUP|RESERVE|UNRESERVE|CREATE|DESTROY", "optional"),
        "launch": ("Offer.Operation.Launch", "optional"),
    },
    "Offer.Operation.Launch": {"task_infos": ("TaskInfo", "repeated")},
    "TaskInfo": {
        "name": ("string", "required"),
        "task_id": ("TaskID", "required"),
        "agent_id": ("AgentID", "required"),
        "resources": ("Resource", "repeated"),
        "command": ("CommandInfo", "optional"),
        "container": ("ContainerInfo", "optional"),
        "kill_policy": ("KillPolicy", "optional"),
        "labels": ("Labels", "optional"),
    },
    "Resource": {
        "name": ("string", "required"),
        "type": ("enum:SCALAR|RANGES|SET|TEXT", "required"),
        "scalar": ("Value.Scalar", "optional"),
        "role": ("string", "optional"),
        "allocation_info": ("Resource.AllocationInfo", "optional"),
    },
    "Resource.AllocationInfo": {"role": ("string", "optional")},
    "Value.Scalar": {"value": ("double", "required")},
    "CommandInfo": {
        "environment": ("Environment", "optional"),
        "shell": ("bool", "optional"),
        "value": ("string", "optional"),
        "arguments": ("string", "repeated"),
        "user": ("string", "optional"),
    },
    "Environment": {"variables": ("Environment.Variable", "repeated")},
    "Environment.Variable": {
        "name": ("string", "required"),
        "type": ("enum:UNKNOWN|VALUE|SECRET", "optional"),
        "value": ("string", "optional"),
    },
    "ContainerInfo": {
        "type": ("enum:DOCKER|MESOS", "required"),
        "docker": ("ContainerInfo.DockerInfo", "optional"),
        "hostname": ("string", "optional"),
    },
    "ContainerInfo.DockerInfo": {
        "image": ("string", "required"),
        "network": ("enum:HOST|BRIDGE|NONE|USER", "optional"),
        "privileged": ("bool", "optional"),
        "parameters": ("Parameter", "repeated"),
        "force_pull_image": ("bool", "optional"),
    },
    "Parameter": {"key": ("string", "required"), "value": ("string", "required")},
    "Labels": {"labels": ("Label", "repeated")},
    "Label": {"key": ("string", "required"), "value": ("string", "optional")},
}


class CallError(ValueError):
    pass


def parse_call(body: object) -> dict:
    """The call, when it is a well-formed `mesos.v1.scheduler.Call`; CallError says what is wrong."""
    _check(body, "Call", "call")
    kind = body.get("type")
    if kind is None:
        raise CallError("Expecting 'type' to be present")
    if kind != "SUBSCRIBE" and "framework_id" not in body:
        raise CallError("Expecting 'framework_id' to be present")
    needs = {
        "SUBSCRIBE": "subscribe",
        "ACCEPT": "accept",
        "DECLINE": "decline",
        "KILL": "kill",
        "ACKNOWLEDGE": "acknowledge",
        "RECONCILE": "reconcile",
    }.get(kind)
    if needs and needs not in body:
        raise CallError(f"Expecting '{needs}' to be present")
    return body


def _check(value: object, message: str, path: str) -> None:
    if not isinstance(value, dict):
        raise CallError(f"{path}: expected a JSON object for {message}")
    fields = MESSAGES[message]
    for name in value:
        if name not in fields:
            raise CallError(f"{path}.{name}: no such field in {message}")
    for name, (kind, label) in fields.items():
        if name not in value:
            if label == "required":
                raise CallError(f"{path}.{name}: required field of {message} missing")
            continue
        items = value[name]
        if label == "repeated":
            if not isinstance(items, list):
                raise CallError(f"{path}.{name}: expected an array")
        else:
            items = [items]
        for i, item in enumerate(items):
            _check_value(item, kind, f"{path}.{name}" + (f"[{i}]" if label == "repeated" else ""))


def _check_value(value: object, kind: str, path: str) -> None:
    if kind in MESSAGES:
        _check(value, kind, path)
    elif kind.startswith("enum:"):
        if value not in kind[5:].split("|"):
            raise CallError(f"{path}: {value!r} is not one of {kind[5:]}")
    elif kind == "string":
        if not isinstance(value, str):
            raise CallError(f"{path}: expected a string, got {value!r}")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise CallError(f"{path}: expected true or false, got {value!r}")
    elif kind == "double":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CallError(f"{path}: expected a number, got {value!r}")
    elif kind == "int64":
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit())
        ):
            raise CallError(f"{path}: expected an integer, got {value!r}")
    elif kind == "bytes":
        try:
            base64.b64decode(value, validate=True)
        except (TypeError, binascii.Error):
            raise CallError(f"{path}: expected base64 bytes, got {value!r}") from None
    else:
        raise AssertionError(f"unknown type {kind}")
