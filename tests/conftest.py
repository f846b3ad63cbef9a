from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import CORPORA, REPO, debian_tool
from tests.leaks import MESOS_TASK, labelled_containers


@pytest.fixture(scope="session")
def corpora() -> Path:
    if not CORPORA.is_dir():
        pytest.skip(f"shared corpora not found at {CORPORA}")
    return CORPORA


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium, for the dashboards (tests/e2e/browser.py)."""
    return debian_tool("chromium", "chromium")


@pytest.fixture
def broker():
    from pipeline.kafka.broker import EmbeddedBroker

    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="session")
def docker_image() -> str:
    """wordpipe:latest, built from this checkout, on a running Docker engine.

    Starts dockerd and builds the images if needed (both cached on this machine); when
    that is impossible the Docker tests fail with the reason, they never skip.
    """
    env = {**os.environ, "PYTHON": sys.executable}
    for step in (["deploy/docker-engine.sh"], ["deploy/build-image.sh", "--local-base"]):
        done = subprocess.run(step, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(step)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}", pytrace=False)
    return "wordpipe:latest"


@pytest.fixture
def mesos_master(docker_image):
    """A Mesos master double with one agent that runs tasks as containers; its event stream
    is cut into random HTTP chunks, and it heartbeats every 0.5 s."""
    from tests.mesos_double.agent import DockerAgent
    from tests.mesos_double.master import MasterDouble

    with MasterDouble(DockerAgent(cpus=8, mem_mb=4096), heartbeat_interval=0.5, update_retry=2.0) as master:
        master.split = True
        yield master
    assert labelled_containers(*(f"{MESOS_TASK}={task}" for task in master.launched)) == {}


@pytest.fixture(scope="module")
def services():
    """Broker, aggregator, 2 workers and an ingest service, token auth on: one per test module."""
    from pipeline import config
    from pipeline.client import Client
    from pipeline.run import Pipeline
    from tests.services import TOKEN, IngestThread, Services

    settings = config.Settings(workers=2, tokens=TOKEN)
    with Pipeline(settings) as pipeline, IngestThread(pipeline.connection, pipeline.settings) as ingest:
        ingest.wait_healthy()
        client = Client(ingest.url, pipeline.results_url, token=TOKEN)
        yield Services(pipeline.settings, pipeline.connection, ingest.url, pipeline.results_url, client)
        client.close()
