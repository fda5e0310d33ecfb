"""Evaluation and report: classification, CAM-to-mask segmentation, faithfulness, figures.

:func:`evaluate` loads a run's checkpoint, picks the decision threshold on the
validation split (Youden's J), and scores the test split:

- classification: AUC, accuracy at 0.5, NLL, ECE, sensitivity/specificity at
  the validation Youden threshold (:mod:`camseg.metrics`);
- segmentation, where masks exist: the classic CAM of the tumour class
  (:func:`camseg.functional.linear_cam`), upsampled to the patch, min-max
  normalised, thresholded with Otsu (:func:`camseg.postprocess.threshold_otsu`)
  and gated by the classifier (:func:`camseg.postprocess.gate`: patches called
  negative get an empty mask); IoU and Dice over the whole split (counts added
  over patches) and the IoU-vs-threshold curve (:func:`camseg.metrics.threshold_curve`);
  the same for the per-location tumour probability maps
  (:func:`camseg_pcam.regularize.tumor_probability_maps`) at 0.5 and with Otsu;
- the fraction of CAM energy in the label region
  (:func:`camseg.metrics.label_region_energy`);
- faithfulness of the CAMs on a sample of positives: deletion and insertion
  AUC, average drop (:mod:`camseg.metrics`).

It writes ``metrics.json``, ``report.md`` and figures (``roc.png``,
``training_curves.png``, ``cam_grid.png``, ``iou_vs_threshold.png``).
Real PCam has masks for train only: train with ``holdout_fraction > 0`` and the
held-out slides of the train split are used for the pixel-level numbers.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from camseg import functional as CF
from camseg import metrics as M
from camseg import postprocess as PP
from camseg_pcam.data import PCamBatchSampler, PCamH5, collate_batch, find_pcam_files, read_meta
from camseg_pcam.data import split_by_slide as _split_by_slide
from camseg_pcam.models import GAPClassifier
from camseg_pcam.regularize import tumor_probability_maps
from camseg_pcam.train import load_checkpoint_model, read_checkpoint, to_float_images
from camseg_pcam.wsss import recommended_recipe

__all__ = ["SplitOutputs", "cam_maps", "evaluate", "masks_from_cams", "read_history"]

PATCH = 96


def cam_maps(model: GAPClassifier, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Logits and maps of one batch from a single forward pass.

    Args:
        model: the classifier (eval mode).
        images: ``(B, 3, H, W)`` float in [0, 1].

    Returns:
        ``logits`` ``(B, 2)``; ``cam``: the tumour-class CAM upsampled to
        ``(B, H, W)`` and min-max normalised; ``cam_raw``: the CAM at feature
        resolution ``(B, h, w)``; ``prob_map``: tumour probabilities ``(B, H, W)``.

    Example:
        >>> from camseg_pcam.models import build_model
        >>> _ = torch.manual_seed(0)
        >>> with torch.no_grad():
        ...     out = cam_maps(build_model("small", width=4).eval(), torch.rand(2, 3, 32, 32))
        >>> out["cam"].shape, float(out["cam"].max())
        (torch.Size([2, 32, 32]), 1.0)
    """
    logits, feats = model.forward_features(images)
    b, size = images.shape[0], (images.shape[-2], images.shape[-1])
    tumour = torch.ones(b, dtype=torch.long, device=images.device)
    raw = CF.linear_cam(feats.float(), model.fc.weight.float(), tumour)
    cam = CF.normalize(CF.upsample(raw, size), mode="minmax")
    prob_map = CF.upsample(tumor_probability_maps(model, feats), size)
    return {"logits": logits.float(), "cam": cam, "cam_raw": raw, "prob_map": prob_map}


def masks_from_cams(
    cams: torch.Tensor, probs: torch.Tensor, *, min_prob: float = 0.5
) -> torch.Tensor:
    """Masks from min-max normalised CAMs: Otsu threshold per map, gated by the classifier.

    Args:
        cams: ``(B, H, W)`` maps in [0, 1].
        probs: ``(B,)`` tumour probabilities.
        min_prob: patches with ``probs < min_prob`` get an empty mask.

    Returns:
        ``torch.bool`` masks ``(B, H, W)``.

    Example:
        >>> cams = torch.tensor([[[0.0, 1.0], [0.0, 0.9]]]).repeat(2, 1, 1)
        >>> masks_from_cams(cams, torch.tensor([0.9, 0.1])).tolist()
        [[[False, True], [False, True]], [[False, False], [False, False]]]
    """
    t = PP.threshold_otsu(cams)
    return (cams >= t[:, None, None]) & (probs >= min_prob)[:, None, None]


@dataclass
class SplitOutputs:
    """Everything :func:`evaluate` collects on one split.

    Attributes:
        probs: ``(N,)`` tumour probabilities.
        labels: ``(N,)`` labels.
        counters: segmentation counters per mask recipe (empty without masks).
        curve_maps: gated CAMs of the first patches ``(n, H, W)`` for curves.
        curve_masks: their true masks.
        energy: label-region energy per patch ``(N,)`` (NaN for empty maps).
        sample: a few images, CAMs, true and predicted masks for the figure grid.
        iou_pos: per recipe, the IoU of every positive patch (for ``iou_pos``).
    """

    probs: torch.Tensor
    labels: torch.Tensor
    counters: dict[str, M.SegmentationCounter] = field(default_factory=dict)
    curve_maps: torch.Tensor | None = None
    curve_masks: torch.Tensor | None = None
    energy: torch.Tensor | None = None
    sample: dict[str, torch.Tensor] = field(default_factory=dict)
    iou_pos: dict[str, torch.Tensor] = field(default_factory=dict)


@torch.inference_mode()
def _run_split(
    model: GAPClassifier,
    ds: PCamH5,
    device: torch.device,
    *,
    batch_size: int,
    min_prob: float | None,
    max_curve: int,
    n_grid: int,
) -> SplitOutputs:
    sampler = PCamBatchSampler(ds.labels, batch_size, shuffle=False)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_batch)
    probs, labels, energy = [], [], []
    counters: dict[str, M.SegmentationCounter] = {}
    curve_maps: list[torch.Tensor] = []
    curve_masks: list[torch.Tensor] = []
    kept = 0
    sample: dict[str, list[torch.Tensor]] = {}
    iou_pos: dict[str, list[torch.Tensor]] = {}
    for batch in loader:
        x = to_float_images(batch["image"].to(device))
        out = cam_maps(model, x)
        p = out["logits"].softmax(1)[:, 1]
        probs.append(p.cpu())
        labels.append(batch["label"])
        energy.append(M.label_region_energy(out["cam_raw"], average="none").cpu())
        if min_prob is None or "mask" not in batch:
            continue
        true = batch["mask"].to(device)
        pred = {
            "cam_otsu": masks_from_cams(out["cam"], p, min_prob=min_prob),
            "prob_map": (out["prob_map"] >= 0.5) & (p >= min_prob)[:, None, None],
            "prob_otsu": masks_from_cams(out["prob_map"], p, min_prob=min_prob),
            "prob_map_ungated": out["prob_map"] >= 0.5,
        }
        positive = batch["label"] == 1
        for name, m in pred.items():
            counters.setdefault(name, M.SegmentationCounter()).update(m.cpu(), true.cpu())
            if bool(positive.any()):
                per = M.iou(m.cpu()[positive], true.cpu()[positive], average="none")
                iou_pos.setdefault(name, []).append(per.float())
        if kept < max_curve:
            take = min(max_curve - kept, x.shape[0])
            curve_maps.append(PP.gate(out["cam"], p, min_prob=min_prob)[:take].cpu())
            curve_masks.append(true[:take].cpu())
            kept += take
        have = sum(len(v) for v in sample.get("image", []))
        if have < n_grid:
            take = n_grid - have
            for k, v in {
                "image": x[:take],
                "cam": out["cam"][:take],
                "true": true[:take],
                "pred": pred["cam_otsu"][:take],
                "prob": p[:take],
                "label": batch["label"][:take],
            }.items():
                sample.setdefault(k, []).append(v.cpu())
    return SplitOutputs(
        probs=torch.cat(probs),
        labels=torch.cat(labels),
        counters=counters,
        curve_maps=torch.cat(curve_maps) if curve_maps else None,
        curve_masks=torch.cat(curve_masks) if curve_masks else None,
        energy=torch.cat(energy),
        sample={k: torch.cat(v) for k, v in sample.items()},
        iou_pos={k: torch.cat(v) for k, v in iou_pos.items()},
    )


def _faithfulness(
    model: GAPClassifier, ds: PCamH5, device: torch.device, n: int
) -> dict[str, float]:
    """Deletion/insertion AUC and average drop (%) on the first ``n`` positives."""
    if n <= 0:
        return {}
    pos = torch.nonzero(ds.labels == 1).flatten()[:n].tolist()
    if not pos:
        return {}
    batch = ds.__getitems__(pos)
    x = to_float_images(batch["image"].to(device))
    with torch.inference_mode():
        maps = cam_maps(model, x)["cam"]

    tumour = torch.ones(len(pos), dtype=torch.long, device=device)
    with torch.inference_mode():
        return {
            "deletion_auc": float(M.deletion_auc(model, x, maps, tumour).mean()),
            "insertion_auc": float(M.insertion_auc(model, x, maps, tumour).mean()),
            "average_drop": float(M.average_drop(model, x, maps, tumour)),
            "n": float(len(pos)),
        }


def _pixel_dataset(
    data: str | os.PathLike[str], split: str, run_cfg: dict[str, Any]
) -> tuple[PCamH5 | None, str]:
    files = find_pcam_files(data, split)  # type: ignore[arg-type]
    if files.mask is not None:
        return PCamH5(files, masks=True), f"{split} split"
    frac = float(run_cfg.get("holdout_fraction", 0.0))
    train = find_pcam_files(data, "train")
    if frac > 0 and train.mask is not None and train.meta is not None:
        _, held = _split_by_slide(
            read_meta(train.meta)["wsi"], fraction=frac, seed=int(run_cfg.get("seed", 0))
        )
        return PCamH5(train, masks=True, indices=held), "held-out train slides"
    return None, "none (no masks)"


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def evaluate(
    run: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    checkpoint: str = "best.pt",
    split: str = "test",
    batch_size: int = 128,
    device: str = "auto",
    n_faithfulness: int = 32,
    n_grid: int = 16,
    max_curve: int = 2048,
    figures: bool = True,
) -> dict[str, Any]:
    """Evaluate a trained run and write ``metrics.json``, ``report.md`` and figures.

    Args:
        run: the run folder written by :func:`camseg_pcam.train.train`.
        data: the PCam data folder.
        out: the output folder (created).
        checkpoint: the checkpoint inside ``run``.
        split: the split to test on (``"test"`` or ``"valid"``).
        batch_size: the evaluation batch size.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        n_faithfulness: positives used for the faithfulness metrics (0: skip).
        n_grid: patches in the CAM figure grid.
        max_curve: patches kept for the IoU-vs-threshold curve.
        figures: write the PNG figures (needs matplotlib).

    Returns:
        The metrics (as written to ``metrics.json``).

    Raises:
        FileNotFoundError: if the checkpoint is missing.
        PCamFormatError: for missing or malformed data files.
    """
    run_dir, out_dir = Path(run), Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = _pick_device(device)
    model = load_checkpoint_model(run_dir / checkpoint, device=str(dev))
    ckpt_cfg = read_checkpoint(run_dir / checkpoint)["config"]

    val = PCamH5(find_pcam_files(data, "valid"), masks=False)
    val_out = _run_split(
        model, val, dev, batch_size=batch_size, min_prob=None, max_curve=0, n_grid=0
    )
    thr = float(M.youden_threshold(val_out.probs, val_out.labels))

    test = PCamH5(find_pcam_files(data, split), masks=False)  # type: ignore[arg-type]
    test_out = _run_split(
        model, test, dev, batch_size=batch_size, min_prob=None, max_curve=0, n_grid=0
    )
    probs, labels = test_out.probs, test_out.labels
    at_youden = M.binary_stats(probs, labels, threshold=thr)
    at_half = M.binary_stats(probs, labels, threshold=0.5)
    result: dict[str, Any] = {
        "split": split,
        "n": len(labels),
        "checkpoint": str(checkpoint),
        "model": ckpt_cfg["model"],
        "cam_terms": ckpt_cfg.get("cam", {}),
        "preset": ckpt_cfg.get("preset"),
        "head": ckpt_cfg.get("head", "gap"),
        "classification": {
            "auc": float(M.roc_auc(probs, labels)),
            "accuracy": float(at_half.accuracy),
            "nll": float(M.nll(probs, labels)),
            "ece": float(M.expected_calibration_error(probs, labels)),
            "val_youden_threshold": thr,
            "sensitivity_at_youden": float(at_youden.sensitivity),
            "specificity_at_youden": float(at_youden.specificity),
            "accuracy_at_youden": float(at_youden.accuracy),
        },
    }
    energy = test_out.energy if test_out.energy is not None else torch.empty(0)
    pos = labels == 1
    result["localisation"] = {
        "label_region_energy_positives": _nanmean(energy[pos]),
        "label_region_energy_negatives": _nanmean(energy[~pos]),
    }

    pix_ds, pix_source = _pixel_dataset(data, split, ckpt_cfg)
    pix: SplitOutputs | None = None
    if pix_ds is not None:
        pix = _run_split(
            model,
            pix_ds,
            dev,
            batch_size=batch_size,
            min_prob=thr,
            max_curve=max_curve,
            n_grid=n_grid,
        )
        seg: dict[str, Any] = {"source": pix_source, "n": len(pix.labels)}
        for name, counter in pix.counters.items():
            seg[name] = {
                "iou": float(counter.compute("iou", average="micro")),
                "dice": float(counter.compute("dice", average="micro")),
            }
            if name in pix.iou_pos:
                seg[name]["iou_pos"] = float(pix.iou_pos[name].mean())
        rec = recommended_recipe(ckpt_cfg)
        if rec in seg:
            seg["recommended"] = {"recipe": rec, **seg[rec]}
        if pix.curve_maps is not None and pix.curve_masks is not None:
            thresholds = torch.linspace(0.0, 1.0, 51)
            curve = M.threshold_curve(pix.curve_maps, pix.curve_masks, thresholds=thresholds)
            seg["iou_curve"] = {
                "thresholds": thresholds.tolist(),
                "iou": curve["iou"].tolist(),
                "dice": curve["dice"].tolist(),
            }
            best = int(torch.nan_to_num(curve["iou"], nan=-1.0).argmax())
            seg["best_fixed_threshold"] = {
                "threshold": float(thresholds[best]),
                "iou": float(curve["iou"][best]),
            }
        result["segmentation"] = seg
        result["faithfulness"] = _faithfulness(model, pix_ds, dev, n_faithfulness)
    else:
        result["segmentation"] = {"source": pix_source}
        result["faithfulness"] = _faithfulness(model, test, dev, n_faithfulness)

    _write_json(out_dir / "metrics.json", result)
    figs: list[str] = []
    if figures:
        from camseg_pcam import report

        figs = report.write_figures(out_dir, run_dir, probs, labels, result, pix)
    _write_text(out_dir / "report.md", _report_md(result, figs))
    return result


def _nanmean(x: torch.Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else math.nan


def _write_json(path: Path, obj: Any) -> None:
    _write_text(path, json.dumps(obj, indent=2, allow_nan=True))


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _report_md(r: dict[str, Any], figs: list[str]) -> str:
    c = r["classification"]
    lines = [
        f"# PCam evaluation: {r['model']} on the {r['split']} split ({r['n']} patches)",
        "",
        f"CAM regularisation: {r['cam_terms'] or 'none'}",
        "",
        "## Classification",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in c.items()]
    lines += ["", "## CAM localisation", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in r["localisation"].items()]
    seg = r["segmentation"]
    lines += ["", f"## CAM → mask segmentation (masks from: {seg['source']})", ""]
    recipes = [k for k in ("cam_otsu", "prob_map", "prob_otsu") if k in seg]
    if recipes:
        lines += ["| recipe | IoU | Dice |", "|---|---|---|"]
        lines += [f"| {k} | {seg[k]['iou']:.4f} | {seg[k]['dice']:.4f} |" for k in recipes]
        lines += [
            "",
            "`cam_otsu`: min-max CAM of the tumour class, Otsu threshold, gated by the "
            "classifier at the validation Youden threshold. `prob_map`: per-location tumour "
            "probability >= 0.5, same gate. `prob_otsu`: the probability map with an Otsu "
            "threshold, same gate. IoU/Dice add the pixel counts over all patches.",
        ]
        if "best_fixed_threshold" in seg:
            b = seg["best_fixed_threshold"]
            lines += ["", f"Best fixed CAM threshold: {b['threshold']:.2f} (IoU {b['iou']:.4f})."]
    else:
        lines += ["No masks for this split: pixel-level metrics skipped."]
    if r.get("faithfulness"):
        lines += ["", "## Faithfulness", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in r["faithfulness"].items()]
    if figs:
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figs]
    return "\n".join(lines) + "\n"


def read_history(run: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Read a run's ``metrics.csv`` (empty list when absent).

    Args:
        run: the run folder.

    Returns:
        One dict per epoch.

    Example:
        >>> import tempfile
        >>> read_history(tempfile.mkdtemp())
        []
    """
    p = Path(run) / "metrics.csv"
    if not p.exists():
        return []
    with open(p, newline="") as fh:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(fh)]
