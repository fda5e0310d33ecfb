"""Weakly-supervised segmentation on camseg.synthetic: plain CAM vs CAM-regularised training.

A small CNN with a global-average-pool head is trained from image-level labels only
(PCam rule: tumour in the centre 32×32), once with the classification loss alone
("plain") and once with a mix of camseg.losses ("regularised"), over several seeds.
Its maps are turned into masks by the same recipe for both: the per-pixel
probability map (sigmoid of the linear CAM without ReLU plus the head's bias;
camseg.functional.linear_cam on activations from camseg.LayerCapture), upsampled to
96×96, gated by the classifier's probability (p >= 0.5) and thresholded with Otsu
(camseg.postprocess.threshold_otsu). Masks are compared with the exact synthetic
masks of held-out patches (camseg.metrics.iou / dice): the dataset-level (micro) IoU
that adds the counts over all patches, and per-patch means (a patch with both masks
empty counts 1), each as mean ± std over training seeds. The classic CAM recipe
(ReLU, min-max, Otsu) and an oracle gate (true label) are reported as diagnostics.

The regulariser mix was chosen on a validation split (its own seed); the test split
is only evaluated. Run:

    python benchmarks/wsss_synthetic.py              # full run, writes results
    python benchmarks/wsss_synthetic.py --quick      # smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine

import camseg
from camseg import losses as L
from camseg.metrics import dice, iou
from camseg.postprocess import threshold_otsu
from camseg.synthetic import make_patches, to_tensor_images

RESULTS = Path(__file__).resolve().parent / "results"


# ----------------------------------------------------------------------------- model
class SmallCNN(nn.Module):
    """Four 3×3 conv blocks (stride 4 overall: 24×24 features of a 96×96 patch), GAP, one logit."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            )

        w = width
        self.features = nn.Sequential(
            block(3, w, 2), block(w, 2 * w, 2), block(2 * w, 4 * w), block(4 * w, 4 * w)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def pixel_logits(model: SmallCNN, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Image logits (B,) and the per-pixel logit map (B, h, w) from one forward pass.

    The per-pixel logit is the linear CAM without ReLU plus the bias; its spatial
    mean is the image logit (GAP + linear head).
    """
    with camseg.LayerCapture(model, "features") as cap:
        logits = model(x)[:, 0]
        feats = cap.output
    ones = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
    z = camseg.functional.linear_cam(feats, model.fc.weight, ones, relu=False) + model.fc.bias
    return logits, z


# ----------------------------------------------------------------------------- training
CROP = 64  # training sees the centre 64×64 of each patch: the label region stays its centre


def make_regularizer(mix: dict[str, float]) -> L.CAMRegularizer:
    region = 32 / CROP  # the PCam label region (32×32) as a fraction of the training crop
    terms = {
        "suppression": (L.SuppressionLoss(region=region), mix.get("suppression", 0.0)),
        "center_evidence": (
            L.CenterEvidenceLoss(region=region, target=0.9, top_fraction=0.05),
            mix.get("center_evidence", 0.0),
        ),
        "size": (L.SizeLoss(bounds=(0.02, 0.9)), mix.get("size", 0.0)),
        "smoothness": (L.SmoothnessLoss(), mix.get("smoothness", 0.0)),
        "equivariance": (L.EquivarianceLoss(sample=1), mix.get("equivariance", 0.0)),
    }
    return L.CAMRegularizer(
        {k: v for k, v in terms.items() if v[1] > 0}, warmup=int(mix.get("warmup", 0))
    )


def d4_batch(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    k = int(torch.randint(4, (1,), generator=g))
    if bool(torch.rand(1, generator=g) < 0.5):
        x = x.flip(-1)
    return torch.rot90(x, k, dims=(-2, -1))


def train(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    mix: dict[str, float] | None,
    seed: int,
    mil: bool = False,
    epochs: int,
    batch: int = 32,
    lr: float = 3e-3,
    width: int = 8,
) -> SmallCNN:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = SmallCNN(width)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(images) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    reg = make_regularizer(mix) if mix else None

    def cam_fn(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(pixel_logits(model, x)[1])

    model.train()
    step = 0
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=g)
        for i in range(0, len(images), batch):
            idx = order[i : i + batch]
            lo = (images.shape[-1] - CROP) // 2
            x = d4_batch(images[idx][..., lo : lo + CROP, lo : lo + CROP], g)
            y = labels[idx].float()
            logits, z = pixel_logits(model, x)
            if mil:  # the PCam label rule: pool the centre's per-pixel logits
                loss = L.mil_loss(z, y, region=32 / CROP)
            else:
                loss = F.binary_cross_entropy_with_logits(logits, y)
            if reg is not None:
                total, _ = reg(
                    maps=torch.sigmoid(z), labels=y, images=x, cam_fn=cam_fn, generator=g
                )
                loss = loss + total
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    model.eval()
    return model


# ----------------------------------------------------------------------------- evaluation
RECIPES = ("prob_otsu", "cam_otsu", "oracle_gate", "prob_half")


@torch.no_grad()
def predict(
    model: SmallCNN,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch: int = 256,
    *,
    mil: bool = False,
) -> dict[str, torch.Tensor]:
    """Image probabilities and masks by three recipes.

    - ``prob_otsu`` (headline): per-pixel probability map sigmoid(z) (the linear CAM
      without ReLU, plus the bias), upsampled, gated by the image probability
      (p >= 0.5), Otsu threshold (camseg.postprocess.threshold_otsu);
    - ``cam_otsu``: classic CAM -- linear CAM with ReLU, upsampled, gated, min-max
      normalised, Otsu;
    - ``oracle_gate`` (diagnostic): as ``prob_otsu`` but gated by the true label, to
      separate segmentation from classification errors;
    - ``prob_half`` (the MIL preset's mask): sigmoid(z) upsampled, >= 0.5, no gate.

    With ``mil``, the image logit is camseg.losses.mil_pool of z over the centre third.
    """
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("probs", *RECIPES)}

    def otsu_mask(m: torch.Tensor) -> torch.Tensor:
        t = threshold_otsu(m)
        return (m >= t[:, None, None]) & (m > 0)

    for i in range(0, len(images), batch):
        x = images[i : i + batch]
        logits, z = pixel_logits(model, x)
        if mil:
            logits = L.mil_pool(z, region=1 / 3)
        probs = torch.sigmoid(logits)
        keep = (probs >= 0.5)[:, None, None]  # probability gate
        pmap = camseg.functional.upsample(torch.sigmoid(z), x.shape[-2:])
        out["prob_otsu"].append(otsu_mask(pmap * keep))
        cam = camseg.functional.upsample(torch.relu(z - model.fc.bias), x.shape[-2:])
        out["cam_otsu"].append(otsu_mask(camseg.functional.normalize(cam * keep, mode="minmax")))
        truth = labels[i : i + batch].bool()[:, None, None]
        out["oracle_gate"].append(otsu_mask(pmap * truth))
        out["prob_half"].append(pmap >= 0.5)
        out["probs"].append(probs)
    return {k: torch.cat(v) for k, v in out.items()}


def evaluate(
    model: SmallCNN,
    images: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    *,
    mil: bool = False,
) -> dict[str, float]:
    pred = predict(model, images, labels, mil=mil)
    pos = labels.bool()
    res = {"accuracy": float(((pred["probs"] >= 0.5) == pos).float().mean())}
    for recipe in RECIPES:
        per_iou = iou(pred[recipe], masks, average="none")  # both masks empty -> 1
        res[f"{recipe}/micro_iou"] = float(iou(pred[recipe], masks, average="micro"))
        res[f"{recipe}/mean_iou"] = float(per_iou.mean())
        res[f"{recipe}/mean_dice"] = float(dice(pred[recipe], masks, average="none").mean())
        res[f"{recipe}/mean_iou_pos"] = float(per_iou[pos].mean())
    return res


def summarise(runs: list[dict]) -> dict:
    keys = runs[0].keys()
    return {
        k: {
            "mean": statistics.fmean(r[k] for r in runs),
            "std": statistics.stdev([r[k] for r in runs]) if len(runs) > 1 else 0.0,
        }
        for k in keys
    }


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


# The mix, chosen on the validation split (data seed 2; single training seed unless
# noted; 3072 training patches, 6 epochs; the test split was not looked at). Prob-Otsu
# recipe: micro IoU / mean IoU. When make_patches was rewritten for speed (same
# generative model, new random streams and rendering), the mix was re-checked on the
# new validation data, after one test-split run with the unchanged mix; it stayed the
# best on mean IoU and was kept.
MIX = {"smoothness": 1.0}
VALIDATION_LOG = [
    ("first make_patches:", ""),
    ("plain (classification loss only)", "0.619 / 0.520"),
    ('{"smoothness": 1.0} (3 seeds)', "0.693-0.701 / 0.571-0.578"),
    ('{"smoothness": 3.0}', "0.000 / 0.352 (maps collapse to constant)"),
    ('{"suppression": 0.5, "center_evidence": 0.5, "smoothness": 1.0}', "0.695 / 0.556"),
    ('{"suppression": 1, "center_evidence": 1, "smoothness": 1.5}, warm-up 100', "0.699 / 0.551"),
    ('{"suppression": 1, "center_evidence": 1, "smoothness": 2, "size": 1}', "0.700 / 0.553"),
    ("2048 patches, 5 epochs: plain", "0.620 / 0.527"),
    (
        '  {"suppression": 1, "center_evidence": 1, "smoothness": 0.05}, warm-up 150',
        "0.540 / 0.488",
    ),
    ('  {"suppression": 1, "center_evidence": 1, "smoothness": 1}', "0.663 / 0.531"),
    ('  {"equivariance": 1, "smoothness": 0.2}', "0.655 / 0.539"),
    (
        '  {"suppression": 1, "center_evidence": 1, "smoothness": 1, "equivariance": 1}',
        "0.665 / 0.532",
    ),
    ('  {"smoothness": 1.0}', "0.673 / 0.556"),
    ("faster make_patches (re-check, after a test-split run; mix kept):", ""),
    ("  plain", "0.571 / 0.533"),
    ('  {"smoothness": 1.0}', "0.656 / 0.583"),
    ('  {"smoothness": 0.5}', "0.640 / 0.573"),
    ('  {"smoothness": 2.0}', "0.642 / 0.566"),
    ('  {"suppression": 0.5, "center_evidence": 0.5, "smoothness": 1.0}', "0.666 / 0.573"),
    ('  {"equivariance": 1, "smoothness": 0.2}', "0.635 / 0.567"),
]
HEADLINE = ("micro_iou", "mean_iou", "mean_dice", "mean_iou_pos")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--n-train", type=int, default=3072)
    parser.add_argument("--n-test", type=int, default=1024)
    parser.add_argument("--split", choices=["val", "test"], default="test")
    parser.add_argument("--mix", type=str, default=None, help="JSON dict of loss weights")
    parser.add_argument("--only", choices=["plain", "regularised", "mil"], default=None)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, no files written")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.epochs, args.n_train, args.n_test = 1, 1, 256, 128
    mix = json.loads(args.mix) if args.mix else MIX

    t_start = time.perf_counter()
    tr = make_patches(args.n_train, seed=1)
    held_seed = 3 if args.split == "test" else 2  # 2 = validation split used for tuning
    te = make_patches(args.n_test, seed=held_seed)
    x_tr, y_tr = to_tensor_images(tr.images), tr.labels
    x_te = to_tensor_images(te.images)

    results: dict[str, list[dict]] = {"plain": [], "regularised": [], "mil": []}
    times: dict[str, list[float]] = {"plain": [], "regularised": [], "mil": []}
    for seed in range(args.seeds):
        for name, m in (("plain", None), ("regularised", mix), ("mil", None)):
            if args.only and name != args.only:
                continue
            t0 = time.perf_counter()
            is_mil = name == "mil"
            model = train(x_tr, y_tr, mix=m, seed=seed, epochs=args.epochs, mil=is_mil)
            times[name].append(time.perf_counter() - t0)
            r = evaluate(model, x_te, te.labels, te.masks, mil=is_mil)
            results[name].append(r)
            print(
                f"seed {seed} {name:12s} "
                + " ".join(f"{k}={v:.3f}" for k, v in r.items())
                + f" train_s={times[name][-1]:.1f}",
                flush=True,
            )

    summary = {k: summarise(v) for k, v in results.items() if v}
    for name, s in summary.items():
        print(
            f"{name:12s} " + "  ".join(f"{k} {v['mean']:.3f}±{v['std']:.3f}" for k, v in s.items())
        )
    total_s = time.perf_counter() - t_start
    print(f"total {total_s:.0f} s")
    if args.quick or args.no_write or args.only:
        return
    info = machine()
    info["camseg"] = camseg.__version__
    record = {
        "benchmark": "wsss_synthetic",
        "machine": info,
        "config": {
            "seeds": args.seeds,
            "epochs": args.epochs,
            "n_train": args.n_train,
            "n_test": args.n_test,
            "split": args.split,
            "mix": mix,
            "model": "SmallCNN(width=8): 4 conv blocks, stride 4, GAP, 1 logit",
            "training": "Adam 3e-3 one-cycle, batch 32, centre 64x64 crops, D4 augmentation",
            "data_seeds": {"train": 1, "validation": 2, "test": 3},
        },
        "runs": results,
        "train_seconds": times,
        "total_seconds": total_s,
        "summary": summary,
    }
    RESULTS.mkdir(exist_ok=True)
    write_atomic(RESULTS / "wsss_synthetic.json", json.dumps(record, indent=2) + "\n")

    def cell(name: str, key: str) -> str:
        v = summary[name][key]
        return f"{v['mean']:.3f} ± {v['std']:.3f}"

    rows = [
        "| training | micro IoU | mean IoU | mean Dice | mean IoU (positives) | accuracy "
        "| classic CAM micro IoU | oracle-gate micro IoU | p >= 0.5 micro IoU "
        "| p >= 0.5 mean IoU (positives) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in summary:
        cells = [cell(name, f"prob_otsu/{k}") for k in HEADLINE] + [
            cell(name, "accuracy"),
            cell(name, "cam_otsu/micro_iou"),
            cell(name, "oracle_gate/micro_iou"),
            cell(name, "prob_half/micro_iou"),
            cell(name, "prob_half/mean_iou_pos"),
        ]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    log = [f"| {m} | {v} |" for m, v in VALIDATION_LOG]
    md = "\n".join(
        [
            "# WSSS on camseg.synthetic: plain vs CAM-regularised vs MIL training",
            "",
            f"{info['date']}, {info['platform']}, {info['cpu_count']} CPUs, "
            f"{info['torch_threads']} torch thread(s), torch {info['torch']}; total "
            f"{total_s:.0f} s. SmallCNN (4 conv blocks, GAP, one logit) trained from image "
            f"labels only: {args.n_train} patches (data seed 1), {args.epochs} epochs; scored "
            f"on {args.n_test} held-out patches (data seed {held_seed}). Mean ± std over "
            f"{args.seeds} training seeds.",
            "",
            f"Regulariser mix (weights): `{json.dumps(mix)}`, added to the BCE loss.",
            "",
            "Masks (headline): per-pixel probability map sigmoid(linear CAM + bias), "
            "upsampled, gated by the image probability (p >= 0.5), Otsu threshold "
            "(`camseg.postprocess.threshold_otsu`); metrics `camseg.metrics.iou` / `dice` "
            "(micro: counts summed over all held-out patches; mean: per patch, a patch with "
            "both masks empty counts 1). Classic CAM: linear CAM with ReLU, gated, min-max, "
            "Otsu. Oracle gate: the true label as the gate (segmentation errors only). "
            "mil: BCE replaced by `camseg.losses.mil_loss` (log-sum-exp over the centre "
            "32x32, temperature 1), image logit = `mil_pool` of the centre third; "
            "p >= 0.5: sigmoid(z) upsampled, thresholded at 0.5, no gate (the MIL mask).",
            "",
            *rows,
            "",
            "## Tuning log (validation split, data seed 2)",
            "",
            "| mix | micro IoU / mean IoU |",
            "|---|---|",
            *log,
            "",
        ]
    )
    write_atomic(RESULTS / "wsss_synthetic.md", md)


if __name__ == "__main__":
    main()
