"""`wordpipe autoscale run` and `status` as an operator uses them."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline import config, kafka
from pipeline.kafka.broker import free_port
from tests.helpers import wordpipe

pytestmark = pytest.mark.e2e


def test_run_brings_workers_to_the_minimum_reports_status_and_reloads_its_policy(broker, tmp_path):
    s = config.Settings(bootstrap=broker.bootstrap)
    kafka.ensure_topics(broker.connection(), s.topics)
    policy = tmp_path / "policy.toml"
    policy.write_text("min_workers = 2\ncooldown_seconds = 0\n")
    port = free_port("127.0.0.1")
    exe = os.path.join(os.path.dirname(sys.executable), "wordpipe")
    env = {**os.environ, "WORDPIPE_AUTOSCALE_INTERVAL": "0.5", "TMPDIR": str(tmp_path), "WORDPIPE_TOKENS": "ops-token"}
    refused = subprocess.run(
        [exe, "autoscale", "run", "--bootstrap", broker.bootstrap],
        capture_output=True,
        timeout=60,
        env={**env, "WORDPIPE_TOKENS": ""},
    )
    assert refused.returncode == 2 and b"tokens: auth is on but no token is configured" in refused.stderr
    proc = subprocess.Popen(
        [exe, "autoscale", "run", "--bootstrap", broker.bootstrap, "--port", str(port), "--policy", str(policy)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def status():
            done = wordpipe("autoscale", "status", "--url", url, "--json", "--token", "ops-token", timeout=30)
            return json.loads(done.stdout) if done.returncode == 0 else None

        deadline = time.monotonic() + 60
        while (st := status()) is None or sum(w["state"] == "running" for w in st["workers"]) != 2:
            assert time.monotonic() < deadline and proc.poll() is None, f"never reached 2 workers: {st}"
            time.sleep(0.5)
        assert st["policy"]["min_workers"] == 2 and st["next_decision"]["message"]
        text = wordpipe("autoscale", "status", "--url", url, env={"WORDPIPE_TOKEN": "ops-token"}).stdout.decode()
        denied = wordpipe("autoscale", "status", "--url", url, "--token", "wrong")
        assert denied.returncode == 1 and b"401 unauthorized" in denied.stderr
        assert "lag" in text and "workers" in text and "next" in text
        policy.write_text("min_workers = 3\ncooldown_seconds = 0\n")  # reloaded without a restart
        deadline = time.monotonic() + 60
        while (st := status()) is None or sum(w["state"] == "running" for w in st["workers"]) != 3:
            assert time.monotonic() < deadline, f"the new policy was not applied: {st and st['last_decision']}"
            time.sleep(0.5)
        pids = [int(w["detail"].split()[1]) for w in st["workers"]]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, proc.stderr.read().decode()[-2000:]
    time.sleep(0.5)
    assert not [p for p in pids if os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"]
