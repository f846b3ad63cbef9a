"""RecordIO, the framing of the Mesos event stream: `<decimal length>\\n<length bytes>`, repeated.

HTTP chunk boundaries mean nothing here: a record may arrive split across chunks, several
may share one, a length prefix may be cut anywhere. The decoder is pure: feed it bytes as
they arrive and take the complete records it returns.
"""

from __future__ import annotations

from pipeline.cluster.backend import BackendError

MAX_RECORD = 64 * 1024 * 1024  # a sanity bound: a prefix beyond it is a corrupt stream, not an event


class RecordIOError(BackendError):
    """The stream is not RecordIO; the message says where it went wrong."""


class Decoder:
    def __init__(self, max_record: int = MAX_RECORD) -> None:
        self.max_record = max_record
        self._buffer = bytearray()
        self._length: int | None = None  # the length of the record being read, once its prefix is complete

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        records: list[bytes] = []
        while True:
            if self._length is None:
                newline = self._buffer.find(b"\n")
                if newline < 0:
                    if len(self._buffer) > len(str(self.max_record)):
                        raise RecordIOError(f"no record length in {bytes(self._buffer[:40])!r}")
                    return records
                prefix = bytes(self._buffer[:newline])
                if not prefix.isdigit():
                    raise RecordIOError(f"record length {prefix[:40]!r} is not a decimal number")
                self._length = int(prefix)
                if self._length > self.max_record:
                    raise RecordIOError(f"record length {self._length} exceeds {self.max_record} bytes")
                del self._buffer[: newline + 1]
            if len(self._buffer) < self._length:
                return records
            records.append(bytes(self._buffer[: self._length]))
            del self._buffer[: self._length]
            self._length = None

    @property
    def between_records(self) -> bool:
        """True when no part of a record is held: a stream may end cleanly here."""
        return not self._buffer and self._length is None
