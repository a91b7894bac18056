"""Which NVIDIA GPUs the kernels know, and the limits a launch configuration must fit on each.

Every kernel family's default configuration was timed on compute capability 9.0 only (H100, H200;
kernels/NOTES-decode.md, kernels/NOTES-bitdecode.md). On any other capability from 8.0 up (A100:
8.0, RTX 30xx: 8.6, L4 / RTX 40xx: 8.9, and newer) each family uses a conservative fallback chosen
from the architecture's limits below, never from a measurement on the reader's GPU. The fallbacks
are compiled for sm_80 and sm_89 in CI (tests/kernels/test_compile_targets.py) but not timed: no
such GPU was at hand. Below 8.0 (T4: 7.5, V100: 7.0) the wrappers refuse: the kernels rely on
cp.async and bf16 tensor-core products, which start at sm_80.

A CPU (the Triton interpreter) plans as an H100 does, so CPU runs launch the grid a GPU would.
"""

from dataclasses import dataclass

import torch

MEASURED = frozenset({(9, 0)})  # capabilities the default configurations were timed on (H100, H200)
MIN_CAPABILITY = (8, 0)
ARCHS = (80, 89, 90)  # the builds CI compiles (sm_90 as sm_90a, Triton's default for 9.0)

# Opt-in shared memory per block in bytes (CUDA C programming guide, technical specifications per
# compute capability). Registers need no table: 64K 32-bit registers per SM and at most 255 per
# thread on every capability from 8.0 to 9.0. A capability not listed (a newer GPU) gets the
# smallest of these, 99 KB.
SMEM_OPTIN = {(8, 0): 163 * 1024, (8, 6): 99 * 1024, (8, 7): 163 * 1024, (8, 9): 99 * 1024, (9, 0): 227 * 1024}


class UnsupportedGPU(RuntimeError):
    """A GPU below MIN_CAPABILITY (the message is one line, for a reader)."""


@dataclass(frozen=True)
class Target:
    name: str  # the GPU's name as CUDA reports it, or "cpu"
    capability: tuple[int, int]
    sm_count: int  # streaming multiprocessors: how many programs fill the GPU
    smem_bytes: int  # opt-in shared memory per block, from SMEM_OPTIN by capability
    measured: bool  # the defaults were timed on this capability; else the fallback applies

    @property
    def arch(self) -> int:
        return 10 * self.capability[0] + self.capability[1]


CPU = Target("cpu", (9, 0), 132, SMEM_OPTIN[(9, 0)], True)  # an H100 SXM's SMs


def probe(device: torch.device):
    """(name, (major, minor), SM count) of a CUDA device, None for any other device. The one place
    the kernels ask the driver; tests replace it to stand in for other GPUs."""
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    return props.name, (props.major, props.minor), props.multi_processor_count


def for_capability(name: str, capability: tuple[int, int], sm_count: int) -> Target:
    """The target of a GPU of this capability; raises UnsupportedGPU below MIN_CAPABILITY."""
    capability = tuple(capability)
    if capability < MIN_CAPABILITY:
        major, minor = capability
        raise UnsupportedGPU(f"{name} is sm_{major}{minor}; these kernels need compute capability 8.0 (sm_80) or "
                             f"newer, e.g. an A100, L4, RTX 30xx/40xx, H100 or H200")
    smem = SMEM_OPTIN.get(capability, min(SMEM_OPTIN.values()))
    return Target(name, capability, sm_count, smem, capability in MEASURED)


def target(device) -> Target:
    """The target `device` plans for: CPU for a non-CUDA device, else its capability's."""
    found = probe(torch.device(device))
    return CPU if found is None else for_capability(*found)


def for_arch(arch: int, sm_count: int = 132) -> Target:
    """A stand-in target for a build without a GPU (arch 80 -> capability (8, 0)), as in CI."""
    return for_capability(f"sm_{arch}", (arch // 10, arch % 10), sm_count)


def compile_for_arch(fn, types: dict, constexprs: dict, arch: int, **options):
    """triton.compile `fn` for GPUTarget("cuda", arch, 32) with no GPU present (arch 90 builds
    sm_90a). types: Triton type strings of the tensor and float arguments ("*fp16", "fp32"); every
    other argument not in constexprs is an i32. Pointers and stride_* arguments are marked
    16-divisible, as the JIT marks them at run time. options: num_warps, num_stages, maxnreg, ...
    Must run in a process where TRITON_INTERPRET is unset."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig = {name: types.get(name, "constexpr" if name in constexprs else "i32") for name in fn.arg_names}
    div16 = [i for i, name in enumerate(fn.arg_names) if types.get(name, "").startswith("*") or name.startswith("stride_")]
    attrs = {(i,): [["tt.divisibility", 16]] for i in div16}
    return triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs, attrs=attrs),
                          target=GPUTarget("cuda", arch, 32), options=options)
