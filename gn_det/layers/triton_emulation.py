"""What the Triton GN kernels would launch and compile to on an H100-class GPU, found without one.

``record_launches()`` stands in for Triton's launcher (``JITFunction.run``): a backend run on
``meta`` tensors inside it records every launch (kernel, grid, arguments) instead of running it,
and ``count_torch_ops()`` counts the torch kernels and allocations between the launches.
``compile_launch(launch)`` specializes the recorded arguments with Triton's own launch-time
binder (integer 1 -> constant, multiples of 16 and 16-byte aligned pointers -> divisibility
hints; ``meta`` tensors report address 0, as aligned as a CUDA allocation) and compiles that
exact variant for sm_90 with the bundled ptxas. ``KernelResources`` then reads registers, stack
(spills) and shared memory from the cubin (bundled cuobjdump) and the load/store widths from the
PTX. ``emulate_layer`` does all of it for one GN layer's training step (forward, recompute,
backward); tests, ``benchmarks/gpu`` and the evidence in docs/results use it.

Compiled variants are cached per process (and by Triton on disk), so a matrix of shapes that
maps onto a few variants compiles each once.
"""

import contextlib
import functools
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = [
    "GRID_LIMITS",
    "Launch",
    "KernelResources",
    "record_launches",
    "count_torch_ops",
    "compile_launch",
    "grid_problems",
    "emulate_layer",
    "MASK_RCNN_GN_SHAPES",
]

def _mask_rcnn_gn_shapes():
    # Mask R-CNN R50-FPN with GN at 800x1333 (padded to 800x1344), 32 groups: the backbone's
    # GN+ReLU layers, FPN levels P2-P6 (256 channels: FPN convs, and the RPN head's when it has
    # GN), at 1 and 2 images; box head at 512 and 1024 RoIs (7x7), mask head at 128 and 256 (14x14).
    levels = {"P2": (200, 336), "P3": (100, 168), "P4": (50, 84), "P5": (25, 42), "P6": (13, 21)}
    backbone = [
        ("stem", 64, (400, 672)), ("res2 bottleneck", 64, levels["P2"]), ("res2 out", 256, levels["P2"]),
        ("res3 bottleneck", 128, levels["P3"]), ("res3 out", 512, levels["P3"]),
        ("res4 bottleneck", 256, levels["P4"]), ("res4 out", 1024, levels["P4"]),
        ("res5 bottleneck", 512, levels["P5"]), ("res5 out", 2048, levels["P5"]),
    ]
    shapes = []
    for images in (1, 2):
        shapes += [(f"{name} x{images}", (images, c, *hw), 32) for name, c, hw in backbone]
        shapes += [(f"FPN {lvl} x{images}", (images, 256, *hw), 32) for lvl, hw in levels.items()]
    shapes += [(f"box head {n} RoIs", (n, 256, 7, 7), 32) for n in (512, 1024)]
    shapes += [(f"mask head {n} RoIs", (n, 256, 14, 14), 32) for n in (128, 256)]
    return shapes


# (name, (N, C, H, W), groups) of every GN layer shape in the emulation matrix.
MASK_RCNN_GN_SHAPES: List[Tuple[str, Tuple[int, int, int, int], int]] = _mask_rcnn_gn_shapes()

# CUDA's grid limits (x, y, z) on every GPU Triton supports.
GRID_LIMITS = (2**31 - 1, 65535, 65535)
SM90 = ("cuda", 90, 32)


@dataclass
class Launch:
    """One recorded launch: the kernel, its grid and its arguments as the code passed them."""

    kernel: object  # triton JITFunction
    grid: Tuple[int, ...]
    args: tuple
    kwargs: dict

    @property
    def name(self) -> str:
        return self.kernel.fn.__name__


def grid_problems(grid: Sequence[int]) -> List[str]:
    """Why ``grid`` cannot be launched (empty if it can)."""
    problems = []
    for axis, (size, limit) in enumerate(zip(tuple(grid) + (1,) * (3 - len(grid)), GRID_LIMITS)):
        if not 1 <= size <= limit:
            problems.append(f"grid axis {axis} is {size}, outside 1..{limit}")
    return problems


@contextlib.contextmanager
def record_launches():
    """Inside: Triton kernel launches are recorded (a list of ``Launch``), not run."""
    from triton.runtime.jit import JITFunction

    launches: List[Launch] = []
    original = JITFunction.run

    def record(self, *args, grid, warmup, **kwargs):
        grid = grid(dict(zip(self.arg_names, args))) if callable(grid) else grid
        launches.append(Launch(self, tuple(int(g) for g in grid), args, kwargs))

    JITFunction.run = record
    try:
        yield launches
    finally:
        JITFunction.run = original


class _OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.kernels: List[str] = []
        self.allocations: List[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.is_view:
            return out
        name = func._schema.name.split("::")[-1]
        if "empty" not in name:  # the empty* factories allocate without a kernel
            self.kernels.append(name)
        if any(r.alias_info is None for r in func._schema.returns):
            self.allocations.append(name)
        return out


@contextlib.contextmanager
def count_torch_ops():
    """Inside: torch ops are counted (``.kernels``: ops that run a kernel; ``.allocations``: ops
    that return a new tensor, ``empty`` included). View ops count as neither."""
    counter = _OpCounter()
    with counter:
        yield counter


# ---------------------------------------------------------------------------------------------
# Compilation for sm_90 and what the compiled code uses.
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelResources:
    """What one compiled kernel variant uses per thread and block on sm_90."""

    name: str
    num_warps: int
    registers: int
    stack_bytes: int  # ptxas puts spilled registers on the stack: 0 means no spills
    local_bytes: int
    shared_bytes: int
    load_bytes: Tuple[int, ...]  # distinct widths of the global loads (16 = one 128-bit vector)
    store_bytes: Tuple[int, ...]
    # Widths of the loads whose address comes from the streamed tensors' pointers (X, DY), not
    # from the per-channel gamma, beta and statistics: what sets the bandwidth a kernel can reach.
    streamed_load_bytes: Tuple[int, ...] = ()

    def as_dict(self) -> Dict[str, object]:
        return dict(self.__dict__, load_bytes=list(self.load_bytes), store_bytes=list(self.store_bytes),
                    streamed_load_bytes=list(self.streamed_load_bytes))


_ACCESS = re.compile(r"\b(ld|st)\.global(?:\.[a-z]\w*)*?(?:\.v(\d))?\.[bfsu](\d+)\b")


def _access_widths(ptx: str) -> Dict[str, Dict[int, int]]:
    """{"ld": {width in bytes: instructions}, "st": {...}} of the global accesses in ``ptx``."""
    widths = {"ld": {}, "st": {}}
    for kind, vec, bits in _ACCESS.findall(ptx):
        width = int(vec or 1) * int(bits) // 8
        widths[kind][width] = widths[kind].get(width, 0) + 1
    return widths


_PARAM = re.compile(r"ld\.param\.[bu]64\s+(%rd\d+),\s*\[\w+_param_(\d+)\]")
_DEF = re.compile(r"^\s*(?:@!?%p\d+\s+)?[a-z][\w.]*\s+(%rd\d+),(.*);")
_LOAD = re.compile(r"\bld\.global(?:\.[a-z]\w*)*?(?:\.v(\d))?\.[bfsu](\d+)\s+\S.*\[\s*(%rd\d+)")


def _streamed_load_widths(ptx: str, params: Sequence[int]) -> Tuple[int, ...]:
    """Widths of the global loads whose address derives from the pointer parameters ``params``
    (their positions among the kernel's PTX parameters), following 64-bit register definitions."""
    derived = {reg for reg, index in _PARAM.findall(ptx) if int(index) in params}
    widths = set()
    for line in ptx.splitlines():
        load = _LOAD.search(line)
        if load and load.group(3) in derived:
            widths.add(int(load.group(1) or 1) * int(load.group(2)) // 8)
            continue
        definition = _DEF.match(line)
        if definition and any(r in derived for r in re.findall(r"%rd\d+", definition.group(2))):
            derived.add(definition.group(1))
    return tuple(sorted(widths))


def _cubin_usage(cubin: bytes, name: str) -> Dict[str, int]:
    from triton import knobs

    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run(
            [knobs.nvidia.cuobjdump.path, "--dump-resource-usage", f.name],
            capture_output=True, text=True, check=True,
        ).stdout
    match = re.search(rf"Function {re.escape(name)}:\s*\n\s*(.*)", out)
    if match is None:
        raise RuntimeError(f"cuobjdump printed no resource usage for {name}:\n{out}")
    return {k: int(v) for k, v in re.findall(r"(\w+):(\d+)", match.group(1))}


@functools.lru_cache(maxsize=None)
def _target_and_backend(target=SM90):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend

    target = GPUTarget(*target)
    return target, make_backend(target)


@functools.lru_cache(maxsize=None)
def _binder(kernel, target=SM90):
    from triton.runtime.jit import create_function_from_signature

    _, backend = _target_and_backend(target)
    return create_function_from_signature(kernel.signature, kernel.params, backend)


_COMPILED: Dict[tuple, KernelResources] = {}


def compile_launch(launch: Launch, target: Tuple[str, int, int] = SM90) -> KernelResources:
    """Compile ``launch``'s kernel variant for ``target`` (backend, arch, warp size; default
    sm_90) exactly as Triton's launcher would pick it from these arguments, and return what it
    uses. Cached per variant, and by Triton on disk: the GPU run (benchmarks/gpu) compiles the
    whole matrix in parallel processes this way before its first launch."""
    import triton
    from triton.compiler import ASTSource

    target = tuple(target)
    gpu_target, backend = _target_and_backend(target)
    bound, specialization, options = _binder(launch.kernel, target)(*launch.args, **launch.kwargs)
    key = (target, launch.kernel.cache_key, repr(specialization), repr(sorted(launch.kwargs.items(), key=str)))
    if key not in _COMPILED:
        options, signature, constexprs, attrs = launch.kernel._pack_args(
            backend, launch.kwargs, bound, specialization, options
        )
        runtime = [name for name, kind in signature.items() if kind != "constexpr"]
        streamed = [runtime.index(name) for name in ("X", "DY") if name in runtime]
        compiled = triton.compile(
            ASTSource(launch.kernel, signature, constexprs, attrs), target=gpu_target, options=options.__dict__
        )
        usage = _cubin_usage(compiled.asm["cubin"], compiled.metadata.name)
        widths = _access_widths(compiled.asm["ptx"])
        _COMPILED[key] = KernelResources(
            name=launch.name,
            num_warps=compiled.metadata.num_warps,
            registers=usage["REG"],
            stack_bytes=usage["STACK"],
            local_bytes=usage["LOCAL"],
            shared_bytes=max(usage["SHARED"], compiled.metadata.shared),
            load_bytes=tuple(sorted(widths["ld"])),
            store_bytes=tuple(sorted(widths["st"])),
            streamed_load_bytes=_streamed_load_widths(compiled.asm["ptx"], streamed),
        )
    return _COMPILED[key]


# ---------------------------------------------------------------------------------------------
# One GN layer's training step, emulated.
# ---------------------------------------------------------------------------------------------
@dataclass
class PhaseReport:
    """The launches of one phase (forward, recompute, backward) of one GN layer."""

    launches: List[Launch] = field(default_factory=list)
    torch_kernels: List[str] = field(default_factory=list)
    allocations: List[str] = field(default_factory=list)

    @property
    def launch_count(self) -> int:
        return len(self.launches) + len(self.torch_kernels)


def emulate_layer(
    backend,
    shape: Sequence[int],
    groups: int,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    relu: bool = True,
    affine_dtype: torch.dtype = torch.float32,
) -> Dict[str, PhaseReport]:
    """Run ``backend``'s forward, recompute and backward of GN(+ReLU) on ``meta`` tensors of
    ``shape``, recording launches and counting torch ops per phase (nothing is compiled here)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.empty(tuple(shape), device="meta", dtype=dtype, memory_format=fmt)
    w = torch.empty(shape[1], device="meta", dtype=affine_dtype)
    b = torch.empty(shape[1], device="meta", dtype=affine_dtype)
    reports = {}
    with record_launches() as launches:
        with count_torch_ops() as ops:
            y, mean, rstd = backend.forward(x, w, b, groups, 1e-5, relu)
        reports["forward"] = PhaseReport(list(launches), ops.kernels, ops.allocations)
        launches.clear()
        with count_torch_ops() as ops:
            backend.recompute(x, w, b, mean, rstd, groups, 1e-5, relu)
        reports["recompute"] = PhaseReport(list(launches), ops.kernels, ops.allocations)
        launches.clear()
        dy = torch.empty_like(y)
        with count_torch_ops() as ops:
            backend.backward(dy, x, w, b, mean, rstd, groups, 1e-5, relu, None, (True, True, True))
        reports["backward"] = PhaseReport(list(launches), ops.kernels, ops.allocations)
    return reports
