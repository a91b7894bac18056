"""Cu clusters: connected components of Cu atoms on first-neighbour (1NN) bonds, periodic box.

A cluster is a component of size >= 2 (a lone Cu atom is a solute, not a precipitate). Per replica:

    n_clusters       number of clusters
    cu_in_clusters   Cu atoms in clusters
    mean_size        cu_in_clusters / n_clusters (NaN without clusters)
    max_size         largest component (1 when every Cu is alone)

Number density: n_clusters / N per site, or n_clusters / (cells a)^3 per nm^3 (bcc.box_volume_nm3).

`cluster_stats_torch` labels components in tensors (min-label propagation with pointer jumping over
the list of Cu sites, all replicas at once); `cluster_stats_reference` is a plain breadth-first
search over the neighbour table, one configuration at a time. A test checks they agree.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from . import bcc

CU = 2
KEYS = ("n_clusters", "cu_in_clusters", "mean_size", "max_size")


def _stats_from_sizes(sizes: torch.Tensor) -> dict:
    """sizes (R, M): component sizes (0 for non-roots) -> dict of (R,) tensors."""
    big = sizes >= 2
    n = big.sum(1)
    cu_in = (sizes * big).sum(1)
    mean = torch.where(n > 0, cu_in.double() / n.clamp(min=1), torch.full_like(cu_in, float("nan"), dtype=torch.float64))
    return {"n_clusters": n, "cu_in_clusters": cu_in, "mean_size": mean, "max_size": sizes.max(1).values}


def _label(cu_sites: torch.Tensor, cells: int) -> torch.Tensor:
    """cu_sites (R, M) sorted Cu sites of each replica -> (R, M) component root label (an index < M)."""
    R, M = cu_sites.shape
    X, Y, Z = bcc.coords(cu_sites, cells)
    o = torch.from_numpy(bcc.NN1).to(cu_sites.device)
    nbr = bcc.index(X[..., None] + o[:, 0], Y[..., None] + o[:, 1], Z[..., None] + o[:, 2], cells)  # (R, M, 8)
    j = torch.searchsorted(cu_sites, nbr.reshape(R, -1)).clamp_(max=M - 1)  # (R, M*8)
    own = torch.arange(M, device=cu_sites.device).expand(R, M)
    is_cu = cu_sites.gather(1, j) == nbr.reshape(R, -1)
    j = torch.where(is_cu, j, own.repeat_interleave(8, 1)).reshape(R, M, 8)  # non-Cu -> itself
    lab = own.clone()
    while True:
        new = torch.minimum(lab, lab.gather(1, j.reshape(R, -1)).reshape(R, M, 8).min(2).values)
        new = new.gather(1, new)  # pointer jumping: follow labels to shorten chains
        new = new.gather(1, new)
        if torch.equal(new, lab):
            return lab
        lab = new


def cluster_stats_torch(species: torch.Tensor, cells: int, chunk_sites: int = 1 << 26) -> dict:
    """Cluster statistics of configurations species (R, N) (every replica with the same Cu count, as
    in TorchKMC) -> dict of (R,) tensors (KEYS). Replicas are processed in blocks so the temporary
    boolean mask stays under chunk_sites entries."""
    R, N = species.shape
    parts = []
    rc = max(1, chunk_sites // N)
    for r0 in range(0, R, rc):
        blk = species[r0:r0 + rc]
        idx = (blk == CU).nonzero()  # (r*M, 2), sorted by replica then site
        r = blk.shape[0]
        M = idx.shape[0] // r
        if M * r != idx.shape[0]:
            raise ValueError("cluster_stats_torch needs the same number of Cu atoms in every replica")
        if M == 0:
            z = torch.zeros(r, dtype=torch.int64, device=species.device)
            parts.append({"n_clusters": z, "cu_in_clusters": z, "mean_size": z.double() * float("nan"), "max_size": z})
            continue
        cu_sites = idx[:, 1].reshape(r, M).contiguous()
        lab = _label(cu_sites, cells)
        sizes = torch.zeros(r, M, dtype=torch.int64, device=species.device)
        sizes.scatter_add_(1, lab, torch.ones_like(lab))
        parts.append(_stats_from_sizes(sizes))
    return {k: torch.cat([p[k] for p in parts]) for k in KEYS}


def cluster_sizes_reference(species: np.ndarray, cells: int) -> list[int]:
    """Sizes of all 1NN-connected Cu components of one configuration (N,), by breadth-first search."""
    nbr = bcc.neighbour_table(cells, bcc.NN1)
    is_cu = np.asarray(species) == CU
    seen = np.zeros(len(is_cu), dtype=bool)
    sizes = []
    for s in np.flatnonzero(is_cu):
        if seen[s]:
            continue
        seen[s], size, queue = True, 0, deque([s])
        while queue:
            i = queue.popleft()
            size += 1
            for j in nbr[i]:
                if is_cu[j] and not seen[j]:
                    seen[j] = True
                    queue.append(j)
        sizes.append(size)
    return sizes


def cluster_stats_reference(species: np.ndarray, cells: int) -> dict:
    """The KEYS of one configuration (N,), as Python numbers."""
    sizes = np.array(cluster_sizes_reference(species, cells), dtype=np.int64)
    big = sizes[sizes >= 2]
    return {"n_clusters": len(big), "cu_in_clusters": int(big.sum()),
            "mean_size": float(big.mean()) if len(big) else float("nan"),
            "max_size": int(sizes.max()) if len(sizes) else 0}


def ensemble(df, cols=KEYS + ("energy", "events"), by: str = "record"):
    """Mean and standard error over replicas of each column at each record (NaNs, e.g. mean_size of
    a replica without clusters, are left out of that column's mean)."""
    import pandas as pd

    g = df.groupby(by)
    out = {"time": g["time"].mean()}
    for c in cols:
        out[c] = g[c].mean()
        out[c + "_se"] = g[c].std(ddof=1) / np.sqrt(g[c].count())
        out[c + "_n"] = g[c].count()
    return pd.DataFrame(out).reset_index()


def zscores(a, b, cols, by: str = "record"):
    """Two-sample z = (mean_a - mean_b) / sqrt(se_a^2 + se_b^2) per record and column, from
    `ensemble` tables (independent replicas in each). Where both standard errors are 0 (a column that
    is constant in both, e.g. at record 0 from shared initial states) z is 0 when the means are equal."""
    import pandas as pd

    m = a.merge(b, on=by, suffixes=("_a", "_b"))
    rows = []
    for c in cols:
        se = np.sqrt(m[c + "_se_a"] ** 2 + m[c + "_se_b"] ** 2)
        diff = m[c + "_a"] - m[c + "_b"]
        z = np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.where(diff == 0, 0.0, np.inf))
        rows.append(pd.DataFrame({by: m[by], "observable": c, "mean_a": m[c + "_a"], "mean_b": m[c + "_b"],
                                  "se_a": m[c + "_se_a"], "se_b": m[c + "_se_b"], "z": z}))
    return pd.concat(rows, ignore_index=True)


def two_sided_z_critical(alpha: float, n_tests: int = 1) -> float:
    """|z| above which a two-sided test at family-wise level alpha (Bonferroni over n_tests) rejects."""
    p = alpha / (2 * n_tests)
    return float(torch.special.ndtri(torch.tensor(1.0 - p, dtype=torch.float64)))


def chi2_sf(x: float, dof: int) -> float:
    """P(chi^2_dof >= x) = Q(dof/2, x/2), the regularized upper incomplete gamma function."""
    return float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                         torch.tensor(x / 2, dtype=torch.float64)))
