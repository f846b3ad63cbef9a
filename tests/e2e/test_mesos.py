"""The mesos backend end to end, against the master double whose agent runs real containers:
the autoscaler scales workers up and down through the framework with exact counts; a
SIGKILLed framework, restarted within its failover timeout, adopts its running tasks;
`wordpipe run --backend mesos` counts exactly and leaves nothing behind."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from pipeline import config, kafka, tokenize
from pipeline.autoscaler.controller import Controller
from pipeline.autoscaler.policy import Policy
from pipeline.cluster import Resources
from pipeline.kafka.broker import free_port
from pipeline.observe.lag import LagMonitor
from pipeline.reference import count_sources
from pipeline.run import Pipeline
from tests.chinese import USER_WORDS, user_dict_case, user_dict_reference
from tests.e2e.scenario import burst_until_scaled_down, mixed_documents
from tests.helpers import SAMPLE, docker_leftovers, wait_for, wordpipe

pytestmark = [pytest.mark.e2e, pytest.mark.mesos, pytest.mark.docker]

EAGER = Policy(
    min_workers=1,
    max_workers=4,
    target_utilization=0.2,
    catch_up_seconds=2,
    stabilization_seconds=8,
    cooldown_seconds=3,
    assumed_worker_rate=50,
)


def test_the_autoscaler_scales_mesos_tasks_up_and_down_and_counts_stay_exact(mesos_master, docker_image, tmp_path):
    sources = mixed_documents(tmp_path, 3, sample_copies=40, hostile_size=2_000_000)
    expected = count_sources(sources)
    s = config.Settings(
        workers=1,
        chunk_size=16 * 1024,
        window_chunks=8,
        backend="mesos",
        mesos_master=mesos_master.url,
        image=docker_image,
        worker_cpus=0.5,
        worker_mem_mb=200,
    )
    with Pipeline(s) as p:
        monitor = LagMonitor(p.connection, p.settings.topics, p.settings.worker.group, window=4)
        controller = Controller(p.workers, monitor, lambda: EAGER, Resources(0.5, 200), interval=0.5, grace=20)
        try:
            peak, counted_at = burst_until_scaled_down(
                p, controller, sources, lambda: len(mesos_master.active_tasks()), timeout=150
            )
        finally:
            monitor.close()
        assert counted_at is not None, "the burst was never fully counted"
        assert peak > 1, f"never scaled up; last decision: {controller.last_decision}"
        assert len(controller.running()) == EAGER.min_workers, (
            f"never scaled down; last decision: {controller.last_decision}"
        )
        assert len(mesos_master.active_tasks()) == EAGER.min_workers
        assert Counter(p.totals()) == expected
    actions = [d.action for d in controller.actions]
    assert "up" in actions and "down" in actions
    assert mesos_master.calls_of("KILL") and mesos_master.bad_acks == []
    assert not mesos_master.agent.running_containers()  # the one-shot framework tore down


def test_a_sigkilled_framework_restarted_in_time_adopts_its_tasks(mesos_master, docker_image, broker, tmp_path):
    s = config.Settings(bootstrap=broker.bootstrap)
    kafka.ensure_topics(broker.connection(), s.topics)
    policy = tmp_path / "policy.toml"
    policy.write_text("min_workers = 2\ncooldown_seconds = 0\n")
    exe = os.path.join(os.path.dirname(sys.executable), "wordpipe")
    env = {
        **os.environ,
        "WORDPIPE_AUTOSCALE_INTERVAL": "0.5",
        "WORDPIPE_MESOS_STATE_FILE": str(tmp_path / "mesos.json"),
        "WORDPIPE_TOKENS": "ops-token",
        "WORDPIPE_MESOS_FAILOVER_TIMEOUT": "600",
        "WORDPIPE_WORKER_CPUS": "0.5",
        "WORDPIPE_WORKER_MEM_MB": "200",
        "WORDPIPE_SESSION_TIMEOUT_MS": "2000",
        "TMPDIR": str(tmp_path),
    }

    def autoscaler() -> subprocess.Popen:
        args = [
            "autoscale",
            "run",
            "--bootstrap",
            broker.bootstrap,
            "--backend",
            "mesos",
            "--mesos-master",
            mesos_master.url,
            "--image",
            docker_image,
            "--policy",
            str(policy),
            "--port",
            str(free_port("127.0.0.1")),
        ]
        return subprocess.Popen(
            [exe, *args], env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "autoscaler.log", "ab")
        )

    def wait_running(count: int) -> dict:
        return wait_for(
            lambda: list((tasks := mesos_master.active_tasks()).values()) == ["TASK_RUNNING"] * count and tasks,
            what=lambda: (
                f"{count} running tasks: {mesos_master.active_tasks()}\n"
                f"{(tmp_path / 'autoscaler.log').read_text()[-3000:]}"
            ),
        )

    first = autoscaler()
    try:
        before = wait_running(2)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        time.sleep(1.5)  # the master notices the broken stream; the tasks run on (failover timeout 600 s)
        assert mesos_master.active_tasks() == before
        second = autoscaler()
        try:
            wait_for(
                lambda: len(mesos_master.calls_of("SUBSCRIBE")) >= 2,
                timeout=30,
                what="the restarted framework to subscribe",
            )
            time.sleep(5)  # ten controller ticks: time enough to launch duplicates, were it going to
            assert mesos_master.active_tasks() == before
            assert sorted(mesos_master.launched) == sorted(before), "the restarted framework launched new tasks"
            assert len(mesos_master.agent.running_containers()) == 2  # no orphans, no extras
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0
    finally:
        if first.poll() is None:
            first.kill()
    subscribes = mesos_master.calls_of("SUBSCRIBE")
    framework_id = json.loads((tmp_path / "mesos.json").read_text())["framework_id"]
    assert "id" not in subscribes[0]["subscribe"]["framework_info"]
    assert all(s["subscribe"]["framework_info"]["id"]["value"] == framework_id for s in subscribes[1:])
    assert subscribes[0]["subscribe"]["framework_info"]["failover_timeout"] == 600.0
    assert len(mesos_master.frameworks) == 1
    # a clean stop leaves the tasks to the next controller, as it should; the test's master removes them


def test_wordpipe_run_on_mesos_counts_exactly_and_leaves_nothing(mesos_master, docker_image, tmp_path):
    done = wordpipe(
        "run",
        str(SAMPLE),
        "--json",
        "--workers",
        "2",
        "--backend",
        "mesos",
        "--mesos-master",
        mesos_master.url,
        "--image",
        docker_image,
        env={"WORDPIPE_WORKER_CPUS": "0.5", "WORDPIPE_WORKER_MEM_MB": "200"},
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert json.loads(done.stdout) == json.loads(wordpipe("reference", str(SAMPLE), "--json").stdout)
    assert len(mesos_master.launched) == 2 and mesos_master.calls_of("TEARDOWN")
    assert not mesos_master.agent.running_containers() and docker_leftovers() == []


def test_a_user_dictionary_reaches_the_mesos_tasks(mesos_master, docker_image, tmp_path):
    text, dictionary = user_dict_case(tmp_path)  # the file is the framework's: tasks get it in their environment
    expected = user_dict_reference(text, dictionary)  # every USER_WORDS counted, none without the dictionary
    done = wordpipe(
        "run",
        str(text),
        "--json",
        "--workers",
        "2",
        "--chunk-size",
        "16384",
        "--backend",
        "mesos",
        "--mesos-master",
        mesos_master.url,
        "--image",
        docker_image,
        "--tokenizer-user-dict",
        str(dictionary),
        env={"WORDPIPE_WORKER_CPUS": "0.5", "WORDPIPE_WORKER_MEM_MB": "200"},
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    body = json.loads(done.stdout)
    assert body == expected  # a task without the dictionary would have refused every chunk
    assert all(body["counts"][w] > 0 for w in USER_WORDS)
    tasks = [
        info
        for call in mesos_master.calls_of("ACCEPT")
        for op in call["accept"].get("operations", [])
        if op.get("type") == "LAUNCH"
        for info in op["launch"]["task_infos"]
    ]
    assert [
        {v["name"]: v["value"] for v in t["command"]["environment"]["variables"]}["WORDPIPE_TOKENIZER_USER_DICT"]
        for t in tasks
    ] == [tokenize.as_data_uri(str(dictionary))] * 2  # the words themselves, not a path on this host
    assert len(mesos_master.launched) == 2 and mesos_master.calls_of("TEARDOWN")
    assert not mesos_master.agent.running_containers() and docker_leftovers() == []


def test_wordpipe_run_without_a_master_says_so(tmp_path):
    url = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    done = wordpipe("run", str(SAMPLE), "--backend", "mesos", "--mesos-master", url, timeout=120)
    assert done.returncode == 1
    assert f"mesos: not subscribed to {url} within 30 s: cannot reach the master" in done.stderr.decode()
