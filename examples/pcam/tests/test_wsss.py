"""The ``wsss`` preset's configuration logic (fast: no training)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from camseg_pcam.train import TrainConfig
from camseg_pcam.wsss import PRESETS, RECIPES, STAGE1, preset_configs, recommended_recipe

from camseg.losses import mil_loss, mil_pool


def test_preset_keeps_the_users_settings_and_chains_the_stages() -> None:
    cfg = TrainConfig(out="run", epochs=5, lr=1e-3, seed=7, batch_size=32)
    s1, s2 = preset_configs(cfg, "wsss")
    for stage in (s1, s2):
        assert (stage.lr, stage.seed, stage.batch_size) == (1e-3, 7, 32)
        assert stage.head == "mil" and stage.preset == "wsss"
    assert s1.epochs == 5 and s2.epochs == 3  # half the epochs, rounded up
    assert s1.out.endswith("stage1") and s2.out == "run"
    assert s2.teacher == s2.init and s2.teacher.endswith("best.pt")
    for key, value in STAGE1.items():
        assert getattr(s1, key) == value


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
