"""Train a preset's model from scratch, or load it from the cache: `load_or_train(name, seed)`.

AdamW (decoupled weight decay on matrices only), linear warmup then cosine decay to a floor,
bf16 autocast on a GPU (float32 weights), global gradient-norm clipping, a validation evaluation
every `eval_every` steps (and an `on_eval` hook), a tqdm bar. Weights come from a seeded generator
and batches from another, so nothing touches the global random state and a CPU run repeats
exactly; on a GPU, atomics in some backward kernels can change the last bits from run to run.

Trained weights go to <cache>/models/<preset>-seed<seed>-torch<version>-<device>-<dtype>-<config
hash>.pt, so a second notebook on the same machine reuses the first one's model, and a changed
preset, another torch, device or dtype retrains.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..errors import BookError
from .config import Preset, TrainConfig, preset as get_preset
from .corpus import encode_split, load_corpus, tokenizer as get_tokenizer
from .fetch import cache_dir
from .model import Decoder


@dataclass
class Trained:
    preset: Preset  # what was trained
    model: Decoder  # in eval mode, on the training device
    tokenizer: object  # encode/decode for this model
    history: list[dict] = field(default_factory=list)  # one row per evaluation
    train_seconds: float = 0.0  # wall time of training (0 when loaded from the cache)
    from_cache: bool = False  # True when the weights were loaded, not trained
    cache_path: str = ""  # where the weights are kept


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warmup over tc.warmup steps, then cosine from tc.lr down to tc.min_lr_frac * tc.lr."""
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    frac = (step - tc.warmup) / max(1, tc.steps - 1 - tc.warmup)
    floor = tc.min_lr_frac * tc.lr
    return floor + 0.5 * (tc.lr - floor) * (1 + math.cos(math.pi * min(1.0, frac)))


def cache_path(p: Preset, seed: int, device: str) -> str:
    dev = "cpu" if device == "cpu" else "cuda-" + re.sub(r"[^A-Za-z0-9]+", "_", torch.cuda.get_device_name(0))
    dtype = "bf16" if device != "cpu" else "fp32"
    cfg = json.dumps(dataclasses.asdict(p), sort_keys=True, default=str)
    digest = hashlib.sha256(cfg.encode()).hexdigest()[:10]
    return str(cache_dir() / "models" / f"{p.name}-seed{seed}-torch{torch.__version__}-{dev}-{dtype}-{digest}.pt")


def random_batch(tokens: torch.Tensor, tc: TrainConfig, gen: torch.Generator):
    """(x, y), each (B, T): random windows of the training tokens and the same shifted by one."""
    start = torch.randint(0, tokens.numel() - tc.seq_len - 1, (tc.batch_size,), generator=gen)
    idx = start[:, None] + torch.arange(tc.seq_len + 1)[None, :]  # (B, T+1)
    w = tokens[idx]
    return w[:, :-1], w[:, 1:]


@torch.no_grad()
def val_loss(model: Decoder, val: torch.Tensor, tc: TrainConfig, device: str) -> float:
    """Mean NLL on eval_batches * batch_size fixed windows spread evenly over the validation split."""
    n = tc.eval_batches * tc.batch_size
    starts = torch.linspace(0, val.numel() - tc.seq_len - 1, n).long()
    losses = []
    for chunk in starts.split(tc.batch_size):
        w = val[chunk[:, None] + torch.arange(tc.seq_len + 1)[None, :]].to(device)  # (B, T+1)
        with torch.autocast("cuda", torch.bfloat16, enabled=device != "cpu"):
            logits = model(w[:, :-1])
        losses.append(torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), w[:, 1:].flatten()).item())
    return sum(losses) / len(losses)


def train(p: Preset, seed: int = 0, device: str | None = None, *, progress: bool = True, on_eval=None) -> Trained:
    """Train preset p from scratch with `seed`; on_eval(row) is called at every evaluation."""
    if p.train is None:
        raise BookError(f"preset {p.name!r} is pretrained, not trained here; load it with smollm2.load_hf()")
    tc, device = p.train, device or default_device()
    tok = get_tokenizer(p.tokenizer)
    corpus = load_corpus(p.corpus)
    train_tok, val_tok = encode_split(corpus, "train", tok), encode_split(corpus, "val", tok)
    model = Decoder(p.model).init_weights(torch.Generator().manual_seed(seed)).to(device)
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=tc.lr, betas=tc.betas,
                            fused=device != "cpu")
    gen, history = torch.Generator().manual_seed(seed + 1), []
    loss_sum, n_since = torch.zeros((), device=device), 0  # summed on the device: no sync per step
    t0 = time.perf_counter()
    bar = tqdm(range(tc.steps), desc=f"train {p.name}", disable=not progress, mininterval=5.0)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, tc)
        x, y = (t.to(device) for t in random_batch(train_tok, tc, gen))
        with torch.autocast("cuda", torch.bfloat16, enabled=device != "cpu"):
            logits = model(x)  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        loss_sum, n_since = loss_sum + loss.detach(), n_since + 1
        if (step + 1) % tc.eval_every == 0 or step + 1 == tc.steps:
            row = {"step": step + 1, "lr": lr_at(step, tc), "train_loss": loss_sum.item() / n_since,
                   "val_loss": val_loss(model.eval(), val_tok, tc, device), "elapsed_s": time.perf_counter() - t0}
            model.train()
            loss_sum, n_since = torch.zeros((), device=device), 0
            history.append(row)
            bar.set_postfix(train=f"{row['train_loss']:.3f}", val=f"{row['val_loss']:.3f}")
            if on_eval:
                on_eval(row)
    return Trained(p, model.eval(), tok, history, time.perf_counter() - t0)


def load_or_train(name: str, seed: int = 0, device: str | None = None, *, progress: bool = True) -> Trained:
    """The one way a chapter gets a from-scratch model: the cached weights of (preset, seed,
    torch, device, dtype), or a fresh training run whose weights are then cached."""
    p, device = get_preset(name), device or default_device()
    path = cache_path(p, seed, device)
    if os.path.exists(path):
        saved = torch.load(path, map_location=device, weights_only=True)
        model = Decoder(p.model).to(device)
        model.load_state_dict(saved["state_dict"])
        return Trained(p, model.eval(), get_tokenizer(p.tokenizer), saved["history"], 0.0, True, path)
    run = train(p, seed, device, progress=progress)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save({"state_dict": run.model.state_dict(), "history": run.history}, tmp)
    os.replace(tmp, path)
    run.cache_path = path
    return run
