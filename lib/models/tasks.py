"""Synthetic long-context tasks, generated from a seed and scored exactly.

Every sample is a prompt, an exact answer string and the length it was built for. The prompt ends
where the model's continuation should begin, so a plain language model can answer it.

* ``passkey``:  a 5-digit pass key hidden at a random depth in repeated filler (Mohtashami and
  Jaggi's passkey retrieval). Answer: the digits.
* ``needle``:   "One of the special magic numbers for <key> is: <7 digits>." in varied filler,
  with several distractor needles for other keys (RULER's niah-multikey style). Answer: the digits.
* ``vartrack``: multi-hop variable tracking: VAR A = 12345, later VAR B = A, VAR C = B ... spread
  through filler, with a distractor chain. Answer: the number the last variable holds.
* ``recall``:   a long-generation task: a list of words at the very start, filler, then "repeat
  the list": the whole answer depends on far-back context.

Length is counted by `count` (default: UTF-8 bytes, the byte models' tokens; pass a tokenizer's
length for SmolLM2). Filler is added sentence by sentence, each counted with its leading space,
until the prompt reaches `length`: to the byte for bytes, to within ~1% for SmolLM2's tokenizer
(tests/models/test_tasks.py checks both). A prompt is never shorter than its fixed text.

`score(sample, output)` is exact: 1.0 when the first number in the output equals the answer
(passkey, needle, vartrack), and for recall the fraction of list positions reproduced exactly.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable

from ..errors import BookError

FILLER = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.")
WORDS = ("apple", "river", "candle", "mirror", "falcon", "garden", "lantern", "pepper", "violin", "harbor",
         "copper", "meadow", "pillow", "thunder", "saddle", "marble", "orchid", "walnut", "beacon", "cobalt")
KEYS = ("pale-fox", "silent-oak", "brave-owl", "quick-elk", "old-pine", "red-wolf", "blue-crab", "wild-hare")


@dataclass(frozen=True)
class Sample:
    task: str  # key in TASKS
    prompt: str  # the text the model continues
    answer: str  # the exact expected continuation
    length: int  # the target prompt length (in `count` units) it was built for
    seed: int  # the seed that made it
    meta: dict = field(default_factory=dict)  # e.g. needle depth, hops


def _fill(rng: random.Random, parts: list[str], length: int, count: Callable[[str], int], varied: bool) -> str:
    """Join `parts` (fixed text, in order) with filler sentences spread between them until the
    whole reaches `length`; the first and last parts stay at the ends."""
    fixed = count(" ".join(parts))
    slots = [[] for _ in range(len(parts) - 1)]
    total, i = fixed, 0
    while total < length:
        s = rng.choice(FILLER) if varied else FILLER[i % len(FILLER)]
        slots[rng.randrange(len(slots))].append(s)
        total += count(" " + s)  # with its leading space, as it will stand in the prompt
        i += 1
    out = [parts[0]]
    for slot, part in zip(slots, parts[1:]):
        out += slot + [part]
    return " ".join(out)


def make_passkey(rng: random.Random, length: int, count) -> tuple[str, str, dict]:
    key = str(rng.randint(10000, 99999))
    head = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
            "I will quiz you about the important information there.")
    needle = f"The pass key is {key}. Remember it. {key} is the pass key."
    tail = "What is the pass key? The pass key is"
    body_len = length - count(head) - count(" " + needle) - count(" " + tail)
    filler = _fill(rng, [head, tail], body_len + count(head) + count(" " + tail), count, varied=False)
    sentences = filler.removeprefix(head).removesuffix(tail).split()  # words of the filler
    depth = rng.random()
    cut = next((i for i in range(int(depth * len(sentences)), len(sentences)) if sentences[i - 1].endswith(".")),
               len(sentences)) if sentences else 0  # the first sentence end at or after the depth
    body = " ".join(sentences[:cut] + needle.split() + sentences[cut:])
    return f"{head} {body} {tail}", key, {"depth": round(depth, 3)}


def make_needle(rng: random.Random, length: int, count) -> tuple[str, str, dict]:
    keys = rng.sample(KEYS, 4)
    values = [str(rng.randint(1_000_000, 9_999_999)) for _ in keys]
    needles = [f"One of the special magic numbers for {k} is: {v}." for k, v in zip(keys, values)]
    rng.shuffle(needles)
    q = keys[0]
    head = "Some special magic numbers are hidden in the following text. Memorize them."
    tail = f"What is the special magic number for {q}? The special magic number for {q} is:"
    return _fill(rng, [head, *needles, tail], length, count, varied=True), values[0], {"distractors": 3}


def make_vartrack(rng: random.Random, length: int, count, hops: int = 4) -> tuple[str, str, dict]:
    names = rng.sample([a + b + c for a in "QWXZJK" for b in "BCDFGHLMNPRST" for c in "AEIOUY"], 2 * (hops + 1))
    value, other = str(rng.randint(10000, 99999)), str(rng.randint(10000, 99999))
    chain, decoy = names[:hops + 1], names[hops + 1:]
    stmts = [f"VAR {chain[0]} = {value}."] + [f"VAR {chain[i]} = {chain[i - 1]}." for i in range(1, hops + 1)]
    dstmts = [f"VAR {decoy[0]} = {other}."] + [f"VAR {decoy[i]} = {decoy[i - 1]}." for i in range(1, hops + 1)]
    merged = []  # interleave the two chains, each kept in order
    while stmts or dstmts:
        merged.append((stmts if stmts and (not dstmts or rng.random() < 0.5) else dstmts).pop(0))
    head = "Memorize and track the chain of variable assignments hidden in the following text."
    tail = f"What is the value of {chain[-1]}? The value of {chain[-1]} is"
    return _fill(rng, [head, *merged, tail], length, count, varied=True), value, {"hops": hops}


def make_recall(rng: random.Random, length: int, count, items: int = 8) -> tuple[str, str, dict]:
    words = rng.sample(WORDS, items)
    answer = ", ".join(words)
    head = f"Remember this list of words: {answer}."
    tail = "Now repeat the list of words from the beginning, in order:"
    return _fill(rng, [head, tail], length, count, varied=True), answer, {"items": items}


TASKS = {"passkey": make_passkey, "needle": make_needle, "vartrack": make_vartrack, "recall": make_recall}
SUITES = {
    "retrieval": ("passkey", "needle"),  # find one fact at any depth
    "multihop": ("vartrack",),  # follow a chain of references
    "longgen": ("recall",),  # generate an answer that depends on far-back context
    "all": ("passkey", "needle", "vartrack", "recall"),
}


def make(task: str, n: int, length: int, seed: int, count: Callable[[str], int] = lambda s: len(s.encode())) -> list[Sample]:
    """n samples of `task` at `length`; sample i uses random.Random(f"{task}/{length}/{seed}/{i}")."""
    if task not in TASKS:
        raise BookError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    out = []
    for i in range(n):
        rng = random.Random(f"{task}/{length}/{seed}/{i}")
        prompt, answer, meta = TASKS[task](rng, length, count)
        out.append(Sample(task, prompt, answer, length, seed, meta))
    return out


def suite(name: str, n: int, lengths: list[int], seed: int, count=lambda s: len(s.encode())) -> list[Sample]:
    """Every task of suite `name` at every length, n samples each."""
    if name not in SUITES:
        raise BookError(f"unknown task suite {name!r}; valid suites: {', '.join(SUITES)}")
    return [s for task in SUITES[name] for length in lengths for s in make(task, n, length, seed, count)]


def score(sample: Sample, output: str) -> float:
    """Exact score of a model's continuation (see the module docstring)."""
    if sample.task == "recall":
        want = sample.answer.split(", ")
        got = [w.strip(" .\n") for w in output.strip().split("\n")[0].split(",")]
        return sum(a == b for a, b in zip(want, got)) / len(want)
    m = re.search(r"\d+", output)
    return float(m is not None and m.group(0) == sample.answer)


def max_new_tokens(sample: Sample, count: Callable[[str], int] = lambda s: len(s.encode())) -> int:
    """A generation budget: the answer's length in `count` units (bytes by default), plus 8."""
    return count(" " + sample.answer) + 8
