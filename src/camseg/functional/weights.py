r"""CAM weightings: pure functions of activations ``A`` and gradients ``G``.

Every function here takes activations of shape ``(..., C, h, w)`` and, where
the method uses them, gradients ``G = d score / d A`` of a broadcastable shape
(``A`` of shape ``(B, C, h, w)`` with ``G`` of shape ``(B, K, C, h, w)`` gives
``K`` maps per image), and returns raw maps ``(..., h, w)``. The ReLU of the
original papers is applied; normalization and resizing are separate steps
(:mod:`camseg.functional.maps`). Nothing here registers hooks or keeps state,
so every function is differentiable and works on any device and dtype.

Notation: :math:`A^k_{ij}` is channel :math:`k` of the activations at pixel
:math:`(i, j)`, :math:`g^k_{ij} = \partial y^c / \partial A^k_{ij}` the
gradient of the class score :math:`y^c`, and :math:`Z = hw`.
"""

from __future__ import annotations

import torch

from camseg._checks import (
    check_finite,
    check_floating,
    check_ndim,
    check_nonnegative,
    check_tensor,
)

__all__ = [
    "eigencam",
    "eigengradcam",
    "gradcam",
    "gradcam_elementwise",
    "gradcam_pp",
    "hirescam",
    "layercam",
    "linear_cam",
    "xgradcam",
]


def _check_pair(activations: torch.Tensor, gradients: torch.Tensor) -> None:
    check_floating(activations, "activations")
    check_floating(gradients, "gradients")
    # an infinity would otherwise vanish in a ReLU or a mean and leave a finite, wrong map
    check_finite(activations, "activations")
    check_finite(gradients, "gradients")
    if activations.ndim < 3:
        raise ValueError(
            "Expected `activations` to be a tensor of shape (B, C, h, w), but got shape "
            f"{tuple(activations.shape)}."
        )
    try:
        torch.broadcast_shapes(_align(activations, gradients).shape, gradients.shape)
    except RuntimeError:
        raise ValueError(
            "Expected `gradients` to have the shape of `activations` (or to broadcast with it, "
            f"e.g. (B, K, C, h, w) against (B, C, h, w)), but got {tuple(gradients.shape)} and "
            f"{tuple(activations.shape)}."
        ) from None
    if gradients.shape[-3:] != activations.shape[-3:]:
        raise ValueError(
            "Expected `gradients` and `activations` to share their last three dimensions "
            f"(C, h, w), but got {tuple(gradients.shape)} and {tuple(activations.shape)}."
        )


def _align(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Insert target dimensions into ``activations`` so it broadcasts with ``gradients``."""
    while activations.ndim < gradients.ndim:
        activations = activations.unsqueeze(-4)
    return activations


def gradcam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    r"""Grad-CAM: channels weighted by their spatially averaged gradient.

    .. math::

        w_k = \frac{1}{Z}\sum_{ij} g^k_{ij}, \qquad
        M_{ij} = \mathrm{ReLU}\Big(\sum_k w_k A^k_{ij}\Big)

    Args:
        activations: ``(B, C, h, w)`` activations of the hooked layer.
        gradients: gradients of the target score w.r.t. ``activations``, shape
            ``(B, C, h, w)`` or ``(B, K, C, h, w)`` for ``K`` targets.

    Returns:
        Raw maps ``(B, h, w)`` or ``(B, K, h, w)``.

    Raises:
        TypeError: if an input is not a floating-point tensor.
        ValueError: if the shapes do not match or an input is not finite.

    References:
        Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
        Gradient-based Localization", ICCV 2017.

    Example:
        >>> A = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])   # (1, 2, 1, 2)
        >>> G = torch.tensor([[[[1.0, 1.0]], [[-1.0, -1.0]]]])  # w = (1, -1)
        >>> gradcam(A, G)
        tensor([[[0., 2.]]])
    """
    _check_pair(activations, gradients)
    return _gradcam(activations, gradients)


def _gradcam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    # the computation on checked inputs; the extractors call it directly (their
    # tensors come from autograd and are checked once there)
    return _channel_sum(_gradcam_terms(activations, gradients))


def _gradcam_terms(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    a = _align(activations, gradients)
    return gradients.mean(dim=(-2, -1), keepdim=True) * a


def hirescam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    r"""HiResCAM: element-wise gradient times activation, summed over channels.

    .. math::

        M_{ij} = \mathrm{ReLU}\Big(\sum_k g^k_{ij} A^k_{ij}\Big)

    For a model whose score is linear in the activations this map sums exactly
    to the score's dependence on them, which Grad-CAM's averaging loses.

    Args:
        activations: ``(B, C, h, w)``.
        gradients: ``(B, C, h, w)`` or ``(B, K, C, h, w)``.

    Returns:
        Raw maps ``(B, h, w)`` or ``(B, K, h, w)``.

    Raises:
        TypeError: if an input is not a floating-point tensor.
        ValueError: if the shapes do not match or an input is not finite.

    References:
        Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful
        explanations of convolutional neural networks", arXiv:2011.08891, 2020.

    Example:
        >>> A = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])
        >>> G = torch.tensor([[[[1.0, 1.0]], [[-1.0, -1.0]]]])
        >>> hirescam(A, G)
        tensor([[[0., 2.]]])
    """
    _check_pair(activations, gradients)
    return _hirescam(activations, gradients)


def _hirescam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    # the computation on checked inputs; the extractors call it directly (their
    # tensors come from autograd and are checked once there)
    return _channel_sum(_hirescam_terms(activations, gradients))


def _hirescam_terms(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    return gradients * _align(activations, gradients)


def gradcam_elementwise(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    r"""Element-wise Grad-CAM: the positive part of gradient times activation, summed.

    .. math::

        M_{ij} = \sum_k \mathrm{ReLU}\big(g^k_{ij} A^k_{ij}\big)

    HiResCAM (:func:`hirescam`) clips after the channel sum, so channels that
    speak against the class cancel those that speak for it; this map clips each
    channel first and keeps only the evidence for the class. Named after
    pytorch-grad-cam's ``GradCAMElementWise``, which computes the same map.

    Args:
        activations: ``(B, C, h, w)``.
        gradients: ``(B, C, h, w)`` or ``(B, K, C, h, w)``.

    Returns:
        Raw maps ``(B, h, w)`` or ``(B, K, h, w)``, non-negative.

    Raises:
        TypeError: if an input is not a floating-point tensor.
        ValueError: if the shapes do not match or an input is not finite.

    Example:
        >>> A = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])
        >>> G = torch.tensor([[[[1.0, 1.0]], [[-1.0, -1.0]]]])
        >>> gradcam_elementwise(A, G)  # hirescam gives [[0., 2.]]
        tensor([[[1., 2.]]])
    """
    _check_pair(activations, gradients)
    return _gradcam_elementwise(activations, gradients)


def _gradcam_elementwise(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    # the computation on checked inputs; the extractors call it directly (their
    # tensors come from autograd and are checked once there)
    return _gradcam_elementwise_terms(activations, gradients).sum(dim=-3)


def _gradcam_elementwise_terms(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    return torch.relu(gradients * _align(activations, gradients))


def xgradcam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    r"""XGrad-CAM: channel weights normalized by the channel's total activation.

    .. math::

        w_k = \sum_{ij} \frac{A^k_{ij}}{\sum_{ab} A^k_{ab}} g^k_{ij}, \qquad
        M_{ij} = \mathrm{ReLU}\Big(\sum_k w_k A^k_{ij}\Big)

    A channel whose activations sum to zero gets weight zero.

    Args:
        activations: ``(B, C, h, w)``.
        gradients: ``(B, C, h, w)`` or ``(B, K, C, h, w)``.

    Returns:
        Raw maps ``(B, h, w)`` or ``(B, K, h, w)``.

    Raises:
        TypeError: if an input is not a floating-point tensor.
        ValueError: if the shapes do not match or an input is not finite.

    References:
        Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and
        Explanation of CNNs", BMVC 2020.

    Example:
        >>> A = torch.tensor([[[[1.0, 3.0]], [[0.0, 0.0]]]])
        >>> G = torch.tensor([[[[2.0, 4.0]], [[5.0, 5.0]]]])
        >>> xgradcam(A, G)  # w = (1*2 + 3*4) / 4 = 3.5, channel 2 has no mass
        tensor([[[ 3.5000, 10.5000]]])
    """
    _check_pair(activations, gradients)
    return _xgradcam(activations, gradients)


def _xgradcam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    # the computation on checked inputs; the extractors call it directly (their
    # tensors come from autograd and are checked once there)
    return _channel_sum(_xgradcam_terms(activations, gradients))


def _xgradcam_terms(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    a = _align(activations, gradients)
    total = a.sum(dim=(-2, -1), keepdim=True)
    num = (gradients * a).sum(dim=(-2, -1), keepdim=True)
    safe = torch.where(total != 0, total, torch.ones_like(total))
    weights = torch.where(total != 0, num / safe, torch.zeros_like(num))
    return weights * a


def gradcam_pp(
    activations: torch.Tensor,
    gradients: torch.Tensor,
    *,
    eps: float = 0.0,
) -> torch.Tensor:
    r"""Grad-CAM++: pixel-wise weighted positive gradients.

    The variant computed here is the closed form of Chattopadhyay et al.
    (2018), Eq. 19, in which the second and third derivatives of an
    exponential score are written as powers of the first derivative:

    .. math::

        \alpha^k_{ij} = \frac{(g^k_{ij})^2}
            {2 (g^k_{ij})^2 + \sum_{ab} A^k_{ab} (g^k_{ij})^3}, \qquad
        w_k = \sum_{ij} \alpha^k_{ij}\, \mathrm{ReLU}(g^k_{ij}), \qquad
        M_{ij} = \mathrm{ReLU}\Big(\sum_k w_k A^k_{ij}\Big)

    with :math:`\alpha^k_{ij} = 0` wherever the denominator is zero (which
    includes every pixel with zero gradient). ``eps`` is added to the
    denominator; it is 0 by default so that the function computes exactly the
    formula above. pytorch-grad-cam adds ``1e-6``; pass ``eps=1e-6`` to
    reproduce its numbers. torch-cam's implementation divides a copy of
    :math:`\alpha` in place and so skips the normalization; it is not a
    reference for this method.

    Args:
        activations: ``(B, C, h, w)``.
        gradients: ``(B, C, h, w)`` or ``(B, K, C, h, w)``.
        eps: non-negative constant added to the denominator of :math:`\alpha`.

    Returns:
        Raw maps ``(B, h, w)`` or ``(B, K, h, w)``.

    Raises:
        TypeError: if an input is not a floating-point tensor.
        ValueError: if the shapes do not match, an input is not finite or ``eps < 0``.

    References:
        Chattopadhyay et al., "Grad-CAM++: Generalized Gradient-based Visual
        Explanations for Deep Convolutional Networks", WACV 2018.

    Example:
        >>> A = torch.tensor([[[[1.0, 1.0]]]])       # one channel, sum_ab A = 2
        >>> G = torch.tensor([[[[1.0, 0.0]]]])       # alpha = 1 / (2 + 2) at pixel 0
        >>> gradcam_pp(A, G)                          # w = 0.25
        tensor([[[0.2500, 0.2500]]])
    """
    _check_pair(activations, gradients)
    check_nonnegative(eps, "eps")
    return _gradcam_pp(activations, gradients, eps)


def _gradcam_pp(activations: torch.Tensor, gradients: torch.Tensor, eps: float) -> torch.Tensor:
    # the computation on checked inputs; the extractors call it directly (their
    # tensors come from autograd and are checked once there)
    return _channel_sum(_gradcam_pp_terms(activations, gradients, eps))


def _gradcam_pp_terms(
    activations: torch.Tensor, gradients: torch.Tensor, eps: float
) -> torch.Tensor:
    a = _align(activations, gradients)
    g2 = gradients.pow(2)
    g3 = g2 * gradients
    total = a.sum(dim=(-2, -1), keepdim=True)
    denom = 2 * g2 + total * g3 + eps
    nonzero = denom != 0
    alpha = torch.where(nonzero, g2 / torch.where(nonzero, denom, torch.ones_like(denom)), 0.0)
    weights = (alpha * torch.relu(gradients)).sum(dim=(-2, -1), keepdim=True)
    return weights * a


def layercam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    r"""LayerCAM: activations weighted pixel by pixel by their positive gradient.

    .. math::

        M_{ij} = \mathrm{ReLU}\Big(\sum_k \mathrm{ReLU}(g^k_{ij}) A^k_{ij}\Big)

    Args:
        activations: ``(B, C, h, w)``.
        gradients: ``(B, C, h, w)`` or ``(B, K, C, h, w)``.

    Returns:
        Raw maps ``(B, h, w)`` or ``(B, K, h, w)``.

    Raises:
        TypeError: if an input is not a floating-point tensor.
        ValueError: if the shapes do not match or an input is not finite.

    References:
        Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps
        for Localization", IEEE TIP 2021.

    Example:
        >>> A = torch.tensor([[[[1.0, 2.0]], [[3.0, 1.0]]]])
        >>> G = torch.tensor([[[[1.0, -1.0]], [[0.5, 2.0]]]])
        >>> layercam(A, G)
        tensor([[[2.5000, 2.0000]]])
    """
    _check_pair(activations, gradients)
    return _layercam(activations, gradients)


def _layercam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    # the computation on checked inputs; the extractors call it directly (their
    # tensors come from autograd and are checked once there)
    return _channel_sum(_layercam_terms(activations, gradients))


def _layercam_terms(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    return torch.relu(gradients) * _align(activations, gradients)


def linear_cam(
    activations: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    relu: bool = True,
) -> torch.Tensor:
    r"""Class activation map of a global-average-pool + linear head, in closed form.

    .. math::

        M^c_{ij} = \mathrm{ReLU}\Big(\sum_k W_{ck} A^k_{ij}\Big)

    No backward pass is needed. For a GAP + linear head this equals Grad-CAM
    times :math:`Z = hw` (Grad-CAM's weights are :math:`W_{ck}/Z`), so the two
    agree after any normalisation. For a single-logit binary head (``weight``
    of shape ``(1, C)``) target 1 uses :math:`W` and target 0 uses
    :math:`-W`, matching the score convention of :class:`camseg.GradCAM`.

    Args:
        activations: ``(B, C, h, w)`` activations that feed the pooled head.
        weight: the head's weight ``(num_classes, C)``.
        targets: LongTensor ``(B,)`` or ``(B, K)`` of class indices.
        relu: apply the ReLU (``False`` keeps negative evidence, e.g. for
            losses that should see it).

    Returns:
        Maps ``(B, h, w)`` or ``(B, K, h, w)``.

    Raises:
        TypeError: for non-floating inputs or non-integer targets.
        ValueError: for mismatched shapes, non-finite inputs or targets out of range.

    References:
        Zhou et al., "Learning Deep Features for Discriminative Localization",
        CVPR 2016.

    Example:
        >>> A = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])  # (1, 2, 1, 2)
        >>> W = torch.tensor([[1.0, -1.0], [0.5, 1.0]])       # 2 classes
        >>> linear_cam(A, W, torch.tensor([1]))
        tensor([[[0.5000, 2.0000]]])
    """
    check_floating(activations, "activations")
    check_ndim(activations, "activations", 4, "(B, C, h, w)")
    check_floating(weight, "weight")
    check_ndim(weight, "weight", 2, "(num_classes, C)")
    check_finite(activations, "activations")
    check_finite(weight, "weight")
    check_tensor(targets, "targets")
    if not isinstance(relu, bool):
        raise TypeError(f"Expected `relu` to be a bool, but got {relu!r}.")
    if weight.shape[1] != activations.shape[1]:
        raise ValueError(
            f"Expected `weight` to have {activations.shape[1]} input features (the channels of "
            f"`activations`), but got shape {tuple(weight.shape)}. Hint: the captured layer must "
            "be the one whose pooled output feeds the linear head."
        )
    if targets.dtype in (torch.bool,) or targets.is_floating_point() or targets.is_complex():
        raise TypeError(f"Expected `targets` to be an integer tensor, but got {targets.dtype}.")
    if targets.ndim not in (1, 2) or targets.shape[0] != activations.shape[0]:
        raise ValueError(
            f"Expected `targets` to have shape ({activations.shape[0]},) or "
            f"({activations.shape[0]}, K), but got {tuple(targets.shape)}."
        )
    n_cls = weight.shape[0]
    limit = 2 if n_cls == 1 else n_cls
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= limit):
        raise ValueError(
            f"Expected `targets` in [0, {limit - 1}], but got values in "
            f"[{int(targets.min())}, {int(targets.max())}]."
        )
    if n_cls == 1:
        sign = (2 * targets - 1).to(weight.dtype)
        w = sign.unsqueeze(-1) * weight[0]
    else:
        w = weight[targets]
    # w: (B, C) or (B, K, C)
    if w.ndim == 2:
        maps = torch.einsum("bc,bchw->bhw", w, activations)
    else:
        maps = torch.einsum("bkc,bchw->bkhw", w, activations)
    return torch.relu(maps) if relu else maps


def eigencam(activations: torch.Tensor) -> torch.Tensor:
    r"""Eigen-CAM: projection of the activations on their first principal component.

    For each image the activations are arranged as a :math:`Z \times C` matrix,
    centred over pixels, and projected on the first right-singular vector; a
    batched SVD does all images at once. The singular vector's sign is
    arbitrary, so it is fixed here to make the map correlate positively with
    the channel-summed activations (otherwise a map and its negative are equally
    valid and the ReLU would keep either half). Gradient-free and
    class-agnostic.

    Args:
        activations: ``(B, C, h, w)``.

    Returns:
        Raw maps ``(B, h, w)`` after ReLU.

    Raises:
        TypeError: if ``activations`` is not floating point.
        ValueError: if ``activations`` is not 4-D.

    References:
        Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal
        Components", IJCNN 2020.

    Example:
        >>> A = torch.zeros(1, 3, 2, 2)
        >>> A[0, :, 0, 0] = torch.tensor([3.0, 2.0, 1.0])   # one bright pixel
        >>> eigencam(A).argmax().item()
        0
    """
    check_floating(activations, "activations")
    check_ndim(activations, "activations", 4, "(B, C, h, w)")
    # the SVD of a NaN or infinity fails with torch's LinAlgError: say what is wrong instead
    check_finite(activations, "activations")
    b, _, h, w = activations.shape
    x = activations.flatten(2).transpose(1, 2)  # (B, Z, C)
    x = x - x.mean(dim=1, keepdim=True)
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    _, _, vh = torch.linalg.svd(work, full_matrices=False)
    proj = (work @ vh[:, 0, :].unsqueeze(-1)).squeeze(-1)  # (B, Z)
    reference = activations.flatten(2).sum(dim=1).to(proj.dtype)
    reference = reference - reference.mean(dim=1, keepdim=True)
    sign = torch.where((proj * reference).sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
    return torch.relu(proj * sign).reshape(b, h, w).to(activations.dtype)


def eigengradcam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    r"""Eigen-Grad-CAM: the first principal component of gradient times activation.

    :func:`eigencam` applied to :math:`g^k_{ij} A^k_{ij}` instead of the
    activations, so the map depends on the class. The sign of the component is
    fixed as in :func:`eigencam`, to correlate positively with the channel sum
    of the product (pytorch-grad-cam's ``EigenGradCAM`` leaves it to the SVD,
    so its maps equal these or those of the opposite sign).

    Args:
        activations: ``(B, C, h, w)``.
        gradients: ``(B, C, h, w)`` or ``(B, K, C, h, w)``.

    Returns:
        Raw maps ``(B, h, w)`` or ``(B, K, h, w)`` after ReLU.

    Raises:
        TypeError: if an input is not a floating-point tensor.
        ValueError: if the shapes do not match or an input is not finite.

    Example:
        >>> A = torch.zeros(1, 3, 2, 2)
        >>> A[0, :, 0, 0] = torch.tensor([3.0, 2.0, 1.0])
        >>> eigengradcam(A, torch.ones_like(A)).argmax().item()
        0
    """
    _check_pair(activations, gradients)
    return _eigengradcam(activations, gradients)


def _eigengradcam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    # the computation on checked inputs; the extractors call it directly (their
    # tensors come from autograd and are checked once there)
    return _eigen_projection(_hirescam_terms(activations, gradients))


def _channel_sum(terms: torch.Tensor) -> torch.Tensor:
    """The raw map of per-channel terms ``(..., C, h, w)``: ReLU of their channel sum."""
    return torch.relu(terms.sum(dim=-3))


def _eigen_projection(terms: torch.Tensor) -> torch.Tensor:
    """:func:`eigencam` of per-channel terms ``(..., C, h, w)`` (``eigen_smooth``)."""
    lead = terms.shape[:-3]
    maps = eigencam(terms.reshape(-1, *terms.shape[-3:]))
    return maps.reshape(*lead, *maps.shape[-2:])
