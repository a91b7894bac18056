"""Shared closeness checks for kernels and models: one report format, never whole tensors.

`assert_close` passes where |actual - expected| <= atol + rtol * |expected| holds elementwise and
no value is NaN (a NaN in either tensor is always a failure, even where both hold NaN: kernels here
never produce NaN on valid inputs). On failure it raises AssertionError with the worst element's
index and values, the count of failing elements, the relative L2 error and the NaN counts.
"""

import torch


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64 (0.0 when both are zero; inf when only b is zero)."""
    a64, b64 = a.detach().double().cpu(), b.detach().double().cpu()
    num, den = torch.linalg.vector_norm(a64 - b64).item(), torch.linalg.vector_norm(b64).item()
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, rtol: float, atol: float, name: str = "") -> None:
    """Raise AssertionError with a short report unless `actual` matches `expected` (see module doc)."""
    label = f"{name}: " if name else ""
    if actual.shape != expected.shape:
        raise AssertionError(f"{label}shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    nan_a, nan_e = int(torch.isnan(a).sum()), int(torch.isnan(e).sum())
    err = (a - e).abs()
    bad = ~(err <= atol + rtol * e.abs())  # NaN compares False, so it counts as bad
    n_bad = int(bad.sum())
    if n_bad == 0 and nan_a == 0 and nan_e == 0:
        return
    err_nonan = torch.where(torch.isnan(err), torch.full_like(err, float("inf")), err)
    flat = int(err_nonan.reshape(-1).argmax()) if err.numel() else 0
    idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), err.shape)) if err.numel() else ()
    worst = (f"max abs err {err_nonan.reshape(-1)[flat].item():.3e} at {idx} "
             f"(actual {a.reshape(-1)[flat].item():.6g}, expected {e.reshape(-1)[flat].item():.6g})"
             if err.numel() else "empty tensors")
    raise AssertionError(
        f"{label}{n_bad}/{err.numel()} elements outside atol={atol:g} + rtol={rtol:g}*|expected|; {worst}; "
        f"rel L2 {rel_l2(torch.nan_to_num(a), torch.nan_to_num(e)):.3e}; NaN actual={nan_a} expected={nan_e}"
    )
