"""Write :mod:`camseg.synthetic` patches in the exact PatchCamelyon file formats.

:func:`write_pcam` writes all three splits as the official HDF5 files (plus a
mask file for *every* split, which real PCam has for train only, and the meta
CSVs), so that every code path of the example runs offline.
:func:`write_kaggle` writes the Kaggle layout (``train_labels.csv`` + TIFFs).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camseg.synthetic import make_patches
from camseg_pcam._io import atomic_target, atomic_write_text, scratch_part
from camseg_pcam._validate import check_positive_int
from camseg_pcam.data import FILE_PREFIX, SPLITS

__all__ = ["write_kaggle", "write_pcam", "write_split"]

#: chunk shape of ``x`` in the files written here (one chunk per 32 patches).
DEFAULT_CHUNKS = 32


def _write_h5(
    target: Path,
    key: str,
    data: np.ndarray,
    *,
    chunk_rows: int | None,
    gzip_wrap: bool,
) -> Path:
    """Write one dataset to ``target`` (or ``target.gz``) atomically."""
    import h5py

    chunks: Any = None
    if chunk_rows is not None and len(data):
        chunks = (min(chunk_rows, len(data)), *data.shape[1:])
    if not gzip_wrap:
        with atomic_target(target) as part, h5py.File(part, "w") as fh:
            fh.create_dataset(key, data=data, chunks=chunks)
        return target
    final = target.with_name(target.name + ".gz")
    with scratch_part(target) as plain, atomic_target(final) as part:
        with h5py.File(plain, "w") as fh:
            fh.create_dataset(key, data=data, chunks=chunks)
        with (
            open(plain, "rb") as src,
            open(part, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as dst,
        ):
            shutil.copyfileobj(src, dst, length=16 << 20)
    return final


def _write_csv(target: Path, columns: dict[str, Sequence[Any]], *, index: bool = False) -> Path:
    """Write columns as CSV, atomically; ``index``: a leading unnamed row number, like pandas."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    names = list(columns)
    rows: Any = zip(*columns.values())
    if index:
        names = ["", *names]
        rows = ((i, *r) for i, r in enumerate(rows))
    writer.writerow(names)
    writer.writerows(rows)
    return atomic_write_text(target, buf.getvalue())


def _check_arrays(
    images: Any, labels: Any, masks: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate the arrays of :func:`write_split`; nothing is cast silently."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(
            f"Expected `images` to be uint8, but got {images.dtype}. "
            "Hint: scale float images in [0, 1] with `(images * 255).round().astype(np.uint8)`."
        )
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"Expected `images` to have shape (N, H, W, 3), but got {images.shape}.")
    n = images.shape[0]
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype.kind not in "biu":
        raise TypeError(f"Expected `labels` to be integer or bool, but got {labels.dtype}.")
    if labels.shape[0] != n:
        raise ValueError(
            f"Expected `labels` to hold {n} values (one per image), but got {labels.shape[0]}."
        )
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError(
            f"Expected `labels` to be 0/1, but got values {np.unique(labels)[:5].tolist()}."
        )
    if masks is not None:
        masks = np.asarray(masks)
        want = (n, *images.shape[1:3])
        if masks.shape not in (want, (*want, 1)):
            raise ValueError(
                f"Expected `masks` to have shape {want} like `images`, but got {masks.shape}."
            )
        if masks.dtype != np.bool_ and not (
            masks.dtype.kind in "iu" and np.isin(masks, (0, 1)).all()
        ):
            raise TypeError(f"Expected `masks` to be bool (or 0/1), but got {masks.dtype}.")
    return images, labels, masks


def write_split(
    root: str | os.PathLike[str],
    split: str,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    masks: np.ndarray | None = None,
    meta: dict[str, Sequence[Any]] | None = None,
    chunk_rows: int | None = DEFAULT_CHUNKS,
    gzip_wrap: bool = False,
) -> list[Path]:
    """Write one split's arrays as PCam files.

    Args:
        root: the output folder.
        split: ``"train"``, ``"valid"`` or ``"test"`` (any name is written as given).
        images: uint8 ``(N, 96, 96, 3)``.
        labels: integer ``(N,)``; stored as uint8 ``(N, 1, 1, 1)`` like PCam.
        masks: bool ``(N, 96, 96)`` or ``None``; stored as ``(N, 96, 96, 1)``.
        meta: the meta CSV's columns, or ``None`` for no CSV; written after an unnamed
            index column, like the official files.
        chunk_rows: HDF5 chunk length along ``N`` (``None``: contiguous).
        gzip_wrap: write ``.h5.gz`` files like the official download.

    Returns:
        The written paths.

    Raises:
        TypeError: if ``images`` is not uint8 or ``labels`` not integer or bool.
        ValueError: if the shapes or lengths disagree or a label is not 0/1.

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> paths = write_split(tempfile.mkdtemp(), "test",
        ...                     np.zeros((2, 96, 96, 3), np.uint8), np.array([0, 1]))
        >>> [p.name for p in paths]
        ['camelyonpatch_level_2_split_test_x.h5', 'camelyonpatch_level_2_split_test_y.h5']
    """
    base = Path(root)
    images, labels, masks = _check_arrays(images, labels, masks)
    n = len(images)
    if meta is not None:
        lengths = {k: len(v) for k, v in meta.items()}
        if any(v != n for v in lengths.values()):
            raise ValueError(
                f"Expected every column of `meta` to hold {n} values (one per image), but got "
                f"{lengths}."
            )
    out = [
        _write_h5(
            base / f"{FILE_PREFIX}{split}_x.h5",
            "x",
            np.ascontiguousarray(images),
            chunk_rows=chunk_rows,
            gzip_wrap=gzip_wrap,
        ),
        _write_h5(
            base / f"{FILE_PREFIX}{split}_y.h5",
            "y",
            np.asarray(labels, dtype=np.uint8).reshape(n, 1, 1, 1),
            chunk_rows=None,
            gzip_wrap=gzip_wrap,
        ),
    ]
    if masks is not None:
        out.append(
            _write_h5(
                base / f"{FILE_PREFIX}{split}_mask.h5",
                "mask",
                np.ascontiguousarray(masks, dtype=np.bool_).reshape(n, *images.shape[1:3], 1),
                chunk_rows=chunk_rows,
                gzip_wrap=gzip_wrap,
            )
        )
    if meta is not None:
        out.append(_write_csv(base / f"{FILE_PREFIX}{split}_meta.csv", meta, index=True))
    return out


def _fake_meta(
    masks: torch.Tensor, labels: torch.Tensor, split: str, seed: int, per_slide: int
) -> dict[str, Sequence[Any]]:
    """Plausible meta columns: slide names disjoint across splits, level-2 coordinates."""
    n = int(labels.numel())
    rng = np.random.default_rng(seed)
    slide = np.arange(n) // max(per_slide, 1)
    rng.shuffle(slide)
    kind = "tumor" if split != "test" else "test"
    return {
        "coord_y": (rng.integers(0, 2000, n) * 96).tolist(),
        "coord_x": (rng.integers(0, 1000, n) * 96).tolist(),
        # the official files write pandas booleans
        "tumor_patch": [str(bool(v)) for v in masks.flatten(1).any(1).tolist()],
        "center_tumor_patch": [str(bool(v)) for v in labels.tolist()],
        "wsi": [f"synthetic_{split}_{kind}_{s:03d}" for s in slide],
    }


def write_pcam(
    root: str | os.PathLike[str],
    *,
    n: int | Sequence[int] = (256, 64, 64),
    seed: int = 0,
    chunk_rows: int | None = DEFAULT_CHUNKS,
    gzip_wrap: bool = False,
    patches_per_slide: int = 32,
    **make_kwargs: Any,
) -> dict[str, list[Path]]:
    """Write synthetic patches as the three PCam splits, with masks and meta CSVs.

    Patches come from :func:`camseg.synthetic.make_patches` with a different
    seed per split. Unlike real PCam, every split gets a mask file.

    Args:
        root: the output folder (created).
        n: patches per split: one int for all, or ``(train, valid, test)``.
        seed: the base seed.
        chunk_rows: HDF5 chunk length along ``N`` (``None``: contiguous).
        gzip_wrap: write gzip-wrapped ``.h5.gz`` files like the official download.
        patches_per_slide: patches per synthetic slide name in the meta CSV.
        **make_kwargs: passed on to :func:`camseg.synthetic.make_patches`.

    Returns:
        The written paths per split.

    Raises:
        TypeError: if a count is not an int.
        ValueError: if ``n`` does not give 1 or 3 counts >= 1.

    Example:
        >>> import tempfile
        >>> written = write_pcam(tempfile.mkdtemp(), n=(4, 2, 2), seed=0)
        >>> sorted(written), len(written["train"])
        (['test', 'train', 'valid'], 4)
    """
    counts = [n] * 3 if isinstance(n, int) else list(n)
    if len(counts) != 3:
        raise ValueError(
            f"Expected `n` to be an int or (train, valid, test), but got {len(counts)} values."
        )
    for c in counts:
        check_positive_int(c, "n")
    out: dict[str, list[Path]] = {}
    for k, (split, count) in enumerate(zip(SPLITS, counts)):
        split_seed = seed * 10 + k
        images, labels, masks = make_patches(count, seed=split_seed, **make_kwargs)
        meta = _fake_meta(masks, labels, split, split_seed, patches_per_slide)
        out[split] = write_split(
            root,
            split,
            images.numpy(),
            labels.numpy(),
            masks=masks.numpy(),
            meta=meta,
            chunk_rows=chunk_rows,
            gzip_wrap=gzip_wrap,
        )
    return out


def write_kaggle(root: str | os.PathLike[str], *, n: int = 16, seed: int = 0) -> None:
    """Write synthetic patches in the Kaggle layout: ``train_labels.csv`` + ``train/<id>.tif``.

    Args:
        root: the output folder (created).
        n: the number of patches.
        seed: the seed of :func:`camseg.synthetic.make_patches`.

    Example:
        >>> import tempfile, os
        >>> root = tempfile.mkdtemp()
        >>> write_kaggle(root, n=2)
        >>> sorted(os.listdir(root))
        ['train', 'train_labels.csv']
    """
    import tifffile

    check_positive_int(n, "n")
    base = Path(root)
    (base / "train").mkdir(parents=True, exist_ok=True)
    images, labels, _ = make_patches(n, seed=seed)
    ids = [f"{seed:04x}{i:036x}" for i in range(n)]  # 40 hex characters, like Kaggle's ids
    for i, ident in enumerate(ids):
        with atomic_target(base / "train" / f"{ident}.tif") as part:
            tifffile.imwrite(part, images[i].numpy(), photometric="rgb")
    _write_csv(base / "train_labels.csv", {"id": ids, "label": labels.tolist()})
