"""Graph templates: grid BFS, Dijkstra, topological order, components, bipartiteness, tree diameter.

Scale parameters are the vertex count n and the edge count m (or grid rows and columns), drawn
independently from the grid, so some combinations break a constraint: the generator returns None
for those it knows about. The grid generator, like a hastily written one, does not keep the target
cell open; the validator rejects those inputs, and the pipeline counts them.

The file is longer than the house's ~300 lines: six templates of 20-40 lines each, kept together
by family so that a reader finds them.
"""

from __future__ import annotations

from textwrap import dedent

from .problems import Mutant, Problem, Variant, fmt, ints, safe

N5 = 10**5
READ = "import sys\nd = sys.stdin.read().split()\n"


def _gen_grid(rng, s):
    r, c = s["rows"], s["cols"]
    if r * c > N5:
        return None
    wall = rng.choice([0.1, 0.3, 0.4])
    g = [["#" if rng.random() < wall else "." for _ in range(c)] for _ in range(r)]
    g[0][0] = "."  # the start is kept open; the target is not (the validator catches it)
    return fmt((r, c), *["".join(row) for row in g])


@safe
def _valid_grid(text):
    head, *rows = text.split()
    r, c = int(head), int(rows[0])
    g = rows[1:]
    return (1 <= r and 1 <= c and r * c <= N5 and len(g) == r and all(len(x) == c and set(x) <= {".", "#"} for x in g)
            and g[0][0] == "." and g[r - 1][c - 1] == ".")


def _gen_weighted(rng, s):
    n, m = s["n"], s["m"]
    edges = [(rng.randint(1, n), rng.randint(1, n), rng.randint(1, 10**4)) for _ in range(m)]
    return fmt((n, m), *edges)


@safe
def _valid_weighted(text):
    v = ints(text)
    n, m = v[0], v[1]
    e = v[2:]
    return (1 <= n <= N5 and 1 <= m <= N5 and len(e) == 3 * m and all(1 <= e[i] <= n and 1 <= e[i + 1] <= n
            and 1 <= e[i + 2] <= 10**4 for i in range(0, 3 * m, 3)))


def _gen_dag(rng, s):
    n, m = s["n"], s["m"]
    if n < 2 or m > n * (n - 1) // 2:
        return None
    order = list(range(1, n + 1))
    rng.shuffle(order)
    edges = set()
    while len(edges) < m:
        i, j = sorted(rng.sample(range(n), 2))
        edges.add((order[i], order[j]))
    edges = list(edges)
    if rng.random() < 0.25:  # one back edge closes a cycle
        u, v = edges[0]
        edges[-1] = (v, u)
    return fmt((n, m), *edges)


def _valid_edges(simple: bool):
    @safe
    def validate(text):
        v = ints(text)
        n, m = v[0], v[1]
        e = list(zip(v[2::2], v[3::2]))
        ok = 1 <= n <= N5 and 1 <= m <= N5 and len(v) == 2 + 2 * m and all(1 <= a <= n and 1 <= b <= n for a, b in e)
        return ok and (not simple or all(a != b for a, b in e))
    return validate


def _gen_undirected(rng, s):
    """A bipartite graph split into 1-3 components on shuffled labels; in half of the inputs one
    component gets a triangle (an odd cycle), so it may sit apart from vertex 1."""
    n, m = s["n"], s["m"]
    if n < 2:
        return None
    labels = list(range(1, n + 1))
    rng.shuffle(labels)
    k = min(rng.choice([1, 2, 3]), n // 2)
    groups = [labels[i::k] for i in range(k)]  # each has >= 2 vertices; index parity is the side
    edges = []
    for _ in range(m):
        g = rng.choice(groups)
        a, b = rng.randrange(0, len(g), 2), rng.randrange(1, len(g), 2)
        edges.append((g[a], g[b]))
    big = [g for g in groups if len(g) >= 3]
    if big and m >= 3 and rng.random() < 0.5:
        a, b, c = rng.sample(rng.choice(big), 3)
        edges[:3] = [(a, b), (b, c), (c, a)]
        rng.shuffle(edges)
    return fmt((n, m), *edges)


def _gen_tree(rng, s):
    n = s["n"]
    span = rng.choice([1, 3, n])  # 1: a path, n: a random recursive tree
    return fmt(n, *[(rng.randint(max(1, i - span), i - 1), i) for i in range(2, n + 1)])


@safe
def _valid_tree(text):
    v = ints(text)
    n = v[0]
    if not (1 <= n <= N5 and len(v) == 1 + 2 * (n - 1)):
        return False
    parent = list(range(n + 1))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for a, b in zip(v[1::2], v[2::2]):
        if not (1 <= a <= n and 1 <= b <= n) or find(a) == find(b):
            return False
        parent[find(a)] = find(b)
    return True


GRID_BFS = Problem(
    "grid_bfs",
    "A grid of R rows and C columns holds open cells `.` and walls `#`. Print the fewest steps "
    "(up, down, left, right) from the top-left to the bottom-right cell, or -1 if it cannot be "
    "reached. Both corner cells are open. Input: `R C`, then R rows. R * C <= 10^5.",
    "import sys\nfrom collections import deque\nd = sys.stdin.read().split()\n" + dedent("""\
        R, C = int(d[0]), int(d[1]); g = d[2:2 + R]
        dist = [[-1] * C for _ in range(R)]
        dist[0][0] = 0; q = deque([(0, 0)])
        while q:
            r, c = q.popleft()
            for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                nr, nc = r + dr, c + dc
                if 0 <= nr < R and 0 <= nc < C and g[nr][nc] == "." and dist[nr][nc] < 0:
                    dist[nr][nc] = dist[r][c] + 1
                    q.append((nr, nc))
        print(dist[R - 1][C - 1])
        """),
    _gen_grid, _valid_grid, {"rows": N5, "cols": N5},
    mutants=(Mutant("diagonal_moves", "((1, 0), (-1, 0), (0, 1), (0, -1))",
                    "((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))"),
             Mutant("negative_index_wraps", "0 <= nr < R and 0 <= nc < C", "nr < R and nc < C")),
    p_correct=0.6,
)

DIJKSTRA = Problem(
    "dijkstra",
    "A directed graph has n vertices and m weighted edges `u v w` (1 <= w <= 10^4; loops and "
    "repeated edges allowed). Print the length of the shortest path from vertex 1 to vertex n, or -1 "
    "if there is none. Input: `n m`, then m lines. n, m <= 10^5.",
    "import sys, heapq\nd = sys.stdin.read().split()\n" + dedent("""\
        n, m = int(d[0]), int(d[1]); INF = 10**18
        adj = [[] for _ in range(n + 1)]
        for j in range(m):
            u, v, w = int(d[2 + 3 * j]), int(d[3 + 3 * j]), int(d[4 + 3 * j])
            adj[u].append((v, w))
        dist = [INF] * (n + 1); dist[1] = 0; pq = [(0, 1)]
        while pq:
            du, u = heapq.heappop(pq)
            if du > dist[u]:
                continue
            for v, w in adj[u]:
                nd = du + w
                if nd < dist[v]:
                    dist[v] = nd
                    heapq.heappush(pq, (nd, v))
        print(dist[n] if dist[n] < INF else -1)
        """),
    _gen_weighted, _valid_weighted, {"n": N5, "m": N5},
    mutants=(Mutant("counts_hops", "nd = du + w", "nd = du + 1"),
             Mutant("prints_infinity", "print(dist[n] if dist[n] < INF else -1)", "print(dist[n])"),
             Mutant("treats_undirected", "adj[u].append((v, w))", "adj[u].append((v, w)); adj[v].append((u, w))")),
    slow=READ + dedent("""\
        n, m = int(d[0]), int(d[1]); INF = 10**18
        adj = [[] for _ in range(n + 1)]
        for j in range(m):
            adj[int(d[2 + 3 * j])].append((int(d[3 + 3 * j]), int(d[4 + 3 * j])))
        dist = [INF] * (n + 1); dist[1] = 0; done = [False] * (n + 1)
        for _ in range(n):
            u, best = 0, INF + 1
            for v in range(1, n + 1):
                if not done[v] and dist[v] < best:
                    u, best = v, dist[v]
            done[u] = True
            for v, w in adj[u]:
                dist[v] = min(dist[v], dist[u] + w)
        print(dist[n] if dist[n] < INF else -1)
        """),
    p_correct=0.7,
)

TOPO_ORDER = Problem(
    "topo_order",
    "A directed graph has n vertices and m distinct edges `u v` (u must come before v). Print the "
    "lexicographically smallest order of all vertices that respects every edge, or -1 if there is "
    "a cycle. Input: `n m`, then m lines. n, m <= 10^5.",
    "import sys, heapq\nd = sys.stdin.read().split()\n" + dedent("""\
        n, m = int(d[0]), int(d[1])
        adj = [[] for _ in range(n + 1)]; indeg = [0] * (n + 1)
        for j in range(m):
            u, v = int(d[2 + 2 * j]), int(d[3 + 2 * j])
            adj[u].append(v); indeg[v] += 1
        pq = [v for v in range(1, n + 1) if indeg[v] == 0]
        heapq.heapify(pq); order = []
        while pq:
            u = heapq.heappop(pq); order.append(u)
            for v in adj[u]:
                indeg[v] -= 1
                if indeg[v] == 0:
                    heapq.heappush(pq, v)
        print(-1 if len(order) < n else " ".join(map(str, order)))
        """),
    _gen_dag, _valid_edges(simple=True), {"n": N5, "m": N5},
    mutants=(Mutant("no_cycle_check", "-1 if len(order) < n else ", ""),),
    variants=(Variant("fifo_queue", "import sys\nfrom collections import deque\nd = sys.stdin.read().split()\n" + dedent("""\
        n, m = int(d[0]), int(d[1])
        adj = [[] for _ in range(n + 1)]; indeg = [0] * (n + 1)
        for j in range(m):
            u, v = int(d[2 + 2 * j]), int(d[3 + 2 * j])
            adj[u].append(v); indeg[v] += 1
        q = deque(v for v in range(1, n + 1) if indeg[v] == 0); order = []
        while q:
            u = q.popleft(); order.append(u)
            for v in adj[u]:
                indeg[v] -= 1
                if indeg[v] == 0:
                    q.append(v)
        print(-1 if len(order) < n else " ".join(map(str, order)))
        """), correct=False),),
    hard=True, p_correct=0.4,
)

COMPONENTS = Problem(
    "components",
    "An undirected graph has n vertices and m edges (loops and repeated edges allowed). Print the "
    "number of connected components. Input: `n m`, then m lines `u v`. n, m <= 10^5.",
    READ + dedent("""\
        n, m = int(d[0]), int(d[1])
        parent = list(range(n + 1)); comps = n
        def find(x):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x
        for j in range(m):
            a, b = find(int(d[2 + 2 * j])), find(int(d[3 + 2 * j]))
            if a != b:
                parent[a] = b; comps -= 1
        print(comps)
        """),
    lambda rng, s: fmt((s["n"], s["m"]), *[(rng.randint(1, s["n"]), rng.randint(1, s["n"])) for _ in range(s["m"])]),
    _valid_edges(simple=False), {"n": N5, "m": N5},
    mutants=(Mutant("unions_raw_vertices", "a, b = find(int(d[2 + 2 * j])), find(int(d[3 + 2 * j]))",
                    "a, b = int(d[2 + 2 * j]), int(d[3 + 2 * j])"),),
    variants=(Variant("bfs", "import sys\nfrom collections import deque\nd = sys.stdin.read().split()\n" + dedent("""\
        n, m = int(d[0]), int(d[1]); adj = [[] for _ in range(n + 1)]
        for j in range(m):
            a, b = int(d[2 + 2 * j]), int(d[3 + 2 * j]); adj[a].append(b); adj[b].append(a)
        seen = [False] * (n + 1); comps = 0
        for s in range(1, n + 1):
            if not seen[s]:
                comps += 1; seen[s] = True; q = deque([s])
                while q:
                    for v in adj[q.popleft()]:
                        if not seen[v]:
                            seen[v] = True; q.append(v)
        print(comps)
        """)),),
    p_correct=0.8,
)

BIPARTITE = Problem(
    "bipartite",
    "An undirected graph has n vertices and m edges between distinct vertices. Print YES if its "
    "vertices can be coloured with two colours so that every edge joins different colours, else NO. "
    "Input: `n m`, then m lines `u v`. n, m <= 10^5.",
    "import sys\nfrom collections import deque\nd = sys.stdin.read().split()\n" + dedent("""\
        n, m = int(d[0]), int(d[1]); adj = [[] for _ in range(n + 1)]
        for j in range(m):
            a, b = int(d[2 + 2 * j]), int(d[3 + 2 * j]); adj[a].append(b); adj[b].append(a)
        color = [0] * (n + 1); ok = True
        for s in range(1, n + 1):
            if color[s]:
                continue
            color[s] = 1; q = deque([s])
            while q and ok:
                u = q.popleft()
                for v in adj[u]:
                    if color[v] == color[u]:
                        ok = False
                    elif not color[v]:
                        color[v] = -color[u]; q.append(v)
        print("YES" if ok else "NO")
        """),
    _gen_undirected, _valid_edges(simple=True), {"n": N5, "m": N5},
    mutants=(Mutant("first_component_only", "for s in range(1, n + 1):", "for s in range(1, 2):"),),
    p_correct=0.75,
)

TREE_DIAMETER = Problem(
    "tree_diameter",
    "A tree has n vertices and n - 1 edges. Print its diameter: the number of edges on its longest "
    "simple path. Input: n, then n - 1 lines `u v`. n <= 10^5.",
    "import sys\nfrom collections import deque\nd = sys.stdin.read().split()\n" + dedent("""\
        n = int(d[0]); adj = [[] for _ in range(n + 1)]
        for j in range(n - 1):
            a, b = int(d[1 + 2 * j]), int(d[2 + 2 * j]); adj[a].append(b); adj[b].append(a)
        def far(s):
            dist = [-1] * (n + 1); dist[s] = 0; q = deque([s]); last = s
            while q:
                last = u = q.popleft()
                for v in adj[u]:
                    if dist[v] < 0:
                        dist[v] = dist[u] + 1; q.append(v)
            return last, dist[last]
        a, _ = far(1)
        _, dd = far(a)
        print(dd)
        """),
    _gen_tree, _valid_tree, {"n": N5},
    mutants=(Mutant("depth_from_root", "_, dd = far(a)", "_, dd = far(1)"),),
    hard=True, p_correct=0.3, dominant="depth_from_root",
)

PROBLEMS = (GRID_BFS, DIJKSTRA, TOPO_ORDER, COMPONENTS, BIPARTITE, TREE_DIAMETER)
