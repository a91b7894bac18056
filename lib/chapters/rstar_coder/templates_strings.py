"""String and interval templates: bracket balance, palindromes, run-length encoding, pattern
counting, interval merging, maximum overlap.

Generators mix structured cases (balanced strings, palindromes, touching intervals) with random
ones, so the edge cases the mutants get wrong occur at every scale.
"""

from __future__ import annotations

from textwrap import dedent

from .problems import Mutant, Problem, Variant, fmt, in_range, ints, safe

N5 = 10**5
READ = "import sys\nd = sys.stdin.read().split()\n"
PAIRS = {"(": ")", "[": "]", "{": "}"}


def _gen_brackets(rng, s):
    n = s["n"]
    out, stack = [], []
    for i in range(n):
        if stack and (rng.random() < 0.5 or len(stack) >= n - i):
            out.append(PAIRS[stack.pop()])
        else:
            stack.append(rng.choice("([{"))
            out.append(stack[-1])
    r = rng.random()
    if r < 0.25 and n >= 2:  # swap two neighbours: crossed pairs like "([)]" or a wrong order
        i = rng.randrange(n - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    elif r < 0.4:
        out[rng.randrange(n)] = rng.choice("()[]{}")
    return fmt("".join(out))


@safe
def _valid_brackets(text):
    parts = text.split()
    return len(parts) == 1 and 1 <= len(parts[0]) <= N5 and set(parts[0]) <= set("()[]{}")


def _gen_palindrome(rng, s):
    n = s["n"]
    abc = rng.choice(["a", "ab", "abc"])
    half = [rng.choice(abc) for _ in range((n + 1) // 2)]
    w = half + half[: n // 2][::-1]
    if rng.random() < 0.5:
        w[rng.randrange(n)] = rng.choice("abcd")
    return fmt("".join(w))


def _valid_word(max_len):
    @safe
    def validate(text):
        parts = text.split()
        return len(parts) == 1 and 1 <= len(parts[0]) <= max_len and parts[0].isalpha() and parts[0].islower()
    return validate


def _gen_runs(rng, s):
    n = s["n"]
    w, c = [], rng.choice("ab")
    while len(w) < n:
        w.extend(c * min(n - len(w), rng.randint(1, rng.choice([1, 3, 20]))))
        c = rng.choice("abc".replace(c, ""))
    return fmt("".join(w))


def _gen_pattern(rng, s):
    n, m = s["n"], s["m"]
    if m > n:
        return None
    abc = rng.choice(["a", "ab", "abc"])
    return fmt("".join(rng.choice(abc) for _ in range(n)), "".join(rng.choice(abc) for _ in range(m)))


@safe
def _valid_pattern(text):
    t, p = text.split()
    return 1 <= len(p) <= min(10, len(t)) and len(t) <= N5 and (t + p).isalpha() and (t + p).islower()


def _gen_intervals(rng, s):
    n = s["n"]
    hi = rng.choice([10, 2 * n, 10**9])
    iv = []
    for _ in range(n):
        a, b = rng.randint(1, hi), rng.randint(1, hi)
        iv.append((min(a, b), max(a, b)))
    return fmt(n, *iv)


@safe
def _valid_intervals(text):
    v = ints(text)
    n = v[0]
    return 1 <= n <= N5 and len(v) == 1 + 2 * n and in_range(v[1:], 1, 10**9) and all(
        v[i] <= v[i + 1] for i in range(1, 2 * n, 2))


BRACKETS = Problem(
    "bracket_balance",
    "Given a string of the characters ()[]{}, print YES if every bracket is closed by the matching "
    "bracket in the right order, else NO. Input: the string, length 1..10^5.",
    READ + dedent("""\
        pair = {")": "(", "]": "[", "}": "{"}; st = []; ok = True
        for ch in d[0]:
            if ch in "([{":
                st.append(ch)
            elif not st or st.pop() != pair[ch]:
                ok = False
                break
        print("YES" if ok and not st else "NO")
        """),
    _gen_brackets, _valid_brackets, {"n": N5},
    mutants=(Mutant("ignores_leftovers", '"YES" if ok and not st else "NO"', '"YES" if ok else "NO"'),
             Mutant("pops_empty_stack", "elif not st or st.pop() != pair[ch]:", "elif st.pop() != pair[ch]:")),
    variants=(Variant("three_counters", READ + dedent("""\
        c = {"(": 0, "[": 0, "{": 0}; close = {")": "(", "]": "[", "}": "{"}; ok = True
        for ch in d[0]:
            if ch in c:
                c[ch] += 1
            else:
                c[close[ch]] -= 1
                ok = ok and c[close[ch]] >= 0
        print("YES" if ok and not any(c.values()) else "NO")
        """), correct=False),),
    p_correct=0.5, dominant="ignores_leftovers",
)

PALINDROME = Problem(
    "palindrome",
    "Given a lowercase word, print YES if it reads the same backwards, else NO. Input: the word, "
    "length 1..10^5.",
    READ + "s = d[0]; n = len(s)\nprint(\"YES\" if all(s[i] == s[n - 1 - i] for i in range(n // 2)) else \"NO\")\n",
    _gen_palindrome, _valid_word(N5), {"n": N5},
    mutants=(Mutant("skips_inner_pair", "range(n // 2)", "range(n // 2 - 1)"),),
    variants=(Variant("reversed_copy", READ + "print(\"YES\" if d[0] == d[0][::-1] else \"NO\")\n"),),
    p_correct=0.85,
)

RUN_LENGTH = Problem(
    "run_length",
    "Given a lowercase word, print its run-length encoding: each maximal run of one letter as the "
    "letter followed by the run's length (aaab -> a3b1). Input: the word, length 1..10^5.",
    READ + dedent("""\
        s = d[0]; out = []; cnt = 1
        for i in range(1, len(s)):
            if s[i] == s[i - 1]:
                cnt += 1
            else:
                out.append(s[i - 1] + str(cnt)); cnt = 1
        out.append(s[-1] + str(cnt))
        print("".join(out))
        """),
    _gen_runs, _valid_word(N5), {"n": N5},
    mutants=(Mutant("drops_last_run", "out.append(s[-1] + str(cnt))\n", ""),),
    variants=(Variant("groupby", "import sys\nfrom itertools import groupby\n"
                      "s = sys.stdin.read().split()[0]\n"
                      "print(\"\".join(k + str(len(list(g))) for k, g in groupby(s)))\n"),),
    p_correct=0.7,
)

PATTERN_COUNT = Problem(
    "pattern_count",
    "Given a text t and a pattern p, print how many positions of t start an occurrence of p "
    "(occurrences may overlap). Input: t and p on two lines; |t| <= 10^5, 1 <= |p| <= min(10, |t|).",
    READ + dedent("""\
        t, p = d[0], d[1]
        c = 0; i = t.find(p)
        while i != -1:
            c += 1
            i = t.find(p, i + 1)
        print(c)
        """),
    _gen_pattern, _valid_pattern, {"n": N5, "m": 10},
    mutants=(Mutant("skips_overlaps", "i = t.find(p, i + 1)", "i = t.find(p, i + len(p))"),),
    variants=(Variant("str_count", READ + "print(d[0].count(d[1]))\n", correct=False),
              Variant("slices", READ + "t, p = d[0], d[1]\nprint(sum(t[i:i + len(p)] == p for i in range(len(t))))\n")),
    p_correct=0.3, dominant="skips_overlaps",
)

MERGE_INTERVALS = Problem(
    "merge_intervals",
    "Given n closed integer intervals [l, r], merge every two that share at least one point, "
    "repeatedly, and print how many intervals remain. Input: n, then n lines `l r`. n <= 10^5, "
    "1 <= l <= r <= 10^9.",
    READ + dedent("""\
        n = int(d[0])
        iv = sorted((int(d[1 + 2 * i]), int(d[2 + 2 * i])) for i in range(n))
        groups = 0; cur_r = -1
        for l, r in iv:
            if l <= cur_r:
                cur_r = max(cur_r, r)
            else:
                groups += 1; cur_r = r
        print(groups)
        """),
    _gen_intervals, _valid_intervals, {"n": N5},
    mutants=(Mutant("touching_not_merged", "if l <= cur_r:", "if l < cur_r:"),
             Mutant("forgets_nested", "cur_r = max(cur_r, r)", "cur_r = r")),
    p_correct=0.65,
)

MAX_OVERLAP = Problem(
    "max_overlap",
    "Given n closed integer intervals [l, r], print the largest number of them that share one "
    "point. Input: n, then n lines `l r`. n <= 10^5, 1 <= l <= r <= 10^9.",
    READ + dedent("""\
        n = int(d[0]); ev = []
        for i in range(n):
            ev.append((int(d[1 + 2 * i]), 0))
            ev.append((int(d[2 + 2 * i]), 1))
        ev.sort(); cur = best = 0
        for _, kind in ev:
            cur += 1 if kind == 0 else -1
            best = max(best, cur)
        print(best)
        """),
    _gen_intervals, _valid_intervals, {"n": N5},
    mutants=(Mutant("half_open", "ev.append((int(d[2 + 2 * i]), 1))", "ev.append((int(d[2 + 2 * i]), -1))"),),
    slow=READ + dedent("""\
        n = int(d[0]); iv = [(int(d[1 + 2 * i]), int(d[2 + 2 * i])) for i in range(n)]; best = 0
        for x, _ in iv:
            c = 0
            for l, r in iv:
                if l <= x <= r:
                    c += 1
            best = max(best, c)
        print(best)
        """),
    p_correct=0.6,
)

PROBLEMS = (BRACKETS, PALINDROME, RUN_LENGTH, PATTERN_COUNT, MERGE_INTERVALS, MAX_OVERLAP)
