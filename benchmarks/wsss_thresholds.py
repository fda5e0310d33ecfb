"""How the WSSS preset's masks depend on the threshold, and which mask-free rules find it.

A diagnosis of ``benchmarks/wsss_preset.py``'s runs, on the **valid** split (the test
split stays untouched): it reloads every cached ``best.pt`` of the ``stage1``,
``preset`` and ``ceiling`` rows of both generators (``camseg.synthetic`` and
``benchmarks/_altgen.py``) and scores the classifier-gated masks of

- the per-location tumour probability map at fixed thresholds (an oracle curve: the
  best fixed threshold needs the true masks);
- mask-free rules, each of which could be a default: ``p >= 0.5`` (the preset's
  ``prob_map``), a per-image Otsu threshold on the probability map (``prob_otsu``) and on
  its logit with the floor 0 (``logit_otsu``), one Otsu threshold per run over every
  gated pixel (``run_otsu``), the min-max CAM with per-image Otsu (``cam_otsu``), the
  map refined by :func:`camseg.postprocess.crf_refine` at its defaults and then cut at
  0.5 (``crf``), and the threshold at which "some pixel of the centre 32×32 is at least
  t" best predicts the image labels of the split (balanced accuracy, ``label_rule``: the
  PCam label rule used as a mask-free criterion);
- and ``p >= 0.5`` without the gate (``p >= 0.5, ungated``: the gate empties the masks
  of patches called negative, whose periphery may hold tumour; a model trained on the
  true masks, the ceiling, has no reason to use it).

It also reports how much ``prob_map`` covers (predicted over true tumour pixels) and
where its false positives lie: their median distance to the true tumour and their
share in the periphery of positive patches.

Micro IoU (pixel counts added over the split), mean ± std over training seeds.

    python benchmarks/wsss_thresholds.py --work WORK   # WORK: wsss_preset.py's --work

Needs a finished ``wsss_preset.py --work WORK`` run; writes
``results/wsss_thresholds.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, machine_line, uptime_text, write_results
from camseg_pcam.data import PCamH5, find_pcam_files
from camseg_pcam.evaluate import cam_maps
from camseg_pcam.train import load_checkpoint_model, to_float_images

from camseg import postprocess as PP

#: work-folder index -> generator name, as ``wsss_preset.py`` numbers them.
GENERATORS = {0: "synthetic", 1: "altgen"}
ROWS = ("stage1", "preset", "ceiling")
CURRENT = "prob_map (p >= 0.5)"  # the preset's recipe
FIXED = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
CENTRE = slice(32, 64)

Rule = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def _micro_iou(pred: torch.Tensor, true: torch.Tensor) -> float:
    union = int((pred | true).sum())
    return int((pred & true).sum()) / union if union else float("nan")


@torch.inference_mode()
def _outputs(ckpt: Path, ds: PCamH5, batch: int = 128) -> dict[str, torch.Tensor]:
    model = load_checkpoint_model(ckpt, device="cpu")
    parts: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(ds), batch):
        b = ds.__getitems__(list(range(i, min(len(ds), i + batch))))
        x = to_float_images(b["image"])
        out = cam_maps(model, x)
        for k, v in {
            "image": x,
            "p": out["logits"].softmax(1)[:, 1],
            "prob_map": out["prob_map"],
            "cam": out["cam"],
            "label": b["label"],
            "mask": b["mask"].bool(),
        }.items():
            parts.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in parts.items()}


def _label_rule_threshold(prob_map: torch.Tensor, labels: torch.Tensor) -> float:
    """The t at which ``max(centre) >= t`` best predicts the labels (balanced accuracy)."""
    top = prob_map[:, CENTRE, CENTRE].amax((1, 2))
    pos, neg = labels == 1, labels == 0
    grid = torch.linspace(0.05, 0.99, 95)
    bacc = torch.stack(
        [((top[pos] >= t).float().mean() + (top[neg] < t).float().mean()) for t in grid]
    )
    return float(grid[int(bacc.argmax())])


def _false_positives(
    pred: torch.Tensor, true: torch.Tensor, labels: torch.Tensor
) -> dict[str, float]:
    """How much ``pred`` covers (predicted over true pixels) and where its false
    positives lie: median distance to the true tumour (pixels; patches without tumour
    are left out) and the share in the periphery (outside the centre 32×32) of positives."""
    fp = pred & ~true
    total = int(fp.sum())
    cover = int(pred.sum()) / max(1, int(true.sum()))
    if not total:
        return {
            "coverage": cover,
            "median_distance_px": float("nan"),
            "share_positive_periphery": 0.0,
        }
    dists = []
    for f, t in zip(fp.numpy(), true.numpy()):
        if f.any() and t.any():
            dists.append(ndimage.distance_transform_edt(~t)[f])
    periphery = torch.ones(true.shape[1:], dtype=torch.bool)
    periphery[CENTRE, CENTRE] = False
    share = int((fp[labels == 1] & periphery).sum()) / total
    med = float(np.median(np.concatenate(dists))) if dists else float("nan")
    return {"coverage": cover, "median_distance_px": med, "share_positive_periphery": share}


def _rules(o: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    pm = o["prob_map"]
    logit = torch.logit(pm.clamp(1e-6, 1 - 1e-6))
    gated = o["p"] >= 0.5
    run_t = PP.threshold_otsu(pm[gated].reshape(1, 1, -1))[0] if bool(gated.any()) else 0.5
    masks = {
        "prob_map (p >= 0.5)": pm >= 0.5,
        "prob_otsu": pm >= PP.threshold_otsu(pm)[:, None, None],
        "logit_otsu": logit >= PP.threshold_otsu(logit).clamp(min=0)[:, None, None],
        "run_otsu": pm >= run_t,
        "cam_otsu": o["cam"] >= PP.threshold_otsu(o["cam"])[:, None, None],
        "crf": PP.crf_refine(o["image"], pm) >= 0.5,
        "label_rule": pm >= _label_rule_threshold(pm, o["label"]),
    }
    masks.update({f"p >= {t}": pm >= t for t in FIXED})
    out = {k: m & gated[:, None, None] for k, m in masks.items()}
    out["p >= 0.5, ungated"] = pm >= 0.5  # what a model trained on every pixel can afford
    return out


def _ms(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="the work folder of wsss_preset.py")
    args = ap.parse_args()
    torch.set_num_threads(2)
    work = Path(args.work)
    load_before, t0 = uptime_text(), time.perf_counter()
    scores: dict[str, dict[str, dict[str, list[float]]]] = {}
    fps: dict[str, dict[str, dict[str, list[float]]]] = {}
    for g_i, gen in GENERATORS.items():
        files = find_pcam_files(work / f"data{g_i}", "valid")
        ds = PCamH5(files, masks=True)
        for row in ROWS:
            for ckpt in sorted((work / f"g{g_i}").glob(f"{row}-s*/best.pt")):
                o = _outputs(ckpt, ds)
                rules = _rules(o)
                for rule, m in rules.items():
                    cell = scores.setdefault(gen, {}).setdefault(row, {}).setdefault(rule, [])
                    cell.append(_micro_iou(m, o["mask"]))
                fp = _false_positives(rules[CURRENT], o["mask"], o["label"])
                for k, v in fp.items():
                    fps.setdefault(gen, {}).setdefault(row, {}).setdefault(k, []).append(v)
                print(gen, ckpt.parent.name, flush=True)
    if not scores:
        raise SystemExit(f"error: no wsss_preset.py runs under {work}")
    rules = list(next(iter(next(iter(scores.values())).values())))
    cols = [(g, r) for g in scores for r in ROWS if r in scores[g]]
    lines = [
        "| rule | " + " | ".join(f"{g} {r}" for g, r in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for rule in rules:
        lines.append(f"| {rule} | " + " | ".join(_ms(scores[g][r][rule]) for g, r in cols) + " |")
    lines += [
        "",
        f"Masks of `{CURRENT}`: predicted over true tumour pixels; of their false positives, "
        "the median distance to the true tumour (pixels) and the share in the periphery of "
        "positives.",
        "",
        "| run | predicted / true | FP median distance px | FP share in positives' periphery |",
        "|---|---|---|---|",
    ]
    for g, r in cols:
        d = fps[g][r]
        lines.append(
            f"| {g} {r} | {_ms(d['coverage'])} | {_ms(d['median_distance_px'])} | "
            f"{_ms(d['share_positive_periphery'])} |"
        )
    info = {**machine(), "load_before": load_before, "load_after": uptime_text()}
    info["elapsed_s"] = time.perf_counter() - t0
    md = (
        "# WSSS masks against the threshold (valid split)\n\n"
        "Micro IoU of classifier-gated masks on the valid split of `wsss_preset.py`'s data, "
        "mean ± std over training seeds (the last row without the gate); the rules are "
        "described in `benchmarks/wsss_thresholds.py`. Rows `p >= t` need the true masks "
        "to choose t.\n\n"
        + "\n".join(lines)
        + f"\n\nLoad (`uptime`): before `{load_before}`; after `{info['load_after']}`.\n\n"
        + machine_line(info)
        + "\n"
    )
    print(md)
    write_results("wsss_thresholds", {"info": info, "scores": scores, "false_positives": fps}, md)


if __name__ == "__main__":
    main()
