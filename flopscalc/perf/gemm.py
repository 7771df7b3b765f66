"""How much of a GPU one GEMM can use: tile and wave quantization.

A GEMM C[m, n] = A[m, k] B[k, n] is split into output tiles, one thread block each; a partial tile costs as
much as a full one (tile quantization), and the tiles run in waves of one per SM, a partial last wave costing
a full one (wave quantization) [1]. When there are fewer tiles than SMs, cuBLAS and CUTLASS split the k
dimension across thread blocks [2], which we model as the smallest split that fills the SMs, keeping at least
``SPLIT_K_MIN_DEPTH`` of k per slice.

References
----------
[1] NVIDIA, "Matrix Multiplication Background User's Guide" (DU-09799-001, 2023), sec. 2.3 "Typical Tile
    Dimensions In cuBLAS And Performance" (256x128 and 128x128 among cuBLAS's tiles; larger tiles are more
    efficient), sec. 3.1 "Tile Quantization", sec. 3.2 "Wave Quantization" (A100: 108 SMs, one 256x128
    tile per SM at a time, so a wave is 108 tiles).
[2] NVIDIA CUTLASS documentation, "Efficient GEMM in CUDA", section "Parallelized Reductions: Split K":
    partitioning k among thread blocks when m and n are too small to occupy the GPU.
[3] Ibid. [1], sec. 2.2 "Tensor Core Requirements": Tensor Cores are used most efficiently when the dimensions
    are multiples of 16 bytes (8 elements of FP16/BF16); cuBLAS 11 relaxes this from a requirement to a
    performance guideline. On Hopper the fast kernels load their operands with TMA, whose tensor maps need
    global strides that are multiples of 16 bytes (CUDA Driver API, 6.30 "Tensor Map Object Management",
    ``cuTensorMapEncodeTiled``), so a 16-bit operand with an odd row length cannot use them.
[4] pytorch/pytorch issue #181718 (2026-04-28, RTX 4090, torch profiler kernel names): bf16 square GEMMs of an odd
    size run ``cutlass_75_tensorop_bf16_s1688gemm_bf16_128x128_nn_align1`` (one-element alignment, Turing MMA
    shape) at 106.8-115.6 TFLOP/s where an aligned size runs an Ampere kernel at 155.9.
[5] PyTorch ``torch/_inductor/fx_passes/pad_mm.py`` (``get_alignment_size_dtype``: 8 elements for fp16/bf16, 4 for
    fp32; ``get_padded_length``: a dimension of 1 is not padded) under ``torch._inductor.config.shape_padding``
    (on by default), and ``comprehensive_padding`` (strides of intermediate tensors padded): torch.compile pads
    a matmul's misaligned dimensions, so compiled code does not run the misaligned kernels of [4].
"""

from __future__ import annotations

import math
from functools import lru_cache

# Output tile shapes the model lets the library choose from ([1] sec. 2.3); it keeps the one that wastes least.
TILE_SHAPES = ((256, 128), (128, 256), (128, 128))
# Shortest k slice a split-K kernel is given: one 128-deep main-loop stage per thread block, the depth
# of [1]'s tile examples (an assumption; below it the partial-sum reduction costs more than it saves).
SPLIT_K_MIN_DEPTH = 128
# Operand alignment the fast tensor-core kernels need: 16 bytes ([3]); inductor pads to the same ([5]: 8 elements of
# a 16-bit type, 4 of fp32).
GEMM_ALIGNMENT_BYTES = 16


def misaligned(dims, element_bytes: int) -> bool:
    """Whether a GEMM whose operands have row lengths ``dims`` (the leading dimensions: feature widths, not the token
    count, for row-major activations) runs a misaligned kernel: some length above 1 is not a multiple of 16 bytes
    ([3]; a length of 1 is a matrix-vector product, which [5] leaves unpadded too)."""
    per = GEMM_ALIGNMENT_BYTES // element_bytes
    return any(d > 1 and d % per for d in dims)


def tile_quantization_efficiency(m: int, n: int, tile_m: int, tile_n: int) -> float:
    """Useful share of the work when partial tiles cost full ones: m n / (ceil(m/tm) tm ceil(n/tn) tn) ([1] 3.1)."""
    return (m * n) / (math.ceil(m / tile_m) * tile_m * math.ceil(n / tile_n) * tile_n)


def n_waves(n_tiles: int, n_sm: int) -> int:
    """Waves of thread blocks, one tile per SM at a time: ceil(tiles / SMs) ([1] 3.2)."""
    return math.ceil(n_tiles / n_sm)


def wave_quantization_efficiency(n_tiles: int, n_sm: int) -> float:
    """Busy share of the SMs over all waves: tiles / (waves x SMs) ([1] 3.2)."""
    return n_tiles / (n_waves(n_tiles, n_sm) * n_sm)


def split_k(n_tiles: int, k: int, n_sm: int) -> int:
    """Slices of k a library would use so that the tiles fill the SMs ([2]); 1 when they already do."""
    if n_tiles >= n_sm:
        return 1
    return max(1, min(n_sm // n_tiles, k // SPLIT_K_MIN_DEPTH))


@lru_cache(maxsize=16384)  # a pure function; a step's forward, recomputation and gradients repeat its shapes
def gemm_efficiency(m: int, n: int, k: int, n_sm: int | None, *, batch: int = 1) -> float:
    """Share of the GPU's GEMM rate a (batched) m x n x k GEMM keeps after tile and wave quantization.

    The best of `TILE_SHAPES` is taken, as cuBLAS's heuristics pick a tile per shape ([1] sec. 2.3). With
    ``n_sm`` None (no SM count in the data) only tile quantization applies.
    """
    if min(m, n, k, batch) < 1:
        raise ValueError(f"GEMM dimensions must be positive, got m={m} n={n} k={k} batch={batch}")
    best = 0.0
    for tm, tn in TILE_SHAPES:
        eff = tile_quantization_efficiency(m, n, tm, tn)
        if n_sm is not None:
            tiles = batch * math.ceil(m / tm) * math.ceil(n / tn)
            s = split_k(tiles, k, n_sm)
            eff *= wave_quantization_efficiency(tiles * s, n_sm)
        best = max(best, eff)
    return best
