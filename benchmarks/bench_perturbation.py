"""Batched ScoreCAM and AblationCAM against pytorch-grad-cam, with equal maps.

Model: a torchvision ResNet-18 (random weights, seed 0, 10 classes, eval mode,
float32) on ``--batch`` images of 96 x 96 (the PCam patch size), explaining
class 1. Candidates, timed in interleaved rounds after one warm-up round
(medians and quartiles; ratios from the same run):

- the ``no_grad`` forward of the batch (the unit of cost);
- camseg ``ScoreCAM`` at ``layer4`` (512 channels: 512 masked images per
  image), with ``batch_size`` 16 (the default) and 64, and with ``top_k=64``;
- pytorch-grad-cam ``ScoreCAM`` (its default batch of 16 masked images);
- the floor of any exact ScoreCAM: the ``no_grad`` forwards of the same
  ``512 * batch`` masked images in batches of 16, the masks made before the
  clock starts (both libraries run exactly these forwards; only masks that are
  equal can share one, which camseg does for constant channels);
- camseg ``AblationCAM`` and pytorch-grad-cam ``AblationCAM`` (its default
  batch of 32 copies) at ``layer4`` (camseg also with ``batch_size=512``) and
  at ``layer3`` (256 channels, with ``layer4`` above it);
- camseg ``FullGrad`` and pytorch-grad-cam ``FullGrad`` (every bias layer).

The head's bias is raised by 5 so that every score is positive: Ablation-CAM
divides by the score, and camseg (``/|y|``) and pytorch-grad-cam (``/y``) agree
only for positive scores.

Agreement: the largest absolute difference between camseg's and
pytorch-grad-cam's maps, both min-max normalised per image at the feature
resolution (pytorch-grad-cam's raw maps from ``get_cam_image``; float32, so
about 1e-6 is rounding; ``tests/test_reference.py`` checks equality in float64).
Load: ``uptime`` before and after, recorded with the results.

Run: ``python benchmarks/bench_perturbation.py`` (``--quick`` for a smoke run
that writes nothing). Writes results/bench_perturbation.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's per-image progress bars

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, summary, time_interleaved, uptime_text, write_results

import camseg

TARGET = 1


def _pgc_call(method: str, model: torch.nn.Module, layer: str, x: torch.Tensor) -> Any:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layers = [] if method == "FullGrad" else [model.get_submodule(layer)]
    targets = [ClassifierOutputTarget(TARGET)] * x.shape[0]

    def call() -> Any:
        cam = getattr(pgc, method)(model=model, target_layers=layers)
        try:
            return cam(input_tensor=x, targets=targets)
        finally:
            cam.activations_and_grads.release()

    return call


def _pgc_raw(method: str, model: torch.nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = model.get_submodule(layer)
    targets = [ClassifierOutputTarget(TARGET)] * x.shape[0]
    with getattr(pgc, method)(model=model, target_layers=[module]) as cam:
        cam.activations_and_grads(x)
        acts = cam.activations_and_grads.activations[0].numpy()
        raw = cam.get_cam_image(x, module, targets, acts, None, False)
    return camseg.functional.normalize(torch.from_numpy(np.maximum(raw, 0)))


def _masked_images(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ScoreCAM's ``(B * C, 3, H, W)`` masked images at ``layer4``: each channel
    bilinearly upsampled to the input, min-max scaled, times the image."""
    captured: list[torch.Tensor] = []
    handle = model.get_submodule("layer4").register_forward_hook(
        lambda _m, _i, out: captured.append(out.detach())
    )
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    up = torch.nn.functional.interpolate(captured[0], size=x.shape[-2:], mode="bilinear")
    flat = up.flatten(2)
    lo, hi = flat.amin(2, keepdim=True), flat.amax(2, keepdim=True)
    masks = ((flat - lo) / (hi - lo).clamp_min(1e-8)).view_as(up)
    return (x[:, None] * masks[:, :, None]).flatten(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, results not written")
    args = parser.parse_args()
    side, batch, repeats = (32, 1, 1) if args.quick else (96, args.batch, args.repeats)
    load_before = uptime_text()
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    with torch.no_grad():  # positive scores: Ablation-CAM's rules agree only there (see docs)
        model.fc.bias += 5.0
    x = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(1))

    fullgrad = camseg.FullGrad(model)

    def ours(cls: type, layer: str, **kw: Any) -> Any:
        cam = cls(model, layer, **kw)
        return lambda: cam(x, targets=TARGET)

    def forward() -> Any:
        with torch.no_grad():
            return model(x)

    masked = _masked_images(model, x)

    def floor() -> Any:
        with torch.no_grad():
            return [model(chunk) for chunk in masked.split(16)]

    fns = {
        "no_grad forward": forward,
        "camseg ScoreCAM layer4 (batch_size=16)": ours(camseg.ScoreCAM, "layer4", batch_size=16),
        "camseg ScoreCAM layer4 (batch_size=64)": ours(camseg.ScoreCAM, "layer4", batch_size=64),
        "camseg ScoreCAM layer4 (top_k=64)": ours(camseg.ScoreCAM, "layer4", top_k=64),
        "pytorch-grad-cam ScoreCAM layer4": _pgc_call("ScoreCAM", model, "layer4", x),
        "exact ScoreCAM floor: forwards of the masked images": floor,
        "camseg AblationCAM layer4": ours(camseg.AblationCAM, "layer4"),
        "camseg AblationCAM layer4 (batch_size=512)": ours(
            camseg.AblationCAM, "layer4", batch_size=512
        ),
        "pytorch-grad-cam AblationCAM layer4": _pgc_call("AblationCAM", model, "layer4", x),
        "camseg AblationCAM layer3": ours(camseg.AblationCAM, "layer3"),
        "pytorch-grad-cam AblationCAM layer3": _pgc_call("AblationCAM", model, "layer3", x),
        "camseg FullGrad": lambda: fullgrad(x, targets=TARGET),
        "pytorch-grad-cam FullGrad": _pgc_call("FullGrad", model, "", x),
    }
    times = time_interleaved(fns, repeats=repeats, warmup=1, device=torch.device("cpu"))
    med = {k: summary(v) for k, v in times.items()}

    agreement = {}
    for method, layer in (
        ("ScoreCAM", "layer4"),
        ("AblationCAM", "layer4"),
        ("AblationCAM", "layer3"),
    ):
        theirs = _pgc_raw(method, model, layer, x)
        mine = getattr(camseg, method)(model, layer)(x, targets=TARGET, size=None)
        agreement[f"{method} {layer}"] = float((mine - theirs).abs().max())
    from pytorch_grad_cam import FullGrad as PGCFullGrad
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with PGCFullGrad(model=model, target_layers=[]) as cam:
        theirs = torch.from_numpy(cam(x, targets=[ClassifierOutputTarget(TARGET)] * batch))
    agreement["FullGrad"] = float((fullgrad(x, targets=TARGET) - theirs).abs().max())
    load_after = uptime_text()

    def ratio(slow: str, fast: str) -> float:
        return med[slow]["median"] / med[fast]["median"]

    speedups = {
        "ScoreCAM layer4 (camseg default batch_size=16)": ratio(
            "pytorch-grad-cam ScoreCAM layer4", "camseg ScoreCAM layer4 (batch_size=16)"
        ),
        "ScoreCAM layer4, camseg batch_size=64": ratio(
            "pytorch-grad-cam ScoreCAM layer4", "camseg ScoreCAM layer4 (batch_size=64)"
        ),
        "ScoreCAM layer4, camseg top_k=64": ratio(
            "pytorch-grad-cam ScoreCAM layer4", "camseg ScoreCAM layer4 (top_k=64)"
        ),
        "ScoreCAM layer4: the most any exact ScoreCAM can gain (pytorch-grad-cam / floor)": ratio(
            "pytorch-grad-cam ScoreCAM layer4",
            "exact ScoreCAM floor: forwards of the masked images",
        ),
        "AblationCAM layer4 (camseg default batch_size=128)": ratio(
            "pytorch-grad-cam AblationCAM layer4", "camseg AblationCAM layer4"
        ),
        "AblationCAM layer4, camseg batch_size=512": ratio(
            "pytorch-grad-cam AblationCAM layer4", "camseg AblationCAM layer4 (batch_size=512)"
        ),
        "AblationCAM layer3": ratio(
            "pytorch-grad-cam AblationCAM layer3", "camseg AblationCAM layer3"
        ),
        "FullGrad": ratio("pytorch-grad-cam FullGrad", "camseg FullGrad"),
    }
    info = machine()
    payload = {
        "config": {"model": "resnet18", "side": side, "batch": batch, "repeats": repeats},
        "machine": info,
        "load_before": load_before,
        "load_after": load_after,
        "seconds": med,
        "speedup_vs_pytorch_grad_cam": speedups,
        "max_abs_diff_vs_pytorch_grad_cam": agreement,
    }
    fwd = med["no_grad forward"]["median"]
    lines = [
        "# ScoreCAM and AblationCAM: camseg (batched) vs. pytorch-grad-cam",
        "",
        f"ResNet-18, {batch} images of {side} x {side}, float32, CPU; median of {repeats} "
        "interleaved rounds after one warm-up. Produced by "
        "`python benchmarks/bench_perturbation.py`.",
        "",
        "| candidate | median s / call | IQR | × the forward |",
        "|---|---|---|---|",
    ]
    for name, s in med.items():
        iqr = f"{s['q1']:.3f}–{s['q3']:.3f}"
        lines.append(f"| {name} | {s['median']:.3f} | {iqr} | {s['median'] / fwd:.1f} |")
    lines += ["", "| method, layer | camseg speed-up over pytorch-grad-cam |", "|---|---|"]
    lines += [f"| {k} | {v:.1f}× |" for k, v in speedups.items()]
    lines += ["", "| method, layer | max abs diff of the min-max maps |", "|---|---|"]
    lines += [f"| {k} | {v:.1e} |" for k, v in agreement.items()]
    lines += [
        "",
        f"Load before: `{load_before}`; after: `{load_after}`.",
        "",
        machine_line(info),
        "",
    ]
    md = "\n".join(lines)
    print(md)
    if not args.quick:
        write_results("bench_perturbation", payload, md)


if __name__ == "__main__":
    main()
