"""Post-processing shared by every backend (stop strings, Qwen3 thinking, streaming) and batch planning."""

from __future__ import annotations

import random

import pytest

from adam.backends.base import finish_generation, plan_batches
from adam.backends.text import StreamAssembler, cut_at_stop, finish_text, split_thinking
from adam.backends.types import GenerationRequest, StreamChunk


# ----------------------------------------------------------------- stop strings and thinking
@pytest.mark.parametrize(
    ("raw", "stops", "expected"),
    [
        ("hello world", ("wor", "lo"), ("hel", True)),  # the earliest hit wins, whatever the order of stops
        ("hello world", ("xyz",), ("hello world", False)),
        ("hello world", ("", "d"), ("hello worl", True)),  # an empty stop string is ignored
        ("hello world", (), ("hello world", False)),
        ("STOP at once", ("STOP",), ("", True)),
    ],
)
def test_cut_at_stop(raw: str, stops: tuple[str, ...], expected: tuple[str, bool]) -> None:
    assert cut_at_stop(raw, stops) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("just an answer", (None, "just an answer")),
        ("<think>\nstep one\n</think>\n\nThe answer is 4.", ("step one", "The answer is 4.")),
        ("<think>\n\n</think>\n\nDirect.", (None, "Direct.")),  # Qwen3's empty block when thinking is off
        ("<think>still going", ("still going", "")),  # cut off while thinking
        ("thoughts</think>\n\nanswer", ("thoughts", "answer")),  # the prompt opened the block
    ],
)
def test_split_thinking(raw: str, expected: tuple[str | None, str]) -> None:
    assert split_thinking(raw) == expected


def test_finish_text_cuts_before_splitting() -> None:
    assert finish_text("<think>plan</think>\n\nParis. END more", ("END",)) == ("Paris. ", "plan", True)
    assert finish_text("<think>plan END more", ("END",)) == ("", "plan", True)


def test_finish_generation_reports_a_hit_stop_as_stop() -> None:
    request = GenerationRequest(prompt="x", stop=("!",))
    gen = finish_generation("Hi! there", request, finish_reason="length", prompt_tokens=3, completion_tokens=5)
    assert (gen.text, gen.finish_reason, gen.prompt_tokens, gen.completion_tokens) == ("Hi", "stop", 3, 5)
    plain = finish_generation("Hi there", request, finish_reason="length", prompt_tokens=3, completion_tokens=5)
    assert plain.finish_reason == "length"


# ----------------------------------------------------------------- streaming
def stream_pieces(pieces: list[str], stops: tuple[str, ...]) -> tuple[str, str, list[StreamChunk]]:
    """Feed raw pieces as a backend would; returns the joined answer, joined thinking and the chunks."""
    assembler = StreamAssembler(stops)
    out = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        out.append(assembler.feed(StreamChunk(piece, "", "length" if last else None, 7, i + 1)))
        if assembler.stopped:
            break
    out.append(assembler.close())
    return "".join(c.text for c in out), "".join(c.thinking for c in out), out


def random_split(text: str, rng: random.Random) -> list[str]:
    if len(text) < 2:
        return [text]
    cuts = sorted(rng.sample(range(1, len(text)), rng.randint(0, min(8, len(text) - 1))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


WELL_FORMED = [
    "Plain answer with no tags at all.",
    "<think>let me think about 2 + 2</think>\n\nThe answer is 4.",
    "<think>\n\n</think>\n\nParis is the capital. STOP then more",
    "a lone < and a <thi that never becomes a tag",
    "<think>cut off while thinking",
    "END of story END",
    "",
]
STOPS = [(), ("STOP",), ("END",), ("e",), ("<think>",), ("is 4",)]


@pytest.mark.parametrize("raw", WELL_FORMED)
@pytest.mark.parametrize("stops", STOPS)
def test_stream_joins_to_finish_text_for_any_chunking(raw: str, stops: tuple[str, ...]) -> None:
    expected_text, expected_thinking, hit = finish_text(raw, stops)
    rng = random.Random(f"{raw}|{stops}")
    chunkings = [[raw], list(raw) or [raw], *(random_split(raw, rng) for _ in range(25))]
    for pieces in chunkings:
        text, thinking, chunks = stream_pieces(pieces, stops)
        assert (text, thinking or None) == (expected_text, expected_thinking), pieces
        assert chunks[-1].finish_reason == ("stop" if hit else "length")
        assert chunks[-1].prompt_tokens == 7


def test_stream_holds_back_what_may_become_a_marker() -> None:
    assembler = StreamAssembler(("STOP",))
    assert assembler.feed(StreamChunk("Hello ST")).text == "Hello "
    assert assembler.feed(StreamChunk("ay <thi")).text == "STay "
    assert assembler.feed(StreamChunk("nk>secret")).text == ""
    assert not assembler.stopped
    assert assembler.feed(StreamChunk("</think>more STOP x")).text == "more "
    assert assembler.stopped


def test_stream_when_the_prompt_opened_thinking() -> None:
    # Templates that open <think> in the prompt (QwQ, Qwen3 *-Thinking-2507, DeepSeek-R1).
    raw = "thoughts</think>\n\nanswer"
    assert finish_text(raw, (), opened=True) == ("answer", "thoughts", False)
    assembler = StreamAssembler((), opened=True)
    chunks = [assembler.feed(StreamChunk(p)) for p in ["thou", "ghts</th", "ink>\n\nans", "wer"]]
    chunks.append(assembler.close())
    assert "".join(c.text for c in chunks) == "answer"
    assert "".join(c.thinking for c in chunks) == "thoughts"


def test_text_before_an_unclosed_think_is_kept() -> None:
    assert split_thinking("answer <think>late thoughts") == ("late thoughts", "answer ")


# ----------------------------------------------------------------- batch planning
@pytest.mark.parametrize("seed", range(20))
def test_plan_batches_properties(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.choice([0, 1, 3, 10, 50, 200]) + rng.randint(0, 5) for _ in range(rng.randint(1, 60))]
    batch_size = rng.randint(1, 9)
    budget = rng.choice([None, 64, 300, 1000])
    batches = plan_batches(lengths, batch_size, budget)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    order = [lengths[i] for b in batches for i in b]
    assert order == sorted(lengths, reverse=True)  # longest first, so similar lengths share a batch
    for batch in batches:
        assert 1 <= len(batch) <= batch_size
        if budget is not None and len(batch) > 1:
            assert len(batch) * max(max(lengths[i] for i in batch), 1) <= budget


def test_plan_batches_groups_similar_lengths() -> None:
    assert plan_batches([1, 100, 2, 99], 2) == [[1, 3], [2, 0]]
    assert plan_batches([10, 10, 10, 10], 8, token_budget=25) == [[0, 1], [2, 3]]
    assert plan_batches([500, 1], 8, token_budget=100) == [[0], [1]]  # too long for the budget: alone
    assert plan_batches([], 4) == []


def test_plan_batches_rejects_a_zero_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        plan_batches([1, 2], 0)
