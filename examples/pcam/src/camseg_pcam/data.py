"""PatchCamelyon readers: official HDF5 files, torchvision's layout, Kaggle's layout.

The official files are ``camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5``
(``x``: ``(N, 96, 96, 3)`` uint8, ``y``: ``(N, 1, 1, 1)`` integer labels), the
train-only ``camelyonpatch_level_2_split_train_mask.h5`` (key ``mask``,
``(N, 96, 96, 1)`` bool) and ``camelyonpatch_level_2_split_{split}_meta.csv``
(``coord_y, coord_x, tumor_patch, center_tumor_patch, wsi``). They are
distributed gzip-wrapped (``.h5.gz``); h5py cannot read those, so
:func:`find_pcam_files` decompresses each one once into a cache file next to it
(or into ``cache_dir``), written atomically.

:class:`PCamH5` opens each HDF5 file once per process, lazily (so a
:class:`~torch.utils.data.DataLoader` worker opens its own handle after the
fork), and reads a whole batch in sorted file order, straight from a memory map
at offsets from the HDF5 layout (:meth:`PCamH5.__getitems__`).
:class:`PCamBatchSampler` yields those batches:
shuffled or class-balanced, reproducible per epoch, sharded for DDP.

Every file problem (missing, truncated, wrong key, dtype or shape, ``x``/``y``
length mismatch) raises :class:`PCamFormatError` naming the file. Nothing falls
back to synthetic data.
"""

from __future__ import annotations

import csv
import gzip
import os
import shutil
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from camseg_pcam._io import atomic_target
from camseg_pcam._validate import check_one_of, check_positive_int

__all__ = [
    "FILE_PREFIX",
    "META_COLUMNS",
    "SPLITS",
    "KagglePCam",
    "PCamBatchSampler",
    "PCamFiles",
    "PCamFormatError",
    "PCamH5",
    "Split",
    "collate_batch",
    "find_pcam_files",
    "read_image",
    "read_meta",
    "split_by_slide",
]

Split = Literal["train", "valid", "test"]
SPLITS: tuple[str, ...] = ("train", "valid", "test")
FILE_PREFIX = "camelyonpatch_level_2_split_"
META_COLUMNS: tuple[str, ...] = ("coord_y", "coord_x", "tumor_patch", "center_tumor_patch", "wsi")
PATCH = 96


class PCamFormatError(ValueError):
    """A PCam file is missing, truncated or not in the expected format.

    The message always names the offending file.
    """


@dataclass(frozen=True)
class PCamFiles:
    """Paths of one PCam split.

    Attributes:
        split: ``"train"``, ``"valid"`` or ``"test"``.
        x: the image file (key ``x``).
        y: the label file (key ``y``).
        mask: the mask file (key ``mask``) or ``None`` when the split has none.
        meta: the meta CSV or ``None`` when absent.
    """

    split: str
    x: Path
    y: Path
    mask: Path | None = None
    meta: Path | None = None


def _name(split: str, what: str) -> str:
    ext = "csv" if what == "meta" else "h5"
    return f"{FILE_PREFIX}{split}_{what}.{ext}"


def _decompress(gz: Path, target: Path) -> Path:
    """Decompress ``gz`` into ``target`` atomically; reuse ``target`` when it is newer."""
    if target.exists() and target.stat().st_mtime >= gz.stat().st_mtime:
        return target
    try:
        with atomic_target(target) as part, open(part, "wb") as out, gzip.open(gz, "rb") as src:
            shutil.copyfileobj(src, out, length=16 << 20)
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:  # the part file is gone already
        raise PCamFormatError(
            f"Could not decompress {str(gz)!r}: {err}. The download is probably truncated; "
            "download it again (check its MD5 against the PCam README)."
        ) from err
    except OSError as err:
        raise PCamFormatError(
            f"Could not decompress {str(gz)!r} into {str(target)!r}: {err}. "
            "Hint: pass `cache_dir` for a read-only data folder."
        ) from err
    return target


def _locate(root: Path, name: str, cache_dir: Path | None) -> Path | None:
    """Find ``name`` (or ``name.gz``) in ``root`` or ``root/pcam``; decompress when gzipped."""
    for folder in (root, root / "pcam"):
        plain, gz = folder / name, folder / (name + ".gz")
        if plain.exists() and not (gz.exists() and gz.stat().st_mtime > plain.stat().st_mtime):
            return plain
        if gz.exists():
            target = (cache_dir / name) if cache_dir is not None else plain
            return _decompress(gz, target)
    return None


def find_pcam_files(
    root: str | os.PathLike[str],
    split: Split,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> PCamFiles:
    """Locate (and if needed decompress) the files of one PCam split.

    Looks in ``root`` and in ``root/pcam`` (the folder torchvision's ``PCAM``
    dataset downloads into). A gzipped file ``NAME.h5.gz`` is decompressed once
    to ``NAME.h5`` beside it, or into ``cache_dir`` when given (use that for a
    read-only data folder); a decompressed copy that is newer than the archive is
    reused.

    Args:
        root: the folder holding the PCam files.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        cache_dir: where decompressed copies go; default: next to the archives.

    Returns:
        The split's paths; ``mask`` and ``meta`` are ``None`` when absent.

    Raises:
        ValueError: if ``split`` is not a PCam split.
        PCamFormatError: if the ``x`` or ``y`` file is missing or a ``.gz`` is
            truncated.

    Example:
        >>> import tempfile
        >>> from camseg_pcam.synthetic_io import write_pcam
        >>> root = tempfile.mkdtemp()
        >>> _ = write_pcam(root, n=(8, 4, 4), seed=0)
        >>> files = find_pcam_files(root, "valid")
        >>> files.x.name, files.mask is not None
        ('camelyonpatch_level_2_split_valid_x.h5', True)
    """
    check_one_of(split, "split", SPLITS)
    base = Path(root)
    cache = Path(cache_dir) if cache_dir is not None else None
    found: dict[str, Path | None] = {}
    for what in ("x", "y", "mask", "meta"):
        found[what] = _locate(base, _name(split, what), cache)
    x, y = found["x"], found["y"]
    if x is None or y is None:
        what = "x" if x is None else "y"
        raise PCamFormatError(
            f"Missing PCam file {str(base / _name(split, what))!r} (also looked for "
            f"'.gz' and in {str(base / 'pcam')!r}). Hint: download PCam, or write "
            "synthetic files with `camseg-pcam make-synthetic`."
        )
    return PCamFiles(split=split, x=x, y=y, mask=found["mask"], meta=found["meta"])


def _open_h5(path: Path) -> Any:
    import h5py

    try:
        return h5py.File(path, "r")
    except FileNotFoundError as err:
        raise PCamFormatError(f"Missing PCam file {str(path)!r}.") from err
    except (OSError, RuntimeError, ValueError, KeyError) as err:  # h5py's damaged-file errors
        raise PCamFormatError(
            f"Could not open {str(path)!r} as HDF5 ({err}). The file is truncated, damaged or "
            "not HDF5; a '.h5.gz' download must be decompressed first (find_pcam_files does it)."
        ) from err


def _check_dataset(path: Path, handle: Any, key: str, shape: tuple[int, ...], kind: str) -> int:
    """Validate ``handle[key]`` and return its length."""
    try:
        return _check_dataset_unsafe(path, handle, key, shape, kind)
    except (OSError, RuntimeError, KeyError) as err:  # damaged HDF5 metadata
        raise PCamFormatError(
            f"Could not read the layout of {key!r} in {str(path)!r} ({err}): the file is "
            "damaged. Download it again (check its MD5 against the PCam README)."
        ) from err


def _check_dataset_unsafe(
    path: Path, handle: Any, key: str, shape: tuple[int, ...], kind: str
) -> int:
    if key not in handle:
        raise PCamFormatError(
            f"Expected key {key!r} in {str(path)!r}, but found keys {sorted(handle.keys())}."
        )
    ds = handle[key]
    if tuple(ds.shape[1:]) != shape or ds.ndim != len(shape) + 1:
        raise PCamFormatError(
            f"Expected {key!r} in {str(path)!r} to have shape (N, {', '.join(map(str, shape))}), "
            f"but got {tuple(ds.shape)}."
        )
    dtype = np.dtype(ds.dtype)
    ok = {
        "uint8": dtype == np.uint8,
        "int": dtype.kind in "iu",
        "bool": dtype == np.bool_ or dtype == np.uint8,
    }[kind]
    if not ok:
        want = {"uint8": "uint8", "int": "an integer dtype", "bool": "bool (or uint8 0/1)"}[kind]
        raise PCamFormatError(
            f"Expected {key!r} in {str(path)!r} to have dtype {want}, but got {dtype}."
        )
    return int(ds.shape[0])


_BOOL_TEXT = {"true": 1, "false": 0}


def _parse_int(text: str) -> int:
    low = text.strip().lower()
    if low in _BOOL_TEXT:  # real PCam writes pandas booleans: True / False
        return _BOOL_TEXT[low]
    value = float(low)
    if not value.is_integer():
        raise ValueError(f"{text!r} is not a whole number")
    return int(value)


def read_meta(
    path: str | os.PathLike[str], *, num_patches: int | None = None
) -> dict[str, np.ndarray]:
    """Read a PCam meta CSV into columns.

    The official files start with an unnamed index column and write
    ``tumor_patch`` / ``center_tumor_patch`` as ``True`` / ``False``; ``0`` / ``1``
    are read as well.

    Args:
        path: a ``camelyonpatch_level_2_split_*_meta.csv`` file.
        num_patches: the number of rows the CSV must have (the length of the
            split's HDF5 files), or ``None`` to accept any.

    Returns:
        ``coord_y``, ``coord_x``, ``tumor_patch``, ``center_tumor_patch`` as int64
        arrays ``(N,)`` and ``wsi`` as a string array ``(N,)``.

    Raises:
        PCamFormatError: if the file lacks a column, a value does not parse, a
            ``wsi`` is empty, or it has not ``num_patches`` rows.

    Example:
        >>> import tempfile
        >>> from camseg_pcam.synthetic_io import write_pcam
        >>> root = tempfile.mkdtemp()
        >>> _ = write_pcam(root, n=(8, 4, 4), seed=0)
        >>> meta = read_meta(find_pcam_files(root, "train").meta, num_patches=8)
        >>> sorted(meta), len(meta["wsi"])
        (['center_tumor_patch', 'coord_x', 'coord_y', 'tumor_patch', 'wsi'], 8)
    """
    p = Path(path)
    try:
        with open(p, newline="") as fh:
            reader = csv.reader(fh)
            fields = next(reader, None) or []
            missing = [c for c in META_COLUMNS if c not in fields]
            if missing:
                raise PCamFormatError(
                    f"Expected columns {list(META_COLUMNS)} in {str(p)!r}, but {missing} are "
                    f"missing (found {fields})."
                )
            where = [fields.index(c) for c in META_COLUMNS]
            cols: list[list[int]] = [[] for _ in range(4)]
            wsi: list[str] = []
            for line, row in enumerate(reader, start=2):
                if len(row) != len(fields):
                    if not row:  # a blank line
                        continue
                    raise PCamFormatError(
                        f"Expected {len(fields)} values on line {line} of {str(p)!r}, but got "
                        f"{len(row)}: the file is truncated or damaged."
                    )
                for k in range(4):
                    try:
                        cols[k].append(_parse_int(row[where[k]]))
                    except ValueError as err:
                        raise PCamFormatError(
                            f"Could not parse column {META_COLUMNS[k]!r} of {str(p)!r} on line "
                            f"{line}: {err}."
                        ) from err
                name = row[where[4]].strip()
                if not name:
                    raise PCamFormatError(
                        f"Expected a slide name in column 'wsi' of {str(p)!r} on line {line}, "
                        "but it is empty."
                    )
                wsi.append(name)
    except FileNotFoundError as err:
        raise PCamFormatError(f"Missing PCam meta file {str(p)!r}.") from err
    except (UnicodeDecodeError, csv.Error) as err:
        raise PCamFormatError(f"Could not read {str(p)!r} as CSV: {err}.") from err
    if num_patches is not None and len(wsi) != num_patches:
        raise PCamFormatError(
            f"Expected {num_patches} rows in {str(p)!r} (one per patch of the split), but got "
            f"{len(wsi)}: the file is truncated or belongs to another split."
        )
    out = {c: np.array(v, dtype=np.int64) for c, v in zip(META_COLUMNS[:4], cols)}
    out["wsi"] = np.array(wsi, dtype=str)
    return out


#: meta CSVs already checked in this process: (path, size, mtime_ns, rows); parsing the
#: train split's 262,144 rows takes about 1.3 s, so each file is checked once
_META_CHECKED: set[tuple[str, int, int, int]] = set()


def _check_meta(path: Path, num_patches: int) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        read_meta(path, num_patches=num_patches)  # raises PCamFormatError naming the file
        return
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, num_patches)
    if key not in _META_CHECKED:
        read_meta(path, num_patches=num_patches)
        _META_CHECKED.add(key)


def split_by_slide(
    wsi: Sequence[str] | np.ndarray,
    *,
    fraction: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split patch indices into two parts by slide, never by patch.

    Whole slides are drawn at random (seeded) into the held-out part until it
    holds at least ``fraction`` of the patches, so no slide contributes to both
    parts. Use it on the real train split (the only one with masks) to hold out
    slides for pixel-level evaluation.

    Args:
        wsi: the slide name of every patch, ``(N,)`` (the meta CSV's ``wsi``).
        fraction: the least share of patches in the held-out part, in (0, 1).
        seed: the random seed.

    Returns:
        ``(kept, held_out)``: sorted int64 index arrays, disjoint, covering ``0..N-1``.

    Raises:
        ValueError: if ``fraction`` is not in (0, 1) or there are fewer than two slides.

    Example:
        >>> kept, held = split_by_slide(["a", "a", "b", "c", "c", "c"], fraction=0.3, seed=0)
        >>> sorted(set(kept.tolist()) | set(held.tolist())) == list(range(6))
        True
    """
    names = np.asarray(wsi, dtype=str)
    if not (isinstance(fraction, float | int) and 0.0 < float(fraction) < 1.0):
        raise ValueError(f"Expected `fraction` to lie in (0, 1), but got {fraction!r}.")
    slides, inverse, counts = np.unique(names, return_inverse=True, return_counts=True)
    if len(slides) < 2:
        raise ValueError(
            f"Expected `wsi` to name at least 2 slides, but got {len(slides)}. "
            "A slide-wise split needs several slides."
        )
    order = np.random.default_rng(seed).permutation(len(slides))
    need = fraction * len(names)
    held_slides: list[int] = []
    total = 0
    for s in order[:-1]:  # always keep at least one slide
        if total >= need:
            break
        held_slides.append(int(s))
        total += int(counts[s])
    held = np.isin(inverse, np.array(held_slides, dtype=np.int64))
    return np.flatnonzero(~held).astype(np.int64), np.flatnonzero(held).astype(np.int64)


def collate_batch(batch: Any) -> dict[str, torch.Tensor]:
    """Pass a batch read by :meth:`PCamH5.__getitems__` through unchanged.

    Use as the ``collate_fn`` of a :class:`~torch.utils.data.DataLoader` whose
    ``batch_sampler`` is a :class:`PCamBatchSampler`.

    Args:
        batch: the dictionary returned by ``__getitems__`` (typed ``Any``: the
            DataLoader's ``collate_fn`` signature says list).

    Returns:
        The same dictionary.

    Example:
        >>> collate_batch({"label": torch.tensor([1])})["label"]
        tensor([1])
    """
    return batch


class PCamH5(Dataset[dict[str, torch.Tensor]]):
    """One PCam split read from its HDF5 files, a batch per h5py call.

    The files are validated when the dataset is built, then closed: keys,
    shapes, dtypes, equal lengths of ``x``, ``y`` and (when present, even with
    ``masks=False``) ``mask``, labels 0/1, that every chunk lies inside its
    file (a truncated file), that the first and last rows decode, and the meta
    CSV's columns, values and row count when it is present. Pixel bytes
    overwritten inside an uncompressed file cannot be told from pixels without
    a checksum (compare the archives' MD5 with the PCam README). Each
    process opens its own handles lazily on first read (keyed by process id,
    so forked DataLoader workers never share one). :meth:`__getitems__` sorts
    and de-duplicates the requested indices, reads them in file order and
    restores the requested order. Rows of
    unfiltered datasets (PCam's) are copied straight from a memory map of the
    file at offsets taken from the HDF5 layout (h5py's own point selections
    manage about a hundred random patches per second on chunked files);
    compressed chunks are read through h5py, one slice per touched chunk.
    Labels are loaded into memory once (one byte per patch).

    Args:
        files: the split's paths (see :func:`find_pcam_files`).
        masks: ``"auto"`` reads masks when the split has a mask file, ``True``
            requires one, ``False`` ignores it.
        indices: an optional subset ``(M,)`` of patch indices (e.g. one part of
            :func:`split_by_slide`); item ``i`` is patch ``indices[i]``.

    Raises:
        PCamFormatError: if a file is missing, truncated or malformed, or if
            ``masks=True`` and the split has no mask file.

    Example:
        >>> import tempfile
        >>> from camseg_pcam.synthetic_io import write_pcam
        >>> root = tempfile.mkdtemp()
        >>> _ = write_pcam(root, n=(8, 4, 4), seed=0)
        >>> ds = PCamH5(find_pcam_files(root, "train"))
        >>> batch = ds.__getitems__([5, 1, 5])
        >>> batch["image"].shape, batch["image"].dtype, batch["index"].tolist()
        (torch.Size([3, 96, 96, 3]), torch.uint8, [5, 1, 5])
    """

    def __init__(
        self,
        files: PCamFiles,
        *,
        masks: bool | Literal["auto"] = "auto",
        indices: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        check_one_of(masks, "masks", (True, False, "auto"))
        self.files = files
        mask_path = files.mask if masks in (True, "auto") else None
        if masks is True and mask_path is None:
            raise PCamFormatError(
                f"Expected a mask file {_name(files.split, 'mask')!r} next to "
                f"{str(files.x)!r}, but there is none (real PCam has masks for train only)."
            )
        self.mask_path = mask_path
        with _open_h5(files.x) as fx:
            n_x = _check_dataset(files.x, fx, "x", (PATCH, PATCH, 3), "uint8")
        with _open_h5(files.y) as fy:
            n_y = _check_dataset(files.y, fy, "y", (1, 1, 1), "int")
            try:
                labels = np.asarray(fy["y"][:]).reshape(-1).astype(np.int64)
            except (OSError, RuntimeError) as err:
                raise PCamFormatError(f"Could not read 'y' from {str(files.y)!r}: {err}") from err
        if n_x != n_y:
            raise PCamFormatError(
                f"Expected {str(files.x)!r} and {str(files.y)!r} to hold the same number of "
                f"patches, but got {n_x} and {n_y}."
            )
        if labels.size and not np.isin(labels, (0, 1)).all():
            raise PCamFormatError(
                f"Expected labels 0/1 in {str(files.y)!r}, but got values "
                f"{np.unique(labels)[:5].tolist()}."
            )
        # a mask file next to the split is checked even when it is not read (masks=False):
        # a damaged one means a damaged download, and evaluation will need it
        ignore = " Hint: to ignore it, pass dataclasses.replace(files, mask=None)."
        mask_reader: _RowReader | None = None
        if files.mask is not None:
            try:
                with _open_h5(files.mask) as fm:
                    n_m = _check_dataset(files.mask, fm, "mask", (PATCH, PATCH, 1), "bool")
                if n_m != n_x:
                    raise PCamFormatError(
                        f"Expected {str(files.mask)!r} to hold {n_x} masks like "
                        f"{str(files.x)!r}, but got {n_m}."
                    )
                mask_reader = _RowReader(files.mask, "mask")
            except PCamFormatError as err:
                if mask_path is not None:
                    raise
                raise PCamFormatError(str(err) + ignore) from err
        if files.meta is not None:
            _check_meta(files.meta, n_x)
        self.n_total = n_x
        if indices is None:
            self.indices: np.ndarray | None = None
            self.labels = torch.from_numpy(labels)
        else:
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
            if idx.size and (idx.min() < 0 or idx.max() >= n_x):
                raise ValueError(
                    f"Expected `indices` in [0, {n_x - 1}], but got values in "
                    f"[{idx.min()}, {idx.max()}]."
                )
            self.indices = idx
            self.labels = torch.from_numpy(labels[idx])
        self._readers = {"x": _RowReader(files.x, "x")}
        if mask_path is not None and mask_reader is not None:
            self._readers["mask"] = mask_reader

    @property
    def has_masks(self) -> bool:
        """Whether batches carry a ``"mask"`` entry."""
        return self.mask_path is not None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitems__(self, items: Sequence[int]) -> dict[str, torch.Tensor]:
        """Read a batch of items with one sorted h5py read per file.

        Args:
            items: item indices ``(B,)`` in any order, repeats allowed.

        Returns:
            ``image`` uint8 ``(B, 96, 96, 3)``, ``label`` int64 ``(B,)``, ``index``
            int64 ``(B,)`` (patch indices into the file) and, when the split has
            masks, ``mask`` bool ``(B, 96, 96)``.
        """
        pos = np.asarray(items, dtype=np.int64).reshape(-1)
        if pos.size and (pos.min() < -len(self) or pos.max() >= len(self)):
            raise IndexError(f"Index out of range for a dataset of {len(self)} patches.")
        pos = pos % max(len(self), 1)
        idx = pos if self.indices is None else self.indices[pos]
        uniq, inverse = np.unique(idx, return_inverse=True)
        images = self._readers["x"].read(uniq)
        out = {
            "image": torch.from_numpy(images if _is_identity(inverse) else images[inverse]),
            "label": self.labels[torch.from_numpy(pos)],
            "index": torch.from_numpy(idx.copy()),
        }
        if "mask" in self._readers:
            m = self._readers["mask"].read(uniq)[inverse, ..., 0]
            out["mask"] = torch.from_numpy(m.astype(np.bool_, copy=False))
        return out

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        batch = self.__getitems__([item])
        return {k: v[0] for k, v in batch.items()}


def _is_identity(inverse: np.ndarray) -> bool:
    return bool((inverse == np.arange(inverse.size)).all())


class _RowReader:
    """Random row access to one HDF5 dataset, bypassing h5py's slow point selections.

    For an unfiltered dataset (contiguous, or chunked without compression:
    what PCam's files hold) the byte offset of every row is known from the
    dataset's offset or its chunk table (:meth:`h5py.h5d.DatasetID.chunk_iter`),
    so rows are copied straight out of a read-only :class:`numpy.memmap` of the
    file. Compressed chunks fall back to h5py slice reads, one per touched chunk.
    The offset table is built once and travels to DataLoader workers; the
    memmap and h5py handles are opened lazily in each process.
    """

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key
        size = path.stat().st_size
        with _open_h5(path) as fh:
            ds = fh[key]
            self.shape: tuple[int, ...] = tuple(ds.shape)
            self.dtype = np.dtype(ds.dtype)
            self.chunk_rows: int | None = ds.chunks[0] if ds.chunks is not None else None
            filtered = bool(ds.compression or ds.shuffle or ds.fletcher32 or ds.scaleoffset)
            self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
            self.base: int | None = None
            self.chunk_offsets: np.ndarray | None = None
            try:
                end = self._layout(ds, filtered)
            except (OSError, RuntimeError, ValueError) as err:  # a damaged chunk index
                raise PCamFormatError(
                    f"Could not read the chunk layout of {key!r} in {str(path)!r} ({err}): "
                    "the file is damaged."
                ) from err
            if end > size:
                raise PCamFormatError(
                    f"Expected {str(path)!r} to hold {self.shape[0]} rows of {key!r} "
                    f"({end} bytes), but the file has only {size} bytes: it is truncated."
                )
            self.direct = self.base is not None or self.chunk_offsets is not None
            self._probe(ds)
        self._pid: int | None = None
        self._mm: np.ndarray | None = None
        self._ds: Any = None

    def _layout(self, ds: Any, filtered: bool) -> int:
        """Fill in the direct-read offsets where they apply; return the data's end in bytes."""
        n = self.shape[0]
        if n == 0:
            return 0
        if self.chunk_rows is None:
            offset = ds.id.get_offset()  # None for a compact or unallocated dataset
            if offset is None:
                return 0
            if self.dtype.itemsize == 1:
                self.base = int(offset)
            return int(offset) + n * self.row_bytes
        if not hasattr(ds.id, "chunk_iter"):  # h5py < 3.8: no cheap chunk table
            return 0
        rows = self.chunk_rows
        offs = np.full(-(-n // rows), -1, dtype=np.int64)
        ends = np.zeros_like(offs)

        def visit(info: Any) -> None:
            k = info.chunk_offset[0] // rows
            offs[k], ends[k] = info.byte_offset, info.byte_offset + info.size

        ds.id.chunk_iter(visit)
        if not filtered and self.dtype.itemsize == 1:
            # every chunk of rows * row_bytes stored whole: the direct path
            chunk_bytes = rows * self.row_bytes
            if (offs >= 0).all() and bool((ends - offs == chunk_bytes).all()):
                self.chunk_offsets = offs
        return int(ends.max())

    def _probe(self, ds: Any) -> None:
        """Decode the first and last rows through h5py; on the direct path compare the bytes."""
        n = self.shape[0]
        if n == 0:
            return
        rows = np.unique(np.array([0, n - 1]))
        try:
            ref = np.stack([np.asarray(ds[int(r)]) for r in rows])
        except (OSError, RuntimeError, ValueError) as err:
            raise PCamFormatError(
                f"Could not decode rows of {self.key!r} in {str(self.path)!r} ({err}): the "
                "file is damaged or truncated."
            ) from err
        if self.direct:
            mm = np.memmap(self.path, dtype=np.uint8, mode="r")
            got = np.stack(
                [np.asarray(mm[p : p + self.row_bytes]) for p in self._positions(rows).tolist()]
            )
            del mm
            if not np.array_equal(got.reshape(-1), ref.reshape(-1).view(np.uint8)):
                raise PCamFormatError(
                    f"The chunk table of {self.key!r} in {str(self.path)!r} does not match its "
                    "data: the file is damaged."
                )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pid"], state["_mm"], state["_ds"] = None, None, None
        return state

    def _positions(self, rows: np.ndarray) -> np.ndarray:
        if self.base is not None:
            return self.base + rows * self.row_bytes
        offsets = cast(np.ndarray, self.chunk_offsets)
        c = cast(int, self.chunk_rows)
        return offsets[rows // c] + (rows % c) * self.row_bytes

    def _open(self) -> None:
        pid = os.getpid()
        if self._pid != pid:
            if self.direct:
                self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
            else:
                self._ds = _open_h5(self.path)[self.key]
            self._pid = pid

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (sorted, unique) as an array ``(len(rows), *shape[1:])``."""
        self._open()
        out = np.empty((rows.size, *self.shape[1:]), dtype=self.dtype)
        if rows.size == 0:
            return out
        if self.direct:
            mm, rb = cast(np.ndarray, self._mm), self.row_bytes
            flat = out.reshape(rows.size, -1).view(np.uint8)
            for k, pos in enumerate(self._positions(rows).tolist()):
                flat[k] = mm[pos : pos + rb]
            return out
        # compressed chunks: one h5py slice per touched chunk
        c = self.chunk_rows or self.shape[0]
        group = rows // c
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        ends = np.r_[starts[1:], rows.size]
        for s, e in zip(starts.tolist(), ends.tolist()):
            lo, hi = int(rows[s]), int(rows[e - 1])
            try:
                out[s:e] = np.asarray(self._ds[lo : hi + 1])[rows[s:e] - lo]
            except (OSError, RuntimeError) as err:  # a chunk that does not decode
                raise PCamFormatError(
                    f"Could not read rows {lo}..{hi} of {self.key!r} from {str(self.path)!r} "
                    f"({err}): the file is damaged."
                ) from err
        return out


class PCamBatchSampler(Sampler[list[int]]):
    """Batches of indices: shuffled or class-balanced, per-epoch seeds, DDP shards.

    Every rank draws the same global order from ``(seed, epoch)`` and takes
    every ``world_size``-th index of each global batch, so ``world_size``
    processes with batch ``B / world_size`` each see exactly the batches one
    process with batch ``B`` would see. With ``balanced=True`` each epoch draws
    ``len(labels)`` indices with replacement, half from each class. Call
    :meth:`set_epoch` before each epoch.

    Args:
        labels: the labels ``(N,)`` (0/1).
        batch_size: the global batch size (over all ranks).
        shuffle: shuffle each epoch (else sequential order).
        balanced: draw classes equally often (with replacement).
        drop_last: drop a last incomplete global batch.
        seed: the base seed.
        rank: this process's rank.
        world_size: the number of processes.

    Raises:
        ValueError: if ``batch_size`` is not a multiple of ``world_size`` or
            ``rank`` is out of range, or ``balanced`` with a class missing.

    Example:
        >>> s = PCamBatchSampler(torch.tensor([0, 1, 0, 1, 0, 1]), batch_size=4, shuffle=False)
        >>> list(s)
        [[0, 1, 2, 3], [4, 5]]
    """

    def __init__(
        self,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        balanced: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        check_positive_int(batch_size, "batch_size")
        check_positive_int(world_size, "world_size")
        if batch_size % world_size:
            raise ValueError(
                f"Expected `batch_size` to be a multiple of `world_size` ({world_size}), "
                f"but got {batch_size}."
            )
        if not (isinstance(rank, int) and 0 <= rank < world_size):
            raise ValueError(f"Expected `rank` in [0, {world_size - 1}], but got {rank!r}.")
        self.labels = labels.reshape(-1).long()
        if balanced and not (bool((self.labels == 0).any()) and bool((self.labels == 1).any())):
            raise ValueError("Expected both classes in `labels` for `balanced=True`.")
        self.batch_size = batch_size
        self.shuffle, self.balanced, self.drop_last = shuffle, balanced, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` for the next iteration.

        Args:
            epoch: the epoch number.
        """
        self.epoch = epoch

    def _order(self) -> torch.Tensor:
        n = int(self.labels.numel())
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.balanced:
            weights = torch.where(
                self.labels == 1,
                0.5 / (self.labels == 1).sum(),
                0.5 / (self.labels == 0).sum(),
            ).double()
            return torch.multinomial(weights, n, replacement=True, generator=g)
        if self.shuffle:
            return torch.randperm(n, generator=g)
        return torch.arange(n)

    def __iter__(self) -> Iterator[list[int]]:
        order = self._order()
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            if len(chunk) < self.batch_size and self.drop_last:
                return
            yield chunk[self.rank :: self.world_size].tolist()

    def __len__(self) -> int:
        n = int(self.labels.numel())
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class KagglePCam(Dataset[dict[str, torch.Tensor]]):
    """The Kaggle "Histopathologic Cancer Detection" layout: a CSV and one TIFF per patch.

    ``root/train_labels.csv`` has columns ``id,label``; the image of ``id`` is
    ``root/train/<id>.tif`` (96×96 RGB). Images are read with tifffile (PIL as a
    fallback for TIFF variants tifffile does not handle). There are no masks.

    Args:
        root: the folder holding ``train_labels.csv`` and ``train/``.
        labels_csv: the CSV's name inside ``root``.
        image_dir: the image folder's name inside ``root``.

    Raises:
        PCamFormatError: if the CSV or an image is missing or malformed.

    Example:
        >>> import tempfile
        >>> from camseg_pcam.synthetic_io import write_kaggle
        >>> root = tempfile.mkdtemp()
        >>> write_kaggle(root, n=4, seed=0)
        >>> ds = KagglePCam(root)
        >>> len(ds), ds.__getitems__([0, 3])["image"].shape
        (4, torch.Size([2, 96, 96, 3]))
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        labels_csv: str = "train_labels.csv",
        image_dir: str = "train",
    ) -> None:
        self.root = Path(root)
        csv_path = self.root / labels_csv
        if not csv_path.exists():
            raise PCamFormatError(f"Missing Kaggle label file {str(csv_path)!r}.")
        with open(csv_path, newline="") as fh:
            reader = csv.DictReader(fh)
            if not {"id", "label"} <= set(reader.fieldnames or []):
                raise PCamFormatError(
                    f"Expected columns 'id,label' in {str(csv_path)!r}, but got "
                    f"{reader.fieldnames}."
                )
            rows = list(reader)
        try:
            labels = [int(r["label"]) for r in rows]
        except ValueError as err:
            raise PCamFormatError(f"Could not parse a label in {str(csv_path)!r}: {err}") from err
        if any(v not in (0, 1) for v in labels):
            raise PCamFormatError(f"Expected labels 0/1 in {str(csv_path)!r}.")
        self.ids = [r["id"] for r in rows]
        self.image_dir = self.root / image_dir
        self.labels = torch.tensor(labels, dtype=torch.int64)

    @property
    def has_masks(self) -> bool:
        """Kaggle's layout has no masks."""
        return False

    def __len__(self) -> int:
        return len(self.ids)

    def _read(self, i: int) -> np.ndarray:
        path = self.image_dir / f"{self.ids[i]}.tif"
        img = read_image(path)
        if img.shape != (PATCH, PATCH, 3):
            raise PCamFormatError(
                f"Expected a 96x96 RGB image in {str(path)!r}, but got shape {img.shape}."
            )
        return img

    def __getitems__(self, items: Sequence[int]) -> dict[str, torch.Tensor]:
        """Read a batch of items.

        Args:
            items: item indices ``(B,)``.

        Returns:
            ``image`` uint8 ``(B, 96, 96, 3)``, ``label`` and ``index`` int64 ``(B,)``.
        """
        pos = [int(i) for i in items]
        images = np.stack([self._read(i) for i in pos]) if pos else np.empty((0, 96, 96, 3))
        idx = torch.tensor(pos, dtype=torch.int64)
        return {
            "image": torch.from_numpy(images.astype(np.uint8, copy=False)),
            "label": self.labels[idx],
            "index": idx,
        }

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        batch = self.__getitems__([item])
        return {k: v[0] for k, v in batch.items()}


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a PNG/JPEG/TIFF file as a uint8 RGB array ``(H, W, 3)``.

    TIFFs are read with tifffile, everything else (and TIFFs tifffile rejects)
    with PIL. Grey images are repeated to three channels, an alpha channel is
    dropped, 16-bit images are scaled to 8 bits.

    Args:
        path: the image file.

    Returns:
        ``(H, W, 3)`` uint8.

    Raises:
        PCamFormatError: if the file is missing or cannot be decoded.

    Example:
        >>> import tempfile, os
        >>> from PIL import Image
        >>> p = os.path.join(tempfile.mkdtemp(), "a.png")
        >>> Image.new("RGB", (5, 4), (255, 0, 0)).save(p)
        >>> read_image(p).shape
        (4, 5, 3)
    """
    p = Path(path)
    if not p.exists():
        raise PCamFormatError(f"Missing image file {str(p)!r}.")
    arr: np.ndarray | None = None
    if p.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile

            arr = np.asarray(tifffile.imread(p))
        except Exception:  # any decoder failure: try PIL below
            arr = None
    if arr is None:
        try:
            from PIL import Image

            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
        except Exception as err:  # PIL raises many types
            raise PCamFormatError(f"Could not read image {str(p)!r}: {err}") from err
    if arr.dtype == np.uint16:
        arr = (arr // 257).astype(np.uint8)
    if arr.dtype != np.uint8:
        raise PCamFormatError(f"Expected an 8-bit image in {str(p)!r}, but got {arr.dtype}.")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise PCamFormatError(f"Expected an RGB image in {str(p)!r}, but got shape {arr.shape}.")
    return np.array(arr[..., :3], dtype=np.uint8, order="C", copy=True)
