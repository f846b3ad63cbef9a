"""Crash loops end `wordpipe run` with a clear error however slowly they repeat, and show in
`wordpipe up`: the autoscaler's status and metrics, the results API's status and metrics, and
the dashboard (the rule: pipeline/supervisor.py; the faults: pipeline/faults.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import requests

from pipeline.kafka.broker import free_port
from schemas import load
from tests.e2e.browser import render
from tests.e2e.test_up import _running, descendants
from tests.helpers import SAMPLE, wait_for, wordpipe

pytestmark = pytest.mark.e2e

TOKEN = "crash-loop-token"


def test_run_ends_with_the_error_when_the_aggregator_crashes_slowly_again_and_again(tmp_path):
    # Each aggregator hangs at its first checkpoint, as on a record it cannot write, and exits with
    # status 3 after 13 s: never 5 exits within 60 s, so only a rule without a window sees a loop.
    env = {"WORDPIPE_FAULTS": "aggregator.mid_checkpoint=hang,aggregator.start=13s:3", "TMPDIR": str(tmp_path)}
    done = wordpipe("run", str(SAMPLE), env=env, timeout=300)
    err = done.stderr.decode()
    assert done.returncode == 1, err[-3000:]
    assert "wordpipe: error: aggregator crashed 5 times in this run (the last: exit status 3); giving up." in err
    found = re.search(r"Its last log lines \((.+/aggregator\.log)\):\n", err)
    assert found, err[-3000:]
    tail = err[found.end() :].strip()  # the run keeps its logs when it fails
    assert tail and tail in open(found.group(1), errors="replace").read()


def get(url: str) -> requests.Response:
    return requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


def test_up_shows_workers_that_keep_crashing_and_keeps_going(tmp_path, chromium):
    ports = {"ingest": free_port(), "results": free_port(), "autoscaler": free_port()}
    env = {
        **os.environ,
        "WORDPIPE_TOKENS": TOKEN,
        "WORDPIPE_SESSION_TIMEOUT_MS": "2000",
        "WORDPIPE_AUTOSCALE_INTERVAL": "1",
        "WORDPIPE_FAULTS": "worker.start=1s:3",  # every worker exits with status 3 a second after it started
    }
    args = ["up", "--log-dir", str(tmp_path / "logs")]
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    up = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
        start_new_session=True,
    )
    autoscaler, results = f"http://127.0.0.1:{ports['autoscaler']}", f"http://127.0.0.1:{ports['results']}"
    lines: list[str] = []
    try:
        while not any("Ctrl-C" in line for line in lines):
            line = up.stdout.readline()
            assert line, "wordpipe up exited early:\n" + "".join(lines)
            lines.append(line)

        def shown(url: str, crashes_of) -> dict | None:
            workers = crashes_of(get(url).json()).get("workers", {})
            return workers if workers.get("looping") and workers["crashes"] >= 2 else None

        workers = wait_for(
            lambda: shown(autoscaler + "/v1/status", lambda status: status.get("crashes", {})),
            60,
            "the autoscaler's status to show the workers' crash loop",
        )
        assert workers["last_exit"] == "exit status 3" and workers["in_a_row"] >= 2
        status = get(autoscaler + "/v1/status").json()
        spec = load("autoscaler.openapi.json")
        schema = spec["paths"]["/v1/status"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        jsonschema.validate(status, {**schema, "components": spec["components"]})

        metrics = get(autoscaler + "/metrics").text
        assert float(_metric(metrics, "wordpipe_service_crashes_total", "workers")) >= 2
        assert float(_metric(metrics, "wordpipe_service_crashes_in_a_row", "workers")) >= 2

        crashes = wait_for(
            lambda: (
                shown(results + "/v1/status", lambda status: status["pipeline"].get("crashes", {})) is not None
                and get(results + "/v1/status").json()["pipeline"]["crashes"]
            ),
            60,
            "the results API's status to show the workers' crash loop",
        )
        assert {"aggregator", "ingest", "autoscaler"} <= set(crashes), "the stack's own services are not shown"
        assert all(crashes[role]["crashes"] == 0 for role in ("aggregator", "ingest", "autoscaler"))
        assert float(_metric(get(results + "/metrics").text, "wordpipe_service_crashes_total", "workers")) >= 2
        shown_on_page, png = render(
            chromium, f"{results}/#token={TOKEN}", "document.querySelector('#crashes:not([hidden]) .loop')?.textContent"
        )
        assert re.match(
            r"workers in a crash loop: \d+ crashes in a row, \d+ in all, the last exit status 3", shown_on_page
        )
        (Path(os.environ.get("WORDPIPE_SCREENSHOT_DIR", tmp_path)) / "dashboard-crash-loop.png").write_bytes(png)
        assert up.poll() is None, "wordpipe up gave up on workers: only the autoscaler relaunches them"
    finally:
        children = descendants(up.pid)
        up.send_signal(signal.SIGINT)
        try:
            out, _ = up.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            raise
    assert up.returncode == 0, out
    assert re.search(r"workers: in a crash loop, \d+ crashes in a row .* the last exit status 3", out), out[-3000:]
    time.sleep(0.5)
    assert not [pid for pid in children if _running(pid)], "left running after Ctrl-C"


def _metric(text: str, name: str, role: str) -> str:
    found = re.search(rf'^{name}{{role="{role}"}} (\S+)$', text, re.M)
    assert found, f"{name}{{role={role!r}}} is not exported:\n{text[-2000:]}"
    return found.group(1)
