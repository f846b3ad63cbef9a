"""The Mesos framework against the master double: subscription, offers, status updates,
kills, reconciliation, and every way the connection to the master can go wrong."""

import json
import logging
import time
from pathlib import Path

import docker
import pytest

from pipeline import config, kafka
from pipeline.cluster import BackendError, Resources
from pipeline.cluster.mesos import MesosBackend
from tests.helpers import wait_for
from tests.mesos_double.master import MasterDouble

pytestmark = [pytest.mark.mesos, pytest.mark.docker]


@pytest.fixture
def settings(broker, mesos_master, tmp_path):
    s = config.Settings(
        bootstrap=broker.bootstrap,
        session_timeout_ms=2000,
        backend="mesos",
        mesos_master=mesos_master.url,
        mesos_state_file=str(tmp_path / "mesos.json"),
        worker_cpus=0.5,
        worker_mem_mb=200,
    )
    kafka.ensure_topics(broker.connection(), s.topics)
    return s


def open_mesos(s: config.Settings, name: str = "test", one_shot: bool = False) -> MesosBackend:
    return MesosBackend(s.mesos, s.cluster, s.worker_env(), name, one_shot=one_shot)


def running(backend: MesosBackend) -> list[str]:
    return sorted(w.id for w in backend.list() if "TASK_RUNNING" in w.detail)


def test_workers_launch_as_hardened_containers_and_are_killed_gracefully(settings, mesos_master):
    backend = open_mesos(settings)
    try:
        ids = backend.launch(2, Resources(0.5, 200))
        wait_for(lambda: running(backend) == sorted(ids), what="two running tasks")
        engine = docker.from_env()
        for task_id in ids:
            c = engine.containers.list(filters={"label": f"wordpipe.mesos-task={task_id}"})[0]
            host = c.attrs["HostConfig"]
            assert host["NetworkMode"] == "host" and host["CpuShares"] == 512
            assert host["Memory"] == host["MemorySwap"] == 200 * 1024 * 1024
            assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"] and host["Init"] is True
            assert f"WORDPIPE_BOOTSTRAP={settings.kafka.bootstrap}" in c.attrs["Config"]["Env"]
            assert f"WORDPIPE_WORKER_ID={task_id}" in c.attrs["Config"]["Env"]
            assert c.attrs["Config"]["User"] == "10001:10001"
        backend.kill([ids[0]], grace=5)
        assert [w.id for w in backend.list()] == [ids[1]]  # a kill we asked for is not an exit to replace
        assert list(mesos_master.active_tasks()) == [ids[1]]
        assert json.loads(Path(settings.mesos.state_file).read_text())["tasks"] == {ids[1]: "agent-S0"}
        wait_for(lambda: len(mesos_master.agent.running_containers()) == 1, what="the killed container to go")
    finally:
        backend.kill([w.id for w in backend.list()], grace=5)
        backend.close()
    kinds = [c["type"] for c in mesos_master.calls]
    assert "ACCEPT" in kinds and "KILL" in kinds and kinds[0] == "SUBSCRIBE"
    states = [u["state"] for u in mesos_master.agent_updates if u["task_id"]["value"] == ids[0]]
    assert states == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_KILLED"]  # we declared TASK_KILLING_STATE
    assert mesos_master.bad_acks == []
    assert "SUPPRESS" in kinds[kinds.index("ACCEPT") :]  # nothing left to launch: no more offers, please


def test_every_update_with_a_uuid_is_acknowledged_and_no_other(settings, mesos_master):
    backend = open_mesos(settings)
    try:
        ids = backend.launch(1, Resources(0.5, 200))
        wait_for(lambda: running(backend) == ids, what="a running task")
        # master-generated updates (reconciliation) carry no uuid and must not be acknowledged
        backend.scheduler._call(
            {
                "type": "RECONCILE",
                "framework_id": {"value": backend.scheduler.framework_id},
                "reconcile": {"tasks": [{"task_id": {"value": ids[0]}}, {"task_id": {"value": "nope"}}]},
            }
        )
        wait_for(
            lambda: not any(t.updates for fw in mesos_master.frameworks.values() for t in fw.tasks.values()),
            what="every agent update to be acknowledged",
        )
        time.sleep(1)
    finally:
        backend.kill([w.id for w in backend.list()], grace=5)
        backend.close()
    acks = mesos_master.calls_of("ACKNOWLEDGE")
    assert len(acks) >= 2 and mesos_master.bad_acks == []  # STARTING, RUNNING, KILLING, KILLED: each once, in turn
    assert len({a["acknowledge"]["uuid"] for a in acks}) == len(acks)


def test_reconcile_follows_every_subscribed_and_missed_heartbeats_resubscribe(settings, mesos_master, caplog):
    caplog.set_level(logging.INFO, logger="pipeline.cluster.mesos")
    backend = open_mesos(settings)
    try:
        ids = backend.launch(1, Resources(0.5, 200))
        wait_for(lambda: running(backend) == ids, what="a running task")
        mesos_master.mute = True  # a partition: the connection stays up, nothing arrives
        wait_for(lambda: len(mesos_master.calls_of("SUBSCRIBE")) == 2, timeout=30, what="a resubscription")
        mesos_master.mute = False
        assert "no event from the master in 5 heartbeat intervals" in caplog.text
        mesos_master.disconnect(backend.scheduler.framework_id)  # the master closes the stream
        wait_for(lambda: len(mesos_master.calls_of("SUBSCRIBE")) == 3, timeout=30, what="another resubscription")
        wait_for(lambda: backend.scheduler.connected, what="the subscription")
        time.sleep(0.5)
        assert running(backend) == ids  # the same task throughout; nothing relaunched
    finally:
        backend.kill([w.id for w in backend.list()], grace=5)
        backend.close()
    subscribes = mesos_master.calls_of("SUBSCRIBE")
    framework_id = subscribes[1]["subscribe"]["framework_info"]["id"]["value"]
    assert all(s["subscribe"]["framework_info"]["id"]["value"] == framework_id for s in subscribes[1:])
    kinds = [c["type"] for c in mesos_master.calls]
    starts = [i for i, k in enumerate(kinds) if k == "SUBSCRIBE"]
    for i in starts:
        assert kinds[i + 1] == "RECONCILE", f"no RECONCILE right after SUBSCRIBE: {kinds}"
    assert len(mesos_master.launched) == 1


def test_a_non_leading_master_redirects_to_the_leader(settings, mesos_master):
    with MasterDouble() as standby:
        standby.leader = mesos_master.url.removeprefix("http://")
        backend = open_mesos(settings.replace(mesos_master=standby.url))
        try:
            assert backend.scheduler.endpoint == mesos_master.url + "/api/v1/scheduler"
            ids = backend.launch(1, Resources(0.5, 200))
            wait_for(lambda: running(backend) == ids, what="a running task")
        finally:
            backend.kill([w.id for w in backend.list()], grace=5)
            backend.close()
        assert standby.calls == []  # it only ever redirected


def test_the_next_master_is_tried_when_one_is_unreachable(settings, mesos_master):
    from pipeline.kafka.broker import free_port

    backend = open_mesos(settings.replace(mesos_master=f"http://127.0.0.1:{free_port('127.0.0.1')},{mesos_master.url}"))
    try:
        assert backend.scheduler.connected
    finally:
        backend.close()


def test_an_unavailable_master_is_waited_for(settings, mesos_master, caplog):
    mesos_master.recovered = False
    import threading

    threading.Timer(1.5, lambda: setattr(mesos_master, "recovered", True)).start()
    backend = open_mesos(settings)
    backend.close()
    assert "503 Service Unavailable: Master has not finished recovery" in caplog.text


def test_no_master_at_all_is_a_clear_error(settings, monkeypatch):
    from pipeline.cluster import mesos
    from pipeline.kafka.broker import free_port

    monkeypatch.setattr(mesos, "SUBSCRIBE_TIMEOUT", 2.0)
    url = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    with pytest.raises(BackendError, match=f"mesos: not subscribed to {url} within 2 s: cannot reach the master"):
        open_mesos(settings.replace(mesos_master=url))


def test_rejected_calls_are_logged_with_the_masters_reason(settings, mesos_master, caplog):
    backend = open_mesos(settings)
    try:
        wait_for(lambda: mesos_master.calls_of("SUPPRESS"), what="the calls after SUBSCRIBED")
        mesos_master.fail_next = ("REVIVE", 400, "Failed to validate scheduler::Call: something")
        backend.launch(1, Resources(0.5, 200))  # its REVIVE is refused
        assert (
            "the master rejected REVIVE as malformed: 400 Bad Request: Failed to validate scheduler::Call: something"
            in caplog.text
        )
        mesos_master.fail_next = ("REVIVE", 403, "Framework is not subscribed")
        backend.scheduler._offers_wanted(force=True)
        wait_for(lambda: len(mesos_master.calls_of("SUBSCRIBE")) == 2, timeout=20, what="a resubscription after 403")
        assert "REVIVE refused: 403 Forbidden: Framework is not subscribed; resubscribing" in caplog.text
        wait_for(lambda: running(backend), what="the task, launched after all")
    finally:
        backend.kill([w.id for w in backend.list()], grace=5)
        backend.close()


def test_a_framework_the_master_removed_starts_anew(settings, mesos_master, caplog):
    first = open_mesos(settings)
    old_id = first.scheduler.framework_id
    first.close()
    mesos_master.removed.add(old_id)  # as after its failover timeout
    mesos_master.frameworks.pop(old_id)
    second = open_mesos(settings)
    try:
        assert second.scheduler.framework_id not in (None, old_id)
        assert "the master sent ERROR: Framework has been removed" in caplog.text
    finally:
        second.close()


def test_a_launch_that_fails_is_reported_as_an_exit_with_the_reason(settings, mesos_master):
    backend = open_mesos(settings.replace(image="wordpipe:no-such-tag"))
    try:
        ids = backend.launch(1, Resources(0.5, 200))
        gone = wait_for(lambda: [w for w in backend.list() if w.state == "exited"], what="the failed launch")
        assert gone[0].id == ids[0] and "TASK_FAILED" in gone[0].detail and "wordpipe:no-such-tag" in gone[0].detail
        backend.kill(ids)  # forgotten, as the controller does before replacing it
        assert backend.list() == []
    finally:
        backend.close()


def test_a_worker_that_needs_more_than_any_offer_waits_and_says_so(settings, mesos_master):
    backend = open_mesos(settings.replace(worker_cpus=64.0))
    try:
        ids = backend.launch(1, Resources(64.0, 200))
        time.sleep(1.5)
        assert [(w.id, w.state, w.detail) for w in backend.list()] == [(ids[0], "running", "task waiting for an offer")]
        assert mesos_master.calls_of("DECLINE") and not mesos_master.calls_of("ACCEPT")
        backend.kill(ids)
    finally:
        backend.close()


def test_one_shot_frameworks_take_their_tasks_with_them(settings, mesos_master):
    backend = open_mesos(settings, one_shot=True)
    ids = backend.launch(2, Resources(0.5, 200))
    wait_for(lambda: running(backend) == sorted(ids), what="two running tasks")
    info = mesos_master.calls_of("SUBSCRIBE")[0]["subscribe"]["framework_info"]
    assert info["failover_timeout"] == 0.0
    backend.close()  # TEARDOWN
    assert mesos_master.calls_of("TEARDOWN")
    wait_for(lambda: not mesos_master.agent.running_containers(), what="the containers to go")


def test_a_one_shot_framework_that_dies_takes_its_tasks_with_it(settings, mesos_master):
    backend = open_mesos(settings, one_shot=True)
    ids = backend.launch(1, Resources(0.5, 200))
    wait_for(lambda: running(backend) == ids, what="a running task")
    backend.scheduler._stop.set()  # as if SIGKILLed: no TEARDOWN, the connection just breaks
    backend.scheduler._drop_stream()
    wait_for(
        lambda: not mesos_master.agent.running_containers(), timeout=30, what="failover timeout 0 to kill the task"
    )
    assert not mesos_master.calls_of("TEARDOWN") and not mesos_master.frameworks


def test_a_worker_container_killed_outside_mesos_is_an_exit_to_replace(settings, mesos_master):
    from pipeline.cluster import forget_exited

    backend = open_mesos(settings)
    try:
        ids = backend.launch(2, Resources(0.5, 200))
        wait_for(lambda: running(backend) == sorted(ids), what="two running tasks")
        docker.from_env().containers.list(filters={"label": f"wordpipe.mesos-task={ids[0]}"})[0].kill()
        wait_for(lambda: any(w.state == "exited" for w in backend.list()), what="the exit to be reported")
        gone = forget_exited(backend)  # what the controller does before launching replacements
        assert [(w.id, w.exit_code) for w in gone] == [(ids[0], -9)] and "TASK_FAILED" in gone[0].detail
        assert [w.id for w in backend.list()] == [ids[1]]
    finally:
        backend.kill([w.id for w in backend.list()], grace=5)
        backend.close()


def test_a_malformed_event_costs_a_resubscription_not_the_framework(settings, mesos_master, caplog):
    backend = open_mesos(settings)
    try:
        with mesos_master.lock:
            mesos_master.frameworks[backend.scheduler.framework_id].subscription.events.append(b'17\n{"type":"OFFERS"}')
        wait_for(lambda: len(mesos_master.calls_of("SUBSCRIBE")) == 2, timeout=20, what="a resubscription")
        assert "a malformed event from the master (KeyError('offers'))" in caplog.text
        ids = backend.launch(1, Resources(0.5, 200))
        wait_for(lambda: running(backend) == ids, what="a task launched after it")
    finally:
        backend.kill([w.id for w in backend.list()], grace=5)
        backend.close()


def test_a_failed_accept_is_left_to_reconciliation_and_only_a_400_is_a_rejection(settings, mesos_master):
    backend = open_mesos(settings)
    details: set[str] = set()

    def exited() -> list:
        workers = backend.list()
        details.update(w.detail for w in workers)
        return [w for w in workers if w.state == "exited"]

    try:
        wait_for(lambda: mesos_master.calls_of("SUPPRESS"), what="the calls after SUBSCRIBED")
        mesos_master.fail_next = ("ACCEPT", 503, "Master has not finished recovery")  # launched or not? unknown
        [unknown] = backend.launch(1, Resources(0.5, 200))
        [gone] = wait_for(exited, what="the reconciliation of the task")
        assert gone.id == unknown and "TASK_GONE" in gone.detail  # the master never launched it, and says so
        assert not [d for d in details if "rejected" in d], details
        backend.kill([unknown])
        mesos_master.fail_next = ("ACCEPT", 400, "Failed to validate scheduler::Call: bad")
        [refused] = backend.launch(1, Resources(0.5, 200))
        [gone] = wait_for(exited, what="the refused task")
        assert gone.id == refused and "TASK_ERROR" in gone.detail and "rejected the ACCEPT as malformed" in gone.detail
        backend.kill([refused])
        assert mesos_master.launched == []
    finally:
        backend.kill([w.id for w in backend.list()], grace=5)
        backend.close()
