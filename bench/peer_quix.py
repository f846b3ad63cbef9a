"""A Quix Streams word count in its best form, run by bench/peers.py in its own virtual environment.

    PEER_BROKER=host:port PEER_INPUT=topic PEER_OUTPUT=topic PEER_GROUP=group PEER_STATE=dir PEER_MARKS=dir PEER_CONSUMER_CONFIG=json \\
        python bench/peer_quix.py   # one process per group member; SIGTERM stops it

Each input record (a chunk of text cut where no word continues) is tokenized with
wordpipe's tokenizer and counted on the spot: one output record per input record, its
partial counts as msgpack {word: count}. No per-word rows and no state (so no changelog
topics): the cheapest way Quix Streams can count words. Processes of one consumer group
share the partitions.
"""

import json
import os
from collections import Counter

import msgpack
import peer_mark
from quixstreams import Application

from pipeline.tokenize import Tokenizer, decode

TOKENIZER = Tokenizer()


def partial_counts(value: bytes) -> bytes:
    """One chunk's counts, as one record: the work a wordpipe worker does per chunk."""
    peer_mark.first_record()
    return msgpack.packb(Counter(TOKENIZER.tokens(decode(value).text)))


def main() -> None:
    app = Application(
        broker_address=os.environ["PEER_BROKER"],
        consumer_group=os.environ["PEER_GROUP"],
        auto_offset_reset="earliest",
        state_dir=os.environ["PEER_STATE"],
        use_changelog_topics=False,
        consumer_extra_config=json.loads(os.environ["PEER_CONSUMER_CONFIG"]),  # the session that fits Tansu
    )
    chunks = app.topic(os.environ["PEER_INPUT"], value_deserializer="bytes")
    partials = app.topic(os.environ["PEER_OUTPUT"], value_serializer="bytes")
    app.dataframe(chunks).apply(partial_counts).to_topic(partials)
    app.run()


if __name__ == "__main__":
    main()
