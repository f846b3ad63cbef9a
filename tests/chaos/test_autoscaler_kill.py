"""The autoscaler SIGKILLed in the middle of a scale-up, in a `wordpipe up` stack whose
workers are containers: the stack restarts it, the new one adopts the containers the
dead one launched (no duplicates, never more than the policy's maximum), scaling goes
on, and every uploaded word is counted once."""

import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter

import pytest
import requests

from pipeline import config
from pipeline.client import Client
from pipeline.kafka.broker import free_port
from pipeline.reference import count_sources
from pipeline.stack import Stack
from tests.chaos.helpers import corpus, scaled
from tests.helpers import wait_for
from tests.leaks import PIPELINE
from tests.services import TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.docker]

COOLDOWN = 3  # seconds after an action before the next
EAGER = f"""min_workers = 1
max_workers = 4
target_utilization = 0.2
catch_up_seconds = 2
stabilization_seconds = 8
cooldown_seconds = {COOLDOWN}
assumed_worker_rate = 50
"""


def past_first_cooldown(status_url: str) -> bool:
    actions = requests.get(status_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()["actions"]
    return bool(actions) and time.time() - actions[-1]["at"] > COOLDOWN


def containers(group: str) -> list[str]:
    """Worker containers of the stack, in any state (a container just created counts)."""
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=wordpipe.pipeline={group}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def test_autoscaler_sigkilled_mid_scale_up(docker_image, tmp_path, trial, no_leaks):
    """The autoscaler SIGKILLed in the middle of a scale-up (Docker backend)"""
    # A worker group of its own: the default one's containers may be another stack's on this engine.
    group = f"chaos-{uuid.uuid4().hex[:8]}.workers"
    no_leaks.own(PIPELINE, [group])
    documents = corpus(tmp_path, scaled(6, 50))
    trial.input_bytes = sum(d.path.stat().st_size for d in documents)
    trial.expected = count_sources(documents)
    (policy := tmp_path / "policy.toml").write_text(EAGER)
    s = config.Settings(
        backend="docker",
        image=docker_image,
        tokens=TOKEN,
        chunk_size=16 * 1024,
        window_chunks=4,
        autoscale_interval=0.5,
        worker_cpus=0.5,
        ingest_port=free_port(),
        aggregator_port=free_port(),
        autoscaler_port=free_port(),
        worker_group=group,
    )
    stack = Stack(s, tmp_path / "logs", policy=str(policy))
    (tmp_path / "logs").mkdir()
    try:
        stack.start()
        autoscaler = next(svc for svc in stack.services if svc.name == "autoscaler")
        client = Client(stack.urls["ingest"], stack.urls["results"], token=TOKEN)
        # The uploads must find the autoscaler past the cooldown of its first action (starting
        # one worker); a burst that lands inside it is drained before it may act.
        wait_for(lambda: past_first_cooldown(stack.urls["autoscaler"]), 60, "the autoscaler's first cooldown")
        receipts = []
        uploader = threading.Thread(
            target=lambda: receipts.extend(client.ingest(d.path, attempts=20) for d in documents)
        )
        uploader.start()
        peak, killed_at = 0, None
        deadline = time.monotonic() + 300
        while uploader.is_alive() or killed_at is None or time.monotonic() - killed_at < 10:
            assert time.monotonic() < deadline, "no scale-up to interrupt"
            now = containers(group)
            peak = max(peak, len(now))
            if killed_at is None and len(now) > 1:  # the first of the scale-up's containers exists
                victim = autoscaler.proc.pid
                os.kill(victim, signal.SIGKILL)
                killed_at = time.monotonic()
                at_kill = len(now)
            stack.supervise()  # restarts it
            time.sleep(0.1)
        uploader.join()
        assert len(receipts) == len(documents)
        client.wait_counted(600)
        trial.recovered(killed_at)
        trial.counted = Counter(dict(client.totals()))
        assert trial.counted == trial.expected
        log = (tmp_path / "logs" / "autoscaler.log").read_text()
        decided = [line for line in log.splitlines() if f"[{victim}]" in line and "scaling up" in line][-1]
        target = int(decided.rsplit("-> ", 1)[1])
        assert target > at_kill, f"the kill did not land mid-scale-up: {decided}"  # launched fewer than it meant to
        trial.fault(
            f"SIGKILL the autoscaler (pid {victim}) scaling up to {target} workers, with {at_kill} containers launched"
        )
        adopted = [line for line in log.splitlines() if "adopted from the backend" in line]
        assert len(adopted) == 2 and "starts with 0 running" not in adopted[1], adopted
        assert peak <= 4, f"{peak} worker containers: the restarted autoscaler launched duplicates"
        trial.notes.append(
            f"the restarted autoscaler: {adopted[1].split(': ', 1)[-1]}; at most {peak} worker containers "
            "existed at once (the policy's maximum is 4)"
        )
    finally:
        stack.stop()
    assert containers(group) == []  # stopping the stack stopped its workers
