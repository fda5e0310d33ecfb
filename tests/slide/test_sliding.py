from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camseg.slide import (
    ArrayReader,
    blend_window,
    read_tiles,
    select_level,
    slide_mask,
    sliding_window,
    tile_grid,
)


def _red_slide(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return img


def identity(tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """'Model' whose map is the red channel and whose probability is 1."""
    return torch.ones(tiles.shape[0], dtype=tiles.dtype), tiles[:, 0]


# ----------------------------------------------------------------------------- tile_grid


def test_tile_grid_covers_and_stays_inside() -> None:
    for width, height, tile, stride in [(37, 23, 8, 3), (64, 64, 16, 16), (10, 9, 9, 20)]:
        coords = tile_grid((width, height), tile=tile, stride=stride)
        cover = np.zeros((height, width), int)
        for x, y in coords.tolist():
            assert x >= 0 and x + tile <= width and y >= 0 and y + tile <= height
            cover[y : y + tile, x : x + tile] += 1
        if stride <= tile:
            assert (cover > 0).all()


def test_tile_grid_edge_modes_by_hand() -> None:
    # width 11, tile 4, stride 3: regular starts 0, 3, 6 end at 10 -> shifted 7 added
    assert tile_grid((11, 4), tile=4, stride=3)[:, 0].tolist() == [0, 3, 6, 7]
    assert tile_grid((11, 4), tile=4, stride=3, edge="pad")[:, 0].tolist() == [0, 3, 6, 9]
    # exact fit: no extra tile in either mode
    assert tile_grid((10, 4), tile=4, stride=3)[:, 0].tolist() == [0, 3, 6]
    assert tile_grid((10, 4), tile=4, stride=3, edge="pad")[:, 0].tolist() == [0, 3, 6]
    # quantum rounds the shifted start down
    assert tile_grid((11, 4), tile=4, stride=4, quantum=2)[:, 0].tolist() == [0, 4, 6]
    # y-major order
    assert tile_grid((8, 8), tile=4).tolist() == [[0, 0], [4, 0], [0, 4], [4, 4]]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tile": 4, "stride": 0}, ValueError, "`stride` to be an int >= 1"),
        ({"tile": 4, "stride": -2}, ValueError, "`stride` to be an int >= 1"),
        ({"tile": 0}, ValueError, "`tile` to be an int >= 1"),
        ({"tile": 4.0}, TypeError, "`tile` to be an int"),
        ({"tile": 12}, ValueError, "`tile` \\(12\\) to fit in the slide"),
        ({"tile": 4, "edge": "wrap"}, ValueError, "`edge` to be one of"),
    ],
)
def test_tile_grid_bad_input(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        tile_grid((20, 10), **kwargs)


# ----------------------------------------------------------------------------- blend_window


def test_blend_window_values() -> None:
    assert torch.equal(blend_window(3, blend="uniform"), torch.ones(3, 3))
    w = blend_window(5, sigma=0.2, dtype=torch.float64)
    g = np.exp(-((np.arange(5) - 2.0) ** 2) / 2.0)  # sigma * T = 1
    np.testing.assert_allclose(w.numpy(), np.outer(g, g), rtol=1e-12)
    assert float(w.max()) == 1.0 and float(w.min()) > 0
    with pytest.raises(ValueError, match="`sigma` to be a number > 0"):
        blend_window(4, sigma=0.0)
    with pytest.raises(ValueError, match="`blend` to be one of"):
        blend_window(4, blend="cosine")


# ----------------------------------------------------------------------------- stitching


@pytest.mark.parametrize("blend", ["uniform", "gaussian"])
@pytest.mark.parametrize("edge", ["shift", "pad"])
@pytest.mark.parametrize(("tile", "stride"), [(8, 4), (8, 3), (8, 8), (6, 5)])
def test_identity_model_reproduces_input(blend, edge, tile, stride) -> None:
    img = _red_slide(29, 41)
    out = sliding_window(
        ArrayReader(img),
        identity,
        tile=tile,
        stride=stride,
        blend=blend,
        edge=edge,
        batch_size=5,
        gate=False,
        dtype=torch.float64,
        progress=False,
    )
    expected = (torch.from_numpy(img[..., 0]).float() / 255.0).double()  # model input: float32
    torch.testing.assert_close(out.cam, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.prob, torch.ones_like(expected), rtol=1e-12, atol=1e-12)
    assert bool((out.weight > 0).all())


def test_identity_model_with_output_downsample() -> None:
    img = _red_slide(30, 42)
    out = sliding_window(
        ArrayReader(img),
        identity,
        tile=8,
        stride=4,
        output_downsample=4,
        gate=False,
        dtype=torch.float64,
        progress=False,
    )
    red = (torch.from_numpy(img[..., 0]).float()[None, None] / 255.0).double()
    expected = F.avg_pool2d(red, 4)[0, 0]  # (7, 10): whole output pixels only
    assert out.cam.shape == (7, 10)
    torch.testing.assert_close(out.cam, expected, rtol=1e-12, atol=1e-12)
    assert out.downsample == 4.0


def test_overlap_weights_sum_at_borders_uniform() -> None:
    # width 10, tile 4, stride 2 -> x starts 0, 2, 4, 6: counts 1,1,2,2,2,2,2,2,1,1
    img = _red_slide(6, 10)
    out = sliding_window(
        ArrayReader(img), identity, tile=4, stride=2, blend="uniform", progress=False
    )
    cx = torch.tensor([1, 1, 2, 2, 2, 2, 2, 2, 1, 1.0])
    cy = torch.tensor([1, 1, 2, 2, 1, 1.0])  # y starts 0, 2
    torch.testing.assert_close(out.weight, torch.outer(cy, cx))


def test_overlap_weights_sum_at_borders_gaussian_shifted_edge() -> None:
    # width 11, tile 4, stride 3: starts 0, 3, 6, 7 (the last one shifted)
    img = _red_slide(4, 11)
    out = sliding_window(
        ArrayReader(img),
        identity,
        tile=4,
        stride=3,
        sigma=0.25,
        dtype=torch.float64,
        progress=False,
    )
    g = np.exp(-((np.arange(4) - 1.5) ** 2) / 2.0)
    wx = np.zeros(11)
    for s in (0, 3, 6, 7):
        wx[s : s + 4] += g
    np.testing.assert_allclose(out.weight.numpy(), np.outer(g, wx), rtol=1e-12)


def test_pad_edge_tiles_crop_and_pad_white() -> None:
    img = _red_slide(9, 11)
    seen: list[torch.Tensor] = []

    def spy(tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(tiles.clone())
        return identity(tiles)

    out = sliding_window(
        ArrayReader(img), spy, tile=4, stride=4, edge="pad", gate=False, progress=False
    )
    tiles = torch.cat(seen)
    assert out.coords.tolist()[-1] == [8, 8]
    last = tiles[-1, 0]  # covers x 8..11, y 8..11 of a 9 x 11 slide: 3 x 1 inside
    torch.testing.assert_close(last[:1, :3] * 255, torch.from_numpy(img[8:9, 8:11, 0]).float())
    assert bool((last[1:] == 1.0).all()) and bool((last[:, 3:] == 1.0).all())
    assert out.cam.shape == (9, 11)


def test_batch_size_does_not_change_the_result() -> None:
    img = _red_slide(20, 26)

    def fn(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return t.mean(dim=(1, 2, 3)), t[:, 1] * t[:, 2]

    a = sliding_window(ArrayReader(img), fn, tile=8, stride=3, batch_size=1, progress=False)
    b = sliding_window(ArrayReader(img), fn, tile=8, stride=3, batch_size=64, progress=False)
    torch.testing.assert_close(a.cam, b.cam)
    torch.testing.assert_close(a.prob, b.prob)
    torch.testing.assert_close(a.tile_probs, b.tile_probs)


def test_tile_probs_gating_and_low_resolution_maps() -> None:
    img = np.zeros((8, 16, 3), np.uint8)
    img[:, 8:] = 255  # right half bright

    def fn(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # prob = mean brightness, map at 2 x 2 (upsampled bilinearly to the tile)
        return t.mean(dim=(1, 2, 3)), torch.full((t.shape[0], 2, 2), 0.5)

    out = sliding_window(ArrayReader(img), fn, tile=8, stride=8, blend="uniform", progress=False)
    assert out.tile_probs.tolist() == [0.0, 1.0]
    expected_cam = torch.zeros(8, 16)
    expected_cam[:, 8:] = 0.5  # gated: 0.5 * prob
    torch.testing.assert_close(out.cam, expected_cam)
    torch.testing.assert_close(out.prob, expected_cam * 2)


class _Result(NamedTuple):
    maps: torch.Tensor
    logits: torch.Tensor
    targets: torch.Tensor


class FakeCAM:
    """Has the CAM engine's `explain` signature; records its calls."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def explain(self, x, targets=None, *, normalize="minmax", size="input"):
        self.calls.append({"targets": targets, "normalize": normalize, "size": size})
        b = x.shape[0]
        logits = torch.stack([torch.zeros(b), x.mean(dim=(1, 2, 3)) * 4], dim=1)
        return _Result(x[:, 2], logits, torch.full((b,), 1))


def test_cam_extractor_protocol() -> None:
    img = _red_slide(16, 16)
    cam = FakeCAM()
    out = sliding_window(
        ArrayReader(img),
        cam,
        tile=8,
        stride=8,
        targets=1,
        cam_normalize=None,
        gate=False,
        blend="uniform",
        progress=False,
    )
    assert cam.calls[0] == {"targets": 1, "normalize": None, "size": "input"}
    tiles = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    first = tiles[:, :8, :8].mean() * 4
    assert float(out.tile_probs[0]) == pytest.approx(float(torch.sigmoid(first)), rel=1e-6)
    torch.testing.assert_close(out.cam, tiles[2])


def test_transform_applied_before_model() -> None:
    img = _red_slide(8, 8)
    out = sliding_window(
        ArrayReader(img),
        identity,
        tile=8,
        transform=lambda x: x * 2 - 1,
        gate=False,
        progress=False,
    )
    torch.testing.assert_close(out.cam, torch.from_numpy(img[..., 0]).float() / 255 * 2 - 1)


def test_tissue_mask_skips_background_tiles() -> None:
    img = _red_slide(16, 32)
    tissue = torch.zeros(4, 8, dtype=torch.bool)  # coarse mask, 4x smaller
    tissue[:, :4] = True  # left half is tissue
    read: list[int] = []

    class CountingReader(ArrayReader):
        def read(self, level, x, y, w, h):
            read.append(x)
            return super().read(level, x, y, w, h)

    out = sliding_window(
        CountingReader(img),
        identity,
        tile=8,
        stride=8,
        tissue=tissue,
        gate=False,
        progress=False,
    )
    assert sorted(set(read)) == [0, 8]  # right-half tiles never read
    assert bool((out.weight[:, :16] > 0).all()) and bool((out.weight[:, 16:] == 0).all())
    assert bool((out.cam[:, 16:] == 0).all())
    assert out.coords.shape == (4, 2)


def test_all_background_gives_empty_maps() -> None:
    img = _red_slide(8, 8)
    out = sliding_window(
        ArrayReader(img),
        identity,
        tile=4,
        tissue=torch.zeros(8, 8, dtype=torch.bool),
        progress=False,
    )
    assert out.coords.shape == (0, 2) and out.tile_probs.shape == (0,)
    assert bool((out.weight == 0).all()) and bool((out.cam == 0).all())


def test_levels_and_mpp() -> None:
    img = _red_slide(64, 64)
    reader = ArrayReader([img, img[::2, ::2].copy(), img[::4, ::4].copy()], mpp=0.25)
    assert select_level(reader, 0.5) == 1
    out = sliding_window(reader, identity, tile=8, level=2, mpp=1.0, gate=False, progress=False)
    assert out.level == 2 and out.mpp == pytest.approx(1.0) and out.cam.shape == (16, 16)
    torch.testing.assert_close(out.cam * 255, torch.from_numpy(img[::4, ::4, 0]).float())


def test_read_tiles_pads_with_white() -> None:
    img = np.zeros((5, 5, 3), np.uint8)
    tiles = read_tiles(ArrayReader(img), 0, torch.tensor([[0, 0], [3, 3]]), 4)
    assert tiles.shape == (2, 3, 4, 4) and tiles.dtype == torch.uint8
    assert int(tiles[0].max()) == 0
    assert int(tiles[1, :, :2, :2].max()) == 0 and int(tiles[1, :, 2:, :].min()) == 255
    with pytest.raises(ValueError, match="`coords` to overlap level 0"):
        read_tiles(ArrayReader(img), 0, torch.tensor([[5, 0]]), 4)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tile": 8, "stride": 0}, ValueError, "`stride` to be an int >= 1"),
        ({"tile": 8, "stride": -4}, ValueError, "`stride` to be an int >= 1"),
        ({"tile": 64}, ValueError, r"`tile` \(64\) to fit in the slide"),
        ({"tile": 8, "batch_size": 0}, ValueError, "`batch_size`"),
        ({"tile": 8, "output_downsample": 3}, ValueError, "`output_downsample` \\(3\\) to divide"),
        ({"tile": 8, "level": 1}, ValueError, "`level`"),
        ({"tile": 8, "mpp": 0.5}, ValueError, "about 0.5 microns per pixel.*has 0.25"),
        ({"tile": 8, "tissue": "yes"}, TypeError, "`tissue` to be a TissueFilter"),
        ({"tile": 8, "tissue": torch.ones(4, 4)}, ValueError, "`tissue` mask"),
        (
            {"tile": 8, "tissue": torch.ones(20, 5, dtype=torch.bool)},
            ValueError,
            "cover the whole level",
        ),
        ({"tile": 8, "targets": 1.0}, TypeError, "`targets` to be an int or None"),
        ({"tile": 8, "cam_normalize": "sum"}, ValueError, "`cam_normalize`"),
        ({"tile": 8, "blend": "box"}, ValueError, "`blend`"),
    ],
)
def test_sliding_window_bad_input(kwargs, error, match) -> None:
    reader = ArrayReader(_red_slide(24, 40), mpp=0.25)
    with pytest.raises(error, match=match):
        sliding_window(reader, identity, progress=False, **kwargs)


def test_mpp_unknown_and_level_selection_errors() -> None:
    reader = ArrayReader(_red_slide(24, 40))
    with pytest.raises(ValueError, match="reader to know its microns per pixel"):
        sliding_window(reader, identity, tile=8, mpp=0.5, progress=False)
    with pytest.raises(ValueError, match="reader to know its microns per pixel"):
        select_level(reader, 0.5)
    with pytest.raises(ValueError, match="a level with about 2 microns per pixel"):
        select_level(ArrayReader(_red_slide(24, 40), mpp=0.25), 2.0)


@pytest.mark.parametrize(
    ("fn", "error", "match"),
    [
        (lambda t: t[:, 0], TypeError, r"returning \(probs, maps\)"),
        (lambda t: (torch.ones(1), t[:, 0]), ValueError, "probabilities to be a tensor of shape"),
        (lambda t: (torch.ones(t.shape[0]), t), ValueError, "maps to be a tensor of shape"),
    ],
)
def test_bad_extractor_outputs(fn, error, match) -> None:
    with pytest.raises(error, match=match):
        sliding_window(ArrayReader(_red_slide(16, 16)), fn, tile=8, progress=False)


def test_slide_mask_threshold_and_coverage() -> None:
    img = np.zeros((8, 24, 3), np.uint8)
    img[:, 8:16] = 255

    def fn(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return t.mean(dim=(1, 2, 3)), torch.full((t.shape[0], 8, 8), 0.8)

    tissue = torch.ones(8, 24, dtype=torch.bool)
    tissue[:, 16:] = False  # the last tile is never run
    out = sliding_window(
        ArrayReader(img), fn, tile=8, tissue=tissue, blend="uniform", progress=False
    )
    expected = torch.zeros(8, 24, dtype=torch.bool)
    expected[:, 8:16] = True  # cam = 0.8 * prob: 0 on the dark tile, 0.8 on the bright one
    assert torch.equal(slide_mask(out), expected)
    assert torch.equal(slide_mask(out, threshold="otsu"), expected)
    assert torch.equal(slide_mask(out, source="prob", threshold=0.9), expected)
    assert not bool(slide_mask(out, threshold=0.0)[:, 16:].any())  # uncovered stays False
    with pytest.raises(TypeError, match="`maps` to be a SlideMaps"):
        slide_mask(out.cam)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`source`"):
        slide_mask(out, source="both")  # type: ignore[arg-type]


def test_with_the_camseg_gradcam_engine() -> None:
    """sliding_window with a real extractor equals per-tile CAMs where tiles do not overlap."""
    import camseg

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )
    img = _red_slide(16, 24)
    cam = camseg.GradCAM(model, "1")
    out = sliding_window(
        ArrayReader(img),
        cam,
        tile=8,
        stride=8,
        blend="uniform",
        gate=False,
        cam_normalize="minmax",
        progress=False,
    )
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    tiles = torch.stack([x[:, y : y + 8, xx : xx + 8] for y in (0, 8) for xx in (0, 8, 16)])
    res = cam.explain(tiles, 1, normalize="minmax", size="input")
    probs = torch.softmax(res.logits, 1)[:, 1]
    torch.testing.assert_close(out.tile_probs, probs.detach())
    stitched = torch.cat([torch.cat(list(res.maps[r * 3 : r * 3 + 3]), dim=1) for r in (0, 1)])
    torch.testing.assert_close(out.cam, stitched.detach())


# ----------------------------------------------------------------------------- issue 12 / 13


def test_select_level_rejects_nan_tolerance() -> None:
    reader = ArrayReader(_red_slide(24, 40), mpp=0.25)
    with pytest.raises(ValueError, match="`tolerance` to be a finite number >= 0"):
        select_level(reader, 0.25, tolerance=float("nan"))
    with pytest.raises(TypeError, match="`tolerance`"):
        select_level(reader, 0.25, tolerance="0.1")  # type: ignore[arg-type]


def test_integer_dtypes_refused_not_zeroed() -> None:
    with pytest.raises(TypeError, match="`dtype` to be a floating torch dtype"):
        blend_window(8, dtype=torch.int64)
    with pytest.raises(TypeError, match="`dtype` to be a floating torch dtype"):
        sliding_window(ArrayReader(_red_slide(16, 16)), identity, tile=8, dtype=torch.int64)


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (
            lambda t: (torch.full((t.shape[0],), 300.0), t[:, 0]),
            r"probabilities to lie in \[0, 1\]",
        ),
        (lambda t: (torch.ones(t.shape[0]), t[:, 0] * float("nan")), "maps to be finite"),
    ],
)
def test_bad_extractor_values_refused(fn, match) -> None:
    with pytest.raises(ValueError, match=match):
        sliding_window(ArrayReader(_red_slide(16, 16)), fn, tile=8, progress=False)


@pytest.mark.parametrize(
    ("value", "error"),
    [(2, ValueError), (-0.1, ValueError), (float("nan"), ValueError), ("a", TypeError)],
)
def test_min_tissue_out_of_range(value, error) -> None:
    mask = torch.ones(4, 4, dtype=torch.bool)
    with pytest.raises(error, match="`min_tissue`"):
        sliding_window(
            ArrayReader(_red_slide(16, 16)), identity, tile=8, tissue=mask, min_tissue=value
        )


def test_bad_device_and_reader() -> None:
    with pytest.raises(ValueError, match="`device` to name a torch device"):
        sliding_window(ArrayReader(_red_slide(16, 16)), identity, tile=8, device="gpu0")
    with pytest.raises(TypeError, match="`device`"):
        blend_window(8, device=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`reader` to be a RegionReader"):
        sliding_window(5, identity, tile=8)  # type: ignore[arg-type]


def test_tile_grid_refuses_huge_grids_before_allocating() -> None:
    import time

    start = time.perf_counter()
    with pytest.raises(ValueError, match="at most .* tiles"):
        tile_grid((2**31, 2**31), tile=256)
    assert time.perf_counter() - start < 0.5  # counted, not built


def test_cam_extractor_protocol_matches_camseg_extractors() -> None:
    import camseg
    from camseg.slide import CAMExtractor

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    assert isinstance(camseg.GradCAM(model, "0"), CAMExtractor)
    assert isinstance(FakeCAM(), CAMExtractor)
    assert not isinstance(identity, CAMExtractor)


def test_tqdm_is_needed_only_for_a_progress_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "tqdm", None)  # "not installed": importing it fails
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    img = _red_slide(6, 10)
    out = sliding_window(ArrayReader(img), identity, tile=4, stride=2, progress=False)
    assert out.cam.shape == (6, 10)
    with pytest.raises(ImportError, match=r"camseg\[slide\]"):
        sliding_window(ArrayReader(img), identity, tile=4, stride=2, progress=True)


@pytest.mark.parametrize(
    ("size", "error", "match"),
    [
        ("x", TypeError, "`size` to be a pair of ints"),
        ((4,), TypeError, "`size` to be a pair of ints"),
        ((4.0, 4), TypeError, "`size` to be a pair of ints"),
        ((0, 4), ValueError, "`size` to have width and height >= 1"),
        ((-1, 4), ValueError, "`size` to have width and height >= 1"),
    ],
)
def test_tile_grid_bad_size(size, error, match) -> None:
    with pytest.raises(error, match=match):
        tile_grid(size, tile=4)


def test_read_tiles_and_select_level_name_their_bad_arguments() -> None:
    reader = ArrayReader(np.zeros((8, 8, 3), np.uint8), mpp=0.5)
    with pytest.raises(TypeError, match="`coords` to be an integer tensor"):
        read_tiles(reader, 0, torch.zeros(1, 2), 4)
    with pytest.raises(ValueError, match="`mpp` to be a finite number > 0"):
        select_level(reader, float("inf"))
    with pytest.raises(TypeError, match="`mpp` to be a number"):
        select_level(reader, "1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`reader`"):
        select_level(None, 1.0)  # type: ignore[arg-type]
