"""Bad input to camseg.metrics and camseg.viz: the defects of the bad-input sweep, fixed.

Each error is a ValueError or TypeError naming the argument in backticks.
"""

from __future__ import annotations

import math

import pytest
import torch

import camseg.metrics as M
from camseg import viz


def _maps_masks(b: int = 2, h: int = 4, w: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(b, h, w, generator=g)
    masks = torch.rand(b, h, w, generator=g) > 0.5
    masks[:, 0, 0] = True
    return maps, masks


# --------------------------------------------------------------------------- classification


def test_binary_stats_empty_batch() -> None:
    with pytest.raises(ValueError, match=r"`preds` to hold at least one sample.*\(0,\)"):
        M.binary_stats(torch.rand(0), torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize("fn", [M.cohen_kappa, M.confusion_matrix])
def test_class_ids_empty_batch(fn: object) -> None:
    empty = torch.zeros(0, dtype=torch.long)
    with pytest.raises(ValueError, match="`preds` to hold at least one sample"):
        fn(empty, empty, num_classes=3)  # type: ignore[operator]
    with pytest.raises(ValueError, match="`preds` to hold at least one sample"):
        fn(empty, empty)  # type: ignore[operator]


@pytest.mark.parametrize("fn", [M.cohen_kappa, M.confusion_matrix])
def test_class_ids_beyond_num_classes_name_the_argument(fn: object) -> None:
    ok = torch.tensor([0, 1, 2])
    bad = torch.tensor([0, 7, 2])
    with pytest.raises(ValueError, match=r"\[0, 2\] for `num_classes`=3, but `preds` holds id 7"):
        fn(bad, ok, num_classes=3)  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"but `labels` holds id 7"):
        fn(ok, bad, num_classes=3)  # type: ignore[operator]


def test_class_ids_valid_calls_unchanged() -> None:
    p, t = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2])
    assert M.confusion_matrix(p, t).tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert M.confusion_matrix(p, t, num_classes=4).shape == (4, 4)
    assert float(M.cohen_kappa(p, t, num_classes=3)) == pytest.approx(float(M.cohen_kappa(p, t)))


def test_nll_empty_batch() -> None:
    with pytest.raises(ValueError, match="`probs` to hold at least one sample"):
        M.nll(torch.rand(0), torch.zeros(0, dtype=torch.long))


# --------------------------------------------------------------------------- localization


@pytest.mark.parametrize("name", ["pointing_game", "energy_pointing_game"])
def test_pointing_games_empty(name: str) -> None:
    fn = getattr(M, name)
    maps, masks = _maps_masks()
    with pytest.raises(ValueError, match="`maps` to hold at least one image"):
        fn(maps[:0], masks[:0])
    # per-image values of no image: an empty result
    assert fn(maps[:0], masks[:0], average="none").shape == (0,)
    with pytest.raises(ValueError, match="`maps` to have at least one pixel per image"):
        fn(maps[..., :0], masks[..., :0])
    with pytest.raises(ValueError, match="`maps` to have at least one pixel per image"):
        fn(maps[..., :0, :], masks[..., :0, :], average="none")


def test_label_region_energy_empty() -> None:
    maps = torch.rand(2, 12, 12)
    with pytest.raises(ValueError, match="`maps` to hold at least one image"):
        M.label_region_energy(maps[:0], region=48)
    assert M.label_region_energy(maps[:0], region=48, average="none").shape == (0,)
    with pytest.raises(ValueError, match="`maps` to have at least one pixel per image"):
        M.label_region_energy(maps[..., :0], region=48)


def test_threshold_curve_empty_and_no_metrics() -> None:
    maps, masks = _maps_masks()
    with pytest.raises(ValueError, match="`maps` to hold at least one image"):
        M.threshold_curve(maps[:0], masks[:0], thresholds=5)
    with pytest.raises(ValueError, match="`maps` to have at least one pixel per image"):
        M.threshold_curve(maps[..., :0], masks[..., :0], thresholds=5)
    with pytest.raises(ValueError, match="`metrics` to name at least one metric"):
        M.threshold_curve(maps, masks, thresholds=5, metrics=())
    out = M.threshold_curve(maps, masks, thresholds=5, metrics=("iou",))
    assert set(out) == {"iou"} and out["iou"].shape == (5,)


# --------------------------------------------------------------------------- the rest


def test_estimated_tumor_area_pixel_area_zero() -> None:
    masks = torch.ones(2, 3, 3, dtype=torch.bool)
    groups = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"`pixel_area` to be a finite number > 0, but got 0\.0"):
        M.estimated_tumor_area(masks, groups, pixel_area=0.0)
    _, area = M.estimated_tumor_area(masks, groups, pixel_area=0.5)
    assert area.tolist() == [4.5, 4.5]


def test_randomization_similarity_images_without_pixels() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.Flatten())

    def explain(m: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x.mean(1)

    with pytest.raises(ValueError, match="`images` to have at least one pixel per image"):
        M.randomization_similarity(
            model, explain, torch.rand(2, 3, 4, 0), layers=["0"], targets=torch.tensor([0, 1])
        )


# --------------------------------------------------------------------------- viz


def test_draw_masks_empty_images_and_nothing_to_draw() -> None:
    images = torch.rand(2, 3, 4, 5)
    masks = torch.zeros(2, 4, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="`images` to have at least one pixel per image"):
        viz.draw_masks(images[..., :0], masks[..., :0])
    with pytest.raises(ValueError, match="`width` >= 1.*or `fill` > 0"):
        viz.draw_masks(images, masks, width=0)
    # width 0 with a fill is a tint without an outline, as documented
    assert viz.draw_masks(images, masks, width=0, fill=0.5).shape == (2, 3, 4, 5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"columns": 5}, TypeError, "`columns` to be a sequence of titles"),
        ({"columns": "ab"}, TypeError, "`columns` to be a sequence of titles"),
        ({"scale": "1"}, TypeError, "`scale` to be a finite number > 0"),
        ({"scale": None}, TypeError, "`scale` to be a finite number > 0"),
        ({"scale": 0.0}, ValueError, "`scale` to be a finite number > 0"),
        ({"scale": -1.0}, ValueError, "`scale` to be a finite number > 0"),
        ({"scale": math.nan}, ValueError, "`scale` to be a finite number > 0"),
        ({"scale": math.inf}, ValueError, "`scale` to be a finite number > 0"),
    ],
)
def test_plot_grid_bad_options(kwargs: dict[str, object], error: type, match: str) -> None:
    pytest.importorskip("matplotlib")
    with pytest.raises(error, match=match):
        viz.plot_grid({"a": torch.rand(2, 3, 4, 4)}, **kwargs)  # type: ignore[arg-type]
