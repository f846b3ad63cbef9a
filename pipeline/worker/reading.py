"""Pure: what a record holds to count, read the one way every reader reads it (the worker,
and the child that counts a suspect record alone: pipeline/worker/isolation.py).

A chunk's text is decoded as files are (pipeline/tokenize.py: invalid UTF-8 becomes
U+FFFD) and tokenized; a source record's value is read by its spec
(pipeline/source_topics.py), or refused with the reason it holds no text.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import tokenize
from pipeline.source_topics import NoText, SourceTopic


@dataclass(frozen=True, slots=True)
class Reading:
    words: list[str] | None  # None: nothing to count (refused)
    invalid_bytes: int = 0  # UTF-8 sequences replaced by U+FFFD
    refusal: str | None = None  # why it holds no text, for the dead letter


def chunk(tokenizer: tokenize.Tokenizer, text: bytes) -> Reading:
    decoded = tokenize.decode(text)
    return Reading(tokenizer.tokens(decoded.text), decoded.invalid_bytes)


def source(tokenizer: tokenize.Tokenizer, spec: SourceTopic, value: bytes | None) -> Reading:
    try:
        decoded = spec.text(value)
    except NoText as exc:
        return Reading(None, refusal=f"source {spec.spec}: {exc}")
    return Reading(tokenizer.tokens(decoded.text), decoded.invalid_bytes)
