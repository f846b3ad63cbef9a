"""A small client for the ingest and results APIs.

from pipeline.client import Client

client = Client(token="...")                # ingest on :8080, results on :8081, or $WORDPIPE_*_URL's
client.ingest("book.txt")                   # {"document", "bytes", "chunks"}; retried safely
client.wait_counted()                       # until everything accepted is counted
client.top(10)["counts"]                    # {"the": 1234, ...}
client.count("whale")
"""

from __future__ import annotations

import io
import itertools
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import requests

from pipeline.errors import ConfigError, UnavailableError

DEFAULT_INGEST_PORT = 8080  # the default stack's: its token file is named by it
DEFAULT_INGEST_URL = f"http://127.0.0.1:{DEFAULT_INGEST_PORT}"
DEFAULT_RESULTS_URL = "http://127.0.0.1:8081"
DEFAULT_AUTOSCALER_URL = "http://127.0.0.1:8082"
# How a client finds a stack it is not told of: the variables `wordpipe up` prints to export,
# each stack its own, so that several stacks on one machine never take each other's place.
INGEST_URL_VARIABLE = "WORDPIPE_INGEST_URL"
RESULTS_URL_VARIABLE = "WORDPIPE_RESULTS_URL"
AUTOSCALER_URL_VARIABLE = "WORDPIPE_AUTOSCALER_URL"
TOKEN_FILE_VARIABLE = "WORDPIPE_TOKEN_FILE"
RETRYABLE = (409, 429, 502, 503, 504)
BLOCK = 256 * 1024


def stack_url(given: str | None, variable: str, default: str) -> str:
    """A service's address: `given` (a flag, an argument), else $`variable`, else `default`."""
    return (given or os.environ.get(variable) or default).rstrip("/")


def token_file(ingest_port: int = DEFAULT_INGEST_PORT, state_dir: str | None = None) -> Path:
    """Where `wordpipe up` leaves the token it generated: in its state directory when it has
    one, else named by its ingest port, which no other stack on this machine holds."""
    if state_dir:
        return Path(state_dir) / "token"
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "wordpipe" / f"token-{ingest_port}"


def save_token(token: str, path: Path) -> None:
    """Leave `token` at `path`, readable by its owner alone whatever mode a file already
    there had: a fresh file (0600 from its creation) replaces the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".token-")
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(temporary, path)


def default_token() -> str | None:
    """$WORDPIPE_TOKEN, else the first of $WORDPIPE_TOKENS, else the token in the file
    $WORDPIPE_TOKEN_FILE names, else the one the default stack (`wordpipe up`) wrote."""
    if os.environ.get("WORDPIPE_TOKEN"):
        return os.environ["WORDPIPE_TOKEN"]
    if os.environ.get("WORDPIPE_TOKENS"):
        return os.environ["WORDPIPE_TOKENS"].split(",")[0].strip()
    named = os.environ.get(TOKEN_FILE_VARIABLE)
    try:
        return Path(named or token_file()).read_text().strip() or None
    except OSError as exc:
        if named:  # a stack's file that is not there: a request without it would only get a 401
            raise ConfigError(f"${TOKEN_FILE_VARIABLE}: cannot read {named}: {exc.strerror}") from None
        return None  # no default stack, or one without auth


class RequestFailed(UnavailableError):
    """A non-2xx answer (`code` and `detail` from the service's JSON error body), or none
    (status 0: `unreachable`, or `not_counted` when a wait ran out)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


class Client:
    def __init__(
        self,
        ingest_url: str | None = None,
        results_url: str | None = None,
        autoscaler_url: str | None = None,
        token: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        """A URL not given is its $WORDPIPE_*_URL, else the default stack's; a token not
        given is `default_token()`'s ("": none)."""
        self.ingest_url = stack_url(ingest_url, INGEST_URL_VARIABLE, DEFAULT_INGEST_URL)
        self.results_url = stack_url(results_url, RESULTS_URL_VARIABLE, DEFAULT_RESULTS_URL)
        self.autoscaler_url = stack_url(autoscaler_url, AUTOSCALER_URL_VARIABLE, DEFAULT_AUTOSCALER_URL)
        self.timeout = timeout
        self.http = requests.Session()
        token = token if token is not None else default_token()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    # -- ingest ------------------------------------------------------------------

    def ingest(
        self,
        source: str | os.PathLike | bytes,
        name: str | None = None,
        key: str | None = None,
        attempts: int = 5,
        on_bytes: Callable[[int], None] | None = None,
    ) -> dict:
        """Upload one document; retried with one Idempotency-Key, so it counts once however often it is sent.

        `on_bytes(n)` hears of every block sent; a retry reports its bytes again.
        """
        key = key or uuid.uuid4().hex
        name = name or ("upload" if isinstance(source, bytes) else str(source))

        def opener() -> BinaryIO:
            return io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")

        for attempt in range(1, attempts + 1):
            try:
                with opener() as f:
                    response = self.http.post(
                        self.ingest_url + "/v1/documents",
                        params={"name": name},
                        data=_blocks(f, on_bytes),
                        headers={"Content-Type": "application/octet-stream", "Idempotency-Key": key},
                        timeout=self.timeout,
                    )
            except requests.ConnectionError as exc:
                if attempt == attempts:
                    raise RequestFailed(0, "unreachable", f"{self.ingest_url}: {exc}") from None
                time.sleep(min(2**attempt, 30) * 0.25)
                continue
            if response.status_code in RETRYABLE and attempt < attempts:
                time.sleep(_retry_after(response, attempt))
                continue
            return _json(response)
        raise AssertionError("unreachable")

    # -- results -----------------------------------------------------------------

    def top(self, k: int = 10) -> dict:
        return self._get("/v1/top", k=k)

    def count(self, word: str) -> int:
        """One word's total, asked in a body (POST /v1/words): a word of any length fits."""
        (answer,) = self.lookup([word])
        if answer["word"] is None:
            raise RequestFailed(404, answer["error"], answer["detail"])
        return answer["count"]

    def lookup(self, words: list[str]) -> list[dict]:
        """Each word's answer, `{"asked", "word", "count"}` (`word` None, with `error` and
        `detail`, for one that is not exactly one word), in order."""
        return self._request("POST", "/v1/words", json={"words": words})["words"]

    def status(self) -> dict:
        return self._get("/v1/status")

    def totals(self, page: int = 10_000) -> Iterator[tuple[str, int]]:
        cursor = ""
        while True:
            body = self._get("/v1/totals", limit=page, cursor=cursor)
            yield from body["totals"].items()
            if body["next"] is None:
                return
            cursor = body["next"]

    def wait_counted(self, timeout: float = 600.0, poll: float = 0.2) -> dict:
        """Until every document ingest accepted so far is counted; returns the status."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if (
                status["complete"]
                and status["documents_counted"] >= status["documents_ingested"]
                and status["chunks_counted"] >= status["chunks_ingested"]
            ):
                return status
            if time.monotonic() > deadline:
                raise RequestFailed(0, "not_counted", f"not everything was counted within {timeout:.0f} s: {status}")
            time.sleep(poll)

    def progress(self) -> dict | None:
        """The results API's counted offsets per shard (`wordpipe run` waits on them); None
        while no aggregator answers."""
        try:
            return self.http.get(self.results_url + "/v1/progress", timeout=5).json()
        except (requests.RequestException, ValueError):
            return None

    def autoscaler_status(self) -> dict:
        """The autoscaler's `GET /v1/status`: lag, rates, workers, decisions."""
        return self._get("/v1/status", base=self.autoscaler_url)

    def _get(self, path: str, base: str | None = None, **params: str | int) -> dict:
        return self._request("GET", path, base, params=params)

    def _request(self, method: str, path: str, base: str | None = None, **kwargs: Any) -> dict:
        """One call; a read that meets a rebalance (503 with Retry-After) is asked again,
        for up to `timeout` seconds, as the answer says."""
        base = base or self.results_url
        deadline = time.monotonic() + self.timeout
        for attempt in itertools.count(1):
            try:
                response = self.http.request(method, base + path, timeout=self.timeout, **kwargs)
            except requests.ConnectionError as exc:
                raise RequestFailed(0, "unreachable", f"{base}: {exc}") from None
            wait = _retry_after(response, attempt)
            if response.status_code != 503 or "Retry-After" not in response.headers:
                break
            if time.monotonic() + wait > deadline:
                break
            time.sleep(wait)
        return _json(response)

    def close(self) -> None:
        self.http.close()


def _blocks(f: BinaryIO, on_bytes: Callable[[int], None] | None) -> Iterator[bytes]:
    while block := f.read(BLOCK):
        if on_bytes:
            on_bytes(len(block))
        yield block


def _retry_after(response: requests.Response, attempt: int) -> float:
    try:
        return min(float(response.headers.get("Retry-After", "")), 30.0)
    except ValueError:
        return min(2**attempt, 30) * 0.25


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        if isinstance(body, dict) and "error" in body:
            raise RequestFailed(response.status_code, body["error"], body.get("detail", ""))
        raise RequestFailed(response.status_code, "http_error", response.text[:200])
    return body
