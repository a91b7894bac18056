"""Perplexity in non-overlapping windows, and the unigram baseline it is compared with.

For tokens x_1..x_N cut into windows of W tokens (a last, shorter window is dropped), each window
is scored on its own: the model predicts x_2..x_W from their prefixes inside the window, so every
window contributes W - 1 predictions and none sees text outside it. Then

    mean NLL = (1 / M) * sum over predictions of -ln p(x_t | window prefix),   PPL = exp(mean NLL),

with M = (number of windows) * (W - 1). PPLs of different tokenizers are not comparable: a byte
model's PPL is per byte, SmolLM2's per SmolLM2 token.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


@torch.no_grad()
def window_nll(logits_fn: Callable[[torch.Tensor], torch.Tensor], tokens: torch.Tensor, window: int, *,
               batch_size: int = 8, device="cpu", max_windows: int | None = None, progress: bool = False) -> dict:
    """{'windows', 'predictions', 'mean_nll', 'ppl', 'per_window'} for logits_fn (B, W) -> (B, W, V)."""
    n = tokens.numel() // window
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise ValueError(f"{tokens.numel()} tokens make no window of {window}")
    wins = tokens[: n * window].view(n, window)  # (N, W)
    per_window = []
    for i in tqdm(range(0, n, batch_size), desc=f"NLL, windows of {window}", disable=not progress):
        x = wins[i:i + batch_size].to(device)  # (B, W)
        logits = logits_fn(x)[:, :-1].float()  # (B, W-1, V): predictions of x[:, 1:]
        nll = F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")  # (B, W-1)
        per_window += nll.mean(dim=1).tolist()
    mean = sum(per_window) / len(per_window)  # windows have equal counts, so this is the token mean
    return {"windows": n, "predictions": n * (window - 1), "mean_nll": mean, "ppl": math.exp(mean),
            "per_window": per_window}


def unigram_entropy(tokens: torch.Tensor, vocab_size: int) -> float:
    """Entropy (nats) of the tokens' own unigram distribution: the lowest mean NLL any model that
    ignores context can reach on them, so a trained model must end well below it."""
    counts = torch.bincount(tokens, minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())
