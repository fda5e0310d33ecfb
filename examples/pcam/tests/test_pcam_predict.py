"""``predict``: gating by the classifier, tiling of large images, the files written."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from camseg_pcam import predict as P
from camseg_pcam.models import GAPClassifier, build_model
from camseg_pcam.predict import predict, predict_image
from PIL import Image

from camseg import functional as CF
from camseg.slide import tile_grid


def _model(seed: int = 0) -> GAPClassifier:
    torch.manual_seed(seed)
    return build_model("small", width=4).eval()


def _set_probability(model: GAPClassifier, image: torch.Tensor, p: float) -> None:
    """Shift the head's bias so the model gives tumor probability ``p`` for ``image``."""
    with torch.no_grad():
        logits, _ = model.forward_features(image[None])
        diff = float(logits[0, 1] - logits[0, 0])
        model.fc.bias[1] += math.log(p / (1 - p)) - diff


def _recording(model: GAPClassifier) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    model.features.register_forward_pre_hook(lambda m, a: shapes.append(tuple(a[0].shape)))
    return shapes


def test_a_patch_called_negative_shows_no_hot_spot() -> None:
    model = _model()
    image = torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(1))
    _set_probability(model, image, 0.29)
    pred = predict_image(model, image)
    assert pred.probability == pytest.approx(0.29, abs=1e-5)
    assert pred.tile_probs.shape == (1,)
    # the ungated map of this patch does have a hot spot: gating is what removes it
    with torch.no_grad():
        _, feats = model.forward_features(image[None])
        ungated = CF.linear_cam(feats, model.fc.weight, torch.ones(1, dtype=torch.long))
    assert float(ungated.max()) > 0
    assert float(pred.maps.abs().max()) == 0.0
    assert float(pred.display().max()) == 0.0
    assert not bool(pred.masks.any())
    # the same patch above the gate keeps its map, scaled to a maximum of 1 for display
    kept = predict_image(model, image, min_prob=0.2)
    assert float(kept.display().max()) == pytest.approx(1.0)
    assert bool(kept.masks.any()) and not bool(kept.masks.all())
    up = CF.upsample(ungated, (96, 96))[0]
    torch.testing.assert_close(kept.maps, up)


def test_a_large_image_is_cut_into_patches_and_stitched() -> None:
    model = _model()
    shapes = _recording(model)
    image = torch.rand(3, 512, 512, generator=torch.Generator().manual_seed(2))
    pred = predict_image(model, image, min_prob=0.0, batch_size=32)
    grid = tile_grid((512, 512), tile=96, stride=48)
    assert pred.tile_probs.shape == (len(grid),) == (100,)
    torch.testing.assert_close(pred.corners, grid)
    assert {s[1:] for s in shapes} == {(3, 96, 96)}  # never the 512 px image as one patch
    assert sum(s[0] for s in shapes) == 100 and max(s[0] for s in shapes) == 32
    assert pred.maps.shape == (512, 512) and pred.masks.shape == (512, 512)
    # the top-left 48 x 48 pixels are covered by the first tile only: its own map
    alone = predict_image(model, image[:, :96, :96], min_prob=0.0)
    torch.testing.assert_close(pred.maps[:48, :48], alone.maps[:48, :48])
    assert pred.tile_probs[0] == pytest.approx(alone.probability, abs=1e-6)
    assert pred.probability == pytest.approx(float(pred.tile_probs.max()))


def test_disjoint_tiles_stitch_to_the_maps_of_each_tile() -> None:
    model = _model(3)
    image = torch.rand(3, 192, 192, generator=torch.Generator().manual_seed(3))
    pred = predict_image(model, image, stride=96, blend="uniform", min_prob=0.0)
    assert pred.corners.tolist() == [[0, 0], [96, 0], [0, 96], [96, 96]]
    for x, y in pred.corners.tolist():
        tile = predict_image(model, image[:, y : y + 96, x : x + 96], min_prob=0.0)
        torch.testing.assert_close(pred.maps[y : y + 96, x : x + 96], tile.maps)


def test_tiles_are_gated_one_by_one() -> None:
    model = _model(4)
    image = torch.rand(3, 192, 96, generator=torch.Generator().manual_seed(4))
    pred = predict_image(model, image, stride=96, blend="uniform", min_prob=0.0)
    p_top, p_bottom = pred.tile_probs.tolist()
    gate = (p_top + p_bottom) / 2  # one tile above, one below
    gated = predict_image(model, image, stride=96, blend="uniform", min_prob=gate)
    low, high = ((0, 96), (96, 192)) if p_top < p_bottom else ((96, 192), (0, 96))
    assert float(gated.maps[low[0] : low[1]].abs().max()) == 0.0
    torch.testing.assert_close(gated.maps[high[0] : high[1]], pred.maps[high[0] : high[1]])
    assert gated.probability == pytest.approx(max(p_top, p_bottom))


def test_thin_images_are_padded_to_a_tile_and_cropped() -> None:
    model = _model()
    shapes = _recording(model)
    pred = predict_image(model, torch.rand(3, 40, 300), min_prob=0.0)
    assert pred.maps.shape == (40, 300)
    assert {s[1:] for s in shapes} == {(3, 96, 96)}
    small = predict_image(model, torch.rand(3, 50, 70))  # smaller than a patch: as it is
    assert small.maps.shape == (50, 70) and small.tile_probs.shape == (1,)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"stride": 120}, ValueError, r"`stride` to be at most `patch` \(96\)"),
        ({"stride": 0}, ValueError, r"`stride` to be an int >= 1"),
        ({"patch": 9.5}, TypeError, r"`patch` to be an int"),
        ({"min_prob": 1.5}, ValueError, r"`min_prob` to lie in \[0.0, 1.0\]"),
        ({"batch_size": 0}, ValueError, r"`batch_size` to be an int >= 1"),
        ({"blend": "box"}, ValueError, r"`blend` to be one of 'gaussian', 'uniform'"),
    ],
)
def test_bad_options_are_named(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        predict_image(_model(), torch.rand(3, 100, 100), **kwargs)


def test_bad_images_are_named() -> None:
    model = _model()
    with pytest.raises(TypeError, match="`image` to have a floating-point dtype"):
        predict_image(model, torch.zeros(3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"`image` to be a tensor of shape \(3, H, W\)"):
        predict_image(model, torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"`image` to lie in \[0.0, 1.0\].*1/255"):
        predict_image(model, torch.full((3, 8, 8), 255.0))


def test_predict_writes_map_mask_and_overlay_per_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model(5)
    monkeypatch.setattr(P, "load_checkpoint_model", lambda path, *, device="cpu": model)
    rng = np.random.default_rng(5)
    big = rng.integers(0, 256, (300, 512, 3), dtype=np.uint8)
    patch = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    (tmp_path / "a").mkdir()
    Image.fromarray(big).save(tmp_path / "big.png")
    Image.fromarray(patch).save(tmp_path / "p.png")
    Image.fromarray(patch).save(tmp_path / "a" / "p.png")  # the same stem twice
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        rows = predict(
            [tmp_path / "big.png", tmp_path / "p.png", tmp_path / "a" / "p.png"],
            tmp_path,
            out,
            min_prob=0.0,
        )
    finally:
        os.umask(old)
    assert [r["map"] for r in rows] == ["big_map.npy", "p_map.npy", "p_2_map.npy"]
    assert [r["overlay"] for r in rows] == ["big_cam.png", "p_cam.png", "p_2_cam.png"]
    assert rows[0]["tiles"] == len(tile_grid((512, 300), tile=96, stride=48))
    assert rows[1]["tiles"] == 1
    image = torch.from_numpy(big).permute(2, 0, 1).float() / 255.0
    expected = predict_image(model, image, min_prob=0.0)
    saved = np.load(out / "big_map.npy")
    assert saved.dtype == np.float32 and saved.shape == (300, 512)
    np.testing.assert_allclose(saved, expected.maps.numpy(), rtol=1e-6, atol=1e-7)
    mask = np.asarray(Image.open(out / "big_mask.png"))
    assert mask.shape == (300, 512) and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask == 255, expected.masks.numpy())
    assert np.asarray(Image.open(out / "big_cam.png")).shape == (300, 512, 3)
    assert rows[0]["probability"] == pytest.approx(expected.probability, abs=1e-6)
    with open(out / "predictions.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [t["map"] for t in table] == [r["map"] for r in rows]
    assert float(table[0]["probability"]) == pytest.approx(rows[0]["probability"])
    for name in os.listdir(out):
        assert not name.endswith(".part"), name
        assert (out / name).stat().st_mode & 0o777 == 0o644, name  # umask, not 0600


def test_predict_gates_a_negative_patch_in_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model(6)
    arr = np.random.default_rng(6).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    image = torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0
    _set_probability(model, image, 0.29)
    monkeypatch.setattr(P, "load_checkpoint_model", lambda path, *, device="cpu": model)
    Image.fromarray(arr).save(tmp_path / "neg.png")
    (row,) = predict([tmp_path / "neg.png"], tmp_path, tmp_path / "out", overlays=False)
    assert row["probability"] == pytest.approx(0.29, abs=1e-4)
    assert row["positive_tiles"] == 0 and row["overlay"] == ""
    assert not np.load(tmp_path / "out" / "neg_map.npy").any()
    assert not np.asarray(Image.open(tmp_path / "out" / "neg_mask.png")).any()
    assert not (tmp_path / "out" / "neg_cam.png").exists()
