"""Simulators: the vacancy kinetic Monte Carlo of Fe-Cu (serial reference and GPU) and the swarm of learned agents."""
