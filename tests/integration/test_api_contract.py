"""Schemathesis against both OpenAPI specs, auth on, on a live pipeline: no 5xx, and no
response (status, headers, content type, body) that the spec does not allow.

One test per operation, driven through hypothesis directly (schemathesis' pytest plugin
does not support this pytest).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

import schemas
from tests.services import TOKEN

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENDLESS = {"/v1/top/events"}  # an event stream never ends by design; test_results_api.py reads it


def operations(spec: str) -> list[tuple[str, str]]:
    return [(method.upper(), path) for path, item in schemas.load(spec)["paths"].items() for method in item
            if path not in ENDLESS]


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
