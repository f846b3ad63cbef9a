"""Schemathesis against the three OpenAPI specs, auth on, on a live pipeline: no 5xx,
and no response (status, headers, content type, body) that the spec does not allow.

One test per operation, driven through hypothesis directly (schemathesis' pytest plugin
does not support this pytest).
"""

from __future__ import annotations

import threading

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

import schemas
from pipeline.autoscaler.api import serve_status
from pipeline.autoscaler.controller import Controller
from pipeline.autoscaler.monitor import LagMonitor
from pipeline.autoscaler.policy import Policy
from pipeline.broker import free_port
from pipeline.cluster import Resources
from pipeline.cluster.local import LocalBackend
from tests.services import TOKEN

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENDLESS = {"/v1/top/events"}  # an event stream never ends by design; test_results_api.py reads it


def operations(spec: str) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in schemas.load(spec)["paths"].items()
        for method in item
        if path not in ENDLESS
    ]


def honours_spec(url: str, method: str, path: str) -> None:
    operation = schemathesis.openapi.from_url(url + "/openapi.json")[path][method]

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy())
    def call(case):
        case.call_and_validate(headers=AUTH)

    call()


@pytest.mark.parametrize(("method", "path"), operations("ingest.openapi.json"))
def test_ingest_api_honours_its_spec(services, method, path):
    honours_spec(services.ingest_url, method, path)


@pytest.mark.parametrize(("method", "path"), operations("results.openapi.json"))
def test_results_api_honours_its_spec(services, method, path):
    honours_spec(services.results_url, method, path)


@pytest.fixture(scope="module")
def autoscaler_url(services, tmp_path_factory):
    """An autoscaler of the services' workers: at most one more, which the lag the ingest fuzzing left may ask for."""
    monitor = LagMonitor(services.connection, services.settings)
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


@pytest.mark.parametrize(("method", "path"), operations("autoscaler.openapi.json"))
def test_autoscaler_api_honours_its_spec(autoscaler_url, method, path):
    honours_spec(autoscaler_url, method, path)
