"""``HashGrid``'s encoding (Müller et al. 2022, Instant-NGP) as fused Triton kernels.

One program encodes a block of points at one level: it computes the 8 cell corners, their
table rows and trilinear weights in registers and writes the (BLOCK, F) features, where the
PyTorch reference materialises (N, L, 8) rows and weights. Backward recomputes them and
scatters ``w_c * grad`` into the table with ``tl.atomic_add``. Values and table gradients equal
``HashGrid``'s (same vertices, same hash); there is no gradient in the points.

Triton is optional (extras ``cuda`` and ``dev``): without it this module imports and
``triton_available()`` is False. On the CPU the kernels run in Triton's interpreter, which
``TRITON_INTERPRET=1`` turns on only if set before this module is imported (``@triton.jit``
reads it when the kernels are defined); ``field.py`` imports this module lazily for that.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable

from generators.nerf.field import PRIMES

try:
    import triton
    import triton.language as tl
except ImportError:  # optional: the module still imports, the kernels are never launched
    triton = tl = None

BLOCK = 128  # points per program


def triton_available() -> bool:
    """Whether triton is importable (the kernels can run on CUDA, or on CPU when interpreted)."""
    return triton is not None


def _jit(fn):
    """``triton.jit``, or the plain function where triton is missing (never launched then)."""
    return fn if triton is None else triton.jit(fn)


@_jit
def _cell(x_ptr, p, live, axis: tl.constexpr, res):
    """Cell (BLOCK,) int32 and fraction (BLOCK,) of coordinate ``axis`` at resolution ``res``;
    as HashGrid.corners: pos = x N_l, cell = clamp(floor(pos), 0, N_l - 1), frac = pos - cell."""
    pos = tl.load(x_ptr + p * 3 + axis, mask=live, other=0.0).to(tl.float32) * res.to(tl.float32)
    cell = tl.minimum(tl.maximum(tl.floor(pos), 0.0), (res - 1).to(tl.float32))
    return cell.to(tl.int32), pos - cell


@_jit
def _cells(x_ptr, p, live, res):
    """Cells (BLOCK,) int32 and fractions (BLOCK,) along the 3 axes of points p at ``res``."""
    ci, fi = _cell(x_ptr, p, live, 0, res)
    cj, fj = _cell(x_ptr, p, live, 1, res)
    ck, fk = _cell(x_ptr, p, live, 2, res)
    return ci, cj, ck, fi, fj, fk


@_jit
def _lanes(n_points, FEATURES: tl.constexpr, F_PAD: tl.constexpr, BLOCK: tl.constexpr):
    """This program's point ids p (BLOCK,), feature lanes f (F_PAD,) (F padded to a power of
    two) and the mask (BLOCK, F_PAD) of real points and features."""
    p = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    f = tl.arange(0, F_PAD)
    return p, f, (p < n_points)[:, None] & (f < FEATURES)[None, :]


@_jit
def _pick(low, frac, HIGH: tl.constexpr):
    """Vertex (low + HIGH) and its trilinear factor along one axis: frac if HIGH else 1 - frac."""
    if HIGH:
        return low + 1, frac
    return low, 1.0 - frac


@_jit
def _corner(
    ci, cj, ck, fi, fj, fk, side, dense, mask, C: tl.constexpr, P2: tl.constexpr, P3: tl.constexpr
):
    """Table row (BLOCK,) int64 within the level and weight (BLOCK,) of corner C = 4a + 2b + c
    (HashGrid's (2, 2, 2) corner order); dense rows i + side (j + side k), else the hash
    (i xor j P2 xor k P3) & mask in uint32, whose wrapped products keep torch's low 32 bits."""
    i, wi = _pick(ci, fi, (C >> 2) & 1)
    j, wj = _pick(cj, fj, (C >> 1) & 1)
    k, wk = _pick(ck, fk, C & 1)
    # PRIMES[0] is 1: i enters the hash as is
    hashed = i.to(tl.uint32) ^ (j.to(tl.uint32) * P2) ^ (k.to(tl.uint32) * P3)
    row = tl.where(dense != 0, i + side * (j + side * k), (hashed & mask).to(tl.int32))
    return row.to(tl.int64), wi * wj * wk


@_jit
def _encode_kernel(
    x_ptr,
    table_ptr,
    res_ptr,
    dense_ptr,
    out_ptr,
    n_points,
    table_size,
    LEVELS: tl.constexpr,
    FEATURES: tl.constexpr,
    F_PAD: tl.constexpr,
    P2: tl.constexpr,
    P3: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """out[p, l F + f] = sum_c w_c table[l, row_c, f] for a block of points at level l."""
    level = tl.program_id(1)
    p, f, both = _lanes(n_points, FEATURES, F_PAD, BLOCK)
    res, dense = tl.load(res_ptr + level), tl.load(dense_ptr + level)
    ci, cj, ck, fi, fj, fk = _cells(x_ptr, p, p < n_points, res)
    mask = (table_size - 1).to(tl.uint32)
    base = level.to(tl.int64) * table_size  # level l's rows start at l T
    acc = tl.zeros((BLOCK, F_PAD), dtype=tl.float32)
    for c in tl.static_range(8):
        row, w = _corner(ci, cj, ck, fi, fj, fk, res + 1, dense, mask, c, P2, P3)
        feats = tl.load(table_ptr + (base + row)[:, None] * FEATURES + f[None, :], mask=both)
        acc += w[:, None] * feats.to(tl.float32)
    out = p[:, None] * (LEVELS * FEATURES) + level * FEATURES + f[None, :]  # in (N, L F)
    tl.store(out_ptr + out, acc, mask=both)


@_jit
def _table_grad_kernel(
    x_ptr,
    grad_ptr,
    res_ptr,
    dense_ptr,
    table_grad_ptr,
    n_points,
    table_size,
    LEVELS: tl.constexpr,
    FEATURES: tl.constexpr,
    F_PAD: tl.constexpr,
    P2: tl.constexpr,
    P3: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """table_grad[l, row_c, f] += w_c grad[p, l F + f] for a block of points at level l."""
    level = tl.program_id(1)
    p, f, both = _lanes(n_points, FEATURES, F_PAD, BLOCK)
    res, dense = tl.load(res_ptr + level), tl.load(dense_ptr + level)
    ci, cj, ck, fi, fj, fk = _cells(x_ptr, p, p < n_points, res)
    mask = (table_size - 1).to(tl.uint32)
    base = level.to(tl.int64) * table_size
    out = p[:, None] * (LEVELS * FEATURES) + level * FEATURES + f[None, :]  # in (N, L F)
    grad = tl.load(grad_ptr + out, mask=both, other=0.0).to(tl.float32)  # (BLOCK, F_PAD)
    for c in tl.static_range(8):
        row, w = _corner(ci, cj, ck, fi, fj, fk, res + 1, dense, mask, c, P2, P3)
        target = table_grad_ptr + (base + row)[:, None] * FEATURES + f[None, :]
        tl.atomic_add(target, w[:, None] * grad, mask=both, sem="relaxed")  # order-free sums


def _launch(kernel, x, values, levels, dense, result, size, features):
    """Runs ``kernel`` over (blocks of points, levels); ``values`` is the table or the grad."""
    grid = (triton.cdiv(x.shape[0], BLOCK), len(levels))
    f_pad = triton.next_power_of_2(features)
    kernel[grid](
        x,
        values,
        levels,
        dense,
        result,
        x.shape[0],
        size,
        LEVELS=len(levels),
        FEATURES=features,
        F_PAD=f_pad,
        P2=PRIMES[1],
        P3=PRIMES[2],
        BLOCK=BLOCK,
    )


class _HashEncode(torch.autograd.Function):
    """Fused forward; backward gives the table's gradient only (once differentiable)."""

    @staticmethod
    def forward(ctx, x, table, levels, dense):
        num_levels, size, features = table.shape
        out = x.new_empty(x.shape[0], num_levels * features)  # (N, L F) float32
        if x.shape[0]:
            _launch(_encode_kernel, x, table.contiguous(), levels, dense, out, size, features)
        ctx.save_for_backward(x, levels, dense)
        ctx.table_shape, ctx.table_dtype = table.shape, table.dtype
        return out.to(table.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, levels, dense = ctx.saved_tensors
        _, size, features = ctx.table_shape
        grad_table = torch.zeros(ctx.table_shape, device=x.device, dtype=torch.float32)
        if x.shape[0]:
            grad = grad_out.float().contiguous()  # (N, L F)
            _launch(_table_grad_kernel, x, grad, levels, dense, grad_table, size, features)
        return None, grad_table.to(ctx.table_dtype), None, None


def _check(x: torch.Tensor, table: torch.Tensor, levels: torch.Tensor, dense: torch.Tensor):
    """Raises on what the kernels cannot take (ImportError without triton, else ValueError)."""
    if triton is None:
        raise ImportError("the triton hash grid needs triton: pip install 'dream3d[cuda]'")
    if x.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            "the fused hash grid has no gradient in the points: detach them, or use "
            "HashGrid (TritonHashGrid falls back to it when the points require grad)"
        )
    if x.ndim != 2 or x.shape[1] != 3 or table.ndim != 3:
        raise ValueError(f"need points (N, 3) and a table (L, T, F), got {x.shape}, {table.shape}")
    size = table.shape[1]
    if size & (size - 1) or levels.shape != (table.shape[0],) or dense.shape != levels.shape:
        raise ValueError("need T a power of two and one resolution and dense flag per level")
    if x.device.type != "cuda" and type(_encode_kernel).__name__ != "InterpretedFunction":
        raise ValueError(
            "the triton hash grid needs a CUDA device, or TRITON_INTERPRET=1 set before "
            "generators.nerf.hashgrid_triton is imported"
        )


def triton_hash_encode(
    x: torch.Tensor,
    table: torch.Tensor,
    resolutions: Sequence[int] | torch.Tensor,
    dense: Sequence[bool] | torch.Tensor,
) -> torch.Tensor:
    """Features (N, L * F) of points (N, 3) in [0, 1]^3, equal to ``HashGrid``'s for the table
    (L, T, F), cells per axis N_l (L,) and dense flags (L,) (see ``HashGrid.dense``).

    Differentiable in the table only: points that require grad raise a ValueError.
    """
    levels = torch.as_tensor(resolutions, dtype=torch.int32, device=x.device)  # (L,)
    dense = torch.as_tensor(dense, dtype=torch.int32, device=x.device)  # (L,)
    _check(x, table, levels, dense)
    return _HashEncode.apply(x.float().contiguous(), table, levels, dense)
