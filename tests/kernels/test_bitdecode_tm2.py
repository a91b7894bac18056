"""The tokens-in-M decode in channel halves (kernels/bitdecode/tm2.py, impl="triton_tm2") equals the fp32
reference on the dequantized cache under the Triton interpreter (plain convert; the inline-PTX
convert is tested in test_bitdecode_asm.py), and its sm_90a build keeps fewer registers than the
tokens-in-M kernel without spilling, which is what it exists for.

Tolerance: 1e-2 of the output's largest magnitude, as test_bitdecode_tm.py (fp16 roundings of
q o s and p o s_v, each 2^-11 relative; p up to 2^8 before normalisation changes no relative
rounding). The two channel halves add their fp32 partial scores once more per slab, which is
within fp32 rounding.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from msrbook.kernels.bitdecode import bitdecode_attention
from msrbook.kernels.decode_attention import decode_attention_ref
from msrbook.testing import assert_close

from bitdecode_cases import quant_case


@pytest.mark.parametrize("bits,B,H,Hkv,T,D,splits", [
    (4, 1, 2, 2, 640, 64, 1),  # G=1, one split over several tiles
    (2, 1, 3, 3, 517, 32, 3),  # G=1, awkward length, uneven splits
    (4, 2, 8, 2, 300, 64, 2),  # G=4, batch 2, partial residual
    (2, 3, 6, 2, 140, 32, None),  # G=3 (padded to 4), batch 3
    (4, 1, 2, 1, 1, 32, None),  # one token: the residual only
])
def test_tm2_equals_reference(bits, B, H, Hkv, T, D, splits):
    q, cache = quant_case(bits, "KC", B, H, Hkv, T, D, seed=T)
    ref = decode_attention_ref(q, *cache.dequantized())
    out = bitdecode_attention(q, cache, impl="triton_tm2", num_splits=splits).float()
    assert_close(out, ref, rtol=0, atol=1e-2 * float(ref.abs().max()), name=f"tm2 {bits}-bit")


def test_tm2_needs_k_per_channel():
    q, cache = quant_case(4, "KT", 1, 2, 2, 200, 32, seed=0)
    with pytest.raises(ValueError, match="KC"):
        bitdecode_attention(q, cache, impl="triton_tm2")


PTXAS = Path(__import__("triton").__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
# the start of every script below: ptxas -v (the path in argv[1]) on a PTX text -> (registers, spilled bytes)
PTXAS_INFO = """
import re, subprocess, sys, tempfile
from msrbook.kernels.bitdecode import compile_for_target

def ptxas_info(ptx):
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
        f.write(ptx)
        f.flush()
        r = subprocess.run([sys.argv[1], "-arch=sm_90a", "-v", f.name, "-o", "/dev/null"], capture_output=True, text=True)
    regs = int(re.search(r"Used (\\d+) registers", r.stderr).group(1))
    return regs, sum(int(x) for x in re.findall(r"(\\d+) bytes spill (?:stores|loads)", r.stderr))
"""


def run_build_script(body: str) -> list[list[str]]:
    """Run PTXAS_INFO + body in a process without the Triton interpreter; its output lines, split."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", PTXAS_INFO + body, str(PTXAS)], capture_output=True, text=True, env=env,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return [line.split() for line in out.stdout.splitlines()]


REGISTERS = """
for kernel, cap in (("triton_tm", None), ("triton_tm2", None), ("triton_tm2", 128)):
    ptx = compile_for_target(kernel, bits=4, G=1, D=128, magic_cvt="asm", num_warps=1, num_stages=2, maxnreg=cap).asm["ptx"]
    print(kernel, cap, *ptxas_info(ptx))
"""


@pytest.mark.skipif(not PTXAS.exists(), reason="Triton's ptxas is not installed")
def test_tm2_holds_fewer_registers_without_spills():
    """ptxas -v on the 4-bit, G=1 builds (1 warp, 2 stages, inline-PTX convert): the tokens-in-M kernel
    takes all 255 registers and spills; tm2 needs fewer and spills nothing, also under a 128 cap
    (16 warps per SM by registers)."""
    info = {(kernel, cap): (int(regs), int(spill)) for kernel, cap, regs, spill in run_build_script(REGISTERS)}
    assert len(info) == 3, info
    tm_regs, _ = info[("triton_tm", "None")]
    regs, spill = info[("triton_tm2", "None")]
    assert regs < tm_regs and spill == 0, info
    regs, spill = info[("triton_tm2", "128")]
    assert regs <= 128 and spill == 0, info


PAIRS_BUILD = """
for cvt in ("asm", "sub"):
    k = compile_for_target("triton_tm2", bits=2, G=1, D=128, magic_cvt=cvt, num_warps=1, num_stages=2)
    ttgir = k.asm["ttgir"]
    v_i32 = len(re.findall(r"async_copy_global_to_local .*tensor<16x32x!tt.ptr<i32>", ttgir))
    f16_to_smem = len(re.findall(r"ttg.local_alloc %.*tensor<64x16xf16", ttgir))
    print(cvt, v_i32, f16_to_smem, *ptxas_info(k.asm["ptx"]))
"""


@pytest.mark.skipif(not PTXAS.exists(), reason="Triton's ptxas is not installed")
def test_tm2_2bit_values_as_channel_pairs_skip_the_shared_memory_round_trip():
    """The 2-bit sm_90a build (G=1, D=128, 1 warp, 2 stages), read off its TTGIR and ptxas -v: with the
    subnormal convert V's words are copied as int32 channel pairs by cp.async and no fp16 code tile
    goes through shared memory; the "asm" build, which keeps 16-bit V words, is the contrast (its
    codes are stored to shared memory slab by slab to be transposed, and it takes more registers)."""
    rows = {cvt: [int(x) for x in rest] for cvt, *rest in run_build_script(PAIRS_BUILD)}
    v_i32, f16_to_smem, regs, spill = rows["sub"]
    assert v_i32 > 0 and f16_to_smem == 0 and spill == 0, rows
    a_v_i32, a_f16_to_smem, a_regs, _ = rows["asm"]
    assert a_v_i32 == 0 and a_f16_to_smem > 0 and regs < a_regs, rows
