"""A fresh `wordpipe up` as a new user meets it: seconds from its start to the 202 of a first
upload (sent again until one is taken), and from that 202 to the upload's words counted
(GET /v1/words/<w> of a word only it holds). Each round starts a stack of its own.

    python bench/first_upload.py [--rounds 5]

Prints each round and the medians.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.kafka.broker import free_port  # noqa: E402

TOKEN = "bench-first-upload"


def until(ask, timeout: float = 120.0) -> float:
    """Ask until it says yes; the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ask():
                return time.monotonic()
        except requests.RequestException:
            pass  # not up yet
        time.sleep(0.01)
    sys.exit(f"no answer within {timeout:.0f} s")


def one_round(n: int, work: Path) -> tuple[float, float]:
    ports = {name: free_port() for name in ("ingest", "results", "autoscaler")}
    env = {**os.environ, "XDG_STATE_HOME": str(work / "state"), "WORDPIPE_TOKENS": TOKEN}
    flags = [f"--{name}-port={port}" for name, port in ports.items()]
    started = time.monotonic()
    up = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "up", *flags, "--log-dir", str(work / "logs")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    word = f"firstupload{n}"
    try:
        accepted = until(
            lambda: (
                requests.post(
                    f"http://127.0.0.1:{ports['ingest']}/v1/documents",
                    data=f"{word} {word} {word} and more words\n".encode(),
                    headers=headers,
                    timeout=5,
                ).status_code
                == 202
            )
        )
        counted = until(
            lambda: (
                requests.get(f"http://127.0.0.1:{ports['results']}/v1/words/{word}", headers=headers, timeout=5)
                .json()
                .get("count")  # an error's body has none: not ready yet
                == 3
            )
        )
    finally:
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
    return accepted - started, counted - accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for n in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="first-upload-") as work:
            accepted, counted = one_round(n, Path(work))
        rows.append((accepted, counted))
        print(f"{n:>3}  202 {accepted:.2f} s after the start, counted {counted:.3f} s after the 202", flush=True)
    print(
        f"median: 202 {statistics.median(r[0] for r in rows):.2f} s after the start, "
        f"counted {statistics.median(r[1] for r in rows):.3f} s after it ({args.rounds} rounds)"
    )


if __name__ == "__main__":
    main()
