"""The master double answers as Master::Http::scheduler does (src/master/http.cpp): the
framework's tests are only as good as the double's faithfulness."""

import json
import time

import pytest
import requests

from tests.helpers import wait_for
from tests.mesos_double.master import MasterDouble

pytestmark = pytest.mark.mesos

SUBSCRIBE = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n", "failover_timeout": 60}}}


@pytest.fixture
def master():
    with MasterDouble(heartbeat_interval=0.2) as m:
        yield m


def post(master, body, **headers):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(
        master.url + "/api/v1/scheduler", data=data, headers=headers, timeout=5, stream=True, allow_redirects=False
    )


def test_requests_that_are_not_calls_are_refused_with_the_masters_words(master):
    assert (r := post(master, SUBSCRIBE)).status_code == 400 and r.text == "Expecting 'Content-Type' to be present"
    assert post(master, SUBSCRIBE, **{"Content-Type": "text/plain"}).status_code == 415
    assert post(master, b"{", **{"Content-Type": "application/json"}).text.startswith("Failed to parse body into JSON")
    r = post(
        master,
        {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u"}}},
        **{"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "framework_info.name: required field" in r.text
    r = post(master, SUBSCRIBE, **{"Content-Type": "application/json", "Accept": "application/x-protobuf"})
    assert r.status_code == 406
    r = post(master, SUBSCRIBE, **{"Content-Type": "application/json", "Mesos-Stream-Id": "x"})
    assert r.status_code == 400 and "should not include the 'Mesos-Stream-Id'" in r.text


def test_calls_need_a_subscribed_framework_and_its_stream_id(master):
    json_type = {"Content-Type": "application/json"}

    def revive(fid):
        return {"type": "REVIVE", "framework_id": {"value": fid}}

    assert post(master, revive("nope"), **json_type).text == "Framework cannot be found"
    stream = post(master, SUBSCRIBE, **json_type, Accept="application/json")
    assert stream.status_code == 200 and stream.headers["Content-Type"] == "application/json"
    assert stream.headers["Transfer-Encoding"] == "chunked"
    length, _, rest = next(stream.iter_content(chunk_size=None)).partition(b"\n")
    subscribed = json.loads(rest[: int(length)])
    fid = subscribed["subscribed"]["framework_id"]["value"]
    assert subscribed["type"] == "SUBSCRIBED" and subscribed["subscribed"]["heartbeat_interval_seconds"] == 0.2
    assert post(master, revive(fid), **json_type).status_code == 400  # no stream id
    assert post(master, revive(fid), **json_type, **{"Mesos-Stream-Id": "other"}).text.startswith(
        "The stream ID 'other'"
    )
    assert (
        post(master, revive(fid), **json_type, **{"Mesos-Stream-Id": stream.headers["Mesos-Stream-Id"]}).status_code
        == 202
    )
    stream.close()
    master.disconnect(fid)
    headers = {**json_type, "Mesos-Stream-Id": stream.headers["Mesos-Stream-Id"]}
    refusal = wait_for(
        lambda: (r := post(master, revive(fid), **headers)).status_code == 403 and r.text, timeout=5, what="a 403"
    )
    assert refusal == "Framework is not subscribed"


def test_a_standby_redirects_with_a_protocol_relative_location(master):
    master.leader = "leader.example:5050"
    r = post(master, SUBSCRIBE, **{"Content-Type": "application/json"})
    assert r.status_code == 307 and r.headers["Location"] == "//leader.example:5050/api/v1/scheduler"
    master.leader, master.recovered = None, False
    assert post(master, SUBSCRIBE, **{"Content-Type": "application/json"}).status_code == 503


@pytest.mark.docker
def test_launch_errors_arrive_later_as_updates_without_uuid(mesos_master):
    from pipeline.cluster.mesos.recordio import Decoder

    json_type = {"Content-Type": "application/json"}
    stream = post(mesos_master, SUBSCRIBE, **json_type, Accept="application/json")
    events, decoder = stream.iter_content(chunk_size=None), Decoder()

    def next_event(kind: str) -> dict:
        while True:
            for record in decoder.feed(next(events)):
                if (event := json.loads(record))["type"] == kind:
                    return event

    fid = next_event("SUBSCRIBED")["subscribed"]["framework_id"]["value"]
    offer = next_event("OFFERS")["offers"]["offers"][0]
    headers = {**json_type, "Mesos-Stream-Id": stream.headers["Mesos-Stream-Id"]}

    def accept(offer_id: str, cpus: float) -> None:
        task = {
            "name": "t",
            "task_id": {"value": f"t-{cpus}"},
            "agent_id": offer["agent_id"],
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}}],
            "command": {"shell": True, "value": "true"},
            "container": {"type": "DOCKER", "docker": {"image": "x"}},
        }
        call = {
            "type": "ACCEPT",
            "framework_id": {"value": fid},
            "accept": {
                "offer_ids": [{"value": offer_id}],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}],
            },
        }
        assert (
            post(mesos_master, call, **headers).status_code == 202
        )  # accepted for processing; the verdict comes later

    accept("no-such-offer", 0.5)
    dropped = next_event("UPDATE")["update"]["status"]  # TASK_LOST: this framework is not PARTITION_AWARE
    assert dropped["state"] == "TASK_LOST" and dropped["reason"] == "REASON_INVALID_OFFERS" and "uuid" not in dropped
    accept(offer["id"]["value"], 1000.0)
    error = next_event("UPDATE")["update"]["status"]
    assert error["state"] == "TASK_ERROR" and error["reason"] == "REASON_TASK_INVALID" and "uuid" not in error
    assert "more resources" in error["message"] and not mesos_master.launched
    stream.close()


@pytest.mark.docker
def test_the_next_update_waits_for_the_acknowledgement_of_the_last_which_is_retried(mesos_master, docker_image):
    from pipeline.cluster.mesos.recordio import Decoder

    subscribe = json.loads(json.dumps(SUBSCRIBE))
    subscribe["subscribe"]["framework_info"]["capabilities"] = [{"type": "PARTITION_AWARE"}]
    stream = post(mesos_master, subscribe, **{"Content-Type": "application/json"}, Accept="application/json")
    headers = {"Content-Type": "application/json", "Mesos-Stream-Id": stream.headers["Mesos-Stream-Id"]}
    events, decoder, seen = stream.iter_content(chunk_size=None), Decoder(), []

    def updates_within(seconds: float) -> list[dict]:
        """The task updates that arrive in the next `seconds` (heartbeats keep the stream moving)."""
        out, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            for record in decoder.feed(next(events)):
                event = json.loads(record)
                seen.append(event)
                if event["type"] == "UPDATE":
                    out.append(event["update"]["status"])
        return out

    updates_within(0.5)
    fid = next(e for e in seen if e["type"] == "SUBSCRIBED")["subscribed"]["framework_id"]["value"]
    offer = next(e for e in seen if e["type"] == "OFFERS")["offers"]["offers"][0]
    task = {
        "name": "t",
        "task_id": {"value": "sleeper"},
        "agent_id": offer["agent_id"],
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 64.0}},
        ],
        "command": {"shell": True, "value": "sleep 60"},
        "container": {"type": "DOCKER", "docker": {"image": docker_image}},
    }
    call = {
        "type": "ACCEPT",
        "framework_id": {"value": fid},
        "accept": {"offer_ids": [offer["id"]], "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}]},
    }
    assert post(mesos_master, call, **headers).status_code == 202
    first = updates_within(3.5)  # the retry interval is 2 s: STARTING, then STARTING again, never RUNNING
    assert [u["state"] for u in first] == ["TASK_STARTING", "TASK_STARTING"] and first[0]["uuid"] == first[1]["uuid"]
    ack = {
        "type": "ACKNOWLEDGE",
        "framework_id": {"value": fid},
        "acknowledge": {"agent_id": first[0]["agent_id"], "task_id": first[0]["task_id"], "uuid": first[0]["uuid"]},
    }
    assert post(mesos_master, ack, **headers).status_code == 202
    assert [u["state"] for u in updates_within(1.0)][:1] == ["TASK_RUNNING"]
    assert post(mesos_master, ack, **headers).status_code == 202  # the same again: nothing awaits it
    time.sleep(0.3)
    assert mesos_master.bad_acks == [ack["acknowledge"]]
    stream.close()
