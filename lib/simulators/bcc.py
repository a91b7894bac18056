"""The periodic BCC lattice: site numbering, neighbour offsets and neighbour tables.

A box of `cells`^3 cubic cells (lattice constant a) holds N = 2 * cells^3 sites: a corner site and a
body-centre site per cell. Positions are written in half-lattice units, so every coordinate is an
integer: the corner of cell (x, y, z) sits at (2x, 2y, 2z), its body centre at (2x+1, 2y+1, 2z+1).
Periodic wrap is modulo 2 * cells in each direction.

Site index (what every simulator stores):

    site = ((x * cells + y) * cells + z) * 2 + b,     b = 0 corner, 1 body centre.

Neighbour shells, in half-lattice units (the order every table of this package uses):

* 1NN, 8 sites at distance a*sqrt(3)/2: offsets (dx, dy, dz) in {-1, +1}^3, index
  k = 4*[dx>0] + 2*[dy>0] + [dz>0], so k = 0 is (-1,-1,-1) and k = 7 is (+1,+1,+1); the opposite
  jump of k is 7 - k.
* 2NN, 6 sites at distance a: (-2,0,0), (+2,0,0), (0,-2,0), (0,+2,0), (0,0,-2), (0,0,+2), shell
  indices 8..13 in SHELL (the opposite of 8 + j is 8 + (j ^ 1)).

SHELL = the 14 offsets, 1NN first. A box needs cells >= 2 so that the 8 first neighbours of a site
are distinct sites; with cells = 2 the +x and -x second neighbours are the same site, and every table
here keeps both entries (so an energy summed over the table counts that bond twice, consistently).

The functions take numpy arrays or torch tensors alike (only //, %, >>, &, * and + are used).
"""

from __future__ import annotations

import itertools

import numpy as np

A_FE = 2.855  # Angstrom, BCC Fe lattice constant (OpenKMC input)

NN1 = np.array(list(itertools.product((-1, 1), repeat=3)), dtype=np.int64)  # (8, 3) half units
NN2 = np.array([(-2, 0, 0), (2, 0, 0), (0, -2, 0), (0, 2, 0), (0, 0, -2), (0, 0, 2)], dtype=np.int64)  # (6, 3)
SHELL = np.concatenate([NN1, NN2])  # (14, 3): 1NN then 2NN
N1, N2, K = 8, 6, 14


def n_sites(cells: int) -> int:
    return 2 * cells ** 3


def check_cells(cells: int) -> int:
    if int(cells) != cells or cells < 2:
        raise ValueError(f"cells={cells!r}: a periodic BCC box needs an integer cells >= 2")
    return int(cells)


def coords(site, cells: int):
    """Site index -> (X, Y, Z) in half-lattice units, each in [0, 2*cells)."""
    b = site & 1
    c = site >> 1
    z = c % cells
    y = (c // cells) % cells
    x = c // (cells * cells)
    return 2 * x + b, 2 * y + b, 2 * z + b


def index(X, Y, Z, cells: int):
    """(X, Y, Z) half units (any integers of equal parity; wrapped periodically) -> site index."""
    m = 2 * cells
    X, Y, Z = X % m, Y % m, Z % m
    return (((X >> 1) * cells + (Y >> 1)) * cells + (Z >> 1)) * 2 + (X & 1)


def neighbour_table(cells: int, offsets: np.ndarray = SHELL) -> np.ndarray:
    """(N, len(offsets)) int64: the site at each offset of each site (periodic)."""
    cells = check_cells(cells)
    site = np.arange(n_sites(cells), dtype=np.int64)
    X, Y, Z = coords(site, cells)
    return np.stack([index(X + dx, Y + dy, Z + dz, cells) for dx, dy, dz in offsets], axis=1)


def positions(cells: int, a: float = A_FE) -> np.ndarray:
    """(N, 3) Cartesian positions in Angstrom (unwrapped, inside the box)."""
    X, Y, Z = coords(np.arange(n_sites(cells), dtype=np.int64), check_cells(cells))
    return np.stack([X, Y, Z], axis=1) * (a / 2)


def box_volume_nm3(cells: int, a: float = A_FE) -> float:
    return (cells * a / 10.0) ** 3


def influence_offsets() -> np.ndarray:
    """Offsets d (half units) such that a vacancy at s + d has a jump rate that depends on site s.

    A jump of the vacancy at w to its first neighbour u = w + n depends on the species at w's and
    u's 14 shell sites (dE) and at u itself. So it depends on s when s - w lies in SHELL or in
    SHELL + NN1, i.e. w = s + d with d in -(SHELL u (SHELL + NN1)); the set is symmetric. Returned
    sorted and without (0, 0, 0), which is the changed site itself.
    """
    pts = {tuple(o) for o in SHELL} | {tuple(o + n) for o in SHELL for n in NN1}
    pts |= {tuple(-np.array(p)) for p in pts}
    pts.discard((0, 0, 0))
    return np.array(sorted(pts), dtype=np.int64)
