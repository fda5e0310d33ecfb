"""How the MIL pooling sets the extent of the WSSS maps: log-mean-exp against the maximum.

A diagnosis for ``benchmarks/wsss_preset.py``'s gap on the second generator. Its
masks there cover far more than the true tumour (``wsss_thresholds.py``). One
cause is built into the smooth maximum the ``"mil"`` head pools with. For a map
that is exactly right, with tumour logit :math:`a` on a share :math:`f` of the
label region and very negative logits elsewhere, the log-mean-exp pools to about
:math:`a + \\log f`. A small tumour therefore pools low, and training raises
the logits around it. The maximum pools to :math:`a` whatever the tumour's size:
it is the PCam label rule itself.

This script trains the preset's stage 1 (``camseg_pcam.wsss.STAGE1``: MIL head,
dense backbone, 48 px label crops) with ``mil_pooling="lse"`` (the default) and
``"max"``, on the data of ``wsss_preset.py --work WORK`` (``camseg.synthetic`` and
``benchmarks/_altgen.py``). It scores the valid split, never the test split. For
each run it reports the micro IoU of the gated ``p >= 0.5`` masks (the preset's
recipe), the coverage (predicted over true tumour pixels), the best fixed cut
(chosen with the masks, an oracle) and the valid AUC. Mean ± std over training seeds.

    python benchmarks/wsss_pooling.py --work WORK [--seeds 3]

Runs are cached under ``WORK/pooling``; the ``lse`` rows reuse ``wsss_preset.py``'s
finished ``stage1`` runs (the same config). Writes ``results/wsss_pooling.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, publish, uptime_text
from camseg_pcam.data import PCamH5, find_pcam_files
from camseg_pcam.train import TrainConfig, train
from camseg_pcam.wsss import STAGE1
from sklearn.metrics import roc_auc_score
from wsss_thresholds import GENERATORS, _false_positives, _micro_iou, _ms, _outputs

POOLINGS = ("lse", "max")
CUTS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _score(ckpt: Path, ds: PCamH5) -> dict[str, Any]:
    o = _outputs(ckpt, ds)
    gated = (o["p"] >= 0.5)[:, None, None]
    pm = o["prob_map"]
    cuts = {t: _micro_iou((pm >= t) & gated, o["mask"]) for t in CUTS}
    best = max(cuts, key=lambda t: cuts[t])
    fp = _false_positives((pm >= 0.5) & gated, o["mask"], o["label"])
    return {
        "iou": cuts[0.5],
        "coverage": fp["coverage"],
        "best_cut": best,
        "best_iou": cuts[best],
        "auc": float(roc_auc_score(o["label"].numpy(), o["p"].numpy())),
    }


def _run(data: Path, out: Path, pooling: str, seed: int, same: Path) -> dict[str, Any]:
    """One stage-1 run, cached in ``out``; ``same``: a finished ``wsss_preset.py`` run of
    the identical config (its ``stage1`` row pools by the default, ``"lse"``), reused."""
    done = out / "row.json"
    if done.exists():
        return dict(json.loads(done.read_text()))
    ckpt = same / "best.pt"
    if not (pooling == TrainConfig.mil_pooling and (same / "row.json").exists()):
        # the recipe of wsss_preset.py
        cfg = TrainConfig(
            data=str(data), out=str(out), model="small", width=8, epochs=6, batch_size=64,
            lr=3e-3, warmup_epochs=0.5, patience=0, seed=seed, device="cpu", progress=False,
        )  # fmt: skip
        train(dataclasses.replace(cfg, **{**STAGE1, "mil_pooling": pooling}))
        ckpt = out / "best.pt"
    ds = PCamH5(find_pcam_files(data, "valid"), masks=True)
    res = _score(ckpt, ds)
    out.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(res))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="the work folder of wsss_preset.py")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds")
    args = ap.parse_args()
    torch.set_num_threads(2)
    work = Path(args.work)
    load_before, t0 = uptime_text(), time.perf_counter()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for g_i, gen in GENERATORS.items():
        data = work / f"data{g_i}"
        if not (data / "done").exists():
            raise SystemExit(f"error: no wsss_preset.py data under {data}")
        for pooling in POOLINGS:
            for seed in range(args.seeds):
                out = work / "pooling" / f"g{g_i}-{pooling}-s{seed}"
                r = _run(data, out, pooling, seed, work / f"g{g_i}" / f"stage1-s{seed}")
                results.setdefault(gen, {}).setdefault(pooling, []).append(r)
                print(json.dumps({"generator": gen, "pooling": pooling, "seed": seed, **r}))
    lines = [
        "Stage 1 of the preset, trained with each pooling; valid split, gated masks, "
        f"mean ± std over {args.seeds} training seeds.",
        "",
        "| generator | pooling | micro IoU, p >= 0.5 | predicted / true | best cut (oracle) "
        "| its micro IoU | valid AUC |",
        "|---|---|---|---|---|---|---|",
    ]
    for gen, rows in results.items():
        for pooling, runs in rows.items():
            cuts = ", ".join(f"{r['best_cut']:.1f}" for r in runs)
            lines.append(
                f"| {gen} | {pooling} | {_ms([r['iou'] for r in runs])} | "
                f"{_ms([r['coverage'] for r in runs])} | {cuts} | "
                f"{_ms([r['best_iou'] for r in runs])} | {_ms([r['auc'] for r in runs])} |"
            )
    lines.append("")
    payload = {
        "machine": machine(),
        "elapsed_s": time.perf_counter() - t0,
        "seeds": args.seeds,
        "results": results,
    }
    publish(
        "wsss_pooling",
        payload,
        "MIL pooling and the extent of the maps (valid split)",
        lines,
        (load_before, uptime_text()),
    )


if __name__ == "__main__":
    main()
