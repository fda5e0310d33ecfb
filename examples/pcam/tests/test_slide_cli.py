"""camseg-slide end to end: synthetic slides written as real TIFFs, a tiny trained checkpoint."""

from __future__ import annotations

import csv
import dataclasses
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from camseg_pcam.models import build_model
from camseg_pcam.slide_cli import main, read_patient_table
from camseg_pcam.train import TrainConfig

from camseg.slide import (
    annotation_mask,
    make_slide,
    open_slide,
    read_annotations,
    write_geojson,
)
from camseg.synthetic import make_patches, to_tensor_images

MPP = 0.97


def _write_slide_tiff(path: Path, image: np.ndarray, mpp: float = MPP) -> None:
    """A 2-level pyramidal TIFF (main IFD chain) with its resolution, as scanners write."""
    levels = [image, np.ascontiguousarray(image[::2, ::2])]
    with tifffile.TiffWriter(path) as tw:
        for k, lvl in enumerate(levels):
            per_cm = 1e4 / (mpp * 2**k)
            tw.write(
                lvl,
                tile=(64, 64),
                photometric="rgb",
                compression="zlib",
                subfiletype=1 if k else 0,
                resolution=(per_cm, per_cm),
                resolutionunit="CENTIMETER",
                metadata=None,
            )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A checkpoint of a tiny model trained for a few seconds on synthetic patches."""
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("run")
    data = make_patches(256, size=96, seed=11)
    x = to_tensor_images(data.images)  # (B, 3, 96, 96) float in [0, 1]
    y = data.labels.long()
    cfg = TrainConfig(data="-", out=str(run), model="small", width=4, norm="group")
    model = build_model("small", width=4, norm="group")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        idx = torch.randint(0, len(x), (32,))
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save({"config": dataclasses.asdict(cfg), "model": model.state_dict()}, run / "best.pt")
    return run


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> tuple[Path, Path, list[Path]]:
    """Two node slides (one with a tumour, one without), their ASAP-free ground truth as
    GeoJSON, and a CAMELYON17-style patient table."""
    root = tmp_path_factory.mktemp("slides")
    ann = root / "annotations"
    ann.mkdir()
    paths = []
    for k, tumours in enumerate([1, 0]):
        s = make_slide(height=384, width=576, tumors=tumours, seed=5 + k, pool=16)
        path = root / f"patient_000_node_{k}.tif"
        _write_slide_tiff(path, s.image, s.mpp)
        if tumours:
            write_geojson(ann / f"{path.stem}.geojson", s.tumor)  # level-0 ground truth
        paths.append(path)
    table = root / "stages.csv"
    table.write_text(
        "patient,stage\npatient_000.zip,pN1\n"
        "patient_000_node_0.tif,macro\npatient_000_node_1.tif,negative\n"
    )
    return ann, table, paths


def _args(run: Path, out: Path, paths, *extra: str) -> list[str]:
    return [
        *map(str, paths),
        "--run",
        str(run),
        "--out",
        str(out),
        "--tile",
        "96",
        "--stride",
        "48",
        "--output-downsample",
        "4",
        "--batch-size",
        "16",
        "--no-progress",
        *extra,
    ]


@pytest.mark.slow
def test_end_to_end(run_dir, slides, tmp_path, capsys) -> None:
    ann, table, paths = slides
    out = tmp_path / "out"
    code = main(_args(run_dir, out, paths, "--annotations", str(ann), "--patients", str(table)))
    assert code == 0, capsys.readouterr().err
    assert "results in" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "slides.csv").read_text().splitlines()))
    assert [r["slide"] for r in rows] == [p.stem for p in paths]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["slides"] == 2 and summary["patients"] == 1
    assert -1.0 <= summary["kappa"] <= 1.0
    prow = next(csv.DictReader((out / "patients.csv").read_text().splitlines()))
    assert prow["patient"] == "patient_000" and prow["true_stage"] == "pN1"
    assert prow["nodes"] == "2"
    for p in paths:
        stem = p.stem
        data = json.loads((out / f"{stem}.json").read_text())
        assert data["level"] == 0 and data["tiles"] > 0
        assert data["node_class"] in ("negative", "itc", "micro", "macro")
        assert 0.0 <= data["iou"] <= 1.0 and 0.0 <= data["dice"] <= 1.0
        maps = torch.load(out / f"{stem}_maps.pt", weights_only=False)
        assert maps.cam.shape == (384 // 4, 576 // 4) and maps.downsample == 4.0
        # the GeoJSON holds exactly the thresholded mask, in level-0 coordinates
        mask = (maps.cam >= 0.5) & (maps.weight > 0)
        back = annotation_mask(
            read_annotations(out / f"{stem}.geojson", slide_size=(576, 384)),
            size=(144, 96),
            downsample=4.0,
        )
        assert torch.equal(back, mask)
        # the overlay is the heatmap, with the heatmap's microns per pixel
        with open_slide(out / f"{stem}_heatmap.tif") as overlay:
            assert overlay.dimensions(0) == (144, 96)
            assert overlay.mpp == pytest.approx(MPP * 4)
            np.testing.assert_array_equal(
                overlay.read(0, 0, 0, 144, 96)[..., 0],
                np.round(maps.cam.clamp(0, 1).double().numpy() * 255).astype(np.uint8),
            )
    tumour, normal = (json.loads((out / f"{p.stem}.json").read_text()) for p in paths)
    # a 0.37 x 0.56 mm slide: its tumour is small (ITC or micro), the other node negative
    assert tumour["true_node_class"] in ("itc", "micro") and normal["true_node_class"] == "negative"
    assert normal["annotation"] is None and normal["auc"] is None  # no ROC without tumour
    # a seconds-trained model is no detector: check the numbers are defined, not their quality
    assert 0.0 <= tumour["auc"] <= 1.0, tumour
    assert 0.0 <= tumour["youden_threshold"] <= 1.0
    assert not list(out.glob(".*"))  # no temporary files left


def _worker(rank: int, port: int, args: list[str]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        assert main(args) == 0
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_gloo_processes_shard_the_slides(run_dir, slides, tmp_path) -> None:
    ann, _, paths = slides
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(_args(run_dir, one, paths, "--annotations", str(ann))) == 0
    mp.spawn(
        _worker,
        args=(_free_port(), _args(run_dir, two, paths, "--annotations", str(ann))),
        nprocs=2,
        join=True,
    )
    assert sorted(p.name for p in (two / "shards").glob("shard-*")) == [
        "shard-00000-of-00002.pt",
        "shard-00001-of-00002.pt",
    ]
    a = list(csv.DictReader((one / "slides.csv").read_text().splitlines()))
    b = list(csv.DictReader((two / "slides.csv").read_text().splitlines()))
    keys = ["slide", "tiles", "tumour_pixels", "node_class", "iou", "dice", "auc"]
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    for p in paths:
        ma = torch.load(one / f"{p.stem}_maps.pt", weights_only=False)
        mb = torch.load(two / f"{p.stem}_maps.pt", weights_only=False)
        torch.testing.assert_close(ma.cam, mb.cam)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tile", "0"], "--tile: expected an int >= 1"),
        (["--threshold", "high"], "--threshold: expected 'otsu' or a number"),
        (["--device", "gpu9"], "--device 'gpu9' is not a device"),
        (["--level", "5"], "--level 5 does not exist"),
        (["--output-downsample", "5"], "--output-downsample 5 must divide"),
        (["--annotations", "/no/such/dir"], "is not a folder"),
        (["--patients", "/no/such.csv"], "no such patient table"),
        (["--checkpoint", "missing.pt"], "no checkpoint"),
    ],
)
def test_usage_errors_are_one_line(run_dir, slides, tmp_path, capsys, extra, message) -> None:
    _, _, paths = slides
    with pytest.raises(SystemExit) if extra[0] in ("--tile", "--threshold") else _no_raise():
        code = main(_args(run_dir, tmp_path / "o", paths[:1], *extra))
        assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


class _no_raise:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_missing_and_corrupt_slides(run_dir, tmp_path, capsys) -> None:
    assert main(_args(run_dir, tmp_path / "o", [tmp_path / "nope.svs"])) == 2
    assert "no such slide file" in capsys.readouterr().err
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff at all")
    assert main(_args(run_dir, tmp_path / "o", [junk])) == 2
    err = capsys.readouterr().err
    assert "junk.tif" in err and err.count("\n") == 1
    with pytest.raises(OSError, match="junk.tif"):
        main([*_args(run_dir, tmp_path / "o", [junk]), "--debug"])


def test_read_patient_table_layouts(tmp_path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("slide,patient,stage\na.tif,P1,pN0\nb.svs,P1,pN0\nc.tif,P2,\n")
    assert read_patient_table(p) == ({"a": "P1", "b": "P1", "c": "P2"}, {"P1": "pN0"})
    p.write_text("slide,patient,stage\na.tif,P1,pN0\nb.svs,P1,pN2\n")
    with pytest.raises(ValueError, match="two stages"):
        read_patient_table(p)
    p.write_text("slide,patient,stage\na.tif,P1,pN7\n")
    with pytest.raises(ValueError, match="line 2: expected a stage"):
        read_patient_table(p)
    p.write_text("name,label\na,b\n")
    with pytest.raises(ValueError, match="columns slide,patient"):
        read_patient_table(p)
