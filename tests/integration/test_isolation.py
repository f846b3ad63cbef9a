"""A suspect input's records read in a child process (pipeline/worker/isolation.py): the
child reads as the worker does, and a record that kills it is told, not counted."""

import pytest

from pipeline import tokenize
from pipeline.source_topics import parse
from pipeline.worker import reading
from pipeline.worker.isolation import Crashed, Isolation


def test_the_child_reads_chunks_and_source_records_as_the_worker_does():
    tokenizer = tokenize.Tokenizer.load(None)
    text = "To be, or not to be: 生存还是毁灭，这是一个问题".encode()
    spec = parse("feed:$.text")
    isolation = Isolation()
    try:
        assert isolation.read(None, text) == reading.chunk(tokenizer, text)
        value = b'{"text": "the rest is silence"}'
        assert isolation.read(spec, value) == reading.source(tokenizer, spec, value)
        assert isolation.read(spec, b"not json").refusal == reading.source(tokenizer, spec, b"not json").refusal
    finally:
        isolation.close()


def test_a_record_that_kills_the_child_is_told_and_the_next_child_reads_on(monkeypatch):
    monkeypatch.setenv("WORDPIPE_FAULTS", "reading=~POISON")  # the child aborts on a record holding it
    isolation = Isolation()
    try:
        with pytest.raises(Crashed, match="SIGABRT"):
            isolation.read(None, b"a POISON record")
        assert isolation.read(None, b"words after it").words == ["words", "after", "it"]
    finally:
        isolation.close()
