from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORPORA = REPO.parent / "shared" / "corpora"
SAMPLE = REPO / "samples" / "sample.txt"  # 60 KB of Shakespeare, shipped with the repo


@pytest.fixture(scope="session")
def corpora() -> Path:
    if not CORPORA.is_dir():
        pytest.skip(f"shared corpora not found at {CORPORA}")
    return CORPORA


@pytest.fixture
def broker():
    from pipeline.broker import EmbeddedBroker

    with EmbeddedBroker() as b:
        yield b


def wordpipe(*args: str, timeout: float = 300, input: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed CLI, as a user runs it."""
    exe = shutil.which("wordpipe", path=os.path.dirname(sys.executable)) or "wordpipe"
    return subprocess.run(
        [exe, *args], capture_output=True, timeout=timeout, input=input, env={**os.environ, **(env or {})}
    )
