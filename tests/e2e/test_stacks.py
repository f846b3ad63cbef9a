"""Several `wordpipe up` stacks on one machine, each found by the CLI through what it printed
to export; and a port in use, said in one line before anything starts."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.kafka.broker import free_port
from tests.helpers import wordpipe
from tests.leaks import OwnProcesses

pytestmark = pytest.mark.e2e

SERVICES = ("ingest", "results", "autoscaler")
# What finds a stack besides the flags; the test's own environment must not choose for it.
FINDING = (
    "WORDPIPE_TOKEN",
    "WORDPIPE_TOKENS",
    "WORDPIPE_TOKEN_FILE",
    "WORDPIPE_INGEST_URL",
    "WORDPIPE_RESULTS_URL",
    "WORDPIPE_AUTOSCALER_URL",
)


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, str]:
    """The environment of `up` and the CLI: no token or address of the machine's, and the
    default stack's token file in tmp_path, where nothing is."""
    for name in FINDING:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return {**os.environ, "WORDPIPE_SESSION_TIMEOUT_MS": "2000"}


def up_command(ports: dict[str, int], log_dir: Path, *flags: str) -> list[str]:
    command = [sys.executable, "-m", "pipeline.cli", "up", "--log-dir", str(log_dir), *flags]
    for name, port in ports.items():
        command += [f"--{name}-port", str(port)]
    return command


def start_up(command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`up` started, in a session of its own, and its banner once it is up."""
    up = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, start_new_session=True
    )
    printed = ""
    while "Ctrl-C" not in printed:
        line = up.stdout.readline()
        if not line:
            stop_up(up)
            pytest.fail("wordpipe up exited early:\n" + printed)
        printed += line
    return up, printed


def stop_up(up: subprocess.Popen) -> tuple[str, str]:
    """Ctrl-C, as a user stops it (it stops its services itself); what it printed since."""
    if up.poll() is None:
        up.send_signal(signal.SIGINT)
    try:
        return up.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(up.pid, signal.SIGKILL)
        raise


def exported(printed: str) -> dict[str, str]:
    """The `export NAME=value` lines of a banner."""
    found = {}
    for line in printed.splitlines():
        words = shlex.split(line)
        if words[:1] == ["export"]:
            name, _, value = words[1].partition("=")
            found[name] = value
    return found


def test_two_stacks_on_one_machine_each_answer_the_cli_through_their_exports(tmp_path, env):
    ports = [{name: free_port() for name in SERVICES} for _ in range(2)]
    books = {"whale": tmp_path / "whale.txt", "quokka": tmp_path / "quokka.txt"}
    books["whale"].write_text("The whale, the WHALE! Whale.\n")
    books["quokka"].write_text("quokka quokka quokka\n")
    first, printed = start_up(up_command(ports[0], tmp_path / "first"), env)
    try:
        first_env = exported(printed)
        assert first_env == {
            "WORDPIPE_INGEST_URL": f"http://127.0.0.1:{ports[0]['ingest']}",
            "WORDPIPE_RESULTS_URL": f"http://127.0.0.1:{ports[0]['results']}",
            "WORDPIPE_AUTOSCALER_URL": f"http://127.0.0.1:{ports[0]['autoscaler']}",
            "WORDPIPE_TOKEN_FILE": str(tmp_path / "state" / "wordpipe" / f"token-{ports[0]['ingest']}"),
        }, printed
        sent = wordpipe("ingest", str(books["whale"]), "-q", env=first_env)
        assert sent.returncode == 0, sent.stderr

        # A second stack, its token kept beside its state, started after the first's CLI worked.
        kept = tmp_path / "kept"
        second, printed = start_up(up_command(ports[1], tmp_path / "second", "--state-dir", str(kept)), env)
        try:
            second_env = exported(printed)
            assert second_env["WORDPIPE_TOKEN_FILE"] == str(kept / "token"), printed
            assert oct((kept / "token").stat().st_mode & 0o777) == "0o600"
            sent = wordpipe("ingest", str(books["quokka"]), "-q", env=second_env)
            assert sent.returncode == 0, sent.stderr

            # Each stack answers with its own counts, the first too (it is not locked out).
            for stack_env, counts in ((first_env, {"whale": 3, "quokka": 0}), (second_env, {"whale": 0, "quokka": 3})):
                status = wordpipe("status", "--wait", "120", env=stack_env)
                assert status.returncode == 0, status.stderr
                assert b"documents  1 counted of 1 ingested" in status.stdout, status.stdout
                for word, n in counts.items():
                    count = wordpipe("count", word, env=stack_env)
                    assert (count.returncode, count.stdout.strip()) == (0, str(n).encode()), count.stderr
                autoscaler = wordpipe("autoscale", "status", "--json", env=stack_env)
                assert autoscaler.returncode == 0 and "workers" in json.loads(autoscaler.stdout), autoscaler.stderr
        finally:
            stop_up(second)
    finally:
        stop_up(first)
    assert first.returncode == 0 and second.returncode == 0


@pytest.mark.parametrize("taken", SERVICES)
def test_a_port_in_use_is_one_line_and_starts_nothing(tmp_path, env, taken):
    ports = {name: free_port() for name in SERVICES}
    own = OwnProcesses()
    with socket.socket() as holder:  # another program listening on the port
        holder.bind(("127.0.0.1", ports[taken]))
        holder.listen()
        up = subprocess.Popen(
            up_command(ports, tmp_path / "logs"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 10  # it takes well under a second; CI may be slow
            while up.poll() is None and time.monotonic() < deadline:
                own.scan()  # sees the sessions of whatever it would start, to find them left behind
                time.sleep(0.05)
            assert up.poll() is not None, f"wordpipe up still running 10 s after it started with the {taken} port taken"
        finally:
            out, err = stop_up(up)
    assert up.returncode == 1, (out, err)
    assert out == ""  # nothing printed as up
    assert err.splitlines() == [
        f"wordpipe: error: the {taken} API (--{taken}-port) cannot listen on 127.0.0.1:{ports[taken]}: "
        "Address already in use"
    ]
    assert not (tmp_path / "logs").exists()  # no broker and no service: none wrote a log
    assert not (tmp_path / "state").exists()  # no token written
    assert own.new() == {}
