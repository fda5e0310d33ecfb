r"""Mean-field CRF refinement of soft foreground maps, in a local window (a "convolutional CRF")."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from camseg._checks import (
    check_finite,
    check_floating,
    check_in_range,
    check_ndim,
    check_positive_int,
    check_tensor,
    describe,
    to_unit_rgb,
)

__all__ = ["crf_refine"]

# images per chunk are chosen so that one chunk's kernel holds at most this many numbers
_CHUNK_ELEMENTS = 1 << 24


def _check_positive_number(value: object, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"Expected `{name}` to be a number > 0, but got {describe(value)}.")
    if not 0 < value < float("inf"):
        raise ValueError(f"Expected `{name}` to be a finite number > 0, but got {value!r}.")
    return float(value)


def _check_weight(value: object, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"Expected `{name}` to be a number >= 0, but got {describe(value)}.")
    if not 0 <= value < float("inf"):
        raise ValueError(f"Expected `{name}` to be a finite number >= 0, but got {value!r}.")
    return float(value)


def _refine_chunk(
    x: torch.Tensor,
    p: torch.Tensor,
    *,
    iterations: int,
    k: int,
    theta_alpha: float,
    theta_beta: float,
    theta_gamma: float,
    w_appearance: float,
    w_smooth: float,
    eps: float,
) -> torch.Tensor:
    b, c, h, w = x.shape
    r = k // 2
    n = h * w
    offsets = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    dist2 = (offsets[:, None] ** 2 + offsets[None, :] ** 2).reshape(k * k, 1)
    # neighbours outside the image (zero padding of unfold) get zero weight
    valid = F.unfold(torch.ones(1, 1, h, w, device=x.device, dtype=x.dtype), k, padding=r)
    feats = F.unfold(x, k, padding=r).reshape(b, c, k * k, n)
    colour2 = (feats - x.reshape(b, c, 1, n)).pow(2).sum(1)  # (B, k*k, N)
    kernel = w_appearance * torch.exp(-dist2 / (2 * theta_alpha**2) - colour2 / (2 * theta_beta**2))
    kernel = kernel + w_smooth * torch.exp(-dist2 / (2 * theta_gamma**2))
    kernel = kernel * valid
    kernel[:, (k * k) // 2] = 0.0  # no message from a pixel to itself
    pc = p.clamp(eps, 1.0 - eps)
    unary = (torch.log(pc) - torch.log1p(-pc)).reshape(b, n)
    q = p.reshape(b, n)
    for _ in range(iterations):
        spins = F.unfold((2.0 * q - 1.0).reshape(b, 1, h, w), k, padding=r)  # (B, k*k, N)
        q = torch.sigmoid(unary + (kernel * spins).sum(1))
    return q.reshape(b, h, w)


def crf_refine(
    images: torch.Tensor,
    probs: torch.Tensor,
    *,
    iterations: int = 5,
    kernel_size: int = 7,
    theta_alpha: float = 3.0,
    theta_beta: float = 0.1,
    theta_gamma: float = 1.0,
    w_appearance: float = 1.0,
    w_smooth: float = 0.5,
) -> torch.Tensor:
    r"""Refine soft foreground maps with a mean-field CRF restricted to a local window.

    The fully connected CRF of Krähenbühl and Koltun (2011) over binary labels
    :math:`x_i \in \{0, 1\}` has the energy

    .. math::

        E(x) = \sum_i \psi_u(x_i) + \sum_{i < j} [x_i \ne x_j]\, k(f_i, f_j),
        \qquad \psi_u(x_i) = -\log P(x_i),

    with the pairwise kernel over positions :math:`p` and colours :math:`I`

    .. math::

        k(f_i, f_j) = w_a \exp\Bigl(-\frac{\|p_i - p_j\|^2}{2\theta_\alpha^2}
        - \frac{\|I_i - I_j\|^2}{2\theta_\beta^2}\Bigr)
        + w_s \exp\Bigl(-\frac{\|p_i - p_j\|^2}{2\theta_\gamma^2}\Bigr).

    The appearance term asks nearby pixels of similar colour to share a label
    (boundaries snap to colour edges); the smoothness term removes isolated
    pixels. As in the convolutional CRF of Teichmann and Cipolla (2018), the
    pairwise sum is restricted to a ``kernel_size`` window around each pixel,
    which makes the mean-field update one batched unfold–multiply–sum. For
    two labels with the Potts compatibility the update of
    :math:`Q_i = Q_i(x_i = 1)` reduces to

    .. math::

        Q_i \leftarrow \sigma\Bigl(\log\frac{P_i}{1 - P_i}
        + \sum_{j \in W(i),\, j \ne i} k(f_i, f_j)\, (2 Q_j - 1)\Bigr),

    repeated ``iterations`` times from :math:`Q = P` (:math:`\sigma` is the
    logistic function; neighbours outside the image do not send messages).
    Colours are on the ``[0, 1]`` scale, so ``theta_beta = 0.1`` is about 25
    grey levels; positions are in pixels. Memory grows as
    ``B * kernel_size**2 * H * W``; large batches are processed in chunks.

    Args:
        images: RGB images ``(B, 3, H, W)``, float in ``[0, 1]`` or uint8.
        probs: foreground probabilities ``(B, H, W)`` in ``[0, 1]`` (e.g.
            normalised CAMs, upsampled to the image size).
        iterations: number of mean-field updates (``0`` returns ``probs``).
        kernel_size: odd side of the local window, ``>= 3``.
        theta_alpha: spatial scale of the appearance kernel, pixels.
        theta_beta: colour scale of the appearance kernel, ``[0, 1]`` units.
        theta_gamma: spatial scale of the smoothness kernel, pixels.
        w_appearance: weight :math:`w_a` of the appearance kernel (``>= 0``).
        w_smooth: weight :math:`w_s` of the smoothness kernel (``>= 0``).

    Returns:
        Refined probabilities ``(B, H, W)`` in ``[0, 1]``, in the dtype of
        ``probs`` (at least float32), on its device.

    Raises:
        TypeError: on non-tensor or wrongly typed arguments.
        ValueError: on shape mismatches, NaN or out-of-range ``images`` or
            ``probs``, an even or too small ``kernel_size``, or non-positive
            scales.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> images = torch.zeros(1, 3, 8, 8)
        >>> images[:, 0, :, 4:] = 1.0  # a red right half
        >>> probs = torch.full((1, 8, 8), 0.4)
        >>> probs[:, :, 3:] = 0.6  # a soft map whose edge is one pixel off
        >>> refined = crf_refine(images, probs)
        >>> (refined[0, 0] >= 0.5).int()
        tensor([0, 0, 0, 0, 1, 1, 1, 1], dtype=torch.int32)

    References:
        P. Krähenbühl and V. Koltun, "Efficient Inference in Fully Connected CRFs
        with Gaussian Edge Potentials", NeurIPS 2011. M. T. T. Teichmann and
        R. Cipolla, "Convolutional CRFs for Semantic Segmentation", BMVC 2019
        (arXiv:1805.04777, 2018).
    """
    x = to_unit_rgb(images)
    p = check_tensor(probs, "probs")
    check_ndim(p, "probs", 3, "(B, H, W)")
    check_floating(p, "probs")
    if p.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(
            "Expected `probs` to have shape (B, H, W) matching `images` (B, 3, H, W), but got "
            f"{tuple(p.shape)} and {tuple(x.shape)}."
        )
    check_finite(p, "probs")
    check_in_range(p, "probs", 0.0, 1.0)
    check_positive_int(iterations, "iterations", minimum=0)
    check_positive_int(kernel_size, "kernel_size", minimum=3)
    if kernel_size % 2 == 0:
        raise ValueError(f"Expected `kernel_size` to be odd, but got {kernel_size}.")
    ta = _check_positive_number(theta_alpha, "theta_alpha")
    tb = _check_positive_number(theta_beta, "theta_beta")
    tg = _check_positive_number(theta_gamma, "theta_gamma")
    wa = _check_weight(w_appearance, "w_appearance")
    ws = _check_weight(w_smooth, "w_smooth")
    dtype = torch.promote_types(p.dtype, torch.float32)
    if iterations == 0 or p.numel() == 0:
        return p.to(dtype).clone()
    x = x.to(device=p.device, dtype=dtype)
    pd = p.to(dtype)
    eps = float(torch.finfo(dtype).eps)
    per_image = kernel_size * kernel_size * p.shape[1] * p.shape[2]
    step = max(1, _CHUNK_ELEMENTS // per_image)
    parts = [
        _refine_chunk(
            x[i : i + step],
            pd[i : i + step],
            iterations=iterations,
            k=kernel_size,
            theta_alpha=ta,
            theta_beta=tb,
            theta_gamma=tg,
            w_appearance=wa,
            w_smooth=ws,
            eps=eps,
        )
        for i in range(0, p.shape[0], step)
    ]
    return torch.cat(parts)
