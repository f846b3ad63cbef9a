"""The wire contract: JSON Schemas of every message (msgpack on Kafka) and the OpenAPI specs of the HTTP APIs."""

from __future__ import annotations

import json
from importlib import resources


def load(name: str) -> dict:
    """One of this package's JSON documents, e.g. load("results.openapi.json")."""
    return json.loads(resources.files(__name__).joinpath(name).read_text())
