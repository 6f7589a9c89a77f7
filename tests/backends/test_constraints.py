"""Constrained decoding on the in-process backends: llguidance masks per row, log-probabilities, thinking.

The tiny random Qwen3 answers at random, so a valid answer there is the mask's doing alone; the demo GGUF
(SmolLM2) shows the same on llama.cpp. Constrained, sampled and plain rows share one batch: a plain row's
answer must be what it is alone, and every row of a batch is decoded in the same forward passes.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from helpers import EXAMPLES, compose_cfg
from llama_probe import demo_backend

from adam.backends.base import Generation, GenerationRequest
from adam.backends.constraints import TokenGuide
from adam.run.runner import build_backend

TICKET = json.loads((EXAMPLES / "ticket.schema.json").read_text(encoding="utf-8"))
ORDER = {  # nested objects, arrays, integers with ranges, enums, required fields
    "type": "object",
    "properties": {
        "customer": {"type": "object", "properties": {"age": {"type": "integer", "minimum": 18, "maximum": 99},
                                                       "vip": {"type": "boolean"}}, "required": ["age", "vip"],
                     "additionalProperties": False},  # without it, a model may add keys until max_tokens
        "items": {"type": "array", "items": {"enum": ["tea", "cake", "bread"]}, "minItems": 1, "maxItems": 3},
        "note": {"type": "string", "maxLength": 6},
    },
    "required": ["customer", "items", "note"],
    "additionalProperties": False,
}  # fmt: skip
LABELS = ("positive", "negative", "neutral")


def _rf(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}


def _ask(text: str, **kw) -> GenerationRequest:
    return GenerationRequest(messages=({"role": "user", "content": text},), **kw)


def _check(gen: Generation, request: GenerationRequest) -> None:
    assert gen.finish_reason == "stop", gen
    if request.choice:
        assert gen.text in request.choice
    else:
        jsonschema.validate(json.loads(gen.text), request.response_format["json_schema"]["schema"])


# --------------------------------------------------------------------- huggingface on the tiny random Qwen3
@pytest.fixture(scope="module")
def tiny(tiny_qwen3_dir: Path):
    backend = build_backend(compose_cfg("size=local", f"size.path={tiny_qwen3_dir}", "hardware=cpu"))
    yield backend
    backend.close()


def test_hf_constrained_and_plain_rows_share_decode_steps(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    order = _ask("An order, please", response_format=_rf(ORDER), max_tokens=60)
    label = _ask("The cake was lovely", choice=LABELS, max_tokens=12)
    sampled = _ask("Any object", response_format={"type": "json_object"}, max_tokens=30, temperature=0.9, seed=5)
    plain = _ask("The river runs past the old mill", max_tokens=12)
    alone = [tiny.generate([r])[0] for r in (order, plain)]
    model = tiny._model().model
    monkeypatch.setattr(model, "generate", lambda *a, **kw: pytest.fail("generate() is not adam's decode loop"))
    rows: list[int] = []
    handle = model.register_forward_hook(lambda _m, _a, kw, _o: rows.append(kw["input_ids"].shape[0]), with_kwargs=True)
    try:
        out = tiny.generate([order, label, sampled, plain])
    finally:
        handle.remove()
    assert rows[:2] == [4, 4], "the four prompts are read together and their first tokens decoded together"
    for gen, request in zip(out[:3], (order, label, {"response_format": _rf({"type": "object"})}), strict=True):
        _check(gen, request if isinstance(request, GenerationRequest) else _ask("x", **request))
    assert out[0].text == alone[0].text, "a constrained row's answer does not depend on its neighbours"
    assert out[3].text == alone[1].text, "a plain row is not touched by its neighbours' masks"
    assert tiny.token_guide().stats.compiled >= 1


def test_hf_logprobs_are_over_what_the_constraint_allows(tiny) -> None:
    gen = tiny.generate_one(_ask("Was it good?", choice=LABELS, logprobs=3, max_tokens=12))
    assert gen.text in LABELS and gen.logprobs is not None
    assert len(gen.logprobs) == gen.completion_tokens  # the end token's entry too
    first = gen.logprobs[0]
    assert first["top_logprobs"][0]["logprob"] == pytest.approx(first["logprob"])  # greedy: the most likely
    assert all(any(label.startswith(t["token"]) for label in LABELS) for t in first["top_logprobs"])
    assert sum(2.718281828 ** t["logprob"] for t in first["top_logprobs"]) == pytest.approx(1.0, abs=1e-6)
    plain = tiny.generate_one(_ask("Was it good?", logprobs=0, max_tokens=5))
    assert [e["top_logprobs"] for e in plain.logprobs or []] == [[]] * plain.completion_tokens
    assert "".join(e["token"] for e in plain.logprobs or []).startswith(plain.text[:3])


def _reference(backend, request: GenerationRequest) -> tuple[str, list[float]]:
    """Greedy constrained decoding the slow way, as generate() with the mask did it: the whole sequence through
    the model at every step, no cache, no batch; (text, each token's logprob over the masked scores)."""
    import torch

    from adam.backends.hf_model import running

    lm = backend._model()
    ids, made, logprobs = backend._prompt_ids(request), [], []
    row = backend.token_guide().row(request)
    with running(lm, "generation"):
        while len(made) < request.max_tokens and (not made or made[-1] not in lm.eos_ids):
            scores = lm.model(input_ids=torch.tensor([ids + made])).logits[0, -1].float()
            scores[~torch.from_numpy(row.allowed()[: scores.shape[0]])] = float("-inf")
            made.append(int(scores.argmax()))
            logprobs.append(float(torch.log_softmax(scores, -1)[made[-1]]))
            row.accept(made[-1])
    return lm.tokenizer.decode(made, skip_special_tokens=True), logprobs


def test_hf_a_constrained_row_decodes_as_generate_did_and_streams_token_by_token(tiny) -> None:
    order = _ask("An order, please", response_format=_rf(ORDER), max_tokens=60, logprobs=2)
    label = _ask("Was it good?", choice=LABELS, logprobs=3, max_tokens=12)
    plain = _ask("The river runs past the old mill", max_tokens=20)
    out = tiny.generate([order, plain, label])
    for gen, request in ((out[0], order), (out[2], label)):
        _check(gen, request)
        text, logprobs = _reference(tiny, request)
        assert gen.text == text
        assert [e["logprob"] for e in gen.logprobs or []] == pytest.approx(logprobs, abs=1e-3)
    chunks = [c.text for c in tiny.stream(order) if c.text]
    assert len(chunks) > 5, "a constrained stream arrives token by token, not whole"
    assert "".join(chunks) == out[0].text


def test_a_thinking_row_thinks_freely_then_answers_to_the_constraint(tiny) -> None:
    lm = tiny._model()
    guide = TokenGuide.for_hf(lm.tokenizer, lm.eos_ids, int(lm.model.get_output_embeddings().weight.shape[0]))
    opening, closing = guide.think or (-1, -1)
    brace = lm.tokenizer.convert_tokens_to_ids("{")
    row = guide.row(_ask("x", choice=("yes", "no"), thinking=True))
    assert row is not None
    first = row.allowed()
    assert first is not None and first[opening] and not first[brace]  # may open <think>, or answer at once
    row.accept(opening)
    assert row.allowed() is None  # thinking: anything goes
    row.accept(brace)
    row.accept(closing)
    after = row.allowed()
    assert after is not None and not after[opening] and not after[closing]
    yes = lm.tokenizer("yes", add_special_tokens=False)["input_ids"]
    assert after[yes[0]]
    without = guide.row(_ask("x", choice=("yes", "no")))  # thinking off: the template closed the block
    assert without is not None and not without.allowed()[opening]  # type: ignore[index]
    gen = tiny.generate_one(_ask("Think, then answer", choice=("yes", "no"), thinking=True, max_tokens=64))
    assert gen.text in ("yes", "no") or gen.finish_reason == "length"


# --------------------------------------------------------------------- llama.cpp on the demo GGUF
@pytest.fixture(scope="module")
def demo():
    yield from demo_backend()


def test_llamacpp_extracts_valid_objects_beside_plain_rows(demo) -> None:
    tickets = [
        _ask("Extract the ticket as JSON. Ticket from Li Wei (pro plan): NoteKeeper cannot export to PDF.",
             response_format=_rf(TICKET), max_tokens=120),
        _ask("Extract the order as JSON: two teas and a cake for Ann, 34, a regular.", response_format=_rf(ORDER),
             max_tokens=80),
    ]  # fmt: skip
    label = _ask("Review: the battery died after a day. Is it positive, negative or neutral?", choice=LABELS,
                 max_tokens=8, logprobs=2)  # fmt: skip
    plain = _ask("What is the capital of France?", max_tokens=10)
    out = demo.generate([*tickets, label, plain])
    for gen, request in zip(out[:3], [*tickets, label], strict=True):
        _check(gen, request)
    assert out[3].text == demo.generate_one(plain).text, "a plain row is not touched by its neighbours' masks"
    assert out[0].text == demo.generate_one(tickets[0]).text
    entries = out[2].logprobs or []
    assert len(entries) == out[2].completion_tokens and entries[0]["logprob"] <= 0
    assert all(any(lab.startswith(t["token"].strip()) for lab in LABELS) for t in entries[0]["top_logprobs"])


def test_llamacpp_a_cut_answer_is_length(demo) -> None:
    gen = demo.generate_one(_ask("A ticket as JSON", response_format=_rf(TICKET), max_tokens=5))
    assert gen.finish_reason == "length" and gen.completion_tokens == 5
    with pytest.raises(ValueError):
        json.loads(gen.text)
