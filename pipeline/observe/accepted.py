"""What ingest accepted, as the results API tells it: documents and chunks committed, and
which chunks generations hold an upload still `open`, followed on the receipts topic
(pipeline/ingest/receipts.py writes it; schemas/receipt.v1.json)."""

from __future__ import annotations

import threading
import time

from pipeline import codec, kafka
from pipeline.config import Connection, TopicSettings
from pipeline.kafka import TopicPartition


class Accepted:
    """How many documents and chunks ingest accepted, and which chunks generations hold an
    upload still `open` (kept until it is settled), following the receipts topic in a thread."""

    def __init__(self, connection: Connection, topics: TopicSettings) -> None:
        self.consumer = kafka.consumer(connection, "wordpipe-receipts")
        self.consumer.assign([TopicPartition(topics.documents, 0, 0)])
        self.ends = kafka.consumer(connection, "wordpipe-receipts")  # watermarks only
        self.topic = topics.documents
        self.committed: dict[bytes, int] = {}  # receipt key -> chunks
        self.open: dict[bytes, str] = {}  # receipt key -> the generation of an upload still open
        self.chunks = 0
        self.position = 0  # next offset to read
        self._stop = False
        self._thread = threading.Thread(target=self._follow, name="receipts", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop:
            for msg in self.consumer.consume(500, 0.05):  # short: `close` waits for it
                if msg.error():
                    continue
                self.position = (msg.offset() or 0) + 1
                key = msg.key()
                if key is None:
                    continue
                try:
                    receipt = codec.decode_receipt(msg.value())
                except codec.CodecError:
                    continue
                self.open.pop(key, None)
                if receipt.state == "open":
                    self.open[key] = receipt.topic
                before = self.committed.pop(key, 0)
                if receipt.state == "committed":
                    self.committed[key] = receipt.chunks
                self.chunks += self.committed.get(key, 0) - before

    @property
    def documents(self) -> int:
        return len(self.committed)

    def catch_up(self, timeout: float = 5.0) -> bool:
        """Wait until every receipt written before this call is read (blocking: run it in a
        thread), so a client that got its 202 sees its document as ingested."""
        try:
            end = self.ends.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=timeout)[1]
        except Exception:  # Kafka away: answer with what is known
            return False
        deadline = time.monotonic() + timeout
        while self.position < end:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.consumer.close()
        self.ends.close()
