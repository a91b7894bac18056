"""The throughput helpers run and report consistent numbers on CPU; notebook 2's reference time is
notebook 1's end time in every profile (its prose says so)."""

import math

import yaml

from msrbook import repo_root
from msrbook.pipeline.params import notebook_defaults
from msrbook.chapters.swarmthinkers.speed import serial_throughput, torch_throughput

NB = repo_root() / "notebooks" / "swarmthinkers"


def test_throughput_helpers_on_cpu():
    t = torch_throughput(4, 8, 1, 0.2)
    s = serial_throughput(4, 1, 0.2)
    for r in (t, s):
        assert r["events"] > 0 and r["events_per_s"] > 0 and r["phys_s_per_wall_s"] > 0
        assert math.isclose(r["events_per_s"], r["events"] / r["wall_s"])
    assert t["events"] == t["steps"] * t["replicas"]  # no stop time: every replica moves every step
    assert math.isnan(t["bytes_per_site"])  # memory is only measured on a GPU


def test_reference_time_is_notebook_1_end_time():
    profiles = yaml.safe_load((NB / "profiles.yml").read_text())
    d1 = notebook_defaults(NB / "01-lattice-and-kmc.ipynb")
    d2 = notebook_defaults(NB / "02-gpu-speed.ipynb")
    for name, prof in profiles.items():
        p1 = {**d1, **(prof.get("01-lattice-and-kmc") or {})}
        p2 = {**d2, **(prof.get("02-gpu-speed") or {})}
        assert p2["reference_time"] == p1["until_time"], name
