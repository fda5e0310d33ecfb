"""
From maps to masks, and how to score them
=========================================

A class-activation map is not yet a segmentation, and a good-looking map is not
yet a faithful one. This example takes Grad-CAM maps of the PCam example's small
classifier on synthetic patches through camseg's post-processing one step at a
time (gate by the classifier, Otsu threshold, small-object removal, hole
filling), then scores them two ways: against the true masks (IoU against the
threshold) and against the model itself (deletion and ROAD curves: does
removing the pixels the map ranks first change the prediction?).
"""

# %%
# A small classifier and its maps
# -------------------------------
# The same recipe as in :doc:`plot_choose_method` (2,048 synthetic patches,
# 6 epochs, about 20 s on 2 CPU cores).
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from camseg_pcam.train import to_float_images, train_small_synthetic

import camseg
from camseg import metrics, postprocess
from camseg.synthetic import make_patches

torch.manual_seed(0)
tmp = Path(tempfile.mkdtemp())
model = train_small_synthetic(tmp)  # data in tmp/data, the run in tmp/run

patches = make_patches(96, seed=11)
images = to_float_images(patches.images)
true = patches.masks
with camseg.GradCAM(model, "features") as cam:
    result = cam.explain(images, targets=1, normalize="max")  # zero stays zero
maps, probs = result.maps, result.logits.softmax(dim=1)[:, 1]
print(f"{len(images)} patches, {int(patches.labels.sum())} with tumour in the centre")

# %%
# Step by step
# ------------
# Each step is a function of :mod:`camseg.postprocess` on the whole batch;
# :func:`~camseg.postprocess.cams_to_masks` chains them.
gated = postprocess.gate(maps, probs, min_prob=0.5)  # a patch called normal maps nothing
t = postprocess.threshold_otsu(gated)  # one threshold per map; the caller compares
otsu = postprocess.cams_to_masks(maps, probs=probs)  # gate + Otsu (an all-zero map: no mask)
clean = postprocess.cams_to_masks(maps, probs=probs, min_size=48, fill_holes=True)
for name, m in (("gate + Otsu", otsu), ("+ min_size, holes", clean)):
    print(f"{name:18s} micro IoU {float(metrics.iou(m, true)):.3f}")

picks = [int(i) for i in (patches.labels == 1).nonzero().flatten()[:5]]
columns = [
    ("patch", lambda i: images[i].permute(1, 2, 0), None),
    ("Grad-CAM", lambda i: maps[i], "inferno"),
    ("gated", lambda i: gated[i], "inferno"),
    ("Otsu mask", lambda i: otsu[i], "gray"),
    ("min_size, holes", lambda i: clean[i], "gray"),
    ("true mask", lambda i: true[i], "gray"),
]
fig, axes = plt.subplots(len(picks), len(columns), figsize=(8, 7))
for r, i in enumerate(picks):
    for c, (title, get, cmap) in enumerate(columns):
        axes[r, c].imshow(get(i).float().numpy(), cmap=cmap, vmin=0, vmax=1)
        axes[r, c].set_xticks([])
        axes[r, c].set_yticks([])
        if r == 0:
            axes[r, c].set_title(title, fontsize=8)
fig.tight_layout()

# %%
# IoU against the threshold
# -------------------------
# :func:`~camseg.metrics.threshold_curve` scores every candidate threshold in one
# pass. With the masks in hand one can read off the best fixed cut; without
# them (the weakly-supervised setting) Otsu's per-image cut is the default, and
# the curve shows what that choice costs.
curve = metrics.threshold_curve(gated, true, thresholds=51)
ts = torch.linspace(0, 1, 51)
best = int(curve["iou"].argmax())
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(ts, curve["iou"], label="IoU")
ax.plot(ts, curve["dice"], label="Dice")
ax.axvline(float(t[probs >= 0.5].median()), color="k", ls=":", label="median Otsu cut")
ax.set_xlabel("threshold on the gated map")
ax.set_ylabel("micro score")
ax.legend(fontsize=8)
fig.tight_layout()
print(f"best fixed cut {float(ts[best]):.2f}: IoU {float(curve['iou'][best]):.3f}")

# %%
# Faithfulness: deletion, insertion and ROAD
# ------------------------------------------
# Removing the pixels a faithful map ranks first should make the tumour
# probability fall fast (deletion: a low area under the curve is good), and
# adding them first to a blurred copy should make it rise fast (insertion: a high
# area is good). Two
# baselines every method should beat: a random map, and the map turned upside
# down. Deletion with a constant substrate (zeros) takes the image off the data
# distribution, and scattered removals do that fastest, so on H&E it can rank a
# random map above every real one. ROAD (Rong et al., ICML 2022) fills the
# removed pixels by noisy linear imputation from their neighbours instead, so
# the removal itself carries less signal.
positives = probs >= 0.5
x, m = images[positives][:24], maps[positives][:24]
candidates = {
    "Grad-CAM": m,
    "random": torch.rand(m.shape, generator=torch.Generator().manual_seed(0)),
    "inverted": 1 - m,
}
curves = {
    name: {
        "deletion (zeros)": metrics.deletion_curve(model, x, mm, 1, steps=16).mean(0),
        "insertion (blur)": metrics.insertion_curve(model, x, mm, 1, steps=16).mean(0),
        "ROAD, most relevant first": metrics.road_curve(model, x, mm, 1).mean(0),
    }
    for name, mm in candidates.items()
}
percent = {
    "deletion (zeros)": torch.linspace(0, 100, 17),
    "insertion (blur)": torch.linspace(0, 100, 17),
    "ROAD, most relevant first": torch.arange(10, 100, 10),  # road_curve's default percentages
}
fig, axes = plt.subplots(1, 3, figsize=(11, 3))
for ax, kind in zip(axes, percent):
    for name, c in curves.items():
        ax.plot(percent[kind], c[kind], label=name)
    ax.set_title(kind, fontsize=9)
    ax.set_xlabel("% of pixels removed or inserted", fontsize=8)
axes[0].set_ylabel("tumour probability")
axes[1].legend(fontsize=8)
fig.tight_layout()

# %%
# The mean of each curve (for deletion and ROAD lower is better, for insertion
# higher), and which candidate each metric ranks first on this run:
for kind in percent:
    sign = -1.0 if kind.startswith("insertion") else 1.0
    means = {name: float(c[kind].mean()) for name, c in curves.items()}
    order = sorted(means, key=lambda n: sign * means[n])
    ranked = ", ".join(f"{n} {means[n]:.3f}" for n in order)
    print(f"{kind:26s} {ranked}  -> best: {order[0]}")
shutil.rmtree(tmp)
