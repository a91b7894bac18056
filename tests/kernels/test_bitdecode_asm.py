"""The inline-PTX code converters of kernels/bitdecode/ (magic_cvt="asm", and "sub": fp16 subnormals).

The Triton interpreter cannot run inline PTX, so its arithmetic is checked here by a small model of
the six PTX instructions it uses (semantics from the PTX ISA: prmt's default mode, lop3's lookup
table, f16x2 arithmetic with one rounding), run on the very strings the kernel compiles, over every
4-bit byte value and every 2-bit 16-bit word. What this cannot check, which element of a pair
Triton puts in the low half of a register, is checked on a GPU by tools/gpu_bitdecode_check.py
(every case of it passed on an H200). The second test compiles the kernel for sm_90 without a GPU
and checks that the asm path replaced the slow convert in the code.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from msrbook.kernels.bitdecode import ASM_SLOT_PAIR, ASM_SLOT_PAIR_SUB


def _f16x2(r: int) -> np.ndarray:
    return np.array([r & 0xFFFF, r >> 16], dtype=np.uint16).view(np.float16)


def _pack(h: np.ndarray) -> int:
    u = np.asarray(h, dtype=np.float16).view(np.uint16).astype(np.uint32)
    return int(u[0] | (u[1] << 16))


def _value(tok: str, regs: dict) -> int:
    tok = tok.strip()
    return regs[tok] if tok in regs else int(tok, 0)


def run_ptx(asm: str, inputs: list[int], outputs: int = 2) -> tuple[int, ...]:
    """Run the kernel's asm block on 32-bit inputs (numbered after the outputs: $2, $3, ... for two
    outputs); returns ($0, $1, ...)."""
    regs = {f"${i + outputs}": v & 0xFFFFFFFF for i, v in enumerate(inputs)}
    for line in asm.splitlines():
        line = line.strip().rstrip(";")
        if not line or line[0] in "{}." or line.startswith(".reg"):
            continue
        op, rest = line.split(None, 1)
        d, *args = [a.strip() for a in rest.split(",")]
        x = [_value(a, regs) for a in args]
        if op == "mov.b32":
            out = x[0]
        elif op == "shr.b32":
            out = x[0] >> x[1]
        elif op == "prmt.b32":  # bytes 0-3 of a, 4-7 of b; selector nibble i picks result byte i
            src = x[0].to_bytes(4, "little") + x[1].to_bytes(4, "little")
            out = 0
            for i in range(4):
                sel = (x[2] >> (4 * i)) & 0xF
                assert sel < 8, "sign-replicating selectors are not used"
                out |= src[sel] << (8 * i)
        elif op == "lop3.b32":  # bit-wise f(a, b, c) from the table: bit (a<<2 | b<<1 | c) of lut
            a, b, c, lut = x
            out = 0
            for bit in range(32):
                idx = ((a >> bit) & 1) << 2 | ((b >> bit) & 1) << 1 | ((c >> bit) & 1)
                out |= ((lut >> idx) & 1) << bit
        elif op == "and.b32":
            out = x[0] & x[1]
        elif op == "sub.f16x2":
            out = _pack(_f16x2(x[0]).astype(np.float64) - _f16x2(x[1]).astype(np.float64))
        elif op == "fma.rn.f16x2":  # one rounding: exact in float64 here, then to fp16
            out = _pack(_f16x2(x[0]).astype(np.float64) * _f16x2(x[1]).astype(np.float64) + _f16x2(x[2]).astype(np.float64))
        else:
            raise AssertionError(f"unmodelled instruction {op}")
        regs[d] = out & 0xFFFFFFFF
    return tuple(regs[f"${i}"] for i in range(outputs))


def test_lop3_table_is_and_or():
    """0xEA is (a & b) | c: the one lookup table the converter relies on."""
    a, b, c = 0xF0, 0xCC, 0xAA  # the PTX ISA's operand patterns
    assert (a & b) | c == 0xEA


@pytest.mark.parametrize("k", range(4))
def test_4bit_pairs_decode_every_byte(k):
    rng = np.random.default_rng(k)
    for _ in range(300):
        w0, w1 = (int(x) for x in rng.integers(0, 2**32, size=2, dtype=np.uint64))
        r0, r1 = run_ptx(ASM_SLOT_PAIR[(4, k)], [w0, w1])
        lo, hi = _f16x2(r0), _f16x2(r1)
        for h, w in enumerate((w0, w1)):  # element h of the pair sits in half h
            assert lo[h] == (w >> (8 * k)) & 0xF, (hex(w), k)
            assert hi[h] == (w >> (8 * k + 4)) & 0xF, (hex(w), k)
    for byte in range(256):  # every byte value in both words
        r0, r1 = run_ptx(ASM_SLOT_PAIR[(4, k)], [byte << (8 * k), (255 - byte) << (8 * k)])
        assert list(_f16x2(r0)) == [byte & 0xF, (255 - byte) & 0xF]
        assert list(_f16x2(r1)) == [byte >> 4, (255 - byte) >> 4]


@pytest.mark.parametrize("k", range(4))
def test_2bit_pairs_decode_every_word(k):
    """Two int16 words arrive in one register, the first in the low half."""
    words = np.arange(1 << 16, dtype=np.int64)
    rng = np.random.default_rng(k)
    partners = rng.permutation(words)
    for w0, w1 in zip(words[::97], partners[::97]):
        r0, r1 = run_ptx(ASM_SLOT_PAIR[(2, k)], [int(w0) | int(w1) << 16])
        for h, w in enumerate((int(w0), int(w1))):
            assert _f16x2(r0)[h] == (w >> (4 * k)) & 3
            assert _f16x2(r1)[h] == (w >> (4 * k + 2)) & 3


@pytest.mark.parametrize("bits", (4, 2))
@pytest.mark.parametrize("k", range(4))
def test_subnormal_pairs_are_the_codes_times_2_to_the_minus_24(bits, k):
    """magic_cvt="sub": the low slot of pair k reads c * 2^-24 and the high slot c * 2^(b-24), exactly
    (fp16 subnormals: no offset, nothing rounded), for random words and every code value."""
    rng = np.random.default_rng(10 * bits + k)
    tiny = np.float64(2.0**-24)
    for _ in range(300):
        if bits == 4:
            w = [int(x) for x in rng.integers(0, 2**32, size=2, dtype=np.uint64)]
            r0, r1 = run_ptx(ASM_SLOT_PAIR_SUB[(4, k)], w)
            lo_c = [(x >> (8 * k)) & 0xF for x in w]
            hi_c = [(x >> (8 * k + 4)) & 0xF for x in w]
        else:
            w = [int(x) for x in rng.integers(0, 2**16, size=2)]
            r0, r1 = run_ptx(ASM_SLOT_PAIR_SUB[(2, k)], [w[0] | w[1] << 16])
            lo_c = [(x >> (4 * k)) & 3 for x in w]
            hi_c = [(x >> (4 * k + 2)) & 3 for x in w]
        assert list(_f16x2(r0).astype(np.float64)) == [c * tiny for c in lo_c]
        assert list(_f16x2(r1).astype(np.float64)) == [c * tiny * 2**bits for c in hi_c]
    top = (1 << bits) - 1  # the largest code is a subnormal too (the exponent field stays 0)
    assert np.float16(top * 2**bits * 2.0**-24) < np.finfo(np.float16).smallest_normal


@pytest.mark.parametrize("k", range(4))
def test_channel_pair_codes_are_subnormals_of_every_slot(k):
    """tm2's 2-bit V words read as int32 channel pairs (kernels/bitdecode/tm2.py, ASM_CHANNEL_PAIR_SUB):
    for two tokens' words, outputs 0-1 are the even channel's slots 2k and 2k+1 and outputs 2-3 the odd
    channel's, slot j reading c * 2^(2 (j % 4) - 24) exactly, token 0 in the low half."""
    from msrbook.kernels.bitdecode.tm2 import ASM_CHANNEL_PAIR_SUB

    rng = np.random.default_rng(40 + k)
    tiny = np.float64(2.0**-24)
    words = [[int(x) for x in rng.integers(0, 2**32, size=2, dtype=np.uint64)] for _ in range(300)]
    words += [[0xFFFFFFFF, 0xFFFFFFFF], [0, 0]]  # every code at its largest: still subnormal (exponent field 0)
    for w in words:
        outs = run_ptx(ASM_CHANNEL_PAIR_SUB[k], w, outputs=4)
        for o, (half, j) in enumerate(((0, 2 * k), (0, 2 * k + 1), (16, 2 * k), (16, 2 * k + 1))):
            codes = [(x >> (half + 2 * j)) & 3 for x in w]  # channel word = 16-bit half; slot j at bits 2j
            assert list(_f16x2(outs[o]).astype(np.float64)) == [c * tiny * 2 ** (2 * (j % 4)) for c in codes], (k, o, w)


def test_converter_catches_a_wrong_selector():
    """The model is not vacuous: the byte-1 program decodes byte 1, not byte 0."""
    w0, w1 = 0x00002A15, 0x00004C37
    r0, _ = run_ptx(ASM_SLOT_PAIR[(4, 1)], [w0, w1])
    assert list(_f16x2(r0)) == [0xA, 0xC]
    r0, _ = run_ptx(ASM_SLOT_PAIR[(4, 0)], [w0, w1])
    assert list(_f16x2(r0)) == [0x5, 0x7]


COMPILE_ASM = """
import re
from msrbook.kernels.bitdecode import compile_for_target
for bits, cvt in ((4, "asm"), (2, "asm"), (4, False), (4, "sub"), (2, "sub")):
    k = compile_for_target("triton", bits=bits, k_mode="KC", G=1, D=128, tile_softmax=True, magic_cvt=cvt, num_warps=2)
    ptx = k.asm["ptx"]
    ops = {op: len(re.findall(r"^\\s*" + re.escape(op) + r"[\\s.]", ptx, re.M)) for op in ("prmt.b32", "lop3.b32", "cvt.rn.f16.u32", "mma.sync", "fma.rn.f16x2", "sub.f16x2", "and.b32")}
    print(bits, cvt, " ".join(f"{o}={n}" for o, n in ops.items()))
"""


def test_asm_path_replaces_the_convert_in_compiled_code():
    """Compiled for sm_90 (no GPU needed): the asm path has no int->fp16 converts left, its packed
    fp16 FMAs and lop3s are there, and it still uses the tensor cores; the plain path is the
    contrast (its converts are what the asm removes)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", COMPILE_ASM], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {tuple(line.split()[:2]): dict(kv.split("=") for kv in line.split()[2:]) for line in out.stdout.splitlines()}
    for bits in ("4", "2"):
        r = {k: int(v) for k, v in rows[(bits, "asm")].items()}
        assert r["cvt.rn.f16.u32"] == 0 and r["lop3.b32"] > 0 and r["fma.rn.f16x2"] > 0 and r["mma.sync"] > 0, (bits, r)
    assert int(rows[("4", "asm")]["prmt.b32"]) > 0
    for bits in ("4", "2"):  # the subnormal form: masks only, no bias to remove, still the tensor cores
        r = {k: int(v) for k, v in rows[(bits, "sub")].items()}
        assert r["cvt.rn.f16.u32"] == 0 and r["fma.rn.f16x2"] == 0 and r["sub.f16x2"] == 0, (bits, r)
        assert r["and.b32"] > 0 and r["mma.sync"] > 0, (bits, r)
    assert int(rows[("4", "False")]["cvt.rn.f16.u32"]) > 0
