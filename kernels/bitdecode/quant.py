"""Low-bit KV cache of BitDecoding (arXiv:2503.18773): quantize, pack, and a cache with an fp16 residual.

Glossary: B batch, Hkv key/value heads, T cached tokens, D head dim, b bits (4 or 2), PER = 8
codes per word: 4-bit codes in int32 words, 2-bit codes in int16 words. K and V are [B, Hkv, T, D]
(SDPA layout).

Quantization is asymmetric min-max per group of `group` consecutive elements along one axis:

    s = (max - min) / (2^b - 1),   z = min,   c = clamp(floor((x - z) * (1/s) + 1/2), 0, 2^b - 1),   x^ = c * s + z

so |x - x^| <= s / 2 per element (plus the rounding of s to fp16 and of 1/s to fp32). Scale and zero
are stored in fp16, side by side (a half2 pair, the last dim of every metadata tensor). K is quantized per channel over groups of tokens ("KC", axis 2) or per token over
groups of channels ("KT", axis 3); V always per token over groups of channels.

Packing (`pack` / `unpack_to_logical`): every packed tensor here is packed along TOKENS, in tiles of
`tile` tokens, 8 codes per word (int32 at 4 bits, int16 at 2 bits). Inside a tile, word row i holds
in bit slot j (bits [b*j, b*j+b)) the code of token j * (tile / 8) + i:

    logical token t of a tile        ->  word row  t % (tile/PER),  slot  t // (tile/PER)
    word row i, slot j               ->  logical token  j * (tile/PER) + i

So one shift and one mask of a [tile/8, D] block of words yields a contiguous slab of tile/8
consecutive tokens (16 at tile 128, the smallest `tl.dot` operand): the decode kernel shifts and
masks the loaded words in the registers of the tensor-core operand and feeds each slab straight to
`tl.dot` (Triton loads the words from shared memory directly in the operand's layout; no fp16 copy
of the tile is ever written). `unpack_to_logical`
undoes the layout bit-exactly, so the codes, scales and zeros can be reused outside this code.

Residual cache (`QuantKVCache`): the newest tokens stay in fp16 until `residual` of them are
waiting; then all of them are quantized and packed by one fused Triton kernel (K and V in one
launch). After any sequence of appends, packed = floor(T / residual) * residual tokens.
The decode kernel merges the packed part and the residual by log-sum-exp.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .pack import quantize_pack_kv

K_MODES = ("KC", "KT")
PER_WORD = 8  # codes per packed word, at both bit widths


def word_dtype(bits: int) -> torch.dtype:
    """The packed word: 8 codes of `bits` bits, int32 at 4 bits, int16 at 2 bits."""
    return {4: torch.int32, 2: torch.int16}[bits]


@dataclass(frozen=True)
class QuantConfig:
    bits: int = 4  # 4 or 2 bits per code
    k_mode: str = "KC"  # "KC": K per channel over groups of tokens; "KT": K per token over groups of channels
    group: int = 128  # elements per group: tokens for KC's K, channels for KT's K and for V (capped at D)
    residual: int | None = None  # fp16 residual capacity in tokens; None: 128 at 4 bits, 256 at 2 bits (official e2e)

    def __post_init__(self):
        assert self.bits in (2, 4), f"bits must be 4 or 2, got {self.bits}"
        assert self.k_mode in K_MODES, f"k_mode must be one of {K_MODES}, got {self.k_mode!r}"
        assert self.group >= 1, self.group
        assert self.residual_tokens % self.tile == 0, (
            f"residual {self.residual_tokens} must be a multiple of the packing tile {self.tile}")

    @property
    def residual_tokens(self) -> int:
        return self.residual if self.residual is not None else (128 if self.bits == 4 else 256)

    @property
    def per_word(self) -> int:
        """Codes per word (8: one word is 32 bits at 4 bits, 16 bits at 2 bits)."""
        return PER_WORD

    @property
    def word_dtype(self) -> torch.dtype:
        return word_dtype(self.bits)

    @property
    def tile(self) -> int:
        """Tokens per packed tile (the interleave unit and the kernel's BLOCK_N): the token group
        in KC mode (one K scale row per tile), else 128."""
        return self.group if self.k_mode == "KC" else 128

    def channel_group(self, D: int) -> int:
        """Channels per group for V and for KT's K."""
        return min(self.group, D)

    def k_axis(self) -> int:
        """The axis of [B, Hkv, T, D] along which a K group extends."""
        return 2 if self.k_mode == "KC" else 3


def metadata_bits(bits: int, group: int = 128) -> float:
    """Bits per element of a quantized tensor with fp16 scale and zero per `group` elements:
    b + 32 / group (b + 0.25 at group 128). The ideal decode speedup over fp16 is 16 / this."""
    return bits + 32 / group


# -------------------------------------------------------------------------------- reference quantizer


@dataclass
class QTensor:
    """Quantized tensor in LOGICAL order. codes: uint8, the shape of x. scale, zero: fp16, the
    shape of x with `axis` shortened to the number of groups (the last group may be partial)."""

    codes: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    bits: int
    group: int
    axis: int
    shape: tuple = field(default=())


def _grouped(x: torch.Tensor, group: int, axis: int, pad: float) -> torch.Tensor:
    """x with `axis` moved last, padded with `pad` to a multiple of `group`, viewed [..., n_groups, group]."""
    xt = x.movedim(axis, -1)
    n = xt.shape[-1]
    n_groups = -(-n // group)
    if n_groups * group != n:
        xt = torch.nn.functional.pad(xt, (0, n_groups * group - n), value=pad)
    return xt.reshape(*xt.shape[:-1], n_groups, group)


def quant_params(mn: torch.Tensor, mx: torch.Tensor, bits: int):
    """(scale, zero) in fp16 from fp32 group minima and maxima: s = fp16((max - min) / (2^b - 1)),
    z = fp16(min). The Triton kernel does the same arithmetic in the same order."""
    scale = ((mx - mn) / (2**bits - 1)).to(torch.float16)
    return scale, mn.to(torch.float16)


def quant_codes(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """c = clamp(floor((x - z) * (1/s) + 1/2), 0, 2^b - 1) in fp32 with the stored fp16 s and z: one
    correctly rounded reciprocal per group, then a multiply and an add per element, each rounded
    on its own (the Triton kernel turns off fma fusion to match). A zero scale (a constant group)
    uses 1/s = 1: every code is 0 and x^ = z."""
    s = scale.float()
    inv = 1.0 / torch.where(s > 0, s, torch.ones_like(s))
    c = torch.floor((x.float() - zero.float()) * inv + 0.5)
    return c.clamp_(0, 2**bits - 1).to(torch.uint8)


def quantize(x: torch.Tensor, bits: int, group: int, axis: int) -> QTensor:
    """Asymmetric min-max quantization of x per group of `group` consecutive elements along `axis`
    (reference path, pure torch). The statistics are taken on x rounded to fp16, as the cache
    stores it, so this equals the fused kernel's output."""
    axis = axis % x.ndim
    x16 = x.to(torch.float16).float()
    n = x.shape[axis]
    mn = _grouped(x16, group, axis, float("inf")).amin(-1)  # [..., n_groups]
    mx = _grouped(x16, group, axis, float("-inf")).amax(-1)  # [..., n_groups]
    scale, zero = quant_params(mn, mx, bits)
    expand = lambda t: t.repeat_interleave(group, -1)[..., :n]  # noqa: E731 -- [..., n]
    codes = quant_codes(x16.movedim(axis, -1), expand(scale), expand(zero), bits).movedim(-1, axis)
    return QTensor(codes, scale.movedim(-1, axis), zero.movedim(-1, axis), bits, group, axis, tuple(x.shape))


def dequantize(qt: QTensor) -> torch.Tensor:
    """x^ = c * s + z in fp32, logical order, the shape of the original x."""
    n = qt.codes.shape[qt.axis]
    expand = lambda t: t.float().movedim(qt.axis, -1).repeat_interleave(qt.group, -1)[..., :n].movedim(-1, qt.axis)  # noqa: E731
    return qt.codes.float() * expand(qt.scale) + expand(qt.zero)


def fake_quant(x: torch.Tensor, bits: int, group: int, axis: int) -> torch.Tensor:
    """quantize then dequantize, in x's dtype."""
    return dequantize(quantize(x, bits, group, axis)).to(x.dtype)


def _split_residual(x: torch.Tensor, cfg: QuantConfig, keep_residual: bool):
    T = x.shape[2]
    n_packed = (T // cfg.residual_tokens) * cfg.residual_tokens if keep_residual else T
    return x[:, :, :n_packed], x[:, :, n_packed:]


def fake_quant_k(k: torch.Tensor, cfg: QuantConfig, keep_residual: bool = True) -> torch.Tensor:
    """K [B, Hkv, T, D] as the cache holds it after T appends: the first floor(T / residual) *
    residual tokens quantized (KC or KT) and dequantized, the rest fp16 (keep_residual=False:
    every token quantized). Logical order; k's dtype."""
    packed, rest = _split_residual(k, cfg, keep_residual)
    group = cfg.group if cfg.k_mode == "KC" else cfg.channel_group(k.shape[-1])
    done = fake_quant(packed, cfg.bits, group, cfg.k_axis()) if packed.shape[2] else packed
    return torch.cat([done, rest.to(torch.float16).to(k.dtype)], dim=2)


def fake_quant_v(v: torch.Tensor, cfg: QuantConfig, keep_residual: bool = True) -> torch.Tensor:
    """V [B, Hkv, T, D] quantized per token over channel groups, residual as in `fake_quant_k`."""
    packed, rest = _split_residual(v, cfg, keep_residual)
    done = fake_quant(packed, cfg.bits, cfg.channel_group(v.shape[-1]), 3) if packed.shape[2] else packed
    return torch.cat([done, rest.to(torch.float16).to(v.dtype)], dim=2)


# ------------------------------------------------------------------------------------------- packing


def pack(codes: torch.Tensor, bits: int, tile: int, axis: int = 2) -> torch.Tensor:
    """Logical uint8 codes -> words (`word_dtype(bits)`), packed along `axis` in tiles of `tile`
    elements (the layout in the module docstring). The axis length must be a multiple of `tile`; it
    shrinks by 8. Bit-exact inverse: `unpack_to_logical`."""
    per, wbits = PER_WORD, PER_WORD * bits
    assert tile % per == 0, f"tile {tile} must be a multiple of {per}"
    c = codes.movedim(axis, -1).to(torch.int64)
    n = c.shape[-1]
    assert n % tile == 0, f"length {n} along axis {axis} is not a multiple of the tile {tile}"
    rows = tile // per
    c = c.reshape(*c.shape[:-1], n // tile, per, rows)  # [..., tiles, slot j, row i]: token j*rows + i
    shifts = torch.arange(per, device=c.device, dtype=torch.int64) * bits
    words = (c << shifts[:, None]).sum(-2)  # [..., tiles, rows]; slots are disjoint bits, so sum == or
    words = torch.where(words >= 2**(wbits - 1), words - 2**wbits, words)  # the unsigned bit pattern as signed
    return words.reshape(*c.shape[:-3], n // per).to(word_dtype(bits)).movedim(-1, axis)


def unpack_to_logical(words: torch.Tensor, bits: int, tile: int, axis: int = 2) -> torch.Tensor:
    """Words from `pack` -> uint8 codes in logical order (axis length x 8)."""
    per = PER_WORD
    rows = tile // per
    w = words.movedim(axis, -1).to(torch.int64) & (2**(per * bits) - 1)  # [..., n / per] as unsigned
    m = w.shape[-1]
    w = w.reshape(*w.shape[:-1], m // rows, 1, rows)  # [..., tiles, 1, rows]
    shifts = torch.arange(per, device=w.device, dtype=torch.int64) * bits
    c = (w >> shifts[:, None]) & (2**bits - 1)  # [..., tiles, per, rows]: slot j of row i = token j*rows + i
    return c.reshape(*c.shape[:-3], m * per).to(torch.uint8).movedim(-1, axis)


# ------------------------------------------------------------------------------------- residual cache


class QuantKVCache:
    """Packed low-bit K/V plus an fp16 residual for one layer; all sequences share one length.

    Tensors the decode kernel takes (views of the used part; P = packed tokens):
      k_codes, v_codes  int32 (4-bit) / int16 (2-bit) [B, Hkv, P / 8, D]  packed along tokens (module docstring)
      k_meta            fp16  KC: [B, Hkv, P / tile, D, 2] ((scale, zero) per channel and tile of tokens)
                              KT: [B, Hkv, P, 2] ((scale, zero) per token; one channel group = D)
      v_meta            fp16  [B, Hkv, P, 2]
    The (scale, zero) pairs are adjacent, so the kernel loads each pair as one 32-bit word.
      k_res, v_res      fp16  [B, Hkv, res_len, D]
    """

    def __init__(self, cfg: QuantConfig, B: int, Hkv: int, D: int, device="cpu", max_tokens: int = 0):
        assert cfg.channel_group(D) == D, (
            f"the cache keeps one channel group per head (group >= D); got group {cfg.group}, D {D}")
        assert cfg.tile >= 16 * PER_WORD and cfg.tile & (cfg.tile - 1) == 0, (
            f"the packing tile must be a power of two >= 128 (slabs of >= 16 tokens for tl.dot), got {cfg.tile}")
        self.cfg, self.B, self.Hkv, self.D, self.device = cfg, B, Hkv, D, torch.device(device)
        self.packed_len, self.res_len = 0, 0
        self.flushes = 0  # fused quantize-and-pack launches so far
        R = cfg.residual_tokens
        self._res_k = torch.empty(B, Hkv, R, D, device=self.device, dtype=torch.float16)
        self._res_v = torch.empty_like(self._res_k)
        self._alloc(max(max_tokens, 0))

    # storage ---------------------------------------------------------------------------------
    def _alloc(self, tokens: int):
        """(Re)allocate packed storage for `tokens` tokens (a multiple of the tile), keeping the contents."""
        cfg, B, H, D = self.cfg, self.B, self.Hkv, self.D
        tokens = -(-tokens // cfg.tile) * cfg.tile
        new = dict(
            _k_codes=torch.zeros(B, H, tokens // cfg.per_word, D, device=self.device, dtype=cfg.word_dtype),
            _v_codes=torch.zeros(B, H, tokens // cfg.per_word, D, device=self.device, dtype=cfg.word_dtype),
            _k_meta=(torch.zeros(B, H, tokens // cfg.tile, D, 2, device=self.device, dtype=torch.float16)
                     if cfg.k_mode == "KC" else torch.zeros(B, H, tokens, 2, device=self.device, dtype=torch.float16)),
            _v_meta=torch.zeros(B, H, tokens, 2, device=self.device, dtype=torch.float16),
        )
        if self.packed_len:
            for name, t in new.items():
                old = getattr(self, name)
                t[:, :, :old.shape[2]] = old
        self.capacity = tokens
        for name, t in new.items():
            setattr(self, name, t)

    @property
    def length(self) -> int:
        return self.packed_len + self.res_len

    @property
    def k_codes(self):
        return self._k_codes[:, :, :self.packed_len // self.cfg.per_word]

    @property
    def v_codes(self):
        return self._v_codes[:, :, :self.packed_len // self.cfg.per_word]

    @property
    def k_meta(self):
        n = self.packed_len // self.cfg.tile if self.cfg.k_mode == "KC" else self.packed_len
        return self._k_meta[:, :, :n]

    @property
    def v_meta(self):
        return self._v_meta[:, :, :self.packed_len]

    @property
    def k_res(self):
        return self._res_k[:, :, :self.res_len]

    @property
    def v_res(self):
        return self._res_v[:, :, :self.res_len]

    # updates ---------------------------------------------------------------------------------
    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Append k, v [B, Hkv, n, D] (a prompt or one decode step). When `residual` tokens are
        waiting, the oldest multiple of `residual` is quantized and packed by one fused kernel."""
        assert k.shape == v.shape and k.shape[:2] == (self.B, self.Hkv) and k.shape[3] == self.D, (k.shape, v.shape)
        R = self.cfg.residual_tokens
        n = k.shape[2]
        n_flush = ((self.res_len + n) // R) * R
        if n_flush:
            if self.res_len:  # the residual is the start of the block to flush
                k_blk = torch.cat([self.k_res, k[:, :, :n_flush - self.res_len].to(torch.float16)], dim=2)
                v_blk = torch.cat([self.v_res, v[:, :, :n_flush - self.res_len].to(torch.float16)], dim=2)
            else:
                k_blk, v_blk = k[:, :, :n_flush], v[:, :, :n_flush]
            self._flush(k_blk, v_blk)
            k, v = k[:, :, n_flush - self.res_len:], v[:, :, n_flush - self.res_len:]
            self.res_len = 0
        m = k.shape[2]
        self._res_k[:, :, self.res_len:self.res_len + m] = k
        self._res_v[:, :, self.res_len:self.res_len + m] = v
        self.res_len += m

    def _flush(self, k_blk: torch.Tensor, v_blk: torch.Tensor) -> None:
        """Quantize and pack k_blk, v_blk [B, Hkv, n, D] (n a multiple of the tile) onto the packed part."""
        n = k_blk.shape[2]
        if self.packed_len + n > self.capacity:
            self._alloc(max(self.packed_len + n, 2 * self.capacity))
        p, cfg = self.packed_len, self.cfg
        k_meta = (self._k_meta[:, :, p // cfg.tile:(p + n) // cfg.tile] if cfg.k_mode == "KC"
                  else self._k_meta[:, :, p:p + n])
        quantize_pack_kv(k_blk, v_blk, self._k_codes[:, :, p // cfg.per_word:(p + n) // cfg.per_word], k_meta,
                         self._v_codes[:, :, p // cfg.per_word:(p + n) // cfg.per_word], self._v_meta[:, :, p:p + n],
                         bits=cfg.bits, tile=cfg.tile, k_per_channel=cfg.k_mode == "KC")
        self.packed_len += n
        self.flushes += 1

    # views for references ---------------------------------------------------------------------
    def dequantized(self, batches: int | list[int] | None = None):
        """(K, V) fp32 [B, Hkv, T, D] in logical order: the packed part dequantized by the reference
        path, then the fp16 residual. What every decode impl must attend to. `batches`: only the
        first that many batch elements, or only the batch elements listed (long caches on the GPU)."""
        cfg = self.cfg
        nb = batches if isinstance(batches, list) else slice(None, batches or self.B)
        kc = unpack_to_logical(self.k_codes[nb], cfg.bits, cfg.tile).float()  # [nb, Hkv, P, D]
        vc = unpack_to_logical(self.v_codes[nb], cfg.bits, cfg.tile).float()  # [nb, Hkv, P, D]
        km, vm = self.k_meta[nb].float(), self.v_meta[nb].float()
        if cfg.k_mode == "KC":
            ks = km[..., 0].repeat_interleave(cfg.tile, 2)  # [nb, Hkv, P, D]
            kz = km[..., 1].repeat_interleave(cfg.tile, 2)
        else:
            ks, kz = km[..., 0:1], km[..., 1:2]  # [nb, Hkv, P, 1]
        k = torch.cat([kc.mul_(ks).add_(kz), self.k_res[nb].float()], dim=2)
        v = torch.cat([vc.mul_(vm[..., 0:1]).add_(vm[..., 1:2]), self.v_res[nb].float()], dim=2)
        return k, v

    def nbytes(self) -> int:
        """Bytes the decode step reads from this cache: codes, metadata and the residual."""
        return sum(t.numel() * t.element_size() for t in
                   (self.k_codes, self.v_codes, self.k_meta, self.v_meta, self.k_res, self.v_res))
