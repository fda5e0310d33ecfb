import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import spsolve

from camseg.metrics import deletion_auc, noisy_linear_imputation, road_auc, road_curve
from camseg.metrics._road import PERCENTAGES

road_ref = pytest.importorskip("pytorch_grad_cam.metrics.road")


# --------------------------------------------------------------------------- references


def _reference_float64(img: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's sparse system (the paper's code), solved in float64, noise off."""
    known = (~removed).double().numpy()
    a, b = road_ref.NoisyLinearImputer.setup_sparse_system(
        known, img.double().numpy(), road_ref.neighbors_weights
    )
    sol = np.asarray(spsolve(csc_matrix(a), b)).reshape(int(removed.sum()), -1)
    out = img.double().clone().reshape(img.shape[0], -1)
    out[:, torch.from_numpy(np.flatnonzero(known.reshape(-1) == 0))] = torch.from_numpy(sol).t()
    return out.reshape(img.shape)


def _reference_imputer(img: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's NoisyLinearImputer as shipped (float32 result), noise off."""
    with warnings.catch_warnings():
        # it calls np.argwhere on a torch tensor (a NumPy 2 deprecation inside numpy)
        warnings.simplefilter("ignore", DeprecationWarning)
        return road_ref.NoisyLinearImputer(noise=0.0)(img.float(), (~removed).float())


def _smooth_maps(b: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 1, 4, 4, generator=g)
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[:, 0]


def _top_fraction(maps: torch.Tensor, fraction: float) -> torch.Tensor:
    b, h, w = maps.shape
    rank = maps.reshape(b, -1).argsort(dim=1, descending=True).argsort(dim=1).view(b, h, w)
    return rank < int(fraction * h * w)


# --------------------------------------------------------------------------- imputation


@pytest.mark.parametrize(
    ("shape", "kind", "fraction"),
    [
        ((3, 24, 24), "random", 0.1),
        ((3, 24, 24), "random", 0.5),
        ((3, 24, 24), "random", 0.9),
        ((3, 24, 24), "blob", 0.3),
        ((3, 24, 24), "blob", 0.9),
        ((2, 17, 11), "random", 0.6),  # odd sizes exercise the padded coarsening
        ((1, 33, 20), "blob", 0.7),
        ((2, 1, 15), "random", 0.5),  # a single row
    ],
)
def test_imputation_matches_pytorch_grad_cam(
    shape: tuple[int, int, int], kind: str, fraction: float
) -> None:
    c, h, w = shape
    g = torch.Generator().manual_seed(int(fraction * 100) + h)
    images = torch.rand(3, c, h, w, generator=g)
    if kind == "random":
        removed = torch.rand(3, h, w, generator=g) < fraction
    else:
        removed = _top_fraction(_smooth_maps(3, h, w, seed=h), fraction)
    removed[:, 0, 0] = False  # every image keeps a known pixel (else the reference is singular)
    removed[:, -1, -1] = True
    out = noisy_linear_imputation(images, removed, noise=0.0)
    out64 = noisy_linear_imputation(images.double(), removed, noise=0.0, tol=1e-9)
    for i in range(images.shape[0]):
        torch.testing.assert_close(
            out[i], _reference_imputer(images[i], removed[i]), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            out64[i], _reference_float64(images[i], removed[i]), atol=1e-8, rtol=0
        )


def test_imputation_matches_reference_on_pcam_sized_blobs() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 96, 96, generator=g)
    maps = _smooth_maps(2, 96, 96, seed=1)
    for fraction in (0.2, 0.9):
        removed = _top_fraction(maps, fraction)
        out = noisy_linear_imputation(images, removed, noise=0.0)
        for i in range(2):
            ref = _reference_imputer(images[i], removed[i])
            torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_constant_image_imputes_the_constant() -> None:
    images = torch.full((2, 3, 9, 7), 0.375)
    images[1] = torch.tensor([-2.0, 0.0, 5.5]).view(3, 1, 1)
    removed = torch.rand(2, 9, 7, generator=torch.Generator().manual_seed(0)) < 0.7
    out = noisy_linear_imputation(images, removed, noise=0.0)
    assert torch.equal(out, images)


def test_linear_ramp_in_the_interior_is_reproduced() -> None:
    i, j = torch.meshgrid(
        torch.arange(12, dtype=torch.float64), torch.arange(14, dtype=torch.float64), indexing="ij"
    )
    ramp = torch.stack([0.3 * i - 0.7 * j + 2.0, 1.5 * j, -i]).unsqueeze(0)
    removed = torch.zeros(1, 12, 14, dtype=torch.bool)
    removed[0, 1:-1, 1:-1] = torch.rand(10, 12, generator=torch.Generator().manual_seed(0)) < 0.8
    removed[0, 3:9, 4:11] = True  # a large hole too
    out = noisy_linear_imputation(ramp, removed, noise=0.0, tol=1e-10)
    torch.testing.assert_close(out, ramp, atol=1e-8, rtol=0)


def test_ramp_touching_the_border_is_not_linear() -> None:
    # at the border the weights are renormalised over in-image neighbours only,
    # as in the reference, so a ramp is no longer an exact solution there
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 6, 8).contiguous()
    removed = torch.zeros(1, 6, 8, dtype=torch.bool)
    removed[0, :, 7] = True  # the last column
    out = noisy_linear_imputation(ramp, removed, noise=0.0)
    ref = _reference_imputer(ramp[0], removed[0])
    torch.testing.assert_close(out[0], ref, atol=1e-5, rtol=0)
    assert (out[0, 0, :, 7] < 7).all()


def test_empty_mask_changes_nothing() -> None:
    images = torch.rand(3, 2, 5, 6)
    removed = torch.zeros(3, 5, 6, dtype=torch.bool)
    out = noisy_linear_imputation(images, removed)
    assert torch.equal(out, images) and out.data_ptr() != images.data_ptr()
    # one image with an empty mask in a batch that imputes others
    removed[1, 2, 3] = True
    out = noisy_linear_imputation(images, removed, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[0], images[0]) and torch.equal(out[2], images[2])


def test_known_pixels_never_change() -> None:
    g = torch.Generator().manual_seed(3)
    images = torch.randn(4, 3, 20, 20, generator=g)
    removed = torch.rand(4, 20, 20, generator=g) < 0.6
    out = noisy_linear_imputation(images, removed, noise=0.5, generator=g)
    keep = ~removed[:, None].expand_as(images)
    assert torch.equal(out[keep], images[keep])
    assert not torch.equal(out[~keep], images[~keep])


def test_removed_values_are_not_read() -> None:
    g = torch.Generator().manual_seed(4)
    images = torch.rand(2, 3, 10, 10, generator=g)
    removed = torch.rand(2, 10, 10, generator=g) < 0.5
    poisoned = images.masked_fill(removed[:, None], float("nan"))
    out = noisy_linear_imputation(poisoned, removed, noise=0.0)
    torch.testing.assert_close(out, noisy_linear_imputation(images, removed, noise=0.0))


def test_batch_equals_per_image() -> None:
    g = torch.Generator().manual_seed(5)
    images = torch.rand(5, 3, 18, 21, generator=g)
    removed = torch.rand(5, 18, 21, generator=g) < torch.linspace(0.05, 0.95, 5).view(5, 1, 1)
    batch = noisy_linear_imputation(images.double(), removed, noise=0.0, tol=1e-9)
    for i in range(5):
        single = noisy_linear_imputation(
            images[i : i + 1].double(), removed[i : i + 1], noise=0.0, tol=1e-9
        )
        torch.testing.assert_close(batch[i : i + 1], single, atol=1e-8, rtol=0)


def test_noise_is_gaussian_with_the_given_std_and_seeded() -> None:
    images = torch.full((4, 3, 64, 64), 0.5)
    removed = torch.rand(4, 64, 64, generator=torch.Generator().manual_seed(0)) < 0.5
    out = noisy_linear_imputation(
        images, removed, noise=0.01, generator=torch.Generator().manual_seed(1)
    )
    again = noisy_linear_imputation(
        images, removed, noise=0.01, generator=torch.Generator().manual_seed(1)
    )
    other = noisy_linear_imputation(
        images, removed, noise=0.01, generator=torch.Generator().manual_seed(2)
    )
    assert torch.equal(out, again) and not torch.equal(out, other)
    eps = (out - images)[removed[:, None].expand_as(images)]
    assert eps.numel() > 20_000
    assert abs(float(eps.std()) - 0.01) < 0.0005
    assert abs(float(eps.mean())) < 0.0003


def test_fully_removed_image_is_zero_plus_noise() -> None:
    images = torch.rand(2, 3, 8, 8) + 1.0
    removed = torch.zeros(2, 8, 8, dtype=torch.bool)
    removed[0] = True
    out = noisy_linear_imputation(images, removed, noise=0.0)
    assert torch.equal(out[0], torch.zeros(3, 8, 8)) and torch.equal(out[1], images[1])
    tiny = noisy_linear_imputation(
        torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, dtype=torch.bool), noise=0.0
    )
    assert torch.equal(tiny, torch.zeros(1, 1, 1, 1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_is_kept(dtype: torch.dtype) -> None:
    images = torch.rand(2, 3, 12, 12).to(dtype)
    removed = torch.rand(2, 12, 12, generator=torch.Generator().manual_seed(0)) < 0.5
    out = noisy_linear_imputation(images, removed, noise=0.0)
    assert out.dtype == dtype
    ref = noisy_linear_imputation(images.double(), removed, noise=0.0)
    torch.testing.assert_close(out.double(), ref, atol=float(torch.finfo(dtype).eps) * 4, rtol=0)


def test_images_requiring_grad_are_accepted() -> None:
    images = torch.rand(1, 3, 8, 8, requires_grad=True)
    removed = torch.zeros(1, 8, 8, dtype=torch.bool)
    removed[0, 2:5, 2:5] = True
    out = noisy_linear_imputation(images, removed, noise=0.0)
    assert not out.requires_grad


def test_max_iter_reached_warns() -> None:
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    removed = _top_fraction(_smooth_maps(2, 64, 64, seed=0), 0.9)
    with pytest.warns(RuntimeWarning, match=r"stopped after `max_iter`=1 iterations"):
        noisy_linear_imputation(images, removed, noise=0.0, max_iter=1)


def test_solver_converges_in_few_iterations() -> None:
    # the multigrid preconditioner keeps the iteration count small and
    # independent of the share removed
    images = torch.rand(4, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    for fraction in (0.1, 0.5, 0.9):
        removed = _top_fraction(_smooth_maps(4, 96, 96, seed=2), fraction)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            noisy_linear_imputation(images, removed, noise=0.0, max_iter=30)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_imputation_on_cuda_matches_cpu() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 32, 32, generator=g)
    removed = torch.rand(4, 32, 32, generator=g) < 0.6
    cpu = noisy_linear_imputation(images, removed, noise=0.0)
    gpu = noisy_linear_imputation(images.cuda(), removed.cuda(), noise=0.0)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
    noisy = noisy_linear_imputation(
        images.cuda(), removed.cuda(), generator=torch.Generator().manual_seed(0)
    )
    assert noisy.device.type == "cuda"


# --------------------------------------------------------------------------- imputation: errors


def test_imputation_rejects_bad_inputs() -> None:
    images = torch.rand(2, 3, 4, 4)
    removed = torch.zeros(2, 4, 4, dtype=torch.bool)
    with pytest.raises(TypeError, match=r"Expected `images` to be a torch.Tensor"):
        noisy_linear_imputation(images.numpy(), removed)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"Expected `images` to be a tensor of shape \(B, C, H, W\)"
    ):
        noisy_linear_imputation(images[0], removed)
    with pytest.raises(TypeError, match=r"Expected `images` to have a floating-point dtype"):
        noisy_linear_imputation((images * 255).to(torch.uint8), removed)
    with pytest.raises(
        TypeError, match=r"Expected `removed` to be a torch.bool mask, but got torch.float32"
    ):
        noisy_linear_imputation(images, removed.float())
    with pytest.raises(
        ValueError, match=r"Expected `removed` to have shape \(2, 4, 4\).*got shape \(2, 4, 5\)"
    ):
        noisy_linear_imputation(images, torch.zeros(2, 4, 5, dtype=torch.bool))
    with pytest.raises(
        ValueError, match=r"Expected `removed` to have shape \(2, 4, 4\).*got shape \(1, 4, 4\)"
    ):
        noisy_linear_imputation(images, removed[:1])
    with pytest.raises(
        ValueError, match=r"Expected `noise` to be a finite number >= 0, but got -0.1"
    ):
        noisy_linear_imputation(images, removed, noise=-0.1)
    with pytest.raises(TypeError, match=r"Expected `noise` to be a number >= 0"):
        noisy_linear_imputation(images, removed, noise="0.01")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Expected `tol` to be a finite number > 0, but got 0"):
        noisy_linear_imputation(images, removed, tol=0)
    with pytest.raises(TypeError, match=r"Expected `tol` to be a number"):
        noisy_linear_imputation(images, removed, tol=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Expected `max_iter` to be an int >= 1, but got 0"):
        noisy_linear_imputation(images, removed, max_iter=0)
    with pytest.raises(TypeError, match=r"Expected `generator` to be None or a torch.Generator"):
        noisy_linear_imputation(images, removed, generator=0)  # type: ignore[arg-type]
    bad = images.clone()
    bad[1, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"Expected `images` to be finite.*only the known pixels"):
        noisy_linear_imputation(bad, removed)


# --------------------------------------------------------------------------- ROAD curves


def _tiny_model(out: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 64, out),
    ).eval()


def _reference_road(model, images, maps, targets, percentages, order):  # type: ignore[no-untyped-def]
    """Per image and percentage with pytorch-grad-cam's imputer (noise off)."""
    b, _, h, w = images.shape
    out = torch.zeros(b, len(percentages))
    for i in range(b):
        ranked = np.argsort(-maps[i].flatten().numpy(), kind="stable")  # ties: raster order
        for j, p in enumerate(percentages):
            k = math.floor(p * h * w / 100)
            chosen = ranked[:k] if order == "morf" else ranked[h * w - k :]
            removed = torch.zeros(h * w, dtype=torch.bool)
            removed[torch.from_numpy(chosen.copy())] = True
            removed = removed.view(h, w)
            x = _reference_imputer(images[i], removed) if k else images[i]
            with torch.no_grad():
                out[i, j] = torch.softmax(model(x[None]), dim=1)[0, targets[i]]
    return out


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_curve_equals_reference_loop(order: str) -> None:
    model = _tiny_model()
    g = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, 8, 8, generator=g)
    maps = torch.round(torch.rand(3, 8, 8, generator=g) * 4) / 4  # many ties
    targets = torch.tensor([0, 2, 1])
    pct = [0, 12.5, 30, 50, 77, 100 - 1 / 64]
    curve = road_curve(
        model, images, maps, targets, order=order, percentages=pct, noise=0.0, batch_size=5
    )  # type: ignore[arg-type]
    ref = _reference_road(model, images, maps, targets, pct, order)
    torch.testing.assert_close(curve, ref, atol=1e-5, rtol=0)


def test_morf_and_lerf_remove_complementary_sets() -> None:
    seen: list[torch.Tensor] = []

    def spy(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return torch.zeros(x.shape[0], 2)

    images = torch.rand(1, 3, 10, 10, generator=torch.Generator().manual_seed(0)) + 1.0
    maps = torch.rand(1, 10, 10, generator=torch.Generator().manual_seed(1))
    road_curve(spy, images, maps, 0, order="morf", percentages=[30], noise=0.0)
    road_curve(spy, images, maps, 0, order="lerf", percentages=[70], noise=0.0)
    morf_changed = (seen[0] != images).any(dim=1)
    lerf_changed = (seen[1] != images).any(dim=1)
    assert int(morf_changed.sum()) == 30 and int(lerf_changed.sum()) == 70
    assert torch.equal(morf_changed, ~lerf_changed)
    top30 = maps.flatten().argsort(descending=True)[:30]
    assert morf_changed.flatten()[top30].all()


def test_curve_is_flat_when_the_model_ignores_the_image() -> None:
    def constant(x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[0.3, -0.2, 1.0]]).expand(x.shape[0], 3)

    images = torch.rand(4, 3, 16, 16)
    maps = torch.rand(4, 16, 16)
    expected = torch.softmax(torch.tensor([0.3, -0.2, 1.0]), dim=0)[2]
    for order in ("morf", "lerf"):
        curve = road_curve(constant, images, maps, order=order)  # type: ignore[arg-type]
        assert curve.shape == (4, len(PERCENTAGES))
        torch.testing.assert_close(curve, torch.full_like(curve, float(expected)))


class _TumourDetector(torch.nn.Module):
    """Logit of class 1 grows with the area of bright (tumour-coloured) pixels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = torch.sigmoid((x.mean(dim=1) - 0.7) * 40).mean(
            dim=(1, 2)
        )  # share of tumour pixels
        logit = 60 * (bright - 0.05)
        return torch.stack([torch.zeros_like(logit), logit], dim=1)


def _tumour_patches(b: int = 6, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = 0.2 + 0.3 * torch.rand(b, 3, size, size, generator=g)  # background texture
    masks = torch.zeros(b, size, size, dtype=torch.bool)
    for i in range(b):
        r, c = torch.randint(0, size - 12, (2,), generator=g).tolist()
        masks[i, r : r + 12, c : c + 12] = True
    tumour = 0.85 + 0.15 * torch.rand(b, 3, size, size, generator=g)
    return torch.where(masks[:, None], tumour, images), masks


def test_perfect_map_drops_faster_than_a_random_map() -> None:
    model = _TumourDetector().eval()
    images, masks = _tumour_patches()
    perfect = masks.float() + 0.01 * torch.rand(
        masks.shape, generator=torch.Generator().manual_seed(1)
    )
    random = torch.rand(masks.shape, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        assert (torch.softmax(model(images), dim=1)[:, 1] > 0.99).all()
    pct = [5, 10, 15, 20, 30, 40, 50]
    morf_perfect = road_curve(model, images, perfect, 1, percentages=pct, generator=g)
    morf_random = road_curve(model, images, random, 1, percentages=pct, generator=g)
    # 144 of 1024 pixels are tumour: once 15 % are gone the perfect map has removed them all
    assert (morf_perfect[:, 2:] < 0.05).all()
    assert (morf_random[:, :3] > 0.5).all()
    auc_p = road_auc(model, images, perfect, 1, percentages=pct, generator=g)
    auc_r = road_auc(model, images, random, 1, percentages=pct, generator=g)
    assert (auc_p < auc_r - 0.3).all()
    lerf_p = road_auc(model, images, perfect, 1, order="lerf", percentages=pct, generator=g)
    lerf_r = road_auc(model, images, random, 1, order="lerf", percentages=pct, generator=g)
    assert (lerf_p > lerf_r).all() and (lerf_p > 0.99).all()


def test_road_auc_is_the_normalised_trapezoid() -> None:
    model = _tiny_model()
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(1))
    pct = [10, 20, 50, 90]
    curve = road_curve(model, images, maps, percentages=pct, noise=0.0)
    x = torch.tensor(pct) / 100
    expected = torch.trapezoid(curve, x, dim=1) / (x[-1] - x[0])
    torch.testing.assert_close(road_auc(model, images, maps, percentages=pct, noise=0.0), expected)
    single = road_auc(model, images, maps, percentages=[40], noise=0.0)
    torch.testing.assert_close(
        single, road_curve(model, images, maps, percentages=[40], noise=0.0)[:, 0]
    )


def test_road_over_the_full_range_is_bounded_like_deletion() -> None:
    model = _tiny_model()
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(1))
    auc = road_auc(model, images, maps, percentages=[0, 25, 50, 75, 100], noise=0.0)
    assert auc.shape == (2,) and ((auc >= 0) & (auc <= 1)).all()
    assert deletion_auc(model, images, maps, steps=4).shape == auc.shape


def test_curve_does_not_depend_on_batch_size_without_noise() -> None:
    model = _tiny_model()
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(1))  # resized to 8 x 8
    a = road_curve(model, images, maps, order="lerf", noise=0.0, batch_size=1, tol=1e-9)
    b = road_curve(model, images, maps, order="lerf", noise=0.0, batch_size=64, tol=1e-9)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_curve_is_seeded() -> None:
    model = _tiny_model()
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(1))
    a = road_curve(model, images, maps, generator=torch.Generator().manual_seed(7))
    b = road_curve(model, images, maps, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_default_targets_and_single_logit_head() -> None:
    model = _tiny_model()
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pred = model(images).argmax(dim=1)
    torch.testing.assert_close(
        road_curve(model, images, maps, noise=0.0), road_curve(model, images, maps, pred, noise=0.0)
    )
    binary = _tiny_model(out=1)
    curve = road_curve(binary, images, maps, [0, 1], percentages=[0, 50], noise=0.0)
    with torch.no_grad():
        p1 = torch.sigmoid(binary(images)[:, 0])
    torch.testing.assert_close(curve[:, 0], torch.stack([1 - p1[0], p1[1]]))


# --------------------------------------------------------------------------- ROAD: errors


def test_road_rejects_bad_inputs() -> None:
    model = _tiny_model()
    images = torch.rand(2, 3, 8, 8)
    maps = torch.rand(2, 8, 8)
    with pytest.raises(
        ValueError, match=r"Expected `order` to be one of 'morf', 'lerf', but got 'MoRF'"
    ):
        road_curve(model, images, maps, order="MoRF")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Expected `percentages` to lie in \[0, 100\].*got 120.0"):
        road_curve(model, images, maps, percentages=[10, 120])
    with pytest.raises(ValueError, match=r"Expected `percentages` to lie in \[0, 100\].*got -1.0"):
        road_auc(model, images, maps, percentages=[-1, 10])
    with pytest.raises(ValueError, match=r"Expected `percentages` to lie in \[0, 100\].*got nan"):
        road_curve(model, images, maps, percentages=[float("nan")])
    with pytest.raises(
        ValueError,
        match=r"Expected `percentages` to be strictly increasing, but got \[50.0, 10.0\]",
    ):
        road_curve(model, images, maps, percentages=[50, 10])
    with pytest.raises(ValueError, match=r"Expected `percentages` to be strictly increasing"):
        road_curve(model, images, maps, percentages=torch.tensor([10.0, 10.0]))
    with pytest.raises(ValueError, match=r"Expected `percentages` to hold at least one value"):
        road_curve(model, images, maps, percentages=[])
    with pytest.raises(TypeError, match=r"Expected `percentages` to hold numbers"):
        road_curve(model, images, maps, percentages=[10, "20"])  # type: ignore[list-item]
    with pytest.raises(
        TypeError, match=r"Expected `percentages` to be a sequence of numbers or a 1-D real tensor"
    ):
        road_curve(model, images, maps, percentages=50)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"Expected `percentages` to be a sequence of numbers or a 1-D real tensor"
    ):
        road_curve(model, images, maps, percentages=torch.tensor([[10.0, 20.0]]))
    with pytest.raises(
        ValueError, match=r"Expected `images` and `maps` to have the same batch size"
    ):
        road_curve(model, images, maps[:1])
    with pytest.raises(ValueError, match=r"Expected `maps` to be a tensor of shape \(B, H, W\)"):
        road_curve(model, images, maps[:, None])
    with pytest.raises(ValueError, match=r"Expected `maps` to be finite"):
        road_curve(model, images, maps.masked_fill(maps > 0.5, float("nan")))
    with pytest.raises(ValueError, match=r"Expected `images` to be finite"):
        road_curve(model, images.masked_fill(images > 0.99, float("inf")), maps)
    with pytest.raises(
        ValueError, match=r"Expected `targets` in \[0, 2\] for 3 classes, but got 3"
    ):
        road_curve(model, images, maps, 3)
    with pytest.raises(ValueError, match=r"Expected `batch_size` to be an int >= 1, but got 0"):
        road_curve(model, images, maps, batch_size=0)
    with pytest.raises(ValueError, match=r"Expected `noise` to be a finite number >= 0"):
        road_auc(model, images, maps, noise=float("inf"))
