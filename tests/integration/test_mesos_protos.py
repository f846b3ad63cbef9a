"""Every request body the framework sends parses strictly against the v1 protos themselves.

The protos come from a local apache/mesos checkout: set MESOS_SOURCE_DIR to it (the
directory holding include/mesos/v1/). None is committed here, so without one this test
skips; tests/mesos_double/schema.py checks the same bodies in every run.
"""

import importlib
import os
import sys
import time
from pathlib import Path

import pytest

from pipeline import config, kafka
from pipeline.cluster import Resources
from pipeline.cluster.mesos import MesosBackend
from tests.helpers import wait_for

pytestmark = [pytest.mark.mesos, pytest.mark.docker]


@pytest.fixture(scope="module")
def protos(tmp_path_factory):
    source = Path(os.environ.get("MESOS_SOURCE_DIR", "")) / "include"
    if not os.environ.get("MESOS_SOURCE_DIR") or not (source / "mesos/v1/scheduler/scheduler.proto").exists():
        pytest.skip("no apache/mesos checkout: set MESOS_SOURCE_DIR to one to parse against the real protos")
    protoc = pytest.importorskip("grpc_tools.protoc")
    out = tmp_path_factory.mktemp("protos")
    for proto in ("mesos/v1/mesos.proto", "mesos/v1/scheduler/scheduler.proto"):
        assert protoc.main(["protoc", f"-I{source}", f"--python_out={out}", str(source / proto)]) == 0
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("mesos.v1.scheduler.scheduler_pb2")
    finally:
        sys.path.remove(str(out))


def test_every_call_the_framework_sends_is_a_valid_call(protos, broker, mesos_master, tmp_path):
    from google.protobuf import json_format

    s = config.Settings(
        bootstrap=broker.bootstrap,
        backend="mesos",
        mesos_master=mesos_master.url,
        worker_cpus=0.5,
        worker_mem_mb=200,
        mesos_state_file=str(tmp_path / "state.json"),
    )
    kafka.ensure_topics(broker.connection(), s.topics)
    backend = MesosBackend(s.mesos, s.cluster, s.worker_env(), "protos")
    try:
        ids = backend.launch(2, Resources(0.5, 200))
        wait_for(lambda: sum("TASK_RUNNING" in w.detail for w in backend.list()) == 2, what="two running tasks")
        backend.kill(ids[:1], grace=2)
        backend.launch(1, Resources(64.0, 200))  # fits no offer: DECLINE
        time.sleep(1)
    finally:
        backend.kill([w.id for w in backend.list()], grace=2)
        backend.scheduler.close(teardown=True)
    kinds = {c["type"] for c in mesos_master.calls}
    assert {
        "SUBSCRIBE",
        "RECONCILE",
        "ACCEPT",
        "DECLINE",
        "REVIVE",
        "SUPPRESS",
        "KILL",
        "ACKNOWLEDGE",
        "TEARDOWN",
    } <= kinds
    for body in mesos_master.calls:
        call = json_format.ParseDict(body, protos.Call(), ignore_unknown_fields=False)
        assert call.IsInitialized(), f"{body['type']} lacks required fields: {call.FindInitializationErrors()}"
