"""camseg._cpu itself (below camseg._native's checks): buffer formats and the growing run table."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.morphology import remove_small_objects as sk_remove

from camseg import _native

pytestmark = pytest.mark.skipif(not _native.available(), reason="camseg._cpu is not built")


def _cpu():  # type: ignore[no-untyped-def]
    from camseg import _cpu

    return _cpu


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint8])
def test_float_kernels_refuse_other_element_types(dtype: type) -> None:
    # the byte length of `x` would pass a length check for a (2, 4) float32 buffer
    x = np.zeros((2, 4 * 4 // np.dtype(dtype).itemsize), dtype=dtype)
    two = np.zeros(2, np.float32)
    with pytest.raises(TypeError, match="buffer `maps` to hold float32"):
        _cpu().range_f32(x, 2, 4, two, two.copy())
    with pytest.raises(TypeError, match="buffer `maps` to hold float32"):
        _cpu().histogram_f32(x, 2, 4, 4, np.zeros((2, 4), np.int64))
    with pytest.raises(TypeError, match="buffer `lo` to hold float32"):
        _cpu().range_f32(np.zeros((2, 4), np.float32), 2, 4, np.zeros(2, np.float64), two)


def test_mask_and_count_buffers_are_checked() -> None:
    x = np.random.default_rng(0).random((2, 16), dtype=np.float32)
    with pytest.raises(TypeError, match="buffer `counts` to hold int64"):
        _cpu().histogram_f32(x, 2, 16, 4, np.zeros((2, 8), np.int32))
    with pytest.raises(TypeError, match="buffer `masks` to hold uint8 or bool"):
        _cpu().small_objects(np.zeros((1, 4, 4), np.int32), 1, 4, 4, 2, 1)
    two = np.zeros(2, np.float32)
    with pytest.raises(TypeError, match="buffer `out` to hold uint8 or bool"):
        _cpu().otsu_f32(x, 2, 4, 4, None, 8, 0, np.zeros(32, np.float32), 1, two, two, two)
    # the right types pass, bool included
    out = np.zeros((2, 16), np.bool_)
    _cpu().otsu_f32(x, 2, 4, 4, None, 8, 0, out, 1, two, two.copy(), two.copy())


@pytest.mark.parametrize("connectivity", [1, 2])
def test_run_table_grows_past_its_first_size(connectivity: int) -> None:
    # a checkerboard with noise: far more runs than the table's first size (4 per row)
    rng = np.random.default_rng(3)
    h, w = 40, 300
    masks = ((np.indices((h, w)).sum(0) % 2) == 0) & (rng.random((h, w)) < 0.9)
    masks = np.ascontiguousarray(np.stack([masks, rng.random((h, w)) < 0.5]))
    expected = np.stack([sk_remove(m, max_size=2, connectivity=connectivity) for m in masks])
    got = masks.copy()
    _cpu().small_objects(got.view(np.uint8), 2, h, w, 3, connectivity)
    np.testing.assert_array_equal(got, expected)
    # the Otsu kernel's own small-object pass uses the same table
    maps = masks.astype(np.float32).reshape(2, -1)
    two = np.zeros(2, np.float32)
    out = np.zeros((2, h * w), np.bool_)
    _cpu().otsu_f32(maps, 2, h, w, None, 16, 3, out, connectivity, two, two.copy(), two.copy())
    np.testing.assert_array_equal(out.reshape(2, h, w), expected)
