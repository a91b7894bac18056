"""Synthetic tasks are seeded, hit their length, hold their answer, and are scored exactly."""

import re

import pytest

from msrbook.models import tasks


@pytest.mark.parametrize("task", tasks.TASKS)
@pytest.mark.parametrize("length", [600, 2049])  # above every task's fixed text (needle: ~410 bytes)
def test_seeded_and_of_the_asked_length(task, length):
    a, b = tasks.make(task, 3, length, seed=1), tasks.make(task, 3, length, seed=1)
    assert a == b
    assert [s.prompt for s in a] != [s.prompt for s in tasks.make(task, 3, length, seed=2)]
    for s in a:
        n = len(s.prompt.encode())
        assert length - 10 <= n <= length + 60, (task, n)  # at least ~length; one filler sentence over at most


@pytest.mark.parametrize("task", ["passkey", "needle"])
def test_retrieval_answer_is_in_the_haystack_once(task):
    for s in tasks.make(task, 5, 1000, seed=3):
        assert s.prompt.count(s.answer) == (2 if task == "passkey" else 1)  # passkey states it twice


def test_vartrack_answer_follows_the_chain():
    for s in tasks.make("vartrack", 5, 800, seed=4):
        assign = dict(re.findall(r"VAR (\w+) = (\w+)\.", s.prompt))
        var = re.search(r"What is the value of (\w+)\?", s.prompt).group(1)
        hops = 0
        while not assign[var].isdigit():
            var, hops = assign[var], hops + 1
        assert assign[var] == s.answer and hops == s.meta["hops"]


def test_recall_list_is_at_the_start():
    s = tasks.make("recall", 1, 3000, seed=5)[0]
    assert s.prompt.startswith(f"Remember this list of words: {s.answer}.")
    assert len(s.answer.split(", ")) == s.meta["items"]


def test_scores_are_exact():
    s = tasks.make("passkey", 1, 400, seed=6)[0]
    assert tasks.score(s, f" {s.answer}. What else") == 1.0
    assert tasks.score(s, f" {s.answer[:-1]}") == 0.0
    assert tasks.score(s, f" {s.answer}1") == 0.0  # a longer number is wrong, not a prefix match
    assert tasks.score(s, " I do not know") == 0.0
    r = tasks.make("recall", 1, 400, seed=6)[0]
    words = r.answer.split(", ")
    assert tasks.score(r, " " + r.answer + ".\nMore") == 1.0
    assert tasks.score(r, " " + ", ".join(words[:4] + ["x"] * 4)) == 0.5


def test_suites_by_name():
    samples = tasks.suite("retrieval", 2, [200, 400], seed=0)
    assert [(s.task, s.length) for s in samples] == [("passkey", 200)] * 2 + [("passkey", 400)] * 2 + \
        [("needle", 200)] * 2 + [("needle", 400)] * 2


def test_passkey_sits_at_its_depth():
    for s in tasks.make("passkey", 10, 4000, seed=7):
        body_start = s.prompt.index("information there.") + len("information there.")
        body_end = s.prompt.index("What is the pass key?")
        at = (s.prompt.index(f"The pass key is {s.answer}") - body_start) / (body_end - body_start)
        assert abs(at - s.meta["depth"]) < 0.03, (at, s.meta)  # one filler sentence is ~0.5% of 4000 bytes
