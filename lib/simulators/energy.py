"""Rigid-lattice pair energies of Fe-Cu with vacancies, the energy change of a vacancy jump, and its rate.

Species codes: 0 vacancy (V), 1 Fe, 2 Cu. The energy of a configuration is a sum over 1NN and 2NN
bonds (OpenKMC's FeCuSiMn_2008 parameter set, restricted to V, Fe, Cu):

    E = sum_{<ij> 1NN} eps1[s_i, s_j] + sum_{<ij> 2NN} eps2[s_i, s_j]

A jump swaps a vacancy at site v with the atom X = s_t on a first neighbour t. Only bonds touching v
or t change (the v-t bond itself stays a V-X bond), so with W_k[X, s] = eps_k[X, s] - eps_k[V, s]
(k the shell of the neighbour):

    dE = sum_{j in shells(v), j != t} W[X, s_j]  -  sum_{j in shells(t), j != v} W[X, s_j]

and the rate of the jump (attempt frequency nu, barrier E_a0 of the moving atom, kinetic
Ra approximation of the saddle point):

    Gamma = nu * exp(-(E_a0(X) + dE / 2) / (k_B T))

A vacancy never swaps with a vacancy: that jump has rate 0 (it changes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import bcc

KB_EV = 8.617333262e-5  # Boltzmann constant, eV/K
VAC, FE, CU = 0, 1, 2
SPECIES = ("V", "Fe", "Cu")


@dataclass(frozen=True)
class FeCuParams:
    """Pair energies (eV) by shell, barriers and attempt frequency (OpenKMC Fe-Cu set)."""

    # rows/cols: V, Fe, Cu; symmetric. 1NN then 2NN.
    eps1: tuple = ((0.126, -0.163, -0.102), (-0.163, -0.611, -0.480), (-0.102, -0.480, -0.414))
    eps2: tuple = ((-0.014, -0.163, -0.180), (-0.163, -0.611, -0.571), (-0.180, -0.571, -0.611))
    ea0: tuple = (0.0, 0.65, 0.56)  # migration barrier of the moving atom (V entry unused), eV
    nu: float = 6e12  # attempt frequency, 1/s

    def shell_pairs(self) -> np.ndarray:
        """(14, 3, 3): the pair-energy matrix of each entry of bcc.SHELL (8 x eps1, then 6 x eps2)."""
        e1, e2 = np.array(self.eps1), np.array(self.eps2)
        return np.concatenate([np.broadcast_to(e1, (bcc.N1, 3, 3)), np.broadcast_to(e2, (bcc.N2, 3, 3))])

    def swap_table(self) -> np.ndarray:
        """(3, 14, 3): W[X, k, s] = eps_k[X, s] - eps_k[V, s], the bond change when site v's vacancy becomes X."""
        P = self.shell_pairs()  # (14, 3, 3)
        return (P - P[:, VAC:VAC + 1, :]).transpose(1, 0, 2).copy()


DEFAULT = FeCuParams()


def beta(temperature: float) -> float:
    return 1.0 / (KB_EV * temperature)


def jump_dE(s_v: torch.Tensor, s_t: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """dE of the 8 jumps of each vacancy.

    s_v: (..., 14) species on the vacancy's shells (bcc.SHELL order); s_t: (..., 8, 14) species on
    the shells of each of its 8 first neighbours; W: (3, 14, 3) swap table. Returns (..., 8); the
    entry of a jump onto another vacancy is meaningless (its rate is set to 0 by `jump_rates`).
    """
    K = bcc.K
    X = s_v[..., :bcc.N1]  # (..., 8) the atom that would move
    kk = torch.arange(K, device=s_v.device)
    Wf = W.reshape(-1)
    # index of W[X_a, k, s] for every jump a and shell entry k
    iv = (X.unsqueeze(-1) * K + kk) * 3 + s_v.unsqueeze(-2)  # (..., 8, 14)
    it = (X.unsqueeze(-1) * K + kk) * 3 + s_t  # (..., 8, 14)
    a = torch.arange(bcc.N1, device=s_v.device)
    # exclude the v-t bond: entry a of v's shell is t; entry 7-a of t's shell is v (a vacancy)
    self_v = Wf[(X * K + a) * 3 + X]  # (..., 8)
    self_t = Wf[(X * K + (7 - a)) * 3 + VAC]
    return (Wf[iv].sum(-1) - self_v) - (Wf[it].sum(-1) - self_t)


def jump_rates(X: torch.Tensor, dE: torch.Tensor, temperature: float, params: FeCuParams = DEFAULT,
               ea0_table: torch.Tensor | None = None) -> torch.Tensor:
    """Gamma = nu exp(-(E_a0(X) + dE/2) / kT); 0 where X is a vacancy. X, dE: (..., 8). ea0_table: params.ea0
    already on dE's device (a host-to-device copy cannot run inside CUDA graph capture)."""
    if ea0_table is None:
        ea0_table = torch.tensor(params.ea0, dtype=dE.dtype, device=dE.device)
    ea0 = ea0_table[X]
    g = params.nu * torch.exp(-(ea0 + 0.5 * dE) * beta(temperature))
    return torch.where(X == VAC, torch.zeros_like(g), g)


def energy_from_scratch(species, cells: int, params: FeCuParams = DEFAULT, block: int = 1 << 22) -> torch.Tensor:
    """(R,) total pair energy in eV of configurations `species` (R, N) (or (N,)), on their device, by
    summing every shell entry of every site with weight 1/2 (each bond is seen from both ends).
    Independent of any incremental bookkeeping: neighbours come from coordinates. Sites are taken in
    chunks of about `block` / R, one shell offset at a time, so temporaries stay near `block` entries."""
    sp = torch.as_tensor(species)
    if sp.dim() == 1:
        sp = sp[None]
    dev = sp.device
    P = torch.from_numpy(params.shell_pairs()).to(dev, torch.float64)  # (14, 3, 3)
    R, N = sp.shape
    total = torch.zeros(R, dtype=torch.float64, device=dev)
    n = max(1, min(N, block // R))
    for s0 in range(0, N, n):
        site = torch.arange(s0, min(N, s0 + n), device=dev)
        X, Y, Z = bcc.coords(site, cells)
        si = sp[:, site].long() * 3  # (R, n)
        for k, (dx, dy, dz) in enumerate(bcc.SHELL.tolist()):
            sj = sp[:, bcc.index(X + dx, Y + dy, Z + dz, cells)].long()  # (R, n)
            total += 0.5 * P[k].reshape(-1)[si + sj].sum(1)
    return total
