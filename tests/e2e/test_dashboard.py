"""The Grafana dashboard of the whole pipeline, against a real Prometheus server (Debian's
`prometheus`) scraping a live `wordpipe up` with deploy/prometheus.yml as shipped: only
each target's port is rewritten, from the shipped default (8080 ingest, 8081 results, 8082
autoscaler) to the port the stack listens on. Every panel's every query returns data, and
what the test drives shows in it: words, chunks, bytes and uploads per second above 0
after it uploads text, errors after its failing requests, finite latency quantiles.

Grafana itself runs where a package for it can be had. Debian has none (`apt-cache policy
grafana`: no candidate) and PyPI's `grafana` is an empty placeholder, so on this project's
machines the Grafana test skips and says why; where `grafana` is installed, it provisions
the shipped dashboard and data source and asks every panel's queries through Grafana.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import yaml

from pipeline.kafka.broker import free_port
from tests.helpers import REPO, SAMPLE, debian_tool, wait_for, wordpipe

pytestmark = pytest.mark.e2e

TOKEN = "dashboard-token"
# deploy/prometheus.yml's targets; 8083: docker-compose's second aggregator instance
SHIPPED_PORTS = {8080: "ingest", 8081: "results", 8082: "autoscaler", 8083: "results-2"}
DASHBOARD = REPO / "deploy/grafana/dashboards/wordpipe.json"


def above_zero(series: list) -> bool:
    return any(float(s["value"][1]) > 0 for s in series)


def finite(series: list) -> bool:
    return bool(series) and all(math.isfinite(float(s["value"][1])) for s in series)


# What the test drives, by (panel, legend): the check its query's answer must pass.
DRIVEN: dict[tuple[str, str], Callable[[list], bool]] = {
    ("Counted per second: words and chunks", "words/s"): above_zero,
    ("Counted per second: words and chunks", "chunks/s"): above_zero,
    ("Ingest: bytes per second", "bytes/s"): above_zero,
    ("Uploads per second, by outcome", "{{outcome}}"): above_zero,
    ("API errors per second (4xx and 5xx)", "{{service}} {{status}}"): above_zero,
    ("API latency quantiles", "p50 {{service}}"): finite,
    ("API latency quantiles", "p99 {{service}}"): finite,
}


def panel_queries() -> list[tuple[str, str, str]]:
    """(panel title, legend, PromQL) of every query of every panel."""
    return [
        (panel["title"], target["legendFormat"], target["expr"])
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel["targets"]
    ]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict[str, int]]:
    """`wordpipe up` with two aggregator instances (as docker-compose runs), its autoscaler
    deciding every second (the decisions panel has some): its ports."""
    logs = tmp_path_factory.mktemp("up")
    ports = {name: free_port() for name in ("ingest", "results", "autoscaler")}
    env = {
        **os.environ,
        "XDG_STATE_HOME": str(logs / "state"),
        "WORDPIPE_TOKENS": TOKEN,
        "WORDPIPE_AUTOSCALE_INTERVAL": "1",
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "up", "--aggregators", "2", "--log-dir", str(logs / "logs")]
        + [f"--{name}-port={port}" for name, port in ports.items()],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
        start_new_session=True,
    )
    try:
        printed = ""
        while "Ctrl-C" not in printed:
            line = up.stdout.readline()
            assert line, "wordpipe up exited early:\n" + printed
            printed += line
        ports["results-2"] = int(re.search(r"results +http://[\d.]+:(\d+) \(aggregator-2\)", printed)[1])
        yield ports
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            raise


def scrape_config(ports: dict[str, int]) -> dict:
    """deploy/prometheus.yml with each target's shipped port replaced by the stack's."""
    config = yaml.safe_load((REPO / "deploy/prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = [
                f"{host}:{ports[SHIPPED_PORTS[int(port)]]}"
                for host, port in (target.rsplit(":", 1) for target in static["targets"])
            ]
    return config


@pytest.fixture(scope="module")
def prometheus(stack, tmp_path_factory) -> Iterator[str]:
    """Prometheus scraping the stack, every target up: its address."""
    server = debian_tool("prometheus", "prometheus")
    home = tmp_path_factory.mktemp("prometheus")
    config = scrape_config(stack)
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    targets = {t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]}
    web = f"127.0.0.1:{free_port()}"
    with open(home / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                server,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'tsdb'}",
                f"--web.listen-address={web}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_for(lambda: _ready(web), 60, "Prometheus to answer")
        wait_for(lambda: up_targets(web) == targets, 60, lambda: f"every target up; down: {targets - up_targets(web)}")
        yield web
    finally:
        proc.terminate()
        proc.wait(30)


def _ready(web: str) -> bool:
    try:
        return requests.get(f"http://{web}/-/ready", timeout=5).ok
    except requests.ConnectionError:
        return False


def up_targets(web: str) -> set[str]:
    """The targets Prometheus scraped last time round."""
    return {s["metric"]["instance"] for s in query(web, "up") if float(s["value"][1]) == 1}


def query(web: str, expr: str) -> list:
    reply = requests.get(f"http://{web}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert reply["status"] == "success", (expr, reply)
    return reply["data"]["result"]


def drive(ports: dict[str, int]) -> None:
    """An upload counted, one refused (415), requests refused (401) and lost (404)."""
    flags = ["--url", f"http://127.0.0.1:{ports['ingest']}", "--token", TOKEN, "-q"]
    assert wordpipe("ingest", str(SAMPLE), *flags).returncode == 0
    results = f"http://127.0.0.1:{ports['results']}"
    assert requests.get(results + "/v1/top", timeout=10).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(results + "/v1/nowhere", headers=auth, timeout=10).status_code == 404
    refused = requests.post(
        f"http://127.0.0.1:{ports['ingest']}/v1/documents?name=x",
        data=b"x",
        headers={**auth, "Content-Type": "image/png"},
        timeout=10,
    )
    assert refused.status_code == 415
    status = wordpipe("status", "--url", results, "--token", TOKEN, "--wait", "120")
    assert status.returncode == 0, status.stderr


# Scraped once the first round is: every series the second round raises (a rate sees no rise
# before a series' first sample, and a labelled counter's series is born at its first count).
FIRST_ROUND = [
    'wordpipe_ingest_documents_total{outcome="committed"}',
    'count(wordpipe_http_requests_total{status=~"401|404|415"}) == 3',
    "wordpipe_worker_chunks_total",
    "wordpipe_aggregator_words",
]


@pytest.fixture(scope="module")
def driven(stack, prometheus) -> None:
    """The traffic in two rounds, the second once Prometheus holds the first's series."""
    drive(stack)
    wait_for(lambda: all(query(prometheus, expr) for expr in FIRST_ROUND), 60, "the first round scraped")
    drive(stack)


def test_every_panel_shows_data_and_what_the_test_drove(prometheus, driven):
    """Each query passes at some moment of the minute after the second round: its rise stays
    in a rate's 1 m window for that long (scrapes every 5 s, as shipped)."""
    waiting = {(title, legend): expr for title, legend, expr in panel_queries()}
    last: dict[tuple[str, str], list] = {}
    deadline = time.monotonic() + 60
    while waiting and time.monotonic() < deadline:
        for panel, expr in list(waiting.items()):
            last[panel] = query(prometheus, expr)
            if last[panel] and DRIVEN.get(panel, bool)(last[panel]):
                del waiting[panel]
        time.sleep(1)
    assert not waiting, f"panels without data, or without what the test drove: {[(p, last[p]) for p in waiting]}"


@pytest.fixture(scope="session")
def grafana() -> str:
    path = shutil.which("grafana") or shutil.which("grafana-server")
    if path is None:
        pytest.skip(
            "Grafana is not installed, and no package for it can be had here: Debian has none "
            "(apt-cache policy grafana: no candidate) and PyPI's `grafana` is an empty placeholder"
        )
    return path


def test_grafana_shows_every_panel_from_prometheus(grafana, prometheus, driven, tmp_path):
    """The shipped provisioning (data source, dashboard), only the data source's address and
    the dashboards' directory rewritten; every panel's queries asked through Grafana."""
    url = f"127.0.0.1:{free_port()}"
    provisioning = _provisioning(tmp_path / "provisioning", prometheus)
    env = {
        **os.environ,
        "GF_PATHS_PROVISIONING": str(provisioning),
        "GF_PATHS_DATA": str(tmp_path / "data"),
        "GF_SERVER_HTTP_ADDR": url.split(":")[0],
        "GF_SERVER_HTTP_PORT": url.split(":")[1],
        "GF_AUTH_ANONYMOUS_ENABLED": "true",  # as docker-compose.yml runs it
        "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer",
    }
    command = [grafana, *(["server"] if Path(grafana).name == "grafana" else []), "--homepath=/usr/share/grafana"]
    with open(tmp_path / "grafana.log", "wb") as log:
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        dashboard = wait_for(lambda: _dashboard(url), 60, "Grafana to serve the provisioned dashboard")
        assert [p["title"] for p in dashboard["panels"]] == [
            p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]
        ]
        for title, legend, expr in panel_queries():
            frames = _grafana_query(url, expr)
            assert frames and frames[0]["data"]["values"], (title, legend, expr)
    finally:
        server.terminate()
        server.wait(30)


def _provisioning(path: Path, prometheus: str) -> Path:
    shutil.copytree(REPO / "deploy/grafana/provisioning", path)
    _rewrite(path / "datasources/prometheus.yml", "http://127.0.0.1:9090", f"http://{prometheus}")
    _rewrite(path / "dashboards/wordpipe.yml", "/var/lib/grafana/dashboards", str(DASHBOARD.parent))
    return path


def _rewrite(path: Path, shipped: str, here: str) -> None:
    text = path.read_text()
    assert shipped in text, f"{path.name} no longer holds {shipped!r}: rewrite the test's rewriting"
    path.write_text(text.replace(shipped, here))


def _dashboard(url: str) -> dict | None:
    try:
        reply = requests.get(f"http://{url}/api/dashboards/uid/wordpipe", timeout=5)
    except requests.ConnectionError:
        return None
    return reply.json()["dashboard"] if reply.ok else None


def _grafana_query(url: str, expr: str) -> list:
    body = {
        "queries": [{"refId": "A", "datasource": {"uid": "prometheus"}, "expr": expr, "instant": True}],
        "from": "now-5m",
        "to": "now",
    }
    reply = requests.post(f"http://{url}/api/ds/query", json=body, timeout=10)
    assert reply.ok, reply.text
    return reply.json()["results"]["A"].get("frames", [])
