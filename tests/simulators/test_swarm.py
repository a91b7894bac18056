"""The swarm of learned agents (msrbook.chapters.swarmthinkers.swarm) on top of the torch KMC: a uniform policy is
classical KMC, the importance weights are unbiased, the policy is shared and local, PPO optimises."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from msrbook.chapters.swarmthinkers import swarm as sw
from msrbook.simulators.kmc_torch import TorchKMC

ALPHA = 1e-3  # significance of every distributional test here (seeded, so each outcome is fixed)


def tiny(seed, replicas=64, cells=3, vacancies=2, cu_frac=0.1, temperature=573.0):
    return TorchKMC(cells, replicas, cu_frac=cu_frac, vacancies=vacancies, temperature=temperature, seed=seed)


def zeros(kmc):
    return torch.zeros(kmc.R, kmc.V, 8, dtype=torch.float64)


def test_uniform_policy_gives_the_same_trajectories():
    # Same seed, same uniforms: a flat inverse CDF over (v, a) with P = p picks the same event as
    # the classical two-level choice, up to float64 round-off at a CDF boundary (never hit here).
    a, b = tiny(3), tiny(3)
    for _ in range(200):
        oa, ob = a.step(), b.step(logits=zeros(b))
        assert torch.equal(oa["v"], ob["v"]) and torch.equal(oa["a"], ob["a"])
        assert ob["log_w"].abs().max() < 1e-12  # log of a ratio of two sums of the same rates: round-off only
    assert torch.equal(a.species, b.species)
    torch.testing.assert_close(a.time, b.time, rtol=1e-12, atol=0)  # the rate sums add in another order


def test_uniform_policy_is_classical_kmc_in_distribution():
    # Independent seeds; the last event of each of 3000 replicas gives i.i.d. samples.
    a = sw.event_samples(tiny(1, replicas=3000), 15)
    b = sw.event_samples(tiny(2, replicas=3000), 15, zeros)
    p = sw.compare_events(a, b)
    assert min(p.values()) > ALPHA / len(p), p  # Bonferroni over the 4 tests


def test_the_distribution_test_detects_a_biased_policy():
    # The same test must fail for a policy that favours energy-lowering jumps, or it proves nothing.
    a = sw.event_samples(tiny(1, replicas=3000), 15)
    b = sw.event_samples(tiny(2, replicas=3000), 15, lambda k: -10.0 * k.jump_dE())
    p = sw.compare_events(a, b)
    assert min(p.values()) < ALPHA / len(p), p


def test_proposal_and_weights_match_the_simulator():
    kmc = tiny(4, replicas=8)
    torch.manual_seed(0)
    logits = torch.randn(kmc.R, kmc.V, 8, dtype=torch.float64)
    log_rates = torch.log(kmc.rates())
    lq, lp = sw.log_proposal(logits, log_rates), sw.log_physical(log_rates)
    out = kmc.step(logits=logits)
    k = out["v"] * 8 + out["a"]
    r = torch.arange(kmc.R)
    torch.testing.assert_close(out["log_w"], lp[r, k] - lq[r, k], rtol=0, atol=1e-10)  # float64 round-off
    # E_P[w] = sum_k P_k p_k / P_k = 1 exactly, in every state; and KL(P || p) >= 0
    ew = torch.where(torch.isfinite(lp), (lq.exp() * (lp - lq).exp()), torch.zeros_like(lp)).sum(1)
    torch.testing.assert_close(ew, torch.ones_like(ew), rtol=0, atol=1e-12)
    assert (sw.kl_to_physical(logits, log_rates) >= -1e-12).all()


def test_weights_have_mean_one_under_the_proposal():
    # Cumulative W over 10 steps of a random fixed policy, over 4000 replicas: E_P[W] = 1.
    kmc = tiny(5, replicas=4000)
    torch.manual_seed(1)
    net = torch.nn.Linear(sw.N_SPECIES * sw.N_SHELL, 8).double()
    log_W = torch.zeros(kmc.R, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(10):
            log_W += kmc.step(logits=net(sw.agent_features(kmc, targets=False).double()))["log_w"]
    W = log_W.exp()
    assert W.std() > 0.05  # the policy is far enough from uniform for the test to mean something
    se = float(W.std() / math.sqrt(W.numel()))
    assert abs(float(W.mean()) - 1) < 4 * se, (float(W.mean()), se)  # 4 standard errors: p ~ 6e-5


def test_ess_bounds():
    assert sw.ess(np.zeros(7)) == pytest.approx(1.0)
    assert sw.ess(np.array([0.0] + [-800.0] * 9)) == pytest.approx(0.1)  # one weight dominates: 1/n
    assert 0.1 < sw.ess(np.log(np.arange(1, 11.0))) < 1


@pytest.mark.parametrize("targets", [False, True])
def test_policy_shapes_and_locality(targets):
    cfg = sw.SwarmConfig(targets=targets, hidden=16)
    pol = sw.SwarmPolicy(cfg)
    kmc = tiny(6, replicas=3, vacancies=5)
    obs = sw.agent_features(kmc, targets)
    assert obs.shape == (3, 5, cfg.n_features)
    assert torch.equal(obs[..., :42].reshape(3, 5, 14, 3).sum(-1), torch.ones(3, 5, 14))  # one-hot
    logits = pol(obs)
    assert logits.shape == (3, 5, 8)
    assert torch.equal(logits, torch.zeros_like(logits))  # untrained = uniform = classical KMC
    torch.nn.init.normal_(pol.actor[-1].weight)
    base = pol(obs)
    # decentralised: an agent's logits depend on its own view only; the shared net is permutation-equivariant
    changed = obs.clone()
    changed[:, 1] = torch.roll(changed[:, 1], 3, -1)
    out = pol(changed)
    assert torch.equal(out[:, 0], base[:, 0]) and torch.equal(out[:, 2:], base[:, 2:])
    perm = torch.tensor([4, 2, 0, 1, 3])
    torch.testing.assert_close(pol(obs[:, perm]), base[:, perm], rtol=0, atol=1e-6)  # fp32 matmul blocking
    g = sw.global_features(obs, torch.zeros(3))
    assert pol.value(g).shape == (3,)


def test_ppo_step_lowers_the_loss_on_a_fixed_batch():
    cfg = sw.SwarmConfig(hidden=32, rollout_steps=16)
    torch.manual_seed(0)
    pol = sw.SwarmPolicy(cfg)
    kmc = tiny(7, replicas=16)
    batch = sw.rollout(kmc, pol, cfg.rollout_steps, kmc.energy.clone(), kmc.n_cu, cfg)
    with torch.no_grad():
        value = pol.value(batch["g"].flatten(0, 1)).reshape(batch["k"].shape)
        adv, ret = sw.gae(batch["reward"].float(), value, batch["last_value"], cfg.gamma, cfg.lam)
    opt = torch.optim.Adam(pol.parameters(), lr=1e-3)
    before = sw.ppo_loss(pol, batch, adv, ret, cfg)
    for _ in range(5):
        opt.zero_grad()
        sw.ppo_loss(pol, batch, adv, ret, cfg)["loss"].backward()
        opt.step()
    after = sw.ppo_loss(pol, batch, adv, ret, cfg)
    assert after["loss"] < before["loss"]
    assert after["policy"] < before["policy"]  # the clipped surrogate itself improves, not only the critic


def test_gae_matches_discounted_returns_when_lambda_is_one():
    torch.manual_seed(0)
    r, v, last = torch.randn(5, 3), torch.randn(5, 3), torch.randn(3)
    adv, ret = sw.gae(r, v, last, gamma=0.9, lam=1.0)
    expect = last.clone()
    for t in reversed(range(5)):
        expect = r[t] + 0.9 * expect
        torch.testing.assert_close(ret[t], expect)


def test_train_and_simulate_run_end_to_end():
    cfg = sw.SwarmConfig(hidden=16, rollout_steps=8, reset_every=2, epochs=2)
    pol, curve = sw.train(lambda s: tiny(s, replicas=4, cells=4), cfg, iterations=3)
    assert len(curve) == 3 and curve["rollout_ess"].between(0, 1 + 1e-9).all()
    raw = sw.simulate(tiny(9, replicas=4, cells=4), pol, steps=20, record_every=10)
    assert sorted(raw["step"].unique()) == [0, 10, 20]
    s = sw.summarize(raw)
    assert s["ess"].iloc[0] == pytest.approx(1.0)  # no event yet: every weight is 1
    grid = sw.on_time_grid(raw, np.linspace(0, raw.groupby("replica")["time"].max().min(), 4))
    assert len(grid) == 4 * 4 and grid["density"].notna().all()


def test_ks_and_chi2_helpers():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=2000), rng.normal(size=2000)
    assert sw.ks_2samp(x, y)[1] > 0.01 and sw.ks_2samp(x, y + 0.3)[1] < 1e-6
    # chi-square against a value computed by hand: table [[10, 20], [20, 10]] -> stat 6.667, dof 1
    stat, dof, p = sw.chi2_homogeneity([[10, 20], [20, 10]])
    assert dof == 1 and stat == pytest.approx(20 / 3) and p == pytest.approx(0.009823, rel=1e-3)


def test_progress_counts_events_to_the_half_way_target():
    steps = np.arange(0, 110, 10)
    rows = []
    for mode, rate in (("classical", 0.01), ("swarm", 0.02)):  # the swarm clusters twice as fast per event
        rows.append(pd.DataFrame({"step": steps, "mode": mode, "cu_frac_clustered_mean": 0.2 + rate * steps,
                                  "wall_s": steps * 1e-3, "ess": np.exp(-steps / 50)}))
    p = sw.progress(pd.concat(rows, ignore_index=True))
    assert p["target"] == pytest.approx(0.2 + 0.5 * 1.0)  # half-way to classical's final 1.2
    assert (p["steps_classical"], p["steps_swarm"]) == (50, 30)  # first records at or above 0.7
    assert p["step_speedup"] == pytest.approx(50 / 30)
    assert p["min_ess"] == pytest.approx(math.exp(-2))


def cu_pairs(kmc) -> torch.Tensor:
    """(R,) Cu-Cu pairs on 1NN + 2NN shells, counted from scratch over the neighbour table."""
    from msrbook.simulators import bcc
    nbr = torch.from_numpy(bcc.neighbour_table(kmc.cells))  # (N, 14)
    cu = kmc.species.long() == sw.CU  # (R, N)
    return (cu[:, :, None] & cu[:, nbr]).sum((1, 2)) // 2


def test_cu_bond_reward_counts_the_change_in_cu_pairs():
    kmc = tiny(8, replicas=16, cu_frac=0.3)  # Cu-rich so that Cu jumps are frequent
    before, moved = cu_pairs(kmc), 0
    for _ in range(100):
        own, tgt = kmc.neighbour_species(), kmc.target_neighbour_species()
        out = kmc.step()
        change = sw.cu_bond_change(own, tgt, out["v"], out["a"])
        after = cu_pairs(kmc)
        assert torch.equal(change, after - before)
        moved += int((change != 0).sum())
        before = after
    assert moved > 50  # the check saw many Cu jumps that changed the pair count


def test_species_read_back_from_the_agents_view():
    kmc = tiny(10, replicas=3, vacancies=3)
    own, tgt = sw._species_seen(sw.agent_features(kmc, targets=True))
    assert torch.equal(own, kmc.neighbour_species().long()) and torch.equal(tgt, kmc.target_neighbour_species().long())


def test_weighted_estimate_recovers_the_target_mean():
    # Samples from the proposal N(1, 1), weights to the target N(0, 1): log w = log N(x; 0, 1) - log N(x; 1, 1).
    x = np.random.default_rng(0).normal(1.0, 1.0, 20000)
    mu, se = sw._weighted(x, 0.5 - x)
    assert abs(mu) < 4 * se and se < 0.05  # 4 standard errors; the estimate is also precise
    mu_flat, _ = sw._weighted(x, np.zeros_like(x))
    assert mu_flat == pytest.approx(x.mean())


def test_time_grid_takes_the_last_state_before_each_time():
    raw = pd.DataFrame({"replica": [0, 0, 0, 1, 1], "time": [0.0, 1.0, 3.0, 0.0, 2.5], "step": [0, 1, 2, 0, 1],
                        "density": [10.0, 11.0, 12.0, 20.0, 21.0]})
    g = sw.on_time_grid(raw, np.array([0.5, 2.0, 3.0]))
    got = g.sort_values(["replica", "time"])["density"].tolist()
    assert got == [10.0, 11.0, 12.0, 20.0, 20.0, 21.0]
