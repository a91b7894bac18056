"""The tensor simulator (CPU torch) and the serial reference produce the same statistics: from the same
initial boxes, ensemble means of energy, event count and Cu-cluster observables at five physical times
agree within standard errors (two-sample z, family-wise level 1e-3 with Bonferroni)."""

import numpy as np

from msrbook.simulators.kmc_serial import COMPARED, agreement
from msrbook.simulators.observables import two_sided_z_critical


def test_torch_and_serial_agree():
    # 6^3 cells (432 sites), 5 at.% Cu (22 atoms) so clusters form and dissolve within ~300 events
    out = agreement(cells=6, replicas=150, until_time=4e-6, records=5, cu_frac=0.05, seed=3)
    z = out["z"]
    moved = out["ens_torch"]
    assert moved["events"].iloc[-1] > 100  # enough events for the observables to change
    assert (moved["energy"].iloc[-1] < moved["energy"].iloc[0] - 3 * moved["energy_se"].iloc[-1])  # they did
    zc = two_sided_z_critical(1e-3, len(z))
    worst = z.loc[z["z"].abs().idxmax()]
    assert np.abs(z["z"]).max() < zc, worst.to_dict()
    assert set(z["observable"]) == set(COMPARED)
