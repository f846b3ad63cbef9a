"""Process usage from /proc, as benchmarks read it for the aggregator."""

import os
import subprocess
import sys
import time

from pipeline.processes import usage


def test_usage_reads_cpu_seconds_and_peak_rss_of_a_process_by_name_with_spaces_and_parentheses():
    script = "b = b'x' * (80 * 1024 * 1024)\nx = sum(range(50_000_000))\nimport time; time.sleep(30)"
    # A process name with ") (" in it: the parser must split /proc/PID/stat after the last ")".
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        executable=sys.executable,
        env={**os.environ},
        preexec_fn=lambda: __import__("ctypes").CDLL(None).prctl(15, b"a) (b", 0, 0, 0),
    )
    try:
        deadline = time.monotonic() + 20
        while (cpu_rss := usage(proc.pid))[0] < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu, rss = cpu_rss
        assert 0.3 <= cpu < 30
        assert 80 <= rss < 400
    finally:
        proc.kill()
        proc.wait()
