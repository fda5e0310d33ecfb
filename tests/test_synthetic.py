"""camseg.synthetic: PCam-like patches with exact masks."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from camseg.synthetic import (
    SyntheticPatches,
    label_region_mask,
    make_patches,
    to_tensor_images,
)


@pytest.fixture(scope="module")
def batch() -> SyntheticPatches:
    return make_patches(192, seed=7)


def test_types_and_shapes(batch: SyntheticPatches) -> None:
    images, labels, masks = batch
    assert images.dtype == torch.uint8 and images.shape == (192, 96, 96, 3)
    assert labels.dtype == torch.int64 and labels.shape == (192,)
    assert masks.dtype == torch.bool and masks.shape == (192, 96, 96)


def test_labels_follow_the_pcam_rule(batch: SyntheticPatches) -> None:
    centre = torch.zeros(96, 96, dtype=torch.bool)
    centre[32:64, 32:64] = True
    in_centre = (batch.masks & centre).flatten(1).any(1)
    assert torch.equal(batch.labels, in_centre.long())


def test_mix_of_patch_kinds(batch: SyntheticPatches) -> None:
    labels, masks = batch.labels, batch.masks
    centre = label_region_mask()
    pos = labels == 1
    frac_pos = pos.float().mean().item()
    assert 0.4 < frac_pos < 0.6
    # negatives with tumour outside the centre only, as in PCam
    peripheral = (~pos) & masks.flatten(1).any(1)
    assert 0.1 < peripheral[~pos].float().mean().item() < 0.5
    # about half of the positives hold tumour beyond the label region
    beyond = (masks & ~centre).flatten(1).any(1)
    assert 0.3 < beyond[pos].float().mean().item() < 0.7
    # clean negatives exist too
    assert (~masks.flatten(1).any(1) & ~pos).any()


def test_deterministic_and_prefix_stable() -> None:
    a = make_patches(66, seed=3, size=48, label_region=16)
    b = make_patches(66, seed=3, size=48, label_region=16)
    c = make_patches(5, seed=3, size=48, label_region=16)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    for x, y in zip(a, c):
        assert torch.equal(x[:5], y)
    d = make_patches(5, seed=4, size=48, label_region=16)
    assert not torch.equal(c.images, d.images)


def test_scratch_buffers_carry_no_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks reuse scratch buffers: fresh, garbage-filled ones must give the same patches."""
    from camseg import synthetic

    expected = make_patches(130, seed=4, size=48, label_region=16)

    class Fresh(synthetic._Scratch):
        def __call__(
            self,
            name: str,
            *shape: int,
            dtype: torch.dtype = torch.float32,
            init: Callable[[torch.Tensor], object] | None = None,
        ) -> torch.Tensor:
            fill = float("nan") if dtype.is_floating_point else 77
            t = torch.full(shape, fill, dtype=dtype)
            if init is not None:
                init(t)
            return t

    monkeypatch.setattr(synthetic, "_Scratch", Fresh)
    got = make_patches(130, seed=4, size=48, label_region=16)
    for x, y in zip(expected, got):
        assert torch.equal(x, y)


def test_independent_of_thread_count() -> None:
    threads = torch.get_num_threads()
    a = make_patches(70, seed=8)
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        b = make_patches(70, seed=8)
    finally:
        torch.set_num_threads(threads)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_fractions_zero_and_one() -> None:
    neg = make_patches(64, seed=0, tumor_fraction=0.0, peripheral_fraction=0.0)
    assert neg.labels.sum() == 0 and not neg.masks.any()
    pos = make_patches(64, seed=0, tumor_fraction=1.0)
    assert bool((pos.labels == 1).all())
    periph = make_patches(64, seed=0, tumor_fraction=0.0, peripheral_fraction=1.0)
    assert periph.labels.sum() == 0
    assert periph.masks.flatten(1).any(1).float().mean() > 0.5


def test_other_sizes_and_label_regions() -> None:
    images, labels, masks = make_patches(32, size=64, label_region=16, seed=1)
    assert images.shape == (32, 64, 64, 3)
    centre = label_region_mask(size=64, label_region=16)
    assert torch.equal(labels, (masks & centre).flatten(1).any(1).long())
    big = make_patches(8, size=128, seed=1)
    assert big.images.shape == (8, 128, 128, 3)


def test_n_zero() -> None:
    images, labels, masks = make_patches(0)
    assert images.shape == (0, 96, 96, 3) and labels.shape == (0,) and masks.shape == (0, 96, 96)


def test_looks_like_he(batch: SyntheticPatches) -> None:
    """Eosin-pink tissue with purple nuclei: red and blue above green on average."""
    rgb = batch.images.float().mean(dim=(0, 1, 2))
    assert rgb[0] > rgb[1] and rgb[2] > rgb[1]
    # nuclei (haematoxylin) are darker than the tissue around them: a wide spread
    grey = batch.images.float().mean(-1)
    assert grey.std() > 20


def test_background_holes_are_bright_and_not_tumour() -> None:
    with_bg = make_patches(64, seed=2, background=1.0)
    without = make_patches(64, seed=2, background=0.0)
    bright = lambda p: p.images.float().min(-1).values > 220  # noqa: E731
    assert bright(with_bg).float().mean() > bright(without).float().mean() + 0.02
    assert not (bright(with_bg) & with_bg.masks).float().mean() > 0.001


def test_single_pixel_colour_does_not_tell_tumour() -> None:
    """A colour-only pixel classifier is far from perfect: morphology carries the label."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    from sklearn.metrics import roc_auc_score

    images, _, masks = make_patches(96, seed=11)
    x = images.reshape(-1, 3).float().numpy() / 255
    y = masks.reshape(-1).numpy()
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(x), generator=g)[:20000].numpy()
    tr, te = idx[:10000], idx[10000:]
    clf = sklearn.LogisticRegression(max_iter=500).fit(x[tr], y[tr])
    auc = roc_auc_score(y[te], clf.predict_proba(x[te])[:, 1])
    assert 0.5 < auc < 0.8


def test_stain_jitter_varies_colour() -> None:
    flat = make_patches(64, seed=5, stain_jitter=0.0)
    jit = make_patches(64, seed=5, stain_jitter=0.3)
    spread = lambda p: p.images.float().mean(dim=(1, 2)).std(0).mean()  # noqa: E731
    assert spread(jit) > spread(flat)


def test_to_tensor_images_values() -> None:
    x = torch.zeros(1, 2, 3, 3, dtype=torch.uint8)
    x[0, 1, 2] = torch.tensor([255, 51, 0], dtype=torch.uint8)
    t = to_tensor_images(x)
    assert t.shape == (1, 3, 2, 3) and t.dtype == torch.float32
    assert t[0, :, 1, 2].tolist() == pytest.approx([1.0, 0.2, 0.0])
    assert t.is_contiguous()


def test_label_region_mask_values() -> None:
    m = label_region_mask(size=96, label_region=32)
    assert m.sum() == 1024 and m[32:64, 32:64].all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": -1}, ValueError, r"`n` to be an int >= 0"),
        ({"n": 2.0}, TypeError, r"`n` to be an int"),
        ({"n": 1, "size": 8}, ValueError, r"`size` to be an int >= 16"),
        ({"n": 1, "label_region": 33}, ValueError, r"`label_region` .* even number"),
        ({"n": 1, "label_region": 100}, ValueError, r"`label_region` to be at most `size` \(96\)"),
        ({"n": 1, "tumor_fraction": 1.5}, ValueError, r"`tumor_fraction` to lie in \[0.0, 1.0\]"),
        ({"n": 1, "peripheral_fraction": -0.1}, ValueError, r"`peripheral_fraction` to lie in"),
        ({"n": 1, "stain_jitter": -1.0}, ValueError, r"`stain_jitter` to be a finite number >= 0"),
        ({"n": 1, "background": 2.0}, ValueError, r"`background` to lie in"),
        ({"n": 1, "seed": -3}, ValueError, r"`seed` to be an int >= 0"),
    ],
)
def test_make_patches_errors(kwargs: dict, error: type, match: str) -> None:
    n = kwargs.pop("n")
    with pytest.raises(error, match=match):
        make_patches(n, **kwargs)


def test_to_tensor_images_errors() -> None:
    with pytest.raises(
        TypeError, match=r"`images` to be a torch.uint8 tensor, but got torch.float32"
    ):
        to_tensor_images(torch.zeros(1, 4, 4, 3))
    with pytest.raises(ValueError, match=r"`images` to be a tensor of shape \(N, H, W, 3\)"):
        to_tensor_images(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"`images` to be a torch.Tensor"):
        to_tensor_images([[0]])  # type: ignore[arg-type]


def test_nuclear_contrast_default_is_the_unchanged_generator():
    a = make_patches(16, seed=3)
    b = make_patches(16, seed=3, nuclear_contrast=1.0)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)


def test_nuclear_contrast_changes_only_the_appearance_of_tumor():
    lo = make_patches(32, seed=5, nuclear_contrast=0.3)
    hi = make_patches(32, seed=5, nuclear_contrast=1.7)
    # same geometry and labels, other pixels
    assert torch.equal(lo.masks, hi.masks) and torch.equal(lo.labels, hi.labels)
    assert not torch.equal(lo.images, hi.images)

    def contrast(p):
        gray = p.images.float().mean(-1)
        return float(gray[~p.masks].mean() - gray[p.masks].mean())  # tumor is darker

    # tumor stands out less from normal tissue at low contrast
    assert contrast(lo) < contrast(hi)


@pytest.mark.parametrize("value", [-0.1, 2.5, float("nan")])
def test_nuclear_contrast_out_of_range(value):
    with pytest.raises(ValueError, match="`nuclear_contrast`"):
        make_patches(1, nuclear_contrast=value)
