"""
What each loss does to a map
============================

camseg's CAM-regularisation losses act on maps (or per-location logits), so
their effect can be seen without a network: start from two noisy maps, a
positive patch (tumour somewhere in the centre, the PCam label) and a negative
one (no tumour in the centre, but some evidence there), and follow the gradient
of one loss at a time. What the optimiser does to the map is what the loss asks
of a model's maps in training.
"""

# %%
# Two starting maps
# -----------------
# The maps are ``sigmoid(logits)`` of free ``(2, 48, 48)`` logits: a noisy blob
# at the right edge of the label region for the positive, a weaker one in the
# centre for the negative. The label region is the centre third, PCam's 32 of 96
# pixels.
import matplotlib.pyplot as plt
import torch

from camseg import losses

torch.manual_seed(0)
size = 48
yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")


def blob(cy: float, cx: float, r: float) -> torch.Tensor:
    return torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))


start = torch.stack([6 * blob(24, 36, 7) - 3, 3 * blob(24, 24, 6) - 3])
start = start + 1.2 * torch.randn(2, size, size)
labels = torch.tensor([1, 0])
region = losses.region_mask(1 / 3, (size, size))


def optimise(loss_fn, steps: int = 150, lr: float = 0.1) -> torch.Tensor:
    """Follow the gradient of ``loss_fn(logits)`` from the starting logits."""
    logits = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(logits).backward()
        opt.step()
    return torch.sigmoid(logits.detach())


# %%
# One loss at a time
# ------------------
# Each entry is the loss alone, as it would be weighted into a classifier's
# objective (:class:`camseg.losses.CAMRegularizer` sums several):
pseudo = (torch.sigmoid(start) > 0.7).long()  # confident foreground ...
pseudo[(torch.sigmoid(start) > 0.3) & (pseudo == 0)] = -1  # ... an ignored band ...
results = {  # ... and background elsewhere
    "start": torch.sigmoid(start),
    "smoothness": optimise(lambda z: losses.smoothness_loss(torch.sigmoid(z))),
    "size (0.02-0.08)": optimise(
        lambda z: losses.size_loss(torch.sigmoid(z), labels, bounds=(0.02, 0.08))
    ),
    "suppression": optimise(lambda z: losses.suppression_loss(torch.sigmoid(z), labels)),
    "center evidence": optimise(lambda z: losses.center_evidence_loss(torch.sigmoid(z), labels)),
    "MIL (logits)": optimise(lambda z: losses.mil_loss(z, labels)),
    "pseudo-mask (logits)": optimise(lambda z: losses.pseudo_mask_loss(z, pseudo)),
}
fig, axes = plt.subplots(2, len(results), figsize=(12, 3.8))
for c, (name, maps) in enumerate(results.items()):
    for r in range(2):
        ax = axes[r, c]
        ax.imshow(maps[r].numpy(), cmap="inferno", vmin=0, vmax=1)
        ax.contour(region.float().numpy(), levels=[0.5], colors="c", linewidths=0.6)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, c].set_title(name, fontsize=8)
axes[0, 0].set_ylabel("positive", fontsize=8)
axes[1, 0].set_ylabel("negative", fontsize=8)
fig.tight_layout()

# %%
# What the pictures show, in numbers: the mean map inside and outside the label
# region (cyan box) of each patch, and its total variation.
print(f"{'loss':22s} {'pos in':>7s} {'pos out':>7s} {'neg in':>7s} {'neg out':>7s} {'TV':>6s}")
for name, maps in results.items():
    inside = [float(maps[i][region].mean()) for i in range(2)]
    outside = [float(maps[i][~region].mean()) for i in range(2)]
    tv = float(losses.smoothness_loss(maps))
    cells = [*inside[:1], *outside[:1], *inside[1:], *outside[1:]]
    print(f"{name:22s} " + " ".join(f"{v:7.3f}" for v in cells) + f" {tv:6.3f}")

# %%
# Reading them:
#
# * **smoothness** (total variation) asks for piecewise-flat maps and says
#   nothing about where tumour is: alone, it flattens the noise and then the
#   blobs too, which is why it only ever rides on a classifier's loss with a
#   small weight.
# * **size** shrinks (or grows) the positive's mapped area into the bounds, here
#   an area of 2-8 % of the patch, and leaves the negative alone (it applies to
#   positives).
# * **suppression** darkens the negative's label region only: PCam's label says
#   nothing about a negative's periphery.
# * **center evidence** raises the positive's strongest evidence inside the label
#   region (its top 10 %), here the pixels next to the blob; the rest is free.
# * **MIL** on per-location logits pools the label region (log-sum-exp): the
#   positive's centre must hold some tumour, the negative's centre none. Alone,
#   with a soft pooling, the whole centre of the positive rises; in training the
#   negatives' centres, where the same texture must score low, keep it in check.
# * **pseudo-mask** pulls confident pixels to their pseudo-label and leaves the
#   ignored band as it was.
#
# No single term makes a segmentation; the recommended pipeline
# (:doc:`/wsss`) combines the MIL head with pseudo-mask self-training.
