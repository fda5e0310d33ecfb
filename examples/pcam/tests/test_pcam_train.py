from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from camseg_pcam.cli import _build_parser, _train_config, main, parse_cam
from camseg_pcam.data import PCamH5, find_pcam_files
from camseg_pcam.evaluate import evaluate
from camseg_pcam.predict import predict
from camseg_pcam.train import (
    TrainConfig,
    TrainInterrupted,
    load_checkpoint_model,
    load_config,
    to_float_images,
    train,
)
from sklearn.metrics import roc_auc_score

CAM = {"suppression": 1.0, "center_evidence": 0.5, "size": 0.5, "smoothness": 0.1}


def _cfg(root: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(
        data=str(root),
        out=str(out),
        width=4,
        epochs=1,
        batch_size=16,
        lr=3e-3,
        progress=False,
        patience=0,
        warmup_epochs=0.5,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_end_to_end_train_evaluate_predict(pcam_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    summary = train(_cfg(pcam_root, run, cam=CAM))
    assert {"best.pt", "last.pt", "metrics.csv", "metrics.jsonl", "config.json"} <= {
        p.name for p in run.iterdir()
    }
    row = summary["history"][0]
    # every loss component is logged, and the total is CE + the weighted terms
    expected = row["train_ce"] + sum(w * row[f"train_cam_{k}"] for k, w in CAM.items())
    assert row["train_loss"] == pytest.approx(expected, rel=1e-5)
    with open(run / "metrics.csv", newline="") as fh:
        assert float(next(csv.DictReader(fh))["val_auc"]) == pytest.approx(row["val_auc"])

    out = tmp_path / "eval"
    result = evaluate(run, pcam_root, out, n_faithfulness=4, n_grid=4)
    assert {
        "metrics.json",
        "report.md",
        "roc.png",
        "cam_grid.png",
        "iou_vs_threshold.png",
        "training_curves.png",
    } <= {p.name for p in out.iterdir()}
    # the reported AUC is scikit-learn's AUC of an independent forward pass
    model = load_checkpoint_model(run / "best.pt")
    test = PCamH5(find_pcam_files(pcam_root, "test"))
    batch = test.__getitems__(list(range(len(test))))
    with torch.no_grad():
        probs = model(to_float_images(batch["image"])).softmax(1)[:, 1]
    auc = roc_auc_score(batch["label"].numpy(), probs.numpy())
    assert result["classification"]["auc"] == pytest.approx(auc, abs=1e-6)
    assert json.loads((out / "metrics.json").read_text())["classification"]["auc"] == (
        pytest.approx(auc, abs=1e-6)
    )
    seg = result["segmentation"]
    assert seg["source"] == "test split" and 0.0 <= seg["cam_otsu"]["iou"] <= 1.0
    assert set(result["faithfulness"]) == {"deletion_auc", "insertion_auc", "average_drop", "n"}
    assert "| auc |" in (out / "report.md").read_text()

    import tifffile
    from PIL import Image

    images = batch["image"].numpy()
    Image.fromarray(images[0]).save(tmp_path / "p0.png")
    tifffile.imwrite(tmp_path / "p1.tif", images[1])
    rows = predict([tmp_path / "p0.png", tmp_path / "p1.tif"], run, tmp_path / "pred")
    assert [r["probability"] for r in rows] == pytest.approx(probs[:2].tolist(), abs=1e-5)
    assert (tmp_path / "pred" / "p0_cam.png").exists()
    assert (tmp_path / "pred" / "predictions.csv").read_text().count("\n") == 3


def test_resume_reproduces_the_uninterrupted_run(pcam_root: Path, tmp_path: Path) -> None:
    kw = dict(epochs=2, dropout=0.2, max_steps_per_epoch=2, cam={"suppression": 1.0})
    full = train(_cfg(pcam_root, tmp_path / "full", **kw))

    def stop(epoch: int, row: dict[str, object]) -> None:
        if epoch == 1:
            raise TrainInterrupted("simulated interruption")

    part = _cfg(pcam_root, tmp_path / "part", **kw)
    with pytest.raises(TrainInterrupted):
        train(part, on_epoch_end=stop)
    assert torch.load(tmp_path / "part" / "last.pt", weights_only=False)["epoch"] == 1
    resumed = train(part, resume=True)
    drop = ("train_images_per_s", "train_data_wait_share", "train_seconds")
    clean = [{k: v for k, v in r.items() if k not in drop} for r in resumed["history"]]
    assert clean == [{k: v for k, v in r.items() if k not in drop} for r in full["history"]]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=False)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_resume_without_checkpoint(pcam_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"Missing checkpoint .*last\.pt"):
        train(_cfg(pcam_root, tmp_path / "none"), resume=True)


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(pcam_root: Path, tmp_path: Path) -> None:
    flags = [
        "train",
        "--data",
        str(pcam_root),
        "--width",
        "4",
        "--norm",
        "group",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--max-steps-per-epoch",
        "2",
        "--no-augment",
        "--no-progress",
        "--balance",
        "none",
        "--lr",
        "0.01",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "camseg_pcam.cli",
        *flags,
        "--out",
        str(tmp_path / "ddp"),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    single = _train_config(_build_parser().parse_args([*flags, "--out", str(tmp_path / "one")]))
    train(single)
    a = torch.load(tmp_path / "ddp" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "one" / "last.pt", weights_only=False)
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5)
    initial = load_checkpoint_model(tmp_path / "one" / "last.pt")  # the run moved the weights
    assert any(not torch.equal(p, torch.zeros_like(p)) for p in initial.state_dict().values())
    assert isinstance(a["rng"], list) and len(a["rng"]) == 2


def test_config_file_and_flags(tmp_path: Path) -> None:
    p = tmp_path / "run.toml"
    p.write_text('model = "resnet18"\nepochs = 3\nlr = 0.01\n[cam]\nsuppression = 0.5\n')
    ns = _build_parser().parse_args(
        ["train", "--config", str(p), "--epochs", "5", "--no-augment", "--cam", "size=0.2"]
    )
    cfg = _train_config(ns)
    assert (cfg.model, cfg.epochs, cfg.lr, cfg.augment) == ("resnet18", 5, 0.01, False)
    assert cfg.cam == {"size": 0.2}
    assert load_config(p)["cam"] == {"suppression": 0.5}
    p.write_text("epochz = 3\n")
    with pytest.raises(ValueError, match=r"TrainConfig fields, but got \['epochz'\]"):
        load_config(p)
    # every field has a flag
    flags = _build_parser()._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    dests = {a.dest for a in flags._actions}
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= dests


def test_bad_settings_are_rejected(pcam_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NAME=WEIGHT"):
        parse_cam(["suppression"])
    with pytest.raises(ValueError, match="Expected `cam` to be one of"):
        train(_cfg(pcam_root, tmp_path / "x", cam={"sparsity": 1.0}))
    with pytest.raises(ValueError, match="Expected `optimizer` to be one of"):
        train(_cfg(pcam_root, tmp_path / "x", optimizer="adam"))
    with pytest.raises(ValueError, match="Expected `lr` > 0"):
        train(_cfg(pcam_root, tmp_path / "x", lr=0.0))
    with pytest.raises(ValueError, match="Expected a meta CSV"):
        empty = tmp_path / "nometa"
        empty.mkdir()
        for f in pcam_root.iterdir():
            if not f.name.endswith(".csv"):
                (empty / f.name).symlink_to(f)
        train(_cfg(empty, tmp_path / "x", holdout_fraction=0.2))


def test_holdout_by_slide_and_kaggle_training(pcam_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "held"
    train(_cfg(pcam_root, run, holdout_fraction=0.25, max_steps_per_epoch=1, balance="weights"))
    # pixel metrics come from the held-out slides of train when the test split has no masks
    data = tmp_path / "nomask"
    data.mkdir()
    for f in pcam_root.iterdir():
        if "test_mask" not in f.name:
            (data / f.name).symlink_to(f)
    r = evaluate(run, data, tmp_path / "ev", figures=False, n_faithfulness=0)
    assert r["segmentation"]["source"] == "held-out train slides"
    assert r["segmentation"]["n"] == 16  # 2 slides of 8 patches

    assert main(["make-synthetic", str(tmp_path / "kg"), "--kaggle", "--n", "12"]) == 0
    summary = train(
        _cfg(tmp_path / "kg", tmp_path / "kgrun", val_fraction=0.3, batch_size=4, optimizer="sgd")
    )
    assert np.isfinite(summary["history"][0]["train_loss"])


def test_train_small_synthetic_returns_a_trained_eval_model(tmp_path) -> None:
    from camseg_pcam.train import train_small_synthetic

    model = train_small_synthetic(tmp_path, n=(64, 16, 16), epochs=1, seed=3)
    assert not model.training
    assert (tmp_path / "run" / "best.pt").is_file()
    assert (tmp_path / "data").is_dir()
    assert model(torch.zeros(2, 3, 96, 96)).shape == (2, 2)


def test_train_small_synthetic_checks_epochs_before_writing(tmp_path) -> None:
    from camseg_pcam.train import train_small_synthetic

    with pytest.raises(ValueError, match="`epochs`"):
        train_small_synthetic(tmp_path, epochs=0)
    assert not (tmp_path / "data").exists()


def test_train_small_synthetic_takes_a_trainer(tmp_path) -> None:
    from camseg_pcam.train import train, train_small_synthetic

    seen = []

    def trainer(cfg):
        seen.append((cfg.model, cfg.epochs))
        return train(cfg)

    train_small_synthetic(tmp_path, n=(64, 16, 16), epochs=1, trainer=trainer)
    assert seen == [("small", 1)]
    with pytest.raises(TypeError, match="`trainer`"):
        train_small_synthetic(tmp_path / "x", trainer=5)
    assert not (tmp_path / "x").exists()
