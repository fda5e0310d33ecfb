"""The boundary to camseg's compiled CPU kernels, ``camseg._cpu`` (``src/camseg/_cpu.c``).

The post-processing hot path on the CPU (per-image range, Otsu histograms,
``maps >= t``, small-component removal) is a handful of passes over every
pixel; in NumPy or torch each pass is a separate sweep through memory with
its own temporaries, in C it is one sweep per image while the image is in
cache. The kernels work on contiguous NumPy views of CPU tensors (no copies),
release the GIL, and are run here on slices of the batch in threads (as many
as :func:`torch.get_num_threads`, so ``torch.set_num_threads(1)`` makes them
single-threaded too).

Two layers, and callers outside this module use only the first:

* **tensors**: :func:`applies` is the one answer to "does a kernel take these
  tensors?"; :func:`map_range`, :func:`otsu`, :func:`otsu_masks` and
  :func:`remove_small_objects` take and return tensors, and return ``None``
  when the kernels do not apply, so the caller runs its own torch/NumPy path
  in that case and asks nothing else.
* **buffers**: :func:`range_f32`, :func:`otsu_f32`, :func:`histogram_f32` and
  :func:`small_objects` wrap the C functions on NumPy arrays, check the
  buffers' formats and split the batch across threads.

The extension is built by ``pip install`` (``setup.py``; a C compiler is
needed when installing from source). If it is missing, or the environment
variable ``CAMSEG_NO_NATIVE=1`` is set, :func:`available` is False, every
tensor function returns ``None`` and the callers take their torch/NumPy paths,
which give the same results more slowly.
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
    import camseg._cpu as _cpu  # type: ignore[no-redef, unused-ignore]
except ImportError:
    _cpu = None

__all__ = [
    "applies",
    "available",
    "histogram_f32",
    "map_range",
    "otsu",
    "otsu_f32",
    "otsu_masks",
    "range_f32",
    "remove_small_objects",
    "small_objects",
]

# what the kernels read: float maps (float16 is widened to float32) and bool masks
_DTYPES = (torch.float16, torch.float32, torch.bool)

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


def applies(*tensors: torch.Tensor | None) -> bool:
    """Whether the kernels take these tensors: the one question callers would ask.

    True when the extension is built and enabled and every tensor is on the CPU and a
    float16/float32 map or a bool mask (``None`` entries, absent options, are skipped).
    """
    return _cpu is not None and all(
        t is None or (t.device.type == "cpu" and t.dtype in _DTYPES) for t in tensors
    )


# --------------------------------------------------------------------------- tensors


def _flat_float32(maps: torch.Tensor) -> np.ndarray:
    """CPU maps ``(B, H, W)`` as a C-contiguous float32 ``(B, H*W)`` array (a view if possible)."""
    flat = maps.detach().reshape(maps.shape[0], -1)
    if flat.dtype != torch.float32:
        flat = flat.float()
    return np.ascontiguousarray(flat.numpy())


def _range(lo: np.ndarray, hi: np.ndarray, bad: bool, dtype: torch.dtype) -> torch.Tensor:
    """The per-image ``(min, max)`` ``(B, 2)`` in ``dtype``; all NaN where ``bad``.

    The kernels flag a NaN or infinity anywhere in the batch (their minima and
    maxima are then meaningless); NaN in the range says so, as NaN propagating
    through a torch reduction does, so one check serves both paths.
    """
    rng = torch.from_numpy(np.stack([lo, hi], axis=1))
    if bad:
        rng.fill_(float("nan"))
    return rng.to(dtype)


def map_range(maps: torch.Tensor) -> torch.Tensor | None:
    """Per-image ``(min, max)`` of maps ``(B, H, W)`` as ``(B, 2)`` in their dtype, or None.

    One C pass per image. NaN throughout the result when any value is NaN or
    infinite. None when the kernels do not apply (see :func:`applies`).
    """
    if not applies(maps):
        return None
    lo, hi, bad = range_f32(_flat_float32(maps))
    return _range(lo, hi, bad, maps.dtype)


def otsu(maps: torch.Tensor, *, nbins: int = 256) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The range ``(B, 2)`` and Otsu thresholds ``(B,)`` of maps ``(B, H, W)``, or None.

    One C pass per image: range, histogram (``numpy.histogram``'s counts over
    ``nbins`` bins of ``[min, max]``) and threshold (a constant map's value for
    a constant map), both in the maps' dtype. The range is NaN throughout when
    any value is NaN or infinite (the thresholds are then meaningless). None
    when the kernels do not apply (see :func:`applies`).
    """
    if not applies(maps):
        return None
    lo, hi, thr, bad = otsu_f32(_flat_float32(maps), (maps.shape[1], maps.shape[2]), nbins=nbins)
    return _range(lo, hi, bad, maps.dtype), torch.from_numpy(thr).to(maps.dtype)


def otsu_masks(
    maps: torch.Tensor, *, keep: torch.Tensor | None = None, min_size: int = 0
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The range ``(B, 2)`` of maps ``(B, H, W)`` and their Otsu masks ``maps >= t``, or None.

    One C pass per image while it is in cache: its range, and for the images
    that ``keep`` (bool ``(B,)``, None for all) marks the 256-bin histogram,
    Otsu's threshold, the comparison and the removal of 4-connected components
    smaller than ``min_size`` pixels. Images not kept and constant maps get an
    all-False mask. The range is NaN throughout when any value is NaN or
    infinite. None when the kernels do not apply (see :func:`applies`).
    """
    if not applies(maps, keep):
        return None
    b, h, w = maps.shape
    out = np.zeros((b, h, w), dtype=bool)
    lo, hi, _, bad = otsu_f32(
        _flat_float32(maps),
        (h, w),
        keep=None if keep is None else keep.numpy(),
        out=out.reshape(b, -1),
        min_size=min_size,
    )
    return _range(lo, hi, bad, maps.dtype), torch.from_numpy(out)


def remove_small_objects(
    masks: torch.Tensor, min_size: int, connectivity: int
) -> torch.Tensor | None:
    """Remove components below ``min_size`` pixels from bool masks ``(B, H, W)``, in place.

    ``masks`` must be C-contiguous; ``connectivity`` 1 (4-neighbourhood) or 2
    (8-neighbourhood). Returns ``masks``, or None when the kernels do not apply
    (see :func:`applies`).
    """
    if not applies(masks):
        return None
    if masks.numel() and min_size > 1:
        small_objects(masks.detach().numpy(), min_size, connectivity)
    return masks


# --------------------------------------------------------------------------- buffers


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
