"""Workers and the aggregator SIGKILLed while text flows (local processes); the counts
stay exact. Also each process killed at its worst instant (pipeline/faults.py)."""

import os
import random
import signal
import time
from collections import Counter

import pytest
import requests
from requests.utils import quote

from pipeline import config
from pipeline.client import Client
from pipeline.reference import count_sources
from pipeline.run import Pipeline
from tests.chaos.helpers import ReplayedWords, corpus, kill_while_working, scaled
from tests.e2e.scenario import (
    mixed_documents,
    no_process_left,
    read_totals_topic,
    trickle,
)

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


def settings(**overrides) -> config.Settings:
    # Small chunks and windows: many windows, commits and flushes to land a kill between.
    return config.Settings(workers=2, chunk_size=16 * 1024, window_chunks=4, flush_interval=0.2, **overrides)


def stats(pipeline: Pipeline) -> dict:
    return pipeline.http.get(pipeline.results_url + "/v1/stats", timeout=5).json()


def test_workers_sigkilled_every_few_seconds(tmp_path, trial):
    """Workers SIGKILLed every few seconds while text flows (local processes)"""
    killed = []

    def sigkill_worker(p: Pipeline, rng: random.Random) -> str | None:
        live = [w for w in p.workers.list() if w.state == "running"]
        if not live:
            return None
        victim = rng.choice(live)
        killed.append(pid := p.workers.pid(victim.id))
        os.kill(pid, signal.SIGKILL)
        return f"SIGKILL worker {victim.id} (pid {pid})"

    with Pipeline(settings()) as p:
        pids = [p.broker.proc.pid, p.aggregator.pid]
        # A kill every 0.5-2 s in the long suite: its 60 MB are counted in ~25 s, and one every
        # 1-3 s landed 14-21 times (15 were asked for).
        kill_while_working(
            p, corpus(tmp_path, scaled(6, 60)), trial, sigkill_worker, scaled((0.5, 1.5), (0.5, 2.0)), scaled(3, 15)
        )
        # Replays come only from a kill between a window's publication and its commit (a new
        # worker now takes its partitions before it starts, when their owner has let go of
        # them): random kills rarely land there, the worst-instant test below does every time.
        replayed = stats(p)["words_replayed"]
        trial.notes.append(f"{replayed} words were replayed and ignored as already counted")
        pids += killed + [p.workers.pid(w.id) for w in p.workers.list()]
    no_process_left(pids)


def test_workers_sigkilled_while_partitions_change_hands(tmp_path, trial):
    """Workers SIGKILLed mid-handover at scale-ups (the newcomer or an old owner), then scaled down

    At each event a worker is launched and its inputs move to it at once; 0.05-0.6 s later
    the newcomer (taking over) or an old owner (handing over) is SIGKILLed, and a graceful
    stop brings the count back."""
    killed = []

    def scale_and_kill(p: Pipeline, rng: random.Random) -> str | None:
        before = [w.id for w in p.workers.list() if w.state == "running"]
        if not before:
            return None
        [newcomer] = p.launch_workers(1)  # its inputs move to it at once (the assigner is told)
        time.sleep(rng.uniform(0.05, 0.6))  # mid-handover: taking over, letting go
        taking_over = rng.random() < 0.5
        victim = newcomer if taking_over else rng.choice(before)
        killed.append(pid := p.workers.pid(victim))
        os.kill(pid, signal.SIGKILL)
        role = "the newcomer, taking over" if taking_over else "an old owner, handing over"
        survivors = [w.id for w in p.workers.list() if w.state == "running" and w.id != victim]
        if len(survivors) > 2:  # scale back down, gracefully: its inputs handed over as it drains
            p.workers.kill([rng.choice(survivors)], grace=20)
        return f"scale-up, then SIGKILL {role} {victim} (pid {pid})"

    with Pipeline(settings()) as p:
        pids = [p.broker.proc.pid, p.aggregator.pid]
        kill_while_working(
            p, corpus(tmp_path, scaled(6, 100)), trial, scale_and_kill, scaled((0.5, 1.5), (0.5, 2.0)), scaled(3, 15)
        )
        pids += killed + [p.workers.pid(w.id) for w in p.workers.list()]
    no_process_left(pids)


def test_aggregator_sigkilled_twice(tmp_path, trial):
    """The aggregator SIGKILLed twice while text flows"""
    documents = corpus(tmp_path, scaled(6, 30))
    trial.input_bytes = sum(d.path.stat().st_size for d in documents)
    trial.expected = count_sources(documents)
    with Pipeline(settings(totals_interval=0.5)) as p:  # the totals topic too (off by default when embedded)
        pids = [p.broker.proc.pid]
        thread, result = trickle(p, documents, pause=1.0)
        replayed = ReplayedWords(p)
        for delay in (2.0, 6.0):  # the second once the first replacement has taken over and applied parts
            time.sleep(delay)
            replayed.before_kill()
            pids.append(victim := p.aggregator.pid)
            os.kill(victim, signal.SIGKILL)
            last_fault = time.monotonic()
            trial.fault(f"SIGKILL aggregator (pid {victim})")
            while p.progress() is None:  # restarted and serving again
                p.supervise()
                time.sleep(0.1)
        thread.join()
        p.wait_counted(result["sent"], timeout=600)
        trial.recovered(last_fault)
        trial.counted = Counter(p.totals())
        assert trial.counted == trial.expected
        assert p.restarts["aggregator"] == 2
        # What the killed instances published lags their durable state; the last one's must not.
        totals = dict(trial.counted)
        published = read_totals_topic(
            p.connection, p.settings.topics.totals, p.settings.topics.partial_partitions, totals
        )
        assert published == totals, "the totals topic disagrees with the totals"
        # The faust windowed table, a word at a time (one that fits in a URL: hostile text has longer ones).
        for word in random.Random(7).sample(sorted(w for w in totals if len(w) < 200), 300):
            reply = p.http.get(f"{p.results_url}/v1/windows/{quote(word, safe='')}", timeout=5)
            windows = reply.json()["windows"]
            assert sum(w["count"] for w in windows) == totals[word], f"the windowed mirror of {word!r}"
        trial.notes.append(f"{replayed.total()} words were replayed and ignored as already counted")
        assert replayed.total() > 0, "no word was replayed, so none was deduplicated"
        pids.append(p.aggregator.pid)
    no_process_left(pids)


def answers_again(p: Pipeline, url: str, since: float, timeout: float = 120.0) -> float:
    """Seconds from `since` until the instance at `url` answers for every shard again."""
    deadline = time.monotonic() + timeout
    last = "no reply"
    while time.monotonic() < deadline:
        p.supervise()  # relaunches the killed instance
        try:
            reply = p.http.get(f"{url}/v1/top", params={"k": 1}, timeout=5)
            if reply.status_code == 200:
                return time.monotonic() - since
            last = f"{reply.status_code} {reply.text[:300]}"
        except requests.RequestException as exc:
            last = f"{exc}"  # killed, or starting again
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer for every shard within {timeout:.0f} s; its last reply: {last}")


def test_one_of_two_aggregators_sigkilled_then_the_other(tmp_path, trial):
    """One of two aggregators SIGKILLed while text flows, then the other"""
    documents = corpus(tmp_path, scaled(6, 30))
    trial.input_bytes = sum(d.path.stat().st_size for d in documents)
    trial.expected = count_sources(documents)
    with Pipeline(settings(aggregators=2)) as p:
        urls = [f"http://127.0.0.1:{port}" for _, port in p.instances]
        pids = [p.broker.proc.pid]
        thread, result = trickle(p, documents, pause=1.0)
        for victim_index, delay in ((0, 2.0), (1, 6.0)):
            time.sleep(delay)
            pids.append(victim := p.aggregators[victim_index].pid)
            os.kill(victim, signal.SIGKILL)
            last_fault = time.monotonic()
            trial.fault(f"SIGKILL {p.instances[victim_index][0]} (pid {victim}), one of 2 instances")
            again = [answers_again(p, url, last_fault) for url in urls]
            trial.notes.append(
                f"after the kill of {p.instances[victim_index][0]}, each instance answered for every shard again "
                f"{again[0]:.1f} s and {again[1]:.1f} s after it"
            )
        thread.join()
        p.wait_counted(result["sent"], timeout=600)
        trial.recovered(last_fault)
        trial.counted = Counter(p.totals())
        assert trial.counted == trial.expected
        assert p.restarts["aggregator"] == 1 and p.restarts["aggregator-2"] == 1
        for url in urls:  # either instance: the same exact answers
            client = Client(results_url=url, token=p.settings.service.token_list[0])
            assert Counter(dict(client.totals())) == trial.expected
        pids += [proc.pid for proc in p.aggregators if proc is not None]
    no_process_left(pids)


@pytest.mark.parametrize(
    "fault, restarted, replays",
    [
        ("worker.before_commit=2", "workers", True),  # partials published, offsets not committed
        # 8 generations start with the shards: the 12th checkpoint, and the first rotation after
        # them, come while shards hold words.
        ("aggregator.mid_checkpoint=12", "aggregator", False),  # a new generation without a whole checkpoint
        ("aggregator.after_rotation=1", "aggregator", False),  # the new generation whole, the old one still there
        ("aggregator.before_ack=2", "aggregator", True),  # everything durable, partials not acked
    ],
)
def test_crash_at_the_worst_instant(tmp_path, fault, restarted, replays, monkeypatch, trial):
    """A process dies at its worst instant (fault point)"""
    trial.title = f"{restarted.rstrip('s').capitalize()} dies at `{fault.split('=')[0]}`"
    documents = mixed_documents(tmp_path, 3, sample_copies=15, hostile_size=600_000)
    trial.input_bytes = sum(d.path.stat().st_size for d in documents)
    trial.expected = count_sources(documents)
    monkeypatch.setenv("WORDPIPE_FAULTS", fault)
    # Checkpoints every 64 KiB of deltas: generations come and go while the text is counted.
    p = Pipeline(settings(checkpoint_min_bytes=64 << 10)).start()  # the first processes get the fault
    monkeypatch.delenv("WORDPIPE_FAULTS")
    with p:
        p.workers.env.pop("WORDPIPE_FAULTS")  # replacements run clean
        p.supervisor.children["aggregator"].env.pop("WORDPIPE_FAULTS")
        # Pauses of 5 flush intervals, so that a loaded aggregator still flushes twice (the fault).
        thread, result = trickle(p, documents, pause=1.0)
        thread.join()
        p.wait_counted(result["sent"], timeout=240)
        trial.counted = Counter(p.totals())
        trial.fault(
            f"{fault}: every first {restarted.rstrip('s')} exits 137 on pass {fault.split('=')[1]} of that point"
        )
        assert trial.counted == trial.expected
        assert p.restarts[restarted] >= 1, "the fault never fired"
        replayed = stats(p)["words_replayed"]
        if replays:
            assert replayed > 0, "no word was replayed, so none was deduplicated"
        trial.notes.append(f"{p.restarts[restarted]} restart(s); {replayed} words replayed and ignored as counted")
