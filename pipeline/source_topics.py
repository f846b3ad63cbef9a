"""Pure: topics that other producers fill, counted as they are. No I/O.

A source is a topic and, optionally, where its text lies in a JSON value:

    lines             the record's value is the text (UTF-8)
    tweets:$.text     the value is a JSON object; its "text" field is the text
    events:$.body[0]  ... a simple path: .name and [index] steps

Workers consume source topics beside the chunks topic and count each record as it is,
in windows of offsets like chunks (pipeline/worker/windows.py). A source partition's windows
are keyed apart from chunks partitions by their *input* name, "topic:partition"; a
chunks partition's input is its number.

A value is read as a file is (pipeline/tokenize.py's `decode`): invalid UTF-8 becomes
U+FFFD, so a text counts the same whichever way it came. A record that holds no text is
refused with the reason, for the dead-letter topic: a tombstone, a binary value (a NUL
byte, as git and grep tell binary files), JSON that does not parse or lacks the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pipeline.codec import CodecError
from pipeline.errors import UsageError
from pipeline.tokenize import Decoded, decode

# Kafka's own rule for topic names; a path starts at its first ':'.
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")

Input = int | str  # a chunks partition, or a source partition's "topic:partition"


class SourceTopicError(UsageError):
    """A source spec that cannot be read; the message names it and says why."""


class NoText(CodecError):
    """A source record with no text to count; str(exc) is the reason, for the dead letter."""


@dataclass(frozen=True)
class SourceTopic:
    topic: str
    path: tuple[str | int, ...] = ()  # empty: the whole value is the text
    spec: str = ""  # as the user wrote it

    def text(self, value: bytes | None) -> Decoded:
        """The text of a record's value; raises NoText saying why there is none."""
        if value is None:
            raise NoText("no value (a tombstone)")
        if (nul := value.find(0)) >= 0:
            raise NoText(f"the value is binary (a NUL byte at {nul}), not text")
        if not self.path:
            return decode(value)
        try:
            found: object = json.loads(value)
        except RecursionError:
            raise NoText(f"the value is JSON nested too deep to read, so it has no field {self.spec_path}") from None
        except ValueError as exc:
            raise NoText(f"the value is not JSON ({exc}), so it has no field {self.spec_path}") from None
        for step in self.path:
            if isinstance(step, int) and isinstance(found, list) and step < len(found):
                found = found[step]
            elif isinstance(step, str) and isinstance(found, dict) and step in found:
                found = found[step]
            else:
                raise NoText(f"the JSON value has no field {self.spec_path}")
        if not isinstance(found, str):
            raise NoText(f"field {self.spec_path} is {type(found).__name__}, not text")
        return Decoded(found, 0)

    @property
    def spec_path(self) -> str:
        return self.spec.partition(":")[2]


def parse(spec: str) -> SourceTopic:
    """`topic` or `topic:$.path`; raises SourceTopicError naming what is wrong."""
    topic, colon, path = spec.strip().partition(":")
    if not _TOPIC.fullmatch(topic):
        raise SourceTopicError(
            f"source {spec!r}: {topic!r} is not a Kafka topic name (letters, digits, '.', '_', '-'; 1-249 of them)"
        )
    if not colon:
        return SourceTopic(topic, (), topic)
    if not path.startswith("$"):
        raise SourceTopicError(f"source {spec!r}: a field path starts with '$', like {topic}:$.text")
    steps: list[str | int] = []
    at = 1
    while at < len(path):
        step = _STEP.match(path, at)
        if step is None:
            raise SourceTopicError(
                f"source {spec!r}: cannot read the path at {path[at:]!r}; steps are .name and [index], like $.user.bio"
            )
        steps.append(step.group(1) if step.group(1) is not None else int(step.group(2)))
        at = step.end()
    if not steps:
        raise SourceTopicError(f"source {spec!r}: the path names no field; for the whole value, give just {topic}")
    return SourceTopic(topic, tuple(steps), f"{topic}:{path}")


def parse_all(specs: str | None, reserved: tuple[str, ...] = ()) -> list[SourceTopic]:
    """The comma-separated specs of the `sources` setting; a topic at most once, none of `reserved`."""
    out = [parse(s) for s in (specs or "").split(",") if s.strip()]
    topics = [s.topic for s in out]
    for topic in topics:
        if topics.count(topic) > 1:
            raise SourceTopicError(f"source topic {topic!r} is named twice; a topic is counted once, one way")
        if topic in reserved:
            raise SourceTopicError(f"source topic {topic!r} is one of wordpipe's own topics")
    return out


def input_of(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def split_input(name: str) -> tuple[str, int]:
    """ "topic:partition" -> (topic, partition)."""
    topic, _, partition = name.rpartition(":")
    return topic, int(partition)
