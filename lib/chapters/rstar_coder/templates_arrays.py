"""Array templates: prefix sums, Kadane, LIS, inversions, pair counting, order statistics, stacks.

Values are bounded by 10^9 (or smaller where duplicates should be common, so that comparator
bugs show). Every generator draws its own value range, so small inputs also hit edge cases.

The file is longer than the house's ~300 lines: thirteen templates of 20-40 lines each, kept together
by family so that a reader finds them.
"""

from __future__ import annotations

from textwrap import dedent

from .problems import Mutant, Problem, Variant, fmt, in_range, ints, safe

N5 = 10**5
READ = "import sys\nd = sys.stdin.read().split()\n"


def _values(rng, n, small=False):
    hi = rng.choice([3, 10, max(2, n // 2)]) if small else rng.choice([10, 10**4, 10**9])
    lo = -hi if rng.random() < 0.5 else 1
    return [rng.randint(lo, hi) for _ in range(n)]


def _gen_array(small=False):
    def generate(rng, s):
        n = s["n"]
        return fmt(n, _values(rng, n, small))
    return generate


@safe
def _valid_array(text):
    v = ints(text)
    return 1 <= v[0] <= N5 and len(v) == v[0] + 1 and in_range(v[1:], -10**9, 10**9)


def _gen_nk(k_of_n, small=False):
    def generate(rng, s):
        n = s["n"]
        return fmt((n, k_of_n(rng, n)), _values(rng, n, small))
    return generate


def _valid_nk(k_ok):
    @safe
    def validate(text):
        v = ints(text)
        n, k = v[0], v[1]
        return 1 <= n <= N5 and len(v) == n + 2 and k_ok(n, k) and in_range(v[2:], -10**9, 10**9)
    return validate


def _gen_queries(rng, s):
    n, q = s["n"], s["q"]
    a = _values(rng, n, small=True)
    qs = [sorted((rng.randint(1, n), rng.randint(1, n))) for _ in range(q)]
    return fmt((n, q), a, *qs)


@safe
def _valid_queries(text):
    v = ints(text)
    n, q = v[0], v[1]
    if not (1 <= n <= N5 and 1 <= q <= N5 and len(v) == 2 + n + 2 * q):
        return False
    qs = v[2 + n:]
    return in_range(v[2:2 + n], -10**9, 10**9) and all(1 <= qs[i] <= qs[i + 1] <= n for i in range(0, 2 * q, 2))


def _gen_points(rng, s):
    n, q = s["n"], s["q"]
    a = _values(rng, n, small=True)
    lo, hi = min(a) - 1, max(a) + 1
    return fmt((n, q), a, *[rng.randint(lo, hi) for _ in range(q)])


@safe
def _valid_points(text):
    v = ints(text)
    n, q = v[0], v[1]
    return 1 <= n <= N5 and 1 <= q <= N5 and len(v) == 2 + n + q and in_range(v[2:], -10**9 - 1, 10**9 + 1)


PREFIX_SUMS = Problem(
    "prefix_sums",
    "Given n integers a_1..a_n and q queries (l, r) with 1 <= l <= r <= n, print a_l + ... + a_r for "
    "each query, one per line. Input: `n q`, the array, then q lines `l r`. n, q <= 10^5, |a_i| <= 10^9.",
    READ + dedent("""\
        n, q = int(d[0]), int(d[1])
        p = [0] * (n + 1)
        for i in range(n):
            p[i + 1] = p[i] + int(d[2 + i])
        out = []
        for j in range(q):
            l, r = int(d[2 + n + 2 * j]), int(d[3 + n + 2 * j])
            out.append(p[r] - p[l - 1])
        print("\\n".join(map(str, out)))
        """),
    _gen_queries, _valid_queries, {"n": N5, "q": N5},
    mutants=(Mutant("off_by_one_left", "p[r] - p[l - 1]", "p[r] - p[l]"),
             Mutant("drops_last", "for i in range(n):", "for i in range(n - 1):")),
    slow=Mutant("sum_per_query", "out.append(p[r] - p[l - 1])",
                "out.append(sum(int(x) for x in d[1 + l:2 + r]))"),
    p_correct=0.8,
)

MAX_SUBARRAY = Problem(
    "max_subarray",
    "Given n integers, print the largest sum of a non-empty contiguous subarray. Input: n, then the "
    "array. n <= 10^5, |a_i| <= 10^9.",
    READ + dedent("""\
        n = int(d[0])
        best = cur = int(d[1])
        for x in d[2:n + 1]:
            x = int(x)
            cur = max(x, cur + x)
            best = max(best, cur)
        print(best)
        """),
    _gen_array(), _valid_array, {"n": N5},
    mutants=(Mutant("allows_empty", "cur = max(x, cur + x)", "cur = max(0, cur + x)"),
             Mutant("drops_last", "d[2:n + 1]", "d[2:n]")),
    variants=(Variant("prefix_minimum", READ + dedent("""\
        best, low, s = None, 0, 0
        for x in map(int, d[1:]):
            s += x
            best = s - low if best is None else max(best, s - low)
            low = min(low, s)
        print(best)
        """)),),
    slow=READ + dedent("""\
        n = int(d[0]); a = list(map(int, d[1:n + 1]))
        best = a[0]
        for i in range(n):
            s = 0
            for j in range(i, n):
                s += a[j]
                if s > best:
                    best = s
        print(best)
        """),
    p_correct=0.5, dominant="allows_empty",
)

LIS = Problem(
    "lis",
    "Given n integers, print the length of the longest strictly increasing subsequence. Input: n, "
    "then the array. n <= 10^5.",
    "import sys\nfrom bisect import bisect_left\nd = sys.stdin.read().split()\n" + dedent("""\
        n = int(d[0])
        tails = []
        for x in map(int, d[1:n + 1]):
            i = bisect_left(tails, x)
            if i == len(tails):
                tails.append(x)
            else:
                tails[i] = x
        print(len(tails))
        """),
    _gen_array(small=True), _valid_array, {"n": N5},
    mutants=(Mutant("non_strict", "from bisect import bisect_left", "from bisect import bisect_right as bisect_left"),),
    variants=(Variant("longest_run", READ + dedent("""\
        a = list(map(int, d[1:])); best = cur = 1
        for i in range(1, len(a)):
            cur = cur + 1 if a[i] > a[i - 1] else 1
            best = max(best, cur)
        print(best)
        """), correct=False),),
    slow=READ + dedent("""\
        n = int(d[0]); a = list(map(int, d[1:n + 1])); f = [1] * n
        for i in range(n):
            for j in range(i):
                if a[j] < a[i] and f[j] + 1 > f[i]:
                    f[i] = f[j] + 1
        print(max(f))
        """),
    hard=True, p_correct=0.35, dominant="non_strict",
)

INVERSIONS = Problem(
    "inversion_count",
    "Given n integers, print the number of pairs i < j with a_i > a_j. Input: n, then the array. "
    "n <= 10^5.",
    READ + dedent("""\
        n = int(d[0]); a = list(map(int, d[1:n + 1]))
        rank = {v: i + 1 for i, v in enumerate(sorted(set(a)))}
        m = len(rank); tree = [0] * (m + 1); inv = 0
        for k, x in enumerate(a):
            r = rank[x]
            i = r; s = 0
            while i > 0:
                s += tree[i]; i -= i & -i
            inv += k - s
            i = r
            while i <= m:
                tree[i] += 1; i += i & -i
        print(inv)
        """),
    _gen_array(small=True), _valid_array, {"n": N5},
    mutants=(Mutant("counts_equal", "i = r; s = 0", "i = r - 1; s = 0"),),
    slow=READ + dedent("""\
        n = int(d[0]); a = list(map(int, d[1:n + 1])); inv = 0
        for i in range(n):
            x = a[i]
            for j in range(i + 1, n):
                if x > a[j]:
                    inv += 1
        print(inv)
        """),
    p_correct=0.6,
)

TWO_SUM = Problem(
    "two_sum_count",
    "Given n integers and a target k, print the number of pairs i < j with a_i + a_j = k. Input: "
    "`n k`, then the array. n <= 10^5.",
    READ + dedent("""\
        n, k = int(d[0]), int(d[1])
        seen = {}; count = 0
        for x in map(int, d[2:n + 2]):
            count += seen.get(k - x, 0)
            seen[x] = seen.get(x, 0) + 1
        print(count)
        """),
    _gen_nk(lambda rng, n: rng.randint(-6, 6), small=True), _valid_nk(lambda n, k: abs(k) <= 2 * 10**9), {"n": N5},
    mutants=(Mutant("counts_self_pairs", "count += seen.get(k - x, 0)\n    seen[x] = seen.get(x, 0) + 1",
                    "seen[x] = seen.get(x, 0) + 1\n    count += seen.get(k - x, 0)"),
             Mutant("ignores_duplicates", "seen[x] = seen.get(x, 0) + 1", "seen[x] = 1")),
    slow=READ + dedent("""\
        n, k = int(d[0]), int(d[1]); a = list(map(int, d[2:n + 2])); c = 0
        for i in range(n):
            for j in range(i + 1, n):
                if a[i] + a[j] == k:
                    c += 1
        print(c)
        """),
    p_correct=0.7,
)

KTH_SMALLEST = Problem(
    "kth_smallest",
    "Given n integers and k (1 <= k <= n), print the k-th smallest value (counting repeated values). "
    "Input: `n k`, then the array. n <= 10^5.",
    READ + "n, k = int(d[0]), int(d[1])\nprint(sorted(map(int, d[2:n + 2]))[k - 1])\n",
    _gen_nk(lambda rng, n: rng.randint(1, n), small=True), _valid_nk(lambda n, k: 1 <= k <= n), {"n": N5},
    mutants=(Mutant("zero_based_k", "[k - 1]", "[min(k, n - 1)]"),
             Mutant("distinct_values", "sorted(map(int, d[2:n + 2]))[k - 1]",
                    "sorted(set(map(int, d[2:n + 2])))[min(k, len(set(d[2:n + 2]))) - 1]")),
    p_correct=0.9,
)

WINDOW_MAX = Problem(
    "sliding_window_max",
    "Given n integers and a window size k (1 <= k <= n), print the maximum of every window of k "
    "consecutive values, n - k + 1 numbers on one line. Input: `n k`, then the array. n <= 10^5.",
    "import sys\nfrom collections import deque\nd = sys.stdin.read().split()\n" + dedent("""\
        n, k = int(d[0]), int(d[1]); a = list(map(int, d[2:n + 2]))
        q = deque(); out = []
        for i, x in enumerate(a):
            while q and a[q[-1]] <= x:
                q.pop()
            q.append(i)
            if q[0] <= i - k:
                q.popleft()
            if i >= k - 1:
                out.append(a[q[0]])
        print(" ".join(map(str, out)))
        """),
    _gen_nk(lambda rng, n: rng.randint(1, n)), _valid_nk(lambda n, k: 1 <= k <= n), {"n": N5},
    mutants=(Mutant("window_too_wide", "if q[0] <= i - k:", "if q[0] < i - k:"),),
    slow=READ + dedent("""\
        n, k = int(d[0]), int(d[1]); a = list(map(int, d[2:n + 2]))
        out = []
        for i in range(n - k + 1):
            m = a[i]
            for j in range(i + 1, i + k):
                if a[j] > m:
                    m = a[j]
            out.append(m)
        print(" ".join(map(str, out)))
        """),
    p_correct=0.75,
)

NEXT_GREATER = Problem(
    "next_greater",
    "Given n integers, print for each position the first value to its right that is strictly "
    "greater, or -1 if there is none. Input: n, then the array. n <= 10^5.",
    READ + dedent("""\
        n = int(d[0]); a = list(map(int, d[1:n + 1]))
        res = [-1] * n; st = []
        for i, x in enumerate(a):
            while st and a[st[-1]] < x:
                res[st.pop()] = x
            st.append(i)
        print(" ".join(map(str, res)))
        """),
    _gen_array(small=True), _valid_array, {"n": N5},
    mutants=(Mutant("greater_or_equal", "a[st[-1]] < x", "a[st[-1]] <= x"),
             Mutant("last_is_zero", "res = [-1] * n", "res = [-1] * (n - 1) + [0]")),
    p_correct=0.55,
)

SUBARRAY_SUM_K = Problem(
    "subarray_sum_k",
    "Given n integers (possibly negative) and k, print the number of non-empty contiguous subarrays "
    "whose sum is exactly k. Input: `n k`, then the array. n <= 10^5, |a_i| <= 10.",
    READ + dedent("""\
        n, k = int(d[0]), int(d[1])
        cnt = {0: 1}; s = 0; total = 0
        for x in map(int, d[2:n + 2]):
            s += x
            total += cnt.get(s - k, 0)
            cnt[s] = cnt.get(s, 0) + 1
        print(total)
        """),
    lambda rng, s: fmt((s["n"], rng.randint(-3, 10)), [rng.randint(rng.choice([-10, 0]), 10) for _ in range(s["n"])]),
    _valid_nk(lambda n, k: abs(k) <= 10**6), {"n": N5},
    mutants=(Mutant("misses_prefixes", "cnt = {0: 1}", "cnt = {}"),),
    variants=(Variant("two_pointers", READ + dedent("""\
        n, k = int(d[0]), int(d[1]); a = list(map(int, d[2:n + 2]))
        total = s = lo = 0
        for hi in range(n):
            s += a[hi]
            while s > k and lo <= hi:
                s -= a[lo]; lo += 1
            if s == k:
                total += 1
        print(total)
        """), correct=False),),
    slow=READ + dedent("""\
        n, k = int(d[0]), int(d[1]); a = list(map(int, d[2:n + 2])); total = 0
        for i in range(n):
            s = 0
            for j in range(i, n):
                s += a[j]
                if s == k:
                    total += 1
        print(total)
        """),
    hard=True, p_correct=0.45,
)

COUNT_LEQ = Problem(
    "count_leq_queries",
    "Given n integers and q queries x, print for each query how many a_i are <= x, one per line. "
    "Input: `n q`, the array, then the q queries. n, q <= 10^5.",
    "import sys\nfrom bisect import bisect_right\nd = sys.stdin.read().split()\n" + dedent("""\
        n, q = int(d[0]), int(d[1])
        a = sorted(map(int, d[2:n + 2]))
        print("\\n".join(str(bisect_right(a, int(x))) for x in d[n + 2:n + 2 + q]))
        """),
    _gen_points, _valid_points, {"n": N5, "q": N5},
    mutants=(Mutant("strictly_less", "from bisect import bisect_right", "from bisect import bisect_left as bisect_right"),),
    slow=Mutant("linear_scan", "str(bisect_right(a, int(x)))", "str(sum(1 for v in a if v <= int(x)))"),
    p_correct=0.65,
)

STOCK_PROFIT = Problem(
    "stock_profit",
    "Given n daily prices, print the largest p_j - p_i over i < j, or 0 if no trade gains. Input: n, "
    "then the prices. n <= 10^5, 1 <= p_i <= 10^9.",
    READ + dedent("""\
        n = int(d[0]); best = 0; lo = int(d[1])
        for x in map(int, d[2:n + 1]):
            best = max(best, x - lo)
            lo = min(lo, x)
        print(best)
        """),
    lambda rng, s: fmt(s["n"], (lambda p: sorted(p, reverse=True) if rng.random() < 0.2 else p)(
        [rng.randint(1, 10**9) for _ in range(s["n"])])),
    safe(lambda t: (lambda v: 1 <= v[0] <= N5 and len(v) == v[0] + 1 and in_range(v[1:], 1, 10**9))(ints(t))),
    {"n": N5},
    mutants=(Mutant("allows_loss", "best = 0;", "best = -10**18;"),),
    slow=READ + dedent("""\
        n = int(d[0]); p = list(map(int, d[1:n + 1])); best = 0
        for i in range(n):
            for j in range(i + 1, n):
                if p[j] - p[i] > best:
                    best = p[j] - p[i]
        print(best)
        """),
    p_correct=0.85,
)

MODE_VALUE = Problem(
    "mode_value",
    "Given n integers, print the value that occurs most often; on a tie print the smallest such "
    "value. Input: n, then the array. n <= 10^5.",
    "import sys\nfrom collections import Counter\nd = sys.stdin.read().split()\n" + dedent("""\
        n = int(d[0]); c = Counter(map(int, d[1:n + 1]))
        print(min(c, key=lambda v: (-c[v], v)))
        """),
    _gen_array(small=True), _valid_array, {"n": N5},
    mutants=(Mutant("largest_on_tie", "(-c[v], v)", "(-c[v], -v)"),
             Mutant("first_seen_on_tie", "min(c, key=lambda v: (-c[v], v))", "c.most_common(1)[0][0]")),
    hard=True, p_correct=0.3, dominant="first_seen_on_tie",
)

COUNT_DISTINCT = Problem(
    "count_distinct",
    "Given n integers, print how many distinct values they contain. Input: n, then the array. "
    "n <= 10^5.",
    READ + dedent("""\
        n = int(d[0]); a = sorted(map(int, d[1:n + 1]))
        print(sum(1 for i in range(n) if i == 0 or a[i] != a[i - 1]))
        """),
    _gen_array(small=True), _valid_array, {"n": N5},
    mutants=(Mutant("wraps_around", "i == 0 or ", ""),),
    variants=(Variant("set_size", READ + "print(len(set(d[1:int(d[0]) + 1])))\n"),),
    p_correct=0.9,
)

PROBLEMS = (PREFIX_SUMS, MAX_SUBARRAY, LIS, INVERSIONS, TWO_SUM, KTH_SMALLEST, WINDOW_MAX, NEXT_GREATER,
            SUBARRAY_SUM_K, COUNT_LEQ, STOCK_PROFIT, MODE_VALUE, COUNT_DISTINCT)
