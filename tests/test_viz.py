"""camseg.viz: colour maps, overlays and mask drawings as uint8 tensors."""

from __future__ import annotations

import pytest
import torch

from camseg import viz


@pytest.mark.parametrize("name", viz.COLORMAPS)
def test_colorize_endpoints_and_monotone_brightness(name):
    maps = torch.linspace(0, 1, 256).view(1, 16, 16)
    out = viz.colorize(maps, colormap=name)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 16, 16)
    if name in ("gray", "hot"):
        # brightness never decreases along the ramp
        lum = out.float().sum(1).flatten()
        assert bool((lum[1:] >= lum[:-1]).all())
    if name == "jet":
        assert out[0, :, 0, 0].tolist()[2] > 100 and out[0, 0, -1, -1] > 100  # blue -> red


def test_overlay_leaves_the_image_where_the_map_is_zero():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 8, 8, generator=g)
    maps = torch.zeros(3, 8, 8)
    maps[1, 2:5, 2:5] = 1.0
    out = viz.overlay(images, maps, alpha=0.6)
    plain = images.mul(255).round().to(torch.uint8)
    assert torch.equal(out[0], plain[0]) and torch.equal(out[2], plain[2])
    assert not torch.equal(out[1, :, 2:5, 2:5], plain[1, :, 2:5, 2:5])
    assert torch.equal(out[1, :, 6:, 6:], plain[1, :, 6:, 6:])


def test_overlay_resizes_maps_and_accepts_uint8_images():
    images = torch.full((2, 3, 12, 12), 100, dtype=torch.uint8)
    maps = torch.rand(2, 3, 3)
    out = viz.overlay(images, maps)
    assert out.shape == (2, 3, 12, 12) and out.dtype == torch.uint8


def test_draw_masks_outline_and_fill():
    images = torch.zeros(1, 3, 7, 7)
    masks = torch.zeros(1, 7, 7, dtype=torch.bool)
    masks[0, 1:6, 1:6] = True
    out = viz.draw_masks(images, masks, color=(0, 0, 255), fill=0.5, width=1)
    blue = out[0, 2]
    assert blue[1, 1] == 255 and blue[3, 3] == 128 and blue[0, 0] == 0
    # outline only
    edge = viz.draw_masks(images, masks, color=(0, 0, 255))[0, 2]
    assert int((edge == 255).sum()) == 16  # the ring of a 5x5 square


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: viz.colorize(torch.rand(2, 4)), ValueError, r"`maps`.*\(B, H, W\)"),
        (lambda: viz.colorize(torch.full((1, 2, 2), 2.0)), ValueError, r"`maps`.*normalize"),
        (lambda: viz.colorize(torch.full((1, 2, 2), float("nan"))), ValueError, "`maps`"),
        (lambda: viz.colorize(torch.ones(1, 2, 2, dtype=torch.long)), TypeError, "`maps`"),
        (lambda: viz.colorize(torch.rand(1, 2, 2), colormap="rainbow"), ValueError, "`colormap`"),
        (lambda: viz.overlay(torch.rand(2, 3, 4, 4), torch.rand(3, 4, 4)), ValueError, "`maps`"),
        (lambda: viz.overlay(torch.rand(1, 1, 4, 4), torch.rand(1, 4, 4)), ValueError, "`images`"),
        (
            lambda: viz.overlay(torch.rand(1, 3, 4, 4), torch.rand(1, 4, 4), alpha=1.5),
            ValueError,
            "`alpha`",
        ),
        (
            lambda: viz.draw_masks(torch.rand(1, 3, 4, 4), torch.ones(1, 4, 4)),
            TypeError,
            "`masks`",
        ),
        (
            lambda: viz.draw_masks(torch.rand(1, 3, 4, 4), torch.ones(1, 3, 4, dtype=torch.bool)),
            ValueError,
            "`masks`",
        ),
        (
            lambda: viz.draw_masks(
                torch.rand(1, 3, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool), color=(0, 300, 0)
            ),
            ValueError,
            "`color`",
        ),
        (
            lambda: viz.draw_masks(
                torch.rand(1, 3, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool), width=-1
            ),
            ValueError,
            "`width`",
        ),
        (lambda: viz.plot_grid({}), ValueError, "`rows`"),
        (
            lambda: viz.plot_grid({"a": torch.rand(2, 4, 4), "b": torch.rand(3, 4, 4)}),
            ValueError,
            "`rows`",
        ),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_plot_grid_draws_one_panel_per_image():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    images = torch.rand(3, 3, 8, 8)
    maps = torch.rand(3, 8, 8)
    fig = viz.plot_grid(
        {"image": images, "map": maps, "overlay": viz.overlay(images, maps)},
        columns=["a", "b", "c"],
    )
    try:
        assert len(fig.axes) == 9
        assert fig.axes[0].get_title() == "a" and fig.axes[0].get_ylabel() == "image"
    finally:
        plt.close(fig)
