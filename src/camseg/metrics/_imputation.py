r"""Noisy linear imputation for ROAD: a batched multigrid-preconditioned solver (private).

For one image and channel with removed set :math:`U`, the values
:math:`x_U` solve a sparse symmetric positive definite system (a masked graph
Laplacian). pytorch-grad-cam and the paper's code build it with
:mod:`scipy.sparse` and call ``spsolve`` image by image on the CPU. Here the
system is never built: its matrix-vector product is a 3×3 stencil made of
shifted tensor adds, applied to all images and channels at once, and it is
solved by conjugate gradients in float64, preconditioned by one symmetric
geometric multigrid V-cycle in float32 (two undamped Jacobi sweeps before and
after each coarse-grid correction; a coarse cell is unknown when all its
2 × 2 children are; a dense pseudo-inverse on a coarsest grid of at most 36
cells). The iteration count hardly depends on the image size or the share
removed: 8 to 13 for 96 × 96 images at the default tolerance. On a CPU the
images are solved in blocks of a few, whose buffers stay in cache.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

from camseg._checks import check_nonnegative, check_positive_int, describe

__all__ = ["check_solver_options", "impute"]

_COARSEST = 36  # cells of the coarsest multigrid level, solved densely
_SWEEPS = 2  # Jacobi sweeps before and after each coarse-grid correction
_BYTES_PER_VALUE = 128  # solver buffers per image value (float64 CG + float32 levels)
_CPU_BLOCK_BYTES = 16 * 2**20  # solver working set per block of images on a CPU


# --------------------------------------------------------------------------- stencil


class _Workspace:
    """Buffers of one call, reused by all its blocks of images.

    Fresh memory costs page faults on first touch; a block no larger than the
    first reuses the first block's buffers (a prefix along the batch dimension,
    which keeps them contiguous and the stencil's zero borders intact).
    """

    def __init__(self, like: torch.Tensor) -> None:
        self.device = like.device
        self._buffers: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def get(
        self, key: str, shape: tuple[int, ...], dtype: torch.dtype, *, zero: bool = False
    ) -> torch.Tensor:
        """The buffer ``key`` of ``shape`` (zero-filled when first made, if ``zero``)."""
        buf = self._buffers.get((key, dtype))
        if buf is None or buf.shape[1:] != shape[1:] or buf.shape[0] < shape[0]:
            new = torch.zeros if zero else torch.empty
            buf = new(shape, dtype=dtype, device=self.device)
            self._buffers[(key, dtype)] = buf
        return buf[: shape[0]]


class _Stencil:
    """``S x``, the 3×3 stencil ``[1, 2, 1] ⊗ [1, 2, 1]`` with zero padding.

    Two passes of shifted adds into preallocated buffers ``(n, c, h, w)``; the
    views are made once, since on small grids the per-call overhead of torch
    ops dominates.
    """

    def __init__(
        self, shape: tuple[int, int, int, int], dtype: torch.dtype, ws: _Workspace, key: str
    ) -> None:
        n, c, h, w = shape
        self.pad = ws.get(key + ".pad", (n, c, h + 2, w + 2), dtype, zero=True)  # border 0
        self.tmp = ws.get(key + ".tmp", (n, c, h + 2, w), dtype)
        self.out = ws.get(key + ".out", (n, c, h, w), dtype)
        p, t = self.pad, self.tmp
        self.inner = p[..., 1:-1, 1:-1]
        self.left, self.mid, self.right = p[..., :, :-2], p[..., :, 1:-1], p[..., :, 2:]
        self.up, self.centre, self.down = t[..., :-2, :], t[..., 1:-1, :], t[..., 2:, :]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.inner.copy_(x)
        torch.add(self.left, self.right, out=self.tmp)
        self.tmp.add_(self.mid, alpha=2)
        torch.add(self.up, self.down, out=self.out)
        return self.out.add_(self.centre, alpha=2)


class _Level:
    """The system on one grid: ``A y = m * (e * y - S y)`` with ``e = S 1``.

    With ``S`` the stencil above, ``(S x)_i - 4 x_i`` is 12 times the weighted
    sum of the in-image neighbours (weights 1/6 and 1/12) and ``e_i - 4`` is 12
    times their total weight, so ``A x = b`` on the removed pixels is the
    imputation equation "each removed pixel is the renormalised weighted mean
    of its neighbours", scaled by 12. ``m`` is 1 on removed pixels.
    """

    def __init__(
        self,
        unknown: torch.Tensor,
        channels: int,
        dtype: torch.dtype,
        ws: _Workspace,
        key: str,
        *,
        smoother: bool = True,
    ) -> None:
        n, _, h, w = unknown.shape
        self.shape = (n, channels, h, w)
        one = (1, 1, h, w)
        e = _Stencil(one, dtype, ws, key + ".e")(torch.ones(one, dtype=dtype, device=ws.device))
        self.m = ws.get(key + ".m", (n, 1, h, w), dtype).copy_(unknown)
        self.me = torch.mul(self.m, e, out=ws.get(key + ".me", (n, 1, h, w), dtype))
        # 12 x (weight of the in-image neighbours); 0 only for a 1 x 1 image
        diag = e - 4
        dinv = torch.where(diag > 0, 1 / diag.clamp_min(1), 0)
        self.dinv = torch.mul(self.m, dinv, out=ws.get(key + ".dinv", (n, 1, h, w), dtype))
        self.stencil = _Stencil(self.shape, dtype, ws, key)
        if not smoother:
            return
        # buffers of the V-cycle: residual, iterate, D^-1 r, right-hand side
        self.res = ws.get(key + ".res", self.shape, dtype)
        self.y = ws.get(key + ".y", self.shape, dtype)
        self.y0 = ws.get(key + ".y0", self.shape, dtype)
        self.r = ws.get(key + ".r", self.shape, dtype)
        self.even = h % 2 == 0 and w % 2 == 0
        h2, w2 = (h + 1) // 2, (w + 1) // 2
        # as the coarse level: the fine residual summed over row pairs, (n, c, h, 2 w)
        self.rows = ws.get(key + ".rows", (n, channels, h, 2 * w), dtype)
        cols = self.rows.view(n, channels, h, w, 2)
        self.cols = (cols[..., 0], cols[..., 1])
        # as the fine level: the coarse correction repeated along the width, (n, c, h2, 2 w2)
        self.wide = ws.get(key + ".wide", (n, channels, h2, 2 * w2), dtype)
        self.wide5 = self.wide.view(n, channels, h2, w2, 2)
        if self.even:
            res = self.res.view(n, channels, h2, 2, w)
            y = self.y.view(n, channels, h2, 2, w)
            mm = self.m.view(n, 1, h2, 2, w)
            self.res_pairs = (res[:, :, :, 0], res[:, :, :, 1])
            self.y_pairs = (y[:, :, :, 0], y[:, :, :, 1])
            self.m_pairs = (mm[:, :, :, 0], mm[:, :, :, 1])

    def apply(self, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        s = self.stencil(y)
        torch.mul(self.me, y, out=out)
        return out.addcmul_(self.m, s, value=-1)

    def residual(self, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        self.apply(y, self.res)
        return torch.sub(r, self.res, out=self.res)

    def smooth(self, y: torch.Tensor, y0: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """One Jacobi sweep ``out = y + D^-1 (r - A y)`` with ``y0 = D^-1 r``.

        For ``y`` zero on known pixels this is ``y0 + D^-1 (S y - 4 y)``: each
        removed pixel becomes the weighted mean of its neighbours' values.
        ``out`` may be ``y``.
        """
        s = self.stencil(y).sub_(y, alpha=4)
        return torch.addcmul(y0, self.dinv, s, out=out)

    def dense(self) -> torch.Tensor:
        """The matrix of ``A`` restricted to removed cells, ``(n, hw, hw)``, float64."""
        n, _, h, w = self.shape
        k = h * w
        m, me = self.m.double(), self.me.double()
        basis = torch.eye(k, dtype=torch.float64, device=m.device).view(1, k, h, w) * m
        s = _Stencil((n, k, h, w), torch.float64, _Workspace(m), "dense")(basis)
        return (me * basis - m * s).view(n, k, k)


def _coarsen(unknown: torch.Tensor) -> torch.Tensor:
    """A coarse cell is removed iff all its (in-image) 2 × 2 children are."""
    n, _, h, w = unknown.shape
    if h % 2 or w % 2:
        unknown = F.pad(unknown, (0, w % 2, 0, h % 2), value=True)
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    return unknown.view(n, 1, h2, 2, w2, 2).all(dim=5).all(dim=3)


class _Multigrid:
    """A symmetric V-cycle: an SPD approximation of ``A^{-1}`` (float32)."""

    def __init__(self, unknown: torch.Tensor, channels: int, ws: _Workspace) -> None:
        dtype = torch.float32
        self.levels = [_Level(unknown, channels, dtype, ws, "mg0")]
        u = unknown
        while u.shape[-2] * u.shape[-1] > _COARSEST:
            u = _coarsen(u)
            if not bool(u.any()):  # nothing left to correct on coarser grids
                break
            self.levels.append(_Level(u, channels, dtype, ws, f"mg{len(self.levels)}"))
        last = self.levels[-1]
        self.pinv: torch.Tensor | None = None
        if last.shape[-2] * last.shape[-1] <= _COARSEST:
            # symmetric pseudo-inverse: a fully removed image makes A singular
            a = last.dense()
            self.pinv = torch.linalg.pinv(a, rtol=1e-8, hermitian=True).to(dtype)

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        return self._cycle(0, r)

    def _cycle(self, i: int, r: torch.Tensor) -> torch.Tensor:
        lv = self.levels[i]
        n, c, h, w = lv.shape
        if i == len(self.levels) - 1 and self.pinv is not None:
            y = torch.matmul(r.reshape(n, c, h * w), self.pinv).view(n, c, h, w)
            return lv.y.copy_(y)
        y0 = torch.mul(lv.dinv, r, out=lv.y0)  # one sweep from zero
        y = lv.smooth(y0, y0, lv.y) if _SWEEPS > 1 else lv.y.copy_(y0)
        for _ in range(_SWEEPS - 2):
            lv.smooth(y, y0, y)
        if i + 1 < len(self.levels):
            coarse = self.levels[i + 1]
            lv.residual(y, r)
            _restrict(lv, coarse)
            _prolong_add(self._cycle(i + 1, coarse.r), lv)
        for _ in range(_SWEEPS):
            lv.smooth(y, y0, y)
        return y


def _restrict(fine: _Level, coarse: _Level) -> None:
    """``coarse.r = coarse.m * (fine.res summed over each 2 x 2 block)``."""
    if fine.even:
        torch.add(*fine.res_pairs, out=coarse.rows)
    else:  # zero beyond the edge
        n, c, h, w = fine.shape
        res = F.pad(fine.res, (0, w % 2, 0, h % 2)).view(n, c, (h + 1) // 2, 2, w + w % 2)
        torch.add(res[:, :, :, 0], res[:, :, :, 1], out=coarse.rows)
    torch.add(*coarse.cols, out=coarse.r)
    coarse.r.mul_(coarse.m)


def _prolong_add(yc: torch.Tensor, fine: _Level) -> None:
    """``fine.y += fine.m * (yc repeated over each 2 x 2 block)``."""
    fine.wide5.copy_(yc[..., None].expand(fine.wide5.shape))
    if fine.even:
        for y, m in zip(fine.y_pairs, fine.m_pairs):
            y.addcmul_(fine.wide, m)
    else:
        h, w = fine.shape[-2:]
        up = fine.wide.repeat_interleave(2, dim=2)[..., :h, :w]
        fine.y.addcmul_(up, fine.m)


def _max_abs(x: torch.Tensor) -> float:
    lo, hi = torch.aminmax(x)
    return max(-float(lo), float(hi))


def _dot(a: torch.Tensor, b: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """Per-system inner products of ``(n, c, h, w)`` tensors, ``(n, c, 1, 1)``.

    The product goes to the scratch ``tmp``: a fresh full-size temporary per
    call would cost page faults when the allocator hands memory back.
    """
    return torch.mul(a, b, out=tmp).sum(dim=(2, 3), keepdim=True)


def _solve(
    values: torch.Tensor,
    unknown: torch.Tensor,
    tol: float,
    max_iter: int,
    out: torch.Tensor,
    ws: _Workspace,
) -> torch.Tensor:
    """Solve the imputation system by multigrid-preconditioned conjugate gradients.

    Args:
        values: ``(n, c, h, w)``, known values scaled to [-1, 1], zero where unknown.
        unknown: ``(n, 1, h, w)`` bool, the removed pixels.
        tol: stop when the preconditioned residual (the multigrid estimate of
            the error) is at most ``tol`` everywhere.
        max_iter: most conjugate-gradient iterations.
        out: where to write the solution, like ``values`` (zero where known).
        ws: buffers to (re)use.

    Returns:
        ``out``.
    """
    shape, dtype = tuple(values.shape), values.dtype
    c = shape[1]
    lv = _Level(unknown, c, dtype, ws, "cg", smoother=False)
    mg = _Multigrid(unknown, c, ws)
    x = out.zero_()
    r = torch.mul(lv.stencil(values), lv.m, out=ws.get("cg.r", shape, dtype))  # b
    r32 = ws.get("cg.r32", shape, torch.float32).copy_(r)
    z32 = mg(r32)
    est = _max_abs(z32)
    if est <= tol:
        return x
    z = ws.get("cg.z", shape, dtype).copy_(z32)
    p = ws.get("cg.p", shape, dtype).copy_(z)
    ap = ws.get("cg.ap", shape, dtype)
    tmp = ws.get("cg.tmp", shape, dtype)
    rz = _dot(r, z, tmp)
    zero = torch.zeros((), dtype=dtype, device=values.device)
    for _ in range(max_iter):
        lv.apply(p, ap)
        pap = _dot(p, ap, tmp)
        alpha = torch.where(pap > 0, rz / torch.where(pap > 0, pap, 1), zero)
        x.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1)
        r32.copy_(r)
        z32 = mg(r32)
        z.copy_(z32)
        est = _max_abs(z32)
        if est <= tol:
            return x
        rz_new = _dot(r, z, tmp)
        beta = torch.where(rz > 0, rz_new / torch.where(rz > 0, rz, 1), zero)
        rz = rz_new
        p.mul_(beta).add_(z)
    warnings.warn(
        f"noisy_linear_imputation: the solver stopped after `max_iter`={max_iter} "
        f"iterations with an estimated relative error of {est:.3g} > `tol`={tol:g}. "
        "Hint: raise `max_iter`.",
        RuntimeWarning,
        stacklevel=4,
    )
    return x


# --------------------------------------------------------------------------- imputation


def impute(
    images: torch.Tensor,
    removed: torch.Tensor,
    noise: float,
    generator: torch.Generator | None,
    tol: float,
    max_iter: int,
) -> torch.Tensor:
    """:func:`camseg.metrics.noisy_linear_imputation` without argument checks."""
    if images.numel() == 0 or not bool(removed.any()):
        return images.clone()
    work = torch.float32 if images.device.type == "mps" else torch.float64
    unknown = removed[:, None]
    v = images.to(work)
    inf = torch.tensor(math.inf, dtype=work, device=images.device)
    lo = torch.where(unknown, inf, v).amin(dim=(2, 3), keepdim=True)
    hi = torch.where(unknown, -inf, v).amax(dim=(2, 3), keepdim=True)
    has_known = torch.isfinite(lo)
    lo = torch.where(has_known, lo, 0)
    hi = torch.where(has_known, hi, 0)
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    half = torch.where(half > 0, half, 1)  # constant (or no) known values
    scaled = torch.where(unknown, 0, (v - mid) / half)
    block = images.shape[0]
    if images.device.type == "cpu":
        # cache blocking: the solver streams ~15 buffers per iteration; on a CPU
        # blocks of images whose buffers fit in the last-level cache run faster
        # than the whole batch and bound the memory (~16 MiB + 40 B per value)
        per_image = _BYTES_PER_VALUE * images[0].numel()
        block = max(1, _CPU_BLOCK_BYTES // per_image)
    x = torch.empty_like(scaled)
    ws = _Workspace(scaled)
    for s in range(0, images.shape[0], block):
        sl = slice(s, s + block)
        _solve(scaled[sl], unknown[sl], tol, max_iter, x[sl], ws)
    filled = (x.clamp_(-1, 1) * half + mid).to(images.dtype)
    # discrete maximum principle: the exact solution lies in [min, max] of the known values
    filled = torch.minimum(torch.maximum(filled, lo.to(images.dtype)), hi.to(images.dtype))
    if noise > 0:
        gen_device = generator.device if generator is not None else images.device
        draw = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
        eps = torch.randn(images.shape, generator=generator, device=gen_device, dtype=draw)
        filled = filled + noise * eps.to(device=images.device, dtype=images.dtype)
    return torch.where(unknown, filled, images)


def check_solver_options(
    noise: float, generator: torch.Generator | None, tol: float, max_iter: int
) -> None:
    check_nonnegative(noise, "noise")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"Expected `generator` to be None or a torch.Generator, but got {describe(generator)}."
        )
    if not isinstance(tol, (int, float)) or isinstance(tol, bool):
        raise TypeError(f"Expected `tol` to be a number, but got {describe(tol)}.")
    if not (tol > 0 and math.isfinite(tol)):
        raise ValueError(f"Expected `tol` to be a finite number > 0, but got {tol!r}.")
    check_positive_int(max_iter, "max_iter")
