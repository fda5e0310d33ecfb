from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import cohen_kappa_score, confusion_matrix, roc_auc_score, roc_curve

from camseg.slide import (
    NODE_CLASSES,
    PN_STAGES,
    downsample_mask,
    node_class,
    patient_stages,
    pn_stage,
    slide_metrics,
    stage_kappa,
    tumor_regions,
)

# ----------------------------------------------------------------------------- pN stages


@pytest.mark.parametrize(
    ("nodes", "stage"),
    [
        (["negative"] * 5, "pN0"),
        (["negative"], "pN0"),
        (["itc", "negative", "negative", "negative", "negative"], "pN0(i+)"),
        (["itc"] * 5, "pN0(i+)"),  # ITC never count as metastases
        (["micro", "negative", "negative", "negative", "negative"], "pN1mi"),
        (["micro", "micro", "micro", "micro", "micro"], "pN1mi"),  # 5 nodes but no macro
        (["micro", "itc", "itc", "itc", "itc"], "pN1mi"),
        (["macro", "negative", "negative", "negative", "negative"], "pN1"),
        (["macro", "micro", "micro", "itc", "itc"], "pN1"),  # 3 positive nodes
        (["macro", "macro", "macro", "itc", "negative"], "pN1"),
        (["macro", "micro", "micro", "micro", "itc"], "pN2"),  # 4 positive nodes
        (["macro"] * 5, "pN2"),
        (["macro"] * 9, "pN2"),
    ],
)
def test_pn_stage_hand_built(nodes, stage) -> None:
    assert pn_stage(nodes) == stage


def test_pn_stage_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one lymph node"):
        pn_stage([])
    with pytest.raises(ValueError, match="categories from"):
        pn_stage(["negative", "big"])
    with pytest.raises(ValueError, match="at most 9 lymph nodes"):
        pn_stage(["macro"] * 10)
    with pytest.raises(TypeError, match="`nodes` to be a sequence"):
        pn_stage("macro")


def test_node_class_boundaries() -> None:
    assert node_class(0.0) == "negative"
    assert node_class(0.05) == "itc"
    assert node_class(0.2) == "itc"
    assert node_class(0.2000001) == "micro"
    assert node_class(2.0) == "micro"
    assert node_class(2.0000001) == "macro"
    assert node_class(torch.tensor(3.0)) == "macro"
    with pytest.raises(ValueError, match="`largest_diameter_mm`"):
        node_class(-1.0)
    with pytest.raises(TypeError, match="`largest_diameter_mm`"):
        node_class("big")


def test_patient_stages_groups() -> None:
    nodes = ["macro", "negative", "itc", "micro", "negative", "negative"]
    patients = [7, 8, 7, 8, 9, 7]
    assert patient_stages(nodes, patients) == {7: "pN1", 8: "pN1mi", 9: "pN0"}
    with pytest.raises(ValueError, match="same length"):
        patient_stages(nodes, patients[:2])


def test_stage_kappa_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 5, 30)
        b = np.clip(a + rng.integers(-1, 2, 30), 0, 4)
        ours = stage_kappa([PN_STAGES[i] for i in a], [PN_STAGES[i] for i in b])
        ref = cohen_kappa_score(a, b, weights="quadratic", labels=list(range(5)))
        assert float(ours) == pytest.approx(ref, abs=1e-12)
        assert float(stage_kappa(torch.from_numpy(a), torch.from_numpy(b))) == pytest.approx(ref)


def test_stage_kappa_bad_input() -> None:
    with pytest.raises(ValueError, match="stages from"):
        stage_kappa(["pN3"], ["pN0"])
    with pytest.raises(ValueError, match=r"stage codes 0\.\.4"):
        stage_kappa(torch.tensor([5]), torch.tensor([0]))
    with pytest.raises(ValueError, match="same batch size"):
        stage_kappa(["pN0", "pN1"], ["pN0"])


def test_full_staging_pipeline_from_masks() -> None:
    """Masks -> largest diameters -> node classes -> patient stage."""
    mpp = 10.0  # 0.01 mm per pixel
    sizes = {"negative": 0, "itc": 10, "micro": 100, "macro": 250}  # square sides in px
    expected = {"negative": "negative", "itc": "itc", "micro": "micro", "macro": "macro"}
    for name, side in sizes.items():
        mask = torch.zeros(300, 300, dtype=torch.bool)
        mask[10 : 10 + side, 20 : 20 + side] = True
        regions = tumor_regions(mask, mpp=mpp)
        largest = float(regions.diameters_mm.max()) if len(regions.diameters_mm) else 0.0
        assert node_class(largest) == expected[name]
    assert set(NODE_CLASSES) == set(sizes)


# ----------------------------------------------------------------------------- tumour regions


def _brute_diameter(sub: np.ndarray) -> float:
    ys, xs = np.nonzero(sub)
    corners = np.array(
        [(x + dx, y + dy) for x, y in zip(xs, ys) for dx, dy in itertools.product((0, 1), (0, 1))],
        float,
    )
    d = corners[:, None] - corners[None]
    return float(np.sqrt((d**2).sum(-1)).max())


def test_tumor_regions_hand_built() -> None:
    mask = torch.zeros(30, 30, dtype=torch.bool)
    mask[0, 0] = True  # one pixel: sqrt(2)
    mask[10:13, 10:14] = True  # 3 x 4: 5
    mask[20, 20] = mask[21, 21] = True  # 8-connected diagonal pair: sqrt(8)
    regions = tumor_regions(mask, mpp=1000.0)  # 1 mm per pixel
    assert regions.labels.shape == (30, 30) and int(regions.labels.max()) == 3
    np.testing.assert_allclose(regions.diameters_mm.numpy(), [2**0.5, 5.0, 8**0.5])
    np.testing.assert_allclose(regions.areas_mm2.numpy(), [1.0, 12.0, 2.0])


def test_tumor_regions_against_brute_force() -> None:
    rng = np.random.default_rng(1)
    for _ in range(5):
        m = rng.random((40, 50)) < 0.15
        m[5:25, 5:30] |= rng.random((20, 25)) < 0.8  # one big irregular region
        regions = tumor_regions(torch.from_numpy(m), mpp=1000.0)
        labels = regions.labels.numpy()
        for i, d in enumerate(regions.diameters_mm.tolist()):
            assert d == pytest.approx(_brute_diameter(labels == i + 1), rel=1e-12)


def test_tumor_regions_merge_distance() -> None:
    mask = torch.zeros(10, 30, dtype=torch.bool)
    mask[2:4, 2:6] = True
    mask[2:4, 9:13] = True  # 3-pixel gap = 30 microns at 10 mpp
    assert len(tumor_regions(mask, mpp=10.0).diameters_mm) == 2
    merged = tumor_regions(mask, mpp=10.0, merge_um=40.0)
    assert len(merged.diameters_mm) == 1
    assert float(merged.diameters_mm[0]) == pytest.approx(np.hypot(11, 2) * 0.01)
    assert float(merged.areas_mm2[0]) == pytest.approx(16 * 1e-4)  # gap pixels not counted


def test_tumor_regions_bad_input() -> None:
    mask = torch.zeros(4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"`mpp`.*None"):
        tumor_regions(mask, mpp=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`mpp` to be a finite number > 0"):
        tumor_regions(mask, mpp=0.0)
    with pytest.raises(TypeError, match=r"torch.bool"):
        tumor_regions(mask.float(), mpp=1.0)
    with pytest.raises(ValueError, match=r"shape \(H, W\)"):
        tumor_regions(mask[None], mpp=1.0)
    with pytest.raises(ValueError, match="`merge_um`"):
        tumor_regions(mask, mpp=1.0, merge_um=-1.0)


# ----------------------------------------------------------------------------- slide metrics


def test_slide_metrics_against_sklearn() -> None:
    g = torch.Generator().manual_seed(0)
    truth = torch.zeros(32, 32, dtype=torch.bool)
    truth[8:20, 6:22] = True
    heat = (truth.float() * 0.4 + torch.rand(32, 32, generator=g) * 0.8).double()
    m = slide_metrics(heat, truth)
    y, s = truth.flatten().numpy(), heat.flatten().numpy()
    assert float(m.auc) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    assert float(m.threshold) == pytest.approx(thr[np.argmax(tpr - fpr)])
    pred = s >= float(m.threshold)
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert float(m.sensitivity) == pytest.approx(tp / (tp + fn))
    assert float(m.specificity) == pytest.approx(tn / (tn + fp))
    assert float(m.fall_out) == pytest.approx(fp / (fp + tn))
    assert float(m.precision) == pytest.approx(tp / (tp + fp))
    assert float(m.accuracy) == pytest.approx((tp + tn) / y.size)
    assert float(m.f1) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert float(m.iou) == pytest.approx(tp / (tp + fp + fn))


def test_slide_metrics_valid_region_and_fixed_threshold() -> None:
    heat = torch.tensor([[0.9, 0.1, 0.95], [0.2, 0.8, 0.99]])
    truth = torch.tensor([[True, False, False], [False, True, False]])
    valid = torch.tensor([[True, True, False], [True, True, False]])  # right column ignored
    m = slide_metrics(heat, truth, valid=valid)
    assert float(m.auc) == 1.0 and float(m.iou) == 1.0 and float(m.threshold) == pytest.approx(0.8)
    m = slide_metrics(heat, truth, threshold=0.85)  # all pixels: 0.9, 0.95, 0.99 called
    assert float(m.sensitivity) == 0.5 and float(m.precision) == pytest.approx(1 / 3)


def test_slide_metrics_bad_input() -> None:
    heat = torch.rand(4, 4)
    truth = torch.zeros(4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="both tumour and non-tumour"):
        slide_metrics(heat, truth)
    truth[0, 0] = True
    with pytest.raises(ValueError, match=r"same shape.*downsample_mask"):
        slide_metrics(heat, truth[:2])
    with pytest.raises(TypeError, match="floating-point"):
        slide_metrics((heat * 10).long(), truth)
    with pytest.raises(TypeError, match="`threshold`"):
        slide_metrics(heat, truth, threshold="otsu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`valid` and `heatmap`"):
        slide_metrics(heat, truth, valid=torch.ones(2, 2, dtype=torch.bool))


def test_downsample_mask() -> None:
    m = torch.zeros(6, 7, dtype=torch.bool)
    m[0:2, 0:1] = True  # 2 of 4 pixels of block (0, 0): majority (>= half)
    m[5, 6] = True  # outside the whole-pixel output
    m[4, 0] = True  # 1 of 4 in block (2, 0)
    out = downsample_mask(m, 2)
    assert out.shape == (3, 3)
    assert out.nonzero().tolist() == [[0, 0]]
    assert downsample_mask(m, 2, rule="any").nonzero().tolist() == [[0, 0], [2, 0]]
    with pytest.raises(ValueError, match="`rule`"):
        downsample_mask(m, 2, rule="all")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`factor`"):
        downsample_mask(m, 0)


def test_stage_kappa_of_no_patients_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one patient"):
        stage_kappa([], [])
