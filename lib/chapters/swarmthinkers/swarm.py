"""SwarmThinkers (arXiv:2505.20094): vacancies as agents of one shared policy, with reweighted KMC.

Every vacancy v is an agent choosing among its 8 first-neighbour jumps a. One shared network maps
the agent's local view o_v (one-hot species on its 1NN and 2NN shells and, by default, on those of
its 8 jump targets) to logits l_{v,a}; the policy pi = softmax of all (v, a) logits of a replica. The swarm draws one event per replica from

    P(v,a) = pi(v,a) Gamma_{v,a} / sum_{v',a'} pi(v',a') Gamma_{v',a'}

while the physical process draws from p(v,a) = Gamma_{v,a} / sum Gamma. The clock always advances by
the physical residence time dt = -ln u / sum Gamma, so only the choice of event is biased, and the
likelihood ratio of a whole path is the product of the per-step weights

    w_t = p(v_t,a_t) / P(v_t,a_t),   W_T = prod_{t<=T} w_t,   E_P[W_T f(path)] = E_p[f(path)].

A uniform policy gives P = p and w = 1: classical KMC. Over n replicas the weights' effective sample
size ESS = (sum W)^2 / (n sum W^2), in (0, 1], says how much of the ensemble still speaks for the
physical process.

Training is PPO with centralised training and decentralised execution: the actor sees one agent's
neighbourhood only; a centralised critic sees global features of the replica (its agents' pooled
neighbourhoods and the energy released per Cu atom so far). Two rewards (`reward`):

* "energy": r_t = -dE_t (eV, times `reward_scale`), the energy released by the event. Summed over a
  horizon it telescopes to the energy released; it also pays for anything else that lowers the
  energy, such as vacancies binding to each other.
* "cu_bonds": r_t = the change in the number of Cu-Cu pairs on 1NN and 2NN shells that the event
  makes (nonzero only when a Cu atom jumps), a direct count of precipitation.

An optional penalty kl_coef * KL(P || p) = kl_coef * E_P[-log w] per step trades that bias against the
degeneracy of the weights.

Shapes: R replicas, V vacancies (agents) per replica, A = 8 actions, K = 14 shell sites, F = 3K
features, T steps of a rollout.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from msrbook.simulators.energy import KB_EV
from msrbook.simulators.observables import chi2_sf, cluster_stats_torch

N_SPECIES, N_ACTIONS, N_SHELL = 3, 8, 14
VAC, CU = 0, 2
REWARDS = ("energy", "cu_bonds")


@dataclass(frozen=True)
class SwarmConfig:
    targets: bool = True  # agents also see the shells of their 8 jump targets (else only their own)
    hidden: int = 64  # width of the actor's and critic's hidden layers
    layers: int = 2  # hidden layers of each
    lr: float = 3e-3  # Adam learning rate
    gamma: float = 0.99  # discount per KMC event (a short horizon favours greedy jumps; notebook 03 compares)
    lam: float = 0.95  # GAE lambda
    clip: float = 0.2  # PPO ratio clip
    epochs: int = 4  # PPO passes over each rollout (full batch)
    rollout_steps: int = 64  # KMC events per replica per rollout
    reset_every: int = 8  # rollouts before the replicas are redrawn as fresh random alloys
    value_coef: float = 0.5  # weight of the critic's squared error
    kl_coef: float = 0.0  # weight of KL(P || p) = E_P[-log w] per step
    reward: str = "energy"  # "energy" (-dE) or "cu_bonds" (change in Cu-Cu 1NN + 2NN pairs); see the module doc
    reward_scale: float = 10.0  # energy reward = -dE * reward_scale (1/eV): returns of order 1 for the critic
    max_grad_norm: float = 1.0  # gradient clipping

    def __post_init__(self):
        if self.reward not in REWARDS:
            raise ValueError(f"reward={self.reward!r}; valid: {', '.join(REWARDS)}")

    @property
    def n_features(self) -> int:  # F: own shells (+ the 8 targets' shells), one-hot over 3 species
        return N_SPECIES * N_SHELL * (1 + N_ACTIONS * self.targets)


# -- observations ------------------------------------------------------------------------------
def agent_features(kmc, targets: bool = True) -> torch.Tensor:
    """(R, V, F) float32: one-hot species on each vacancy's 14 shell sites (F = 42) and, with
    `targets`, on the 14 shell sites of each of its 8 jump targets (F = 42 + 336). Everything a
    jump's dE depends on is then in the agent's view; it is still local (within 2 shells of a target)."""
    one_hot = torch.nn.functional.one_hot
    own = one_hot(kmc.neighbour_species().long(), N_SPECIES).flatten(-2)  # (R, V, K) -> (R, V, 3K)
    if not targets:
        return own.float()
    tgt = one_hot(kmc.target_neighbour_species().long(), N_SPECIES).flatten(-3)  # (R, V, 8, K) -> (R, V, 24K)
    return torch.cat([own, tgt], -1).float()


def global_features(obs: torch.Tensor, released: torch.Tensor) -> torch.Tensor:
    """(R, 3K + 1): the critic's view, the agents' pooled own-shell features and the energy released
    per Cu atom so far (eV)."""
    return torch.cat([obs[..., :N_SPECIES * N_SHELL].mean(1), released.float()[:, None]], dim=1)


def mlp(n_in: int, hidden: int, layers: int, n_out: int) -> nn.Sequential:
    mods, d = [], n_in
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.Tanh()]
        d = hidden
    return nn.Sequential(*mods, nn.Linear(d, n_out))


class SwarmPolicy(nn.Module):
    """Shared actor (per agent, decentralised) and centralised critic (per replica)."""

    def __init__(self, cfg: SwarmConfig = SwarmConfig()):
        super().__init__()
        self.targets = cfg.targets
        self.actor = mlp(cfg.n_features, cfg.hidden, cfg.layers, N_ACTIONS)
        self.critic = mlp(N_SPECIES * N_SHELL + 1, cfg.hidden, cfg.layers, 1)
        nn.init.zeros_(self.actor[-1].weight)  # start uniform: the untrained swarm is classical KMC
        nn.init.zeros_(self.actor[-1].bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)  # (R, V, F) -> (R, V, A); each agent sees only its own row

    def value(self, g: torch.Tensor) -> torch.Tensor:
        return self.critic(g).squeeze(-1)  # (R, 3K + 1) -> (R,)

    def act(self, kmc) -> torch.Tensor:
        """(R, V, A) logits for the simulator's current state."""
        return self(agent_features(kmc, self.targets))


# -- the reweighted event distribution ---------------------------------------------------------
def log_physical(log_rates: torch.Tensor) -> torch.Tensor:
    """(R, V, A) log Gamma -> (R, V*A) log p, p = Gamma / sum Gamma (-inf where Gamma = 0)."""
    return torch.log_softmax(log_rates.flatten(1), dim=-1)


def log_proposal(logits: torch.Tensor, log_rates: torch.Tensor) -> torch.Tensor:
    """(R, V, A) each -> (R, V*A) log P, P = softmax(logits) * Gamma / norm = softmax(logits + log Gamma)."""
    return torch.log_softmax(logits.flatten(1) + log_rates.flatten(1).to(logits.dtype), dim=-1)


def kl_to_physical(logits: torch.Tensor, log_rates: torch.Tensor) -> torch.Tensor:
    """(R,) KL(P || p) = E_P[-log w] of one step, the expected loss of log-weight it costs."""
    lq, lp = log_proposal(logits, log_rates), log_physical(log_rates).to(logits.dtype)
    ok = torch.isfinite(lp)  # impossible jumps (onto a vacancy) have P = p = 0 and add nothing
    diff = torch.where(ok, lq - lp, torch.zeros_like(lq))  # masked first: 0 * nan would poison the gradient
    return (lq.exp() * diff).sum(-1)


def ess(log_w) -> float:
    """(sum w)^2 / (n sum w^2) of weights given by their logs, in (0, 1]; 1 when all are equal."""
    lw = torch.tensor(np.asarray(log_w, dtype=np.float64))
    return float(torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0)) / lw.numel())


class TiltPolicy:
    """A hand-made control, not learned: pi(v,a) ~ exp(-dE_va / (k_B T_tilt)), so P ~ Gamma exp(-dE / k_B T_tilt).
    It favours energy-lowering jumps as strongly as the reward -dE could ask for, with no training."""

    def __init__(self, tilt_temperature: float):
        self.beta = 1.0 / (KB_EV * tilt_temperature)  # 1/eV

    def act(self, kmc) -> torch.Tensor:
        return -self.beta * kmc.jump_dE()  # (R, V, A)


# -- rollouts and PPO --------------------------------------------------------------------------
def cu_bond_change(own: torch.Tensor, tgt: torch.Tensor, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """(R,) change in Cu-Cu pairs (1NN + 2NN) when vacancy v swaps with its neighbour a.

    own (R, V, K): species on each vacancy's shells; tgt (R, V, 8, K): on each jump target's shells,
    both before the event. The atom X at target t moves to the vacancy site s: if X is Cu it gains
    the Cu on s's shells (but t itself, entry a) and loses those on t's shells (s is a vacancy)."""
    r = torch.arange(own.shape[0], device=own.device)
    o, t = own[r, v], tgt[r, v, a]  # (R, K) each
    gain = (o == CU).sum(-1) - (o[r, a] == CU).long()
    return torch.where(o[r, a] == CU, gain - (t == CU).sum(-1), torch.zeros_like(gain))


def _species_seen(obs: torch.Tensor):
    """Species codes back from the one-hot view with targets: (R, V, K) own and (R, V, 8, K) targets."""
    R, V, _ = obs.shape
    own = obs[..., :N_SPECIES * N_SHELL].reshape(R, V, N_SHELL, N_SPECIES).argmax(-1)
    tgt = obs[..., N_SPECIES * N_SHELL:].reshape(R, V, N_ACTIONS, N_SHELL, N_SPECIES).argmax(-1)
    return own, tgt


@torch.no_grad()
def rollout(kmc, policy: SwarmPolicy, steps: int, e0: torch.Tensor, n_cu: int, cfg: SwarmConfig) -> dict:
    """Run `steps` swarm events; returns stacked (T, R, ...) tensors for PPO."""
    keys = ("obs", "log_rates", "k", "logp", "g", "reward", "log_w", "dE", "cu_bonds")
    buf = {k: [] for k in keys}
    for _ in range(steps):
        obs = agent_features(kmc, policy.targets)  # (R, V, F)
        rates = kmc.rates()  # (R, V, A)
        log_rates = torch.log(rates)  # -inf for a jump onto a vacancy
        logits = policy(obs)
        g = global_features(obs, (e0 - kmc.energy) / n_cu)
        own, tgt = _species_seen(obs) if policy.targets else (kmc.neighbour_species(), kmc.target_neighbour_species())
        out = kmc.step(logits=logits.to(rates.dtype))
        k = out["v"] * N_ACTIONS + out["a"]  # (R,) flat event index
        logp = log_proposal(logits, log_rates).gather(1, k[:, None]).squeeze(1)
        bonds = cu_bond_change(own, tgt, out["v"], out["a"]).to(out["dE"].dtype)
        reward = -out["dE"] * cfg.reward_scale if cfg.reward == "energy" else bonds
        for name, val in zip(keys, (obs, log_rates, k, logp, g, reward, out["log_w"], out["dE"], bonds)):
            buf[name].append(val)
    out = {k: torch.stack(v) for k, v in buf.items()}
    out["last_value"] = policy.value(global_features(agent_features(kmc, policy.targets), (e0 - kmc.energy) / n_cu))
    return out


def gae(reward: torch.Tensor, value: torch.Tensor, last_value: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimates and returns, (T, R) each, bootstrapped from last_value (R,)."""
    adv = torch.zeros_like(value)
    running = torch.zeros_like(last_value)
    for t in reversed(range(reward.shape[0])):
        nxt = value[t + 1] if t + 1 < reward.shape[0] else last_value
        running = reward[t] + gamma * nxt - value[t] + gamma * lam * running
        adv[t] = running
    return adv, adv + value


def ppo_loss(policy: SwarmPolicy, batch: dict, adv: torch.Tensor, ret: torch.Tensor, cfg: SwarmConfig) -> dict:
    """Clipped PPO surrogate + critic error (+ KL to the physical process) on a (T, R) batch."""
    obs = batch["obs"].flatten(0, 1)  # (T*R, V, F)
    log_rates = batch["log_rates"].flatten(0, 1)  # (T*R, V, A)
    logits = policy(obs)
    logp = log_proposal(logits, log_rates).gather(1, batch["k"].reshape(-1, 1)).squeeze(1)  # (T*R,)
    a = adv.reshape(-1)
    a = (a - a.mean()) / (a.std() + 1e-8)
    ratio = torch.exp(logp - batch["logp"].reshape(-1))
    pg = -torch.minimum(ratio * a, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a).mean()
    vloss = (policy.value(batch["g"].flatten(0, 1)) - ret.reshape(-1)).pow(2).mean()
    kl = kl_to_physical(logits, log_rates).mean()
    total = pg + cfg.value_coef * vloss + cfg.kl_coef * kl
    return {"loss": total, "policy": pg, "value": vloss, "kl": kl}


def train(make_kmc: Callable[[int], object], cfg: SwarmConfig, iterations: int, seed: int = 0):
    """PPO on fresh random alloys from make_kmc(seed); returns (policy, per-iteration DataFrame)."""
    torch.manual_seed(seed)
    policy, rows, kmc = None, [], None
    for it in range(iterations):
        if it % cfg.reset_every == 0:
            kmc = make_kmc(seed + 1000 * (it // cfg.reset_every + 1))
            e0, n_cu = kmc.energy.clone(), max(kmc.n_cu, 1)
            if policy is None:
                policy = SwarmPolicy(cfg).to(kmc.species.device)
                opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
        t0 = time.perf_counter()
        batch = rollout(kmc, policy, cfg.rollout_steps, e0, n_cu, cfg)
        with torch.no_grad():
            value = policy.value(batch["g"].flatten(0, 1)).reshape(batch["k"].shape)
            adv, ret = gae(batch["reward"].float(), value, batch["last_value"], cfg.gamma, cfg.lam)
        for _ in range(cfg.epochs):
            parts = ppo_loss(policy, batch, adv, ret, cfg)
            opt.zero_grad()
            parts["loss"].backward()
            nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            opt.step()
        cum = batch["log_w"].sum(0)  # (R,) log W over this rollout
        rows.append(dict(iteration=it, mean_reward_eV=float(-batch["dE"].mean()), cu_bonds_per_event=float(batch["cu_bonds"].mean()),
                         mean_log_w=float(batch["log_w"].mean()), step_ess=float(np.mean([ess(x) for x in batch["log_w"].cpu()])),
                         rollout_ess=ess(cum.cpu()), kl=parts["kl"].item(), policy_loss=parts["policy"].item(),
                         value_loss=parts["value"].item(), wall_s=time.perf_counter() - t0))
    return policy, pd.DataFrame(rows)


# -- evaluation: the swarm beside classical KMC ------------------------------------------------
def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def simulate(kmc, policy: "SwarmPolicy | TiltPolicy | None", steps: int, record_every: int) -> pd.DataFrame:
    """Run `steps` events (classical KMC when policy is None); one row per (record, replica).

    Columns: step, replica, time (s), energy (eV), log_W (cumulative log weight), clusters,
    density (clusters per site), mean_size, cu_frac_clustered (Cu atoms in clusters / Cu atoms),
    vac_paired (fraction of vacancies with another vacancy on their 1NN/2NN shells), wall_s (wall time of the steps so far, policy included, cluster analysis excluded)."""
    R, N = kmc.species.shape
    dev = kmc.species.device
    log_W = torch.zeros(R, dtype=torch.float64, device=dev)
    recs, wall = [], 0.0

    def record(step):
        st = {k: v.cpu().numpy() for k, v in cluster_stats_torch(kmc.species, kmc.cells).items()}
        paired = (kmc.neighbour_species() == VAC).any(-1).double().mean(1).cpu().numpy()  # (R,)
        recs.append(pd.DataFrame(dict(step=step, replica=np.arange(R), time=kmc.time.cpu().numpy(),
                                      energy=kmc.energy.cpu().numpy(), log_W=log_W.cpu().numpy(),
                                      clusters=st["n_clusters"], density=st["n_clusters"] / N,
                                      mean_size=st["mean_size"], cu_frac_clustered=st["cu_in_clusters"] / max(kmc.n_cu, 1),
                                      vac_paired=paired, wall_s=wall)))

    record(0)
    t0 = time.perf_counter()
    for s in range(1, steps + 1):
        logits = None if policy is None else policy.act(kmc)
        log_W += kmc.step(logits=logits)["log_w"]
        if s % record_every == 0 or s == steps:
            _sync(dev)
            wall += time.perf_counter() - t0
            record(s)
            t0 = time.perf_counter()
    return pd.concat(recs, ignore_index=True)


def _weighted(v: np.ndarray, lw: np.ndarray) -> tuple[float, float]:
    """Self-normalised importance estimate of E_p[v] and its delta-method standard error."""
    ok = ~np.isnan(v)
    v, lw = v[ok], lw[ok]
    if v.size == 0:
        return math.nan, math.nan
    w = np.exp(lw - lw.max())
    w = w / w.sum()
    mu = float((w * v).sum())
    return mu, float(np.sqrt((w ** 2 * (v - mu) ** 2).sum()))


def summarize(raw: pd.DataFrame, by: str = "step", quantities=("density", "mean_size", "cu_frac_clustered", "vac_paired", "energy")) -> pd.DataFrame:
    """Per value of `by`: plain ensemble mean and standard error of each quantity, the importance-
    weighted estimate of the physical mean with its error, and the ESS of the cumulative weights."""
    rows = []
    for x, g in raw.groupby(by):
        row = {by: x, "ess": ess(g["log_W"].to_numpy()), "wall_s": g["wall_s"].mean(), "time_mean": g["time"].mean()}
        for q in quantities:
            v = g[q].to_numpy(dtype=float)
            n = np.count_nonzero(~np.isnan(v))
            row[f"{q}_mean"] = np.nanmean(v) if n else math.nan
            row[f"{q}_se"] = np.nanstd(v, ddof=1) / math.sqrt(n) if n > 1 else math.nan
            row[f"{q}_wmean"], row[f"{q}_wse"] = _weighted(v, g["log_W"].to_numpy())
        rows.append(row)
    return pd.DataFrame(rows)


def on_time_grid(raw: pd.DataFrame, grid: np.ndarray) -> pd.DataFrame:
    """Each replica's last recorded state at or before each time of `grid` (a step function of
    physical time); rows (time, replica, ...) ready for summarize(by='time')."""
    out = []
    g = pd.DataFrame({"time": np.asarray(grid, dtype=float)})
    for r, rec in raw.sort_values("time").groupby("replica"):
        m = pd.merge_asof(g, rec.drop(columns="time").assign(t_rec=rec["time"].to_numpy()).sort_values("t_rec"),
                          left_on="time", right_on="t_rec", direction="backward")
        out.append(m.assign(replica=r))
    return pd.concat(out, ignore_index=True)


def steps_to(curve: pd.DataFrame, target: float, col: str = "density_mean", by: str = "step") -> float:
    """First `by` value at which the curve reaches `target` (nan if never)."""
    hit = curve.loc[curve[col] >= target, by]
    return float(hit.iloc[0]) if len(hit) else math.nan


def compare(make_kmc: Callable[[int], object], policy: "SwarmPolicy | TiltPolicy", steps: int, record_every: int, seed: int) -> pd.DataFrame:
    """Classical KMC and the swarm from the same initial alloys (same seed); raw rows with `mode`."""
    return pd.concat([simulate(make_kmc(seed), None, steps, record_every).assign(mode="classical"),
                      simulate(make_kmc(seed), policy, steps, record_every).assign(mode="swarm")], ignore_index=True)


def curves(raw: pd.DataFrame, time_points: int = 20) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """summarize() per mode, against KMC steps and (time_points > 0) against physical time, on a grid
    up to the earliest final time of any replica, so every replica contributes at every point."""
    by_step = pd.concat([summarize(g).assign(mode=m) for m, g in raw.groupby("mode")], ignore_index=True)
    if time_points <= 0:
        return by_step, None
    t_end = raw.groupby(["mode", "replica"])["time"].max().min()
    grid = np.linspace(0.0, t_end, time_points)
    by_time = pd.concat([summarize(on_time_grid(g, grid), by="time").assign(mode=m) for m, g in raw.groupby("mode")],
                        ignore_index=True)
    return by_step, by_time


def progress(by_step: pd.DataFrame, quantity: str = "cu_frac_clustered", fraction: float = 0.5) -> dict:
    """Steps and wall time each mode needs to bring the ensemble mean of `quantity` `fraction` of the
    way from its initial value to the value classical KMC ends the run with (the swarm unweighted:
    the progress of the biased process), their ratios classical / swarm, and the swarm's ESS."""
    c, s = (by_step[by_step["mode"] == m].sort_values("step") for m in ("classical", "swarm"))
    q0, q1 = c[f"{quantity}_mean"].iloc[0], c[f"{quantity}_mean"].iloc[-1]
    target = q0 + fraction * (q1 - q0) if q1 > q0 else math.nan
    out = {"target": target, "min_ess": float(s["ess"].min()), "final_ess": float(s["ess"].iloc[-1])}
    for name, cur in (("classical", c), ("swarm", s)):
        n = steps_to(cur, target, f"{quantity}_mean") if q1 > q0 else math.nan
        out[f"steps_{name}"] = n
        out[f"wall_{name}"] = float(np.interp(n, cur["step"], cur["wall_s"])) if not math.isnan(n) else math.nan
    out["step_speedup"] = out["steps_classical"] / out["steps_swarm"]
    out["wall_speedup"] = out["wall_classical"] / out["wall_swarm"]
    return out


# -- statistics without scipy ------------------------------------------------------------------
def ks_2samp(x, y) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic D and its asymptotic p-value (Stephens' correction).
    With ties (discrete samples) the p-value is conservative."""
    x, y = np.sort(np.asarray(x, float)), np.sort(np.asarray(y, float))
    allv = np.concatenate([x, y])
    d = float(np.max(np.abs(np.searchsorted(x, allv, "right") / x.size - np.searchsorted(y, allv, "right") / y.size)))
    en = math.sqrt(x.size * y.size / (x.size + y.size))
    lam = (en + 0.12 + 0.11 / en) * d
    j = np.arange(1, 101)
    p = float(np.clip(2 * np.sum((-1.0) ** (j - 1) * np.exp(-2 * (j * lam) ** 2)), 0, 1)) if lam > 0 else 1.0
    return d, p


def chi2_homogeneity(counts) -> tuple[float, int, float]:
    """Chi-square test that the rows of a (2, C) count table come from one distribution; columns
    empty in both rows are dropped. Returns (statistic, degrees of freedom, p-value)."""
    c = np.asarray(counts, float)
    c = c[:, c.sum(0) > 0]
    expected = c.sum(1, keepdims=True) * c.sum(0, keepdims=True) / c.sum()
    stat = float(((c - expected) ** 2 / expected).sum())
    dof = (c.shape[0] - 1) * (c.shape[1] - 1)
    return stat, dof, chi2_sf(stat, dof)


@torch.no_grad()
def event_samples(kmc, steps: int, logits_fn: Callable | None = None) -> dict:
    """Run `steps` events and return the LAST event of every replica: dE, dt, the jumping species
    and the direction (independent across replicas, so the samples are i.i.d.)."""
    for s in range(steps):
        sp = kmc.neighbour_species().long()  # (R, V, K) before the event
        out = kmc.step(logits=None if logits_fn is None else logits_fn(kmc))
    r = torch.arange(sp.shape[0], device=sp.device)
    return {"dE": out["dE"].cpu().numpy(), "dt": out["dt"].cpu().numpy(), "a": out["a"].cpu().numpy(),
            "species": sp[r, out["v"], out["a"]].cpu().numpy(), "log_w": out["log_w"].cpu().numpy()}


def compare_events(a: dict, b: dict) -> dict:
    """p-values that two event samples come from one distribution: KS on dE and dt, chi-square on
    the jumping species (Fe/Cu) and on the jump direction (8)."""
    species = [np.bincount(s["species"], minlength=N_SPECIES) for s in (a, b)]
    direction = [np.bincount(s["a"], minlength=N_ACTIONS) for s in (a, b)]
    return {"ks_dE": ks_2samp(a["dE"], b["dE"])[1], "ks_dt": ks_2samp(a["dt"], b["dt"])[1],
            "chi2_species": chi2_homogeneity(species)[2], "chi2_direction": chi2_homogeneity(direction)[2]}
