"""The results API's lookup process (pipeline/aggregator/lookup_process.py): it answers as
lookup.py does on the event loop, and a child that dies or a call cut short never leaves
the next call a wrong answer."""

from __future__ import annotations

import asyncio

import pytest

from pipeline import tokenize
from pipeline.aggregator import lookup
from pipeline.aggregator.lookup_process import BATCH, LookupProcess, LookupProcessError

HEAVY = "\ufdfa" * 327_680  # 960 KiB of UTF-8, ~1 s of the tokenizer's time


def run(test) -> None:
    async def closing() -> None:
        process = LookupProcess(None)
        try:
            await test(process)
        finally:
            await process.close()

    asyncio.run(closing())


def test_it_answers_as_the_tokenizer_does_here():
    words = ["The", "é" * (BATCH + 1), "two words", "数据", "ひらがな", "\ufdfa" * 340, "\ud800"] * 3

    async def test(process: LookupProcess) -> None:
        inline = tokenize.Tokenizer()
        assert await process.tokenized(words) == [lookup.tokenized(inline, word) for word in words]
        assert await process.words_in(b'{"words": ["a", "b"]}') == ["a", "b"]

    run(test)


def test_a_bad_body_is_refused_as_it_is_here():
    async def test(process: LookupProcess) -> None:
        for body in (b"[" * 100_000, b'{"words": [1]}'):
            with pytest.raises(lookup.BadBody) as here:
                lookup.words_in(body)
            with pytest.raises(lookup.BadBody) as there:
                await process.words_in(body)
            assert there.value.args == here.value.args

    run(test)


def test_a_child_that_died_fails_its_call_and_the_next_call_starts_another():
    async def test(process: LookupProcess) -> None:
        heavy = asyncio.create_task(process.tokenized([HEAVY]))
        while process.proc is None:
            await asyncio.sleep(0.01)
        first = process.proc
        await asyncio.sleep(0.3)  # started, and busy with HEAVY
        first.kill()
        with pytest.raises(LookupProcessError):
            await heavy
        assert await process.tokenized(["whale"]) == [lookup.Tokenized(1, "whale", None)]
        assert process.proc is not None and process.proc.pid != first.pid

    run(test)


def test_a_call_cancelled_midway_leaves_no_reply_for_the_next():
    async def test(process: LookupProcess) -> None:
        heavy = asyncio.create_task(process.tokenized([HEAVY]))
        await asyncio.sleep(0.5)
        heavy.cancel()
        with pytest.raises(asyncio.CancelledError):
            await heavy
        assert await process.tokenized(["whale"]) == [lookup.Tokenized(1, "whale", None)]

    run(test)


def test_the_child_exits_once_its_stdin_closes():
    async def test(process: LookupProcess) -> None:
        await process.tokenized(["whale"])
        child = process.proc
        assert child is not None
        await process.close()
        assert child.returncode == 0 and process.proc is None

    run(test)
