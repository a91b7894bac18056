"""Bad input: an unknown preset, task, suite, scaling, corpus or tokenizer gives one clear line
that lists the valid names."""

import pytest

from msrbook.models import config, corpus, rope, tasks
from msrbook.errors import BookError

CASES = [
    (lambda: config.preset("tiny"), "'tiny'", list(config.PRESETS)),
    (lambda: tasks.make("sudoku", 1, 100, 0), "'sudoku'", list(tasks.TASKS)),
    (lambda: tasks.suite("ruler", 1, [100], 0), "'ruler'", list(tasks.SUITES)),
    (lambda: rope.check_scaling("longrope"), "'longrope'", list(rope.SCALINGS)),
    (lambda: corpus.load_corpus("wikitext"), "'wikitext'", list(corpus.CORPORA)),
    (lambda: corpus.tokenizer("gpt2"), "'gpt2'", list(corpus.TOKENIZERS)),
]


@pytest.mark.parametrize("call,bad,valid", CASES)
def test_unknown_name_is_one_line_with_valid_names(call, bad, valid):
    with pytest.raises(BookError) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg and bad in msg
    assert all(v in msg for v in valid), msg


def test_presets_are_exact_keys():
    assert config.preset("ci").name == "ci"
    with pytest.raises(BookError):
        config.preset("CI")  # exact names only, no case folding or prefix matching
    for name, p in config.PRESETS.items():
        assert p.name == name


def test_head_layout_must_divide():
    with pytest.raises(BookError, match="multiple of"):
        config.ModelConfig(n_q=6, n_k=4)
