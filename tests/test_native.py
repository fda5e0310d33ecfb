"""The compiled CPU kernels (camseg._cpu through camseg._native) against NumPy, scikit-image
and camseg's own torch/NumPy paths, which they replace where the extension is built."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.morphology import remove_small_objects as sk_remove

from camseg import _native
from camseg.postprocess import (
    cams_to_masks,
    remove_small_objects,
    threshold_fixed,
    threshold_otsu,
)

needs_native = pytest.mark.skipif(not _native.available(), reason="camseg._cpu is not built")


@pytest.fixture
def no_native(monkeypatch: pytest.MonkeyPatch):
    """Run the code under test on camseg's torch/NumPy paths."""

    def use() -> None:
        monkeypatch.setattr(_native, "_cpu", None)

    return use


@pytest.fixture
def split_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """Split even tiny batches across threads, two of them."""
    monkeypatch.setattr(_native, "_MIN_PIXELS_PER_THREAD", 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_the_extension_is_built_in_ci() -> None:
    # a failed optional build must not pass CI unnoticed on the slow paths
    if os.environ.get("CI", "").lower() in ("1", "true") and not os.environ.get("CAMSEG_NO_NATIVE"):
        assert _native.available()


def test_disabled_by_the_environment_variable() -> None:
    code = (
        "import torch, camseg._native as n; from camseg.postprocess import threshold_otsu;"
        "print(n.available(), float(threshold_otsu(torch.tensor([[[0.0, 1.0]]]))[0]))"
    )
    env = dict(os.environ, CAMSEG_NO_NATIVE="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "0.001953125"]


def _hard_maps(rng: np.random.Generator, *, collapsed: bool = False) -> np.ndarray:
    """float32 rows that stress the histogram: values on bin edges, tiny spans, offsets.

    With ``collapsed``, one more row whose span is so small that float32 bin edges
    coincide (numpy.histogram refuses it, camseg bins it as numpy's formula says).
    """
    n = 999  # not a multiple of the kernel's vector width or block
    rows = [
        rng.random(n, dtype=np.float32),
        rng.random(n, dtype=np.float32) ** 8,  # most values in the first bins
        np.linspace(0, 1, n, dtype=np.float32),
        np.round(rng.random(n) * 16).astype(np.float32) / 16,  # few distinct values
        (1000.0 + rng.random(n)).astype(np.float32),  # a large offset
        (-3.0 + 2 * rng.random(n)).astype(np.float32),  # negative values
        (1e-30 * rng.random(n)).astype(np.float32),  # a tiny span at zero
        (0.5 + 3e-4 * rng.random(n)).astype(np.float32),  # 2 float32 steps per bin
    ]
    if collapsed:
        rows.append((0.5 + 1e-5 * rng.random(n)).astype(np.float32))
    out = np.stack(rows)
    # values exactly on the edges numpy computes for each row
    for r in out[: len(out) - collapsed]:
        e = np.histogram(r, bins=256, range=(r.min(), r.max()))[1]
        r[2:130] = e[1:-1:2]
    return np.ascontiguousarray(out)


@needs_native
def test_histogram_equals_numpy_bin_for_bin() -> None:
    rng = np.random.default_rng(0)
    for nbins in (2, 3, 256, 1000):
        x = _hard_maps(rng)
        got = _native.histogram_f32(x, nbins)
        for i in range(x.shape[0]):
            # the range as scikit-image's threshold_otsu passes it: the image's min and max
            ref, _ = np.histogram(x[i], bins=nbins, range=(x[i].min(), x[i].max()))
            np.testing.assert_array_equal(got[i], ref, err_msg=f"row {i}, nbins {nbins}")
    const = np.full((1, 10), 0.5, dtype=np.float32)
    assert not _native.histogram_f32(const, 4).any()


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_otsu_equals_the_torch_path(dtype: torch.dtype, no_native) -> None:
    rng = np.random.default_rng(1)
    hard = torch.from_numpy(_hard_maps(rng, collapsed=True)).reshape(9, 27, 37)
    smooth = F.interpolate(torch.rand(40, 1, 5, 5), size=(40, 40), mode="bilinear")[:, 0]
    cases = [m.to(dtype) for m in (hard, smooth)]
    cases = [m for m in cases if bool(torch.isfinite(m).all())]  # float16 overflows the offset
    assert cases
    ours = [threshold_otsu(m) for m in cases]
    no_native()
    for m, t in zip(cases, ours, strict=True):
        torch.testing.assert_close(t, threshold_otsu(m), rtol=0, atol=0)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_range_and_finiteness_match_torch(dtype: torch.dtype) -> None:
    x = torch.randn(7, 13, 11).to(dtype)
    rng = _native.map_range(x)
    assert rng is not None and rng.dtype == dtype
    torch.testing.assert_close(rng[:, 0], x.amin((1, 2)), rtol=0, atol=0)
    torch.testing.assert_close(rng[:, 1], x.amax((1, 2)), rtol=0, atol=0)
    for bad in (float("nan"), float("inf"), -float("inf")):
        for where in ((0, 0, 0), (6, 12, 10), (3, 5, 7)):  # first, last (the scalar tail), middle
            y = x.clone()
            y[where] = bad
            flagged = _native.map_range(y)
            assert flagged is not None and bool(flagged.isnan().all())
            with pytest.raises(ValueError, match="Expected `maps` to be finite"):
                threshold_fixed(y, value=0.5)  # the public check behind the range


def test_the_tensor_functions_decline_what_the_kernels_do_not_take(no_native) -> None:
    maps = torch.rand(2, 4, 4)
    masks = maps > 0.5
    for m in (maps.double(), maps.bfloat16(), maps.to("meta")):
        assert not _native.applies(m)
        assert _native.map_range(m) is None and _native.otsu(m) is None
        assert _native.otsu_masks(m) is None
    assert not _native.applies(maps, masks.to("meta"))
    assert _native.otsu_masks(maps, keep=torch.ones(2, dtype=torch.bool).to("meta")) is None
    assert _native.remove_small_objects(masks.to("meta"), 2, 1) is None
    assert _native.applies(maps, None, masks) == _native.available()
    no_native()
    assert not _native.applies(maps, masks)
    assert _native.map_range(maps) is None and _native.otsu(maps) is None
    assert _native.otsu_masks(maps) is None and _native.remove_small_objects(masks, 2, 1) is None


def _random_masks(b: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 1, max(1, h // 4), max(1, w // 4), generator=g)
    return F.interpolate(coarse, size=(h, w), mode="nearest")[:, 0] > 0.55


@needs_native
@pytest.mark.parametrize("connectivity", [1, 2])
@pytest.mark.parametrize("shape", [(5, 96, 96), (3, 1, 130), (3, 70, 1), (4, 33, 65), (2, 9, 128)])
def test_small_objects_equals_skimage_and_the_numpy_path(
    shape: tuple[int, int, int], connectivity: int, no_native
) -> None:
    masks = _random_masks(*shape, seed=sum(shape))
    masks |= torch.rand(shape, generator=torch.Generator().manual_seed(3)) > 0.9  # specks
    ours = remove_small_objects(masks, 6, connectivity=connectivity)
    for i in range(shape[0]):
        ref = sk_remove(masks[i].numpy(), max_size=5, connectivity=connectivity)
        np.testing.assert_array_equal(ours[i].numpy(), ref)
    no_native()
    torch.testing.assert_close(remove_small_objects(masks, 6, connectivity=connectivity), ours)


@needs_native
@pytest.mark.parametrize("tissue", [False, True])
@pytest.mark.parametrize("min_size", [0, 20])
def test_cams_to_masks_equals_the_torch_path(tissue: bool, min_size: int, no_native) -> None:
    g = torch.Generator().manual_seed(5)
    coarse = torch.rand(48, 1, 6, 6, generator=g) ** 3
    maps = F.interpolate(coarse, size=(50, 70), mode="bilinear")[:, 0]
    maps = (maps - maps.amin((1, 2), keepdim=True)) / (
        maps.amax((1, 2), keepdim=True) - maps.amin((1, 2), keepdim=True)
    )
    maps[3] = 0.25  # a constant map
    probs = torch.rand(48, generator=g)
    tis = _random_masks(48, 50, 70, seed=9) if tissue else None
    kw = {"probs": probs, "min_prob": 0.4, "min_size": min_size, "tissue": tis}
    ours = cams_to_masks(maps, **kw)
    assert not ours[3].any() and not ours[probs < 0.4].any()
    no_native()
    torch.testing.assert_close(cams_to_masks(maps, **kw), ours)


@needs_native
def test_threads_give_the_same_results(split_everything) -> None:
    g = torch.Generator().manual_seed(2)
    maps = F.interpolate(torch.rand(37, 1, 6, 6, generator=g), size=(40, 40), mode="bilinear")[:, 0]
    maps = maps / maps.amax((1, 2), keepdim=True)
    probs = torch.rand(37, generator=g)

    def everything() -> tuple[torch.Tensor, ...]:
        return (
            _native.map_range(maps),
            threshold_otsu(maps),
            cams_to_masks(maps, probs=probs, min_size=10),
            remove_small_objects(maps > 0.5, 10),
        )

    assert len(_native._split(37, 1600)) == 2
    split = everything()
    torch.set_num_threads(1)
    assert len(_native._split(37, 1600)) == 1
    single = everything()
    for a, b in zip(split, single, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@needs_native
def test_the_kernels_refuse_short_buffers() -> None:
    from camseg import _cpu  # type: ignore[attr-defined]

    x = np.zeros((2, 10), dtype=np.float32)
    lo = np.zeros(1, dtype=np.float32)
    with pytest.raises(ValueError, match="buffer `lo`"):
        _cpu.range_f32(x, 2, 10, lo, np.zeros(2, dtype=np.float32))
    two = np.zeros(2, dtype=np.float32)
    with pytest.raises(ValueError, match="buffer `out`"):
        _cpu.otsu_f32(x, 2, 2, 5, None, 256, 0, np.zeros(5, np.uint8), 1, two, two, two.copy())
    with pytest.raises(ValueError, match="buffer `keep`"):
        _cpu.otsu_f32(x, 2, 2, 5, np.zeros(1, np.uint8), 256, 0, None, 1, two, two, two.copy())
    with pytest.raises(ValueError, match="buffer `masks`"):
        _cpu.small_objects(np.zeros(5, dtype=np.uint8), 1, 2, 3, 2, 1)


@needs_native
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_threads_of_its_own(split_everything) -> None:
    maps = torch.rand(16, 30, 30)
    expected = threshold_otsu(maps)  # the parent's pool now exists
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: without a fresh pool this would wait forever
        try:
            ok = bool(torch.equal(threshold_otsu(maps), expected))
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 60)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        assert ready, "the forked child did not answer within 60 s"
        assert os.read(read, 1) == b"1"
    finally:
        os.waitpid(pid, 0)
        os.close(read)


@needs_native
@pytest.mark.parametrize(
    "arr",
    [np.zeros((2, 8), np.float64), np.zeros((2, 8), np.float32)[:, ::2], np.zeros(8, np.float32)],
)
def test_kernels_refuse_wrong_buffer_format(arr: np.ndarray) -> None:
    # a float64 buffer of the right length (or a strided / 1-D one) would be misread as bytes
    with pytest.raises(TypeError, match="Expected `flat` to be a C-contiguous float32 array"):
        _native.range_f32(arr)
    with pytest.raises(TypeError, match="Expected `flat` to be a C-contiguous float32 array"):
        _native.histogram_f32(arr, 4)


@needs_native
def test_small_objects_refuses_non_bool_masks() -> None:
    with pytest.raises(TypeError, match="Expected `masks` to be a C-contiguous bool array"):
        _native.small_objects(np.zeros((1, 4, 4), np.uint8), 2, 1)


@pytest.mark.parametrize("native", [True, False])
def test_small_objects_leave_the_input_alone_and_take_strided_masks(
    native: bool, no_native
) -> None:
    if not native:
        no_native()
    masks = _random_masks(3, 40, 30, seed=4)
    masks |= torch.rand(masks.shape, generator=torch.Generator().manual_seed(5)) > 0.9
    before = masks.clone()
    strided = masks.transpose(1, 2)  # (3, 30, 40), not contiguous
    expected = remove_small_objects(strided.contiguous(), 5)
    got = remove_small_objects(strided, 5)
    remove_small_objects(masks, 5)  # a contiguous input: not overwritten either
    assert torch.equal(got, expected) and torch.equal(masks, before)
    for i in range(3):
        ref = sk_remove(strided[i].numpy(), max_size=4, connectivity=1)
        np.testing.assert_array_equal(got[i].numpy(), ref)
    # cams_to_masks removes them in place on its own masks, with and without tissue
    maps = masks.float() * 0.8 + 0.1
    for tissue in (None, ~_random_masks(3, 40, 30, seed=6)):
        out = cams_to_masks(maps, threshold=0.5, tissue=tissue, min_size=5)
        ref_in = masks if tissue is None else masks & tissue
        assert torch.equal(out, remove_small_objects(ref_in, 5))
        assert torch.equal(masks, before)
