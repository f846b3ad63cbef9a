"""The results API's child process for lookups too heavy for its event loop (the aggregator's).

The GIL rules out a thread: unicodedata.normalize and json.loads are single C calls that hold
it, for ~1 s on a 960 KiB word of U+FDFA or ~130 ms on 1 MiB of nested arrays. The child
runs lookup.py's functions instead, one call at a time in the order asked, so concurrent
lookups take turns at it, and it costs the aggregator at most one core.

Each call is a frame each way on the child's stdin and stdout: 4 bytes of length, then a
pickle. Pickle is safe here: both ends are ours, and a client's words are only ever data
inside it. The child is started on first use and exits when its stdin closes, so it never
outlives the aggregator, even one SIGKILLed. One that dies is started again by the next call.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from pipeline import tokenize
from pipeline.aggregator import lookup
from pipeline.errors import UnavailableError

LENGTH = 4  # bytes of a frame's length
# Characters tokenized in one call: ~50 ms at worst (U+FDFA, ~3 µs a character). A longer
# word is a call of its own (~1 s for 960 KiB of U+FDFA).
BATCH = 16 * 1024


class LookupProcessError(UnavailableError):
    """The child died or broke the protocol: the call it was answering fails (a 500)."""


class LookupProcess:
    """The parent's end: `await words_in(body)` and `await tokenized(raw)`, as lookup.py answers them."""

    def __init__(self, user_dict: str | None) -> None:
        self.user_dict = user_dict or ""
        self.proc: asyncio.subprocess.Process | None = None
        self.turn = asyncio.Lock()  # one call in flight: replies come back in the order asked

    async def words_in(self, body: bytes) -> list[str]:
        return await self._call("words_in", body)

    async def tokenized(self, words: list[str]) -> list[lookup.Tokenized]:
        """In batches of about BATCH characters: concurrent lookups take turns batch by batch."""
        out: list[lookup.Tokenized] = []
        for batch in _batches(words):
            out += await self._call("tokenized", batch)
        return out

    async def _call(self, name: str, arg: object) -> Any:
        async with self.turn:
            proc = await self._started()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(_frame(pickle.dumps((name, arg))))
                await proc.stdin.drain()
                size = int.from_bytes(await proc.stdout.readexactly(LENGTH), "big")
                failed, value = pickle.loads(await proc.stdout.readexactly(size))
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                await self._stop(proc)
                raise LookupProcessError(f"the lookup process ended (exit {proc.returncode})") from exc
            except BaseException:  # cancelled mid-call: its reply would answer the next call
                proc.kill()
                self.proc = None
                raise
        if failed:
            raise value
        return value

    async def _started(self) -> asyncio.subprocess.Process:
        if self.proc is None or self.proc.returncode is not None:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                __name__,
                self.user_dict,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        return self.proc

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        self.proc = None

    async def close(self) -> None:
        """End the child: its stdin closes, and it exits once done with any call under way."""
        proc = self.proc
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            await self._stop(proc)
        self.proc = None


def _batches(words: list[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for word in words:
        batch.append(word)
        size += len(word)
        if size >= BATCH:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(LENGTH, "big") + data


def _read_frame(stream: BinaryIO) -> bytes | None:
    head = stream.read(LENGTH)
    if len(head) < LENGTH:
        return None  # stdin closed: the aggregator is done with us
    return stream.read(int.from_bytes(head, "big"))


def serve(calls: dict[str, Callable[[Any], Any]], requests: BinaryIO, replies: BinaryIO) -> None:
    """The child's loop: each call answered by (False, its result) or (True, the BadBody it raised)."""
    while (frame := _read_frame(requests)) is not None:
        name, arg = pickle.loads(frame)
        try:
            reply: tuple[bool, object] = (False, calls[name](arg))
        except lookup.BadBody as exc:
            reply = (True, exc)
        replies.write(_frame(pickle.dumps(reply)))
        replies.flush()


def main(user_dict: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the aggregator ends us
    os.nice(10)  # heavy lookups yield the CPU to counting and to every other request
    tokenizer = tokenize.Tokenizer.load(user_dict or None)
    calls: dict[str, Callable[[Any], Any]] = {
        "words_in": lookup.words_in,
        "tokenized": lambda words: [lookup.tokenized(tokenizer, word) for word in words],
    }
    # Frames own the real stdout; anything else printed (a library's notice) goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        serve(calls, sys.stdin.buffer, replies)
    except BrokenPipeError:  # the aggregator went away mid-call: nobody is left to answer
        os.dup2(os.open(os.devnull, os.O_WRONLY), replies.fileno())  # nor to flush to at exit


if __name__ == "__main__":
    main(sys.argv[1])
