"""Records read in a child process, one at a time: a record that kills whatever reads it (a
native crash, an out-of-memory kill, a bug not found yet) kills the child, not the worker,
and is named by it.

A worker reads this way only where the previous owner of an input died (pipeline/worker/worker.py:
the resume marks, set while an owner holds an input and cleared by a clean release),
and only until its first window there closes. So a record that kills every reader is
dead-lettered after two deaths, the previous owner's and the child's, and everything
around it is counted exactly; everywhere else records are read in the worker itself, at
full speed.

    parent (Isolation.read)                  child (python -m pipeline.worker.isolation)
    frame: (source spec or None, bytes) ->   reads it as pipeline/worker/reading.py does
                                  <- frame   the Reading
Frames are a 4-byte length and a pickle. The child exits when its input closes, so it never
outlives the worker.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
from typing import IO

from pipeline import config, faults, processes, tokenize
from pipeline.errors import UnavailableError
from pipeline.source_topics import SourceTopic
from pipeline.worker import reading

log = logging.getLogger("wordpipe.worker")
LENGTH = struct.Struct(">I")
# A record no reader finishes within this long is refused like one that kills it: the
# slowest honest one (10 MB of text that NFKC expands 18x) takes seconds.
READ_TIMEOUT = 300.0


class Crashed(UnavailableError):
    """The child died (or hung) reading a record; str(exc) says how, for the dead letter."""


class Isolation:
    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def read(self, spec: SourceTopic | None, value: bytes | None) -> reading.Reading:
        """A record read in the child (a chunk's text, or a source value by its spec); raises
        Crashed if the child died or hung on it, and starts a new child for the next."""
        proc = self.proc or self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            _write(proc.stdin, (spec, value))
            return _read(proc.stdout, READ_TIMEOUT)
        except (OSError, EOFError, TimeoutError) as exc:
            self.close()
            raise Crashed(self._how(proc, exc)) from None

    def _start(self) -> subprocess.Popen:
        self.proc = processes.spawn(
            [sys.executable, "-m", "pipeline.worker.isolation"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        return self.proc

    @staticmethod
    def _how(proc: subprocess.Popen, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"reading it took longer than {READ_TIMEOUT:.0f} s"
        code = proc.poll()
        if code is not None and code < 0:
            return f"reading it killed a process ({signal.Signals(-code).name})"
        return f"reading it killed a process (exit status {code})"

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # the child's cue to leave
            processes.terminate(self.proc, grace=1.0)
            self.proc = None


def _write(out: IO[bytes], obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(LENGTH.pack(len(data)) + data)
    out.flush()


def _read(stream: IO[bytes], timeout: float | None = None) -> reading.Reading:
    if timeout is not None and not select.select([stream], [], [], timeout)[0]:
        raise TimeoutError
    head = stream.read(LENGTH.size)
    if len(head) < LENGTH.size:
        raise EOFError
    (size,) = LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def main() -> None:
    """The child: read records until the parent closes our input."""
    tokenizer = tokenize.Tokenizer.load(config.load().text.tokenizer_user_dict)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = stdin.read(LENGTH.size)
        if len(head) < LENGTH.size:
            return
        spec, value = pickle.loads(stdin.read(LENGTH.unpack(head)[0]))
        faults.trip("reading", value)
        if spec is None:
            _write(stdout, reading.chunk(tokenizer, value))
        else:
            _write(stdout, reading.source(tokenizer, spec, value))


if __name__ == "__main__":
    os.nice(5)  # a suspect record must not starve the worker that waits for it
    main()
