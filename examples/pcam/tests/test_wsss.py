"""The ``wsss`` preset: configuration logic, label-region crops (fast: no training)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from camseg_pcam.augment import label_crops
from camseg_pcam.train import TrainConfig
from camseg_pcam.wsss import (
    PRESETS,
    RECIPES,
    STAGE1,
    STAGE2,
    preset_configs,
    recommended_recipe,
)

from camseg.losses import mil_loss, mil_pool


def test_preset_keeps_the_users_settings_and_chains_the_stages() -> None:
    cfg = TrainConfig(out="run", epochs=5, lr=1e-3, seed=7, batch_size=32)
    stages = preset_configs(cfg, "wsss")
    assert len(stages) == 1 + STAGE2["rounds"]
    for stage in stages:
        assert (stage.lr, stage.seed, stage.batch_size) == (1e-3, 7, 32)
        assert stage.head == "mil" and stage.preset == "wsss"
        assert stage.epochs == 5  # STAGE2["epoch_share"] = 1
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(STAGE2, "epoch_share", 0.5)
        assert preset_configs(cfg, "wsss")[1].epochs == 3  # a share, rounded up
        mp.setitem(STAGE2, "rounds", 1)
        assert [s.out for s in preset_configs(cfg, "wsss")] == [str(Path("run/stage1")), "run"]
    s1, *rounds = stages
    assert s1.out == str(Path("run/stage1")) and s1.teacher is None
    assert rounds[-1].out == "run"  # the final model is where evaluate --run looks
    previous = s1
    for stage in rounds:  # each round's teacher and start is the previous stage's best
        assert stage.teacher == stage.init == str(Path(previous.out) / "best.pt")
        assert stage.teacher_transforms == STAGE2["teacher_transforms"]
        previous = stage
    assert len({s.out for s in stages}) == len(stages)
    for key, value in STAGE1.items():
        assert getattr(s1, key) == value


def test_preset_keeps_the_users_self_training_settings() -> None:
    default = preset_configs(TrainConfig(out="run"))[-1]
    assert default.pseudo_margin == STAGE2["pseudo_margin"]
    assert default.teacher_transforms == STAGE2["teacher_transforms"]
    cfg = TrainConfig(out="run", pseudo_margin=0.1, pseudo_weight=0.5, teacher_transforms="c4")
    for stage in preset_configs(cfg)[1:]:
        assert (stage.pseudo_margin, stage.pseudo_weight, stage.teacher_transforms) == (
            0.1,
            0.5,
            "c4",
        )


def test_preset_keeps_the_users_mil_pooling() -> None:
    # the preset pools by the default log-mean-exp (benchmarks/wsss_pooling.py says
    # why it is kept); a user's "max" reaches every stage
    assert {s.mil_pooling for s in preset_configs(TrainConfig(out="run"))} == {"lse"}
    mine = preset_configs(TrainConfig(out="run", mil_pooling="max"))
    assert {s.mil_pooling for s in mine} == {"max"}


def test_mil_pooling_reaches_the_model_and_old_runs_load_as_lse() -> None:
    from camseg_pcam.models import build_model
    from camseg_pcam.train import _build_from_config

    torch.manual_seed(0)
    x = torch.rand(3, 3, 48, 48)
    for pooling in ("lse", "max"):
        m = build_model("small", width=4, head="mil", mil_pooling=pooling).eval()
        with torch.no_grad():
            logits, feats = m.forward_features(x)
            expected = mil_pool(m.tumor_logits(feats), pooling=pooling)
        torch.testing.assert_close(logits[:, 1] - logits[:, 0], expected)
    cfg = dataclasses.asdict(TrainConfig(out="run", head="mil", mil_pooling="max"))
    assert _build_from_config(cfg).mil_pooling == "max"
    del cfg["mil_pooling"]  # a config.json written before the option existed
    assert _build_from_config(cfg).mil_pooling == "lse"
    with pytest.raises(ValueError, match="`mil_pooling`"):
        TrainConfig(out="run", mil_pooling="mean").validate()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`mil_pooling`"):
        build_model("small", head="mil", mil_pooling="topk")  # type: ignore[arg-type]


def test_preset_configs_errors() -> None:
    with pytest.raises(ValueError, match="`preset`"):
        preset_configs(TrainConfig(out="run"), "nope")
    with pytest.raises(ValueError, match="`cam`"):
        preset_configs(dataclasses.replace(TrainConfig(out="run"), cam={"smoothness": 1.0}))


def test_recommended_recipe_is_a_known_recipe() -> None:
    assert "wsss" in PRESETS
    for config in ({"head": "mil"}, {"head": "gap"}, {}):
        assert recommended_recipe(config) in RECIPES
    assert recommended_recipe({"head": "mil"}) != recommended_recipe({"head": "gap"})


def test_mil_head_logits_train_a_centre_detector() -> None:
    # A seconds-long learning check of the MIL loss on a linear per-location head:
    # tumor features in the centre of positives only, some in the periphery of
    # negatives (which the label says nothing about). After training, the centre's
    # locations must be classified right, and the periphery must carry no loss.
    g = torch.Generator().manual_seed(0)
    b, c, h = 64, 3, 6
    labels = torch.arange(b) % 2
    feats = torch.randn(b, c, h, h, generator=g) * 0.1
    feats[labels == 1, 0, 2, 3] += 2.0  # one tumor location in the centre 2x2
    feats[labels == 0, 0, 0, 0] += 2.0  # tumor outside a negative's centre
    weight = torch.zeros(c, requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=0.1)
    for _ in range(150):
        logits = torch.einsum("bchw,c->bhw", feats, weight) + bias
        loss = mil_loss(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = torch.einsum("bchw,c->bhw", feats, weight) + bias
        pooled = mil_pool(logits)
    assert float(mil_loss(logits, labels)) < 0.2
    assert bool(((pooled > 0).long() == labels).all())
    # The periphery's tumor in negatives is detected too (same feature), though it
    # was never supervised: the head learned "tumor", not "positive patch".
    assert bool((logits[labels == 0, 0, 0] > 0).all())


# ------------------------------------------------------------ label-region crops


def test_label_crops_keep_the_label_region_and_align_masks() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(16, 3, 96, 96)
    masks = torch.rand(16, 96, 96) > 0.5
    crops, cmasks, regions = label_crops(images, masks, size=48, generator=g)
    assert crops.shape == (16, 3, 48, 48) and regions.shape == (16, 48, 48)
    assert cmasks is not None and cmasks.shape == (16, 48, 48) and cmasks.dtype == torch.bool
    offsets = set()
    for i in range(16):
        # find the crop's offset in the original image: the crop is a plain slice
        ys, xs = torch.nonzero(regions[i], as_tuple=True)
        oy, ox = 32 - int(ys.min()), 32 - int(xs.min())
        assert oy % 8 == 0 and ox % 8 == 0
        offsets.add((oy, ox))
        torch.testing.assert_close(crops[i], images[i, :, oy : oy + 48, ox : ox + 48])
        assert torch.equal(cmasks[i], masks[i, oy : oy + 48, ox : ox + 48])
        # the region is exactly the original centre 32x32, wherever it moved
        assert int(regions[i].sum()) == 32 * 32
        torch.testing.assert_close(crops[i][:, regions[i]], images[i, :, 32:64, 32:64].flatten(1))
    assert len(offsets) > 1  # the region moves
    # ... up to touching the crop's border, where the periphery sits at test time
    assert bool(regions[:, 0, :].any() or regions[:, -1, :].any())


def test_label_crops_full_size_is_the_identity_and_errors() -> None:
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 96, 96)
    crops, none, regions = label_crops(images, None, size=96, generator=g)
    assert none is None and torch.equal(crops, images)
    assert int(regions.sum()) == 2 * 32 * 32 and bool(regions[:, 32:64, 32:64].all())
    with pytest.raises(ValueError, match="`size`"):
        label_crops(images, None, size=24, generator=g)  # smaller than the region
    with pytest.raises(ValueError, match="`size`"):
        label_crops(images, None, size=128, generator=g)
    with pytest.raises(ValueError, match="`step`"):
        label_crops(images, None, size=40, generator=g, step=20)  # none in [24, 32]
    with pytest.raises(ValueError, match="square"):
        label_crops(torch.rand(1, 3, 96, 64), None, size=48, generator=g)


def test_crop_setting_is_validated() -> None:
    for bad in (-8, 12):
        with pytest.raises(ValueError, match="`crop`"):
            TrainConfig(out="run", crop=bad).validate()
    TrainConfig(out="run", crop=48).validate()


def test_teacher_probabilities_are_averaged_over_the_symmetries() -> None:
    # stage 2's pseudo-masks come from the teacher's probabilities averaged over
    # the 8 rotations and reflections: the same as averaging by hand, and the
    # same pseudo-masks for a rotated batch, turned back
    from types import SimpleNamespace

    from camseg_pcam.models import build_model
    from camseg_pcam.train import _dense_targets

    from camseg import functional as CF
    from camseg.postprocess import pseudo_masks

    torch.manual_seed(0)
    teacher = build_model("small", width=8, head="mil").eval()
    x, y = torch.rand(4, 3, 48, 48), torch.tensor([0, 1, 0, 1])

    def probs(im: torch.Tensor) -> torch.Tensor:
        logits = teacher.tumor_logits(teacher.forward_features(im)[1])
        return torch.sigmoid(CF.upsample(logits, im.shape[-2:]))

    cfg = dataclasses.replace(TrainConfig(out="run"), teacher_transforms="d4")
    run = SimpleNamespace(cfg=cfg, teacher=teacher)
    got = _dense_targets(run, x, y, None)  # type: ignore[arg-type]
    with torch.no_grad():
        mean = torch.stack(
            [
                CF.apply_transform(probs(CF.apply_transform(x, e)), e, inverse=True)
                for e in CF.transform_group("d4")
            ]
        ).mean(0)
        single = probs(x)
    assert got is not None
    assert torch.equal(got, pseudo_masks(mean, y, margin=cfg.pseudo_margin, region=1.0 / 3.0))
    turned = _dense_targets(run, CF.apply_transform(x, (1, True)), y, None)  # type: ignore[arg-type]
    assert turned is not None
    agree = (CF.apply_transform(turned, (1, True), inverse=True) == got).float().mean()
    assert agree > 0.99  # equal up to float rounding at the thresholds
    run.cfg = TrainConfig(out="run")  # "none": one pass
    plain = _dense_targets(run, x, y, None)  # type: ignore[arg-type]
    assert plain is not None
    assert torch.equal(plain, pseudo_masks(single, y, margin=cfg.pseudo_margin, region=1.0 / 3.0))


def test_teacher_transforms_setting() -> None:
    with pytest.raises(ValueError, match="`teacher_transforms`"):
        TrainConfig(out="run", teacher_transforms="d8").validate()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="without a `teacher`"):
        TrainConfig(out="run", teacher_transforms="d4").validate()
    TrainConfig(out="run", teacher="t.pt", teacher_transforms="d4").validate()
    s1, s2, *_ = preset_configs(TrainConfig(out="run"))
    assert (s1.teacher_transforms, s2.teacher_transforms) == ("none", STAGE2["teacher_transforms"])
