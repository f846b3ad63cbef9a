"""`wordpipe up` as a user runs it: the stack, the CLI against it, the dashboard in headless
Chromium, and Ctrl-C leaving nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.kafka.broker import free_port
from tests.e2e.browser import render
from tests.helpers import SAMPLE, wait_for, wordpipe

pytestmark = pytest.mark.e2e


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = map(int, line.split())
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_up_serves_producers_and_consumers_until_ctrl_c(tmp_path, chromium):
    ports = {"ingest": free_port(), "results": free_port(), "autoscaler": free_port()}
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "WORDPIPE_SESSION_TIMEOUT_MS": "2000"}
    env.pop("WORDPIPE_TOKENS", None)
    token_path = tmp_path / "state" / "wordpipe" / f"token-{ports['ingest']}"  # this stack's, named by its port
    token_path.parent.mkdir(parents=True)
    token_path.write_text("an old token\n")
    token_path.chmod(0o644)  # a new token goes in at 0600 whatever the old file's mode
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "up",
            "--ingest-port",
            str(ports["ingest"]),
            "--results-port",
            str(ports["results"]),
            "--autoscaler-port",
            str(ports["autoscaler"]),
            "--log-dir",
            str(tmp_path / "logs"),
            "--source",
            "feed",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
        start_new_session=True,
        # As a non-interactive shell starts a background job: SIGINT ignored, inherited.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    lines: list[str] = []
    try:
        while not any("Ctrl-C" in line for line in lines):
            line = up.stdout.readline()
            assert line, "wordpipe up exited early:\n" + "".join(lines)
            lines.append(line)
        printed = "".join(lines)
        for port in ports.values():
            assert f"127.0.0.1:{port}" in printed, printed
        token = token_path.read_text().strip()
        assert f"token      {token}" in printed
        assert "the embedded broker keeps everything in memory" in printed and "--bootstrap" in printed
        assert oct(token_path.stat().st_mode & 0o777) == "0o600"

        cli_env = {"WORDPIPE_TOKEN_FILE": str(token_path)}  # the CLI finds the token where `up` saved it
        ingest_url, results_url = f"http://127.0.0.1:{ports['ingest']}", f"http://127.0.0.1:{ports['results']}"
        books = tmp_path / "books"
        books.mkdir()
        (books / "a.txt").write_bytes(SAMPLE.read_bytes())
        (books / "b.txt").write_text("The whale, the WHALE! ’Tis the whale.\n")
        sent = wordpipe("ingest", str(books), "--url", ingest_url, "--json", "-q", env=cli_env)
        assert sent.returncode == 0, sent.stderr
        receipts = [json.loads(line) for line in sent.stdout.splitlines()]
        assert [r["path"] for r in receipts] == [str(books / "a.txt"), str(books / "b.txt")]

        status = wordpipe("status", "--url", results_url, "--wait", "120", "--json", env=cli_env)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["documents_counted"] == 2

        top = wordpipe("top", "5", "--json", "--url", results_url, env=cli_env)
        reference = wordpipe("reference", str(books), "--top", "5", "--json")
        assert top.returncode == 0 and json.loads(top.stdout) == json.loads(reference.stdout)
        assert wordpipe("count", "Whale", "--url", results_url, env=cli_env).stdout.strip() == b"3"
        denied = wordpipe("count", "whale", "--url", results_url, "--token", "wrong")
        assert denied.returncode == 1 and b"401 unauthorized" in denied.stderr
        _a_source_topic_is_counted_as_it_is_fed(printed, ports, token)

        # Secrets stay put: not in the workers' environments, not in any answer.
        workers = [
            pid for pid in descendants(up.pid) if b"-m\0pipeline.worker\0" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert workers
        for pid in workers:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert b"WORDPIPE_TOKENS" not in environ and token.encode() not in environ
        _autoscaler_answers_in_json_and_keeps_the_token(f"http://127.0.0.1:{ports['autoscaler']}", token)

        # The dashboard in Chromium, the token in the address: it shows the counts it streams.
        rows, png = render(
            chromium,
            f"{results_url}/#token={token}",
            "[...document.querySelectorAll('#top tr')].map(r => r.innerText.split('\\t'))",
        )
        assert [r[1:3] for r in rows[:3]] == [[w, str(n)] for w, n in json.loads(reference.stdout)["counts"].items()][
            :3
        ]
        shot = Path(os.environ.get("WORDPIPE_SCREENSHOT_DIR", tmp_path)) / "dashboard.png"
        shot.write_bytes(png)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    finally:
        children = descendants(up.pid)
        up.send_signal(signal.SIGINT)  # what Ctrl-C sends to `up`
        try:
            out, _ = up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            raise
    assert up.returncode == 0, out
    assert "stopping" in out
    time.sleep(0.5)
    alive = [pid for pid in children if _running(pid)]
    assert not alive, f"left running after Ctrl-C: {alive}"
    logs = [f for f in (tmp_path / "logs").rglob("*") if f.is_file()]  # the workers' logs too
    assert logs and not [f.name for f in logs if token in f.read_text(errors="replace")], "a log holds the token"


def _autoscaler_answers_in_json_and_keeps_the_token(url: str, token: str) -> None:
    import requests

    auth = {"Authorization": f"Bearer {token}"}
    assert requests.get(url + "/v1/status", headers=auth, timeout=10).status_code == 200
    for path, headers, status in [
        (f"/v1/status?token={token}", {}, 401),
        (f"/nowhere?token={token}", {}, 401),
        (f"/nowhere?token={token}", auth, 404),
    ]:
        reply = requests.get(url + path, headers=headers, timeout=10)
        assert reply.status_code == status and reply.headers["Content-Type"].startswith("application/json"), reply.text
        assert token not in reply.text
    reply = requests.get(url + "/v1/status?x=1", headers=auth, timeout=10)
    assert reply.status_code == 400 and reply.json()["error"] == "unknown_parameter"
    reply = requests.get(url + "/health", headers={"X-Big": "a" * 9000}, timeout=10)
    assert reply.status_code == 431 and reply.json()["error"] == "header_too_large"


def _a_source_topic_is_counted_as_it_is_fed(printed: str, ports: dict, token: str) -> None:
    """`--source feed`: the embedded broker has the topic; a line another client writes is
    counted within seconds (an idle window closes); the autoscaler reports the topic's lag."""
    import requests
    from kafka import KafkaProducer

    bootstrap = printed.split("source     feed (topic feed at ", 1)[1].split(")", 1)[0]
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    producer.send("feed", "Quokka, quokka’s quokka".encode())  # words the books lack
    producer.flush()
    producer.close()
    sent = time.monotonic()
    auth = {"Authorization": f"Bearer {token}"}
    results = f"http://127.0.0.1:{ports['results']}/v1/words/quokka"
    while requests.get(results, headers=auth, timeout=10).json()["count"] != 2:  # "quokka’s" is a word of its own
        assert time.monotonic() - sent < 10, "a fed line was not counted within 10 s"
        time.sleep(0.1)
    # Both topics reported (an empty report is a monitor that has not read yet: waited out),
    # and nothing left to count in either once the workers' commits land.
    status = f"http://127.0.0.1:{ports['autoscaler']}/v1/status"

    def lag_by_topic() -> dict:
        return requests.get(status, headers=auth, timeout=10).json()["lag_by_topic"]

    wait_for(
        lambda: lag_by_topic() == {"chunks": 0, "feed": 0}, 30, lambda: f"no lag in chunks and feed: {lag_by_topic()}"
    )


def _running(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
