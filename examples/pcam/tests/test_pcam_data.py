from __future__ import annotations

import gzip
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from camseg_pcam.data import (
    FILE_PREFIX,
    KagglePCam,
    PCamBatchSampler,
    PCamFormatError,
    PCamH5,
    collate_batch,
    find_pcam_files,
    read_image,
    read_meta,
    split_by_slide,
)
from camseg_pcam.synthetic_io import write_kaggle, write_split
from torch.utils.data import DataLoader


def _arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
    y = rng.integers(0, 2, n)
    m = rng.random((n, 96, 96)) > 0.7
    return x, y, m


# ----------------------------------------------------------------- official HDF5 files


@pytest.mark.parametrize("layout", ["contiguous", "chunked", "chunked_1", "compressed"])
def test_pcam_h5_reads_exact_rows_in_requested_order(tmp_path: Path, layout: str) -> None:
    x, y, m = _arrays(40)
    if layout == "compressed":  # gzip-filtered chunks: the h5py fallback path
        write_split(tmp_path, "valid", x, y, masks=m, chunk_rows=8)
        for key, name in (("x", "x"), ("mask", "mask")):
            path = tmp_path / f"{FILE_PREFIX}valid_{name}.h5"
            with h5py.File(path, "r") as fh:
                data = fh[key][:]
            with h5py.File(path, "w") as fh:
                fh.create_dataset(key, data=data, chunks=(8, *data.shape[1:]), compression="gzip")
    else:
        rows = {"contiguous": None, "chunked": 8, "chunked_1": 1}[layout]
        write_split(tmp_path, "valid", x, y, masks=m, chunk_rows=rows)
    ds = PCamH5(find_pcam_files(tmp_path, "valid"))
    assert ds._readers["x"].direct == (layout != "compressed")
    order = [17, 3, 39, 3, 0, 25, 8, 9]
    batch = ds.__getitems__(order)
    np.testing.assert_array_equal(batch["image"].numpy(), x[order])
    np.testing.assert_array_equal(batch["mask"].numpy(), m[order])
    np.testing.assert_array_equal(batch["label"].numpy(), y[order])
    assert batch["index"].tolist() == order
    one = ds[5]
    np.testing.assert_array_equal(one["image"].numpy(), x[5])
    assert int(one["label"]) == y[5]


def test_pcam_h5_subset_indices_and_mask_modes(tmp_path: Path) -> None:
    x, y, m = _arrays(12)
    write_split(tmp_path, "train", x, y, masks=m)
    files = find_pcam_files(tmp_path, "train")
    sub = PCamH5(files, indices=[10, 2, 7])
    assert len(sub) == 3
    batch = sub.__getitems__([0, 2])
    np.testing.assert_array_equal(batch["image"].numpy(), x[[10, 7]])
    assert batch["index"].tolist() == [10, 7]
    assert sub.labels.tolist() == y[[10, 2, 7]].tolist()
    assert "mask" not in PCamH5(files, masks=False).__getitems__([0])
    with pytest.raises(ValueError, match="Expected `indices` in"):
        PCamH5(files, indices=[0, 12])
    with pytest.raises(IndexError, match="out of range"):
        sub.__getitems__([3])


def test_pcam_h5_workers_read_the_same_batches(pcam_root: Path) -> None:
    ds = PCamH5(find_pcam_files(pcam_root, "train"))
    sampler = PCamBatchSampler(ds.labels, 8, seed=1)
    serial = [b["index"] for b in DataLoader(ds, batch_sampler=sampler, collate_fn=collate_batch)]
    parallel = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_batch, num_workers=2)
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a, b["index"])
        np.testing.assert_array_equal(
            b["image"].numpy(), ds.__getitems__(a.tolist())["image"].numpy()
        )


def test_find_pcam_files_gzip_and_torchvision_layout(tmp_path: Path) -> None:
    x, y, _ = _arrays(6)
    tv = tmp_path / "pcam"  # torchvision's PCAM folder
    paths = write_split(tv, "test", x, y, gzip_wrap=True)
    assert all(p.suffix == ".gz" for p in paths)
    cache = tmp_path / "cache"
    files = find_pcam_files(tmp_path, "test", cache_dir=cache)
    assert files.x.parent == cache and files.mask is None and files.meta is None
    np.testing.assert_array_equal(PCamH5(files).__getitems__([4, 1])["image"].numpy(), x[[4, 1]])
    mtime = files.x.stat().st_mtime_ns
    assert find_pcam_files(tmp_path, "test", cache_dir=cache).x.stat().st_mtime_ns == mtime
    # without cache_dir the copy goes next to the archive
    files2 = find_pcam_files(tmp_path, "test")
    assert files2.x == tv / f"{FILE_PREFIX}test_x.h5"


def test_read_meta_and_split_by_slide(pcam_root: Path) -> None:
    files = find_pcam_files(pcam_root, "train")
    meta = read_meta(files.meta)
    ds = PCamH5(files)
    assert meta["center_tumor_patch"].tolist() == ds.labels.tolist()
    assert (meta["tumor_patch"] >= meta["center_tumor_patch"]).all()
    kept, held = split_by_slide(meta["wsi"], fraction=0.25, seed=0)
    assert set(meta["wsi"][kept]).isdisjoint(set(meta["wsi"][held]))
    assert sorted(np.r_[kept, held].tolist()) == list(range(len(ds)))
    assert len(held) >= 0.25 * len(ds)
    # every slide has 8 patches: the least whole number of slides above 25 % is 2 of 6
    assert len(held) == 16


def test_split_by_slide_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="`fraction` to lie in"):
        split_by_slide(["a", "b"], fraction=1.0)
    with pytest.raises(ValueError, match="at least 2 slides"):
        split_by_slide(["a", "a"], fraction=0.5)


# ----------------------------------------------------------------- batch sampler


def test_batch_sampler_shards_give_the_global_batches() -> None:
    labels = torch.tensor([0, 1] * 10)
    full = list(PCamBatchSampler(labels, 8, seed=4, drop_last=True))
    r0 = list(PCamBatchSampler(labels, 8, seed=4, drop_last=True, rank=0, world_size=2))
    r1 = list(PCamBatchSampler(labels, 8, seed=4, drop_last=True, rank=1, world_size=2))
    assert len(full) == 2
    for f, a, b in zip(full, r0, r1, strict=True):
        assert sorted(a + b) == sorted(f) and len(a) == len(b) == 4


def test_batch_sampler_epochs_and_balance() -> None:
    labels = torch.tensor([0] * 90 + [1] * 10)
    s = PCamBatchSampler(labels, 1000, balanced=True, seed=0)
    (batch,) = list(s)
    share = labels[batch].float().mean().item()
    assert 0.4 < share < 0.6  # 50 % expected, 10 % without balancing
    a = list(PCamBatchSampler(labels, 10, seed=0))
    s2 = PCamBatchSampler(labels, 10, seed=0)
    assert list(s2) == a
    s2.set_epoch(1)
    assert list(s2) != a
    assert sorted(i for b in a for i in b) == list(range(100))


def test_batch_sampler_rejects_bad_arguments() -> None:
    labels = torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="multiple of `world_size`"):
        PCamBatchSampler(labels, 3, world_size=2)
    with pytest.raises(ValueError, match="`rank` in"):
        PCamBatchSampler(labels, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="both classes"):
        PCamBatchSampler(torch.zeros(4), 2, balanced=True)
    with pytest.raises(TypeError, match="`batch_size` to be an int"):
        PCamBatchSampler(labels, 2.0)  # type: ignore[arg-type]


# ----------------------------------------------------------------- bad files


def _copy(pcam_root: Path, tmp_path: Path, split: str = "valid") -> Path:
    for p in pcam_root.glob(f"{FILE_PREFIX}{split}_*"):
        shutil.copy(p, tmp_path / p.name)
    return tmp_path


def _rewrite(path: Path, key: str, data: np.ndarray) -> None:
    with h5py.File(path, "w") as fh:
        fh.create_dataset(key, data=data)


def test_missing_files_name_the_file(tmp_path: Path, pcam_root: Path) -> None:
    with pytest.raises(PCamFormatError, match=r"Missing PCam file .*split_train_x\.h5"):
        find_pcam_files(tmp_path, "train")
    root = _copy(pcam_root, tmp_path)
    (root / f"{FILE_PREFIX}valid_y.h5").unlink()
    with pytest.raises(PCamFormatError, match=r"Missing PCam file .*valid_y\.h5"):
        find_pcam_files(root, "valid")
    with pytest.raises(ValueError, match="Expected `split` to be one of"):
        find_pcam_files(root, "validation")  # type: ignore[arg-type]


def test_truncated_h5_names_the_file(tmp_path: Path, pcam_root: Path) -> None:
    root = _copy(pcam_root, tmp_path)
    x = root / f"{FILE_PREFIX}valid_x.h5"
    data = x.read_bytes()
    x.write_bytes(data[: len(data) // 2])
    with pytest.raises(PCamFormatError, match=r"valid_x\.h5.*(truncated|HDF5)"):
        PCamH5(find_pcam_files(root, "valid"))


def test_truncated_payload_is_detected(tmp_path: Path) -> None:
    x, y, _ = _arrays(8)
    write_split(tmp_path, "test", x, y, chunk_rows=None)
    path = tmp_path / f"{FILE_PREFIX}test_x.h5"
    with open(path, "r+b") as fh:  # the header survives, the last rows do not
        fh.truncate(path.stat().st_size - 96 * 96 * 3 * 2)
    with pytest.raises(PCamFormatError, match=r"test_x\.h5.*(truncated|HDF5)"):
        PCamH5(find_pcam_files(tmp_path, "test"))


def test_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    x, y, _ = _arrays(6)
    write_split(tmp_path, "test", x, y, gzip_wrap=True)
    gz = tmp_path / f"{FILE_PREFIX}test_x.h5.gz"
    data = gz.read_bytes()
    gz.write_bytes(data[: len(data) // 2])
    with pytest.raises(PCamFormatError, match=r"decompress .*test_x\.h5\.gz.*truncated"):
        find_pcam_files(tmp_path, "test")
    assert not (tmp_path / f"{FILE_PREFIX}test_x.h5").exists()  # no half-written cache


@pytest.mark.parametrize(
    ("which", "key", "data", "match"),
    [
        ("x", "images", np.zeros((24, 96, 96, 3), np.uint8), r"key 'x' in .*valid_x\.h5"),
        ("x", "x", np.zeros((24, 96, 96, 3), np.float32), r"'x' in .*valid_x\.h5.*dtype uint8"),
        ("x", "x", np.zeros((24, 64, 64, 3), np.uint8), r"'x' in .*valid_x\.h5.*shape"),
        (
            "x",
            "x",
            np.zeros((23, 96, 96, 3), np.uint8),
            r"valid_x\.h5.*valid_y\.h5.*same number of patches.*23 and 24",
        ),
        ("y", "y", np.zeros((24, 1), np.uint8), r"'y' in .*valid_y\.h5.*shape"),
        ("y", "y", np.zeros((24, 1, 1, 1), np.float32), r"'y' in .*valid_y\.h5.*integer"),
        ("y", "y", np.full((24, 1, 1, 1), 2, np.uint8), r"labels 0/1 in .*valid_y\.h5"),
        ("mask", "mask", np.zeros((20, 96, 96, 1), bool), r"valid_mask\.h5.*24 masks"),
        ("mask", "mask", np.zeros((24, 96, 96, 1), np.float32), r"valid_mask\.h5.*bool"),
    ],
)
def test_malformed_files_name_the_file(
    tmp_path: Path, pcam_root: Path, which: str, key: str, data: np.ndarray, match: str
) -> None:
    root = _copy(pcam_root, tmp_path)
    _rewrite(root / f"{FILE_PREFIX}valid_{which}.h5", key, data)
    with pytest.raises(PCamFormatError, match=match):
        PCamH5(find_pcam_files(root, "valid"))


def test_masks_required_but_absent(tmp_path: Path) -> None:
    x, y, _ = _arrays(4)
    write_split(tmp_path, "test", x, y)
    with pytest.raises(PCamFormatError, match=r"mask file .*test_mask\.h5"):
        PCamH5(find_pcam_files(tmp_path, "test"), masks=True)
    with pytest.raises(ValueError, match="Expected `masks` to be one of"):
        PCamH5(find_pcam_files(tmp_path, "test"), masks="yes")  # type: ignore[arg-type]


def test_meta_missing_column_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "meta.csv"
    p.write_text("coord_y,coord_x,tumor_patch,wsi\n1,2,0,a\n")
    with pytest.raises(PCamFormatError, match=r"meta\.csv.*\['center_tumor_patch'\]"):
        read_meta(p)
    p.write_text("coord_y,coord_x,tumor_patch,center_tumor_patch,wsi\n1,x,0,0,a\n")
    with pytest.raises(PCamFormatError, match=r"column 'coord_x' of .*meta\.csv"):
        read_meta(p)
    with pytest.raises(PCamFormatError, match=r"Missing PCam meta file .*nope\.csv"):
        read_meta(tmp_path / "nope.csv")


# ----------------------------------------------------------------- Kaggle layout, images


def test_kaggle_reader(tmp_path: Path) -> None:
    write_kaggle(tmp_path, n=5, seed=2)
    ds = KagglePCam(tmp_path)
    from camseg.synthetic import make_patches

    images, labels, _ = make_patches(5, seed=2)
    batch = ds.__getitems__([4, 0])
    np.testing.assert_array_equal(batch["image"].numpy(), images[[4, 0]].numpy())
    assert batch["label"].tolist() == labels[[4, 0]].tolist()
    assert not ds.has_masks and len(ds) == 5


def test_kaggle_bad_files(tmp_path: Path) -> None:
    with pytest.raises(PCamFormatError, match=r"Missing Kaggle label file .*train_labels\.csv"):
        KagglePCam(tmp_path)
    write_kaggle(tmp_path, n=2)
    csv_path = tmp_path / "train_labels.csv"
    header, first, _ = csv_path.read_text().splitlines()
    csv_path.write_text(f"{header}\n{first}\nmissing_id,1\n")
    ds = KagglePCam(tmp_path)
    with pytest.raises(PCamFormatError, match=r"Missing image file .*missing_id\.tif"):
        ds.__getitems__([1])
    csv_path.write_text("name,label\na,1\n")
    with pytest.raises(PCamFormatError, match=r"'id,label' in .*train_labels\.csv"):
        KagglePCam(tmp_path)
    csv_path.write_text(f"{header}\n{first.rsplit(',', 1)[0]},3\n")
    with pytest.raises(PCamFormatError, match=r"labels 0/1 in .*train_labels\.csv"):
        KagglePCam(tmp_path)


def test_kaggle_wrong_image_size(tmp_path: Path) -> None:
    import tifffile

    write_kaggle(tmp_path, n=1)
    ident = (tmp_path / "train_labels.csv").read_text().splitlines()[1].split(",")[0]
    tifffile.imwrite(tmp_path / "train" / f"{ident}.tif", np.zeros((50, 50, 3), np.uint8))
    with pytest.raises(PCamFormatError, match=r"96x96 RGB image in .*\.tif.*\(50, 50, 3\)"):
        KagglePCam(tmp_path).__getitems__([0])


def test_read_image_formats(tmp_path: Path) -> None:
    import tifffile
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "b.tif", rgb)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    rgba = np.concatenate([rgb, np.full((7, 5, 1), 255, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(tmp_path / "c.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "b.tif"), rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "c.png"), rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png"), np.repeat(rgb[..., :1], 3, -1))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(PCamFormatError, match=r"Could not read image .*bad\.png"):
        read_image(tmp_path / "bad.png")


def test_gzip_wrapped_file_is_plain_gzip(tmp_path: Path) -> None:
    x, y, _ = _arrays(2)
    write_split(tmp_path, "test", x, y, gzip_wrap=True)
    raw = gzip.decompress((tmp_path / f"{FILE_PREFIX}test_y.h5.gz").read_bytes())
    assert raw[:8] == b"\x89HDF\r\n\x1a\n"  # the HDF5 signature
    assert not any(n.endswith(".part") for n in os.listdir(tmp_path))


# ----------------------------------------------------------------- checks at open


def test_read_meta_reads_the_official_layout(tmp_path: Path) -> None:
    p = tmp_path / "meta.csv"  # pandas' index column and booleans, as the PCam files have
    p.write_text(
        ",coord_y,coord_x,tumor_patch,center_tumor_patch,wsi\n"
        "0,47360,44928,False,False,camelyon16_train_normal_042\n"
        "1,96,192,True,False,camelyon16_train_tumor_001\n"
        "2,0,0,True,True,camelyon16_train_tumor_001\n"
    )
    meta = read_meta(p, num_patches=3)
    assert meta["tumor_patch"].tolist() == [0, 1, 1]
    assert meta["center_tumor_patch"].tolist() == [0, 0, 1]
    assert meta["coord_y"].tolist() == [47360, 96, 0]
    assert meta["wsi"].tolist()[1] == "camelyon16_train_tumor_001"
    with pytest.raises(PCamFormatError, match=r"Expected 4 rows in .*meta\.csv.*got 3"):
        read_meta(p, num_patches=4)


def test_synthetic_meta_has_the_official_layout(pcam_root: Path) -> None:
    path = find_pcam_files(pcam_root, "valid").meta
    assert path is not None
    header, first = path.read_text().splitlines()[:2]
    assert header == ",coord_y,coord_x,tumor_patch,center_tumor_patch,wsi"
    assert first.startswith("0,") and ("True" in first or "False" in first)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: "\n".join(t.splitlines()[:-3]) + "\n", r"Expected 24 rows in .*valid_meta\.csv"),
        (lambda t: t[: t.rindex(",")] + "\n", r"6 values on line 25 of .*valid_meta\.csv"),
        (lambda t: t.replace("coord_x", "coordx", 1), r"valid_meta\.csv.*\['coord_x'\]"),
        (lambda t: t.replace(",True,", ",maybe,", 1), r"'tumor_patch' of .*valid_meta\.csv"),
        (
            lambda t: re.sub(r",synthetic_valid_\w+\n", ",\n", t, count=1),
            r"slide name .* of .*valid_meta\.csv' on line 2",
        ),
    ],
)
def test_a_bad_meta_csv_fails_at_open(
    tmp_path: Path, pcam_root: Path, edit: object, match: str
) -> None:
    root = _copy(pcam_root, tmp_path)
    meta = root / f"{FILE_PREFIX}valid_meta.csv"
    text = meta.read_text()
    new = edit(text)  # type: ignore[operator]
    assert new != text
    meta.write_text(new)
    with pytest.raises(PCamFormatError, match=match):
        PCamH5(find_pcam_files(root, "valid"), masks=False)


def test_a_truncated_mask_file_fails_at_open_even_unread(tmp_path: Path, pcam_root: Path) -> None:
    root = _copy(pcam_root, tmp_path)
    mask = root / f"{FILE_PREFIX}valid_mask.h5"
    with open(mask, "r+b") as fh:  # the header survives, the last masks do not
        fh.truncate(mask.stat().st_size - 96 * 96 * 4)
    files = find_pcam_files(root, "valid")
    with pytest.raises(PCamFormatError, match=r"valid_mask\.h5.*truncated.*dataclasses\.replace"):
        PCamH5(files, masks=False)
    with pytest.raises(PCamFormatError, match=r"valid_mask\.h5.*truncated"):
        PCamH5(files)
    import dataclasses

    assert len(PCamH5(dataclasses.replace(files, mask=None))) == 24  # explicitly ignored


def test_a_short_mask_file_fails_at_open_even_unread(tmp_path: Path, pcam_root: Path) -> None:
    root = _copy(pcam_root, tmp_path)
    _rewrite(root / f"{FILE_PREFIX}valid_mask.h5", "mask", np.zeros((20, 96, 96, 1), bool))
    with pytest.raises(PCamFormatError, match=r"valid_mask\.h5.*24 masks.*got 20"):
        PCamH5(find_pcam_files(root, "valid"), masks=False)


def _compressed(tmp_path: Path, n: int = 32, rows: int = 8) -> tuple[Path, np.ndarray]:
    x, y, _ = _arrays(n, seed=7)
    write_split(tmp_path, "test", x, y)
    path = tmp_path / f"{FILE_PREFIX}test_x.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("x", data=x, chunks=(rows, 96, 96, 3), compression="gzip")
    return path, x


def _chunk(path: Path, k: int) -> tuple[int, int]:
    with h5py.File(path, "r") as fh:
        info = fh["x"].id.get_chunk_info(k)
    return int(info.byte_offset), int(info.size)


def test_a_truncated_compressed_file_fails_at_open(tmp_path: Path) -> None:
    path, _ = _compressed(tmp_path)
    offset, size = _chunk(path, 3)
    with open(path, "r+b") as fh:
        fh.truncate(offset + size // 2)
    with pytest.raises(PCamFormatError, match=r"test_x\.h5.*(truncated|damaged)"):
        PCamH5(find_pcam_files(tmp_path, "test"))


@pytest.mark.parametrize("chunk", [0, 1])
def test_scrambled_compressed_patches_name_the_file(tmp_path: Path, chunk: int) -> None:
    path, x = _compressed(tmp_path)
    offset, size = _chunk(path, chunk)
    raw = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    raw[offset + 16 : offset + size - 16] = rng.integers(0, 256, size - 32, np.uint8).tobytes()
    path.write_bytes(bytes(raw))
    files = find_pcam_files(tmp_path, "test")
    if chunk == 0:  # the first and last rows are decoded at open
        with pytest.raises(PCamFormatError, match=r"decode rows of 'x' in .*test_x\.h5"):
            PCamH5(files)
        return
    ds = PCamH5(files)  # a middle chunk is only read when its patches are
    np.testing.assert_array_equal(ds.__getitems__([0, 31])["image"].numpy(), x[[0, 31]])
    with pytest.raises(PCamFormatError, match=r"rows 8\.\.9 of 'x' from .*test_x\.h5.*damaged"):
        ds.__getitems__([8, 9])


def test_a_scrambled_header_names_the_file(tmp_path: Path, pcam_root: Path) -> None:
    root = _copy(pcam_root, tmp_path)
    x = root / f"{FILE_PREFIX}valid_x.h5"
    raw = bytearray(x.read_bytes())
    raw[:512] = np.random.default_rng(1).integers(0, 256, 512, np.uint8).tobytes()
    x.write_bytes(bytes(raw))
    with pytest.raises(PCamFormatError, match=r"valid_x\.h5.*(HDF5|damaged)"):
        PCamH5(find_pcam_files(root, "valid"))


@pytest.mark.parametrize(
    ("images", "labels", "masks", "error", "match"),
    [
        (np.zeros((2, 96, 96, 3), np.float32), [0, 1], None, TypeError, "`images` to be uint8"),
        (np.zeros((2, 96, 96), np.uint8), [0, 1], None, ValueError, r"\(N, H, W, 3\)"),
        (np.zeros((2, 96, 96, 3), np.uint8), [0], None, ValueError, "`labels` to hold 2"),
        (np.zeros((2, 96, 96, 3), np.uint8), [0, 2], None, ValueError, "`labels` to be 0/1"),
        (np.zeros((2, 96, 96, 3), np.uint8), [0.0, 1.0], None, TypeError, "integer or bool"),
        (
            np.zeros((2, 96, 96, 3), np.uint8),
            [0, 1],
            np.zeros((2, 64, 64), bool),
            ValueError,
            r"`masks` to have shape \(2, 96, 96\)",
        ),
        (
            np.zeros((2, 96, 96, 3), np.uint8),
            [0, 1],
            np.full((2, 96, 96), 0.5),
            TypeError,
            "`masks` to be bool",
        ),
    ],
)
def test_write_split_casts_nothing_silently(
    tmp_path: Path,
    images: np.ndarray,
    labels: list,
    masks: np.ndarray | None,
    error: type,
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        write_split(tmp_path, "test", images, np.asarray(labels), masks=masks)
    assert list(tmp_path.iterdir()) == []
