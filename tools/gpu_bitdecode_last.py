"""Claim-shape timings of the subnormal convert across kernels (graph replay, each row checked first)."""
import json, os
import torch
from msrbook.chapters.bitdecoding.bench import bench_shape

cfgs = [dict(impl="triton", num_splits=16, num_warps=2, num_stages=3, tile_softmax=True, magic_cvt=m) for m in ("asm", "sub")]
cfgs += [dict(impl="triton_tm", num_splits=32, num_warps=1, num_stages=2, magic_cvt="sub")]
cfgs += [dict(impl="triton_tm2", num_splits=s, num_warps=1, num_stages=2, magic_cvt="sub", **({"maxnreg": r} if r else {}))
         for s, r in ((32, None), (32, 168), (24, 168), (48, 168))]
rows = bench_shape(1, 32, 32, 131072 + 100, impls=(), fp16=("sdpa_cudnn",), configs=cfgs, strict=False)
fp16 = min(r["ms"] for r in rows if r["bits"] == 16)
print(torch.cuda.get_device_name(0))
for r in rows:
    print(f"int{r['bits']} {r['backend']} {r['config']}: {r['ms']:.4f} ms x{fp16 / r['ms']:.2f} {r['error'][:120]}")
if "OUT" in os.environ:
    json.dump(rows, open(os.path.join(os.environ["OUT"], "last.json"), "w"), indent=1)
