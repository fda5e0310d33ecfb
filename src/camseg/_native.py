"""The boundary to camseg's compiled CPU kernels, ``camseg._cpu`` (``src/camseg/_cpu.c``).

The post-processing hot path on the CPU (per-image range, Otsu histograms,
``maps >= t``, small-component removal) is a handful of passes over every
pixel; in NumPy or torch each pass is a separate sweep through memory with
its own temporaries, in C it is one sweep per image while the image is in
cache. The kernels work on contiguous NumPy views of CPU tensors (no copies),
release the GIL, and are run here on slices of the batch in threads (as many
as :func:`torch.get_num_threads`, so ``torch.set_num_threads(1)`` makes them
single-threaded too).

The extension is built by ``pip install`` (``setup.py``; a C compiler is
needed when installing from source). If it is missing, or the environment
variable ``CAMSEG_NO_NATIVE=1`` is set, :func:`available` is False and the
callers take their torch/NumPy paths, which give the same results more slowly.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import numpy as np
import torch

_cpu: ModuleType | None
try:  # pragma: no cover - which branch runs depends on the build
    if os.environ.get("CAMSEG_NO_NATIVE", "") not in ("", "0"):
        raise ImportError("disabled by CAMSEG_NO_NATIVE")
    from camseg import _cpu  # type: ignore[attr-defined, no-redef, unused-ignore]
except ImportError:
    _cpu = None

__all__ = ["available", "histogram_f32", "otsu_f32", "range_f32", "small_objects"]

# below this many pixels a call is not split across threads (thread hand-off costs ~50 µs)
_MIN_PIXELS_PER_THREAD = 1 << 18

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool_after_fork() -> None:
    """A forked child has none of the parent's threads: it starts a pool of its own."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def available() -> bool:
    """Whether the compiled kernels are importable (and not disabled)."""
    return _cpu is not None


def _lib() -> ModuleType:
    if _cpu is None:
        raise RuntimeError("camseg._cpu is not available; check camseg._native.available() first")
    return _cpu


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="camseg"
            )
        return _pool


def _split(n_items: int, pixels_per_item: int) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` slices of ``n_items``, one per thread to use."""
    threads = min(
        torch.get_num_threads(),
        max(1, (n_items * pixels_per_item) // _MIN_PIXELS_PER_THREAD),
        max(1, n_items),
    )
    bounds = np.linspace(0, n_items, threads + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


def _run(parts: list[tuple[int, int]], job: Callable[[int, int], object]) -> list[object]:
    """``job(start, stop)`` for every slice: inline for one, in the pool for several."""
    if len(parts) <= 1:
        return [job(a, b) for a, b in parts]
    futures = [_executor().submit(job, a, b) for a, b in parts]
    return [f.result() for f in futures]


def _check_buffer(arr: np.ndarray, name: str, dtype: type, ndim: int) -> None:
    """Raise ``TypeError`` unless ``arr`` is a C-contiguous ``dtype`` array of ``ndim`` dims.

    The kernels read raw bytes: a float64 or strided buffer of the right length would
    otherwise be misread, so the format is checked here, not only the length in C.
    """
    if (
        not isinstance(arr, np.ndarray)
        or arr.dtype != np.dtype(dtype)
        or arr.ndim != ndim
        or not arr.flags.c_contiguous
    ):
        got = (
            f"{arr.dtype} array of shape {arr.shape} (C-contiguous: {arr.flags.c_contiguous})"
            if isinstance(arr, np.ndarray)
            else type(arr).__name__
        )
        raise TypeError(
            f"Expected `{name}` to be a C-contiguous {np.dtype(dtype)} array with {ndim} "
            f"dimensions, but got {got}."
        )


def range_f32(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per-row ``(min, max)`` of C-contiguous float32 ``(B, N)``, and whether any is non-finite.

    With a non-finite value in a row, that row's min/max are meaningless; the
    caller raises.
    """
    _check_buffer(flat, "flat", np.float32, 2)
    lib = _lib()
    b, n = flat.shape
    lo = np.empty(b, dtype=np.float32)
    hi = np.empty(b, dtype=np.float32)

    def job(a: int, z: int) -> bool:
        return bool(lib.range_f32(flat[a:z], z - a, n, lo[a:z], hi[a:z]))

    bad = any(_run(_split(b, n), job))
    return lo, hi, bad


def otsu_f32(
    flat: np.ndarray,
    shape: tuple[int, int],
    *,
    keep: np.ndarray | None = None,
    nbins: int = 256,
    out: np.ndarray | None = None,
    min_size: int = 0,
    connectivity: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Range and Otsu threshold of every image of C-contiguous float32 ``flat`` ``(B, H*W)``.

    One pass per image: its ``(min, max)``, and, for the images that ``keep``
    (bool ``(B,)``, None for all) marks, the histogram (``numpy.histogram``'s,
    bin for bin, over ``nbins`` equal bins of ``[min, max]``) and Otsu's
    threshold (a constant map's value for a constant map). With ``out`` (a
    C-contiguous bool ``(B, H*W)`` array) the kept rows of it receive
    ``maps >= t`` (all False for a constant map) with components smaller than
    ``min_size`` removed; other rows are left alone.

    Returns:
        ``(lo, hi, thr, bad)``: float32 ``(B,)`` arrays of the minima, maxima and
        thresholds (NaN for images not kept or not finite), and whether any
        value is NaN or infinite (the caller raises; nothing of such an image
        is meaningful).
    """
    _check_buffer(flat, "flat", np.float32, 2)
    if out is not None:
        _check_buffer(out, "out", np.bool_, 2)
    lib = _lib()
    b, n = flat.shape
    h, w = shape
    lo = np.empty(b, dtype=np.float32)
    hi = np.empty(b, dtype=np.float32)
    thr = np.empty(b, dtype=np.float32)
    k = None if keep is None else np.ascontiguousarray(keep, dtype=bool).view(np.uint8)
    o = None if out is None else out.view(np.uint8)

    def job(a: int, z: int) -> bool:
        return bool(
            lib.otsu_f32(
                flat[a:z],
                z - a,
                h,
                w,
                None if k is None else k[a:z],
                nbins,
                min_size,
                None if o is None else o[a:z],
                connectivity,
                lo[a:z],
                hi[a:z],
                thr[a:z],
            )
        )

    bad = any(_run(_split(b, n), job))
    return lo, hi, thr, bad


def histogram_f32(flat: np.ndarray, nbins: int) -> np.ndarray:
    """The int64 histogram ``(B, nbins)`` of every row of float32 ``flat`` over its own range.

    The counts of the Otsu kernel, exposed for the tests: ``numpy.histogram``'s
    counts bin for bin (zeros for a constant or non-finite row).
    """
    _check_buffer(flat, "flat", np.float32, 2)
    lib = _lib()
    b, n = flat.shape
    counts = np.zeros((b, nbins), dtype=np.int64)
    lib.histogram_f32(flat, b, n, nbins, counts)
    return counts


def small_objects(masks: np.ndarray, min_size: int, connectivity: int) -> None:
    """Remove components below ``min_size`` pixels from bool ``(B, H, W)`` (C order), in place."""
    _check_buffer(masks, "masks", np.bool_, 3)
    lib = _lib()
    b, h, w = masks.shape
    m = masks.view(np.uint8)

    def job(a: int, z: int) -> None:
        lib.small_objects(m[a:z], z - a, h, w, min_size, connectivity)

    _run(_split(b, h * w), job)
