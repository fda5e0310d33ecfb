"""CAM-friendly classifiers: a feature extractor, global average pooling, one linear layer.

:class:`GAPClassifier` splits every model into ``features`` (the CAM layer) and
``fc`` (the linear head), so the class-activation map is the closed form
:func:`camseg.functional.linear_cam` of the features and the head's weight, and
the training loop gets logits and maps from one forward pass. The torchvision
backbones are built with ``weights=None``; ``weights=PATH`` loads a local state
dict (e.g. ImageNet weights downloaded beforehand), never from the network.
"""

from __future__ import annotations

import os
from typing import Literal, cast

import torch
from torch import nn

from camseg import losses as L
from camseg_pcam._validate import check_one_of, check_positive_int

__all__ = [
    "HEADS",
    "MIL_POOLINGS",
    "MODELS",
    "GAPClassifier",
    "Head",
    "MILPooling",
    "ModelName",
    "SmallCNN",
    "build_model",
]

Head = Literal["gap", "mil"]
#: How the image logit is formed: ``"gap"`` (global average pooling, then the linear
#: head) or ``"mil"`` (the linear head at every location, pooled over the label region
#: with :func:`camseg.losses.mil_pool`: the PCam label rule).
HEADS: tuple[str, ...] = ("gap", "mil")

MILPooling = Literal["lse", "max"]

#: How a ``"mil"`` head pools its per-location logits over the label region:
#: ``"lse"`` (log-mean-exp at temperature 1, a smooth maximum) or ``"max"`` (the
#: maximum: the PCam label rule itself, see :class:`GAPClassifier`).
MIL_POOLINGS: tuple[str, ...] = ("lse", "max")

ModelName = Literal["small", "resnet18", "resnet50", "densenet121", "efficientnet_b0", "vgg16_bn"]
MODELS: tuple[str, ...] = (
    "small",
    "resnet18",
    "resnet50",
    "densenet121",
    "efficientnet_b0",
    "vgg16_bn",
)

#: ImageNet channel statistics; the models normalise their uint8-scaled input with them.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class GAPClassifier(nn.Module):
    r"""Features, a linear head and a pooling rule; input normalisation inside.

    With ``head="gap"`` the logits are the linear head of the globally averaged
    features. With ``head="mil"`` (two classes only) the head is applied at every
    location, giving the per-location tumor logit
    :math:`z(p) = (w_1 - w_0)^\top A(p) + (b_1 - b_0)` (:meth:`tumor_logits`), which
    is pooled over the centre third, the PCam label region, by
    :func:`camseg.losses.mil_pool` (``mil_pooling``: the maximum, or the log-mean-exp at
    temperature 1) into the image logit :math:`s`; the two logits are
    :math:`(-s/2, s/2)`, so their softmax is :math:`\sigma(s)` and cross-entropy on
    them equals :func:`camseg.losses.mil_loss` of :math:`z` with that pooling.

    The maximum is the PCam label rule itself (a patch is positive if and only if
    some pixel of its centre is tumor), so a map that is exactly right gives exactly
    the label. The log-mean-exp is smoother but not consistent with the rule: a
    correct map of a small tumor pools to a low logit (``log`` of the tumor's share
    of the region below its own), and training answers by widening the map.

    Args:
        features: a module mapping ``(B, 3, H, W)`` to ``(B, C, h, w)``.
        channels: ``C``, the number of feature channels.
        num_classes: the number of logits.
        dropout: dropout before the head.
        head: ``"gap"`` or ``"mil"``.
        mil_pooling: ``"lse"`` or ``"max"``: how a ``"mil"`` head pools.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> m = GAPClassifier(nn.Conv2d(3, 4, 3, padding=1), 4)
        >>> logits, feats = m.forward_features(torch.rand(2, 3, 8, 8))
        >>> logits.shape, feats.shape
        (torch.Size([2, 2]), torch.Size([2, 4, 8, 8]))
    """

    def __init__(
        self,
        features: nn.Module,
        channels: int,
        num_classes: int = 2,
        *,
        dropout: float = 0.0,
        head: Head = "gap",
        mil_pooling: MILPooling = "lse",
    ) -> None:
        super().__init__()
        check_one_of(head, "head", HEADS)
        check_one_of(mil_pooling, "mil_pooling", MIL_POOLINGS)
        if head == "mil" and num_classes != 2:
            raise ValueError(
                f"Expected `num_classes` to be 2 for head='mil', but got {num_classes}."
            )
        self.head = head
        self.mil_pooling: MILPooling = mil_pooling
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the CAM layer's activations from one forward pass.

        Args:
            x: images ``(B, 3, H, W)`` in [0, 1].

        Returns:
            ``(logits (B, num_classes), features (B, C, h, w))``.
        """
        mean, std = cast(torch.Tensor, self.mean), cast(torch.Tensor, self.std)
        feats = self.features((x - mean) / std)
        if self.head == "mil":
            s = L.mil_pool(self.tumor_logits(feats), pooling=self.mil_pooling)
            return torch.stack([-0.5 * s, 0.5 * s], dim=1), feats
        logits = self.fc(self.dropout(torch.flatten(self.pool(feats), 1)))
        return logits, feats

    def tumor_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Per-location tumor logits ``(B, h, w)`` of the CAM layer's activations.

        The linear head applied at every location, class 1 minus class 0 (for a
        ``"gap"`` head their spatial mean is the image's logit difference).

        Args:
            features: ``(B, C, h, w)`` from :meth:`forward_features`.

        Returns:
            float32 ``(B, h, w)``.
        """
        w = self.fc.weight.float()
        b = self.fc.bias.float()
        feats = self.dropout(features.float())
        return torch.einsum("bchw,c->bhw", feats, w[1] - w[0]) + (b[1] - b[0])

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, num_classes)`` of images ``(B, 3, H, W)`` in [0, 1].

        With ``return_features=True``: ``(logits, features)`` as
        :meth:`forward_features` (this form goes through DDP and
        :func:`torch.compile` wrappers, which only wrap ``forward``).
        """
        logits, feats = self.forward_features(x)
        return (logits, feats) if return_features else logits


def _block(c_in: int, c_out: int, norm: str) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
    layers.append(nn.BatchNorm2d(c_out) if norm == "batch" else nn.GroupNorm(4, c_out))
    layers.append(nn.ReLU(inplace=True))
    return layers


class SmallCNN(nn.Sequential):
    """A four-stage CNN for CPU runs: 96×96 input gives 12×12 feature maps.

    Args:
        width: channels of the first stage (doubled per stage).
        norm: ``"batch"`` (default) or ``"group"`` (GroupNorm: batch-size independent,
            so DDP on CPU, which has no SyncBatchNorm, matches a single process).

    Example:
        >>> SmallCNN(width=8)(torch.rand(1, 3, 96, 96)).shape
        torch.Size([1, 64, 12, 12])
    """

    def __init__(self, width: int = 16, *, norm: Literal["batch", "group"] = "batch") -> None:
        check_positive_int(width, "width", minimum=4)
        check_one_of(norm, "norm", ("batch", "group"))
        w = width
        super().__init__(
            *_block(3, w, norm),
            nn.MaxPool2d(2),
            *_block(w, 2 * w, norm),
            nn.MaxPool2d(2),
            *_block(2 * w, 4 * w, norm),
            nn.MaxPool2d(2),
            *_block(4 * w, 8 * w, norm),
            *_block(8 * w, 8 * w, norm),
        )
        self.out_channels = 8 * w


def _strip_head(
    state: dict[str, torch.Tensor], prefixes: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}


def build_model(
    name: ModelName,
    *,
    num_classes: int = 2,
    weights: str | os.PathLike[str] | None = None,
    width: int = 16,
    norm: Literal["batch", "group"] = "batch",
    dropout: float = 0.0,
    head: Head = "gap",
    dense: bool = False,
    mil_pooling: MILPooling = "lse",
) -> GAPClassifier:
    """Build a GAP classifier from a torchvision backbone or the small CNN.

    The torchvision models lose their own pooling and classifier; their last
    convolutional stage becomes ``features`` (ResNet ``layer4``, DenseNet's
    final norm + ReLU, EfficientNet's last conv, VGG's last conv block without
    its max-pool, keeping a 6×6 map on 96×96 input).

    With ``dense=True`` every backbone has output stride 8, so a 96×96 patch gives a
    12×12 map (the small CNN always has): ResNets dilate ``layer3`` and ``layer4``
    (as torchvision's ``replace_stride_with_dilation``, also for basic blocks), DenseNet
    drops the average
    pools of its last two transitions, EfficientNet sets the stride of its last two
    down-sampling stages to 1 and dilates them, VGG drops its fourth max-pool too.
    The weights are unchanged, so ``weights=`` loads the same state dicts; the cost
    per step grows (``benchmarks/wsss_synthetic.py --cost``).

    Args:
        name: one of :data:`MODELS`.
        num_classes: the number of logits.
        weights: a local state-dict file of the torchvision model (the head's
            keys are ignored); ``None`` for random initialisation.
        width: the small CNN's first-stage width.
        norm: the small CNN's normalisation layer.
        dropout: dropout before the head.
        head: ``"gap"`` or ``"mil"`` (see :class:`GAPClassifier`).
        dense: output stride 8 for the torchvision backbones.
        mil_pooling: how a ``"mil"`` head pools (see :class:`GAPClassifier`).

    Returns:
        The model.

    Raises:
        ValueError: if ``name`` is unknown, or ``weights`` is given for the
            small CNN or does not fit the backbone.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> m = build_model("resnet18")
        >>> m.forward_features(torch.rand(1, 3, 96, 96))[1].shape
        torch.Size([1, 512, 3, 3])
    """
    check_one_of(name, "name", MODELS)
    if name == "small":
        if weights is not None:
            raise ValueError(
                "Expected `weights` to be None for the small CNN, which has no "
                f"pretrained weights, but got {str(weights)!r}."
            )
        cnn = SmallCNN(width, norm=norm)
        return GAPClassifier(
            cnn, cnn.out_channels, num_classes, dropout=dropout, head=head, mil_pooling=mil_pooling
        )
    import torchvision.models as tvm

    net = getattr(tvm, name)(weights=None)
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        state = _strip_head(state, ("fc.", "classifier."))
        try:
            missing, unexpected = net.load_state_dict(state, strict=False)
        except RuntimeError as err:  # shape mismatches
            raise ValueError(
                f"Expected `weights` {str(weights)!r} to hold a {name} state dict, but the "
                f"shapes do not match: {str(err).splitlines()[1].strip()}"
            ) from err
        missing = [k for k in missing if not k.startswith(("fc.", "classifier."))]
        if missing or unexpected:
            raise ValueError(
                f"Expected `weights` {str(weights)!r} to hold a {name} state dict, but "
                f"{len(missing)} keys are missing (e.g. {missing[:3]}) and {len(unexpected)} "
                f"are unexpected (e.g. {list(unexpected)[:3]})."
            )
    features: nn.Module
    if name.startswith("resnet"):
        if dense:  # torchvision's replace_stride_with_dilation, also for BasicBlock
            _dilate(net.layer3, 2)
            _dilate(net.layer4, 4)
        features = nn.Sequential(
            net.conv1,
            net.bn1,
            net.relu,
            net.maxpool,
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        channels = net.fc.in_features
    elif name == "densenet121":
        if dense:
            for t in ("transition2", "transition3"):
                getattr(net.features, t).pool = nn.Identity()
        features = nn.Sequential(net.features, nn.ReLU(inplace=False))
        channels = net.classifier.in_features
    elif name == "efficientnet_b0":
        if dense:  # stages 4-5 and 6-7 follow the stride-16 and stride-32 steps
            for i, d in ((4, 2), (5, 2), (6, 4), (7, 4)):
                _dilate(net.features[i], d)
        features = net.features
        channels = net.classifier[-1].in_features
    else:  # vgg16_bn: drop the last max-pool so 96x96 input keeps a 6x6 map
        layers = list(net.features.children())[:-1]
        if dense:  # and the fourth: 12x12
            pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
            del layers[pools[-1]]
        features = nn.Sequential(*layers)
        channels = 512
    return GAPClassifier(
        features, channels, num_classes, dropout=dropout, head=head, mil_pooling=mil_pooling
    )


def _dilate(stage: nn.Module, dilation: int) -> None:
    """Output stride 8: stride-2 convolutions of ``stage`` become stride 1.

    Every convolution with a spatial kernel gets ``dilation`` (same padding), so the
    receptive field is kept while the map stays at the stage's input resolution.
    """
    for conv in stage.modules():
        if not isinstance(conv, nn.Conv2d):
            continue
        if conv.stride == (2, 2):
            conv.stride = (1, 1)
        k = conv.kernel_size[0]
        if k > 1:
            conv.dilation = (dilation, dilation)
            conv.padding = (dilation * (k - 1) // 2, dilation * (k - 1) // 2)
