"""Dynamic-programming and number templates: knapsack, edit distance, LCS, coin change (ways and
fewest coins), grid path sums, Fibonacci modulo a prime, prime counting.

Quadratic-table problems cap their scales (`max_scale`) where the CPython oracle stays within about
a third of the 1 s CPU limit: knapsack n <= 100 items with capacity <= 10^4, the two string DPs at
length <= 100, coin change with <= 10 coin values.
"""

from __future__ import annotations

from textwrap import dedent

from .problems import Mutant, Problem, Variant, fmt, in_range, ints, safe

N5 = 10**5
READ = "import sys\nd = sys.stdin.read().split()\n"


def _gen_knapsack(rng, s):
    n, cap = s["n"], s["W"]
    wmax = max(1, cap // rng.choice([1, 2, 10]))
    return fmt((n, cap), *[(rng.randint(1, wmax), rng.randint(1, 10**4)) for _ in range(n)])


@safe
def _valid_knapsack(text):
    v = ints(text)
    n, cap = v[0], v[1]
    return (1 <= n <= 100 and 1 <= cap <= 10**4 and len(v) == 2 + 2 * n and in_range(v[2::2], 1, cap)
            and in_range(v[3::2], 1, 10**4))


def _gen_two_strings(rng, s):
    abc = rng.choice(["ab", "abc", "abcdefghijklmnopqrstuvwxyz"])
    return fmt("".join(rng.choice(abc) for _ in range(s["n"])), "".join(rng.choice(abc) for _ in range(s["m"])))


@safe
def _valid_two_strings(text):
    a, b = text.split("\n")[:2]
    return all(1 <= len(x) <= 100 and x.isalpha() and x.islower() for x in (a, b)) and len(text.split()) == 2


def _gen_coins(rng, s):
    n, x = s["n"], s["X"]
    top = max(1, min(x, rng.choice([10, 100, 1000])))
    if n > top:
        return None
    return fmt((n, x), rng.sample(range(1, top + 1), n))


@safe
def _valid_coins(text):
    v = ints(text)
    n, x, c = v[0], v[1], v[2:]
    return 1 <= n <= 10 and 1 <= x <= N5 and len(c) == n and len(set(c)) == n and in_range(c, 1, N5)


def _gen_path_grid(rng, s):
    r, c = s["rows"], s["cols"]
    if r * c > N5:
        return None
    hi = rng.choice([9, 10**4])
    return fmt((r, c), *[[rng.randint(0, hi) for _ in range(c)] for _ in range(r)])


@safe
def _valid_path_grid(text):
    v = ints(text)
    r, c = v[0], v[1]
    return 1 <= r and 1 <= c and r * c <= N5 and len(v) == 2 + r * c and in_range(v[2:], 0, 10**4)


def _gen_single(rng, s):
    return fmt(rng.randint(max(1, s["n"] // 2), s["n"]) if rng.random() < 0.5 else s["n"])


@safe
def _valid_single(text):
    v = ints(text)
    return len(v) == 1 and 1 <= v[0] <= N5


KNAPSACK = Problem(
    "knapsack",
    "n items have weights w_i and values v_i. Print the largest total value of a subset whose total "
    "weight is at most W, each item used at most once. Input: `n W`, then n lines `w v`. n <= 100, "
    "W <= 10^4.",
    READ + dedent("""\
        n, W = int(d[0]), int(d[1])
        dp = [0] * (W + 1)
        for i in range(n):
            w, v = int(d[2 + 2 * i]), int(d[3 + 2 * i])
            for c in range(W, w - 1, -1):
                if dp[c - w] + v > dp[c]:
                    dp[c] = dp[c - w] + v
        print(dp[W])
        """),
    _gen_knapsack, _valid_knapsack, {"n": 100, "W": 10**4},
    mutants=(Mutant("reuses_items", "range(W, w - 1, -1)", "range(w, W + 1)"),
             Mutant("misses_exact_fit", "range(W, w - 1, -1)", "range(W, w, -1)")),
    hard=True, p_correct=0.4, dominant="reuses_items",
)

EDIT_DISTANCE = Problem(
    "edit_distance",
    "Given two lowercase strings a and b, print the fewest single-character insertions, deletions "
    "and substitutions that turn a into b. Input: a and b on two lines, each of length 1..100.",
    READ + dedent("""\
        a, b = d[0], d[1]; n, m = len(a), len(b)
        prev = list(range(m + 1))
        for i in range(1, n + 1):
            cur = [i] + [0] * m
            for j in range(1, m + 1):
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            prev = cur
        print(prev[m])
        """),
    _gen_two_strings, _valid_two_strings, {"n": 100, "m": 100},
    mutants=(Mutant("substitution_costs_two", "(a[i - 1] != b[j - 1])", "2 * (a[i - 1] != b[j - 1])"),
             Mutant("zero_first_row", "prev = list(range(m + 1))", "prev = [0] * (m + 1)")),
    p_correct=0.7,
)

LCS = Problem(
    "lcs",
    "Given two lowercase strings, print the length of their longest common subsequence. Input: the "
    "two strings on two lines, each of length 1..100.",
    READ + dedent("""\
        a, b = d[0], d[1]; n, m = len(a), len(b)
        prev = [0] * (m + 1)
        for i in range(1, n + 1):
            cur = [0] * (m + 1)
            for j in range(1, m + 1):
                if a[i - 1] == b[j - 1]:
                    cur[j] = prev[j - 1] + 1
                else:
                    cur[j] = max(prev[j], cur[j - 1])
            prev = cur
        print(prev[m])
        """),
    _gen_two_strings, _valid_two_strings, {"n": 100, "m": 100},
    mutants=(Mutant("wrong_diagonal", "cur[j] = prev[j - 1] + 1", "cur[j] = prev[j] + 1"),
             Mutant("substring_reset", "cur[j] = max(prev[j], cur[j - 1])", "cur[j] = 0")),
    p_correct=0.55,
)

COIN_WAYS = Problem(
    "coin_ways",
    "Given n distinct coin values and an amount X, print the number of multisets of coins (each "
    "value usable any number of times) that sum to X, modulo 10^9 + 7. Input: `n X`, then the coin "
    "values. n <= 10, X <= 10^5.",
    READ + dedent("""\
        n, X = int(d[0]), int(d[1]); MOD = 10**9 + 7
        ways = [1] + [0] * X
        for c in map(int, d[2:2 + n]):
            for s in range(c, X + 1):
                ways[s] = (ways[s] + ways[s - c]) % MOD
        print(ways[X])
        """),
    _gen_coins, _valid_coins, {"X": N5, "n": 10},
    mutants=(Mutant("missing_modulo", "(ways[s] + ways[s - c]) % MOD", "ways[s] + ways[s - c]"),),
    variants=(Variant("counts_orderings", READ + dedent("""\
        n, X = int(d[0]), int(d[1]); MOD = 10**9 + 7; coins = list(map(int, d[2:2 + n]))
        ways = [1] + [0] * X
        for s in range(1, X + 1):
            for c in coins:
                if c <= s:
                    ways[s] = (ways[s] + ways[s - c]) % MOD
        print(ways[X])
        """), correct=False),),
    p_correct=0.6,
)

MIN_COINS = Problem(
    "min_coins",
    "Given n distinct coin values and an amount X, print the fewest coins (each value usable any "
    "number of times) that sum to X, or -1 if X cannot be made. Input: `n X`, then the coin values. "
    "n <= 10, X <= 10^5.",
    READ + dedent("""\
        n, X = int(d[0]), int(d[1]); coins = list(map(int, d[2:2 + n])); INF = X + 1
        dp = [0] + [INF] * X
        for s in range(1, X + 1):
            dp[s] = min([dp[s - c] + 1 for c in coins if c <= s], default=INF)
        print(dp[X] if dp[X] < INF else -1)
        """),
    _gen_coins, _valid_coins, {"X": N5, "n": 10},
    mutants=(Mutant("impossible_not_flagged", "print(dp[X] if dp[X] < INF else -1)", "print(dp[X])"),),
    variants=(Variant("greedy_largest_first", READ + dedent("""\
        n, X = int(d[0]), int(d[1]); used = 0
        for c in sorted(map(int, d[2:2 + n]), reverse=True):
            used += X // c; X %= c
        print(used if X == 0 else -1)
        """), correct=False),),
    hard=True, p_correct=0.35, dominant="greedy_largest_first",
)

MIN_PATH_SUM = Problem(
    "min_path_sum",
    "A grid of R rows and C columns holds non-negative integers. Print the smallest sum of the "
    "cells on a path from the top-left to the bottom-right cell that moves only right or down. "
    "Input: `R C`, then R rows. R * C <= 10^5, values <= 10^4.",
    READ + dedent("""\
        R, C = int(d[0]), int(d[1]); dp = [0] * C
        for r in range(R):
            for c in range(C):
                x = int(d[2 + r * C + c])
                if r == 0 and c == 0: dp[c] = x
                elif r == 0: dp[c] = dp[c - 1] + x
                elif c == 0: dp[c] = dp[c] + x
                else: dp[c] = min(dp[c], dp[c - 1]) + x
        print(dp[C - 1])
        """),
    _gen_path_grid, _valid_path_grid, {"rows": N5, "cols": N5},
    mutants=(Mutant("first_row_not_summed", "elif r == 0: dp[c] = dp[c - 1] + x", "elif r == 0: dp[c] = x"),
             Mutant("takes_max", "min(dp[c], dp[c - 1])", "max(dp[c], dp[c - 1])")),
    p_correct=0.8,
)

FIB_MOD = Problem(
    "fib_mod",
    "Print the n-th Fibonacci number modulo 10^9 + 7, where F(1) = F(2) = 1. Input: n, 1 <= n <= 10^5.",
    "n = int(input())\na, b = 0, 1\nfor _ in range(n - 1):\n    a, b = b, (a + b) % 1000000007\nprint(b)\n",
    _gen_single, _valid_single, {"n": N5},
    mutants=(Mutant("missing_modulo", "(a + b) % 1000000007", "a + b"),
             Mutant("off_by_one", "range(n - 1)", "range(n)")),
    p_correct=0.5, dominant="missing_modulo",
)

COUNT_PRIMES = Problem(
    "count_primes",
    "Print how many primes are at most n. Input: n, 1 <= n <= 10^5.",
    dedent("""\
        n = int(input())
        s = bytearray([1]) * (n + 1)
        s[0] = 0
        if n >= 1:
            s[1] = 0
        i = 2
        while i * i <= n:
            if s[i]:
                s[i * i::i] = bytearray(len(range(i * i, n + 1, i)))
            i += 1
        print(sum(s))
        """),
    _gen_single, _valid_single, {"n": N5},
    mutants=(Mutant("counts_one", "    s[1] = 0", "    pass"),
             Mutant("misses_prime_squares", "while i * i <= n:", "while i * i < n:")),
    slow=dedent("""\
        n = int(input()); count = 0
        for k in range(2, n + 1):
            j = 2
            while j < k and k % j:
                j += 1
            if j == k:
                count += 1
        print(count)
        """),
    p_correct=0.75,
)

PROBLEMS = (KNAPSACK, EDIT_DISTANCE, LCS, COIN_WAYS, MIN_COINS, MIN_PATH_SUM, FIB_MOD, COUNT_PRIMES)
