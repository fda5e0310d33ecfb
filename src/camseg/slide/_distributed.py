"""Sharded inference over many slides (or many tiles) with torch.distributed.

Launch one process per device with ``torchrun``; each process (rank) takes
every ``world_size``-th item -- the split :class:`torch.utils.data.DistributedSampler`
makes, without padding, so no item is run twice -- writes its results to its
own shard file (atomically: a temporary file in the same folder, then
``os.replace``), and rank 0 merges the shards once all ranks have written.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from camseg._checks import check_callable, check_path, check_positive, describe
from camseg.slide._sliding import SlideMaps
from camseg.slide._splits import shard_indices

__all__ = ["atomic_save", "dist_info", "merge_slide_maps", "run_sharded"]

T = TypeVar("T")


def dist_info() -> tuple[int, int]:
    """``(rank, world_size)`` of this process.

    From :mod:`torch.distributed` when a process group is initialised, else from
    the ``RANK``/``WORLD_SIZE`` environment variables that ``torchrun`` sets, else
    ``(0, 1)``.

    Returns:
        ``(rank, world_size)``.

    Example:
        >>> dist_info()  # a single plain process
        (0, 1)
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename into place.

    Readers never see a half-written file, even if the process dies mid-write.

    Args:
        obj: anything :func:`torch.save` accepts.
        path: destination file; its folder is created if needed.

    Returns:
        The destination path.

    Raises:
        TypeError: if ``path`` is not a str or os.PathLike.

    Example:
        >>> import os, tempfile
        >>> path = atomic_save({"a": 1}, os.path.join(tempfile.mkdtemp(), "x.pt"))
        >>> torch.load(path)
        {'a': 1}
    """
    check_path(path)
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(dest)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return dest


def _create_temp(dest: Path) -> tuple[int, str]:
    """Create a fresh temporary file beside ``dest`` the way :func:`open` would.

    Unlike :func:`tempfile.mkstemp` (always ``0o600``), the file gets mode
    ``0o666`` less the process umask, and :func:`os.replace` keeps that mode.
    """
    while True:
        tmp = str(dest.parent / f".{dest.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:  # pragma: no cover - a 48-bit name collision
            continue


def _shard_path(out_dir: Path, rank: int, world_size: int) -> Path:
    return out_dir / f"shard-{rank:05d}-of-{world_size:05d}.pt"


def run_sharded(
    items: Sequence[T],
    fn: Callable[[T], Any],
    out_dir: str | os.PathLike[str],
    *,
    keys: Sequence[Hashable] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    timeout: float = 3600.0,
) -> dict[Hashable, Any] | None:
    """Run ``fn`` on this rank's share of ``items``, write a shard, merge on rank 0.

    Each rank runs ``fn`` on ``items[rank::world_size]`` and saves
    ``{key: fn(item)}`` to ``out_dir/shard-RRRRR-of-WWWWW.pt`` with
    :func:`atomic_save`. Rank 0 then waits for every shard (a
    :func:`torch.distributed.barrier` when a process group is initialised, else it
    polls for the files), merges them in item order and writes
    ``out_dir/merged.pt``.

    Args:
        items: the work, e.g. slide paths.
        fn: work on one item, e.g. ``lambda p: sliding_window(TiffReader(p), cam, ...)``.
        out_dir: folder of the shard and merged files.
        keys: one key per item (default: the item index).
        rank: this process's rank; by default from :func:`dist_info`.
        world_size: number of processes; by default from :func:`dist_info`.
        timeout: seconds rank 0 waits for missing shards when polling.

    Returns:
        On rank 0 the merged ``{key: result}`` in item order; ``None`` on other ranks.

    Raises:
        TypeError: if ``items`` is not a sequence, ``fn`` is not callable,
            ``out_dir`` is not a path, ``keys`` is not a sequence or ``timeout`` is
            not a number.
        ValueError: if ``keys`` has the wrong length or repeats a key, the rank is
            invalid, or ``timeout`` is not a finite number > 0.
        TimeoutError: if rank 0 polls longer than ``timeout`` for missing shards.

    Example:
        >>> import tempfile
        >>> out = run_sharded([1, 2, 3], lambda v: v * 10, tempfile.mkdtemp(),
        ...                   keys=["a", "b", "c"])
        >>> out
        {'a': 10, 'b': 20, 'c': 30}
    """
    import torch.distributed as dist

    if isinstance(items, (str, bytes)) or not (
        hasattr(items, "__len__") and hasattr(items, "__getitem__")
    ):
        raise TypeError(f"Expected `items` to be a sequence, but got {describe(items)}.")
    check_callable(fn, "fn")
    check_path(out_dir, "out_dir")
    if keys is not None and (isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable)):
        raise TypeError(
            f"Expected `keys` to be a sequence of one key per item, but got {describe(keys)}."
        )
    timeout = check_positive(timeout, "timeout", hint="Hint: it is in seconds.")
    r0, w0 = dist_info()
    rank = r0 if rank is None else rank
    world_size = w0 if world_size is None else world_size
    mine = shard_indices(len(items), rank=rank, world_size=world_size)
    key_list = list(range(len(items))) if keys is None else list(keys)
    if len(key_list) != len(items):
        raise ValueError(
            f"Expected `keys` to hold one key per item ({len(items)}), but got "
            f"{len(key_list)} keys."
        )
    if len(set(key_list)) != len(key_list):
        raise ValueError("Expected `keys` to be unique, but some key repeats.")
    out = Path(out_dir)
    shard = {key_list[i]: fn(items[i]) for i in mine}
    atomic_save(shard, _shard_path(out, rank, world_size))
    initialised = dist.is_available() and dist.is_initialized()
    if initialised:
        dist.barrier()
    if rank != 0:
        return None
    paths = [_shard_path(out, r, world_size) for r in range(world_size)]
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            missing = [p.name for p in paths if not p.exists()]
            raise TimeoutError(f"Shards still missing after {timeout:g} s: {missing}.")
        time.sleep(0.2)
    parts: dict[Hashable, Any] = {}
    for p in paths:
        parts.update(torch.load(p, weights_only=False))
    merged = {k: parts[k] for k in key_list}
    atomic_save(merged, out / "merged.pt")
    return merged


def merge_slide_maps(parts: Sequence[SlideMaps]) -> SlideMaps:
    r"""Combine :class:`SlideMaps` of disjoint tile shards of one slide into one.

    With ``sliding_window(..., shard=(rank, world_size))`` each rank stitches its
    own tiles; since every canvas is a weighted mean, the weighted sums add up:

    .. math::

        M = \frac{\sum_r W_r M_r}{\sum_r W_r}

    so the merge equals a single-process run up to floating-point rounding.

    Args:
        parts: the shards' results (same slide, level and output size).

    Returns:
        The merged :class:`SlideMaps`; tiles and probabilities concatenated in
        shard order.

    Raises:
        ValueError: if ``parts`` is empty or the shards do not match.

    Example:
        >>> import numpy as np
        >>> from camseg.slide import ArrayReader, sliding_window
        >>> img = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
        >>> fn = lambda t: (t.mean(dim=(1, 2, 3)), t[:, 0])
        >>> parts = [sliding_window(ArrayReader(img), fn, tile=4, stride=2, shard=(r, 2),
        ...                         progress=False) for r in range(2)]
        >>> full = sliding_window(ArrayReader(img), fn, tile=4, stride=2, progress=False)
        >>> torch.allclose(merge_slide_maps(parts).cam, full.cam)
        True
    """
    if isinstance(parts, (str, bytes)) or not isinstance(parts, Sequence):
        raise TypeError(
            f"Expected `parts` to be a sequence of SlideMaps, but got {describe(parts)}."
        )
    if len(parts) == 0:
        raise ValueError("Expected `parts` to hold at least one SlideMaps, but got none.")
    for i, p in enumerate(parts):
        if not isinstance(p, SlideMaps):
            raise TypeError(
                f"Expected `parts` to hold SlideMaps (from sliding_window), but `parts[{i}]` is "
                f"{describe(p)}."
            )
    first = parts[0]
    for p in parts[1:]:
        if p.mpp != first.mpp or p.downsample != first.downsample:
            raise ValueError(
                "Expected all `parts` to have the same microns per pixel and downsample, but "
                f"got mpp {first.mpp} and {p.mpp}, downsample {first.downsample} and "
                f"{p.downsample}."
            )
        if p.prob.shape != first.prob.shape or p.level != first.level:
            raise ValueError(
                "Expected all `parts` to come from the same slide, level and output size, but "
                f"got shapes {tuple(first.prob.shape)} and {tuple(p.prob.shape)}, levels "
                f"{first.level} and {p.level}."
            )
    weight = torch.stack([p.weight for p in parts]).sum(0)
    covered = weight > 0
    denom = weight.clamp_min(1e-30)

    def mean(name: str) -> torch.Tensor:
        total = torch.stack([getattr(p, name) * p.weight for p in parts]).sum(0)
        return torch.where(covered, total / denom, 0.0)

    return SlideMaps(
        prob=mean("prob"),
        cam=mean("cam"),
        weight=weight,
        coords=torch.cat([p.coords for p in parts]),
        tile_probs=torch.cat([p.tile_probs for p in parts]),
        level=first.level,
        downsample=first.downsample,
        mpp=first.mpp,
    )
