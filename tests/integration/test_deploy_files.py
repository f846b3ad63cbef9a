"""The deployment files: the compose file is valid and wires the autoscaler to Mesos and
Kafka (KRaft); Prometheus scrapes the autoscaler where it listens; every dashboard query
names a metric the autoscaler exports."""

import json
import os
import re
import shutil
import subprocess

import pytest
from prometheus_client import generate_latest

from pipeline import config, generations
from pipeline.autoscaler.controller import Controller
from pipeline.cluster import Resources
from tests.helpers import REPO


@pytest.fixture(scope="module")
def compose() -> list[str]:
    if shutil.which("docker-compose") is None:  # Debian's package; CI installs it like docker.io
        done = subprocess.run(["apt-get", "install", "-y", "-qq", "docker-compose"], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(
                f"docker-compose is missing and apt-get could not install it:\n{done.stderr[-2000:]}", pytrace=False
            )
    return ["docker-compose", "-f", str(REPO / "docker-compose.yml")]


def test_the_compose_file_is_valid_and_runs_the_autoscaler_on_mesos(compose):
    without_token = {k: v for k, v in os.environ.items() if k != "WORDPIPE_TOKENS"}
    refused = subprocess.run([*compose, "config"], capture_output=True, text=True, cwd=REPO, env=without_token)
    assert refused.returncode != 0 and "set WORDPIPE_TOKENS" in refused.stderr  # no API runs without a token
    env = {**without_token, "WORDPIPE_TOKENS": "compose-token"}
    done = subprocess.run([*compose, "config"], capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr
    services = subprocess.run(
        [*compose, "config", "--services"], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert {
        "kafka",
        "mesos-master",
        "mesos-agent",
        "topics",
        "aggregator",
        "aggregator-2",
        "ingest",
        "autoscaler",
        "prometheus",
        "grafana",
    } <= set(services)
    assert re.search(r"- ingest-server", done.stdout)
    assert done.stdout.count("WORDPIPE_AGGREGATOR_PORT") == 2 and "WORDPIPE_AGGREGATOR_PORT: '8083'" in done.stdout
    text = done.stdout
    assert "KAFKA_PROCESS_ROLES: broker,controller" in text  # KRaft, no ZooKeeper
    assert "MESOS_CONTAINERIZERS: docker,mesos" in text
    assert re.search(r"- autoscale\s+- run\s+- --backend\s+- mesos", text)
    assert "WORDPIPE_MESOS_STATE_FILE: /var/lib/wordpipe/mesos.json" in text and "autoscaler-state:" in text
    env = {k: v.strip("'\"") for k, v in re.findall(r"(WORDPIPE_\w+): (\S+)", text)}
    unknown = [k for k in env if k.removeprefix("WORDPIPE_").lower() not in config.FLAT]
    assert not unknown, f"the compose file sets settings that do not exist: {unknown}"
    config.load(env=env)  # and each value is valid


def test_prometheus_scrapes_the_autoscaler_and_the_dashboard_shows_its_metrics():
    scrape = (REPO / "deploy/prometheus.yml").read_text()
    defaults = config.Settings()
    for port in (defaults.autoscaler.port, defaults.ingest.port, defaults.aggregator.port):
        assert f"127.0.0.1:{port}" in scrape

    class NoWorkers:
        def list(self):
            return []

    exported = set(
        re.findall(
            r"^# HELP (\w+)",
            generate_latest(Controller(NoWorkers(), None, None, Resources()).registry).decode(),
            re.MULTILINE,
        )
    )
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/wordpipe.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for t in panel["targets"]
        for name in re.findall(r"wordpipe_autoscaler_\w+", t["expr"])
    }
    # The other services' metrics: tests/e2e/test_dashboard.py asks a real Prometheus for every panel.
    assert queried and queried <= exported, f"the dashboard queries metrics nobody exports: {queried - exported}"


def test_topics_creates_what_a_deployment_needs_and_refuses_the_embedded_broker(broker):
    from pipeline.kafka import describe_partitions
    from tests.helpers import wordpipe

    done = wordpipe("topics", "--bootstrap", broker.bootstrap)
    assert done.returncode == 0, done.stderr.decode()
    from confluent_kafka.admin import AdminClient

    existing = describe_partitions(AdminClient({"bootstrap.servers": broker.bootstrap}), 10)
    s = config.Settings()
    first = {base: generations.topic(base, 1) for base in (s.topics.chunks, s.topics.partials)}
    assert (
        existing[first[s.topics.chunks]] == s.topics.chunk_partitions
        and existing[first[s.topics.partials]] == s.topics.partial_partitions
    )
    status = generations.topic(s.topics.status, 1)
    assert {s.topics.totals, s.topics.deadletter, status, s.topics.assignments} <= set(existing)
    refused = wordpipe("topics")
    assert refused.returncode == 2 and b"bootstrap: topics are created on an existing cluster" in refused.stderr
