"""The dashboards. Grafana's, of the whole pipeline, against a real Prometheus server
(Debian's `prometheus`) scraping a live `wordpipe up`: every panel's every query returns
data. The results API's own page (`GET /`), in headless Chromium: it ranks as /v1/top does,
and a word of any length leaves its layout whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from pipeline.broker import free_port
from tests.e2e.browser import render
from tests.helpers import REPO, SAMPLE, debian_tool, wait_for, wordpipe
from tests.services import TOKEN

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


def _counted(services, text: str) -> None:
    services.client.ingest(text.encode(), name="dashboard")
    services.client.wait_counted(timeout=120)


def test_the_page_ranks_words_as_top_does(services, chromium):
    """Integer-like words ("1") first whatever their counts was a JavaScript object's order.
    Ties go in code point order, as Python's: U+FA0E before U+20000, which UTF-16 puts first."""
    _counted(services, "the " * 6 + "whale " * 5 + "sea " * 4 + "3 2 2 1 bildad ahab \U00020000 \ufa0e")
    top = [[word, str(n)] for word, n in services.client.top(20)["counts"].items()]
    rows, _ = render(
        chromium,
        f"{services.results_url}/#token={TOKEN}",
        "(() => { const rows = [...document.querySelectorAll('#top tr')]"
        "  .map(r => [...r.cells].slice(1, 3).map(c => c.textContent));"
        f"  return rows.length === {len(top)} && rows; }})()",
    )
    assert rows == top
    assert top[:3] == [["the", "6"], ["whale", "5"], ["sea", "4"]]


LONG = "x" * 64_000


def test_a_long_word_is_cut_to_fit_and_whole_on_hover_and_in_the_lookup(services, chromium, tmp_path):
    _counted(services, f"{LONG} short")
    url = f"{services.results_url}/#token={TOKEN}"
    page, _ = render(
        chromium,
        url,
        "(() => { const cell = [...document.querySelectorAll('#top tr')].map(r => r.cells[1])"
        f"  .find(c => c.textContent === '{LONG}');"
        "  return cell && {page: document.documentElement.scrollWidth, window: innerWidth,"
        "    cell: cell.getBoundingClientRect().width, title: cell.querySelector('[title]')?.title}; })()",
    )
    assert page["page"] <= page["window"], f"a 64,000-character word makes the page {page['page']} px wide"
    assert page["cell"] < 500 and page.get("title") == LONG, {**page, "title": page.get("title", "")[:20]}
    # A click on the word looks it up: the whole word is asked, and its answer titled with it.
    lookup, png = render(
        chromium,
        url,
        "(() => { const cell = [...document.querySelectorAll('#top [title]')].find(c => c.title.length === 64000);"
        "  if (cell && !window.clicked) { window.clicked = true; cell.click(); }"
        "  const answered = document.getElementById('answered');"
        "  return answered?.title && {asked: document.getElementById('ask').value, answered: answered.title,"
        "    count: document.getElementById('answer-count').textContent,"
        "    page: document.documentElement.scrollWidth, window: innerWidth}; })()",
    )
    assert lookup["asked"] == lookup["answered"] == LONG and lookup["count"] == "1"
    assert lookup["page"] <= lookup["window"]
    shot = Path(os.environ.get("WORDPIPE_SCREENSHOT_DIR", tmp_path)) / "dashboard-long-word.png"
    shot.write_bytes(png)
