"""Bad input over the whole public API (issue 12): every public callable of every public
module gets wrong dtypes, wrong ranks, mismatched shapes between paired arguments, NaN and
infinity, empty batches and images, wrong Python types and out-of-range options.

The rule, for every mutation of a valid call: either a correct result, or a ``ValueError`` /
``TypeError`` whose message names the offending argument in backticks. Never another exception
type (``IndexError``, torch's ``RuntimeError``, ``AssertionError``, ``ZeroDivisionError``), and
never a silent wrong answer: a call that returns must be listed in its case's ``ok`` with the
reason the result is right (e.g. "float64 maps are maps"); NaN input may also come back with a
:class:`camseg.CAMWarning`.

How it is built: :data:`CASES` holds, per public name, a builder of one *valid* call (its sizes
and values drawn by hypothesis), the specs of its tensor arguments (:class:`T`) and the bad
values of its options (:class:`Opt`). :func:`mutations` derives the bad calls from the specs, so
a new argument or option is swept as soon as it is described. :data:`NOT_APPLICABLE` lists the
names without input to get wrong, each with its reason, and
:func:`test_every_public_name_has_a_case` fails for a public name in neither.

:data:`KNOWN` holds the defects this sweep found that are not fixed yet; each entry must still
fail (an entry that starts passing fails the test, so the list only shrinks). After a fix,
``CAMSEG_UPDATE_KNOWN=1 pytest tests/properties/test_bad_input_sweep.py`` rewrites the list
(review its diff: it must only lose entries).
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import camseg
import camseg.functional as CF
import camseg.losses as L
import camseg.metrics as M
import camseg.postprocess as P
import camseg.slide as S
import camseg.synthetic as SY
import camseg.viz as V

PUBLIC_MODULES = (
    "camseg",
    "camseg.functional",
    "camseg.losses",
    "camseg.postprocess",
    "camseg.metrics",
    "camseg.slide",
    "camseg.synthetic",
    "camseg.viz",
)

#: few examples per name (each example already runs every mutation of the name), derandomized
#: so that the list of known defects below is the same on every run
SWEEP = settings(max_examples=3, deadline=None, derandomize=True, database=None)


# ---------------------------------------------------------------------------------------------
# the valid calls' ingredients, drawn per example
# ---------------------------------------------------------------------------------------------


@dataclass
class Ctx:
    """Sizes and a seeded generator for one example."""

    B: int
    H: int
    W: int
    seed: int
    g: torch.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.g = torch.Generator().manual_seed(self.seed)

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.g)

    def maps(self, k: int | None = None) -> torch.Tensor:
        shape = (self.B, self.H, self.W) if k is None else (self.B, k, self.H, self.W)
        return self.rand(*shape)

    def masks(self) -> torch.Tensor:
        m = self.rand(self.B, self.H, self.W) > 0.5
        m[:, 0, 0] = True  # never an empty mask
        m[:, -1, -1] = False  # never a full one
        return m

    def images(self, c: int = 3) -> torch.Tensor:
        return self.rand(self.B, c, self.H, self.W)

    def labels(self) -> torch.Tensor:
        out = torch.zeros(self.B, dtype=torch.long)
        out[0] = 1  # both classes present
        return out

    def scores(self, n: int = 8) -> torch.Tensor:
        return self.rand(n)

    def binary(self, n: int = 8) -> torch.Tensor:
        out = (self.rand(n) > 0.5).long()
        out[0], out[1] = 0, 1
        return out


class TinyNet(nn.Module):
    """conv -> ReLU -> GAP -> linear, 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


NET = TinyNet().eval()


def cam_fn(images: torch.Tensor) -> torch.Tensor:
    """A differentiable map function ``(B, C, H, W) -> (B, H, W)``."""
    return torch.sigmoid(images.mean(1))


def tile_fn(tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A slide tile function: per-tile probability and a map per tile."""
    return tiles.mean(dim=(1, 2, 3)), tiles[:, 0] * tiles[:, 1]


def slide_array(ctx: Ctx) -> np.ndarray:
    rng = np.random.default_rng(ctx.seed)
    return rng.integers(0, 256, (24 + 4 * ctx.B, 32 + 4 * ctx.W, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# specs
# ---------------------------------------------------------------------------------------------

KIND_BAD_DTYPES: dict[str, tuple[torch.dtype, ...]] = {
    "float": (torch.bool, torch.int64, torch.complex64),
    "bool": (torch.float32, torch.int64, torch.uint8),
    "int": (torch.float32, torch.complex64),
    "labels": (torch.complex64,),
    "none": (),
}


@dataclass(frozen=True)
class T:
    """A tensor argument: its kind, the ranks it admits, and what it may legitimately hold."""

    kind: str  # "float", "bool", "int" (class indices), "labels" (0/1), "none" (no dtype rule)
    ndims: tuple[int, ...]
    finite: bool = True  # NaN/inf must be refused
    batch: bool = True  # shares the batch size with the other batch arguments
    spatial: bool = False  # its last dim is the images' width (shared by its pairs)
    seq_ok: bool = False  # lists are accepted (as the same data)
    bad_values: tuple[float, ...] = ()  # values that are out of its domain


@dataclass(frozen=True)
class Opt:
    """An option and values of it that are wrong."""

    bad: tuple[Any, ...]


NUM = ("1", None, [1.0])
INT_POS = (0, -1, 1.5, "2", True, None)
INT_NONNEG = (-1, 1.5, "2", True, None)
FLOAT_POS = (0.0, -1.0, math.nan, math.inf, "1", None)
FLOAT_NONNEG = (-1.0, math.nan, math.inf, "1", None)
PROB = (-0.1, 1.5, math.nan, "0.5", None)
CHOICE = ("bogus", 3)
AVERAGE = ("bogus", None, 3)
REDUCTION = ("bogus", None, 3)
ZERO_DIVISION = ("x", [1.0])
BOOL_OPT = ("yes", 2, None)


@dataclass
class Case:
    """One public callable: a valid call, its arguments' specs and the accepted outcomes."""

    build: Callable[[Ctx], dict[str, Any]]
    call: Callable[[dict[str, Any]], Any]
    tensors: dict[str, T] = field(default_factory=dict)
    options: dict[str, Opt] = field(default_factory=dict)
    pairs: tuple[tuple[str, str], ...] = ()  # (a, b): b must have a's shape
    ok: dict[str, str] = field(default_factory=dict)  # mutation id (or prefix) -> why fine
    empty: bool = True  # sweep the empty batch


def fn_call(fn: Callable[..., Any]) -> Callable[[dict[str, Any]], Any]:
    return lambda kw: fn(**kw)


def cls_call(cls: type, ctor: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    """Construct ``cls`` with the ``ctor`` keys of the call, then call it with the rest."""

    def call(kw: dict[str, Any]) -> Any:
        made = cls(**{k: v for k, v in kw.items() if k in ctor})
        return made(**{k: v for k, v in kw.items() if k not in ctor})

    return call


CASES: dict[str, Case] = {}


def case(*names: str, **spec: Any) -> None:
    for name in names:
        CASES[name] = Case(**spec)


# ---------------------------------------------------------------------------------------------
# camseg: the extractors and list_layers
# ---------------------------------------------------------------------------------------------

MAPS = T("float", (3,), spatial=True)
MAPS_K = T("float", (3, 4), spatial=True)
MASKS = T("bool", (3,), spatial=True)
IMAGES = T("float", (4,), spatial=True)
LABELS = T("labels", (1,), bad_values=(2.0, -1.0))
TARGETS = T("int", (1,), bad_values=(-1.0, 5.0))
PREDS_MASKS = T("bool", (3,), spatial=True)

CAM_CALL = {
    "images": IMAGES,
    "targets": TARGETS,
}
CAM_OPTIONS = {
    "normalize": Opt(CHOICE),
    "size": Opt(("bogus", (0, 4), (4,), 3)),
    "create_graph": Opt(BOOL_OPT),
    "aug_smooth": Opt(BOOL_OPT),
    "eigen_smooth": Opt(BOOL_OPT),
    "fusion": Opt(CHOICE),
    "element": Opt((1.5, True, 0, "x")),
    "layers": Opt(("nope", 5, None)),
    "model": Opt((5, None)),
}


def _cam_build(ctx: Ctx) -> dict[str, Any]:
    return {
        "model": NET,
        "layers": "features",
        "images": ctx.images(),
        "targets": torch.tensor([i % 3 for i in range(ctx.B)]),
    }


for _cls in (
    camseg.GradCAM,
    camseg.GradCAMPlusPlus,
    camseg.HiResCAM,
    camseg.LayerCAM,
    camseg.XGradCAM,
    camseg.GradCAMElementWise,
    camseg.EigenGradCAM,
    camseg.EigenCAM,
    camseg.LinearCAM,
):
    case(
        f"camseg.{_cls.__name__}",
        build=_cam_build,
        call=cls_call(_cls, ("model", "layers", "element")),
        tensors=CAM_CALL,
        options=CAM_OPTIONS,
        ok={
            "targets:list": "a list of class ids is a documented form of `targets`",
            "targets:ndim-": "a 0-d tensor is one class for every image, like an int",
        },
    )


for _cls in (camseg.ScoreCAM, camseg.AblationCAM):
    case(
        f"camseg.{_cls.__name__}",
        build=_cam_build,
        call=cls_call(_cls, ("model", "layers", "element", "batch_size", "top_k")),
        tensors=CAM_CALL,
        options={
            **CAM_OPTIONS,
            "batch_size": Opt((0, -1, 2.5, "8", True)),
            "top_k": Opt((0, -1, 2.5, "8", True)),
        },
        ok={
            "targets:list": "a list of class ids is a documented form of `targets`",
            "targets:ndim-": "a 0-d tensor is one class for every image, like an int",
        },
    )


case(
    "camseg.FullGrad",
    build=lambda ctx: {k: v for k, v in _cam_build(ctx).items() if k != "layers"},
    call=cls_call(camseg.FullGrad, ("model", "eps")),
    tensors=CAM_CALL,
    options={
        **{k: v for k, v in CAM_OPTIONS.items() if k not in ("layers", "element")},
        "eps": Opt(FLOAT_NONNEG),
    },
    ok={
        "targets:list": "a list of class ids is a documented form of `targets`",
        "targets:ndim-": "a 0-d tensor is one class for every image, like an int",
    },
)


class _TinyViT(nn.Module):
    """Any image -> a 4 x 4 grid of tokens and a class token -> one attention layer -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Conv2d(3, 8, 1))
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], dim=1)
        t = t + self.attn(t, t, t, need_weights=False)[0]
        return self.head(t[:, 0])


torch.manual_seed(0)
VIT = _TinyViT().eval()


def _attention_build(ctx: Ctx) -> dict[str, Any]:
    return {**_cam_build(ctx), "model": VIT, "layers": None}


_ATTENTION_OPTIONS = {
    "normalize": Opt(CHOICE),
    "size": Opt(("bogus", (0, 4), (4,), 3)),
    "layers": Opt(("nope", 5, "embed")),
    "model": Opt((5, None)),
    "prefix_tokens": Opt((0, -1, 1.5, True)),
    "grid": Opt(((0, 4), (4,), "x")),
}
case(
    "camseg.AttentionRollout",
    build=_attention_build,
    call=cls_call(
        camseg.AttentionRollout,
        ("model", "layers", "prefix_tokens", "grid", "head_fusion", "discard_ratio"),
    ),
    tensors=CAM_CALL,
    options={
        **_ATTENTION_OPTIONS,
        "head_fusion": Opt(CHOICE),
        "discard_ratio": Opt((-0.1, 1.0, "x", True)),
    },
    ok={
        "targets:list": "a list of class ids is a documented form of `targets`",
        "targets:ndim-": "a 0-d tensor is one class for every image, like an int",
    },
)
case(
    "camseg.AttentionRelevance",
    build=_attention_build,
    call=cls_call(camseg.AttentionRelevance, ("model", "layers", "prefix_tokens", "grid")),
    tensors=CAM_CALL,
    options=_ATTENTION_OPTIONS,
    ok={
        "targets:list": "a list of class ids is a documented form of `targets`",
        "targets:ndim-": "a 0-d tensor is one class for every image, like an int",
    },
)


def _capture_call(kw: dict[str, Any]) -> Any:
    cap = camseg.LayerCapture(kw["model"], kw["layers"])
    with cap.session(grad_at_layer=True) as c:
        logits = kw["model"](kw["images"])
        return c.grad(logits, kw["targets"])


case(
    "camseg.LayerCapture",
    build=_cam_build,
    call=_capture_call,
    tensors=CAM_CALL,
    options={"layers": Opt(("nope", 5, None)), "model": Opt((5, None))},
    ok={
        "targets:list": "a list of class ids is a documented form of `targets`",
        "targets:ndim-": "a 0-d tensor is one class for every image, like an int",
        "images:": "LayerCapture passes the images to the user's model, which judges them",
        "empty": "the user's model runs the images",
    },
)
case(
    "camseg.list_layers",
    build=lambda ctx: {"model": NET, "input_size": (3, ctx.H, ctx.W)},
    call=fn_call(camseg.list_layers),
    options={
        "model": Opt((5, None)),
        "input_size": Opt(((3, 0, 4), (3, -1, 4), "x", 5)),
        "leaves_only": Opt(BOOL_OPT),
    },
    empty=False,
)

# ---------------------------------------------------------------------------------------------
# camseg.functional
# ---------------------------------------------------------------------------------------------

ACTS = T("float", (4,))
GRADS = T("float", (4,))
for _name in (
    "gradcam",
    "hirescam",
    "layercam",
    "xgradcam",
    "gradcam_pp",
    "gradcam_elementwise",
    "eigengradcam",
):
    case(
        f"camseg.functional.{_name}",
        build=lambda ctx: {"activations": ctx.images(4), "gradients": ctx.images(4) - 0.5},
        call=fn_call(getattr(CF, _name)),
        tensors={"activations": ACTS, "gradients": GRADS},
        pairs=(("activations", "gradients"),),
        options={"eps": Opt(FLOAT_NONNEG)} if _name == "gradcam_pp" else {},
        ok={
            "activations:ndim": "documented broadcasting: (B, K, C, h, w) against (B, C, h, w)",
            "gradients:ndim": "documented broadcasting: (B, K, C, h, w) against (B, C, h, w)",
            "batch:gradients": "documented broadcasting (a batch of one broadcasts)",
        },
    )
case(
    "camseg.functional.eigencam",
    build=lambda ctx: {"activations": ctx.images(4)},
    call=fn_call(CF.eigencam),
    tensors={"activations": ACTS},
)
case(
    "camseg.functional.linear_cam",
    build=lambda ctx: {
        "activations": ctx.images(4),
        "weight": ctx.rand(3, 4),
        "targets": torch.tensor([i % 3 for i in range(ctx.B)]),
    },
    call=fn_call(CF.linear_cam),
    tensors={"activations": ACTS, "weight": T("float", (2,), batch=False), "targets": TARGETS},
    options={"relu": Opt(BOOL_OPT)},
)
case(
    "camseg.functional.normalize",
    build=lambda ctx: {"maps": ctx.maps()},
    call=fn_call(CF.normalize),
    tensors={"maps": T("float", (3, 4), spatial=True)},
    options={"mode": Opt(CHOICE)},
    ok={"maps:ndim": "any (..., h, w) is a stack of maps"},
)
case(
    "camseg.functional.upsample",
    build=lambda ctx: {"maps": ctx.maps(), "size": (2 * ctx.H, 2 * ctx.W)},
    call=fn_call(CF.upsample),
    tensors={"maps": T("float", (3, 4), spatial=True)},
    options={"size": Opt(((0, 4), (4,), "x", (4.5, 4), None)), "mode": Opt(CHOICE)},
    ok={"maps:ndim+": "any (..., h, w) is a stack of maps"},
)
case(
    "camseg.functional.gaussian_blur",
    build=lambda ctx: {"images": ctx.images(), "sigma": 1.0},
    call=fn_call(CF.gaussian_blur),
    tensors={"images": T("float", (4,), spatial=True)},
    options={
        "sigma": Opt((-1.0, math.nan, math.inf, "1", None)),
        "truncate": Opt(FLOAT_POS),
        "radius": Opt((-1, 1.5, "2", True)),
    },
)
case(
    "camseg.functional.transform_group",
    build=lambda ctx: {"transforms": "d4"},
    call=fn_call(CF.transform_group),
    options={"transforms": Opt(("bogus", 3))},
    empty=False,
)
case(
    "camseg.functional.apply_transform",
    build=lambda ctx: {"x": ctx.maps(), "element": (1, True)},
    call=fn_call(CF.apply_transform),
    tensors={"x": T("none", (3,), finite=False)},
    options={"element": Opt(((1,), "x", (1.5, True), (1, "yes"), None)), "inverse": Opt(BOOL_OPT)},
    ok={
        "x:dtype": "a permutation of the elements: any dtype is kept",
        "x:ndim+": "any (..., h, w) turns on its last two axes",
        "x:ndim-": "a single (h, w) map is a valid input",
    },
)
case(
    "camseg.functional.transform_mean",
    build=lambda ctx: {"fn": lambda im: im.mean(1), "images": ctx.images()},
    call=fn_call(CF.transform_mean),
    tensors={"images": IMAGES},
    options={"fn": Opt((5, None)), "transforms": Opt(CHOICE)},
)
case(
    "camseg.functional.tokens_to_grid",
    build=lambda ctx: {"tokens": ctx.rand(ctx.B, 1 + ctx.H * ctx.W, 4), "grid": (ctx.H, ctx.W)},
    call=fn_call(CF.tokens_to_grid),
    tensors={"tokens": T("none", (3,), finite=False)},
    options={"grid": Opt(((0, 4), (3,), "x", None)), "prefix_tokens": Opt(INT_NONNEG)},
    ok={
        "tokens:dtype": "a reshape: any dtype is kept",
        "grid=None": "None infers a square grid; raises when not square",
    },
)

# ---------------------------------------------------------------------------------------------
# camseg.losses
# ---------------------------------------------------------------------------------------------

REGION = Opt((-0.1, 1.5, math.nan, "x", (4, 4)))
LOSS_MAPS = T("float", (3,), spatial=True)
LOSS_MAPS_UNIT = T("float", (3,), spatial=True, bad_values=(-0.5, 1.5))


def _loss_case(
    names: tuple[str, str],
    build: Callable[[Ctx], dict[str, Any]],
    tensors: dict[str, T],
    options: dict[str, Opt],
    ctor: tuple[str, ...],
    **extra: Any,
) -> None:
    fn_name, cls_name = names
    opts = {**options, "reduction": Opt(REDUCTION)}
    case(
        f"camseg.losses.{fn_name}",
        build=build,
        call=fn_call(getattr(L, fn_name)),
        tensors=tensors,
        options=opts,
        **extra,
    )
    case(
        f"camseg.losses.{cls_name}",
        build=build,
        call=cls_call(getattr(L, cls_name), (*ctor, "reduction")),
        tensors=tensors,
        options=opts,
        **extra,
    )


_loss_case(
    ("smoothness_loss", "SmoothnessLoss"),
    lambda ctx: {"maps": ctx.maps()},
    {"maps": LOSS_MAPS},
    {"norm": Opt(CHOICE)},
    ("norm",),
)
_loss_case(
    ("size_loss", "SizeLoss"),
    lambda ctx: {"maps": ctx.maps(), "labels": ctx.labels()},
    {"maps": LOSS_MAPS_UNIT, "labels": LABELS},
    {"bounds": Opt(((0.9, 0.1), (-0.1, 0.5), (0.1, 1.5), (math.nan, 0.5), "x", 0.5))},
    ("bounds",),
)
_loss_case(
    ("suppression_loss", "SuppressionLoss"),
    lambda ctx: {"maps": ctx.maps(), "labels": ctx.labels()},
    {"maps": LOSS_MAPS, "labels": LABELS},
    {"region": REGION},
    ("region",),
)
_loss_case(
    ("center_evidence_loss", "CenterEvidenceLoss"),
    lambda ctx: {"maps": ctx.maps(), "labels": ctx.labels()},
    {"maps": LOSS_MAPS, "labels": LABELS},
    {
        "region": REGION,
        "target": Opt(FLOAT_NONNEG[:-1]),
        "top_fraction": Opt((0.0, -0.1, 1.5, math.nan, "x")),
    },
    ("region", "target", "top_fraction"),
)
_loss_case(
    ("mask_loss", "MaskLoss"),
    lambda ctx: {"maps": ctx.maps(), "masks": ctx.masks()},
    {"maps": LOSS_MAPS_UNIT, "masks": MASKS},
    {"kind": Opt(CHOICE), "smooth": Opt(FLOAT_NONNEG)},
    ("kind", "smooth"),
    pairs=(("maps", "masks"),),
)
_loss_case(
    ("mil_loss", "MILLoss"),
    lambda ctx: {"logits": ctx.maps() * 4 - 2, "labels": ctx.labels()},
    {"logits": LOSS_MAPS, "labels": LABELS},
    {
        "region": REGION,
        "pooling": Opt(CHOICE),
        "temperature": Opt(FLOAT_POS),
        "k": Opt(INT_POS),
    },
    ("region", "pooling", "temperature", "k"),
)
_loss_case(
    ("pseudo_mask_loss", "PseudoMaskLoss"),
    lambda ctx: {
        "logits": ctx.maps() * 4 - 2,
        "pseudo_masks": (ctx.rand(ctx.B, ctx.H, ctx.W) * 3).long() - 1,
    },
    {"logits": LOSS_MAPS, "pseudo_masks": T("int", (3,), spatial=True, bad_values=(2.0, -2.0))},
    {"pos_weight": Opt(FLOAT_POS)},
    ("pos_weight",),
    pairs=(("logits", "pseudo_masks"),),
)
_loss_case(
    ("attention_mining_loss", "AttentionMiningLoss"),
    lambda ctx: {
        "score_fn": lambda x: torch.softmax(NET(x), 1)[:, 1],
        "images": ctx.images(),
        "maps": ctx.maps(),
        "labels": ctx.labels(),
    },
    {"images": IMAGES, "maps": LOSS_MAPS_UNIT, "labels": LABELS},
    {
        "omega": Opt(FLOAT_POS),
        "sigma": Opt(FLOAT_POS),
        "fill": Opt((math.nan, "x", None)),
        "score_fn": Opt((5, None)),
    },
    ("omega", "sigma", "fill"),
)
_loss_case(
    ("equivariance_loss", "EquivarianceLoss"),
    lambda ctx: {"cam_fn": cam_fn, "images": ctx.images()},
    {"images": IMAGES},
    {
        "transforms": Opt(("bogus", 3)),
        "sample": Opt((0, -1, 1.5, "x", 99)),
        "scales": Opt(((0.0,), (-1.0,), (math.nan,), "x")),
        "cam_fn": Opt((5, None)),
    },
    ("transforms", "sample", "scales"),
)
_loss_case(
    ("puzzle_loss", "PuzzleLoss"),
    lambda ctx: {"cam_fn": cam_fn, "images": ctx.rand(ctx.B, 3, 8, 8)},
    {"images": IMAGES},
    {"tiles": Opt(INT_POS), "cam_fn": Opt((5, None))},
    ("tiles",),
)
case(
    "camseg.losses.mil_pool",
    build=lambda ctx: {"logits": ctx.maps() * 4 - 2},
    call=fn_call(L.mil_pool),
    tensors={"logits": LOSS_MAPS},
    options={
        "region": REGION,
        "pooling": Opt(CHOICE),
        "temperature": Opt(FLOAT_POS),
        "k": Opt(INT_POS),
    },
)
case(
    "camseg.losses.region_mask",
    build=lambda ctx: {"region": 0.5, "size": (ctx.H, ctx.W)},
    call=fn_call(L.region_mask),
    options={
        "region": REGION,
        "size": Opt(((0, 0), (-1, 4), (4,), "x", None)),
        "device": Opt(("nodevice", 5)),
    },
    empty=False,
)


def _regularizer_call(kw: dict[str, Any]) -> Any:
    reg = L.CAMRegularizer(kw["terms"], warmup=kw["warmup"])
    return reg(maps=kw["maps"], step=kw["step"])


case(
    "camseg.losses.CAMRegularizer",
    build=lambda ctx: {
        "terms": {"tv": (L.smoothness_loss, 0.5)},
        "warmup": 2,
        "maps": ctx.maps(),
        "step": 3,
    },
    call=_regularizer_call,
    tensors={"maps": LOSS_MAPS},
    options={
        "terms": Opt(
            (
                {},
                {"tv": (5, 0.5)},
                {"tv": (L.smoothness_loss, -1.0)},
                {"tv": (L.smoothness_loss, math.nan)},
                5,
            )
        ),
        "warmup": Opt((-1, 1.5, "x", {"nope": 2})),
        "step": Opt((-1, 1.5, "x")),
    },
)

# ---------------------------------------------------------------------------------------------
# camseg.postprocess
# ---------------------------------------------------------------------------------------------

UNIT_MAPS = T("float", (3,), spatial=True, bad_values=(-0.5, 1.5))
for _name in ("binary_closing", "binary_dilation", "binary_erosion", "binary_opening"):
    case(
        f"camseg.postprocess.{_name}",
        build=lambda ctx: {"masks": ctx.masks(), "radius": 1},
        call=fn_call(getattr(P, _name)),
        tensors={"masks": MASKS},
        options={"radius": Opt(INT_NONNEG), "footprint": Opt(CHOICE)},
    )
for _name in ("fill_holes", "keep_largest_component"):
    case(
        f"camseg.postprocess.{_name}",
        build=lambda ctx: {"masks": ctx.masks()},
        call=fn_call(getattr(P, _name)),
        tensors={"masks": MASKS},
        options={"connectivity": Opt((0, 3, "1", 1.5, None))},
    )
case(
    "camseg.postprocess.remove_small_objects",
    build=lambda ctx: {"masks": ctx.masks(), "min_size": 3},
    call=fn_call(P.remove_small_objects),
    tensors={"masks": MASKS},
    options={"min_size": Opt(INT_NONNEG), "connectivity": Opt((0, 3, "1", 1.5, None))},
)
case(
    "camseg.postprocess.threshold_otsu",
    build=lambda ctx: {"maps": ctx.maps()},
    call=fn_call(P.threshold_otsu),
    tensors={"maps": MAPS},
    options={"nbins": Opt((1, 0, -1, 2.5, "x", True))},
)
case(
    "camseg.postprocess.threshold_percentile",
    build=lambda ctx: {"maps": ctx.maps(), "q": 50.0},
    call=fn_call(P.threshold_percentile),
    tensors={"maps": MAPS},
    options={"q": Opt((-1.0, 101.0, math.nan, "x", None))},
)
case(
    "camseg.postprocess.threshold_fixed",
    build=lambda ctx: {"maps": ctx.maps(), "value": 0.5},
    call=fn_call(P.threshold_fixed),
    tensors={"maps": MAPS},
    options={"value": Opt((math.nan, "x", None, math.inf))},
)
case(
    "camseg.postprocess.best_threshold",
    build=lambda ctx: {"maps": ctx.maps(), "masks": ctx.masks(), "thresholds": 11},
    call=fn_call(P.best_threshold),
    tensors={"maps": MAPS, "masks": MASKS},
    pairs=(("maps", "masks"),),
    options={
        "metric": Opt(CHOICE),
        "thresholds": Opt((0, 1, -1, 2.5, "x", torch.tensor([math.nan]), torch.tensor([]))),
        "average": Opt(("bogus", None, "none")),
    },
)
case(
    "camseg.postprocess.cams_to_masks",
    build=lambda ctx: {
        "maps": ctx.maps(),
        "probs": ctx.rand(ctx.B),
        "tissue": ctx.masks(),
        "min_size": 2,
    },
    call=fn_call(P.cams_to_masks),
    tensors={
        "maps": UNIT_MAPS,
        "probs": T("float", (1,), bad_values=(-0.5, 1.5)),
        "tissue": MASKS,
    },
    pairs=(("maps", "tissue"),),
    options={
        "threshold": Opt(("bogus", math.nan, -0.5, 1.5, None)),
        "min_prob": Opt(PROB),
        "min_size": Opt(INT_NONNEG),
        "fill_holes": Opt(BOOL_OPT),
    },
)
case(
    "camseg.postprocess.gate",
    build=lambda ctx: {"maps": ctx.maps(), "probs": ctx.rand(ctx.B)},
    call=fn_call(P.gate),
    tensors={"maps": UNIT_MAPS, "probs": T("float", (1,), bad_values=(-0.5, 1.5))},
    options={"min_prob": Opt(PROB)},
    ok={
        "maps:value:": "gate takes maps of any range (raw maps, normalize=None, are documented)",
    },
)
case(
    "camseg.postprocess.pseudo_masks",
    build=lambda ctx: {"probs": ctx.maps(), "labels": ctx.labels()},
    call=fn_call(P.pseudo_masks),
    tensors={"probs": UNIT_MAPS, "labels": LABELS},
    options={"margin": Opt(PROB), "region": Opt((-0.1, 1.5, math.nan, "x"))},
)
case(
    "camseg.postprocess.crf_refine",
    build=lambda ctx: {
        "images": ctx.images(),
        "probs": ctx.maps(),
        "iterations": 2,
        "kernel_size": 3,
    },
    call=fn_call(P.crf_refine),
    tensors={"images": T("float", (4,), spatial=True, bad_values=(-0.5, 1.5)), "probs": UNIT_MAPS},
    pairs=(("images", "probs"),),
    options={
        "iterations": Opt(INT_NONNEG),
        "kernel_size": Opt((0, 2, -1, "3", 1.5)),
        "theta_alpha": Opt(FLOAT_POS),
        "theta_beta": Opt(FLOAT_POS),
        "theta_gamma": Opt(FLOAT_POS),
        "w_appearance": Opt(FLOAT_NONNEG),
        "w_smooth": Opt(FLOAT_NONNEG),
    },
)
case(
    "camseg.postprocess.tissue_mask",
    build=lambda ctx: {"images": ctx.images()},
    call=fn_call(P.tissue_mask),
    tensors={"images": T("float", (4,), spatial=True, bad_values=(-0.5, 1.5))},
    options={
        "method": Opt(CHOICE),
        "threshold": Opt((math.nan, -0.5, 1.5, "x")),
        "sigma": Opt((-1.0, math.nan, math.inf, "1")),
    },
)

# ---------------------------------------------------------------------------------------------
# camseg.metrics
# ---------------------------------------------------------------------------------------------

SEG_EMPTY = {
    "empty": "no pixels: the documented `zero_division` rule (micro), NaN (macro), () (none)",
    "empty_hw": "no pixels: the documented `zero_division` rule",
}
for _name in ("iou", "dice", "precision", "recall", "specificity", "fall_out", "pixel_accuracy"):
    case(
        f"camseg.metrics.{_name}",
        build=lambda ctx: {"preds": ctx.masks(), "masks": ctx.masks()},
        call=fn_call(getattr(M, _name)),
        tensors={"preds": PREDS_MASKS, "masks": MASKS},
        pairs=(("preds", "masks"),),
        options={"average": Opt(AVERAGE), "zero_division": Opt(ZERO_DIVISION)},
        ok=SEG_EMPTY,
    )
case(
    "camseg.metrics.confusion_counts",
    build=lambda ctx: {"preds": ctx.masks(), "masks": ctx.masks()},
    call=fn_call(M.confusion_counts),
    tensors={"preds": PREDS_MASKS, "masks": MASKS},
    pairs=(("preds", "masks"),),
    ok={"empty": "counts of no image: a (0, 4) tensor"},
)
for _name in ("pixel_auroc", "pixel_average_precision"):
    case(
        f"camseg.metrics.{_name}",
        build=lambda ctx: {"maps": ctx.maps(), "masks": ctx.masks()},
        call=fn_call(getattr(M, _name)),
        tensors={"maps": MAPS, "masks": MASKS},
        pairs=(("maps", "masks"),),
        options={"average": Opt(AVERAGE)},
        ok={"maps:dtype:int64": "integer scores rank like floats"},
    )
for _name in ("pointing_game", "energy_pointing_game"):
    case(
        f"camseg.metrics.{_name}",
        build=lambda ctx: {"maps": ctx.maps(), "masks": ctx.masks()},
        call=fn_call(getattr(M, _name)),
        tensors={"maps": MAPS, "masks": MASKS},
        pairs=(("maps", "masks"),),
        options={"average": Opt(("bogus", None, 3, "micro"))}
        | ({"tolerance": Opt(INT_NONNEG)} if _name == "pointing_game" else {}),
    )
case(
    "camseg.metrics.label_region_energy",
    build=lambda ctx: {"maps": ctx.rand(ctx.B, 12, 12), "region": 48},
    call=fn_call(M.label_region_energy),
    tensors={"maps": MAPS},
    options={"region": Opt((0, -1, 1.5, "x", 999)), "average": Opt(("bogus", None, 3, "micro"))},
)
case(
    "camseg.metrics.threshold_curve",
    build=lambda ctx: {"maps": ctx.maps(), "masks": ctx.masks(), "thresholds": 5},
    call=fn_call(M.threshold_curve),
    tensors={"maps": MAPS, "masks": MASKS},
    pairs=(("maps", "masks"),),
    options={
        "thresholds": Opt((0, -1, 2.5, "x", [math.nan], torch.tensor([]))),
        "metrics": Opt((("bogus",), (), "iou", 5)),
        "average": Opt(AVERAGE),
        "zero_division": Opt(ZERO_DIVISION),
    },
)
for _name in ("roc_auc", "roc_curve", "average_precision", "youden_threshold"):
    case(
        f"camseg.metrics.{_name}",
        build=lambda ctx: {"scores": ctx.scores(), "labels": ctx.binary()},
        call=fn_call(getattr(M, _name)),
        tensors={"scores": T("float", (1,)), "labels": LABELS},
        pairs=(("scores", "labels"),),
        ok={
            "scores:dtype:int64": "integer scores rank like floats",
            "scores:dtype:bool": "bool scores rank like 0/1",
        },
    )
case(
    "camseg.metrics.binary_stats",
    build=lambda ctx: {"preds": ctx.scores(), "labels": ctx.binary()},
    call=fn_call(M.binary_stats),
    tensors={"preds": T("float", (1,)), "labels": LABELS},
    pairs=(("preds", "labels"),),
    options={"threshold": Opt(("x", math.nan, None)), "zero_division": Opt(ZERO_DIVISION)},
    ok={
        "preds:dtype:bool": "bool predictions are decisions",
        "preds:dtype:int64": "0/1 integer predictions are decisions",
    },
)
for _name in ("nll", "expected_calibration_error"):
    case(
        f"camseg.metrics.{_name}",
        build=lambda ctx: {"probs": ctx.scores(), "labels": ctx.binary()},
        call=fn_call(getattr(M, _name)),
        tensors={"probs": T("float", (1,), bad_values=(-0.5, 1.5)), "labels": LABELS},
        pairs=(("probs", "labels"),),
        options={"eps": Opt((-1.0, math.nan, 1.0, "x"))}
        if _name == "nll"
        else {"n_bins": Opt(INT_POS)},
    )
for _name in ("cohen_kappa", "confusion_matrix"):
    case(
        f"camseg.metrics.{_name}",
        build=lambda ctx: {
            "preds": (ctx.scores() * 3).long(),
            "labels": (ctx.scores() * 3).long(),
            "num_classes": 3,
        },
        call=fn_call(getattr(M, _name)),
        tensors={
            "preds": T("int", (1,), bad_values=(-1.0, 7.0)),
            "labels": T("int", (1,), bad_values=(-1.0, 7.0)),
        },
        pairs=(("preds", "labels"),),
        options={"num_classes": Opt(INT_POS[:-1])}
        | ({"weights": Opt(CHOICE)} if _name == "cohen_kappa" else {}),
    )
case(
    "camseg.metrics.spearman",
    build=lambda ctx: {"a": ctx.rand(ctx.B, 8), "b": ctx.rand(ctx.B, 8)},
    call=fn_call(M.spearman),
    tensors={"a": T("float", (2, 3, 4)), "b": T("float", (2, 3, 4))},
    pairs=(("a", "b"),),
    options={"zero_division": Opt(ZERO_DIVISION)},
    ok={
        "a:dtype:int64": "integer values rank like floats",
        "b:dtype:int64": "integer values rank like floats",
        "a:dtype:bool": "bool values rank like 0/1",
        "b:dtype:bool": "bool values rank like 0/1",
    },
)
case(
    "camseg.metrics.aggregate",
    build=lambda ctx: {"values": ctx.scores(), "groups": torch.arange(8) % 3},
    call=fn_call(M.aggregate),
    tensors={"values": T("float", (1,)), "groups": T("int", (1,))},
    pairs=(("values", "groups"),),
    options={"method": Opt(CHOICE), "k": Opt(INT_POS), "threshold": Opt(("x", math.nan, None))},
    ok={"values:dtype:int64": "integer values aggregate like floats"},
)
case(
    "camseg.metrics.estimated_tumor_area",
    build=lambda ctx: {"masks": ctx.masks(), "groups": torch.arange(ctx.B) % 2},
    call=fn_call(M.estimated_tumor_area),
    tensors={"masks": MASKS, "groups": T("int", (1,))},
    options={"pixel_area": Opt(FLOAT_POS)},
    ok={"empty_hw": "images of no pixel have no tumor area: zeros"},
)
case(
    "camseg.metrics.noisy_linear_imputation",
    build=lambda ctx: {"images": ctx.images(), "removed": ctx.masks(), "max_iter": 20},
    call=fn_call(M.noisy_linear_imputation),
    tensors={"images": IMAGES, "removed": MASKS},
    pairs=(),
    options={"noise": Opt(FLOAT_NONNEG), "tol": Opt(FLOAT_POS), "max_iter": Opt(INT_POS)},
    # the poked pixel lies under `removed`: values there are documented as never read
    # (imputing missing, NaN pixels is a use), and a non-finite known pixel raises
    ok={
        "images:nan": "under `removed`: never read",
        "images:inf": "under `removed`: never read",
        "images:-inf": "under `removed`: never read",
    },
)


def _model_build(ctx: Ctx) -> dict[str, Any]:
    return {
        "model": NET,
        "images": ctx.images(),
        "maps": ctx.maps(),
        "targets": torch.tensor([i % 3 for i in range(ctx.B)]),
    }


MODEL_TENSORS = {"images": IMAGES, "maps": MAPS, "targets": TARGETS}
MODEL_OK = {
    "shape:maps": "maps of another size are resized to the images (documented)",
    "targets:list": "a list of class ids is a documented form of `targets`",
    "targets:ndim-": "a 0-d tensor is one class for every image, like an int",
}
for _name in ("deletion_auc", "deletion_curve", "insertion_auc", "insertion_curve"):
    case(
        f"camseg.metrics.{_name}",
        build=lambda ctx: {**_model_build(ctx), "steps": 4},
        call=fn_call(getattr(M, _name)),
        tensors=MODEL_TENSORS,
        pairs=(("images", "maps"),),
        ok=MODEL_OK,
        options={
            "steps": Opt(INT_POS),
            "substrate": Opt(CHOICE),
            "batch_size": Opt(INT_POS),
            "blur_sigma": Opt(FLOAT_POS),
            "model": Opt((5, None)),
        },
    )
for _name in ("average_drop", "increase_in_confidence"):
    case(
        f"camseg.metrics.{_name}",
        build=_model_build,
        call=fn_call(getattr(M, _name)),
        tensors=MODEL_TENSORS,
        pairs=(("images", "maps"),),
        ok=MODEL_OK,
        options={
            "batch_size": Opt(INT_POS),
            "average": Opt(("bogus", None, 3, "micro")),
            "model": Opt((5, None)),
        },
    )
for _name in ("road_auc", "road_curve"):
    case(
        f"camseg.metrics.{_name}",
        build=lambda ctx: {**_model_build(ctx), "percentages": (20.0, 60.0), "max_iter": 10},
        call=fn_call(getattr(M, _name)),
        tensors=MODEL_TENSORS,
        pairs=(("images", "maps"),),
        ok=MODEL_OK,
        options={
            "order": Opt(CHOICE),
            "percentages": Opt(((), (-10.0,), (150.0,), (math.nan,), "x")),
            "noise": Opt(FLOAT_NONNEG),
            "batch_size": Opt(INT_POS),
            "tol": Opt(FLOAT_POS),
            "max_iter": Opt(INT_POS),
            "model": Opt((5, None)),
        },
    )


def _explain(model: nn.Module, images: torch.Tensor, targets: Any) -> torch.Tensor:
    return camseg.GradCAM(model, "features")(images, targets)


case(
    "camseg.metrics.randomization_similarity",
    build=lambda ctx: {
        "model": TinyNet(),
        "explain_fn": _explain,
        "images": ctx.images(),
        "layers": ["fc"],
        "targets": torch.tensor([i % 3 for i in range(ctx.B)]),
    },
    call=fn_call(M.randomization_similarity),
    tensors={"images": IMAGES, "targets": TARGETS},
    ok={k: v for k, v in MODEL_OK.items() if k.startswith("targets")},
    options={
        "layers": Opt(((), ("nope",), 5, "fc")),
        "seed": Opt((1.5, "x", None)),
        "zero_division": Opt(ZERO_DIVISION),
        "explain_fn": Opt((5, None)),
    },
)


def _counter_call(kw: dict[str, Any]) -> Any:
    c = M.SegmentationCounter()
    c.update(kw["preds"], kw["masks"])
    return c.compute(kw["metric"], average=kw["average"])


case(
    "camseg.metrics.SegmentationCounter",
    build=lambda ctx: {
        "preds": ctx.masks(),
        "masks": ctx.masks(),
        "metric": "iou",
        "average": "micro",
    },
    call=_counter_call,
    tensors={"preds": PREDS_MASKS, "masks": MASKS},
    pairs=(("preds", "masks"),),
    options={"metric": Opt(CHOICE), "average": Opt(AVERAGE)},
    ok=SEG_EMPTY,
)

# ---------------------------------------------------------------------------------------------
# camseg.slide
# ---------------------------------------------------------------------------------------------


def _reader(kw: dict[str, Any]) -> Any:
    return S.ArrayReader(kw.pop("array"))


case(
    "camseg.slide.ArrayReader",
    build=lambda ctx: {"levels": slide_array(ctx), "mpp": 0.5},
    call=lambda kw: S.ArrayReader(**kw).read(0, 0, 0, 4, 4),
    options={
        "levels": Opt(
            (
                np.zeros((0, 0, 3), np.uint8),
                np.zeros((4, 4), np.uint8),
                np.zeros((4, 4, 3), np.float64),
                [],
                "x",
                5,
            )
        ),
        "mpp": Opt(FLOAT_POS[:-1]),
        "downsamples": Opt(((0.0,), (-1.0,), "x")),
        "max_pixels": Opt(INT_POS),
    },
    empty=False,
)
case(
    "camseg.slide.check_reader",
    build=lambda ctx: {"reader": S.ArrayReader(slide_array(ctx))},
    call=fn_call(S.check_reader),
    options={"reader": Opt((5, None, "x", np.zeros((4, 4, 3), np.uint8)))},
    empty=False,
)
case(
    "camseg.slide.check_region",
    build=lambda ctx: {
        "reader": S.ArrayReader(slide_array(ctx)),
        "level": 0,
        "x": 0,
        "y": 0,
        "w": 4,
        "h": 4,
    },
    call=fn_call(S.check_region),
    options={
        "reader": Opt((5, None)),
        "level": Opt((-1, 5, 1.5, "0")),
        "x": Opt((-1, 10**6, 1.5, "0")),
        "y": Opt((-1, 10**6, 1.5, "0")),
        "w": Opt((0, -1, 10**6, 1.5)),
        "h": Opt((0, -1, 10**6, 1.5)),
        "max_pixels": Opt((0, -1, 1.5, "x")),
    },
    empty=False,
)
case(
    "camseg.slide.read_tiles",
    build=lambda ctx: {
        "reader": S.ArrayReader(slide_array(ctx)),
        "level": 0,
        "coords": torch.tensor([[0, 0], [4, 8]]),
        "tile": 8,
    },
    call=fn_call(S.read_tiles),
    tensors={"coords": T("int", (2,), bad_values=(-4.0, 10.0**6), batch=False)},
    options={"reader": Opt((5, None)), "level": Opt((-1, 5, 1.5)), "tile": Opt(INT_POS)},
    empty=False,
)
case(
    "camseg.slide.select_level",
    build=lambda ctx: {"reader": S.ArrayReader(slide_array(ctx), mpp=0.5), "mpp": 0.5},
    call=fn_call(S.select_level),
    options={"reader": Opt((5, None)), "mpp": Opt(FLOAT_POS), "tolerance": Opt(FLOAT_NONNEG)},
    empty=False,
)
case(
    "camseg.slide.blend_window",
    build=lambda ctx: {"tile": ctx.H},
    call=fn_call(S.blend_window),
    options={
        "tile": Opt(INT_POS),
        "blend": Opt(CHOICE),
        "sigma": Opt(FLOAT_POS),
        "dtype": Opt((torch.int64, torch.bool, "float32")),
        "device": Opt(("nodevice", 5)),
    },
    empty=False,
)
case(
    "camseg.slide.tile_grid",
    build=lambda ctx: {"size": (4 * ctx.H, 4 * ctx.W), "tile": 4},
    call=fn_call(S.tile_grid),
    options={
        "size": Opt(((0, 4), (-1, 4), (4,), "x")),
        "tile": Opt(INT_POS),
        "stride": Opt((0, -1, 1.5, "x")),
        "edge": Opt(CHOICE),
        "quantum": Opt(INT_POS),
    },
    empty=False,
)


def _sliding(kw: dict[str, Any]) -> Any:
    reader = S.ArrayReader(kw.pop("array"))
    return S.sliding_window(reader, kw.pop("extractor"), progress=False, **kw)


case(
    "camseg.slide.sliding_window",
    build=lambda ctx: {"array": slide_array(ctx), "extractor": tile_fn, "tile": 8},
    call=_sliding,
    options={
        "extractor": Opt(
            (
                5,
                None,
                lambda t: t.mean(),
                lambda t: (t.mean(dim=(1, 2, 3)), torch.full(t.shape[:1] + t.shape[2:], math.nan)),
                lambda t: (t.mean(dim=(1, 2, 3)) * 300, t[:, 0]),
            )
        ),
        "tile": Opt(INT_POS),
        "stride": Opt((0, -1, 1.5, "x")),
        "batch_size": Opt(INT_POS),
        "level": Opt((-1, 5, 1.5)),
        "blend": Opt(CHOICE),
        "sigma": Opt(FLOAT_POS),
        "edge": Opt(CHOICE),
        "min_tissue": Opt(PROB),
        "targets": Opt((1.5, "x", -1)),
        "cam_normalize": Opt(CHOICE),
        "gate": Opt(BOOL_OPT),
        "output_downsample": Opt(INT_POS),
        "mpp": Opt(FLOAT_POS[:-1]),
        "mpp_tolerance": Opt(FLOAT_NONNEG),
        "device": Opt(("nodevice", 5)),
        "dtype": Opt((torch.int64, torch.bool, "float32")),
        "shard": Opt(((2, 1), (-1, 2), (0, 0), "x", 5)),
        "transform": Opt((5,)),
        "tissue": Opt((5, "x", torch.zeros(3, 3))),
    },
    empty=False,
)
case(
    "camseg.slide.slide_tissue_mask",
    build=lambda ctx: {"reader": S.ArrayReader(slide_array(ctx))},
    call=fn_call(S.slide_tissue_mask),
    options={"reader": Opt((5, None)), "level": Opt((-1, 5, 1.5)), "method": Opt(CHOICE)},
    empty=False,
)
case(
    "camseg.slide.tissue_fraction",
    build=lambda ctx: {"tiles": ctx.images()},
    call=fn_call(S.tissue_fraction),
    tensors={"tiles": T("float", (4,), spatial=True, bad_values=(-0.5, 1.5))},
    options={"method": Opt(CHOICE)},
)
case(
    "camseg.slide.laplacian_variance",
    build=lambda ctx: {"tiles": ctx.images()},
    call=fn_call(S.laplacian_variance),
    tensors={"tiles": T("float", (4,), spatial=True, bad_values=(-0.5, 1.5))},
)
case(
    "camseg.slide.TissueFilter",
    build=lambda ctx: {"tiles": ctx.images()},
    call=lambda kw: S.TissueFilter(**{k: v for k, v in kw.items() if k != "tiles"})(kw["tiles"]),
    tensors={"tiles": T("float", (4,), spatial=True, bad_values=(-0.5, 1.5))},
    options={
        "method": Opt(CHOICE),
        "min_fraction": Opt(PROB),
        "min_focus": Opt((-1.0, math.nan, "x")),
        "options": Opt((5, "x")),
    },
)
case(
    "camseg.slide.downsample_mask",
    build=lambda ctx: {"mask": ctx.masks()[0], "factor": 2},
    call=fn_call(S.downsample_mask),
    tensors={"mask": T("bool", (2,), batch=False)},
    options={"factor": Opt(INT_POS), "rule": Opt(CHOICE)},
    empty=False,
)
case(
    "camseg.slide.tumor_regions",
    build=lambda ctx: {"mask": ctx.masks()[0], "mpp": 0.5},
    call=fn_call(S.tumor_regions),
    tensors={"mask": T("bool", (2,), batch=False)},
    options={"mpp": Opt(FLOAT_POS), "merge_um": Opt(FLOAT_NONNEG)},
    empty=False,
)
case(
    "camseg.slide.mask_polygons",
    build=lambda ctx: {"mask": ctx.masks()[0]},
    call=fn_call(S.mask_polygons),
    tensors={"mask": T("bool", (2,), batch=False)},
    empty=False,
)
case(
    "camseg.slide.slide_metrics",
    build=lambda ctx: {"heatmap": ctx.maps()[0], "truth": ctx.masks()[0], "valid": ctx.masks()[1]},
    call=fn_call(S.slide_metrics),
    tensors={
        "heatmap": T("float", (2,), batch=False, spatial=True),
        "truth": T("bool", (2,), batch=False, spatial=True),
        "valid": T("bool", (2,), batch=False, spatial=True),
    },
    pairs=(("heatmap", "truth"), ("heatmap", "valid")),
    options={"threshold": Opt(("bogus", math.nan, None))},
    empty=False,
)


def _slide_maps(ctx: Ctx) -> Any:
    return S.sliding_window(S.ArrayReader(slide_array(ctx)), tile_fn, tile=8, progress=False)


case(
    "camseg.slide.slide_mask",
    build=lambda ctx: {"maps": _slide_maps(ctx)},
    call=fn_call(S.slide_mask),
    options={
        "maps": Opt((5, None, torch.zeros(4, 4))),
        "source": Opt(CHOICE),
        "threshold": Opt(("bogus", math.nan, -0.5, 1.5, None)),
        "min_size": Opt(INT_NONNEG),
        "fill_holes": Opt(BOOL_OPT),
    },
    empty=False,
)
case(
    "camseg.slide.merge_slide_maps",
    build=lambda ctx: {"parts": [_slide_maps(ctx)]},
    call=fn_call(S.merge_slide_maps),
    options={"parts": Opt(([], [5], 5, None))},
    empty=False,
)
case(
    "camseg.slide.group_split",
    build=lambda ctx: {"groups": [f"p{i % 5}" for i in range(20)], "fractions": (0.6, 0.4)},
    call=fn_call(S.group_split),
    options={
        "groups": Opt(([], 5, None)),
        "labels": Opt(([0] * 3, "x", 5)),
        "fractions": Opt(((0.5, 0.6), (-0.1, 1.1), (math.nan, 1.0), (), (0.1,) * 6, "x")),
        "seed": Opt((1.5, "x", None)),
    },
    empty=False,
)
case(
    "camseg.slide.shard_indices",
    build=lambda ctx: {"n": 10, "rank": 1, "world_size": 3},
    call=fn_call(S.shard_indices),
    options={"n": Opt((-1, 1.5, "x")), "rank": Opt((-1, 3, 1.5, "x")), "world_size": Opt(INT_POS)},
    empty=False,
)
case(
    "camseg.slide.node_class",
    build=lambda ctx: {"largest_diameter_mm": 1.0},
    call=fn_call(S.node_class),
    options={"largest_diameter_mm": Opt(FLOAT_NONNEG)},
    empty=False,
)
case(
    "camseg.slide.pn_stage",
    build=lambda ctx: {"nodes": ["negative", "micro", "macro"]},
    call=fn_call(S.pn_stage),
    options={"nodes": Opt((["bogus"], "micro", 5, None))},
    ok={"nodes=[]": "no nodes is pN0"},
    empty=False,
)
case(
    "camseg.slide.patient_stages",
    build=lambda ctx: {"nodes": ["negative", "micro", "macro"], "patients": ["a", "a", "b"]},
    call=fn_call(S.patient_stages),
    options={"nodes": Opt((["bogus"] * 3, ["micro"], 5, None)), "patients": Opt((["a"], 5, None))},
    empty=False,
)
case(
    "camseg.slide.stage_kappa",
    build=lambda ctx: {"true_stages": ["pN0", "pN1", "pN2"], "pred_stages": ["pN0", "pN1", "pN1"]},
    call=fn_call(S.stage_kappa),
    options={
        "true_stages": Opt(([], ["bogus"] * 3, ["pN0"], 5, None)),
        "pred_stages": Opt((["bogus"] * 3, ["pN0"], 5, None)),
    },
    empty=False,
)
case(
    "camseg.slide.annotation_mask",
    build=lambda ctx: {
        "annotations": [
            S.Annotation("t", "Tumor", ((np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0]]),),))
        ],
        "size": (ctx.H, ctx.W),
    },
    call=fn_call(S.annotation_mask),
    options={
        "annotations": Opt((5, [5], None)),
        "size": Opt(((0, 4), (-1, 4), (4,), "x")),
        "downsample": Opt(FLOAT_POS),
        "origin": Opt(((math.nan, 0.0), (0.0,), "x")),
        "max_pixels": Opt(INT_POS),
    },
    empty=False,
)


def _write_geojson(kw: dict[str, Any], tmp: Any) -> Any:
    return S.write_geojson(tmp / "m.geojson", **kw)


case(
    "camseg.slide.write_geojson",
    build=lambda ctx: {"masks": ctx.masks()[0], "heatmap": ctx.maps()[0]},
    call=lambda kw: _with_tmp(lambda tmp: S.write_geojson(tmp / "m.geojson", **kw)),
    tensors={
        "masks": T("bool", (2,), batch=False, spatial=True, seq_ok=False),
        "heatmap": T("float", (2,), batch=False, spatial=True),
    },
    pairs=(("masks", "heatmap"),),
    options={
        "threshold": Opt((math.nan, "x")),
        "downsample": Opt(FLOAT_POS),
        "origin": Opt(((math.nan, 0.0), (0.0,), "x")),
        "mpp": Opt(FLOAT_POS[:-1]),
        "classification": Opt((5, None)),
        "colors": Opt(({"Tumor": (300, 0, 0)}, 5)),
        "min_size": Opt(INT_NONNEG),
    },
    ok={"masks:dtype:float32": "a floating `masks` is a heatmap, thresholded at `threshold`"},
    empty=False,
)
case(
    "camseg.slide.write_tiff_overlay",
    build=lambda ctx: {"maps": ctx.maps()[0], "mpp": 0.5, "tile": 16},
    call=lambda kw: _with_tmp(lambda tmp: S.write_tiff_overlay(tmp / "m.tif", **kw)),
    tensors={"maps": T("float", (2, 3), batch=False, spatial=True)},
    options={
        "mpp": Opt(FLOAT_POS[:-1]),
        "tile": Opt((0, -1, 15, 1.5, "x")),
        "compression": Opt(("bogus", 5)),
    },
    ok={"maps:dtype:bool": "a bool mask is written as 0/255"},
    empty=False,
)
case(
    "camseg.slide.atomic_save",
    build=lambda ctx: {"obj": {"a": 1}},
    call=lambda kw: _with_tmp(lambda tmp: S.atomic_save(kw["obj"], kw.get("path", tmp / "x.pt"))),
    options={"path": Opt((5, None))},
    empty=False,
)
case(
    "camseg.slide.run_sharded",
    build=lambda ctx: {"items": [1, 2, 3], "fn": lambda v: v * 2, "rank": 0, "world_size": 1},
    call=lambda kw: _with_tmp(lambda tmp: S.run_sharded(out_dir=tmp, **kw)),
    options={
        "items": Opt((5, None)),
        "fn": Opt((5, None)),
        "keys": Opt(([1], 5)),
        "rank": Opt((-1, 1, 1.5, "x")),
        "world_size": Opt(INT_POS[:-1]),
        "timeout": Opt(FLOAT_POS),
    },
    empty=False,
)
case(
    "camseg.slide.make_slide",
    build=lambda ctx: {"height": 192, "width": 192, "tumors": 1, "patch": 32, "pool": 32},
    call=fn_call(S.make_slide),
    options={
        "height": Opt(INT_POS),
        "width": Opt(INT_POS),
        "tumors": Opt(INT_NONNEG),
        "patch": Opt(INT_POS),
        "seed": Opt((1.5, "x", None)),
        "mpp": Opt(FLOAT_POS),
        "pool": Opt(INT_POS),
    },
    empty=False,
)
case(
    "camseg.slide.open_slide",
    build=lambda ctx: {"path": _files()["tif"]},
    call=lambda kw: _closed(S.open_slide(**kw)),
    options={
        "path": Opt((5, None)),
        "backend": Opt(CHOICE),
        "mpp": Opt(FLOAT_POS[:-1]),
        "max_pixels": Opt(INT_POS),
    },
    empty=False,
)
case(
    "camseg.slide.TiffReader",
    build=lambda ctx: {"path": _files()["tif"]},
    call=lambda kw: _closed(S.TiffReader(**kw)),
    options={
        "path": Opt((5, None)),
        "series": Opt((-1, 1.5, "x")),
        "mpp": Opt(FLOAT_POS[:-1]),
        "max_pixels": Opt(INT_POS),
    },
    empty=False,
)
case(
    "camseg.slide.read_annotations",
    build=lambda ctx: {"path": _files()["geojson"]},
    call=fn_call(S.read_annotations),
    options={"path": Opt((5, None)), "format": Opt(CHOICE), "slide_size": Opt(((0, 4), "x"))},
    empty=False,
)

# ---------------------------------------------------------------------------------------------
# camseg.synthetic and camseg.viz
# ---------------------------------------------------------------------------------------------

case(
    "camseg.synthetic.make_patches",
    build=lambda ctx: {"n": ctx.B, "size": 32, "label_region": 8},
    call=fn_call(SY.make_patches),
    options={
        "n": Opt((-1, 1.5, "x", None)),
        "size": Opt(INT_POS),
        "seed": Opt((1.5, "x", None)),
        "label_region": Opt((0, -1, 64, 1.5)),
        "tumor_fraction": Opt(PROB),
        "peripheral_fraction": Opt(PROB),
        "stain_jitter": Opt(FLOAT_NONNEG),
        "background": Opt(PROB),
        "nuclear_contrast": Opt(FLOAT_NONNEG),
    },
    empty=False,
)
case(
    "camseg.synthetic.label_region_mask",
    build=lambda ctx: {"size": 16, "label_region": 8},
    call=fn_call(SY.label_region_mask),
    options={"size": Opt(INT_POS), "label_region": Opt((0, -1, 64, 1.5))},
    empty=False,
)
case(
    "camseg.synthetic.to_tensor_images",
    build=lambda ctx: {"images": (ctx.rand(ctx.B, ctx.H, ctx.W, 3) * 255).to(torch.uint8)},
    call=fn_call(SY.to_tensor_images),
    tensors={"images": T("none", (4,), finite=False)},
)
case(
    "camseg.viz.colorize",
    build=lambda ctx: {"maps": ctx.maps()},
    call=fn_call(V.colorize),
    tensors={"maps": UNIT_MAPS},
    options={"colormap": Opt(CHOICE)},
)
case(
    "camseg.viz.overlay",
    build=lambda ctx: {"images": ctx.images(), "maps": ctx.maps()},
    call=fn_call(V.overlay),
    tensors={"images": T("float", (4,), spatial=True, bad_values=(-0.5, 1.5)), "maps": UNIT_MAPS},
    pairs=(("images", "maps"),),
    options={"alpha": Opt(PROB), "colormap": Opt(CHOICE)},
    ok={"shape:maps": "maps at another resolution are resized to the images (documented)"},
)
case(
    "camseg.viz.draw_masks",
    build=lambda ctx: {"images": ctx.images(), "masks": ctx.masks()},
    call=fn_call(V.draw_masks),
    tensors={"images": T("float", (4,), spatial=True, bad_values=(-0.5, 1.5)), "masks": MASKS},
    pairs=(("images", "masks"),),
    options={"color": Opt(((300, 0, 0), (0, 0), "x")), "fill": Opt(PROB), "width": Opt(INT_POS)},
)


def _plot_grid(kw: dict[str, Any]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = V.plot_grid(kw["rows"], **{k: v for k, v in kw.items() if k != "rows"})
    plt.close(fig)
    return fig


case(
    "camseg.viz.plot_grid",
    build=lambda ctx: {"rows": {"a": ctx.images(), "b": ctx.maps()}},
    call=_plot_grid,
    options={
        "rows": Opt(({}, {"a": 5}, 5, None)),
        "columns": Opt((["x"], 5)),
        "scale": Opt(FLOAT_POS),
    },
    empty=False,
)


def _closed(reader: Any) -> Any:
    """Read one region, then close the reader (an open file would warn at collection)."""
    try:
        return reader.read(0, 0, 0, 4, 4)
    finally:
        reader.close()


_FILES: dict[str, str] = {}


def _files() -> dict[str, str]:
    """A small pyramidal TIFF and a GeoJSON file, written once per session."""
    if not _FILES:
        import atexit
        import shutil
        import tempfile

        d = tempfile.mkdtemp(prefix="camseg-sweep-")
        atexit.register(shutil.rmtree, d, True)  # the files live as long as the test process
        mask = torch.zeros(32, 32, dtype=torch.bool)
        mask[4:12, 6:20] = True
        _FILES["geojson"] = str(S.write_geojson(f"{d}/a.geojson", mask))
        _FILES["tif"] = str(
            S.write_tiff_overlay(f"{d}/s.tif", torch.rand(64, 64), mpp=0.5, tile=16)
        )
    return _FILES


def _with_tmp(fn: Callable[[Any], Any]) -> Any:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        return fn(Path(d))


#: public names without input to get wrong (records, aliases, constants, warnings)
NOT_APPLICABLE: dict[str, str] = {
    "camseg.BaseCAM": "abstract: its subclasses' cases run its __call__",
    "camseg.CAMWarning": "a warning class",
    "camseg.LayerInfo": "a record returned by list_layers",
    "camseg.CAMResult": "a record returned by explain()",
    "camseg.Targets": "a type alias",
    "camseg.__version__": "a string",
    "camseg.functional.NormalizeMode": "a type alias",
    "camseg.functional.Group": "a type alias",
    "camseg.losses.CamFn": "a type alias",
    "camseg.losses.ScoreFn": "a type alias",
    "camseg.losses.Pooling": "a type alias",
    "camseg.losses.Reduction": "a type alias",
    "camseg.losses.Region": "a type alias",
    "camseg.losses.RegularizerOutput": "a record returned by CAMRegularizer",
    "camseg.metrics.METRIC_NAMES": "a constant",
    "camseg.metrics.BinaryStats": "a record returned by binary_stats",
    "camseg.metrics.ExplainFn": "a type alias",
    "camseg.slide.EXCLUDE_GROUPS": "a constant",
    "camseg.slide.MAX_REGION_PIXELS": "a constant",
    "camseg.slide.MAX_TILES": "a constant",
    "camseg.slide.NODE_CLASSES": "a constant",
    "camseg.slide.PN_STAGES": "a constant",
    "camseg.slide.Annotation": "a record (read_annotations, annotation_mask check its fields)",
    "camseg.slide.CAMExtractor": "a protocol",
    "camseg.slide.RegionReader": "a protocol (check_reader is swept)",
    "camseg.slide.SlideMaps": "a record returned by sliding_window",
    "camseg.slide.SlideMetrics": "a record returned by slide_metrics",
    "camseg.slide.SyntheticSlide": "a record returned by make_slide",
    "camseg.slide.TumorRegions": "a record returned by tumor_regions",
    "camseg.slide.OpenSlideReader": "needs the optional openslide package and a slide file",
    "camseg.slide.dist_info": "takes no arguments",
    "camseg.slide.openslide_available": "takes no arguments",
    "camseg.postprocess.native_kernels": "takes no arguments",
    "camseg.synthetic.SyntheticPatches": "a record returned by make_patches",
    "camseg.viz.COLORMAPS": "a constant",
    "camseg.viz.Colormap": "a type alias",
}

#: defects found by this sweep and not fixed yet, (name, mutation id) -> what happens; kept in
#: bad_input_known.json beside this file. An entry that stops failing fails its test, so the
#: list only shrinks: remove the entry in the change that fixes it.
KNOWN: dict[tuple[str, str], str] = {
    (name, mid): what
    for name, mid, what in json.loads(
        (Path(__file__).with_name("bad_input_known.json")).read_text(encoding="utf-8")
    )
}


# ---------------------------------------------------------------------------------------------
# mutations
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    id: str
    names: tuple[str, ...]  # an error must name one of these
    apply: Callable[[dict[str, Any]], None]
    empty: bool = False  # an empty result is a correct one
    nonfinite: bool = False  # NaN/inf put into the input


def _set(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(kw: dict[str, Any]) -> None:
        kw[name] = value

    return apply


def _edit(name: str, fn: Callable[[torch.Tensor], Any]) -> Callable[[dict[str, Any]], None]:
    def apply(kw: dict[str, Any]) -> None:
        kw[name] = fn(kw[name])

    return apply


def _to_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.bool:
        return t > (0.5 if t.is_floating_point() else 0)
    if t.dtype == torch.bool:
        return t.to(dtype)
    if not dtype.is_floating_point and not dtype.is_complex and t.is_floating_point():
        return (t * 2).to(dtype)
    return t.to(dtype)


def _poke(value: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(t: torch.Tensor) -> torch.Tensor:
        out = (
            t.clone()
            if t.is_floating_point()
            else t.to(torch.float32 if value != int(value) else t.dtype)
        )
        flat = out.view(-1)
        flat[flat.numel() // 2] = value
        return out

    return fn


def mutations(c: Case, kw: dict[str, Any]) -> Iterator[Mutation]:
    """Every bad call derived from ``c``'s specs, applied to a copy of the valid ``kw``."""
    for name, spec in c.tensors.items():
        if name not in kw:
            continue
        t = kw[name]
        if not spec.seq_ok:
            yield Mutation(f"{name}:list", (name,), _edit(name, lambda x: x.tolist()))
        yield Mutation(f"{name}:str", (name,), _set(name, "bogus"))
        for d in KIND_BAD_DTYPES[spec.kind]:
            yield Mutation(
                f"{name}:dtype:{str(d).removeprefix('torch.')}",
                (name,),
                _edit(name, lambda x, d=d: _to_dtype(x, d)),
            )
        if t.ndim >= 1 and t.ndim - 1 not in spec.ndims:
            yield Mutation(f"{name}:ndim-", (name,), _edit(name, lambda x: x[0]))
        if t.ndim + 1 not in spec.ndims:
            yield Mutation(f"{name}:ndim+", (name,), _edit(name, lambda x: x.unsqueeze(0)))
        if spec.finite and spec.kind == "float":
            for v in (math.nan, math.inf, -math.inf):
                yield Mutation(f"{name}:{v}", (name,), _edit(name, _poke(v)), nonfinite=True)
        for v in spec.bad_values:
            yield Mutation(f"{name}:value:{v:g}", (name,), _edit(name, _poke(v)))
    batch = [n for n, s in c.tensors.items() if s.batch and n in kw]
    for other in batch[1:]:
        yield Mutation(f"batch:{other}", (batch[0], other), _edit(other, lambda x: x[:-1]))
    for a, b in c.pairs:
        if a in kw and b in kw:
            yield Mutation(f"shape:{b}", (a, b), _edit(b, lambda x: x[..., :-1]))
    if c.empty and batch:

        def empty(kw: dict[str, Any], batch: list[str] = batch) -> None:
            for n in batch:
                kw[n] = kw[n][:0]

        yield Mutation("empty", tuple(batch), empty, empty=True)
    spatial = [n for n, s in c.tensors.items() if s.spatial and n in kw]
    if spatial:

        def empty_hw(kw: dict[str, Any], spatial: list[str] = spatial) -> None:
            for n in spatial:
                kw[n] = kw[n][..., :0]

        yield Mutation("empty_hw", tuple(spatial), empty_hw, empty=True)
    for name, opt in c.options.items():
        for v in opt.bad:
            yield Mutation(f"{name}={_short(v)}", (name,), _set(name, v))


def _short(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return f"tensor{tuple(v.shape)}"
    if isinstance(v, np.ndarray):
        return f"array{v.shape}:{v.dtype}"
    if callable(v) and getattr(v, "__name__", "") == "<lambda>":
        return "lambda"
    return repr(v)


def _tensors(out: Any) -> Iterator[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, dict):
        for v in out.values():
            yield from _tensors(v)
    elif isinstance(out, (tuple, list)):
        for v in out:
            yield from _tensors(v)
    elif hasattr(out, "__dataclass_fields__"):
        for k in out.__dataclass_fields__:
            yield from _tensors(getattr(out, k))


def _copy(kw: dict[str, Any]) -> dict[str, Any]:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}


#: modules whose results may carry a NaN/inf of the input forward (visibly), as torch ops do:
#: the functional maths and the losses (a NaN loss stops a training run where it starts)
PROPAGATING = ("camseg.functional.", "camseg.losses.")


def _names(msg: str, names: tuple[str, ...]) -> bool:
    """Whether ``msg`` names one of ``names`` in backticks (an element such as `x[0]` counts)."""
    return any(re.search(rf"`{re.escape(n)}(\[[^`]*)?`", msg) for n in names)


def judge(name: str, c: Case, m: Mutation, kw: dict[str, Any]) -> str | None:
    """``None`` if the bad call behaved, else what went wrong."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = c.call(kw)
    except (ValueError, TypeError) as exc:
        if _names(str(exc), m.names):
            return None
        if any(m.id.startswith(p) for p in c.ok):
            return None
        return f"{type(exc).__name__} not naming {m.names}: {str(exc)[:160]}"
    except Exception as exc:  # the wrong type of exception
        if any(m.id.startswith(p) for p in c.ok):
            return None
        return f"{type(exc).__name__}: {str(exc)[:160]}"
    if any(m.id.startswith(p) for p in c.ok):
        return None
    if m.empty and all(t.numel() == 0 for t in _tensors(out)):
        return None
    if m.nonfinite:
        if any(issubclass(w.category, camseg.CAMWarning) for w in caught):
            return None
        if name.startswith(PROPAGATING) and any(
            t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in _tensors(out)
        ):
            return None
    return "returned a result (silently)"


# ---------------------------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------------------------


def public_names() -> list[str]:
    names = []
    for mod_name in PUBLIC_MODULES:
        mod = importlib.import_module(mod_name)
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name)
            if inspect.ismodule(obj):
                continue
            names.append(f"{mod_name}.{name}")
    return names


def test_every_public_name_has_a_case() -> None:
    names = public_names()
    assert len(names) > 150, len(names)
    missing = [n for n in names if n not in CASES and n not in NOT_APPLICABLE]
    assert not missing, f"public names with neither a case nor a reason: {missing}"
    stale = sorted(set(CASES) - set(names)) + sorted(set(NOT_APPLICABLE) - set(names))
    assert not stale, f"cases for names that are not public: {stale}"
    assert len(CASES) > 120, len(CASES)
    for key in KNOWN:
        assert key[0] in CASES, key


KNOWN_FILE = Path(__file__).with_name("bad_input_known.json")


def _update_known(name: str, failures: dict[str, str]) -> None:
    """Replace ``name``'s entries of :data:`KNOWN_FILE` by its current failures."""
    entries = [e for e in json.loads(KNOWN_FILE.read_text(encoding="utf-8")) if e[0] != name]
    entries += [[name, mid, what[:100]] for mid, what in sorted(failures.items())]
    entries.sort()
    text = "[\n" + ",\n".join("  " + json.dumps(e) for e in entries) + "\n]\n"
    KNOWN_FILE.write_text(text, encoding="utf-8")


ctxs = st.builds(
    Ctx,
    B=st.integers(2, 3),
    H=st.integers(4, 7),
    W=st.integers(4, 7),
    seed=st.integers(0, 2**16),
)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str) -> None:
    c = CASES[name]
    failures: dict[str, str] = {}
    seen: set[str] = set()

    @SWEEP
    @given(ctx=ctxs)
    def sweep(ctx: Ctx) -> None:
        valid = c.build(ctx)
        # the valid call itself must work (otherwise the sweep tests nothing)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                c.call(_copy(valid))
        except Exception as exc:
            if not any(p == "" for p in c.ok):
                failures["valid"] = f"the valid call raised {type(exc).__name__}: {exc}"
        for m in mutations(c, valid):
            kw = _copy(valid)
            m.apply(kw)
            seen.add(m.id)
            verdict = judge(name, c, m, kw)
            if verdict is not None and m.id not in failures:
                failures[m.id] = verdict

    sweep()
    assert seen or c.options or c.tensors, name
    known = {mid for (n, mid) in KNOWN if n == name}
    new = {k: v for k, v in failures.items() if k not in known}
    fixed = sorted(known - set(failures))
    report = "\n".join(f"  {k}: {v}" for k, v in sorted(new.items()))
    if os.environ.get("CAMSEG_UPDATE_KNOWN") == "1":  # rewrite this name's entries, then pass
        _update_known(name, failures)
        return
    assert not new, f"{name}: {len(new)} bad inputs misbehave:\n{report}"
    assert not fixed, f"{name}: fixed, remove from KNOWN: {fixed}"
