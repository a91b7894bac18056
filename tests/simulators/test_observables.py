"""Cu clusters: the tensor labelling equals a plain breadth-first search."""

import numpy as np
import pytest
import torch

from msrbook.simulators import bcc
from msrbook.simulators.observables import KEYS, cluster_stats_reference, cluster_stats_torch


@pytest.mark.parametrize("cells,cu", [(2, 0.3), (3, 0.2), (4, 0.25), (6, 0.1), (6, 0.0)])
def test_tensor_clusters_equal_bfs(cells, cu):
    rng = np.random.default_rng(cells)
    N, R = bcc.n_sites(cells), 5
    n_cu = int(round(cu * N))
    sp = np.ones((R, N), dtype=np.int8)
    for r in range(R):
        sp[r, rng.choice(N, n_cu, replace=False)] = 2
    got = cluster_stats_torch(torch.from_numpy(sp), cells)
    for r in range(R):
        ref = cluster_stats_reference(sp[r], cells)
        for k in KEYS:
            a, b = float(got[k][r]), float(ref[k])
            assert (np.isnan(a) and np.isnan(b)) or a == b, (k, r, a, b)


def test_cluster_across_the_periodic_boundary():
    cells = 4
    sp = np.ones(bcc.n_sites(cells), dtype=np.int8)
    far = bcc.index(2 * cells - 1, 2 * cells - 1, 2 * cells - 1, cells)  # 1NN of site 0 through the wrap
    sp[[0, far]] = 2
    sp[bcc.index(4, 4, 4, cells)] = 2  # a lone Cu
    got = cluster_stats_torch(torch.from_numpy(sp)[None], cells)
    assert int(got["n_clusters"][0]) == 1 and int(got["cu_in_clusters"][0]) == 2 and int(got["max_size"][0]) == 2
    assert cluster_stats_reference(sp, cells)["n_clusters"] == 1
