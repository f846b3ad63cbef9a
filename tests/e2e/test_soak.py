"""The soak's short version (issue 31): `wordpipe up` takes 200 MB of uploads at 4 MB/s with
small topic generations, and every process of the stack, the broker included, must end at
most 20% above its RSS at 100 MB, with exact totals. bench/soak.py runs it and says why in a
table; `make soak` runs the long ones (2 GB of uploads, 20 minutes of a source topic)."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.e2e


def test_200_mb_of_uploads_end_with_the_memory_the_stack_had_at_100(tmp_path):
    out = tmp_path / "out"
    soak = [sys.executable, str(REPO / "bench" / "soak.py"), "--mb", "200", "--rate", "4", "--baseline-mb", "100"]
    soak += ["--every", "5", "--set", "generation_bytes=8388608", "--out", str(out), "--work", str(tmp_path / "work")]
    done = subprocess.run(soak, capture_output=True, text=True, timeout=400, cwd=REPO)
    said = f"exit {done.returncode}\n{done.stdout[-8000:]}\n{done.stderr[-3000:]}"

    # The measure itself: each process of the stack under a label of its own, every sample in the report.
    assert (out / "report.md").exists() and (out / "rss.png").stat().st_size > 0, said
    with open(out / "samples.csv") as f:
        header, *rows = list(csv.reader(f))
    assert {"broker", "aggregator", "ingest", "autoscaler", "up"} <= set(header), header
    assert any(label.startswith("worker-") for label in header), header
    assert len(rows) >= 10 and float(rows[-1][1]) >= 200, rows

    # What it measures: exact totals, and no process grown past 1.2 times its RSS at 100 MB.
    failed = done.returncode != 0
    assert not failed, said
