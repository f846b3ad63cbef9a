"""The Mesos framework's pure parts: RecordIO framing, call bodies, offer fitting."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import config
from pipeline.cluster.mesos import calls
from pipeline.cluster.mesos.recordio import Decoder, RecordIOError
from tests.mesos_double.schema import CallError, parse_call


def frame(record: bytes) -> bytes:
    return b"%d\n%s" % (len(record), record)


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=8), st.lists(st.integers(0, 2000), max_size=12))
def test_records_come_out_whole_however_the_stream_is_cut(records, cuts):
    stream = b"".join(frame(r) for r in records)
    points = sorted({min(c, len(stream)) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=False)]
    decoder = Decoder()
    out = [r for piece in pieces for r in decoder.feed(piece)]
    assert out == records
    assert decoder.between_records


def test_a_record_may_hold_newlines_and_digits():
    record = b'{"message": "line\\n2"}\n12\n'
    assert Decoder().feed(frame(record) + frame(b"x")) == [record, b"x"]


def test_a_record_cut_short_is_held_not_returned():
    decoder = Decoder()
    assert decoder.feed(b"10\nabc") == []
    assert not decoder.between_records
    assert decoder.feed(b"defghij") == [b"abcdefghij"]


@pytest.mark.parametrize("bad", [b"x1\nabc", b"\n", b"-3\nabc", b"1 2\nab"])
def test_a_length_that_is_not_a_number_is_an_error(bad):
    with pytest.raises(RecordIOError, match="not a decimal number"):
        Decoder().feed(bad)


def test_an_absurd_length_is_an_error():
    with pytest.raises(RecordIOError, match="exceeds"):
        Decoder(max_record=100).feed(b"101\n")
    with pytest.raises(RecordIOError, match="no record length"):
        Decoder(max_record=100).feed(b"1234567")


FRAMEWORK = calls.Framework(name="wordpipe-test", user="nobody", failover_timeout=3600.0, principal="wp")
WORKER = calls.WorkerTask(cpus=0.5, mem_mb=256, image="wordpipe:latest", env={"WORDPIPE_BOOTSTRAP": "127.0.0.1:9092"})
OFFER = {
    "id": {"value": "O1"},
    "framework_id": {"value": "F1"},
    "agent_id": {"value": "S1"},
    "hostname": "agent1",
    "resources": [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.6}, "allocation_info": {"role": "*"}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": 1000.0}, "allocation_info": {"role": "*"}},
        {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 32000}]}},
    ],
}


def test_subscribe_names_a_framework_that_survives_disconnects():
    body = parse_call(calls.subscribe(FRAMEWORK, "F1", suppressed=True))
    info = body["subscribe"]["framework_info"]
    assert info["id"] == {"value": "F1"} and info["failover_timeout"] == 3600.0 and info["checkpoint"] is True
    assert {"TASK_KILLING_STATE", "PARTITION_AWARE"} <= {c["type"] for c in info["capabilities"]}
    assert body["subscribe"]["suppressed_roles"] == ["*"] and "framework_id" not in body
    assert "id" not in calls.subscribe(FRAMEWORK, None, suppressed=False)["subscribe"]["framework_info"]


def test_an_offer_holds_as_many_workers_as_its_scarcest_resource_allows():
    assert calls.fits(OFFER, WORKER) == 3  # 1.6 cpus / 0.5; 1000 MB / 256 -> 3
    assert calls.fits(OFFER, calls.WorkerTask(2.0, 256, "i", {})) == 0
    assert calls.fits({**OFFER, "resources": []}, WORKER) == 0


def test_a_task_runs_the_image_hardened_on_host_networking_with_the_offers_role():
    task = calls.task_info("worker-1", OFFER, WORKER)
    parse_call(calls.accept("F1", "O1", [task], 30.0))  # strict: every field is a field of the protos
    assert task["agent_id"] == {"value": "S1"}
    assert task["container"]["type"] == "DOCKER" and task["container"]["docker"]["network"] == "HOST"
    assert task["command"] == {
        "shell": False,
        "value": "worker",
        "environment": {
            "variables": [
                {"name": "WORDPIPE_BOOTSTRAP", "value": "127.0.0.1:9092"},
                {"name": "WORDPIPE_WORKER_ID", "value": "worker-1"},
            ]
        },
    }
    params = {p["key"]: p["value"] for p in task["container"]["docker"]["parameters"]}
    assert params["read-only"] == "true" and params["cap-drop"] == "ALL" and params["memory-swap"] == "256m"
    cpus = next(r for r in task["resources"] if r["name"] == "cpus")
    assert cpus == {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}, "allocation_info": {"role": "*"}}


def test_only_updates_with_a_uuid_are_acknowledged():
    status = {"task_id": {"value": "t"}, "agent_id": {"value": "S1"}, "state": "TASK_RUNNING", "uuid": "AAEC"}
    assert parse_call(calls.acknowledge("F1", status))["acknowledge"] == {
        "agent_id": {"value": "S1"},
        "task_id": {"value": "t"},
        "uuid": "AAEC",
    }
    assert calls.acknowledge("F1", {**status, "uuid": None}) is None
    assert calls.acknowledge("F1", {k: v for k, v in status.items() if k != "uuid"}) is None


def test_every_call_parses_strictly():
    for body in [
        calls.decline("F1", ["O1", "O2"], 30.0),
        calls.revive("F1", "*"),
        calls.suppress("F1", "*"),
        calls.kill("F1", "t", "S1", 2.5),
        calls.kill("F1", "t", None, 0),
        calls.reconcile("F1", {}),
        calls.reconcile("F1", {"a": "S1", "b": None}),
        calls.teardown("F1"),
    ]:
        parse_call(json.loads(json.dumps(body)))
    assert calls.kill("F1", "t", "S1", 2.5)["kill"]["kill_policy"] == {"grace_period": {"nanoseconds": 2_500_000_000}}


def test_the_strict_parser_names_what_is_wrong():
    with pytest.raises(CallError, match=r"call.kill.taskid: no such field"):
        parse_call({"type": "KILL", "framework_id": {"value": "F"}, "kill": {"taskid": {"value": "t"}}})
    with pytest.raises(CallError, match="framework_id"):
        parse_call({"type": "REVIVE"})
    with pytest.raises(CallError, match="refuse_seconds: expected a number"):
        parse_call({"type": "DECLINE", "framework_id": {"value": "F"}, "decline": {"filters": {"refuse_seconds": "5"}}})


@pytest.mark.parametrize("bad", ["mesos:5050", "http://", "http://a:5050/path", "ftp://a"])
def test_a_bad_master_address_is_named(bad):
    with pytest.raises(config.ConfigError, match="mesos_master"):
        config.Settings(mesos_master=f"http://ok:5050,{bad}")


def test_mesos_credentials_come_in_pairs():
    with pytest.raises(config.ConfigError, match="mesos_principal and mesos_secret"):
        config.Settings(mesos_principal="wp")
