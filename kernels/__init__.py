"""Triton and TileLang kernels (importable as `msrbook.kernels`); each beside its PyTorch reference."""
