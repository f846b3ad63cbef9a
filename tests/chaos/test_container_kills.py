"""Worker containers killed while text flows: `docker kill` on the Docker backend, and
tasks failing under the Mesos double (whose agent runs them as containers). The backend
reports each dead worker, a replacement is launched, and the counts stay exact."""

import random
import subprocess

import pytest

from pipeline import config
from pipeline.run import Pipeline
from tests.chaos.helpers import corpus, kill_while_working, scaled
from tests.e2e.scenario import no_process_left
from tests.leaks import PIPELINE, labelled_containers

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.docker]
PAUSE = scaled((1.0, 2.0), (1.5, 3.0))  # seconds between kills: a container takes a few to start


def test_docker_kill_worker_containers(docker_image, tmp_path, trial):
    """`docker kill` of worker containers every few seconds (Docker backend)"""

    def docker_kill(p: Pipeline, rng: random.Random) -> str | None:
        live = [w for w in p.workers.list() if w.state == "running"]
        if not live:
            return None
        name = f"wordpipe-{p.run_id}-{rng.choice(live).id}"
        subprocess.run(["docker", "kill", name], check=True, capture_output=True)
        return f"docker kill {name}"

    s = config.Settings(
        backend="docker", image=docker_image, workers=2, chunk_size=16 * 1024, window_chunks=4, flush_interval=0.2
    )
    with Pipeline(s) as p:
        pids = [p.broker.proc.pid, p.aggregator.pid]
        kill_while_working(p, corpus(tmp_path, scaled(12, 50)), trial, docker_kill, PAUSE, scaled(2, 5))
    assert labelled_containers(f"{PIPELINE}={p.run_id}") == {}  # its workers stopped with it
    no_process_left(pids)


@pytest.mark.mesos
def test_mesos_tasks_fail_under_the_double(mesos_master, docker_image, tmp_path, trial):
    """Worker tasks failing every few seconds (Mesos double, Docker containerizer)"""

    def fail_task(p: Pipeline, rng: random.Random) -> str | None:
        running = [t for t, state in mesos_master.active_tasks().items() if state == "TASK_RUNNING"]
        if not running:
            return None
        task = rng.choice(running)
        return f"task {task} SIGKILLed on the agent (TASK_FAILED)" if mesos_master.agent.crash(task) else None

    s = config.Settings(
        backend="mesos",
        mesos_master=mesos_master.url,
        image=docker_image,
        worker_cpus=0.5,
        worker_mem_mb=200,
        workers=2,
        chunk_size=16 * 1024,
        window_chunks=4,
        flush_interval=0.2,
    )
    with Pipeline(s) as p:
        # 12 MB at the least: the survivor takes a failed task's inputs within seconds, and
        # counts 6 MB before a second failure is due.
        kill_while_working(p, corpus(tmp_path, scaled(12, 50)), trial, fail_task, PAUSE, scaled(2, 5))
    failed = [u for u in mesos_master.agent_updates if u["state"] == "TASK_FAILED"]
    assert len(failed) >= len(trial.faults)
    trial.notes.append(
        f"{len(failed)} TASK_FAILED updates, each answered by a new LAUNCH; "
        f"{len(mesos_master.launched)} tasks launched in all"
    )
