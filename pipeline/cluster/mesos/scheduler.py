"""A Mesos framework on the v1 scheduler HTTP API (docs/scheduler-http-api.md in apache/mesos).

One thread holds the subscription: it POSTs SUBSCRIBE, reads the RecordIO event stream
and answers events (offers, status updates). Every other call goes on a second
connection with the stream's `Mesos-Stream-Id`. When the stream breaks, or five
heartbeats go missing, the thread resubscribes with the same framework id and an
exponential backoff, following a non-leading master's 307 to the leader.

Tasks are the unit of state: a worker is PENDING until an offer fits it, then takes
whatever state the master reports. The framework id and the launched tasks are written
to a state file, so a restarted framework (within the failover timeout) resubscribes as
the same framework and adopts its tasks: reconciliation tells it their states.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import requests

from pipeline.cluster.mesos import calls
from pipeline.cluster.mesos.calls import GONE_STATES, Framework, WorkerTask
from pipeline.cluster.mesos.recordio import Decoder, RecordIOError

log = logging.getLogger(__name__)

ENDPOINT = "/api/v1/scheduler"
PENDING = "PENDING"  # ours, not a Mesos state: waiting for an offer that fits
MISSED_HEARTBEATS = 5  # the docs' advice: this many missing means a partition
DEFAULT_HEARTBEAT = 15.0  # the master's default, until SUBSCRIBED says otherwise
CONNECT_TIMEOUT = 5.0
CALL_TIMEOUT = 75.0  # the docs' advice for any response
MAX_BACKOFF = 15.0
MAX_REDIRECTS = 5
KILL_SLACK = 15.0  # beyond the grace period, for the agent to report a kill


class Disconnected(Exception):
    """The subscription ended; the message says why. The framework resubscribes."""


@dataclass
class Task:
    id: str
    state: str = PENDING
    agent_id: str | None = None
    message: str = ""
    reason: str = ""
    killed: bool = False  # we asked for it to go: its terminal update ends it quietly


class Scheduler:
    def __init__(
        self,
        masters: list[str],
        framework: Framework,
        worker: WorkerTask,
        state_file: Path | None = None,
        refuse_seconds: float = 30.0,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.masters = [m.rstrip("/") + ENDPOINT for m in masters]
        self.framework = framework
        self.worker = worker
        self.state_file = state_file
        self.refuse_seconds = refuse_seconds
        self.lock = threading.Condition()
        self.tasks: dict[str, Task] = {}
        self.framework_id: str | None = None
        self.stream_id: str | None = None
        self.endpoint = self.masters[0]
        self.connected = False
        self.suppressed: bool | None = None  # unknown until we say
        self.last_error = "not subscribed yet"
        self._unreconciled: set[str] = set()  # adopted tasks whose state the master has yet to report
        self._stop = threading.Event()
        self._stream_socket: socket.socket | None = None
        self._heartbeat = DEFAULT_HEARTBEAT
        self._subscribed_once = False  # this subscription got its SUBSCRIBED
        self._stream_session = self._session(auth)
        self._call_session = self._session(auth)
        self._call_lock = threading.Lock()
        self._load_state()
        self._thread = threading.Thread(target=self._run, name="mesos-subscription", daemon=True)

    # --- the backend's side ---------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """Until subscribed and every task of the state file has been reconciled."""
        with self.lock:
            return self.lock.wait_for(lambda: self.connected and not self._unreconciled, timeout)

    def launch(self, task_ids: list[str]) -> None:
        with self.lock:
            for task_id in task_ids:
                self.tasks[task_id] = Task(task_id)
        self._offers_wanted()

    def kill(self, task_ids: list[str], grace: float) -> None:
        killing = []
        with self.lock:
            for task_id in task_ids:
                task = self.tasks.get(task_id)
                if task is None:
                    continue
                if task.state == PENDING or task.state in GONE_STATES:
                    del self.tasks[task_id]  # never launched, or already gone: forget it
                else:
                    task.killed = True
                    killing.append(task)
            self._save_state()
        for task in killing:
            self._kill(task, grace)
        with self.lock:
            done = self.lock.wait_for(lambda: not any(t.id in self.tasks for t in killing), grace + KILL_SLACK)
        if not done:
            left = [t.id for t in killing if t.id in self.tasks]
            log.warning(
                "mesos: no terminal update for %s within %.0f s of KILL; still tracking them", left, grace + KILL_SLACK
            )
        self._offers_wanted()

    def snapshot(self) -> list[Task]:
        with self.lock:
            return [Task(**vars(t)) for t in self.tasks.values()]

    def close(self, teardown: bool = False) -> None:
        """Stop the subscription. `teardown`: also end the framework, and with it every task."""
        self._stop.set()
        if teardown and self.connected and self.framework_id:
            self._call(calls.teardown(self.framework_id))
            with self.lock:
                self.tasks.clear()
            if self.state_file is not None:
                self.state_file.unlink(missing_ok=True)
        self._drop_stream()
        self._thread.join(timeout=10)
        self._stream_session.close()
        self._call_session.close()

    # --- the subscription ---------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.5
        redirects = 0
        while not self._stop.is_set():
            try:
                self._subscribe()
                raise Disconnected("the master closed the event stream")
            except _Redirect as redirect:
                redirects += 1
                if redirects <= MAX_REDIRECTS:
                    log.info(
                        "mesos: %s is not the leading master; following the redirect to %s",
                        self.endpoint,
                        redirect.location,
                    )
                    self.endpoint = redirect.location
                    continue
                self._note(f"more than {MAX_REDIRECTS} redirects in a row; last to {redirect.location}")
                self.endpoint = self._next_master()
            except (Disconnected, RecordIOError) as exc:
                self._note(str(exc))
            except requests.RequestException as exc:
                self._note(f"cannot reach the master at {self.endpoint}: {exc}")
                self.endpoint = self._next_master()
            except (ValueError, KeyError, TypeError) as exc:  # JSON that is not an Event: never end the thread
                self._note(f"a malformed event from the master ({exc!r}); resubscribing")
            redirects = 0
            if self._stop.is_set():
                break
            if self._subscribed_once:
                backoff = 0.5  # a working subscription broke: come back fast
            self._set_connected(False)
            delay = backoff * random.uniform(0.5, 1.0)
            backoff = min(MAX_BACKOFF, backoff * 2)
            log.info("mesos: resubscribing in %.1f s", delay)
            self._stop.wait(delay)

    def _subscribe(self) -> None:
        with self.lock:
            body = calls.subscribe(self.framework, self.framework_id, suppressed=not self._pending())
        self._subscribed_once = False
        response = self._stream_session.post(
            self.endpoint,
            json=body,
            headers={"Accept": "application/json"},
            stream=True,
            allow_redirects=False,
            timeout=(CONNECT_TIMEOUT, MISSED_HEARTBEATS * self._heartbeat),
        )
        with response:
            if response.status_code == 307:
                raise _Redirect(urljoin(self.endpoint, response.headers.get("Location", "")))
            if response.status_code != 200:
                raise Disconnected(f"SUBSCRIBE to {self.endpoint} refused: {_describe(response)}")
            self.stream_id = response.headers.get("Mesos-Stream-Id")
            self._stream_socket = _socket_of(response)
            decoder = Decoder()
            try:
                for data in response.iter_content(chunk_size=None):  # whatever arrived, as it arrives
                    for record in decoder.feed(data):
                        self._handle(json.loads(record))
                    if self._stop.is_set():
                        return
            except requests.ConnectionError as exc:
                if self._stop.is_set():
                    return
                if "timed out" in str(exc):
                    raise Disconnected(
                        f"no event from the master in {MISSED_HEARTBEATS} heartbeat intervals "
                        f"({MISSED_HEARTBEATS * self._heartbeat:.0f} s)"
                    ) from None
                raise Disconnected(f"the event stream broke: {exc}") from None
            finally:
                self._stream_socket = None
            if not decoder.between_records:
                raise Disconnected("the event stream ended in the middle of a record")

    def _handle(self, event: dict) -> None:
        kind = event.get("type")
        if not self._subscribed_once and kind not in ("SUBSCRIBED", "ERROR"):
            raise Disconnected(f"the first event was {kind}, not SUBSCRIBED")
        if kind == "SUBSCRIBED":
            self._subscribed_once = True
            self._on_subscribed(event["subscribed"])
        elif kind == "OFFERS":
            for offer in event["offers"].get("offers", []):
                self._on_offer(offer)
        elif kind == "UPDATE":
            self._on_update(event["update"]["status"])
        elif kind == "ERROR":
            # e.g. an invalid FrameworkInfo, a framework removed after its failover timeout,
            # or another instance that subscribed with our id.
            message = event.get("error", {}).get("message", "")
            if "removed" in message or "completed" in message:
                log.error(
                    "mesos: framework %s is gone (%s); its tasks with it. Subscribing anew", self.framework_id, message
                )
                with self.lock:
                    self.framework_id = None
                    self.tasks = {k: t for k, t in self.tasks.items() if t.state == PENDING}  # still wanted
                    self._unreconciled.clear()
                    self._save_state()
            raise Disconnected(f"the master sent ERROR: {message}")
        elif kind == "FAILURE":
            failure = event.get("failure", {})
            log.warning(
                "mesos: failure reported: agent %s, executor %s, status %s",
                failure.get("agent_id", {}).get("value"),
                failure.get("executor_id", {}).get("value"),
                failure.get("status"),
            )
        elif kind == "RESCIND":
            log.debug("mesos: offer %s rescinded", event["rescind"]["offer_id"]["value"])
        # HEARTBEAT: its arrival is the point (the read timeout restarts). Others: nothing to do.

    def _on_subscribed(self, subscribed: dict) -> None:
        self._heartbeat = float(subscribed.get("heartbeat_interval_seconds") or DEFAULT_HEARTBEAT)
        if self._stream_socket is not None:
            self._stream_socket.settimeout(MISSED_HEARTBEATS * self._heartbeat)
        with self.lock:
            self.framework_id = subscribed["framework_id"]["value"]
            self._save_state()
            launched = {t.id: t.agent_id for t in self.tasks.values() if t.state != PENDING}
            self._unreconciled = set(launched)
            killing = [t for t in self.tasks.values() if t.killed]
            self.suppressed = not self._pending()
        log.info(
            "mesos: subscribed to %s as framework %s (heartbeat %.1f s); reconciling %d task(s)",
            self.endpoint,
            self.framework_id,
            self._heartbeat,
            len(launched),
        )
        self._call(calls.reconcile(self.framework_id, {}))  # every task the master knows: adopts ones we lost track of
        if launched:
            self._call(calls.reconcile(self.framework_id, launched))  # and ours it may not know
        for task in killing:  # kills asked for while we were away
            self._call(calls.kill(self.framework_id, task.id, task.agent_id, grace=10.0))
        self._set_connected(True)
        self._offers_wanted(force=True)

    def _on_offer(self, offer: dict) -> None:
        assert self.framework_id is not None  # events come only after this stream's SUBSCRIBED
        with self.lock:
            launching = [t for t in self.tasks.values() if t.state == PENDING][: calls.fits(offer, self.worker)]
            for task in launching:
                task.state, task.agent_id = "TASK_STAGING", offer["agent_id"]["value"]
            self._save_state()  # before ACCEPT: a framework that dies now still knows to reconcile them
        if not launching:
            self._call(calls.decline(self.framework_id, [calls.offer_id(offer)], self.refuse_seconds))
            return
        tasks = [calls.task_info(t.id, offer, self.worker) for t in launching]
        log.info("mesos: launching %s on %s", ", ".join(t.id for t in launching), offer.get("hostname"))
        # Only a 400 says the master refused these tasks. Any other failure leaves it unknown
        # whether it launched them: they stay STAGING until the resubscription reconciles them.
        if self._call(calls.accept(self.framework_id, calls.offer_id(offer), tasks, self.refuse_seconds)) == 400:
            with self.lock:
                for task in launching:
                    if task.state == "TASK_STAGING":
                        task.state, task.message = (
                            "TASK_ERROR",
                            "the master rejected the ACCEPT as malformed (see the log)",
                        )
                self.lock.notify_all()
        self._offers_wanted()

    def _on_update(self, status: dict) -> None:
        assert self.framework_id is not None  # events come only after this stream's SUBSCRIBED
        task_id, state = status["task_id"]["value"], status["state"]
        agent_id = status.get("agent_id", {}).get("value")
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None and state not in GONE_STATES:
                log.info("mesos: adopting task %s (%s) that the master reports", task_id, state)
                task = self.tasks[task_id] = Task(task_id)
            if task is not None:
                task.state, task.message, task.reason = state, status.get("message", ""), status.get("reason", "")
                task.agent_id = agent_id or task.agent_id
                if state in GONE_STATES and task.killed:
                    del self.tasks[task_id]  # a kill we asked for is done
                elif state in GONE_STATES:
                    log.warning("mesos: task %s %s: %s", task_id, state, task.message or task.reason)
                self._save_state()
            self._unreconciled.discard(task_id)
            self.lock.notify_all()
        ack = calls.acknowledge(self.framework_id, status)
        if ack is not None:
            self._call(ack)

    # --- calls --------------------------------------------------------------------------

    def _call(self, body: dict) -> int | None:
        """Send a call on the call connection; the HTTP status (202: accepted), None when unreachable.

        Every failure but a 400 leaves the call's fate unknown, so it ends the subscription:
        the next SUBSCRIBED reconciles."""
        kind = body["type"]
        try:
            with self._call_lock:
                response = self._call_session.post(
                    self.endpoint,
                    json=body,
                    headers={"Mesos-Stream-Id": self.stream_id or ""},
                    allow_redirects=False,
                    timeout=(CONNECT_TIMEOUT, CALL_TIMEOUT),
                )
        except requests.RequestException as exc:
            log.warning("mesos: %s failed: cannot reach %s (%s); resubscribing", kind, self.endpoint, exc)
            self._drop_stream()
            return None
        if response.status_code == 400:
            log.error("mesos: the master rejected %s as malformed: %s", kind, _describe(response))
        elif response.status_code in (307, 403, 503):
            # 307: the master lost its leadership; 403: it no longer counts us as subscribed;
            # 503: it cannot serve us now. Each calls for a fresh subscription.
            log.warning("mesos: %s refused: %s; resubscribing", kind, _describe(response))
            self._drop_stream()
        elif response.status_code != 202:
            log.error("mesos: %s failed: %s; resubscribing", kind, _describe(response))
            self._drop_stream()
        return response.status_code

    def _kill(self, task: Task, grace: float) -> None:
        framework_id = self.framework_id
        if self.connected and framework_id is not None:  # else: _on_subscribed sends it
            self._call(calls.kill(framework_id, task.id, task.agent_id, grace))

    def _offers_wanted(self, force: bool = False) -> None:
        """REVIVE when a worker waits for an offer, SUPPRESS when none does."""
        if not self.connected:
            return  # SUBSCRIBE says it (suppressed_roles) and _on_subscribed repeats it
        with self.lock:
            want = self._pending()
            if not force and self.suppressed is (not want):
                return
            self.suppressed = not want
        call = calls.revive if want else calls.suppress
        framework_id = self.framework_id
        if framework_id is None:
            return  # an ERROR just ended the framework: the next SUBSCRIBED revives or suppresses
        self._call(call(framework_id, self.framework.role))

    def _pending(self) -> bool:
        return any(t.state == PENDING for t in self.tasks.values())

    # --- connection state -----------------------------------------------------------------

    def _set_connected(self, connected: bool) -> None:
        with self.lock:
            self.connected = connected
            if connected:
                self.last_error = ""
            self.lock.notify_all()

    def _note(self, error: str) -> None:
        if not self._stop.is_set():
            log.warning("mesos: %s", error)
            self.last_error = error

    def _drop_stream(self) -> None:
        """End the subscription from any thread: the blocked read returns and the loop resubscribes."""
        sock = self._stream_socket
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _next_master(self) -> str:
        current = self.endpoint if self.endpoint in self.masters else self.masters[-1]
        return self.masters[(self.masters.index(current) + 1) % len(self.masters)]

    def _session(self, auth: tuple[str, str] | None) -> requests.Session:
        session = requests.Session()
        session.auth = auth
        return session

    # --- the state file -------------------------------------------------------------------

    def _load_state(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        try:
            state = json.loads(self.state_file.read_text())
            self.framework_id = state.get("framework_id")
            for task_id, agent_id in state.get("tasks", {}).items():
                self.tasks[task_id] = Task(task_id, state="TASK_STAGING", agent_id=agent_id)
        except (OSError, ValueError, AttributeError) as exc:
            raise ValueError(
                f"mesos state file {self.state_file} is unreadable ({exc}); remove it to start a new framework"
            ) from None
        log.info(
            "mesos: resuming framework %s with %d task(s) from %s", self.framework_id, len(self.tasks), self.state_file
        )

    def _save_state(self) -> None:
        if self.state_file is None:
            return
        launched = {t.id: t.agent_id for t in self.tasks.values() if t.state != PENDING and t.state not in GONE_STATES}
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_name(self.state_file.name + ".tmp")
        partial.write_text(json.dumps({"framework_id": self.framework_id, "tasks": launched}, indent=1))
        os.replace(partial, self.state_file)  # atomic: a crash leaves the old state or the new


class _Redirect(Exception):
    def __init__(self, location: str) -> None:
        self.location = location


def _describe(response: requests.Response) -> str:
    text = response.text.strip()[:500]
    return f"{response.status_code} {response.reason}" + (f": {text}" if text else "")


def exit_code(task: Task) -> int | None:
    """The container's exit status where the executor's message gives it ("exited with status 1");
    negative for death by a signal, as the other backends report it (Docker says 128 + N)."""
    found = re.search(r"exited with status (\d+)", task.message)
    if not found:
        return None
    code = int(found.group(1))
    return -(code - 128) if code > 128 else code


def _socket_of(response: requests.Response) -> socket.socket | None:
    """The stream's socket, to set its read timeout once the heartbeat is known and to
    shut it down from another thread (urllib3 2 exposes the connection of a streamed response)."""
    connection = getattr(response.raw, "connection", None) or getattr(response.raw, "_connection", None)
    return getattr(connection, "sock", None)
