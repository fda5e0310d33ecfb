"""Bad input to camseg.slide: the defects of the bad-input sweep, fixed.

Each error is a ValueError or TypeError naming the argument in backticks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import camseg.slide as S


def _reader() -> S.ArrayReader:
    return S.ArrayReader(np.zeros((24, 32, 3), np.uint8))


# --------------------------------------------------------------------------- readers


@pytest.mark.parametrize("path", [5, None])
def test_tiff_reader_path_type(path: object) -> None:
    with pytest.raises(TypeError, match="`path` to be a str or os.PathLike"):
        S.TiffReader(path)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("region", "name"),
    [
        ((-1, 0, 4, 4), "x"),
        ((10**6, 0, 4, 4), "x"),
        ((0, -1, 4, 4), "y"),
        ((0, 10**6, 4, 4), "y"),
        ((0, 0, 10**6, 4), "w"),
        ((30, 0, 4, 4), "w"),  # the corner is inside, the width overruns
        ((0, 0, 4, 10**6), "h"),
        ((0, 22, 4, 4), "h"),
    ],
)
def test_check_region_names_the_argument_out_of_range(
    region: tuple[int, int, int, int], name: str
) -> None:
    with pytest.raises(
        ValueError, match=rf"inside level 0 of size \(width=32, height=24\), but `{name}` takes"
    ):
        S.check_region(_reader(), 0, *region)


def test_check_region_max_pixels() -> None:
    with pytest.raises(TypeError, match="`max_pixels` to be an int"):
        S.check_region(_reader(), 0, 0, 0, 4, 4, max_pixels="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`max_pixels` to be an int >= 1"):
        S.check_region(_reader(), 0, 0, 0, 4, 4, max_pixels=0)
    assert S.check_region(_reader(), 0, 2, 3, 4, 4, max_pixels=16) == (0, 2, 3, 4, 4)
    assert S.check_region(_reader(), 0, 28, 20, 4, 4) == (0, 28, 20, 4, 4)


# --------------------------------------------------------------------------- annotations


def _ann() -> S.Annotation:
    return S.Annotation("t", "Tumor", ((np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0]]),),))


@pytest.mark.parametrize("annotations", [5, None, "x"])
def test_annotation_mask_annotations_type(annotations: object) -> None:
    with pytest.raises(TypeError, match="`annotations` to be an iterable of Annotation"):
        S.annotation_mask(annotations, size=(4, 4))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("max_pixels", "error"),
    [("2", TypeError), (None, TypeError), (True, TypeError), (0, ValueError)],
)
def test_annotation_mask_max_pixels(max_pixels: object, error: type) -> None:
    with pytest.raises(error, match="`max_pixels`"):
        S.annotation_mask([_ann()], size=(4, 4), max_pixels=max_pixels)  # type: ignore[arg-type]


def test_annotation_mask_valid_generator() -> None:
    mask = S.annotation_mask((a for a in [_ann()]), size=(4, 4), max_pixels=np.int64(16))
    assert mask.shape == (4, 4) and bool(mask.any())


# --------------------------------------------------------------------------- distributed


@pytest.mark.parametrize("path", [5, None])
def test_atomic_save_path_type(path: object) -> None:
    with pytest.raises(TypeError, match="`path` to be a str or os.PathLike"):
        S.atomic_save({"a": 1}, path)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"items": 5}, TypeError, "`items` to be a sequence"),
        ({"items": None}, TypeError, "`items` to be a sequence"),
        ({"fn": 5}, TypeError, "`fn` to be callable"),
        ({"fn": None}, TypeError, "`fn` to be callable"),
        ({"keys": 5}, TypeError, "`keys` to be a sequence"),
        ({"keys": [1]}, ValueError, r"`keys` to hold one key per item \(3\), but got 1"),
        ({"timeout": "1"}, TypeError, "`timeout` to be a finite number > 0"),
        ({"timeout": None}, TypeError, "`timeout` to be a finite number > 0"),
        ({"timeout": 0.0}, ValueError, "`timeout` to be a finite number > 0"),
        ({"timeout": -1.0}, ValueError, "`timeout` to be a finite number > 0"),
        ({"timeout": math.inf}, ValueError, "`timeout` to be a finite number > 0"),
        ({"timeout": math.nan}, ValueError, "`timeout` to be a finite number > 0"),
    ],
)
def test_run_sharded_bad_arguments(
    tmp_path: Path, kwargs: dict[str, object], error: type, match: str
) -> None:
    call: dict[str, object] = {"items": [1, 2, 3], "fn": lambda v: v * 2, "rank": 0}
    call.update(world_size=1, **kwargs)
    with pytest.raises(error, match=match):
        S.run_sharded(out_dir=tmp_path, **call)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())  # refused before any shard is written


def test_run_sharded_valid_call(tmp_path: Path) -> None:
    out = S.run_sharded((1, 2), lambda v: v + 1, tmp_path, keys=iter("ab"), rank=0, world_size=1)
    assert out == {"a": 2, "b": 3}


# --------------------------------------------------------------------------- splits


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"groups": 5}, TypeError, "`groups` to be a sequence"),
        ({"groups": None}, TypeError, "`groups` to be a sequence"),
        ({"groups": []}, ValueError, "`groups` to hold at least one group per split"),
        ({"labels": 5}, TypeError, "`labels` to be a sequence"),
        ({"fractions": "x"}, TypeError, "`fractions` to be a sequence"),
        ({"fractions": (0.5, "x")}, TypeError, "`fractions` to hold numbers"),
        ({"fractions": (math.nan, 1.0)}, ValueError, "`fractions` to be non-negative"),
    ],
)
def test_group_split_bad_arguments(kwargs: dict[str, object], error: type, match: str) -> None:
    call: dict[str, object] = {"groups": [f"p{i % 5}" for i in range(20)], "fractions": (0.6, 0.4)}
    call.update(kwargs)
    with pytest.raises(error, match=match):
        S.group_split(**call)  # type: ignore[arg-type]


def test_group_split_tensor_and_array_fractions() -> None:
    groups = [f"p{i % 5}" for i in range(20)]
    ref = S.group_split(groups, fractions=(0.6, 0.4))
    for fr in (torch.tensor([0.6, 0.4]), np.array([0.6, 0.4])):
        got = S.group_split(groups, fractions=fr)  # type: ignore[arg-type]
        assert all(torch.equal(a, b) for a, b in zip(got, ref))


# --------------------------------------------------------------------------- decisions


@pytest.mark.parametrize("bad", [5, None])
def test_patient_stages_types(bad: object) -> None:
    with pytest.raises(TypeError, match="`nodes` to be a sequence"):
        S.patient_stages(bad, ["a"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`patients` to be a sequence"):
        S.patient_stages(["macro"], bad)  # type: ignore[arg-type]


def test_stage_kappa_bad_stages() -> None:
    good = ["pN0", "pN1", "pN2"]
    for bad in (5, None):
        with pytest.raises(TypeError, match="`true_stages` to be a sequence"):
            S.stage_kappa(bad, good)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="`pred_stages` to be a sequence"):
            S.stage_kappa(good, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`true_stages` and `pred_stages` to have the same batch"):
        S.stage_kappa(good, ["pN0"])


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_slide_metrics_nonfinite(value: float) -> None:
    heat = torch.rand(4, 5)
    truth = torch.zeros(4, 5, dtype=torch.bool)
    truth[0, 0] = True
    bad = heat.clone()
    bad[2, 2] = value
    with pytest.raises(ValueError, match="`heatmap` to be finite"):
        S.slide_metrics(bad, truth)
    with pytest.raises(ValueError, match="`threshold` to be a finite number"):
        S.slide_metrics(heat, truth, threshold=value)
    assert float(S.slide_metrics(heat, truth, threshold=0.5).threshold) == 0.5


# --------------------------------------------------------------------------- export, synthetic


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"classification": 5}, TypeError, "`classification` to be a non-empty str"),
        ({"classification": None}, TypeError, "`classification` to be a non-empty str"),
        ({"classification": ""}, TypeError, "`classification` to be a non-empty str"),
        ({"colors": 5}, TypeError, "`colors` to be a mapping"),
        ({"threshold": "x"}, TypeError, "`threshold` to be a finite number"),
        ({"threshold": math.nan}, ValueError, "`threshold` to be a finite number"),
    ],
)
def test_write_geojson_bad_options(
    tmp_path: Path, kwargs: dict[str, object], error: type, match: str
) -> None:
    mask = torch.zeros(6, 8, dtype=torch.bool)
    mask[1:4, 2:6] = True
    with pytest.raises(error, match=match):
        S.write_geojson(tmp_path / "m.geojson", mask, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "m.geojson").exists()


def test_make_slide_infinite_mpp() -> None:
    with pytest.raises(ValueError, match="`mpp` to be a number > 0 and finite, but got inf"):
        S.make_slide(height=192, width=192, tumors=1, patch=32, pool=32, mpp=math.inf)
