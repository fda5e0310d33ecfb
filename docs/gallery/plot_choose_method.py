"""
Choosing a method and a layer
=============================

Which CAM method, at which layer, localises tumour best? The answer depends on
the model, so measure it on patches with known masks rather than guess. This
example trains the PCam example's small classifier on synthetic patches for a
few seconds, then scores every gradient and gradient-free method at three depths
of its feature extractor by how well Otsu masks of the maps match the true
tumour (micro IoU), whether the map's peak falls in tumour (pointing game) and
what a batch costs. The second part shows the same choice for a vision
transformer, where the right layer is *not* the last block.
"""

# %%
# Train a small classifier
# ------------------------
# 2,048 synthetic PCam patches in the real file format, the example's small
# model (five conv layers, global average pooling, a linear head), 6 epochs
# (about 20 s on 2 CPU cores; the validation AUC is printed below).
import shutil
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from camseg_pcam.train import to_float_images, train_small_synthetic
from torchvision.models import VisionTransformer

import camseg
from camseg import metrics, postprocess
from camseg.functional import tokens_to_grid
from camseg.synthetic import make_patches

torch.manual_seed(0)
tmp = Path(tempfile.mkdtemp())
model = train_small_synthetic(tmp)  # data in tmp/data, the run in tmp/run
best_auc = float((tmp / "run" / "metrics.csv").read_text().splitlines()[-1].split(",")[-1])
print(f"best validation AUC {best_auc:.3f}")

# %%
# Candidate layers
# ----------------
# :func:`camseg.list_layers` shows every module with its output shape for a
# 96 x 96 input. The small model halves the resolution three times; the last
# stage (``features``, 12 x 12) is the usual choice, earlier stages give finer
# but less class-specific maps.
layers = {info.name: info for info in camseg.list_layers(model)}
candidates = ["features.10", "features.14", "features"]
for name in candidates:
    print(f"{name:12s} output {layers[name].output_shape}")

# %%
# Score every method at every layer
# ---------------------------------
# A fresh synthetic draw, its tumour-positive patches only (a negative has no
# tumour to find). Masks: Otsu's threshold of each min-max map. IoU is micro
# (all pixels of the set count the same); the pointing game asks whether the
# hottest pixel lies in tumour.
patches = make_patches(256, seed=7)
positive = patches.labels == 1
images = to_float_images(patches.images[positive])
true = patches.masks[positive]

methods = {
    "GradCAM": {},
    "GradCAMPlusPlus": {},
    "HiResCAM": {},
    "XGradCAM": {},
    "LayerCAM": {},
    "EigenCAM": {},
    "LinearCAM": {"head": "fc"},
    "ScoreCAM": {},
}
scores: dict[tuple[str, str], tuple[float, float, float]] = {}
for method, kw in methods.items():
    for layer in candidates:
        if method == "LinearCAM" and layer != "features":
            continue  # LinearCAM needs the layer right below the pooling and head
        extractor = getattr(camseg, method)(model, layer, **kw)
        start = time.perf_counter()
        maps = extractor(images, targets=1)
        seconds = time.perf_counter() - start
        masks = postprocess.cams_to_masks(maps)
        iou = float(metrics.iou(masks, true))
        hit = float(metrics.pointing_game(maps, true))
        scores[method, layer] = (iou, hit, seconds)

print(f"{len(images)} tumour patches")
print(f"{'method':16s} {'layer':12s} {'IoU':>6s} {'pointing':>9s} {'seconds':>8s}")
for (method, layer), (iou, hit, seconds) in scores.items():
    print(f"{method:16s} {layer:12s} {iou:6.3f} {hit:9.3f} {seconds:8.3f}")
best = max(scores, key=lambda k: scores[k][0])
print(f"best by IoU: {best[0]} at {best[1]} ({scores[best][0]:.3f})")

# %%
# The same as a picture: IoU per method and layer (a blank cell is a pair that
# does not apply).
grid = torch.full((len(methods), len(candidates)), float("nan"))
for (method, layer), (iou, _, _) in scores.items():
    grid[list(methods).index(method), candidates.index(layer)] = iou
fig, ax = plt.subplots(figsize=(5.2, 3.8))
im = ax.imshow(grid.numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
ax.set_xticks(range(len(candidates)), candidates, fontsize=8)
ax.set_yticks(range(len(methods)), list(methods), fontsize=8)
for r in range(grid.shape[0]):
    for c in range(grid.shape[1]):
        v = float(grid[r, c])
        if v == v:  # not NaN
            color = "k" if v > 0.5 else "w"
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=8, color=color)
fig.colorbar(im, ax=ax, label="micro IoU (Otsu masks)")
ax.set_title("tumour IoU by method and layer", fontsize=9)
fig.tight_layout()

# %%
# What the maps look like at the best pair, next to the true masks:
method, layer = best
maps = getattr(camseg, method)(model, layer, **methods[method])(images[:6], targets=1)
fig, axes = plt.subplots(3, 6, figsize=(7.5, 3.9))
for i in range(6):
    axes[0, i].imshow(images[i].permute(1, 2, 0).numpy())
    axes[1, i].imshow(maps[i].numpy(), cmap="inferno", vmin=0, vmax=1)
    axes[2, i].imshow(true[i].numpy(), cmap="gray")
for row, title in zip(axes[:, 0], ("patch", f"{method}\n{layer}", "true mask")):
    row.set_ylabel(title, fontsize=8)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()

# %%
# Transformers: not the last block
# --------------------------------
# In a ViT only the class token reaches the head, and after the last block's
# attention no patch token can influence it: the gradients at the last block's
# output are exactly zero and so is every gradient map. camseg warns
# (:class:`camseg.CAMWarning`) instead of returning a blank map silently. The
# right layer is the last block's first norm, whose tokens the last attention
# still mixes into the class token; ``reshape`` drops the class token and lays
# the patch tokens out as a grid. (A tiny torchvision ViT with random weights
# here, its zero-initialised head drawn at random; the module names are those
# of ``vit_b_16``.)
vit = VisionTransformer(
    image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
    num_classes=2,
).eval()  # fmt: skip
torch.nn.init.normal_(vit.heads.head.weight, std=0.5)
x = torch.rand(4, 3, 32, 32)
last = "encoder.layers.encoder_layer_1"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    maps = camseg.GradCAM(vit, last, reshape=partial(tokens_to_grid, prefix_tokens=1))(x, 1)
print(f"at {last}: max {float(maps.max()):.1f};", caught[0].category.__name__)
right = camseg.GradCAM(vit, last + ".ln_1", reshape=partial(tokens_to_grid, prefix_tokens=1))
print("at .ln_1:", tuple(right(x, 1, size=None).shape), "non-zero:", bool(right(x, 1).any()))

# %%
# For attention-based attributions, :class:`camseg.AttentionRollout` and
# :class:`camseg.AttentionRelevance` find the attention layers of timm and
# torchvision ViTs themselves:
rollout = camseg.AttentionRollout(vit)
print("rollout maps:", tuple(rollout(x).shape))

# %%
# The table of the right layer and ``reshape`` per family (ResNet, DenseNet,
# EfficientNet, ConvNeXt, ViT, DeiT, DINOv2 with registers, Swin) is in
# :doc:`/cams`.

# %%
# Reading the table
# -----------------
# The pointing game saturates quickly (most methods put their peak in tumour);
# the IoU of the masks separates them, and the layer matters as much as the
# method. Run the same loop on validation patches of your own with masks
# (PCam's test split has none; the CAMELYON16 annotations do, see
# :doc:`/slide`) before fixing a method for a study.
shutil.rmtree(tmp)
