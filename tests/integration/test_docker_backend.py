"""The docker backend on the real engine: confinement, labels, adoption, graceful kill."""

import subprocess
import time
import uuid

import docker
import pytest
import requests

from pipeline import config, kafka
from pipeline.cluster import BackendError, Resources
from pipeline.cluster.docker import DockerBackend
from pipeline.kafka.broker import free_port
from pipeline.observe.roster import Roster
from tests.helpers import docker_leftovers

pytestmark = pytest.mark.docker


@pytest.fixture
def backend(docker_image, broker, tmp_path):
    s = config.Settings(bootstrap=broker.bootstrap, session_timeout_ms=2000)
    kafka.ensure_topics(broker.connection(), s.topics)
    b = DockerBackend(docker_image, s.to_env(), f"test-{uuid.uuid4().hex[:6]}", tmp_path)
    b.settings = s
    yield b
    b.kill([w.id for w in b.list()], grace=5)
    b.close()
    assert docker_leftovers() == []


def wait_reporting(roster: Roster, ids: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(i in roster.refresh(0.2) for i in ids):
        assert time.monotonic() < deadline, f"workers {ids} never reported; roster has {sorted(roster.statuses)}"


def test_workers_run_confined_labelled_and_reach_the_broker(backend, docker_image):
    ids = backend.launch(2, Resources(cpus=0.5, mem_mb=200))
    assert sorted(w.id for w in backend.list()) == sorted(ids)
    assert all(w.state == "running" and w.detail.startswith("container ") for w in backend.list())
    engine = docker.from_env()
    for worker_id in ids:
        c = engine.containers.list(filters={"label": f"wordpipe.worker={worker_id}"})[0]
        host = c.attrs["HostConfig"]
        assert host["NetworkMode"] == "host"
        assert host["NanoCpus"] == 500_000_000
        assert host["Memory"] == host["MemorySwap"] == 200 * 1024 * 1024
        assert host["SecurityOpt"] == ["no-new-privileges"] and host["CapDrop"] == ["ALL"]
        assert host["ReadonlyRootfs"] is True
        assert host["RestartPolicy"]["Name"] in ("", "no")
        assert c.attrs["Config"]["User"] == "10001:10001"
        assert {
            "wordpipe.pipeline": backend.pipeline,
            "wordpipe.role": "worker",
            "wordpipe.worker": worker_id,
        }.items() <= c.labels.items()
    roster = Roster(config.Connection.to(backend.settings.kafka), backend.settings.topics)
    try:
        wait_reporting(roster, ids)  # over host networking, to 127.0.0.1
    finally:
        roster.close()
    for worker_id in ids:  # the image's HEALTHCHECK, run now rather than after its interval
        name = engine.containers.list(filters={"label": f"wordpipe.worker={worker_id}"})[0].name
        health = subprocess.run(["docker", "exec", name, "wordpipe", "health"], capture_output=True, text=True)
        assert health.returncode == 0, health.stderr
    engine.close()


def test_a_new_controller_adopts_running_workers(backend, docker_image):
    ids = backend.launch(2, Resources())
    again = DockerBackend(docker_image, backend.env, backend.pipeline)
    other = DockerBackend(docker_image, backend.env, backend.pipeline + "-other")
    try:
        assert sorted(w.id for w in again.list()) == sorted(ids)
        assert other.list() == []
        again.kill([ids[0]], grace=10)  # the new controller can act on what it adopted
        assert [w.id for w in backend.list()] == [ids[1]]
    finally:
        again.close()
        other.close()


def test_kill_drains_gracefully_and_forgets_exited_workers(backend):
    graceful, crashed = backend.launch(2, Resources())
    roster = Roster(config.Connection.to(backend.settings.kafka), backend.settings.topics)
    try:
        wait_reporting(roster, [graceful, crashed])
    finally:
        roster.close()
    backend.kill([graceful], grace=20)
    assert "worker stopped after" in (backend.log_dir / f"{graceful}.log").read_text()
    name = [c for c in docker.from_env().containers.list() if c.labels.get("wordpipe.worker") == crashed][0].name
    subprocess.run(["docker", "kill", name], check=True, capture_output=True)
    deadline = time.monotonic() + 20
    while backend.list()[0].state != "exited":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert backend.list()[0].exit_code == -9  # the engine's 137, read as "killed by signal 9"
    backend.kill([crashed])
    assert backend.list() == []
    assert (backend.log_dir / f"{crashed}.log").exists()


def test_a_worker_stuck_draining_is_killed_after_the_grace_period(backend):
    stuck = DockerBackend(backend.image, {**backend.env, "WORDPIPE_FAULTS": "worker.draining=hang"}, backend.pipeline)
    [worker_id] = stuck.launch(1, Resources())
    roster = Roster(config.Connection.to(backend.settings.kafka), backend.settings.topics)
    try:
        wait_reporting(roster, [worker_id])  # its SIGTERM handler is installed
    finally:
        roster.close()
    started = time.monotonic()
    stuck.kill([worker_id], grace=2)
    assert 2 <= time.monotonic() - started < 15
    assert stuck.list() == []
    stuck.close()


def test_clear_errors_for_a_missing_image_or_engine(docker_image, monkeypatch):
    with pytest.raises(
        BackendError, match="image 'wordpipe:no-such-tag' does not exist here; build it with deploy/build-image.sh"
    ):
        DockerBackend("wordpipe:no-such-tag", {}, "x")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(BackendError, match="cannot reach the Docker engine"):
        DockerBackend(docker_image, {}, "x")


def test_the_image_runs_the_aggregator_too_read_only_and_healthy(docker_image, broker):
    s = config.Settings(bootstrap=broker.bootstrap)
    kafka.ensure_topics(broker.connection(), s.topics)
    port = free_port("127.0.0.1")
    name = f"wordpipe-test-aggregator-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "--label",
            "wordpipe.pipeline=test",
            "--network",
            "host",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "-e",
            f"WORDPIPE_BOOTSTRAP={broker.bootstrap}",
            "-e",
            f"WORDPIPE_AGGREGATOR_PORT={port}",
            "-e",
            "WORDPIPE_TOKENS=t",
            docker_image,
            "aggregator",
        ],
        check=True,
        capture_output=True,
    )
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "exec", name, "wordpipe", "health"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, subprocess.run(
                ["docker", "logs", name], capture_output=True, text=True
            ).stderr[-2000:]
            time.sleep(0.5)
        shards = requests.get(f"http://127.0.0.1:{port}/health", timeout=5).json()["shards"]
        assert shards == list(range(s.topics.partial_partitions))  # it joined and owns every shard
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_a_container_removed_while_listing_is_skipped_not_an_error(backend, monkeypatch):
    from docker.models.containers import ContainerCollection

    ids = backend.launch(2, Resources(cpus=0.5, mem_mb=200))
    engine = docker.from_env()
    listing = ContainerCollection.list

    def list_then_remove(self, *args, **kwargs):  # the engine removes one between the listing and its inspection
        found = listing(self, *args, **kwargs)
        victim = next(
            c for c in found if (c.attrs.get("Labels") or c.attrs["Config"]["Labels"])["wordpipe.worker"] == ids[0]
        )
        engine.containers.get(victim.id).remove(force=True)
        return found

    monkeypatch.setattr(ContainerCollection, "list", list_then_remove)
    assert [w.id for w in backend.list()] == [ids[1]]
    monkeypatch.undo()


def test_the_image_runs_as_non_root_and_bakes_in_no_secret(docker_image):
    image = docker.from_env().images.get(docker_image)
    assert image.attrs["Config"]["User"] == "10001:10001"
    names = [entry.split("=", 1)[0] for entry in image.attrs["Config"]["Env"]]
    assert not [n for n in names if any(word in n.upper() for word in ("TOKEN", "SECRET", "PASSWORD", "SASL"))], names
    layers = " ".join(step["CreatedBy"] for step in image.history()).upper()
    assert not [word for word in ("TOKEN", "SECRET", "PASSWORD", "SASL") if word in layers]
