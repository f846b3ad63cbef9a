"""The Grafana dashboard of the whole pipeline, against a real Prometheus server (Debian's
`prometheus`) scraping a live `wordpipe up`: every panel's every query returns data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from pipeline.broker import free_port
from tests.helpers import REPO, SAMPLE, debian_tool, wait_for, wordpipe

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def prometheus() -> str:
    return debian_tool("prometheus", "prometheus")


def test_every_panel_of_the_dashboard_shows_data(tmp_path, prometheus):
    ports = {"ingest": free_port(), "results": free_port(), "autoscaler": free_port()}
    env = {
        **os.environ,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "WORDPIPE_TOKENS": "dashboard-token",
        "WORDPIPE_AUTOSCALE_INTERVAL": "1",  # decisions every second: the decisions panel has some
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "up", "--log-dir", str(tmp_path / "logs")]
        + [f"--{name}-port={port}" for name, port in ports.items()],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
        start_new_session=True,
    )
    server = None
    try:
        printed = ""
        while "Ctrl-C" not in printed:
            line = up.stdout.readline()
            assert line, "wordpipe up exited early:\n" + printed
            printed += line
        scrape = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": f"wordpipe-{name}", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                for name, port in ports.items()
            ],
        }
        (tmp_path / "prometheus.yml").write_text(json.dumps(scrape))  # YAML is a superset of JSON
        web = f"127.0.0.1:{free_port()}"
        server = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={web}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "prometheus.log", "wb"),
        )

        # Something for every panel: uploads (one refused), counting, requests that fail.
        flags = ["--url", f"http://127.0.0.1:{ports['ingest']}", "--token", "dashboard-token", "-q"]
        assert wordpipe("ingest", str(SAMPLE), *flags).returncode == 0
        results = f"http://127.0.0.1:{ports['results']}"
        requests.get(results + "/v1/top", timeout=10)  # 401
        requests.get(results + "/v1/nowhere", headers={"Authorization": "Bearer dashboard-token"}, timeout=10)  # 404
        requests.post(
            f"http://127.0.0.1:{ports['ingest']}/v1/documents?name=x",
            data=b"x",
            headers={"Authorization": "Bearer dashboard-token", "Content-Type": "image/png"},
            timeout=10,
        )  # 415: an upload refused
        status = wordpipe("status", "--url", results, "--token", "dashboard-token", "--wait", "120")
        assert status.returncode == 0, status.stderr

        def query(expr: str) -> list:
            reply = requests.get(f"http://{web}/api/v1/query", params={"query": expr}, timeout=10).json()
            assert reply["status"] == "success", (expr, reply)
            return reply["data"]["result"]

        targets = [
            (panel["title"], target["expr"])
            for panel in json.loads((REPO / "deploy/grafana/dashboards/wordpipe.json").read_text())["panels"]
            for target in panel["targets"]
        ]
        deadline = time.monotonic() + 90  # scrapes every second; rates want two samples in their window
        empty = targets
        while empty and time.monotonic() < deadline:
            time.sleep(2)
            empty = [(title, expr) for title, expr in targets if not query(expr)]
        assert not empty, f"panels whose queries return no data: {empty}"
        assert wait_for(lambda: query("sum(wordpipe_aggregator_words)"), what="words counted")[0]["value"][1] != "0"
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        up.send_signal(signal.SIGINT)
        try:
            up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            raise
