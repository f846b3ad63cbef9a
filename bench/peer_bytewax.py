"""A Bytewax word count in its best form, run by bench/peers.py in its own virtual environment.

    PEER_BROKER=host:port PEER_INPUT=topic PEER_OUTPUT=topic PEER_MARKS=dir PEER_CONSUMER_CONFIG=json \\
        python -m bytewax.run peer_bytewax:flow -i 0 -a "127.0.0.1:p0;127.0.0.1:p1"   # and -i 1

Each input record (a chunk of text cut where no word continues) is tokenized with
wordpipe's tokenizer and counted on the spot: one output record per input record, its
partial counts as msgpack {word: count}. No per-word records and no keyed state, so
nothing is exchanged between workers: the cheapest way Bytewax can count words. The
source reads every partition from the start and stops at its end (tail=False), so the
dataflow ends by itself.
"""

import json
import os
from collections import Counter

import bytewax.operators as op
import msgpack
import peer_mark
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow

from pipeline.tokenize import Tokenizer, decode

TOKENIZER = Tokenizer()
BROKERS = [os.environ["PEER_BROKER"]]
CONSUMER_CONFIG = {k: str(v) for k, v in json.loads(os.environ["PEER_CONSUMER_CONFIG"]).items()}  # as wordpipe's


def partial_counts(msg):
    """One chunk's counts, as one record: the work a wordpipe worker does per chunk."""
    peer_mark.first_record()
    counts = Counter(TOKENIZER.tokens(decode(msg.value).text))
    return KafkaSinkMessage(None, msgpack.packb(counts))


flow = Dataflow("peer_bytewax")
chunks = op.input(
    "chunks", flow, KafkaSource(BROKERS, [os.environ["PEER_INPUT"]], tail=False, add_config=CONSUMER_CONFIG)
)
op.output("partials", op.map("count", chunks, partial_counts), KafkaSink(BROKERS, os.environ["PEER_OUTPUT"]))
