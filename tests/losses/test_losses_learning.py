"""Learning check: the CAM losses must still turn maps into better tumour masks.

A tiny version of benchmarks/wsss_synthetic.py: a small GAP CNN trained from image
labels on camseg.synthetic, once with BCE only and once with BCE + the
regulariser mix of the benchmark; maps of held-out positives are thresholded with
Otsu and scored against the exact masks. Fails if the losses stop helping.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import camseg
from camseg import losses as L
from camseg.postprocess import threshold_otsu
from camseg.synthetic import make_patches, to_tensor_images


def _net() -> nn.Module:
    def block(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )

    model = nn.Sequential()
    model.features = nn.Sequential(
        block(3, 8, 2), block(8, 16, 2), block(16, 32, 1), block(32, 32, 1)
    )
    model.pool = nn.AdaptiveAvgPool2d(1)
    model.flat = nn.Flatten()
    model.fc = nn.Linear(32, 1)
    return model


def _pixel_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with camseg.LayerCapture(model, "features") as cap:
        logits = model(x)[:, 0]
        feats = cap.output
    ones = torch.ones(x.shape[0], dtype=torch.long)
    z = camseg.functional.linear_cam(feats, model.fc.weight, ones, relu=False) + model.fc.bias
    return logits, z


EPOCHS = 4


def _train(x: torch.Tensor, y: torch.Tensor, reg: L.CAMRegularizer | None) -> nn.Module:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = _net()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps = EPOCHS * ((len(x) + 31) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 32):
            idx = order[i : i + 32]
            # train on the centre 64x64 (the label region stays its centre), as the benchmark
            logits, z = _pixel_logits(model, x[idx][..., 16:80, 16:80])
            loss = F.binary_cross_entropy_with_logits(logits, y[idx].float())
            if reg is not None:
                loss = loss + reg(maps=torch.sigmoid(z), labels=y[idx]).total
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def _micro_iou(model: nn.Module, x: torch.Tensor, masks: torch.Tensor) -> float:
    _, z = _pixel_logits(model, x)
    maps = camseg.functional.upsample(torch.sigmoid(z), x.shape[-2:])
    pred = maps >= threshold_otsu(maps)[:, None, None]
    return float((pred & masks).sum() / (pred | masks).sum())


@pytest.mark.slow
def test_regularised_maps_segment_better_than_plain() -> None:
    train = make_patches(1024, seed=1)
    test = make_patches(128, seed=2)
    pos = test.labels == 1  # score the maps of positives (the gate is not tested here)
    x_tr, x_te = to_tensor_images(train.images), to_tensor_images(test.images[pos])
    masks = test.masks[pos]

    plain = _micro_iou(_train(x_tr, train.labels, None), x_te, masks)
    reg = L.CAMRegularizer({"smoothness": (L.SmoothnessLoss(), 1.0)})
    regularised = _micro_iou(_train(x_tr, train.labels, reg), x_te, masks)
    assert regularised > plain + 0.05, (plain, regularised)
