"""GPU check of the BitDecoding kernels (kernels/bitdecode/), for one run on the device machine.

1. Correctness: every low-bit impl (Triton tensor cores, CUDA cores, naive) against the fp32
   reference on the dequantized cache, 4 and 2 bits, KC and KT, several shapes; the fused
   quantize-and-pack kernel against the torch reference, bit for bit.
2. Timing (`bench_shape`): fp16 baselines (SDPA cuDNN, SDPA flash, our dense Triton kernel) and
   int4/int2 (Triton default, its variants and a few knob settings, CUDA cores) at batch 1, 32/32
   heads, D=128, 131072 + 100 tokens; with --full also naive, 32/8 heads and batch 16 at 32K. A
   wrong result is recorded (WRONG) and not timed, and fails the run at the end.
3. A compact table last: ms, GB/s, % of the measured roofline, speedup over the fastest fp16
   baseline against the ideal 16 / (b + 0.25). Exits non-zero if any check failed.

It also checks and times the experimental tokens-in-M kernels (kernels/bitdecode/tm.py, and in channel
halves kernels/bitdecode/tm2.py).

Usage: python3 tools/gpu_bitdecode_check.py [--full | --tm-quick] ; rows go to $OUT/bitdecode_rows.json.
Without --full it took about 4 minutes on an H200 (compiles included, before the tokens-in-M rows
were added); BATCH64=1 adds the batch-64 probe; --full adds cases and shapes; --tm-quick times only
the tokens-in-M kernel at the claim shape (about a minute).
"""

import argparse
import json
import math
import os
import time

import torch

from msrbook.bench import measure_bandwidth, roofline_gbps
from msrbook.bench import time_graph_ms, time_ms
from msrbook.chapters.bitdecoding.bench import bench_shape, quantize_pack_ms
from msrbook.kernels.bitdecode import bitdecode_attention
from msrbook.kernels.decode_attention import decode_attention_ref
from msrbook.kernels.bitdecode.quant import QuantConfig, QuantKVCache, pack, quantize
from msrbook.testing import assert_close

T0 = time.time()
FAILURES = []


def log(msg):
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def outlier_case(bits, k_mode, B, H, Hkv, T, D, v_outlier=False):
    """Random q, K, V on the GPU (seeded by T) with an outlier K channel (and, with v_outlier, an
    outlier V channel), their quantized cache, and the fp32 reference on the dequantized cache."""
    g = torch.Generator(device="cuda").manual_seed(T)
    q = torch.randn(B, H, D, device="cuda", generator=g).half()
    k, v = (torch.randn(B, Hkv, T, D, device="cuda", generator=g).half() for _ in range(2))
    k[..., 7] *= 10
    if v_outlier:
        v[..., 5] *= 10
    cache = QuantKVCache(QuantConfig(bits=bits, k_mode=k_mode), B, Hkv, D, device="cuda")
    cache.append(k, v)
    return q, cache, decode_attention_ref(q, *cache.dequantized())


def check_decode(full=False):
    """Every impl vs the fp32 reference on the dequantized cache (atol 1e-2 of the output scale,
    see tests/kernels/test_bitdecode.py for the fp16 roundings it covers). Each case:
    (bits, k_mode, B, H, Hkv, T, D, knobs for the Triton impl)."""
    both = [(b, m) for b in (4, 2) for m in ("KC", "KT")]
    cases = [(b, m, 3, 32, 8, 1000, 128, {}) for b, m in both]  # every width and mode, G=4
    cases += [(b, "KC", *shape, {}) for b in (4, 2) for shape in ((2, 8, 1, 37, 64), (1, 4, 4, 1, 128), (1, 32, 32, 4196, 128))]
    variants = [dict(tile_softmax=ts, magic_cvt=mc) for ts in (False, True) for mc in (False, True, "asm")]
    variants += [dict(tile_softmax=ts, magic_cvt="asm", num_warps=w) for ts in (False, True) for w in (1, 2)]
    cases += [(b, "KC", 2, 32, 8, 20000, 128, kw) for b in (4, 2) for kw in variants]  # both knobs, every combination
    cases += [(b, m, 3, 32, 8, 1000, 128, dict(tile_softmax=True, magic_cvt="asm")) for b, m in both]
    cases += [(b, "KC", 1, 32, 32, 4196, 128, dict(tile_softmax=True, magic_cvt="asm", num_warps=2)) for b in (4, 2)]
    cases += [(b, "KC", 2, 8, 1, 37, 64, dict(tile_softmax=ts, magic_cvt="asm")) for b in (4, 2) for ts in (False, True)]
    if full:
        cases += [(b, m, *shape, kw) for b, m in both for *shape, kw in (
            (4, 32, 8, 33000, 128, {}), (2, 16, 2, 3000, 128, dict(num_splits=40)),
            (1, 32, 32, 65536 + 7, 128, dict(num_warps=8, num_stages=4)),
            (1, 32, 32, 65536 + 7, 128, dict(tile_softmax=True, magic_cvt=True)))]
    for bits, k_mode, B, H, Hkv, T, D, kw in cases:
        label = f"{bits}-bit {k_mode} B={B} H={H} Hkv={Hkv} T={T} D={D} {kw}"
        try:
            q, cache, ref = outlier_case(bits, k_mode, B, H, Hkv, T, D)
            for impl in ("triton", "cuda_core", "naive") if not kw else ("triton",):
                out = bitdecode_attention(q, cache, impl=impl, **kw)
                assert_close(out.float(), ref, rtol=0, atol=1e-2 * float(ref.abs().max()), name=f"{impl} {label}")
            if not kw:  # the experimental tokens-in-M kernels: 1 and 2 warps; in channel halves (KC only), 1 warp and a register cap
                tms = [dict(impl="triton_tm", num_warps=w) for w in (1, 2)]
                tms += [dict(impl="triton_tm2"), dict(impl="triton_tm2", maxnreg=128)] if k_mode == "KC" else []
                for tm in tms:
                    out = bitdecode_attention(q, cache, **tm)
                    assert_close(out.float(), ref, rtol=0, atol=1e-2 * float(ref.abs().max()), name=f"{tm} {label}")
            log(f"ok   {label}")
        except Exception as err:  # noqa: BLE001 -- collected, printed, and raised at the end
            FAILURES.append(f"{label}: {type(err).__name__}: {str(err)[:300]}")
            log(f"FAIL {FAILURES[-1]}")


TM_SETTINGS = ((16, 1, 3, "asm"), (32, 1, 3, "asm"), (64, 1, 3, "asm"), (32, 1, 2, "asm"), (128, 1, 2, "asm"),
               (32, 2, 3, "asm"), (64, 2, 2, "asm"), (32, 1, 3, True))  # (splits, warps, stages, convert)


def tm_configs(settings):
    return [dict(impl="triton_tm", num_splits=s, num_warps=w, num_stages=st, magic_cvt=c) for s, w, st, c in settings]


def tm_rows(B=1, H=32, Hkv=32, T=131072 + 100, D=128, settings=TM_SETTINGS, fp16=()):
    """The experimental tokens-in-M kernel (impl "triton_tm", kernels/bitdecode/tm.py) through
    bench_shape: checked on the first and last batch element, then timed, per knob setting (a
    wrong result is a WRONG row, not timed)."""
    rows = bench_shape(B, H, Hkv, T, D, impls=(), fp16=fp16, configs=tm_configs(settings), strict=False)
    for r in rows:
        log(f"  {r['backend']} {r['config']}: {r['ms']:.4f} ms {r['error'][:150]}")
    return rows


def claim_shape_report(configs, fp16_backends, json_name, props):
    """Times the configs (both bit widths) and the fp16 baselines at the claim shape (batch 1, 32/32
    heads, D=128, 131,072 + 100 tokens), logs each row's speedup over the fastest baseline, writes
    the rows and the collected check failures to $OUT/json_name, and exits non-zero on a failure."""
    rows = bench_shape(1, 32, 32, 131072 + 100, impls=(), fp16=fp16_backends, configs=configs, strict=False)
    fp16 = min(r["ms"] for r in rows if r["bits"] == 16)
    for r in rows:
        log(f"  int{r['bits']} {r['backend']} {r['config']}: {r['ms']:.4f} ms  x{fp16 / r['ms']:.2f}  {r['error'][:150]}")
    if "OUT" in os.environ:
        with open(os.path.join(os.environ["OUT"], json_name), "w") as f:
            json.dump({"device": props.name, "rows": rows, "failures": FAILURES}, f, indent=1)
    if FAILURES:
        raise SystemExit("FAILED checks:\n" + "\n".join(FAILURES))


def sub_probe():
    """magic_cvt="sub" (fp16 subnormals, masks only) and "sub_plain" against the fp32 reference on the
    dequantized cache for every kernel, then the claim shape timed against the "asm" convert."""
    props = torch.cuda.get_device_properties(0)
    log(f"{props.name}, {props.multi_processor_count} SMs")
    impls = [("triton", dict(tile_softmax=True)), ("triton_tm", {}), ("triton_tm2", {}), ("triton_tm2", dict(maxnreg=128))]
    shapes = [(3, 32, 8, 1000, 128), (1, 32, 32, 4196 + 37, 128)]  # G=4 and G=1, partial tiles and residuals
    for bits in (4, 2):
        for k_mode in ("KC", "KT"):
            for B, H, Hkv, T, D in shapes:
                q, cache, ref = outlier_case(bits, k_mode, B, H, Hkv, T, D)
                for impl, kw in impls:
                    if impl == "triton_tm2" and k_mode == "KT":
                        continue
                    for mc in ("sub",):  # "sub_plain" computes the same values (tests/kernels, interpreter)
                        label = f"{impl} {kw} {mc} {bits}-bit {k_mode} B={B} H={H}/{Hkv} T={T} D={D}"
                        try:
                            out = bitdecode_attention(q, cache, impl=impl, magic_cvt=mc, **kw)
                            err = float((out.float() - ref).abs().max() / ref.abs().max())
                            assert err <= 1e-2, f"max error {err:.2e} of the output scale"
                        except Exception as e:  # noqa: BLE001 -- collected and reported
                            FAILURES.append(f"{label}: {type(e).__name__}: {str(e)[:200]}")
                            log("FAIL " + FAILURES[-1])
    log(f"checks done, {len(FAILURES)} failures")
    configs = []
    for mc in ("asm", "sub"):
        configs += [dict(impl="triton", num_splits=16, num_warps=2, num_stages=3, tile_softmax=True, magic_cvt=mc),
                    dict(impl="triton_tm", num_splits=32, num_warps=1, num_stages=2, magic_cvt=mc),
                    dict(impl="triton_tm2", num_splits=32, num_warps=1, num_stages=2, magic_cvt=mc),
                    dict(impl="triton_tm2", num_splits=32, num_warps=1, num_stages=2, magic_cvt=mc, maxnreg=168),
                    dict(impl="triton_tm2", num_splits=48, num_warps=1, num_stages=2, magic_cvt=mc, maxnreg=128)]
    configs += [dict(impl="triton", num_splits=32, num_warps=2, num_stages=3, tile_softmax=True, magic_cvt="sub"),
                dict(impl="triton_tm2", num_splits=64, num_warps=1, num_stages=2, magic_cvt="sub", maxnreg=128)]
    claim_shape_report(configs, ("sdpa_cudnn",), "bitdecode_sub.json", props)


def pairs_probe():
    """tm2 at 2 bits with V read as int32 channel pairs (magic_cvt="sub", D >= 64): checks against the
    fp32 reference on the dequantized cache (G=1, 3, 4; D=64 and 128; an outlier channel in K and in
    V), then claim-shape timings beside the 16-bit-word path ("asm") and cuDNN."""
    props = torch.cuda.get_device_properties(0)
    log(f"{props.name}, {props.multi_processor_count} SMs")
    for B, H, Hkv, T, D in [(3, 32, 8, 1000, 128), (1, 32, 32, 4196 + 37, 128), (2, 9, 3, 777, 64), (1, 8, 8, 128 * 40, 64)]:
        q, cache, ref = outlier_case(2, "KC", B, H, Hkv, T, D, v_outlier=True)
        for kw in (dict(), dict(maxnreg=128), dict(num_splits=3)):
            label = f"tm2 sub 2-bit {kw} B={B} H={H}/{Hkv} T={T} D={D}"
            try:
                out = bitdecode_attention(q, cache, impl="triton_tm2", magic_cvt="sub", **kw)
                err = float((out.float() - ref).abs().max() / ref.abs().max())
                assert err <= 1e-2, f"max error {err:.2e} of the output scale"
                log(f"ok {label}: {err:.1e}")
            except Exception as e:  # noqa: BLE001 -- collected and reported
                FAILURES.append(f"{label}: {type(e).__name__}: {str(e)[:200]}")
                log("FAIL " + FAILURES[-1])
    tm2 = dict(impl="triton_tm2", num_warps=1, num_stages=2)
    configs = [dict(tm2, num_splits=32, magic_cvt="asm")]
    configs += [dict(tm2, num_splits=s, magic_cvt="sub", **({"maxnreg": r} if r else {})) for s in (32, 48, 64) for r in (None, 128)]
    configs += [dict(tm2, num_splits=48, magic_cvt="sub", maxnreg=168), dict(tm2, num_splits=64, num_stages=3, magic_cvt="sub", maxnreg=128)]
    claim_shape_report(configs, ("sdpa_cudnn", "sdpa_flash"), "bitdecode_pairs.json", props)


def host_overhead_probe():
    """The same low-bit call timed eagerly (time_ms: host overhead beyond the L2 flush leaks in) and
    as a graph replay (GPU time only), at a short and at the claim's length: the difference is the
    host's share that the eager timings of the committed results (before graph timing) carried."""
    for T in (1024 + 100, 131072 + 100):
        g = torch.Generator(device="cuda").manual_seed(1)
        q = torch.randn(1, 32, 128, generator=g, device="cuda").half()
        k, v = (torch.randn(1, 32, T, 128, generator=g, device="cuda").half() for _ in range(2))
        for bits in (4, 2):
            cache = QuantKVCache(QuantConfig(bits=bits, k_mode="KC"), 1, 32, 128, device="cuda", max_tokens=T)
            cache.append(k, v)
            fn = lambda: bitdecode_attention(q, cache)  # noqa: E731
            eager = time_ms(fn, device="cuda")
            replay, captured = time_graph_ms(fn, device="cuda")
            log(f"host probe int{bits} T={T}: eager {eager:.4f} ms, graph replay {replay:.4f} ms (captured: {captured})")
            del cache


def check_quantize_pack():
    """Fused kernel == torch reference bit for bit (codes, scales, zeros), on the GPU's arithmetic."""
    for bits in (4, 2):
        for k_mode in ("KC", "KT"):
            cfg = QuantConfig(bits=bits, k_mode=k_mode)
            B, Hkv, n, D = 2, 8, 4 * cfg.residual_tokens, 128
            g = torch.Generator(device="cuda").manual_seed(bits)
            k, v = (torch.randn(B, Hkv, n, D, device="cuda", generator=g).half() for _ in range(2))
            cache = QuantKVCache(cfg, B, Hkv, D, device="cuda")
            cache.append(k, v)
            qk = quantize(k, bits, cfg.group if k_mode == "KC" else D, 2 if k_mode == "KC" else 3)
            qv = quantize(v, bits, D, 3)
            k_meta = torch.stack([qk.scale, qk.zero], dim=-1) if k_mode == "KC" else torch.cat([qk.scale, qk.zero], dim=3)
            ok = (torch.equal(cache.k_codes, pack(qk.codes, bits, cfg.tile)) and torch.equal(cache.v_codes, pack(qv.codes, bits, cfg.tile))
                  and torch.equal(cache.k_meta, k_meta) and torch.equal(cache.v_meta, torch.cat([qv.scale, qv.zero], dim=3)))
            label = f"quantize_pack {bits}-bit {k_mode}"
            log(("ok   " if ok else "FAIL ") + label)
            if not ok:
                FAILURES.append(label + ": not bit-exact")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="more correctness cases and timing shapes (several minutes)")
    ap.add_argument("--pairs", action="store_true", help="only tm2's 2-bit channel-pair path: checks, then claim-shape timings")
    ap.add_argument("--sub", action="store_true",
                    help="only the subnormal convert: checks at several shapes, then claim-shape timings against 'asm'")
    ap.add_argument("--tm-quick", action="store_true",
                    help="only a first look at the tokens-in-M kernel at the claim shape (about a minute)")
    args = ap.parse_args()
    if args.pairs:
        pairs_probe()
        return
    if args.sub:
        sub_probe()
        return
    if args.tm_quick:
        host_overhead_probe()
        tm_rows(settings=((32, 1, 3, "asm"), (16, 1, 3, "asm"), (64, 2, 2, "asm")), fp16=("sdpa_cudnn",))  # logs each row
        return
    props = torch.cuda.get_device_properties(0)
    log(f"{props.name}, {props.multi_processor_count} SMs; torch {torch.__version__}, triton {__import__('triton').__version__}")
    check_quantize_pack()
    check_decode(args.full)
    bw = measure_bandwidth("cuda")
    roof = roofline_gbps(bw)
    log(f"bandwidth: read {bw['read_gbps']:.0f} GB/s, copy {bw['copy_gbps']:.0f} GB/s")
    configs = [dict(num_splits=32, num_warps=2, num_stages=3), dict(tile_softmax=True, magic_cvt=True)]
    configs += [dict(num_splits=s, num_warps=w, num_stages=st, tile_softmax=ts, magic_cvt="asm")
                for s, w, st, ts in ((32, 2, 3, True), (32, 2, 3, False), (64, 2, 3, True), (32, 4, 3, True), (64, 4, 3, True),
                                     (32, 1, 3, True), (64, 1, 3, True), (128, 2, 3, True), (32, 2, 4, True), (32, 2, 2, True),
                                     (16, 2, 3, True), (128, 1, 3, True))]
    configs += tm_configs(TM_SETTINGS)  # the experimental tokens-in-M kernel, same shape, same data
    configs += [dict(impl="triton_tm2", num_splits=sp, num_warps=1, num_stages=2, magic_cvt="asm", **({"maxnreg": r} if r else {}))
                for sp, r in ((32, None), (32, 168), (48, 128), (64, 168))]  # in channel halves (kernels/bitdecode/tm2.py)
    if args.full:
        configs += [dict(num_splits=s, num_warps=w, num_stages=st) for s, w, st in
                    ((64, 2, 3), (128, 2, 3), (32, 4, 2), (128, 4, 3), (32, 8, 3), (32, 4, 4))]
    rows = bench_shape(1, 32, 32, 131072 + 100, impls=("triton", "cuda_core", "naive") if args.full else ("triton", "cuda_core"),
                       configs=configs, strict=False)
    log("timed B=1 32/32 128K")
    host_overhead_probe()
    if os.environ.get("BATCH64"):  # the shape an H200 chapter run failed at (num_splits=1 by default there)
        rows += bench_shape(64, 32, 32, 32768 + 100, impls=("triton",), fp16=("sdpa_cudnn",), strict=False, warmup=3, rep=10,
                            configs=[dict(num_splits=1), dict(num_splits=4), dict(num_splits=1, num_stages=2),
                                     dict(num_splits=4, tile_softmax=True, magic_cvt="asm", num_warps=2)])
        log("timed B=64 32/32 32K")
    if args.full:
        rows += bench_shape(1, 32, 8, 131072 + 100, impls=("triton",), strict=False)
        rows += bench_shape(16, 32, 8, 32768 + 100, impls=("triton", "cuda_core"), strict=False)
        log("timed B=1 32/8 128K and B=16 32/8 32K")
    FAILURES.extend(f"{r['backend']} {r['config']}: {r['error']}" for r in rows if r["error"].startswith("WRONG"))
    qp = {(bits, T): quantize_pack_ms(1, 32, T, bits=bits) for bits in (4, 2) for T in (256, 32768)}
    if "OUT" in os.environ:
        with open(os.path.join(os.environ["OUT"], "bitdecode_rows.json"), "w") as f:
            json.dump({"device": props.name, "bandwidth": bw, "rows": rows,
                       "quantize_pack": [dict(bits=b, tokens=T, ms=v[0], gbps=v[1]) for (b, T), v in qp.items()]}, f, indent=1)

    print(f"\n== {props.name}: read {bw['read_gbps']:.0f} GB/s, copy {bw['copy_gbps']:.0f} GB/s, roofline {roof:.0f} GB/s ==")
    for (bits, T), (ms, g) in qp.items():
        print(f"quantize+pack K and V, B=1, 32 kv heads, {T} tokens, {bits}-bit: {ms * 1e3:.1f} us ({g:.0f} GB/s)")
    shapes = sorted({(r["batch"], r["seq_len"], r["n_q"], r["n_kv"]) for r in rows})
    for shape in shapes:
        sel = [r for r in rows if (r["batch"], r["seq_len"], r["n_q"], r["n_kv"]) == shape]
        fp16 = min((r["ms"] for r in sel if r["bits"] == 16 and not r["error"]), default=math.nan)
        print(f"\nB={shape[0]} T={shape[1]} heads {shape[2]}/{shape[3]}: fastest fp16 {fp16:.4f} ms")
        print(f"{'backend':>16} {'config':>44} {'ms':>8} {'GB/s':>7} {'%roof':>6} {'speedup':>8} {'ideal':>6}  error")
        for r in sorted(sel, key=lambda r: (r["bits"], r["backend"], r["ms"] if not math.isnan(r["ms"]) else 1e9)):
            ideal = 16 / (r["bits"] + 0.25) if r["bits"] < 16 else 1.0
            print(f"{r['backend']:>16} {r['config'][:44]:>44} {r['ms']:8.4f} {r['gbps']:7.0f} {100 * r['gbps'] / roof:6.1f} "
                  f"{fp16 / r['ms']:8.2f} {ideal:6.2f}  {r['error'][:50]}")
    if FAILURES:
        raise SystemExit("FAILED checks:\n" + "\n".join(FAILURES))
    print("all checks passed")


if __name__ == "__main__":
    main()
