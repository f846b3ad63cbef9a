"""Schemathesis against the three OpenAPI specs, auth on, on a live pipeline: valid
requests (positive mode) and invalid ones (negative mode: a parameter or body the spec
forbids). No 5xx, no status the spec does not list, and no response (headers, content
type, body) that it does not allow: an invalid request gets a documented error,
`{"error", "detail"}`.

One test per operation and mode, driven through hypothesis directly (schemathesis' pytest
plugin does not support this pytest).
"""

from __future__ import annotations

import threading

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

import schemas
from pipeline.autoscaler.api import serve_status
from pipeline.autoscaler.controller import Controller
from pipeline.autoscaler.policy import Policy
from pipeline.cluster import Resources
from pipeline.cluster.local import LocalBackend
from pipeline.kafka.broker import free_port
from pipeline.observe.lag import LagMonitor
from tests.services import TOKEN

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENDLESS = {"/v1/top/events"}  # an event stream never ends by design; test_results_api.py reads it
EDGE = {400, 431, 501}  # what the HTTP edge answers any request with: every operation's `default` response
EXAMPLES = {GenerationMode.POSITIVE: 60, GenerationMode.NEGATIVE: 100}


def operations(spec: str) -> list:
    """(method, path, mode): every operation with valid requests, and with invalid ones where a
    request can be invalid: a query parameter or a body (a path's word may be any string, and
    the bearer header is always AUTH's)."""
    out = []
    for path, item in schemas.load(spec)["paths"].items():
        for method, operation in item.items():
            if path in ENDLESS:
                continue
            queried = any(p["in"] == "query" for p in operation.get("parameters", []))
            for mode in GenerationMode:
                if mode.is_positive or queried or "requestBody" in operation:
                    out.append(pytest.param(method.upper(), path, mode, id=f"{method.upper()}-{path}-{mode.value}"))
    return out


def documented_status(ctx, response, case) -> None:
    """The status is one the operation lists, or one of the edge's: with `default` in every
    operation's responses, schemathesis' own status check lets any status pass."""
    listed = {int(code) for code in case.operation.responses.status_codes if code != "default"} | EDGE
    assert response.status_code in listed, f"{response.status_code} is not documented: {sorted(listed)}"


def honours_spec(url: str, method: str, path: str, mode: GenerationMode) -> None:
    operation = schemathesis.openapi.from_url(url + "/openapi.json")[path][method]

    @settings(max_examples=EXAMPLES[mode], deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy(generation_mode=mode, headers=AUTH))
    def call(case):
        case.call_and_validate(headers=AUTH, additional_checks=[documented_status])

    call()


@pytest.mark.parametrize(("method", "path", "mode"), operations("ingest.openapi.json"))
def test_ingest_api_honours_its_spec(services, method, path, mode):
    honours_spec(services.ingest_url, method, path, mode)


@pytest.mark.parametrize(("method", "path", "mode"), operations("results.openapi.json"))
def test_results_api_honours_its_spec(services, method, path, mode):
    honours_spec(services.results_url, method, path, mode)


@pytest.fixture(scope="module")
def autoscaler_url(services, tmp_path_factory):
    """An autoscaler of the services' workers: at most one more, which the lag the ingest fuzzing left may ask for."""
    monitor = LagMonitor(services.connection, services.settings.topics, services.settings.worker.group)
    backend = LocalBackend(services.settings.to_env(services.connection), tmp_path_factory.mktemp("workers"))
    policy = Policy(min_workers=0, max_workers=1, scale_to_zero=True)
    controller = Controller(backend, monitor, lambda: policy, Resources(), interval=0.5)
    stop = threading.Event()
    thread = threading.Thread(target=controller.run, args=(stop,))
    thread.start()
    server = serve_status(controller, "127.0.0.1", port := free_port(), tokens=[TOKEN])
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    stop.set()
    thread.join()
    monitor.close()
    backend.close()


@pytest.mark.parametrize(("method", "path", "mode"), operations("autoscaler.openapi.json"))
def test_autoscaler_api_honours_its_spec(autoscaler_url, method, path, mode):
    honours_spec(autoscaler_url, method, path, mode)
