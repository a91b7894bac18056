"""GPU check of the decode-attention kernels, for one run on the device machine.

1. Correctness: Triton and TileLang against the fp32 reference at several shapes, fp16 and bf16.
2. Timing: Triton / TileLang / SDPA flash / SDPA cuDNN at B=16, 64 q / 8 kv heads, D=128, fp16,
   32K and 128K tokens (`msrbook.chapters.decode_roofline.sweep.sweep`), the measured read and copy bandwidth, and a
   small sweep of the Triton knobs at 128K.
3. A short table last. Exits non-zero if any check failed (after printing what it measured).

Usage: python3 tools/gpu_decode_check.py [--budget-s 330] ; full rows go to $OUT/decode_rows.json.
"""

import argparse
import itertools
import json
import os
import time
from dataclasses import asdict

import torch

from msrbook.bench import gbps, measure_bandwidth, roofline_gbps, time_ms
from msrbook.chapters.decode_roofline.sweep import SCALED_TOL, best_backend_ratio, sweep
from msrbook.kernels.decode_attention import (
    decode_attention, decode_attention_ref, decode_bytes, default_config, device_limits)
from msrbook.testing import assert_close

T0 = time.time()
FAILURES = []


def log(msg):
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def randn(*shape, dtype):
    return torch.randn(*shape, device="cuda", dtype=torch.float32).to(dtype)


def check(name, fn, shapes, dtypes, tol):
    """Run fn(q, k, v, **kw) at each shape and compare with the reference; collect failures."""
    for dtype in dtypes:
        for B, H, Hkv, S, D, kw in shapes:
            q, k, v = randn(B, H, D, dtype=dtype), randn(B, Hkv, S, D, dtype=dtype), randn(B, Hkv, S, D, dtype=dtype)
            label = f"{name} {str(dtype)[6:]} B={B} H={H} Hkv={Hkv} S={S} D={D} {kw}"
            try:
                out = fn(q, k, v, **kw)
                torch.cuda.synchronize()
                assert_close(out.float(), decode_attention_ref(q, k, v), rtol=tol[dtype], atol=tol[dtype], name=label)
                log(f"ok   {label}")
            except Exception as err:  # noqa: BLE001 -- collected, printed, and raised at the end
                FAILURES.append(f"{label}: {type(err).__name__}: {str(err)[:300]}")
                log(f"FAIL {FAILURES[-1]}")


def knob_sweep(fn, S, configs, budget_s, label):
    """Time fn(q, k, v, **knobs) for each knob dict at B=16, 64/8 heads, D=128, fp16, length S;
    every configuration's output is checked first. Returns [(knobs, ms)]."""
    B, H, Hkv, D = 16, 64, 8, 128
    q, k, v = randn(B, H, D, dtype=torch.float16), randn(B, Hkv, S, D, dtype=torch.float16), randn(B, Hkv, S, D, dtype=torch.float16)
    ref = torch.cat([decode_attention_ref(q[b:b + 1], k[b:b + 1], v[b:b + 1]) for b in range(B)])
    atol = SCALED_TOL[torch.float16] * float(ref.abs().max())
    results = []
    for kw in configs:
        if time.time() - T0 > budget_s:
            log(f"{label}: budget reached, {len(configs) - len(results)} configurations not timed")
            break
        try:
            out = fn(q, k, v, **kw)
            assert_close(out.float(), ref, rtol=0, atol=atol, name=f"{label} {kw}")
            results.append((kw, time_ms(lambda: fn(q, k, v, **kw))))
        except AssertionError as err:
            FAILURES.append(str(err)[:300])
            log(f"FAIL {FAILURES[-1]}")
        except Exception as err:  # noqa: BLE001 -- e.g. out of shared memory for a config: not a kernel bug
            log(f"skip {label} {kw}: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
    del q, k, v, ref
    torch.cuda.empty_cache()
    return results


def combine_ms(S=131072, B=16, H=64, Hkv=8, D=128):
    """Time stage 2 alone (the split combine) for the heuristic's split count."""
    from msrbook.kernels.decode_attention import _decode_combine_kernel
    import triton

    ns = default_config(B, Hkv, S, D, **device_limits(torch.device("cuda"))).num_splits  # fp16
    part, lse = torch.randn(B, H, ns, D, device="cuda"), torch.randn(B, H, ns, device="cuda")
    out = torch.empty(B, H, D, device="cuda", dtype=torch.float16)
    return ns, time_ms(lambda: _decode_combine_kernel[(B * H,)](
        part, lse, out, ns, D=D, BLOCK_SPLITS=triton.next_power_of_2(ns), CHUNK=min(16, triton.next_power_of_2(ns))))


def grid(**axes):
    return [dict(zip(axes, vals)) for vals in itertools.product(*axes.values())]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget-s", type=float, default=300, help="stop the knob sweep after this many seconds")
    args = ap.parse_args()
    props = torch.cuda.get_device_properties(0)
    log(f"{props.name}, {props.multi_processor_count} SMs, L2 {props.L2_cache_size / 2**20:.0f} MiB; torch "
        f"{torch.__version__}, triton {__import__('triton').__version__}")
    try:
        from msrbook.kernels.decode_attention_tilelang import decode_attention_tilelang
        import tilelang
        log(f"tilelang {tilelang.__version__}")
    except ImportError as err:
        decode_attention_tilelang = None
        log(f"tilelang unavailable: {err}")

    tol = {torch.float16: 2e-3, torch.bfloat16: 2e-2}  # see tests/kernels/test_decode_attention.py
    shapes = [(3, 32, 8, 1000, 128, {}), (2, 8, 1, 37, 64, {}), (1, 4, 4, 1, 128, {}),
              (16, 64, 8, 4097, 128, {}), (2, 16, 2, 300, 128, dict(num_splits=40, block_n=16))]
    check("triton", decode_attention, shapes, (torch.float16, torch.bfloat16), tol)
    if decode_attention_tilelang is not None:  # few compiles: S is dynamic, so S values share one
        tl_shapes = [(16, 64, 8, 777, 128, dict(num_splits=17)), (16, 64, 8, 4097, 128, dict(num_splits=17)),
                     (2, 8, 1, 37, 64, dict(num_splits=2))]
        check("tilelang", decode_attention_tilelang, tl_shapes, (torch.float16, torch.bfloat16), tol)

    bw = measure_bandwidth("cuda")
    log(f"bandwidth: read {bw['read_gbps']:.0f} GB/s, copy {bw['copy_gbps']:.0f} GB/s")
    backends = ("triton", "tilelang", "sdpa_flash", "sdpa_cudnn") if decode_attention_tilelang else \
        ("triton", "sdpa_flash", "sdpa_cudnn")
    if any(f.startswith("tilelang") for f in FAILURES):
        backends = tuple(b for b in backends if b != "tilelang")
    rows = sweep([16], [32768, 131072], [(64, 8)], D=128, dtype=torch.float16, backends=backends, progress=False)
    heur = {S: default_config(16, 8, S, 128, **device_limits(torch.device("cuda"))) for S in (32768, 131072)}
    knobs = {S: knob_sweep(decode_attention, S, [asdict(heur[S])] + grid(**axes), args.budget_s, f"triton S={S}")
             for S, axes in [(131072, dict(num_splits=(4, 8, 16), block_n=(64, 128), num_warps=(4, 8),
                                           num_stages=(2, 3, 4))),
                             (32768, dict(num_splits=(2, 4, 8, 16), block_n=(64, 128), num_warps=(4,),
                                          num_stages=(2, 3)))]}
    tl_knobs = []
    if "tilelang" in backends:
        tl_knobs = knob_sweep(decode_attention_tilelang, 131072, grid(num_splits=(8, 16), block_n=(128,), num_stages=(2, 3)),
                              args.budget_s + 60, "tilelang S=131072")
    n_comb, comb_ms = combine_ms()
    rows2 = sweep([16], [32768, 131072], [(64, 8)], D=128, dtype=torch.float16, backends=backends, progress=False)
    if "OUT" in os.environ:
        with open(os.path.join(os.environ["OUT"], "decode_rows.json"), "w") as f:
            json.dump({"device": props.name, "bandwidth": bw, "rows": rows, "rows_repeat": rows2,
                       "knobs": {S: [dict(kw, ms=ms) for kw, ms in r] for S, r in knobs.items()},
                       "tilelang_knobs_128k": [dict(kw, ms=ms) for kw, ms in tl_knobs]}, f, indent=1)

    roof = roofline_gbps(bw)
    print(f"\n== {props.name}: read {bw['read_gbps']:.0f} GB/s, copy {bw['copy_gbps']:.0f} GB/s, roofline {roof:.0f} GB/s ==")
    print(f"combine kernel alone ({n_comb} splits, 128K): {comb_ms * 1e3:.1f} us")
    for S, res in knobs.items():
        nbytes = decode_bytes(16, 64, 8, S, 128, 2)
        res = sorted(res, key=lambda r: r[1])
        h = [ms for kw, ms in res if kw == asdict(heur[S])]
        print(f"triton knobs S={S}: {len(res)} timed; heuristic {asdict(heur[S])} -> {h[0] if h else float('nan'):.3f} ms; fastest:")
        for kw, ms in res[:6]:
            print(f"   {kw} {ms:.3f} ms {gbps(nbytes, ms):.0f} GB/s")
    for kw, ms in tl_knobs:
        print(f"tilelang 128K {kw}: {ms:.3f} ms {gbps(decode_bytes(16, 64, 8, 131072, 128, 2), ms):.0f} GB/s")
    print(f"{'S':>7} {'backend':>11} {'ms':>8} {'GB/s':>7} {'%roof':>6} {'ms(rep)':>8} {'GB/s':>7}  error")
    for r, r2 in zip(rows, rows2):
        print(f"{r['seq_len']:>7} {r['backend']:>11} {r['ms']:8.3f} {r['gbps']:7.0f} {100 * r['gbps'] / roof:6.1f} "
              f"{r2['ms']:8.3f} {r2['gbps']:7.0f}  {r['error'][:60]}")
    for S in (32768, 131072):
        for name, rr in (("run 1", rows), ("repeat", rows2)):
            try:
                print(f"S={S} {name}: best-SDPA ms / triton ms = {best_backend_ratio(rr, 16, S, 64, 8):.3f}")
            except ValueError as err:
                print(f"S={S}: {err}")
    if FAILURES:
        raise SystemExit("FAILED checks:\n" + "\n".join(FAILURES))
    print("all checks passed")


if __name__ == "__main__":
    main()
