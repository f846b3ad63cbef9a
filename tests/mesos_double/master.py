"""A Mesos master double, faithful to the v1 scheduler HTTP API as apache/mesos implements it
(src/master/http.cpp `Master::Http::scheduler`, src/master/master.cpp), for one agent whose
tasks are real containers (agent.py).

What it does as the real master does:
- POST /api/v1/scheduler only; 400 without Content-Type, 415 for one other than JSON,
  400 for a body that is not a Call (schema.py, strict), 406 when a SUBSCRIBE does not
  accept JSON; 503 before "recovery"; 307 to the leader, with a protocol-relative Location,
  when it is not the leader; 401 with credentials configured and missing or wrong.
- SUBSCRIBE: 400 with a Mesos-Stream-Id header; else 200, `Content-Type: application/json`,
  a new `Mesos-Stream-Id`, and a chunked RecordIO stream: SUBSCRIBED, then HEARTBEATs every
  `heartbeat_interval` and the framework's events. An ERROR first, instead, for a framework
  id that was removed. A second subscription of the same framework replaces the first.
- Other calls: 400 "Framework cannot be found", 403 when not subscribed, 400 without or with
  a wrong Mesos-Stream-Id, else 202; their effects arrive later as events.
- Offers: the agent's unused resources, to frameworks not suppressed and not filtered
  (DECLINE and ACCEPT filter for `refuse_seconds`; REVIVE clears). Invalid tasks get
  TASK_ERROR, tasks on a stale offer TASK_DROPPED: updates from the master, without uuid.
- Status updates from the agent carry a uuid and are retried until acknowledged, one at a
  time per task: the next waits for the ACKNOWLEDGE of the one before.
- RECONCILE answers per the master's rules (latest state; TASK_GONE on a known agent,
  TASK_UNKNOWN otherwise; implicit: every task the master knows).
- A disconnected framework's tasks are killed once its failover_timeout passes.

Tests steer it: `leader` (307 mode), `recovered`, `fail_next`, `mute` (stop every event, heartbeats
included: a partition), `split` (cut the stream into random HTTP chunks), and read
`calls` (every call body received), `agent_updates`, `bad_acks`, `launched`, `frameworks`.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.mesos_double.agent import DockerAgent
from tests.mesos_double.schema import CallError, parse_call

TERMINAL = {
    "TASK_FINISHED",
    "TASK_FAILED",
    "TASK_KILLED",
    "TASK_LOST",
    "TASK_ERROR",
    "TASK_DROPPED",
    "TASK_GONE",
    "TASK_GONE_BY_OPERATOR",
}


@dataclass
class Task:
    id: str
    agent_id: str
    info: dict
    state: str = "TASK_STAGING"
    resources: tuple[float, float] = (0.0, 0.0)
    updates: list[dict] = field(default_factory=list)  # unacknowledged, oldest first; the head is in flight
    sent_at: float = 0.0


@dataclass
class Subscription:
    stream_id: str
    events: list[bytes] = field(default_factory=list)
    closed: bool = False


@dataclass
class Framework:
    id: str
    info: dict
    subscription: Subscription | None = None
    suppressed: bool = False
    filtered_until: float = 0.0
    offers: dict[str, tuple[float, float]] = field(default_factory=dict)  # outstanding: id -> (cpus, mem)
    tasks: dict[str, Task] = field(default_factory=dict)
    disconnected_at: float | None = None

    @property
    def partition_aware(self) -> bool:
        return any(c.get("type") == "PARTITION_AWARE" for c in self.info.get("capabilities", []))


class MasterDouble:
    def __init__(
        self,
        agent: DockerAgent | None = None,
        heartbeat_interval: float = 15.0,
        update_retry: float = 10.0,
        credentials: tuple[str, str] | None = None,
        port: int = 0,
    ) -> None:
        self.id = f"master-{uuid.uuid4().hex[:6]}"
        self.agent = agent
        self.heartbeat_interval = heartbeat_interval
        self.update_retry = update_retry
        self.credentials = credentials
        self.leader: str | None = None  # "host:port" of the leading master; set: this one redirects
        self.recovered = True
        self.mute = False
        self.split = False
        self.fail_next: tuple[str, int, str] | None = None  # (call type, status, body): the next such call gets it
        self.lock = threading.RLock()
        self.wakeup = threading.Condition(self.lock)
        self.frameworks: dict[str, Framework] = {}
        self.removed: set[str] = set()
        self.calls: list[dict] = []  # every call body, as parsed JSON, in arrival order
        self.bad_acks: list[dict] = []  # ACKNOWLEDGEs of updates that were not awaiting one
        self.launched: list[str] = []  # task ids, in launch order
        self.agent_updates: list[dict] = []  # every status the agent reported, in order
        self._ids = itertools.count()
        self._stopped = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._threads = [
            threading.Thread(target=self.server.serve_forever, daemon=True),
            threading.Thread(target=self._tick, daemon=True),
        ]

    def __enter__(self) -> MasterDouble:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stopped.set()
        with self.lock:
            for fw in self.frameworks.values():
                if fw.subscription:
                    fw.subscription.closed = True
            self.wakeup.notify_all()
        self.server.shutdown()
        self.server.server_close()
        if self.agent:
            self.agent.destroy_all()

    # --- queries for tests ----------------------------------------------------------------

    def calls_of(self, kind: str) -> list[dict]:
        with self.lock:
            return [c for c in self.calls if c.get("type") == kind]

    def active_tasks(self) -> dict[str, str]:
        with self.lock:
            return {
                t.id: t.state for fw in self.frameworks.values() for t in fw.tasks.values() if t.state not in TERMINAL
            }

    def disconnect(self, framework_id: str) -> None:
        """Close the framework's event stream, as a master does when the connection breaks."""
        with self.lock:
            sub = self.frameworks[framework_id].subscription
            if sub:
                sub.closed = True
            self.wakeup.notify_all()

    # --- HTTP -----------------------------------------------------------------------------

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length", 0)))
        if self.leader:
            return _reply(request, 307, "", {"Location": f"//{self.leader}{request.path}"})
        if not self.recovered:
            return _reply(request, 503, "Master has not finished recovery")
        if request.path not in ("/api/v1/scheduler", "/master/api/v1/scheduler"):
            return _reply(request, 404, "")
        if request.command != "POST":
            return _reply(request, 405, "", {"Allow": "POST"})
        if self.credentials and request.headers.get("Authorization") != _basic(*self.credentials):
            return _reply(request, 401, "", {"WWW-Authenticate": 'Basic realm="mesos"'})
        content_type = request.headers.get("Content-Type")
        if content_type is None:
            return _reply(request, 400, "Expecting 'Content-Type' to be present")
        if content_type != "application/json":
            return _reply(request, 415, "Expecting 'Content-Type' of application/json or application/x-protobuf")
        try:
            value = json.loads(body)
        except ValueError as exc:
            return _reply(request, 400, f"Failed to parse body into JSON: {exc}")
        try:
            call = parse_call(value)
        except CallError as exc:
            return _reply(request, 400, f"Failed to convert JSON into Call protobuf: {exc}")
        with self.lock:
            self.calls.append(call)
        if call["type"] == "SUBSCRIBE":
            accept = request.headers.get("Accept", "*/*")
            if "application/json" not in accept and "*/*" not in accept:
                return _reply(
                    request, 406, "Expecting 'Accept' to allow 'application/x-protobuf' or 'application/json'"
                )
            if "Mesos-Stream-Id" in request.headers:
                return _reply(request, 400, "Subscribe calls should not include the 'Mesos-Stream-Id' header")
            return self._subscribe(request, call["subscribe"])
        if self.fail_next is not None and self.fail_next[0] == call["type"]:
            (_, status, text), self.fail_next = self.fail_next, None
            return _reply(request, status, text)
        with self.lock:
            fw = self.frameworks.get(call["framework_id"]["value"])
            if fw is None:
                return _reply(request, 400, "Framework cannot be found")
            if fw.subscription is None or fw.subscription.closed:
                return _reply(request, 403, "Framework is not subscribed")
            stream_id = request.headers.get("Mesos-Stream-Id")
            if stream_id is None:
                return _reply(request, 400, "All non-subscribe calls should include the 'Mesos-Stream-Id' header")
            if stream_id != fw.subscription.stream_id:
                return _reply(
                    request,
                    400,
                    f"The stream ID '{stream_id}' included in this request didn't match the stream ID "
                    f"currently associated with framework ID {fw.id}",
                )
            _reply(request, 202, "")
            getattr(self, f"_on_{call['type'].lower()}", lambda fw, call: None)(fw, call)
            self.wakeup.notify_all()

    def _subscribe(self, request: BaseHTTPRequestHandler, subscribe: dict) -> None:
        info = subscribe["framework_info"]
        sub = Subscription(str(uuid.uuid4()))
        with self.lock:
            framework_id = info.get("id", {}).get("value")
            if framework_id in self.removed:
                sub.events.append(_event("ERROR", error={"message": "Framework has been removed"}))
                sub.closed = True
            else:
                if framework_id is None:
                    framework_id = f"{self.id}-{next(self._ids):04d}"
                fw = self.frameworks.get(framework_id)
                if fw is None:  # new, or known to a previous master: re-registration after failover
                    fw = self.frameworks[framework_id] = Framework(framework_id, info)
                elif fw.subscription is not None:  # the invariant: one subscription per framework
                    fw.subscription.events.append(_event("ERROR", error={"message": "Framework failed over"}))
                    fw.subscription.closed = True
                fw.info = {**info, "id": {"value": framework_id}}
                fw.subscription, fw.disconnected_at = sub, None
                fw.suppressed = bool(subscribe.get("suppressed_roles"))
                fw.offers.clear()  # offers made to an earlier subscription are void
                sub.events.append(
                    _event(
                        "SUBSCRIBED",
                        subscribed={
                            "framework_id": {"value": framework_id},
                            "heartbeat_interval_seconds": self.heartbeat_interval,
                            "master_info": {
                                "id": self.id,
                                "ip": 2130706433,
                                "port": self.server.server_address[1],
                                "hostname": "127.0.0.1",
                                "version": "1.11.0",
                            },
                        },
                    )
                )
                sub.events.append(_event("HEARTBEAT"))
                for task in fw.tasks.values():  # updates awaiting acknowledgement go again
                    if task.updates:
                        self._send_update(fw, task)
            self.wakeup.notify_all()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Mesos-Stream-Id", sub.stream_id)
        request.send_header("Transfer-Encoding", "chunked")
        request.end_headers()
        self._stream(request, sub)

    def _stream(self, request: BaseHTTPRequestHandler, sub: Subscription) -> None:
        next_heartbeat = time.monotonic() + self.heartbeat_interval
        try:
            while True:
                with self.lock:
                    due = next_heartbeat
                    self.wakeup.wait_for(
                        lambda due=due: sub.events or sub.closed or time.monotonic() >= due,
                        max(0.0, due - time.monotonic()),
                    )
                    events, sub.events = ([], sub.events) if self.mute else (sub.events, [])
                    closed = sub.closed
                if time.monotonic() >= next_heartbeat:
                    next_heartbeat = time.monotonic() + self.heartbeat_interval
                    if not self.mute:
                        events.append(_event("HEARTBEAT"))
                if events:
                    self._write(request, b"".join(events))
                if closed:
                    request.wfile.write(b"0\r\n\r\n")
                    break
        except OSError:
            pass  # the framework went away
        finally:
            request.close_connection = True
            with self.lock:
                for fw in self.frameworks.values():
                    if fw.subscription is sub:
                        fw.subscription, fw.disconnected_at = None, time.monotonic()
                        fw.offers.clear()

    def _write(self, request: BaseHTTPRequestHandler, data: bytes) -> None:
        """As HTTP chunks: one, or with `split` random cuts that ignore record boundaries."""
        pieces = [data]
        if self.split:
            cuts = (
                sorted(random.sample(range(1, len(data)), min(len(data) - 1, random.randint(1, 6))))
                if len(data) > 1
                else []
            )
            pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=False)]
        for piece in pieces:
            request.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            request.wfile.flush()

    # --- calls ----------------------------------------------------------------------------

    def _on_teardown(self, fw: Framework, call: dict) -> None:
        self._remove(fw)

    def _on_accept(self, fw: Framework, call: dict) -> None:
        accept = call["accept"]
        offer_ids = [o["value"] for o in accept.get("offer_ids", [])]
        stale = [o for o in offer_ids if o not in fw.offers]
        cpus = sum(fw.offers.get(o, (0, 0))[0] for o in offer_ids)
        mem = sum(fw.offers.get(o, (0, 0))[1] for o in offer_ids)
        for o in offer_ids:
            fw.offers.pop(o, None)
        for op in accept.get("operations", []):
            if op.get("type") != "LAUNCH":
                continue
            for info in op["launch"].get("task_infos", []):
                task_id, agent_id = info["task_id"]["value"], info["agent_id"]["value"]
                if stale or not offer_ids:
                    lost = "TASK_DROPPED" if fw.partition_aware else "TASK_LOST"
                    self._master_update(
                        fw,
                        task_id,
                        agent_id,
                        lost,
                        "REASON_INVALID_OFFERS",
                        f"Task launched with invalid offers: Offer {stale[0] if stale else '(none)'} is no longer valid",
                    )
                    continue
                need = (_scalar(info, "cpus"), _scalar(info, "mem"))
                error = None
                if task_id in fw.tasks and fw.tasks[task_id].state not in TERMINAL:
                    error = f"Task has duplicate ID: {task_id}"
                elif self.agent is None or agent_id != self.agent.id:
                    error = f"Task uses invalid agent: {agent_id}"
                elif need[0] > cpus + 1e-9 or need[1] > mem + 1e-9:
                    error = (
                        f"Task uses more resources cpus:{need[0]}; mem:{need[1]} than available cpus:{cpus}; mem:{mem}"
                    )
                elif "command" not in info and "executor" not in info:
                    error = "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"
                if error:
                    self._master_update(fw, task_id, agent_id, "TASK_ERROR", "REASON_TASK_INVALID", error)
                    continue
                cpus, mem = cpus - need[0], mem - need[1]
                fw.tasks[task_id] = Task(task_id, agent_id, info, resources=need)
                self.launched.append(task_id)
                self.agent.run(info, self._reporter(fw.id, task_id))
        fw.filtered_until = time.monotonic() + _refuse(accept)

    def _on_decline(self, fw: Framework, call: dict) -> None:
        for o in call["decline"].get("offer_ids", []):
            fw.offers.pop(o["value"], None)
        fw.filtered_until = time.monotonic() + _refuse(call["decline"])

    def _on_revive(self, fw: Framework, call: dict) -> None:
        fw.suppressed, fw.filtered_until = False, 0.0

    def _on_suppress(self, fw: Framework, call: dict) -> None:
        fw.suppressed = True

    def _on_kill(self, fw: Framework, call: dict) -> None:
        task_id = call["kill"]["task_id"]["value"]
        task = fw.tasks.get(task_id)
        if task is None or task.state in TERMINAL:
            self._reconcile(
                fw,
                [
                    {
                        "task_id": {"value": task_id},
                        **({"agent_id": call["kill"]["agent_id"]} if "agent_id" in call["kill"] else {}),
                    }
                ],
            )
            return
        grace = int(call["kill"].get("kill_policy", {}).get("grace_period", {}).get("nanoseconds", 3_000_000_000)) / 1e9
        if any(c.get("type") == "TASK_KILLING_STATE" for c in fw.info.get("capabilities", [])):
            self._agent_update(fw, task, "TASK_KILLING", "", "")
        threading.Thread(target=self.agent.kill, args=(task_id, grace), daemon=True).start()

    def _on_acknowledge(self, fw: Framework, call: dict) -> None:
        ack = call["acknowledge"]
        task = fw.tasks.get(ack["task_id"]["value"])
        if task is None or not task.updates or task.updates[0]["uuid"] != ack["uuid"]:
            self.bad_acks.append(ack)
            return
        done = task.updates.pop(0)
        if task.updates:
            self._send_update(fw, task)
        elif done["state"] in TERMINAL:
            del fw.tasks[task.id]  # acknowledged terminal: the master forgets the task

    def _on_reconcile(self, fw: Framework, call: dict) -> None:
        self._reconcile(fw, call["reconcile"].get("tasks", []))

    def _reconcile(self, fw: Framework, tasks: list[dict]) -> None:
        if not tasks:
            for task in fw.tasks.values():
                if task.state not in TERMINAL:
                    self._master_update(
                        fw,
                        task.id,
                        task.agent_id,
                        task.state,
                        "REASON_RECONCILIATION",
                        "Reconciliation: Latest task state",
                    )
            return
        for entry in tasks:
            task_id, agent_id = entry["task_id"]["value"], entry.get("agent_id", {}).get("value")
            task = fw.tasks.get(task_id)
            if task is not None:
                self._master_update(
                    fw, task_id, task.agent_id, task.state, "REASON_RECONCILIATION", "Reconciliation: Latest task state"
                )
            elif agent_id is not None and self.agent and agent_id == self.agent.id:
                self._master_update(
                    fw,
                    task_id,
                    agent_id,
                    "TASK_GONE" if fw.partition_aware else "TASK_LOST",
                    "REASON_RECONCILIATION",
                    "Reconciliation: Task is unknown to the agent",
                )
            else:
                self._master_update(
                    fw,
                    task_id,
                    agent_id,
                    "TASK_UNKNOWN" if fw.partition_aware else "TASK_LOST",
                    "REASON_RECONCILIATION",
                    "Reconciliation: Task is unknown",
                )

    # --- updates --------------------------------------------------------------------------

    def _reporter(self, framework_id: str, task_id: str):
        def report(state: str, message: str, reason: str) -> None:
            with self.lock:
                fw = self.frameworks.get(framework_id)
                task = fw.tasks.get(task_id) if fw else None
                if task is not None and task.state not in TERMINAL:
                    self._agent_update(fw, task, state, message, reason)
                self.wakeup.notify_all()

        return report

    def _agent_update(self, fw: Framework, task: Task, state: str, message: str, reason: str) -> None:
        """From the agent: reliable (a uuid), one in flight per task."""
        status = {
            "task_id": {"value": task.id},
            "state": state,
            "source": "SOURCE_EXECUTOR",
            "agent_id": {"value": task.agent_id},
            "timestamp": time.time(),
            "uuid": base64.b64encode(uuid.uuid4().bytes).decode(),
        }
        if message:
            status["message"] = message
        if reason:
            status["reason"] = reason
        task.state = state
        task.updates.append(status)
        self.agent_updates.append(status)
        if len(task.updates) == 1:
            self._send_update(fw, task)

    def _master_update(
        self, fw: Framework, task_id: str, agent_id: str | None, state: str, reason: str, message: str
    ) -> None:
        """From the master itself: not retried, so without a uuid."""
        status = {
            "task_id": {"value": task_id},
            "state": state,
            "source": "SOURCE_MASTER",
            "reason": reason,
            "message": message,
            "timestamp": time.time(),
        }
        if agent_id:
            status["agent_id"] = {"value": agent_id}
        if fw.subscription:
            fw.subscription.events.append(_event("UPDATE", update={"status": status}))

    def _send_update(self, fw: Framework, task: Task) -> None:
        task.sent_at = time.monotonic()
        if fw.subscription:
            fw.subscription.events.append(_event("UPDATE", update={"status": task.updates[0]}))

    # --- time -----------------------------------------------------------------------------

    def _tick(self) -> None:
        """The allocator (offers), update retries, and failover timeouts."""
        while not self._stopped.wait(0.1):
            with self.lock:
                now = time.monotonic()
                for fw in list(self.frameworks.values()):
                    if fw.subscription is None:
                        if fw.disconnected_at is not None and now - fw.disconnected_at >= fw.info.get(
                            "failover_timeout", 0.0
                        ):
                            self._remove(fw)
                        continue
                    for task in fw.tasks.values():
                        if task.updates and now - task.sent_at >= self.update_retry:
                            self._send_update(fw, task)
                    self._offer(fw, now)
                self.wakeup.notify_all()

    def _offer(self, fw: Framework, now: float) -> None:
        if self.agent is None or fw.suppressed or fw.offers or now < fw.filtered_until:
            return
        used = [t.resources for f in self.frameworks.values() for t in f.tasks.values() if t.state not in TERMINAL]
        offered = [r for f in self.frameworks.values() for r in f.offers.values()]
        cpus = self.agent.cpus - sum(c for c, _ in used + offered)
        mem = self.agent.mem_mb - sum(m for _, m in used + offered)
        if cpus < 0.01 or mem < 1:
            return
        offer_id = f"{self.id}-O{next(self._ids)}"
        fw.offers[offer_id] = (cpus, mem)
        role = (fw.info.get("roles") or [fw.info.get("role", "*")])[0]
        resources = [
            {"name": n, "type": "SCALAR", "scalar": {"value": v}, "allocation_info": {"role": role}}
            for n, v in (("cpus", cpus), ("mem", mem))
        ]
        fw.subscription.events.append(
            _event(
                "OFFERS",
                offers={
                    "offers": [
                        {
                            "id": {"value": offer_id},
                            "framework_id": {"value": fw.id},
                            "agent_id": {"value": self.agent.id},
                            "hostname": self.agent.hostname,
                            "resources": resources,
                            "allocation_info": {"role": role},
                        }
                    ]
                },
            )
        )

    def _remove(self, fw: Framework) -> None:
        """TEARDOWN, or the failover timeout passed: kill every task, forget the framework."""
        for task in fw.tasks.values():
            if task.state not in TERMINAL and self.agent:
                threading.Thread(target=self.agent.kill, args=(task.id, 0), daemon=True).start()
                task.state = "TASK_KILLED"
        if fw.subscription:
            fw.subscription.closed = True
        self.frameworks.pop(fw.id, None)
        self.removed.add(fw.id)


def _event(kind: str, **body) -> bytes:
    record = json.dumps({"type": kind, **body}).encode()
    return b"%d\n%s" % (len(record), record)


def _scalar(task: dict, name: str) -> float:
    return sum(r.get("scalar", {}).get("value", 0.0) for r in task.get("resources", []) if r["name"] == name)


def _refuse(call: dict) -> float:
    return float(call.get("filters", {}).get("refuse_seconds", 5.0))


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _reply(request: BaseHTTPRequestHandler, status: int, text: str, headers: dict | None = None) -> None:
    body = text.encode()
    request.send_response(status)
    for k, v in (headers or {}).items():
        request.send_header(k, v)
    request.send_header("Content-Length", str(len(body)))
    if body:
        request.send_header("Content-Type", "text/plain; charset=utf-8")
    request.end_headers()
    request.wfile.write(body)


def _handler(master: MasterDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            master.handle(self)

        do_GET = do_POST

        def log_message(self, *args: object) -> None:
            pass

    return Handler
